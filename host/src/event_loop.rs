//! An event loop: one thread, one `mio::Poll`, every socket non-blocking.
//!
//! This file knows sockets, not HTTP: it accepts (on the public listener
//! and the admin one), polls, and hands each turn to the loop's layers, in
//! order: readiness events to the HTTP connection layer (`serve`: read,
//! parse, dispatch, guest calls in slices), the timers' sweep (`timers`),
//! the calls that yielded, the hub's events to the streams (`streams`),
//! and the turn's writes (`core`, which also holds the connections every
//! layer shares). Each layer has state of its own; none imports this file.
//! Nothing here blocks: a slow client only ever costs its own buffers.
//!
//! A process runs `--threads` loops, each with its own `SO_REUSEPORT`
//! listener and its own connections. What they share: the route table (a
//! snapshot swapped whole on reload), the SSE hub (events published on one
//! loop reach subscribers on all, through each loop's `Waker`), the
//! connection count, and the log writer.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use mio::net::{TcpListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::calls::Calls;
use crate::config::Config;
use crate::conn::{Conn, Phase};
use crate::core::{Core, Shared};
use crate::dispatch::Dispatcher;
use crate::log::{Log, trace};
use crate::serve::Http;
use crate::socket::Listener;
use crate::streams::Streams;
use crate::timers::Timers;

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);
const SIGNAL: Token = Token(usize::MAX - 2);
const ADMIN: Token = Token(usize::MAX - 3);

/// Connections over the limit get a 503 and are closed; this many of them
/// at a time get a proper lingering close, the rest are dropped outright.
const REFUSAL_SLOTS: usize = 64;

/// One loop: its sockets and poll here, the rest in its layers, each with
/// state of its own. `core` holds the connections and the write path every
/// layer uses; `http` reads and answers requests and runs guest calls;
/// `streams` opens streams and fans events out; `timers` sweeps.
pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    /// The admin listener (`--admin-bind`), on one loop only.
    admin: Option<Listener>,
    signals: UnixStream,
    /// `accept` failed for lack of descriptors: retry at the next sweep.
    accept_paused: bool,
    next_conn_id: u64,
    core: Core,
    http: Http,
    streams: Streams,
    timers: Timers,
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
        mut admin: Option<Listener>,
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
        let calls = Calls::new(shared.hub.waker(lp));
        let seed = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
            ^ (lp as u64) << 56;
        let core = Core::new(lp, poll.registry().try_clone()?, shared, cfg, log);
        let timers = Timers::new(&core);
        Ok(Server {
            poll,
            listener: Some(listener),
            admin,
            signals,
            accept_paused: false,
            next_conn_id: 0,
            core,
            http: Http::new(dispatcher, calls),
            streams: Streams::new(seed),
            timers,
        })
    }

    pub fn run(mut self) -> anyhow::Result<()> {
        crate::shard::enter_loop(self.core.lp);
        let mut events = Events::with_capacity(1024);
        loop {
            let next = self.timers.next();
            let wake = self.core.log.deadline().map_or(next, |d| d.min(next));
            // Calls waiting for a slice: look at the sockets, don't wait.
            let timeout = if self.http.calls.runnable() {
                Duration::ZERO
            } else {
                wake.saturating_duration_since(Instant::now())
            };
            self.http.guest_time = Duration::ZERO;
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
                    Token(key) => self.http.service(
                        &mut self.core,
                        &mut self.streams,
                        key,
                        now,
                        event.is_readable(),
                        event.is_read_closed(),
                    ),
                }
            }
            if self.timers.sweep_if_due(&mut self.core, &mut self.http, &mut self.streams, now)
                && std::mem::take(&mut self.accept_paused)
            {
                self.accept(now, false);
                self.accept(now, true);
            }
            self.http.run_calls(&mut self.core, &mut self.streams, now);
            // Joins and leaves of this turn (or of a window that ended),
            // published before this loop's deliveries are fanned out.
            if self.core.shared.presence.waiting() {
                self.streams.announce(&mut self.core, now);
            }
            self.streams.deliver(&mut self.core, now);
            self.core.flush_turn(now);
            self.core.log.flush();
            if let Some(deadline) = self.core.shutdown
                && (self.core.conns.is_empty() || now >= deadline)
            {
                return Ok(());
            }
        }
    }

    /// Takes the connections waiting on the public listener, or on the
    /// admin one (`admin`).
    fn accept(&mut self, now: Instant, admin: bool) {
        loop {
            let accepted = match (admin, &self.admin, &self.listener) {
                (true, Some(l), _) => l.accept(),
                (false, _, Some(l)) => Listener::accept_tcp(l),
                _ => return,
            };
            let (mut socket, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, most likely: the pending connection
                    // stays in the backlog and is retried at the next sweep.
                    self.core.log.line(format_args!("house: accept failed: {e}"));
                    self.accept_paused = true;
                    return;
                }
            };
            let limit = self.core.cfg.limits.max_connections;
            let open = self.core.shared.connections.fetch_add(1, Ordering::Relaxed) + 1;
            if open > limit + REFUSAL_SLOTS {
                self.core.shared.connections.fetch_sub(1, Ordering::Relaxed);
                trace!(self.core.log, "{peer}: refused outright, over the connection limit");
                continue;
            }
            let entry = self.core.conns.vacant_entry();
            let key = entry.key();
            if let Err(e) =
                self.poll.registry().register(&mut socket, Token(key), Interest::READABLE | Interest::WRITABLE)
            {
                self.core.log.line(format_args!("house: cannot register {peer}: {e}"));
                self.core.shared.connections.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            self.next_conn_id += 1;
            let mut conn = Conn::new(self.next_conn_id, socket, peer, now);
            conn.admin = admin;
            entry.insert(conn);
            trace!(self.core.log, "{peer}: accepted as #{key}{}", if admin { " (admin)" } else { "" });
            if open > limit {
                self.core.log.line(format_args!("house: refused {peer}: over {limit} connections"));
                self.http.refuse(&mut self.core, key, limit);
            }
        }
    }

    /// SIGINT or SIGTERM: stop accepting, let pending writes finish, exit.
    fn begin_shutdown(&mut self, now: Instant) {
        let mut byte = [0u8; 16];
        while matches!(self.signals.read(&mut byte), Ok(n) if n > 0) {}
        if self.core.shutdown.is_some() {
            return;
        }
        if !self.core.shared.stopping.swap(true, Ordering::AcqRel) {
            let open = self.core.shared.connections.load(Ordering::Relaxed);
            self.core.log.line(format_args!("house: shutting down ({open} connections open)"));
        }
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        if let Some(mut listener) = self.admin.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.core.shutdown = Some(now + self.core.cfg.shutdown_grace);
        let keys: Vec<usize> = self.core.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let conn = &mut self.core.conns[key];
            match conn.phase {
                // A call in flight is answered, then closed (no keep-alive).
                Phase::Http if conn.calling => {}
                Phase::Http if !conn.mid_request() => conn.phase = Phase::Closing,
                // Told when to come back, and closed once that is written.
                Phase::Stream => self.streams.end_stream(&mut self.core, key, now),
                _ => {}
            }
            self.core.settle(key, now);
        }
    }
}
