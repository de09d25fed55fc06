//! The periodic timers of a loop, run from one sweep every tick: request
//! and idle timeouts, heartbeats, lingering closes, the cached Date header,
//! a paused accept.

use std::time::{Instant, SystemTime};

use crate::conn::Phase;
use crate::event_loop::Server;
use crate::http::response::Framing;
use crate::http::{ErrorKind, HttpError};
use crate::log::trace;
use crate::sse;

impl Server {
    /// The periodic timers: request and idle timeouts, heartbeats, lingering
    /// closes, the cached Date header, a paused accept.
    pub(crate) fn sweep(&mut self, now: Instant) {
        let wall = SystemTime::now();
        let second = wall.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.date_second {
            self.date_second = second;
            self.date = httpdate::fmt_http_date(wall);
        }
        // One loop is enough to expire the history the loops share.
        if self.lp == 0 {
            self.shared.hub.expire(now);
        }
        if std::mem::take(&mut self.accept_paused) {
            self.accept(now, false);
            self.accept(now, true);
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
                // (A stream that has not started has written nothing yet.)
                Phase::Stream if conn.opening.is_some() => {}
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
            self.account(("-", "-"), "unparsed", 408, timeout, Some("the request took too long to arrive"));
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
}
