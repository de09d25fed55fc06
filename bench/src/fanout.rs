//! SSE fan-out: N subscribers on one channel, one publish, and the time
//! from sending the publish until the last subscriber has the event, taken
//! on the client side with a mio loop over all N sockets. The same client
//! measures house and the bare SSE baseline, and house's WebSockets (each
//! subscriber then counts text frames instead of events).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

pub struct Fanout {
    /// Publish -> last subscriber's receipt, per repetition.
    pub times: Vec<Duration>,
    /// Server RSS growth per subscriber, in bytes.
    pub bytes_per_subscriber: f64,
    /// Connecting every subscriber until each has its first event (the
    /// head, and for house the backlog with its ids): the client's clock,
    /// as `Clients::setup` counts it.
    pub setup: Duration,
    /// The server's CPU time over that setup, in seconds.
    pub setup_cpu: f64,
}

struct Sub {
    socket: TcpStream,
    /// Events seen so far (blank lines ending an event; text frames).
    events: usize,
    last: u8,
    /// The line being read (its start only), and the last `id:` seen.
    line: Vec<u8>,
    last_id: Option<String>,
    /// A WebSocket: where its reading stands.
    ws: Option<Frames>,
}

/// Counting a WebSocket's text frames as they stream in: the response head
/// first, then each frame's header and payload.
#[derive(Default)]
struct Frames {
    /// The 101's head is read.
    upgraded: bool,
    /// Bytes of the frame header being read.
    header: Vec<u8>,
    /// Payload bytes still to skip in the current frame.
    payload: u64,
}

impl Frames {
    /// Takes `bytes`; returns how many text frames they completed.
    fn take(&mut self, mut bytes: &[u8], last: &mut u8, line: &mut Vec<u8>) -> usize {
        let mut done = 0;
        while !self.upgraded && !bytes.is_empty() {
            // The head ends at a blank line: "\r\n\r\n".
            let b = bytes[0];
            bytes = &bytes[1..];
            line.push(b);
            if line.ends_with(b"\r\n\r\n") {
                self.upgraded = true;
                line.clear();
            }
            *last = b;
        }
        while !bytes.is_empty() {
            if self.payload > 0 {
                let skip = (self.payload as usize).min(bytes.len());
                self.payload -= skip as u64;
                bytes = &bytes[skip..];
                continue;
            }
            self.header.push(bytes[0]);
            bytes = &bytes[1..];
            let need = match self.header.get(1).map(|b| b & 0x7F) {
                None => continue,
                Some(126) => 4,
                Some(127) => 10,
                Some(_) => 2,
            };
            if self.header.len() < need {
                continue;
            }
            self.payload = match need {
                4 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
                10 => u64::from_be_bytes(self.header[2..10].try_into().expect("8 bytes")),
                _ => u64::from(self.header[1] & 0x7F),
            };
            if self.header[0] & 0x0F == 0x1 {
                done += 1;
            }
            self.header.clear();
        }
        done
    }
}

/// N subscribers on one mio poll.
pub struct Clients {
    poll: Poll,
    events: Events,
    subs: Vec<Sub>,
    buf: Vec<u8>,
    /// How long each batch of connections took to get its first events.
    batches: Vec<Duration>,
}

impl Clients {
    /// Subscribes `n` clients to `subscribe` (a request path), each request
    /// with `headers` (whole header lines), and waits for each one's first
    /// event. Connects in batches, each waiting for its first events: the
    /// listen backlog is never overrun (an overrun costs a 1 s SYN retry).
    pub fn subscribe(addr: SocketAddr, n: usize, subscribe: &str, headers: &str) -> anyhow::Result<Clients> {
        Clients::open(addr, n, &|_| subscribe.to_owned(), headers, false)
    }

    /// As `subscribe`, subscriber `i` with the request path `path(i)`.
    pub fn subscribe_each(addr: SocketAddr, n: usize, path: &dyn Fn(usize) -> String) -> anyhow::Result<Clients> {
        Clients::open(addr, n, path, "", false)
    }

    /// As `subscribe`, each subscriber a WebSocket.
    pub fn sockets(addr: SocketAddr, n: usize, subscribe: &str) -> anyhow::Result<Clients> {
        let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                       Sec-WebSocket-Version: 13\r\n";
        Clients::open(addr, n, &|_| subscribe.to_owned(), upgrade, true)
    }

    fn open(
        addr: SocketAddr,
        n: usize,
        subscribe: &dyn Fn(usize) -> String,
        headers: &str,
        ws: bool,
    ) -> anyhow::Result<Clients> {
        let mut c = Clients {
            poll: Poll::new()?,
            events: Events::with_capacity(4096),
            subs: Vec::with_capacity(n),
            buf: vec![0u8; 64 * 1024],
            batches: Vec::new(),
        };
        while c.subs.len() < n {
            let started = Instant::now();
            let batch = (n - c.subs.len()).min(500);
            let first = c.subs.len();
            for i in first..first + batch {
                let mut s = StdStream::connect(addr).context("connecting a subscriber")?;
                let path = subscribe(i);
                s.write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\n{headers}\r\n").as_bytes())?;
                s.set_nonblocking(true)?;
                let mut socket = TcpStream::from_std(s);
                c.poll.registry().register(&mut socket, Token(i), Interest::READABLE)?;
                let ws = ws.then(Frames::default);
                c.subs.push(Sub { socket, events: 0, last: 0, line: Vec::new(), last_id: None, ws });
            }
            c.wait_for(1, Duration::from_secs(30))?;
            c.batches.push(started.elapsed());
        }
        Ok(c)
    }

    /// The time to set all of them up, robust to a rare stall: the median
    /// batch's time, times the number of batches. (A SYN the kernel drops
    /// is sent again a whole second later, whichever server listens: one
    /// such stall in a run of 20 batches tripled a 10,000-subscriber figure.)
    pub fn setup(&self) -> Duration {
        let mut b = self.batches.clone();
        b.sort();
        b.get(b.len() / 2).map_or(Duration::ZERO, |m| *m * b.len() as u32)
    }

    /// Counts every subscriber's events from `to` on (after a warm-up whose
    /// first publishes may have reached some hosts and not others); they
    /// must all have seen as many.
    pub fn rebase(&mut self, to: usize) -> anyhow::Result<()> {
        let base = self.subs.first().map_or(0, |s| s.events);
        if self.subs.iter().any(|s| s.events != base) {
            bail!("subscribers of one host disagree after the warm-up");
        }
        for s in &mut self.subs {
            s.events = to;
        }
        Ok(())
    }

    /// The last id the first subscriber saw.
    pub fn last_id(&self) -> Option<String> {
        self.subs.first().and_then(|s| s.last_id.clone())
    }

    /// Reads until every subscriber has seen `count` events.
    pub fn wait_for(&mut self, count: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut behind = self.subs.iter().filter(|s| s.events < count).count();
        while behind > 0 {
            if Instant::now() > deadline {
                bail!("{behind} subscribers never got event {count}");
            }
            self.poll.poll(&mut self.events, Some(Duration::from_millis(100)))?;
            for ev in self.events.iter() {
                let sub = &mut self.subs[ev.token().0];
                let was_behind = sub.events < count;
                loop {
                    match sub.socket.read(&mut self.buf) {
                        Ok(0) => bail!("a subscriber was disconnected"),
                        Ok(n) if sub.ws.is_some() => {
                            let frames = sub.ws.as_mut().expect("a socket");
                            sub.events += frames.take(&self.buf[..n], &mut sub.last, &mut sub.line);
                        }
                        Ok(n) => {
                            for &b in &self.buf[..n] {
                                if b == b'\n' {
                                    if sub.last == b'\n' {
                                        sub.events += 1;
                                    }
                                    if let Some(id) = sub.line.strip_prefix(b"id: ") {
                                        sub.last_id = Some(String::from_utf8_lossy(id).into_owned());
                                    }
                                    sub.line.clear();
                                } else if sub.line.len() < 64 {
                                    sub.line.push(b);
                                }
                                sub.last = b;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e.into()),
                    }
                }
                if was_behind && sub.events >= count {
                    behind -= 1;
                }
            }
        }
        Ok(())
    }
}

/// Subscribes `n` clients with `subscribe` (a request path), then publishes
/// `reps` times with `publish` (a full request, sent on its own keep-alive
/// connection).
pub fn run(
    addr: SocketAddr,
    pid: u32,
    n: usize,
    subscribe: &str,
    publish: &str,
    reps: usize,
) -> anyhow::Result<Fanout> {
    run_across(addr, pid, addr, n, subscribe, publish, reps)
}

/// As `run`, publishing to `publish_to` (another host on the same engine)
/// while the subscribers are on `addr`. The first publish is repeated until
/// it arrives: a host subscribes on Redis a moment after its first stream.
pub fn run_across(
    addr: SocketAddr,
    pid: u32,
    publish_to: SocketAddr,
    n: usize,
    subscribe: &str,
    publish: &str,
    reps: usize,
) -> anyhow::Result<Fanout> {
    let rss_before = crate::procfs::rss_kib(pid);
    let cpu = crate::procfs::cpu_precise(pid);
    let c = Clients::subscribe(addr, n, subscribe, "")?;
    let setup = (c.setup(), crate::procfs::cpu_precise(pid) - cpu);
    measure(c, addr, pid, rss_before, setup, publish_to, publish, reps)
}

/// As `run`, each subscriber a WebSocket.
pub fn run_sockets(
    addr: SocketAddr,
    pid: u32,
    n: usize,
    subscribe: &str,
    publish: &str,
    reps: usize,
) -> anyhow::Result<Fanout> {
    let rss_before = crate::procfs::rss_kib(pid);
    let cpu = crate::procfs::cpu_precise(pid);
    let c = Clients::sockets(addr, n, subscribe)?;
    let setup = (c.setup(), crate::procfs::cpu_precise(pid) - cpu);
    measure(c, addr, pid, rss_before, setup, addr, publish, reps)
}

/// Publishes `reps` times to `publish_to` and times each until every one
/// of `c` (subscribed on `addr`, which took `setup`) has it.
#[allow(clippy::too_many_arguments)]
fn measure(
    mut c: Clients,
    addr: SocketAddr,
    pid: u32,
    rss_before: u64,
    (setup, setup_cpu): (Duration, f64),
    publish_to: SocketAddr,
    publish: &str,
    reps: usize,
) -> anyhow::Result<Fanout> {
    let n = c.subs.len();
    let rss_after = crate::procfs::rss_kib(pid);
    let mut publisher = StdStream::connect(publish_to)?;
    publisher.set_nodelay(true)?;
    let mut times = Vec::with_capacity(reps);
    if publish_to != addr {
        // Warm-up: until one event crosses, every subscriber has it, and
        // the counts below start from there.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            publisher.write_all(publish.as_bytes())?;
            read_one_response(&mut publisher)?;
            if c.wait_for(2, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                bail!("no event crossed from {publish_to} to {addr}");
            }
        }
        // Later warm-ups may still be on their way: let them land.
        std::thread::sleep(Duration::from_millis(300));
        let _ = c.wait_for(usize::MAX, Duration::from_millis(1));
        let base = c.subs[0].events;
        if c.subs.iter().any(|s| s.events != base) {
            bail!("subscribers disagree after the warm-up");
        }
        for s in &mut c.subs {
            s.events -= base - 1;
        }
    }
    for rep in 0..reps {
        let started = Instant::now();
        publisher.write_all(publish.as_bytes())?;
        c.wait_for(2 + rep, Duration::from_secs(30))?;
        times.push(started.elapsed());
        read_one_response(&mut publisher)?;
    }
    let bytes_per_subscriber = (rss_after.saturating_sub(rss_before) * 1024) as f64 / n as f64;
    Ok(Fanout { times, bytes_per_subscriber, setup, setup_cpu })
}

/// Reads one response with a Content-Length body (the publish's answer).
pub fn read_one_response(s: &mut StdStream) -> anyhow::Result<()> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            bail!("the publisher connection closed");
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                if !head.starts_with("http/1.1 200") {
                    bail!("publish failed: {}", String::from_utf8_lossy(&got));
                }
                return Ok(());
            }
        }
    }
}
