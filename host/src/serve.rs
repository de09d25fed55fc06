//! The HTTP connection layer of a loop: what a readiness event on a
//! connection leads to (pending writes out, new bytes in, complete requests
//! answered in order), guest calls started and finished, responses queued
//! and written once per turn, and closing what is done.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::calls::{self, Slice};
use crate::conn::{Phase, Request};
use crate::dispatch::{Begun, Dispatched, Outcome};
use crate::engine::history::Start;
use crate::engine::kv::Kv;
use crate::event_loop::Server;
use crate::http::request::Head;
use crate::http::response::{self, Framing};
use crate::http::{ErrorKind, HttpError};
use crate::log::trace;

/// Past this many unwritten bytes, a connection's pipelined requests wait
/// until the client reads what it was sent.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// How long a closed-for-writing connection may keep sending before it is cut.
const LINGER: Duration = Duration::from_secs(2);

impl Server {
    /// Everything one readiness event can lead to on connection `key`:
    /// pending writes go out, new bytes come in (only when the event says
    /// there are some), complete requests are answered.
    pub(crate) fn service(&mut self, key: usize, now: Instant, readable: bool, hup: bool) {
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
    pub(crate) fn process(&mut self, key: usize, now: Instant) -> bool {
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
                    self.account(("-", "-"), "unparsed", err.status(), Duration::ZERO, Some(&err.reason));
                    self.send_error(key, &err, Framing { version: 1, keep_alive: false, head_only: false });
                    return true;
                }
            }
        }
    }

    pub(crate) fn respond(&mut self, key: usize, req: Request, now: Instant) {
        trace!(self.log, "#{key}: dispatch {} {}", req.head.method, req.head.path);
        if self.panic_on.as_deref() == Some(req.head.path.as_str()) {
            panic!("HOUSE_TEST_PANIC_PATH: a request for {}", req.head.path);
        }
        let admin = self.conns.get(key).is_some_and(|c| c.admin);
        let (handler, future) = match self.dispatcher.begin(&req, admin) {
            Begun::Done(dispatched) => return self.answer(key, &req.head, req.started, dispatched, now),
            Begun::Call { handler, call } => (handler, call),
        };
        let Some(conn) = self.conns.get_mut(key) else { return };
        let call = self.calls.call((key, conn.id), req.head, req.started, handler, future);
        // Run the first slice now, while the request is hot: most calls end
        // in it. Once this turn's first slices have had their share, later
        // calls start next turn (until then they hold no instance).
        if self.guest_time >= calls::TURN_BUDGET {
            conn.calling = true;
            self.calls.push_fresh(call);
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
            Slice::Parked(call) => {
                trace!(self.log, "#{key}: call parked, {} waiting", self.calls.len() + 1);
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.calling = true;
                }
                self.calls.park(call);
            }
        }
    }

    /// Gives the waiting calls their slices and answers those that ended.
    pub(crate) fn run_calls(&mut self, now: Instant) {
        if self.calls.is_empty() {
            return;
        }
        let conns = &self.conns;
        self.calls.forget_fresh(|call| conns.get(call.key).is_none_or(|c| c.id != call.conn));
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
                    let status = match &dispatched.outcome {
                        Ok(Outcome::Reply { status, .. }) => *status,
                        Ok(_) => 200,
                        Err(e) => e.status(),
                    };
                    let reason = dispatched.outcome.as_ref().err().map(|e| &*e.reason);
                    let took = call.started.elapsed();
                    self.account((&call.head.method, &call.head.path), dispatched.route.label(), status, took, reason);
                    crate::metrics::METRICS.published(dispatched.publishes.len() as u64);
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
    pub(crate) fn answer(&mut self, key: usize, head: &Head, started: Instant, dispatched: Dispatched, now: Instant) {
        let framing = Framing {
            version: head.version,
            keep_alive: head.keep_alive && self.shutdown.is_none(),
            head_only: head.method == "HEAD",
        };
        let Dispatched { outcome, publishes, route } = dispatched;
        let mut refused = None;
        let status = match outcome {
            Ok(Outcome::Reply { status, content_type, headers, body }) => {
                let resp = response::Response { status, content_type: &content_type, headers: &headers, body: &body };
                self.out.clear();
                response::write(&mut self.out, &resp, framing, &self.date);
                self.send(key, !framing.keep_alive);
                status
            }
            Ok(Outcome::Static { file, not_modified }) => {
                let status = if not_modified { 304 } else { 200 };
                let resp = response::Response {
                    status,
                    content_type: &file.content_type,
                    headers: &file.headers,
                    body: &file.body,
                };
                self.out.clear();
                response::write(&mut self.out, &resp, framing, &self.date);
                self.send(key, !framing.keep_alive);
                status
            }
            Ok(Outcome::Stats) => {
                let hub = self.shared.hub.stats();
                let engine = self.shared.engine.stats();
                let kv = self.dispatcher.runtime.kv();
                let body = format!(
                    r#"{{"connections":{},"channels":{},"subscriptions":{},"guest_calls":{},"loops":{},"hub_dropped":{},"engine":"{}","engine_up":{},"engine_refused":{},"history_channels":{},"history_events":{},"history_bytes":{},"kv":"{}","kv_up":{}}}"#,
                    self.shared.connections.load(Ordering::Relaxed),
                    hub.channels,
                    hub.subscriptions,
                    self.dispatcher.runtime.calls_in_flight(),
                    self.cfg.threads,
                    hub.dropped,
                    engine.kind,
                    engine.up,
                    engine.refused,
                    hub.history.channels,
                    hub.history.events,
                    hub.history.bytes,
                    kv.map_or("none", Kv::kind),
                    kv.is_some_and(Kv::up),
                );
                self.reply(key, framing, "application/json", body.as_bytes())
            }
            Ok(Outcome::Metrics) => {
                let body = crate::metrics::render(&self.gauges());
                self.reply(key, framing, "text/plain; version=0.0.4; charset=utf-8", body.as_bytes())
            }
            Ok(Outcome::Stream { first, channels, backlog }) => {
                self.out.clear();
                response::write_sse_head(&mut self.out, &self.date);
                if framing.head_only {
                    self.send(key, true);
                } else if self.shutdown.is_some() {
                    // Shutting down: come back (elsewhere, or here restarted).
                    let retry = self.retry_hint();
                    self.out.extend_from_slice(&retry);
                    self.send(key, true);
                } else {
                    self.out.extend_from_slice(&first);
                    let start = Start { after: head.last_event_id.clone(), backlog };
                    self.open_stream(key, channels, start, now);
                }
                200
            }
            Err(err) => {
                let status = err.status();
                self.send_error(key, &err, framing);
                refused = Some(err);
                status
            }
        };
        // From the request's first byte to its response queued.
        let reason = refused.as_ref().map(|e| &*e.reason);
        self.account((&head.method, &head.path), route.label(), status, started.elapsed(), reason);
        crate::metrics::METRICS.published(publishes.len() as u64);
        for publication in publishes {
            self.publish(&publication.channel, &publication.frame);
        }
    }

    /// Queues a 200 of the host's own; its status.
    fn reply(&mut self, key: usize, framing: Framing, content_type: &str, body: &[u8]) -> u16 {
        let resp = response::Response { status: 200, content_type, headers: &[], body };
        self.out.clear();
        response::write(&mut self.out, &resp, framing, &self.date);
        self.send(key, !framing.keep_alive);
        200
    }

    /// One answered request: the access log and the metrics.
    pub(crate) fn account(
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

    /// The figures a metrics scrape reads now.
    fn gauges(&self) -> crate::metrics::Gauges {
        let hub = self.shared.hub.stats();
        let engine = self.shared.engine.stats();
        crate::metrics::Gauges {
            connections: self.shared.connections.load(Ordering::Relaxed) as u64,
            subscriptions: hub.subscriptions as u64,
            channels: hub.channels as u64,
            calls_in_flight: self.dispatcher.runtime.calls_in_flight() as u64,
            instances_idle: self.dispatcher.runtime.warm().idle() as u64,
            hub_dropped: hub.dropped,
            history_events: hub.history.events as u64,
            history_bytes: hub.history.bytes as u64,
            engine: engine.kind,
            engine_up: engine.up,
            engine_refused: engine.refused,
            kv_up: self.dispatcher.runtime.kv().is_some_and(Kv::up),
        }
    }

    /// A connection accepted over `--max-connections` (within the few
    /// that get an answer at all): 503, then closed.
    pub(crate) fn refuse(&mut self, key: usize, limit: usize) {
        let err = HttpError::new(ErrorKind::Unavailable, format!("server is at its limit of {limit} connections"));
        self.send_error(key, &err, Framing { version: 1, keep_alive: false, head_only: false });
    }

    pub(crate) fn send_error(&mut self, key: usize, err: &HttpError, framing: Framing) {
        self.out.clear();
        response::write_error(&mut self.out, err, framing, &self.date);
        self.send(key, err.closes() || !framing.keep_alive);
    }

    /// Queues `self.out` on connection `key`; it is written when this turn
    /// of the loop ends. Writing the turn's responses back to back, rather
    /// than one per guest call, lets a client woken by the first find the
    /// rest already there: on a busy loop that halves the kernel's cost of
    /// waking clients.
    pub(crate) fn send(&mut self, key: usize, then_close: bool) {
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
    pub(crate) fn flush_turn(&mut self, now: Instant) {
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
    pub(crate) fn settle(&mut self, key: usize, now: Instant) {
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
}
