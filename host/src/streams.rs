//! Server-Sent Events on a loop: opening a stream, publishing (through the
//! hub, to every loop), and fanning out what the hub delivers to this
//! loop's subscribers.

use std::sync::Arc;
use std::time::Instant;

use crate::conn::Phase;
use crate::event_loop::Server;
use crate::log::trace;

impl Server {
    pub(crate) fn open_stream(&mut self, key: usize, channels: Vec<String>, now: Instant) {
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

    /// Publishes one framed event to `channel` on every loop (this one
    /// included: its subscribers get it when this turn delivers).
    pub(crate) fn publish(&mut self, channel: &str, frame: &Arc<[u8]>) {
        self.shared.hub.publish(self.lp, channel, frame);
    }

    /// Fans out what the hub holds for this loop, in publish order. If some
    /// of it was dropped (this loop fell that far behind), every stream of
    /// this loop is closed rather than left with a silent gap.
    pub(crate) fn deliver(&mut self, now: Instant) {
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
    pub(crate) fn fan_out(&mut self, channel: &str, frame: &[u8], now: Instant) {
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
}
