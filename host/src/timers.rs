//! The periodic timers of a loop, run from one sweep every tick: request
//! and idle timeouts, heartbeats (and silent WebSockets), lingering closes, the cached Date header,
//! the history's expiry. Its own state: when the next sweep is due.

use std::time::{Duration, Instant};

use crate::conn::Phase;
use crate::core::Core;
use crate::log::trace;
use crate::serve::Http;
use crate::streams::Streams;
use crate::websocket::frame;

pub struct Timers {
    /// How often the sweep runs: an eighth of the shortest timeout it
    /// enforces, within 5-250 ms.
    tick: Duration,
    next_tick: Instant,
}

impl Timers {
    pub fn new(core: &Core) -> Timers {
        let l = &core.cfg.limits;
        let shortest = l.request_timeout.min(l.idle_timeout).min(l.heartbeat).min(l.ws_idle_timeout);
        let tick = (shortest / 8).clamp(Duration::from_millis(5), Duration::from_millis(250));
        Timers { tick, next_tick: Instant::now() + tick }
    }

    /// When the loop must wake for the next sweep at the latest.
    pub fn next(&self) -> Instant {
        self.next_tick
    }

    /// Runs the sweep if it is due; returns whether it ran.
    pub fn sweep_if_due(&mut self, core: &mut Core, http: &mut Http, streams: &mut Streams, now: Instant) -> bool {
        if now < self.next_tick {
            return false;
        }
        self.next_tick = now + self.tick;
        sweep(core, http, streams, now);
        true
    }
}

/// The periodic timers: request and idle timeouts, heartbeats, lingering
/// closes, the cached Date header, the history's expiry.
fn sweep(core: &mut Core, http: &mut Http, streams: &mut Streams, now: Instant) {
    core.tick_date();
    // One loop is enough to expire the history the loops share.
    if core.lp == 0 {
        core.shared.hub.expire(now);
    }
    let l = &core.cfg.limits;
    let mut timed_out = Vec::new();
    let mut expired = Vec::new();
    let mut heartbeats = Vec::new();
    let mut silent = Vec::new();
    for (key, conn) in core.conns.iter() {
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
            // (A stream that has not started has written nothing yet.)
            Phase::Stream if conn.opening.is_some() => {}
            Phase::Stream => {
                if conn.ws.as_ref().is_some_and(|ws| now - ws.last_heard >= l.ws_idle_timeout) {
                    silent.push(key);
                } else if now - conn.last_write >= l.heartbeat {
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
        trace!(core.log, "#{key}: timed out, closing");
        core.close(key, None);
    }
    for key in timed_out {
        http.timed_out(core, key, now);
    }
    for key in heartbeats {
        streams.heartbeat(core, key, now);
    }
    for key in silent {
        trace!(core.log, "#{key}: WebSocket silent past --ws-idle-timeout-ms, closing");
        core.close_socket(key, Some(frame::code::GOING_AWAY), "no message or pong within the idle timeout");
    }
}
