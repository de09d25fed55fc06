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

use crate::calls::{self, Call, Calls, Finished, Slice};
use crate::config::Config;
use crate::conn::{Conn, Phase, Request};
use crate::dispatch::{Begun, Dispatched, Dispatcher, Outcome};
use crate::http::request::Head;
use crate::http::response::{self, Framing};
use crate::http::{ErrorKind, HttpError};
use crate::hub::{Delivery, Hub};
use crate::log::{Log, trace};
use crate::sse::{self, Channels};

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);
const SIGNAL: Token = Token(usize::MAX - 2);

/// Past this many unwritten bytes, a connection's pipelined requests wait
/// until the client reads what it was sent.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// How long a closed-for-writing connection may keep sending before it is cut.
const LINGER: Duration = Duration::from_secs(2);
/// How long shutdown waits for pending writes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Connections over the limit get a 503 and are closed; this many of them
/// at a time get a proper lingering close, the rest are dropped outright.
const REFUSAL_SLOTS: usize = 64;

/// What the loops of one process share.
pub struct Shared {
    pub hub: Hub,
    /// Open connections, all loops together (`--max-connections`).
    pub connections: AtomicUsize,
    /// A signal asked the process to stop (said once, by the loop that saw
    /// it first).
    pub stopping: AtomicBool,
}

pub struct Server {
    /// This loop's number: its place in the hub.
    lp: usize,
    poll: Poll,
    listener: Option<TcpListener>,
    signals: UnixStream,
    shared: Arc<Shared>,
    /// Events from the hub, being fanned out.
    inbox: VecDeque<Delivery>,
    conns: Slab<Conn>,
    channels: Channels,
    dispatcher: Dispatcher,
    cfg: Config,
    log: Log,
    scratch: Vec<u8>,
    out: Vec<u8>,
    /// Connections with responses queued this turn (see `send`).
    unflushed: Vec<usize>,
    date: String,
    date_second: u64,
    tick: Duration,
    next_tick: Instant,
    /// `accept` failed for lack of descriptors: retry at the next tick.
    accept_paused: bool,
    /// Set once a signal asked us to stop; the deadline for pending writes.
    shutdown: Option<Instant>,
    /// Guest calls that yielded, waiting for another slice.
    calls: Calls,
    /// Calls that ended this turn (kept to reuse the allocation).
    finished: Vec<Finished>,
    /// Guest time spent this turn on calls' first slices (see `respond`).
    guest_time: Duration,
    next_conn_id: u64,
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
        dispatcher: Dispatcher,
        shared: Arc<Shared>,
        log: Log,
    ) -> anyhow::Result<Server> {
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
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
        Ok(Server {
            lp,
            poll,
            listener: Some(listener),
            signals,
            shared,
            inbox: VecDeque::new(),
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
            calls: Calls::default(),
            finished: Vec::new(),
            guest_time: Duration::ZERO,
            next_conn_id: 0,
        })
    }

    pub fn run(mut self) -> anyhow::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let wake = self.log.deadline().map_or(self.next_tick, |d| d.min(self.next_tick));
            // Calls waiting for a slice: look at the sockets, don't wait.
            let timeout =
                if self.calls.is_empty() { wake.saturating_duration_since(Instant::now()) } else { Duration::ZERO };
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
                    LISTENER => self.accept(now),
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

    fn accept(&mut self, now: Instant) {
        loop {
            let Some(listener) = &self.listener else {
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
            entry.insert(Conn::new(self.next_conn_id, socket, peer, now));
            trace!(self.log, "{peer}: accepted as #{key}");
            if open > limit {
                let err =
                    HttpError::new(ErrorKind::Unavailable, format!("server is at its limit of {limit} connections"));
                self.log.line(format_args!("house: refused {peer}: over {limit} connections"));
                self.send_error(key, &err, Framing { version: 1, keep_alive: false, head_only: false });
            }
        }
    }

    /// Everything one readiness event can lead to on connection `key`:
    /// pending writes go out, new bytes come in (only when the event says
    /// there are some), complete requests are answered.
    fn service(&mut self, key: usize, now: Instant, readable: bool, hup: bool) {
        let cap = self.cfg.limits.max_head + self.cfg.limits.max_body + 64 * 1024;
        let mut read = readable || hup;
        loop {
            let Some(conn) = self.conns.get_mut(key) else { return };
            if let Err(e) = conn.flush(now) {
                return self.close(key, Some(&e));
            }
            if read {
                match conn.read(&mut self.scratch, cap, now, hup) {
                    Ok(n) if n > 0 => trace!(self.log, "#{key}: read {n} bytes"),
                    Ok(_) => {}
                    Err(e) => return self.close(key, Some(&e)),
                }
            }
            let answered = self.process(key, now);
            // Read again only if reading stopped at the cap and answering
            // made room; otherwise the next readiness event brings us back.
            read = answered && self.conns.get(key).is_some_and(|c| c.read_stopped);
            if !read {
                break;
            }
        }
        self.settle(key, now);
    }

    /// Answers the complete requests in the read buffer, in order. Returns
    /// whether any was answered.
    fn process(&mut self, key: usize, now: Instant) -> bool {
        let mut answered = false;
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return answered;
            };
            if conn.phase != Phase::Http || conn.calling || conn.pending() > WRITE_HIGH_WATER {
                return answered;
            }
            match conn.next_request(&self.cfg.limits, now) {
                Ok(None) => return answered,
                Ok(Some(req)) => {
                    answered = true;
                    trace!(
                        self.log,
                        "#{key}: parsed {} {} ({} body bytes)",
                        req.head.method,
                        req.head.path,
                        req.body.len()
                    );
                    self.respond(key, req, now);
                }
                Err(err) => {
                    trace!(self.log, "#{key}: framing error: {}", err.reason);
                    self.log.access("-", "-", err.status(), Duration::ZERO);
                    self.send_error(key, &err, Framing { version: 1, keep_alive: false, head_only: false });
                    return true;
                }
            }
        }
    }

    fn respond(&mut self, key: usize, req: Request, now: Instant) {
        trace!(self.log, "#{key}: dispatch {} {}", req.head.method, req.head.path);
        let (handler, future) = match self.dispatcher.begin(&req) {
            Begun::Done(dispatched) => return self.answer(key, &req.head, req.started, dispatched, now),
            Begun::Call { handler, call } => (handler, call),
        };
        let Some(conn) = self.conns.get_mut(key) else { return };
        let call = Call::new(key, conn.id, req.head, req.started, handler, future);
        // Run the first slice now, while the request is hot: most calls end
        // in it. Once this turn's first slices have had their share, later
        // calls start among the waiting ones instead.
        if self.guest_time >= calls::TURN_BUDGET {
            conn.calling = true;
            self.calls.push(call);
            return;
        }
        let sliced = Instant::now();
        let slice = call.slice();
        self.guest_time += sliced.elapsed();
        match slice {
            Slice::Done((call, result)) => {
                let dispatched = self.dispatcher.finish(&call.handler, result, &mut self.log);
                self.answer(key, &call.head, call.started, dispatched, now);
            }
            Slice::Yielded(call) => {
                trace!(self.log, "#{key}: call yielded, {} waiting", self.calls.len() + 1);
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.calling = true;
                }
                self.calls.push(call);
            }
        }
    }

    /// Gives the waiting calls their slices and answers those that ended.
    fn run_calls(&mut self, now: Instant) {
        if self.calls.is_empty() {
            return;
        }
        let mut finished = std::mem::take(&mut self.finished);
        self.calls.run(&mut finished);
        for (call, result) in finished.drain(..) {
            let dispatched = self.dispatcher.finish(&call.handler, result, &mut self.log);
            let live = self.conns.get_mut(call.key).filter(|c| c.id == call.conn);
            match live {
                Some(conn) => {
                    conn.calling = false;
                    self.answer(call.key, &call.head, call.started, dispatched, now);
                    // Requests that arrived meanwhile, and a close that did.
                    self.service(call.key, now, false, false);
                }
                None => {
                    // The client left; what the call published still stands.
                    trace!(self.log, "#{}: call ended after its connection closed", call.key);
                    let status = dispatched.outcome.as_ref().map_or_else(HttpError::status, |_| 200);
                    self.log.access(&call.head.method, &call.head.path, status, call.started.elapsed());
                    for publication in dispatched.publishes {
                        self.publish(&publication.channel, &publication.frame);
                    }
                }
            }
        }
        self.finished = finished;
    }

    /// Queues the response to a request whose dispatch is complete, logs it,
    /// then applies what it published.
    fn answer(&mut self, key: usize, head: &Head, started: Instant, dispatched: Dispatched, now: Instant) {
        let framing = Framing {
            version: head.version,
            keep_alive: head.keep_alive && self.shutdown.is_none(),
            head_only: head.method == "HEAD",
        };
        let status = match dispatched.outcome {
            Ok(Outcome::Reply { status, content_type, headers, body }) => {
                let resp = response::Response { status, content_type: &content_type, headers: &headers, body: &body };
                self.out.clear();
                response::write(&mut self.out, &resp, framing, &self.date);
                self.send(key, !framing.keep_alive);
                status
            }
            Ok(Outcome::Stats) => {
                let (channels, subscriptions, dropped) = self.shared.hub.stats();
                let body = format!(
                    r#"{{"connections":{},"channels":{channels},"subscriptions":{subscriptions},"guest_calls":{},"loops":{},"hub_dropped":{dropped}}}"#,
                    self.shared.connections.load(Ordering::Relaxed),
                    self.dispatcher.runtime.calls_in_flight(),
                    self.cfg.threads,
                );
                let resp = response::Response {
                    status: 200,
                    content_type: "application/json",
                    headers: &[],
                    body: body.as_bytes(),
                };
                self.out.clear();
                response::write(&mut self.out, &resp, framing, &self.date);
                self.send(key, !framing.keep_alive);
                200
            }
            Ok(Outcome::Stream { first, channels }) => {
                self.out.clear();
                response::write_sse_head(&mut self.out, &self.date);
                if framing.head_only {
                    self.send(key, true);
                } else {
                    self.out.extend_from_slice(&first);
                    self.open_stream(key, channels, now);
                }
                200
            }
            Err(err) => {
                let status = err.status();
                self.send_error(key, &err, framing);
                status
            }
        };
        // From the request's first byte to its response queued.
        self.log.access(&head.method, &head.path, status, started.elapsed());
        for publication in dispatched.publishes {
            self.publish(&publication.channel, &publication.frame);
        }
    }

    fn open_stream(&mut self, key: usize, channels: Vec<String>, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.become_stream();
        conn.last_write = now;
        let added = channels.len();
        for channel in channels {
            trace!(self.log, "#{key}: subscribed to {channel:?}");
            if self.channels.subscribe(&channel, key) {
                self.shared.hub.listen(self.lp, &channel);
            }
            conn.channels.push(channel.into_boxed_str());
        }
        self.shared.hub.count_subscriptions(added, 0);
        self.send(key, false);
    }

    fn send_error(&mut self, key: usize, err: &HttpError, framing: Framing) {
        self.out.clear();
        response::write_error(&mut self.out, err, framing, &self.date);
        self.send(key, err.closes() || !framing.keep_alive);
    }

    /// Queues `self.out` on connection `key`; it is written when this turn
    /// of the loop ends. Writing the turn's responses back to back, rather
    /// than one per guest call, lets a client woken by the first find the
    /// rest already there: on a busy loop that halves the kernel's cost of
    /// waking clients.
    fn send(&mut self, key: usize, then_close: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.defer(&self.out);
        if !conn.flush_due {
            conn.flush_due = true;
            self.unflushed.push(key);
        }
        if then_close {
            conn.phase = Phase::Closing;
        }
    }

    /// Writes what this turn queued, then closes what is done.
    fn flush_turn(&mut self, now: Instant) {
        let mut keys = std::mem::take(&mut self.unflushed);
        for &key in &keys {
            let Some(conn) = self.conns.get_mut(key) else { continue };
            conn.flush_due = false;
            let queued = conn.pending();
            if let Err(e) = conn.flush(now) {
                self.close(key, Some(&e));
                continue;
            }
            trace!(
                self.log,
                "#{key}: wrote {} bytes, {} waiting for the socket",
                queued - conn.pending(),
                conn.pending()
            );
            self.settle(key, now);
        }
        keys.clear();
        self.unflushed = keys;
    }

    /// Publishes one framed event to `channel` on every loop (this one
    /// included: its subscribers get it when this turn delivers).
    fn publish(&mut self, channel: &str, frame: &Arc<[u8]>) {
        self.shared.hub.publish(self.lp, channel, frame);
    }

    /// Fans out what the hub holds for this loop, in publish order. If some
    /// of it was dropped (this loop fell that far behind), every stream of
    /// this loop is closed rather than left with a silent gap.
    fn deliver(&mut self, now: Instant) {
        let mut inbox = std::mem::take(&mut self.inbox);
        let overflowed = self.shared.hub.drain(self.lp, &mut inbox);
        for delivery in inbox.drain(..) {
            self.fan_out(&delivery.channel, &delivery.frame, now);
        }
        self.inbox = inbox;
        if overflowed {
            let streams: Vec<usize> =
                self.conns.iter().filter(|(_, c)| c.phase == Phase::Stream).map(|(k, _)| k).collect();
            self.log.line(format_args!(
                "house: this loop fell over --hub-queue-events {} events behind: closed its {} streams",
                self.cfg.hub_queue,
                streams.len()
            ));
            for key in streams {
                self.close(key, None);
            }
        }
    }

    /// Queues one framed event on every subscriber of `channel` on this loop.
    fn fan_out(&mut self, channel: &str, frame: &[u8], now: Instant) {
        let cap = self.cfg.limits.sse_buffer;
        let subscribers = self.channels.subscribers(channel);
        trace!(self.log, "publish to {channel:?}: {} subscribers", subscribers.len());
        for key in subscribers {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.pending() + frame.len() > cap {
                let (peer, pending) = (conn.peer, conn.pending());
                self.log.line(format_args!("house: dropped subscriber {peer}: {pending} bytes unread, over the cap"));
                self.close(key, None);
                continue;
            }
            match conn.queue(frame, now) {
                Ok(()) => conn.last_write = now,
                Err(e) => self.close(key, Some(&e)),
            }
        }
    }

    /// After a connection was serviced: close what is done.
    fn settle(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.calling {
            // Settled when the call ends (see `run_calls`).
            return;
        }
        match conn.phase {
            Phase::Http | Phase::Stream if conn.peer_closed && conn.pending() == 0 => self.close(key, None),
            Phase::Closing if conn.pending() == 0 => {
                let _ = conn.socket().shutdown(std::net::Shutdown::Write);
                if conn.peer_closed {
                    self.close(key, None);
                } else {
                    conn.phase = Phase::Lingering(now + LINGER);
                }
            }
            Phase::Lingering(_) if conn.peer_closed => self.close(key, None),
            _ => {}
        }
    }

    fn close(&mut self, key: usize, err: Option<&io::Error>) {
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

    /// The periodic timers: request and idle timeouts, heartbeats, lingering
    /// closes, the cached Date header, a paused accept.
    fn sweep(&mut self, now: Instant) {
        let wall = SystemTime::now();
        let second = wall.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.date_second {
            self.date_second = second;
            self.date = httpdate::fmt_http_date(wall);
        }
        if std::mem::take(&mut self.accept_paused) {
            self.accept(now);
        }
        let l = &self.cfg.limits;
        let mut timed_out = Vec::new();
        let mut expired = Vec::new();
        let mut heartbeats = Vec::new();
        for (key, conn) in self.conns.iter() {
            if conn.calling {
                continue;
            }
            match conn.phase {
                Phase::Http if conn.mid_request() => {
                    if conn.request_started.is_some_and(|t| now - t >= l.request_timeout) {
                        timed_out.push(key);
                    }
                }
                Phase::Http if conn.pending() > 0 => {
                    if now - conn.last_active >= l.request_timeout {
                        expired.push(key);
                    }
                }
                Phase::Http => {
                    if now - conn.last_active >= l.idle_timeout {
                        expired.push(key);
                    }
                }
                Phase::Stream => {
                    if now - conn.last_write >= l.heartbeat {
                        heartbeats.push(key);
                    }
                }
                Phase::Closing => {
                    if now - conn.last_active >= l.request_timeout {
                        expired.push(key);
                    }
                }
                Phase::Lingering(deadline) => {
                    if now >= deadline {
                        expired.push(key);
                    }
                }
            }
        }
        for key in expired {
            trace!(self.log, "#{key}: timed out, closing");
            self.close(key, None);
        }
        let timeout = self.cfg.limits.request_timeout;
        for key in timed_out {
            let err =
                HttpError::new(ErrorKind::Timeout, format!("request not complete within {} ms", timeout.as_millis()));
            self.log.access("-", "-", 408, timeout);
            self.send_error(key, &err, Framing { version: 1, keep_alive: false, head_only: false });
            self.settle(key, now);
        }
        for key in heartbeats {
            let cap = self.cfg.limits.sse_buffer;
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.last_write = now;
            if conn.pending() + sse::HEARTBEAT.len() > cap {
                self.close(key, None);
            } else if let Err(e) = conn.queue(sse::HEARTBEAT, now) {
                self.close(key, Some(&e));
            }
        }
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
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.shutdown = Some(now + SHUTDOWN_GRACE);
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let conn = &mut self.conns[key];
            match conn.phase {
                // A call in flight is answered, then closed (no keep-alive).
                Phase::Http if conn.calling => {}
                Phase::Http if !conn.mid_request() => conn.phase = Phase::Closing,
                Phase::Stream => conn.phase = Phase::Closing,
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
