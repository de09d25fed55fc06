//! An event loop: one thread, one `mio::Poll`, every socket non-blocking.
//!
//! It accepts, reads, hands complete requests to the dispatcher, runs guest
//! calls in slices (`calls`), writes what comes back, fans published events
//! out to subscribers, and runs the timers (request timeout, idle timeout,
//! heartbeats, lingering closes) from one periodic sweep. Nothing here
//! blocks: a slow client only ever costs its own buffers.
//!
//! A process runs `--threads` loops, each with its own `SO_REUSEPORT`
//! listener and its own connections. What they share: the route table (a
//! snapshot swapped whole on reload), the SSE hub (events published on one
//! loop reach subscribers on all, through each loop's `Waker`), the
//! connection count, and the log writer.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use mio::net::{TcpListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::calls::{Calls, Finished};
use crate::config::Config;
use crate::conn::{Conn, Phase};
use crate::dispatch::Dispatcher;
use crate::hub::{Delivery, Hub};
use crate::log::{Log, trace};
use crate::sse::Channels;

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);
const SIGNAL: Token = Token(usize::MAX - 2);
const ADMIN: Token = Token(usize::MAX - 3);

/// Connections over the limit get a 503 and are closed; this many of them
/// at a time get a proper lingering close, the rest are dropped outright.
const REFUSAL_SLOTS: usize = 64;

/// What the loops of one process share.
pub struct Shared {
    pub hub: Arc<Hub>,
    /// Where channels live beyond this process (for the stats).
    pub engine: crate::engine::Running,
    /// Open connections, all loops together (`--max-connections`).
    pub connections: AtomicUsize,
    /// A signal asked the process to stop (said once, by the loop that saw
    /// it first).
    pub stopping: AtomicBool,
}

pub struct Server {
    /// This loop's number: its place in the hub.
    pub(crate) lp: usize,
    pub(crate) poll: Poll,
    pub(crate) listener: Option<TcpListener>,
    /// The admin listener (`--admin-bind`), on one loop only.
    pub(crate) admin: Option<TcpListener>,
    pub(crate) signals: UnixStream,
    pub(crate) shared: Arc<Shared>,
    /// Events from the hub, being fanned out.
    pub(crate) inbox: VecDeque<Delivery>,
    /// A run of them on one channel (see `deliver`; kept for its allocation).
    pub(crate) run: Vec<(Option<crate::engine::history::EventId>, Arc<[u8]>)>,
    pub(crate) conns: Slab<Conn>,
    pub(crate) channels: Channels,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) cfg: Config,
    pub(crate) log: Log,
    pub(crate) scratch: Vec<u8>,
    pub(crate) out: Vec<u8>,
    /// Connections with responses queued this turn (see `send`).
    pub(crate) unflushed: Vec<usize>,
    pub(crate) date: String,
    pub(crate) date_second: u64,
    pub(crate) tick: Duration,
    pub(crate) next_tick: Instant,
    /// `accept` failed for lack of descriptors: retry at the next tick.
    pub(crate) accept_paused: bool,
    /// Set once a signal asked us to stop; the deadline for pending writes.
    pub(crate) shutdown: Option<Instant>,
    /// Guest calls that yielded, waiting for another slice.
    pub(crate) calls: Calls,
    /// Calls that ended this turn (kept to reuse the allocation).
    pub(crate) finished: Vec<Finished>,
    /// Guest time spent this turn on calls' first slices (see `respond`).
    pub(crate) guest_time: Duration,
    /// This loop's request figures (None: `--no-metrics`).
    pub(crate) metrics: Option<Arc<crate::metrics::LoopMetrics>>,
    pub(crate) next_conn_id: u64,
    /// Spreads the retry hints of streams ended by shutdown.
    pub(crate) jitter: crate::streams::Jitter,
    /// `HOUSE_TEST_PANIC_PATH`: a request for this path panics the loop
    /// that reads it, so that a test can show what a panic does (there is
    /// no other way to make one on purpose). Unset in production.
    pub(crate) panic_on: Option<String>,
}

/// Binds `count` listeners to `addr`, one per loop, all with `SO_REUSEPORT`
/// so that the kernel spreads connections across them. A probe without it
/// goes first: with it alone, a port another house (of the same user)
/// listens on would be shared silently instead of reported as in use.
/// Separate from `Server::new` so that a port in use is reported before
/// anything else starts.
pub fn bind(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
    use socket2::{Domain, Socket, Type};
    let socket = |reuse_port: bool| -> io::Result<Socket> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(reuse_port)?;
        s.set_nonblocking(true)?;
        Ok(s)
    };
    let probe = socket(false)?;
    probe.bind(&addr.into())?;
    let addr = probe.local_addr()?.as_socket().unwrap_or(addr);
    drop(probe);
    (0..count)
        .map(|_| {
            let s = socket(true)?;
            s.bind(&addr.into())?;
            s.listen(1024)?;
            Ok(TcpListener::from_std(s.into()))
        })
        .collect()
}

/// The waker of a loop's `Poll` (mio allows one per Poll), made before the
/// loop itself: the hub needs every loop's.
pub fn waker(poll: &Poll) -> io::Result<Arc<Waker>> {
    Ok(Arc::new(Waker::new(poll.registry(), WAKER)?))
}

impl Server {
    #[allow(clippy::too_many_arguments)] // one of each thing a loop is made of
    pub fn new(
        cfg: Config,
        lp: usize,
        poll: Poll,
        mut listener: TcpListener,
        mut admin: Option<TcpListener>,
        dispatcher: Dispatcher,
        shared: Arc<Shared>,
        log: Log,
    ) -> anyhow::Result<Server> {
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        if let Some(admin) = &mut admin {
            poll.registry().register(admin, ADMIN, Interest::READABLE)?;
        }
        let (signals, notify) = std::os::unix::net::UnixStream::pair()?;
        signals.set_nonblocking(true)?;
        notify.set_nonblocking(true)?;
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::low_level::pipe::register(sig, notify.try_clone()?)?;
        }
        let mut signals = UnixStream::from_std(signals);
        poll.registry().register(&mut signals, SIGNAL, Interest::READABLE)?;
        let l = &cfg.limits;
        let shortest = l.request_timeout.min(l.idle_timeout).min(l.heartbeat);
        let tick = (shortest / 8).clamp(Duration::from_millis(5), Duration::from_millis(250));
        let calls = Calls::new(shared.hub.waker(lp));
        let metrics = cfg.metrics.then(crate::metrics::LoopMetrics::register);
        Ok(Server {
            lp,
            poll,
            listener: Some(listener),
            admin,
            signals,
            shared,
            inbox: VecDeque::new(),
            run: Vec::new(),
            conns: Slab::with_capacity(1024),
            channels: Channels::default(),
            dispatcher,
            log,
            cfg,
            scratch: vec![0; 64 * 1024],
            out: Vec::with_capacity(16 * 1024),
            unflushed: Vec::with_capacity(1024),
            date: httpdate::fmt_http_date(SystemTime::now()),
            date_second: 0,
            tick,
            next_tick: Instant::now() + tick,
            accept_paused: false,
            shutdown: None,
            calls,
            finished: Vec::new(),
            guest_time: Duration::ZERO,
            metrics,
            next_conn_id: 0,
            panic_on: std::env::var("HOUSE_TEST_PANIC_PATH").ok(),
            jitter: crate::streams::Jitter::new(
                SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
                    ^ (lp as u64) << 56,
            ),
        })
    }

    pub fn run(mut self) -> anyhow::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let wake = self.log.deadline().map_or(self.next_tick, |d| d.min(self.next_tick));
            // Calls waiting for a slice: look at the sockets, don't wait.
            let timeout =
                if self.calls.runnable() { Duration::ZERO } else { wake.saturating_duration_since(Instant::now()) };
            self.guest_time = Duration::ZERO;
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now, false),
                    ADMIN => self.accept(now, true),
                    // The hub left events: delivered below, with this turn's own.
                    WAKER => {}
                    SIGNAL => self.begin_shutdown(now),
                    Token(key) => self.service(key, now, event.is_readable(), event.is_read_closed()),
                }
            }
            if now >= self.next_tick {
                self.sweep(now);
                self.next_tick = now + self.tick;
            }
            self.run_calls(now);
            self.deliver(now);
            self.flush_turn(now);
            self.log.flush();
            if let Some(deadline) = self.shutdown
                && (self.conns.is_empty() || now >= deadline)
            {
                return Ok(());
            }
        }
    }

    /// Takes the connections waiting on the public listener, or on the
    /// admin one (`admin`).
    pub(crate) fn accept(&mut self, now: Instant, admin: bool) {
        loop {
            let Some(listener) = (if admin { &self.admin } else { &self.listener }) else {
                return;
            };
            let (mut socket, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, most likely: the pending connection
                    // stays in the backlog and is retried at the next tick.
                    self.log.line(format_args!("house: accept failed: {e}"));
                    self.accept_paused = true;
                    return;
                }
            };
            let limit = self.cfg.limits.max_connections;
            let open = self.shared.connections.fetch_add(1, Ordering::Relaxed) + 1;
            if open > limit + REFUSAL_SLOTS {
                self.shared.connections.fetch_sub(1, Ordering::Relaxed);
                trace!(self.log, "{peer}: refused outright, over the connection limit");
                continue;
            }
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            if let Err(e) =
                self.poll.registry().register(&mut socket, Token(key), Interest::READABLE | Interest::WRITABLE)
            {
                self.log.line(format_args!("house: cannot register {peer}: {e}"));
                self.shared.connections.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            let _ = socket.set_nodelay(true);
            self.next_conn_id += 1;
            let mut conn = Conn::new(self.next_conn_id, socket, peer, now);
            conn.admin = admin;
            entry.insert(conn);
            trace!(self.log, "{peer}: accepted as #{key}{}", if admin { " (admin)" } else { "" });
            if open > limit {
                self.log.line(format_args!("house: refused {peer}: over {limit} connections"));
                self.refuse(key, limit);
            }
        }
    }

    pub(crate) fn close(&mut self, key: usize, err: Option<&io::Error>) {
        if !self.conns.contains(key) {
            return;
        }
        let mut conn = self.conns.remove(key);
        match err {
            Some(e) if !is_disconnect(e) => self.log.line(format_args!("house: {}: {e}", conn.peer)),
            _ => {}
        }
        trace!(self.log, "#{key}: closed ({})", conn.peer);
        self.shared.connections.fetch_sub(1, Ordering::Relaxed);
        for channel in &conn.channels {
            if self.channels.unsubscribe(channel, key) {
                self.shared.hub.unlisten(self.lp, channel);
            }
        }
        self.shared.hub.count_subscriptions(0, conn.channels.len());
        let _ = self.poll.registry().deregister(conn.socket());
    }

    /// SIGINT or SIGTERM: stop accepting, let pending writes finish, exit.
    fn begin_shutdown(&mut self, now: Instant) {
        let mut byte = [0u8; 16];
        while matches!(self.signals.read(&mut byte), Ok(n) if n > 0) {}
        if self.shutdown.is_some() {
            return;
        }
        if !self.shared.stopping.swap(true, Ordering::AcqRel) {
            let open = self.shared.connections.load(Ordering::Relaxed);
            self.log.line(format_args!("house: shutting down ({open} connections open)"));
        }
        for mut listener in [self.listener.take(), self.admin.take()].into_iter().flatten() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.shutdown = Some(now + self.cfg.shutdown_grace);
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let conn = &mut self.conns[key];
            match conn.phase {
                // A call in flight is answered, then closed (no keep-alive).
                Phase::Http if conn.calling => {}
                Phase::Http if !conn.mid_request() => conn.phase = Phase::Closing,
                // Told when to come back, and closed once that is written.
                Phase::Stream => self.end_stream(key, now),
                _ => {}
            }
            self.settle(key, now);
        }
    }
}

/// A peer going away is normal, not worth a log line.
fn is_disconnect(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted)
}
