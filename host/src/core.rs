//! What every layer of one event loop shares: its connections (and the
//! channels each stream listens to, which closing one must undo), the
//! write path (responses queued during a turn, written once at its end),
//! and closing what is done. The layers above own the rest: the HTTP
//! connection layer (`serve`), the streams (`streams`), the timers
//! (`timers`), and the loop itself (`event_loop`) its sockets and poll.
//!
//! One file may change a connection's buffers and phase from any layer
//! through these methods; only this one removes a connection.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use slab::Slab;

use crate::config::Config;
use crate::conn::{Conn, Phase};
use crate::http::HttpError;
use crate::http::response::{self, Framing};
use crate::hub::Hub;
use crate::log::{Log, trace};
use crate::metrics::LoopMetrics;
use crate::sse::Channels;
use crate::websocket::frame;

/// How long a closed-for-writing connection may keep sending before it is cut.
const LINGER: Duration = Duration::from_secs(2);

/// What the loops of one process share.
pub struct Shared {
    pub hub: Arc<Hub>,
    /// Where channels live beyond this process (for the stats).
    pub engine: crate::engine::Running,
    /// Open connections, all loops together (`--max-connections`).
    pub connections: AtomicUsize,
    /// Those of them that are WebSockets.
    pub sockets: AtomicUsize,
    /// A signal asked the process to stop (said once, by the loop that saw
    /// it first).
    pub stopping: AtomicBool,
    /// Who is in which channel.
    pub presence: Arc<crate::engine::presence::Presence>,
}

pub struct Core {
    /// This loop's number: its place in the hub.
    pub lp: usize,
    /// The poll's registry, to deregister what closes.
    registry: mio::Registry,
    pub conns: Slab<Conn>,
    /// Which of this loop's connections listen to which channel.
    pub channels: Channels,
    pub shared: Arc<Shared>,
    pub cfg: Config,
    pub log: Log,
    /// This loop's request figures (None: `--no-metrics`).
    pub metrics: Option<Arc<LoopMetrics>>,
    /// The response being made (then queued by [`Core::send`]).
    pub out: Vec<u8>,
    /// Connections with responses queued this turn (see `send`).
    unflushed: Vec<usize>,
    /// The cached `Date` header, and the second it says.
    pub date: String,
    date_second: u64,
    /// Set once a signal asked us to stop; the deadline for pending writes.
    pub shutdown: Option<Instant>,
}

impl Core {
    pub fn new(lp: usize, registry: mio::Registry, shared: Arc<Shared>, cfg: Config, log: Log) -> Core {
        let metrics = cfg.metrics.then(LoopMetrics::register);
        Core {
            lp,
            registry,
            conns: Slab::with_capacity(1024),
            channels: Channels::default(),
            shared,
            cfg,
            log,
            metrics,
            out: Vec::with_capacity(16 * 1024),
            unflushed: Vec::with_capacity(1024),
            date: httpdate::fmt_http_date(SystemTime::now()),
            date_second: 0,
            shutdown: None,
        }
    }

    /// The `Date` header follows the clock (once a second is enough).
    pub fn tick_date(&mut self) {
        let wall = SystemTime::now();
        let second = wall.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.date_second {
            self.date_second = second;
            self.date = httpdate::fmt_http_date(wall);
        }
    }

    /// Queues `self.out` on connection `key`; it is written when this turn
    /// of the loop ends. Writing the turn's responses back to back, rather
    /// than one per guest call, lets a client woken by the first find the
    /// rest already there: on a busy loop that halves the kernel's cost of
    /// waking clients.
    pub fn send(&mut self, key: usize, then_close: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.defer(&self.out);
        if then_close {
            conn.phase = Phase::Closing;
        }
        self.flush_at_end(key);
    }

    /// Connection `key` has bytes to write when this turn ends.
    pub fn flush_at_end(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key)
            && !conn.flush_due
        {
            conn.flush_due = true;
            self.unflushed.push(key);
        }
    }

    pub fn send_error(&mut self, key: usize, err: &HttpError, framing: Framing) {
        self.out.clear();
        response::write_error(&mut self.out, err, framing, &self.date);
        self.send(key, err.closes() || !framing.keep_alive);
    }

    /// Writes what this turn queued, then closes what is done.
    pub fn flush_turn(&mut self, now: Instant) {
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

    /// After a connection was serviced: close what is done.
    pub fn settle(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.calling {
            // Settled when the call ends (see `Http::run_calls`).
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

    /// Ends WebSocket `key` with a close frame (`code`, none to echo a
    /// close without one): nothing is sent after it, and the connection
    /// closes once it is written and the client has closed too (or the
    /// linger ends).
    pub fn close_socket(&mut self, key: usize, code: Option<u16>, reason: &str) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let Some(ws) = &mut conn.ws else { return };
        conn.phase = Phase::Closing;
        if !ws.closed {
            ws.closed = true;
            let mut close = Vec::new();
            match code {
                Some(code) => frame::encode_close(&mut close, code, reason),
                None => frame::encode(&mut close, frame::Opcode::Close, &[]),
            }
            conn.defer(&close);
        }
        // Written (then settled: shut down, lingering) when the turn ends.
        self.flush_at_end(key);
    }

    /// Removes connection `key`: its socket, its subscriptions, its count.
    pub fn close(&mut self, key: usize, err: Option<&io::Error>) {
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
        if conn.ws.is_some() {
            self.shared.sockets.fetch_sub(1, Ordering::Relaxed);
        }
        for channel in &conn.channels {
            if self.channels.unsubscribe(channel, key) {
                self.shared.hub.unlisten(self.lp, channel);
            }
        }
        self.shared.hub.count_subscriptions(0, conn.channels.len());
        for (channel, info) in &conn.members {
            self.shared.presence.leave(channel, info);
        }
        let _ = self.registry.deregister(conn.socket());
    }

    /// One answered request: the access log and the metrics.
    pub fn account(
        &mut self,
        (method, path): (&str, &str),
        route: &str,
        status: u16,
        took: Duration,
        reason: Option<&str>,
    ) {
        self.log.access(method, path, status, took, reason);
        if let Some(m) = &self.metrics {
            m.request(route, status, took);
        }
    }
}

/// A peer going away is normal, not worth a log line.
fn is_disconnect(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted)
}
