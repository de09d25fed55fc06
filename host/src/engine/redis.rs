//! The Redis engine: channels shared by every house on one Redis server,
//! through its PUBLISH / SUBSCRIBE.
//!
//! The event loops never touch a Redis socket. The hub tells the bridge
//! when a channel gains its first listener in this process and loses its
//! last (so a process subscribes only to what it has listeners for), and
//! hands it every event published here, under the hub's lock, so that the
//! order sent to Redis is the order this host's loops saw. The bridge only
//! queues (bounded: `--engine-queue-events`, `--engine-queue-bytes`; beyond,
//! the event is counted as unsent) and wakes its thread.
//!
//! Two threads per process:
//! - the *writer* connects, sends queued events as one pipeline of PUBLISH
//!   per wake-up, sends SUBSCRIBE / UNSUBSCRIBE on the subscription socket,
//!   and reconnects with backoff when either socket fails;
//! - the *reader* reads the subscription socket and hands what other hosts
//!   published to the hub.
//!
//! The subscription socket is a plain `TcpStream` split between the two
//! (the `redis` crate encodes the commands and parses the replies): the
//! crate's synchronous `PubSub` owns its connection, so a subscription could
//! only change between two of its blocking reads, i.e. after a poll timeout.
//!
//! A local publish reaches local subscribers at once through the hub, and
//! again through Redis: each message carries this process's random origin
//! tag, and the reader skips its own, so local subscribers get it once.
//! While Redis is unreachable, local channels work as in `memory`; events
//! that could not cross hosts are counted (`engine_unsent`), not replayed
//! late. Redis's own output buffer limits drop a subscriber that falls far
//! behind; the reader then sees the socket close and reconnects.

use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use redis::{ConnectionAddr, Value};

use super::EngineStats;
use crate::config::RedisEngine;
use crate::hub::{Hub, Link};
use crate::log::Log;

/// Redis channel names are the house channel's with this prefix: pub/sub is
/// not per database in Redis, and others may use the same server.
pub const PREFIX: &str = "house:";
/// The first byte of every message: its format.
const FORMAT: u8 = 1;
/// Format byte, origin tag, then the framed event.
const HEADER: usize = 1 + 8;

const FIRST_RETRY: Duration = Duration::from_millis(50);
const LAST_RETRY: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A reply slower than this means the connection is dead.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Channels per SUBSCRIBE command.
const SUBSCRIBE_CHUNK: usize = 512;

/// Refuses what `--engine` could never connect to (a bad port, TLS, a Unix
/// socket), so that a typo stops the server at start.
pub fn check_url(url: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    match client.get_connection_info().addr() {
        ConnectionAddr::Tcp(..) => Ok(()),
        _ => bail!("only redis://HOST:PORT[/DB] (plain TCP) is supported"),
    }
}

pub struct Bridge {
    /// The address without its password, for the log.
    shown: String,
    host: String,
    port: u16,
    auth: Option<(Option<String>, String)>,
    client: redis::Client,
    origin: [u8; 8],
    queue_events: usize,
    queue_bytes: usize,
    sse_buffer: usize,
    hub: Arc<Hub>,
    state: Mutex<State>,
    wake: Condvar,
    up: AtomicBool,
    unsent: AtomicU64,
    refused: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Events to send, in order, and their bytes.
    queue: VecDeque<(Arc<str>, Arc<[u8]>)>,
    bytes: usize,
    /// Channels with listeners in this process.
    wanted: HashSet<Arc<str>>,
    /// Channels whose listening changed since the writer last looked (a
    /// set: churn on one channel is one entry, so this is bounded by the
    /// channels there are).
    changed: HashSet<Arc<str>>,
    /// Why the reader stopped, if it did.
    broken: Option<String>,
}

/// The two sockets of one connection to Redis.
struct Connected {
    commands: redis::Connection,
    subscriptions: TcpStream,
    reader: std::thread::JoinHandle<()>,
    subscribed: HashSet<Arc<str>>,
}

impl Bridge {
    pub fn start(cfg: &RedisEngine, hub: Arc<Hub>, sse_buffer: usize, log: Log) -> anyhow::Result<Arc<Bridge>> {
        let client = redis::Client::open(cfg.url.as_str()).context("--engine")?;
        let info = client.get_connection_info();
        let ConnectionAddr::Tcp(host, port) = info.addr().clone() else {
            bail!("--engine: only redis://HOST:PORT[/DB] (plain TCP) is supported");
        };
        let settings = info.redis_settings();
        let auth = settings.password().map(|p| (settings.username().map(str::to_owned), p.to_owned()));
        let bridge = Arc::new(Bridge {
            shown: format!("redis://{host}:{port}/{}", settings.db()),
            host,
            port,
            auth,
            client,
            origin: origin(),
            queue_events: cfg.queue_events,
            queue_bytes: cfg.queue_bytes,
            sse_buffer,
            hub,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            up: AtomicBool::new(false),
            unsent: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let writer = bridge.clone();
        std::thread::Builder::new().name("house-redis".into()).spawn(move || writer.run(log))?;
        Ok(bridge)
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            kind: "redis",
            up: self.up.load(Ordering::Acquire),
            unsent: self.unsent.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The writer thread: connect, serve until something breaks, say so
    /// once, retry with backoff, forever.
    fn run(self: Arc<Self>, mut log: Log) {
        let mut retry = FIRST_RETRY;
        // Whether the current outage (or the start) has been said.
        let mut said_down = false;
        loop {
            let mut connected = match self.connect() {
                Ok(c) => c,
                Err(e) => {
                    if !said_down {
                        log.line(format_args!(
                            "house: engine {}: cannot reach Redis ({e:#}); channels stay on this host until it \
                             answers, retrying",
                            self.shown
                        ));
                        log.flush_now();
                        said_down = true;
                    }
                    std::thread::sleep(retry);
                    retry = (retry * 2).min(LAST_RETRY);
                    continue;
                }
            };
            log.line(format_args!(
                "house: engine {}: connected, {} channels subscribed",
                self.shown,
                connected.subscribed.len()
            ));
            log.flush_now();
            let since = std::time::Instant::now();
            let why = self.serve(&mut connected);
            self.disconnect(connected);
            log.line(format_args!("house: engine {}: lost Redis ({why}); retrying", self.shown));
            log.flush_now();
            said_down = true;
            // A connection that breaks at once (a refused AUTH on the
            // subscription socket, a proxy that accepts and closes) backs
            // off like a failed connect instead of becoming a busy loop.
            if since.elapsed() >= LAST_RETRY {
                retry = FIRST_RETRY;
            } else {
                std::thread::sleep(retry);
                retry = (retry * 2).min(LAST_RETRY);
            }
        }
    }

    fn connect(self: &Arc<Self>) -> anyhow::Result<Connected> {
        let commands = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        commands.set_read_timeout(Some(REPLY_TIMEOUT))?;
        commands.set_write_timeout(Some(REPLY_TIMEOUT))?;
        let mut subscriptions = self.dial()?;
        if let Some((user, password)) = &self.auth {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = user {
                auth.arg(user);
            }
            subscriptions.write_all(&auth.arg(password).get_packed_command())?;
        }
        let reader = {
            let bridge = self.clone();
            let stream = subscriptions.try_clone()?;
            std::thread::Builder::new().name("house-redis-in".into()).spawn(move || bridge.read(stream))?
        };
        // From here on, publishes queue and listens count as changes; what
        // is wanted now is subscribed below, what changes later next turn.
        // (A reader that failed already has set `broken`: kept, and seen
        // by the first turn of `serve`.)
        let subscribed = {
            let mut state = self.state();
            state.changed.clear();
            self.up.store(true, Ordering::Release);
            state.wanted.clone()
        };
        let mut connected = Connected { commands, subscriptions, reader, subscribed };
        let all: Vec<Arc<str>> = connected.subscribed.iter().cloned().collect();
        if let Err(e) = send_subscriptions(&mut connected.subscriptions, "SUBSCRIBE", &all) {
            self.disconnect(connected);
            return Err(e.into());
        }
        Ok(connected)
    }

    /// Closes both sockets, waits for the reader to stop, and counts what
    /// was still queued as unsent: it is not replayed after a reconnect.
    fn disconnect(&self, connected: Connected) {
        self.up.store(false, Ordering::Release);
        let _ = connected.subscriptions.shutdown(Shutdown::Both);
        let _ = connected.reader.join();
        let mut state = self.state();
        self.unsent.fetch_add(state.queue.len() as u64, Ordering::Relaxed);
        state.queue.clear();
        state.bytes = 0;
        state.broken = None;
    }

    /// The subscription socket: plain TCP, with keep-alive so that a Redis
    /// host that vanished is noticed even when nothing is published.
    fn dial(&self) -> anyhow::Result<TcpStream> {
        let mut last = None;
        for addr in (self.host.as_str(), self.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
                    let keepalive = socket2::TcpKeepalive::new()
                        .with_time(Duration::from_secs(10))
                        .with_interval(Duration::from_secs(5))
                        .with_retries(3);
                    socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive)?;
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(|| anyhow::anyhow!("{} resolves to no address", self.host), Into::into))
    }

    /// Sends what was queued and (un)subscribes what changed, until a
    /// socket fails; returns why.
    fn serve(&self, connected: &mut Connected) -> String {
        let mut batch = VecDeque::new();
        loop {
            let changed = {
                let mut state = self.state();
                loop {
                    if let Some(why) = state.broken.take() {
                        return why;
                    }
                    if !state.queue.is_empty() || !state.changed.is_empty() {
                        break;
                    }
                    state = self.wake.wait(state).unwrap_or_else(PoisonError::into_inner);
                }
                std::mem::swap(&mut state.queue, &mut batch);
                state.bytes = 0;
                let changed = std::mem::take(&mut state.changed);
                let (mut on, mut off) = (Vec::new(), Vec::new());
                for channel in changed {
                    if state.wanted.contains(&channel) {
                        if connected.subscribed.insert(channel.clone()) {
                            on.push(channel);
                        }
                    } else if connected.subscribed.remove(&channel) {
                        off.push(channel);
                    }
                }
                (on, off)
            };
            let (on, off) = changed;
            if let Err(e) = send_subscriptions(&mut connected.subscriptions, "SUBSCRIBE", &on)
                .and_then(|()| send_subscriptions(&mut connected.subscriptions, "UNSUBSCRIBE", &off))
            {
                self.unsent.fetch_add(batch.len() as u64, Ordering::Relaxed);
                return e.to_string();
            }
            if batch.is_empty() {
                continue;
            }
            let mut pipe = redis::pipe();
            let mut message = Vec::new();
            for (channel, frame) in batch.drain(..) {
                message.clear();
                message.push(FORMAT);
                message.extend_from_slice(&self.origin);
                message.extend_from_slice(&frame);
                pipe.cmd("PUBLISH").arg(format!("{PREFIX}{channel}")).arg(&message).ignore();
            }
            if let Err(e) = pipe.query::<()>(&mut connected.commands) {
                self.unsent.fetch_add(pipe.len() as u64, Ordering::Relaxed);
                return e.to_string();
            }
        }
    }

    /// The reader thread: what other hosts published, to the hub.
    fn read(self: Arc<Self>, mut stream: TcpStream) {
        let mut parser = redis::Parser::new();
        let why = loop {
            match parser.parse_value(&mut stream) {
                Ok(Value::Array(items)) => self.received(items),
                // A refused AUTH, for one.
                Ok(Value::ServerError(e)) => break format!("Redis said: {e}"),
                Ok(_) => {}
                Err(e) => break e.to_string(),
            }
        };
        let mut state = self.state();
        state.broken.get_or_insert(why);
        drop(state);
        self.wake.notify_one();
    }

    fn received(&self, items: Vec<Value>) {
        let mut items = items.into_iter();
        // (Un)subscribe confirmations end with a count, not a payload.
        let (Some(Value::BulkString(kind)), Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
            (items.next(), items.next(), items.next())
        else {
            return;
        };
        if kind != b"message" {
            return;
        }
        let name = channel.strip_prefix(PREFIX.as_bytes()).and_then(|c| std::str::from_utf8(c).ok());
        let ours = payload.get(1..HEADER) == Some(&self.origin[..]);
        let frame = payload.get(HEADER..).unwrap_or_default();
        match name {
            _ if ours => {} // delivered here when it was published
            Some(name)
                if payload.first() == Some(&FORMAT) && frame.len() <= self.sse_buffer && frame.ends_with(b"\n\n") =>
            {
                self.hub.publish_remote(name, &Arc::from(frame));
            }
            _ => {
                self.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Link for Bridge {
    fn listen(&self, channel: &Arc<str>) {
        let mut state = self.state();
        state.wanted.insert(channel.clone());
        if self.up.load(Ordering::Acquire) {
            state.changed.insert(channel.clone());
            drop(state);
            self.wake.notify_one();
        }
    }

    fn unlisten(&self, channel: &Arc<str>) {
        let mut state = self.state();
        state.wanted.remove(channel);
        if self.up.load(Ordering::Acquire) {
            state.changed.insert(channel.clone());
            drop(state);
            self.wake.notify_one();
        }
    }

    fn publish(&self, channel: &str, frame: &Arc<[u8]>) {
        if !self.up.load(Ordering::Acquire) {
            self.unsent.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut state = self.state();
        if state.queue.len() >= self.queue_events || state.bytes + frame.len() > self.queue_bytes {
            drop(state);
            self.unsent.fetch_add(1, Ordering::Relaxed);
            return;
        }
        state.bytes += frame.len();
        state.queue.push_back((channel.into(), frame.clone()));
        drop(state);
        self.wake.notify_one();
    }
}

fn send_subscriptions(stream: &mut TcpStream, verb: &str, channels: &[Arc<str>]) -> std::io::Result<()> {
    for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
        let mut cmd = redis::cmd(verb);
        for channel in chunk {
            cmd.arg(format!("{PREFIX}{channel}"));
        }
        stream.write_all(&cmd.get_packed_command())?;
    }
    Ok(())
}

/// A tag for this process's messages: random, so that two processes (on
/// one machine or many) never share one.
fn origin() -> [u8; 8] {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish().to_le_bytes()
}
