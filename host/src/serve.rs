//! The HTTP connection layer of a loop: what a readiness event on a
//! connection leads to (pending writes out, new bytes in, complete requests
//! answered in order), guest calls started and finished, and responses
//! queued (the core writes them once per turn). Its own state: the read
//! scratch buffer, the dispatcher and the guest calls in flight.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::calls::{self, Calls, Finished, Slice};
use crate::conn::{Phase, Request};
use crate::core::Core;
use crate::dispatch::{Begun, Dispatched, Dispatcher, Outcome};
use crate::engine::history::Start;
use crate::engine::kv::Kv;
use crate::http::request::Head;
use crate::http::response::{self, Framing};
use crate::http::{ErrorKind, HttpError};
use crate::log::trace;
use crate::streams::Streams;
use crate::websocket::frame::{self, Message, Opcode};
use crate::websocket::{Session, handshake, messages};

/// Past this many unwritten bytes, a connection's pipelined requests wait
/// until the client reads what it was sent.
const WRITE_HIGH_WATER: usize = 256 * 1024;

pub struct Http {
    /// Where reads land before a request's bytes are kept (one for every
    /// connection of the loop: an idle connection holds no buffer).
    scratch: Vec<u8>,
    pub dispatcher: Dispatcher,
    /// Guest calls that yielded, waiting for another slice.
    pub calls: Calls,
    /// Calls that ended this turn (kept to reuse the allocation).
    finished: Vec<Finished>,
    /// Guest time spent this turn on calls' first slices (see `respond`).
    pub guest_time: Duration,
    /// `HOUSE_TEST_PANIC_PATH`: a request for this path panics the loop
    /// that reads it, so that a test can show what a panic does (there is
    /// no other way to make one on purpose). Unset in production.
    panic_on: Option<String>,
}

impl Http {
    pub fn new(dispatcher: Dispatcher, calls: Calls) -> Http {
        Http {
            scratch: vec![0; 64 * 1024],
            dispatcher,
            calls,
            finished: Vec::new(),
            guest_time: Duration::ZERO,
            panic_on: std::env::var("HOUSE_TEST_PANIC_PATH").ok(),
        }
    }

    /// Everything one readiness event can lead to on connection `key`:
    /// pending writes go out, new bytes come in (only when the event says
    /// there are some), complete requests are answered.
    pub fn service(
        &mut self,
        core: &mut Core,
        streams: &mut Streams,
        key: usize,
        now: Instant,
        readable: bool,
        hup: bool,
    ) {
        // What a connection may have read and not consumed: a request, or
        // a socket's largest message (its frames' headers and the control
        // frames between them within the 64 KiB), whichever is larger.
        let l = &core.cfg.limits;
        let cap = (l.max_head + l.max_body).max(l.ws_max_message) + 64 * 1024;
        let mut read = readable || hup;
        loop {
            let Some(conn) = core.conns.get_mut(key) else { return };
            if let Err(e) = conn.flush(now) {
                return core.close(key, Some(&e));
            }
            if read {
                match conn.read(&mut self.scratch, cap, now, hup) {
                    Ok(n) if n > 0 => {
                        trace!(core.log, "#{key}: read {n} bytes");
                        if let Some(ws) = &mut conn.ws {
                            ws.last_heard = now;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return core.close(key, Some(&e)),
                }
            }
            let answered = self.process(core, streams, key, now);
            // Read again only if reading stopped at the cap and answering
            // made room; otherwise the next readiness event brings us back.
            read = answered && core.conns.get(key).is_some_and(|c| c.read_stopped);
            if !read {
                break;
            }
        }
        core.settle(key, now);
    }

    /// Answers the complete requests in the read buffer, in order. Returns
    /// whether any was answered.
    fn process(&mut self, core: &mut Core, streams: &mut Streams, key: usize, now: Instant) -> bool {
        let mut answered = false;
        loop {
            let Some(conn) = core.conns.get_mut(key) else {
                return answered;
            };
            // A socket (perhaps upgraded by the request just answered,
            // with frames its client sent right behind it).
            if conn.ws.is_some() {
                return self.messages(core, streams, key, now) || answered;
            }
            if conn.phase != Phase::Http || conn.calling || conn.pending() > WRITE_HIGH_WATER {
                return answered;
            }
            match conn.next_request(&core.cfg.limits, now) {
                Ok(None) => return answered,
                Ok(Some(req)) => {
                    answered = true;
                    trace!(
                        core.log,
                        "#{key}: parsed {} {} ({} body bytes)",
                        req.head.method,
                        req.head.path,
                        req.body.len()
                    );
                    self.respond(core, streams, key, req, now);
                }
                Err(err) => {
                    trace!(core.log, "#{key}: framing error: {}", err.reason);
                    core.account(("-", "-"), "unparsed", err.status(), Duration::ZERO, Some(&err.reason));
                    core.send_error(key, &err, Framing { version: 1, keep_alive: false, head_only: false });
                    return true;
                }
            }
        }
    }

    /// Answers the whole messages a WebSocket's client has sent, in order
    /// (one guest call at a time, as a connection's requests are), and its
    /// control frames. Returns whether any was taken.
    fn messages(&mut self, core: &mut Core, streams: &mut Streams, key: usize, now: Instant) -> bool {
        let mut taken = false;
        loop {
            let Some(conn) = core.conns.get_mut(key) else { return taken };
            if conn.phase != Phase::Stream || conn.calling || conn.pending() > WRITE_HIGH_WATER {
                return taken;
            }
            let message = match conn.next_message() {
                Ok(None) => return taken,
                Ok(Some(message)) => message,
                Err(violation) => {
                    trace!(core.log, "#{key}: WebSocket closed: {violation}");
                    core.close_socket(key, Some(violation.code), violation.reason);
                    return true;
                }
            };
            taken = true;
            match message {
                Message::Text(text) => {
                    let Some(ws) = &conn.ws else { return taken };
                    let head = ws.message_head();
                    trace!(core.log, "#{key}: message of {} bytes", text.len());
                    let req = Request { head, body: text.into_bytes(), started: now };
                    self.respond(core, streams, key, req, now);
                }
                Message::Ping(payload) => {
                    let mut pong = Vec::with_capacity(payload.len() + 2);
                    frame::encode(&mut pong, Opcode::Pong, &payload);
                    conn.defer(&pong);
                    core.flush_at_end(key);
                }
                Message::Pong(_) => {}
                // The client's close is echoed with its code (RFC 6455 5.5.1).
                Message::Close(code, _) => core.close_socket(key, code, ""),
                Message::Binary(_) => core.close_socket(
                    key,
                    Some(frame::code::UNSUPPORTED),
                    "binary messages are not taken: send JSON as text",
                ),
            }
        }
    }

    fn respond(&mut self, core: &mut Core, streams: &mut Streams, key: usize, mut req: Request, now: Instant) {
        trace!(core.log, "#{key}: dispatch {} {}", req.head.method, req.head.path);
        // A browser's WebSocket cannot send Last-Event-ID: the query can.
        if req.head.websocket
            && let Some(id) = handshake::take_resume(&mut req.head.query)
        {
            req.head.last_event_id = Some(id);
        }
        if self.panic_on.as_deref() == Some(req.head.path.as_str()) {
            panic!("HOUSE_TEST_PANIC_PATH: a request for {}", req.head.path);
        }
        let admin = core.conns.get(key).is_some_and(|c| c.admin);
        let (handler, future) = match self.dispatcher.begin(&req, admin) {
            Begun::Done(dispatched) => return self.answer(core, streams, key, &req.head, req.started, dispatched, now),
            Begun::Call { handler, call } => (handler, call),
        };
        let Some(conn) = core.conns.get_mut(key) else { return };
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
                let dispatched = self.dispatcher.finish(&call.handler, result, &mut core.log);
                self.answer(core, streams, key, &call.head, call.started, dispatched, now);
            }
            Slice::Yielded(call) => {
                trace!(core.log, "#{key}: call yielded, {} waiting", self.calls.len() + 1);
                if let Some(conn) = core.conns.get_mut(key) {
                    conn.calling = true;
                }
                self.calls.push(call);
            }
            Slice::Parked(call) => {
                trace!(core.log, "#{key}: call parked, {} waiting", self.calls.len() + 1);
                if let Some(conn) = core.conns.get_mut(key) {
                    conn.calling = true;
                }
                self.calls.park(call);
            }
        }
    }

    /// Gives the waiting calls their slices and answers those that ended.
    pub fn run_calls(&mut self, core: &mut Core, streams: &mut Streams, now: Instant) {
        if self.calls.is_empty() {
            return;
        }
        let conns = &core.conns;
        self.calls.forget_fresh(|call| conns.get(call.key).is_none_or(|c| c.id != call.conn));
        let mut finished = std::mem::take(&mut self.finished);
        self.calls.run(&mut finished);
        for (call, result) in finished.drain(..) {
            let dispatched = self.dispatcher.finish(&call.handler, result, &mut core.log);
            let live = core.conns.get_mut(call.key).filter(|c| c.id == call.conn);
            match live {
                Some(conn) => {
                    conn.calling = false;
                    self.answer(core, streams, call.key, &call.head, call.started, dispatched, now);
                    // Requests that arrived meanwhile, and a close that did.
                    self.service(core, streams, call.key, now, false, false);
                }
                None => {
                    // The client left; what the call published still stands.
                    trace!(core.log, "#{}: call ended after its connection closed", call.key);
                    let status = match &dispatched.outcome {
                        Ok(Outcome::Reply { status, .. }) => *status,
                        Ok(_) => 200,
                        Err(e) => e.status(),
                    };
                    let reason = dispatched.outcome.as_ref().err().map(|e| &*e.reason);
                    let took = call.started.elapsed();
                    core.account((&call.head.method, &call.head.path), dispatched.route.label(), status, took, reason);
                    crate::metrics::METRICS.published(dispatched.publishes.len() as u64);
                    for publication in dispatched.publishes {
                        streams.publish(core, &publication.channel, &publication.frame);
                    }
                }
            }
        }
        self.finished = finished;
    }

    /// Queues the response to a request whose dispatch is complete, logs it,
    /// then applies what it published.
    #[allow(clippy::too_many_arguments)] // the layers it joins, and the request
    fn answer(
        &mut self,
        core: &mut Core,
        streams: &mut Streams,
        key: usize,
        head: &Head,
        started: Instant,
        dispatched: Dispatched,
        now: Instant,
    ) {
        let framing = Framing {
            version: head.version,
            keep_alive: head.keep_alive && core.shutdown.is_none(),
            head_only: head.method == "HEAD",
        };
        let Dispatched { outcome, publishes, route } = dispatched;
        let mut refused = None;
        let socket = core.conns.get(key).is_some_and(|c| c.ws.is_some());
        let status = match outcome {
            // A message's answer, on its socket.
            _ if socket => {
                let mut frame = Vec::new();
                let status = match outcome {
                    Ok(Outcome::Reply { status, body, .. }) => {
                        messages::reply(&mut frame, status, &body);
                        status
                    }
                    Ok(_) => {
                        messages::refusal(&mut frame, 500, "a message is answered by a message handler", false);
                        500
                    }
                    Err(err) => {
                        let unknown = err.kind == ErrorKind::OutcomeUnknown;
                        messages::refusal(&mut frame, err.status(), &err.reason, unknown);
                        let status = err.status();
                        refused = Some(err);
                        status
                    }
                };
                if let Some(conn) = core.conns.get_mut(key)
                    && conn.phase == Phase::Stream
                {
                    conn.defer(&frame);
                    core.flush_at_end(key);
                }
                status
            }
            Ok(Outcome::Stream { first, channels, members, backlog }) if head.websocket => {
                match self.dispatcher.handshake(head) {
                    Ok(_) if core.shutdown.is_some() => {
                        let err = HttpError::new(ErrorKind::Unavailable, "the server is shutting down");
                        core.send_error(key, &err, framing);
                        503
                    }
                    Ok(accept) => {
                        core.out.clear();
                        handshake::write_switch(&mut core.out, &accept);
                        messages::from_sse(&first, &mut core.out);
                        if let Some(conn) = core.conns.get_mut(key) {
                            let (max, path, query) = (core.cfg.limits.ws_max_message, &head.path, &head.query);
                            let raw = self.dispatcher.socket_headers(head);
                            conn.ws = Some(Box::new(Session::new(max, path.clone(), query.clone(), raw, now)));
                            core.shared.sockets.fetch_add(1, Ordering::Relaxed);
                        }
                        let start = Start { after: head.last_event_id.clone(), backlog };
                        streams.open_stream(core, key, (channels, members), start, now);
                        101
                    }
                    Err(err) => {
                        let status = err.status();
                        core.send_error(key, &err, framing);
                        refused = Some(err);
                        status
                    }
                }
            }
            Ok(Outcome::Reply { status, content_type, headers, body }) => {
                let resp = response::Response { status, content_type: &content_type, headers: &headers, body: &body };
                core.out.clear();
                response::write(&mut core.out, &resp, framing, &core.date);
                core.send(key, !framing.keep_alive);
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
                core.out.clear();
                response::write(&mut core.out, &resp, framing, &core.date);
                core.send(key, !framing.keep_alive);
                status
            }
            Ok(Outcome::Stats) => {
                let body = self.stats(core);
                reply(core, key, framing, "application/json", body.as_bytes())
            }
            Ok(Outcome::Metrics) => {
                let body = crate::metrics::render(&self.gauges(core));
                reply(core, key, framing, "text/plain; version=0.0.4; charset=utf-8", body.as_bytes())
            }
            Ok(Outcome::Stream { first, channels, members, backlog }) => {
                core.out.clear();
                response::write_sse_head(&mut core.out, &core.date);
                if framing.head_only {
                    core.send(key, true);
                } else if core.shutdown.is_some() {
                    // Shutting down: come back (elsewhere, or here restarted).
                    let retry = streams.retry_hint(&core.cfg);
                    core.out.extend_from_slice(&retry);
                    core.send(key, true);
                } else {
                    core.out.extend_from_slice(&first);
                    let start = Start { after: head.last_event_id.clone(), backlog };
                    streams.open_stream(core, key, (channels, members), start, now);
                }
                200
            }
            Err(err) => {
                let status = err.status();
                core.send_error(key, &err, framing);
                refused = Some(err);
                status
            }
        };
        // From the request's first byte to its response queued.
        let reason = refused.as_ref().map(|e| &*e.reason);
        core.account((&head.method, &head.path), route.label(), status, started.elapsed(), reason);
        crate::metrics::METRICS.published(publishes.len() as u64);
        for publication in publishes {
            streams.publish(core, &publication.channel, &publication.frame);
        }
    }

    /// `/_house/stats`: the process's figures now.
    fn stats(&self, core: &Core) -> String {
        let hub = core.shared.hub.stats();
        let engine = core.shared.engine.stats();
        let kv = self.dispatcher.runtime.kv();
        format!(
            r#"{{"connections":{},"websockets":{},"channels":{},"subscriptions":{},"guest_calls":{},"loops":{},"hub_dropped":{},"engine":"{}","engine_up":{},"engine_refused":{},"history_channels":{},"history_events":{},"history_bytes":{},"kv":"{}","kv_up":{}}}"#,
            core.shared.connections.load(Ordering::Relaxed),
            core.shared.sockets.load(Ordering::Relaxed),
            hub.channels,
            hub.subscriptions,
            self.dispatcher.runtime.calls_in_flight(),
            core.cfg.threads,
            hub.dropped,
            engine.kind,
            engine.up,
            engine.refused,
            hub.history.channels,
            hub.history.events,
            hub.history.bytes,
            kv.map_or("none", Kv::kind),
            kv.is_some_and(Kv::up),
        )
    }

    /// The figures a metrics scrape reads now.
    fn gauges(&self, core: &Core) -> crate::metrics::Gauges {
        let hub = core.shared.hub.stats();
        let engine = core.shared.engine.stats();
        crate::metrics::Gauges {
            connections: core.shared.connections.load(Ordering::Relaxed) as u64,
            websockets: core.shared.sockets.load(Ordering::Relaxed) as u64,
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
    pub fn refuse(&mut self, core: &mut Core, key: usize, limit: usize) {
        let err = HttpError::new(ErrorKind::Unavailable, format!("server is at its limit of {limit} connections"));
        core.send_error(key, &err, Framing { version: 1, keep_alive: false, head_only: false });
    }

    /// A request that did not arrive whole within `--request-timeout-ms`:
    /// 408, then closed.
    pub fn timed_out(&mut self, core: &mut Core, key: usize, now: Instant) {
        let timeout = core.cfg.limits.request_timeout;
        let err = HttpError::new(ErrorKind::Timeout, format!("request not complete within {} ms", timeout.as_millis()));
        core.account(("-", "-"), "unparsed", 408, timeout, Some("the request took too long to arrive"));
        core.send_error(key, &err, Framing { version: 1, keep_alive: false, head_only: false });
        core.settle(key, now);
    }
}

/// Queues a 200 of the host's own; its status.
fn reply(core: &mut Core, key: usize, framing: Framing, content_type: &str, body: &[u8]) -> u16 {
    let resp = response::Response { status: 200, content_type, headers: &[], body };
    core.out.clear();
    response::write(&mut core.out, &resp, framing, &core.date);
    core.send(key, !framing.keep_alive);
    200
}
