//! Server-Sent Events on a loop: opening a stream (with what its history
//! owes it: a replay after `Last-Event-ID`, a reset, a backlog), publishing
//! (through the hub, to every loop), fanning out what the hub delivers to
//! this loop's subscribers, and ending streams with a reconnection hint.
//! Its own state: the hub's deliveries being fanned out, and the spread of
//! retry hints; the connections and their channels are the core's.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::conn::{Opening, Phase};
use crate::core::Core;
use crate::engine::history::{self, EventId, Replay, Start};
use crate::hub::{Delivery, Opener};
use crate::log::trace;
use crate::sse;
use crate::websocket::{frame, messages};

/// A WebSocket heartbeat: a ping without a payload.
const PING: &[u8] = &[0x89, 0x00];

/// What a stream subscribes to: its channels, and (channel, info) of those
/// it is a member of (presence).
pub type Subscribed = (Vec<String>, Vec<(String, String)>);

pub struct Streams {
    /// Events from the hub, being fanned out.
    inbox: VecDeque<Delivery>,
    /// A run of them on one channel (see `deliver`; kept for its allocation).
    run: Vec<(Option<EventId>, Arc<[u8]>)>,
    /// Spreads the retry hints of streams ended by shutdown or a resync.
    jitter: Jitter,
}

impl Streams {
    pub fn new(seed: u64) -> Streams {
        Streams { inbox: VecDeque::new(), run: Vec::new(), jitter: Jitter::new(seed) }
    }

    /// Opens a stream on connection `key`: `core.out` holds its response
    /// head and first event. Subscribed here at once; it starts (head,
    /// first event, replay) when the engine says what it is owed, which
    /// the memory engine does now.
    pub fn open_stream(&mut self, core: &mut Core, key: usize, subscribed: Subscribed, start: Start, now: Instant) {
        let (channels, members) = subscribed;
        let Some(conn) = core.conns.get_mut(key) else {
            return;
        };
        conn.become_stream();
        let mut fresh = Vec::new();
        let mut names: Vec<Arc<str>> = Vec::with_capacity(channels.len());
        for channel in channels {
            trace!(core.log, "#{key}: subscribed to {channel:?}");
            let name: Arc<str> = channel.into();
            if core.channels.subscribe(&name, key) {
                fresh.push(name.clone());
            }
            names.push(name);
        }
        core.shared.hub.count_subscriptions(names.len(), 0);
        let opener = Opener { lp: core.lp, key, conn: conn.id };
        conn.channels = names;
        match core.shared.hub.open(opener, &fresh, &conn.channels, &start) {
            Some(replay) => {
                join(core, key, members);
                core.send(key, false);
                self.start_stream(core, key, replay, now);
            }
            None => {
                trace!(core.log, "#{key}: stream waits for the engine");
                let prelude = core.out.clone();
                conn.opening = Some(Box::new(Opening { prelude, held: Vec::new(), held_bytes: 0, members }));
            }
        }
    }

    /// Sends a stream what it is owed, then what arrived while it waited
    /// (without what the replay already had), and makes it live.
    fn start_stream(&mut self, core: &mut Core, key: usize, replay: Replay, now: Instant) {
        let cap = core.cfg.limits.sse_buffer;
        let Some(conn) = core.conns.get_mut(key) else { return };
        let mut opening = conn.opening.take();
        if let Some(opening) = &opening {
            conn.defer(&opening.prelude);
        }
        // Its memberships, once it listens: on Redis its own join (and the
        // others' from now on) then reaches it through its subscription.
        if let Some(opening) = &mut opening {
            join(core, key, std::mem::take(&mut opening.members));
        }
        let Some(conn) = core.conns.get_mut(key) else { return };
        if let Err(e) = conn.flush(now) {
            return core.close(key, Some(&e));
        }
        conn.live_after = replay.live_after;
        // One write for the whole replay: a thousand streams resuming at
        // once cost a thousand writes, not fifty thousand. What the socket
        // does not take waits in the buffer, within the subscriber's cap.
        let mut out = if replay.reset { history::reset_frame(replay.position) } else { Vec::new() };
        for frame in &replay.frames {
            out.extend_from_slice(frame);
        }
        if conn.ws.is_some() {
            let sse = std::mem::take(&mut out);
            messages::from_sse(&sse, &mut out);
        }
        trace!(core.log, "#{key}: stream starts: reset {}, {} replayed", replay.reset, replay.frames.len());
        if let Err(e) = conn.queue(&out, now) {
            return core.close(key, Some(&e));
        }
        if conn.pending() > cap {
            let peer = conn.peer;
            core.log.line(format_args!("house: dropped subscriber {peer}: its replay is over the cap unread"));
            return core.close(key, None);
        }
        conn.last_write = now;
        if let Some(opening) = opening {
            for (channel, id, frame) in opening.held {
                queue_event(core, key, &channel, id, &frame, now);
            }
        }
        core.flush_at_end(key);
    }

    /// Announces the presence changes that are due (joins, leaves), each
    /// as an event on its channel.
    pub fn announce(&mut self, core: &mut Core, now: Instant) {
        for batch in core.shared.presence.due(now) {
            // On Redis the hosts' members are one set: its script decides
            // what to announce, and the events come back like any other.
            if let Some(remote) = core.shared.presence.remote() {
                remote.apply(batch);
                continue;
            }
            for a in batch.announcements() {
                let event = sse::Event { data: a.data, event: Some(a.event.to_owned()), ..Default::default() };
                let frame: Arc<[u8]> = sse::frame(&event).into();
                trace!(core.log, "presence: {} on {:?}", a.event, a.channel);
                core.shared.hub.publish(core.lp, &a.channel, &frame);
            }
        }
    }

    /// Publishes one event (framed, without an id) to `channel` on every
    /// loop and host (this loop included: its subscribers get it when the
    /// hub delivers).
    pub fn publish(&mut self, core: &mut Core, channel: &str, body: &Arc<[u8]>) {
        core.shared.hub.publish(core.lp, channel, body);
    }

    /// Fans out what the hub holds for this loop, in publish order. If some
    /// of it was dropped (this loop fell that far behind), every stream of
    /// this loop is closed rather than left with a silent gap: browsers
    /// reconnect with their last id and are replayed what they missed.
    pub fn deliver(&mut self, core: &mut Core, now: Instant) {
        // The resync flag is taken before the inbox: a stream whose start
        // the engine queued before its outage (answered by the connection
        // that then failed) is in this drain, started, then resynced with
        // the rest; taken after, it could be left out as still opening.
        let resync = core.shared.hub.take_resync(core.lp);
        let mut inbox = std::mem::take(&mut self.inbox);
        let overflowed = core.shared.hub.drain(core.lp, &mut inbox);
        // Consecutive events of one channel go out as one run.
        let mut run = std::mem::take(&mut self.run);
        let mut run_channel: Option<Arc<str>> = None;
        for delivery in inbox.drain(..) {
            match delivery {
                Delivery::Event { channel, id, frame } => {
                    if run_channel.as_ref() != Some(&channel) {
                        if let Some(done) = run_channel.take() {
                            fan_out(core, &done, &mut run, now);
                        }
                        run_channel = Some(channel);
                    }
                    run.push((id, frame));
                }
                Delivery::Opened { key, conn, replay } => {
                    if let Some(done) = run_channel.take() {
                        fan_out(core, &done, &mut run, now);
                    }
                    if core.conns.get(key).is_some_and(|c| c.id == conn && c.opening.is_some()) {
                        self.start_stream(core, key, replay, now);
                    }
                }
            }
        }
        if let Some(done) = run_channel {
            fan_out(core, &done, &mut run, now);
        }
        self.run = run;
        self.inbox = inbox;
        if resync {
            // Streams still opening are left alone: the engine answers them
            // from its new connection (or with a reset if that fails too),
            // so they miss nothing; ending one would close it before its
            // response head.
            let streams: Vec<usize> = core
                .conns
                .iter()
                .filter(|(_, c)| c.phase == Phase::Stream && c.opening.is_none())
                .map(|(k, _)| k)
                .collect();
            trace!(core.log, "resyncing {} streams after an engine outage", streams.len());
            for key in streams {
                self.end_stream(core, key, now);
                core.settle(key, now);
            }
        }
        if overflowed {
            let streams: Vec<usize> =
                core.conns.iter().filter(|(_, c)| c.phase == Phase::Stream).map(|(k, _)| k).collect();
            core.log.line(format_args!(
                "house: this loop fell over --hub-queue-events {} events behind: closed its {} streams",
                core.cfg.hub_queue,
                streams.len()
            ));
            for key in streams {
                core.close(key, None);
            }
        }
    }

    /// Ends stream `key` (shutdown) with a reconnection delay spread over
    /// half to one and a half `--retry-ms`, so that a thousand pages do not
    /// come back in the same millisecond.
    pub fn end_stream(&mut self, core: &mut Core, key: usize, now: Instant) {
        let retry = self.retry_hint(&core.cfg);
        let Some(conn) = core.conns.get_mut(key) else { return };
        match &mut conn.ws {
            // A socket is told why (1001: going away); its page reconnects
            // with its last id, as an EventSource would.
            Some(ws) if !ws.closed => {
                ws.closed = true;
                let mut close = Vec::new();
                frame::encode_close(&mut close, frame::code::GOING_AWAY, "the server is restarting; reconnect");
                let _ = conn.queue(&close, now);
            }
            Some(_) => {}
            None if conn.opening.is_none() => {
                let _ = conn.queue(&retry, now);
            }
            None => {}
        }
        conn.phase = Phase::Closing;
    }

    /// `retry: N` with N spread over half to one and a half `--retry-ms`.
    pub fn retry_hint(&mut self, cfg: &Config) -> Vec<u8> {
        let base = cfg.retry.as_millis().min(u32::MAX as u128 / 2) as u64;
        let retry = base / 2 + self.jitter.draw() % (base + 1);
        format!("retry: {retry}\n\n").into_bytes()
    }

    /// A heartbeat comment on live stream `key`, quiet for `--heartbeat-ms`
    /// (a proxy or browser that sees nothing for long closes the stream);
    /// one with no room for it is not keeping up, and is closed.
    pub fn heartbeat(&mut self, core: &mut Core, key: usize, now: Instant) {
        let cap = core.cfg.limits.sse_buffer;
        let Some(conn) = core.conns.get_mut(key) else {
            return;
        };
        conn.last_write = now;
        // A socket's heartbeat is a ping: its browser answers with a pong,
        // which tells a live peer from a gone one (`--ws-idle-timeout-ms`).
        let beat: &[u8] = if conn.ws.is_some() { PING } else { sse::HEARTBEAT };
        if conn.pending() + beat.len() > cap {
            core.close(key, None);
        } else if let Err(e) = conn.queue(beat, now) {
            core.close(key, Some(&e));
        }
    }
}

/// Makes stream `key` a member of each (channel, info) of `members`, as far
/// as `--presence-max-members` allows.
fn join(core: &mut Core, key: usize, members: Vec<(String, String)>) {
    let Some(conn) = core.conns.get_mut(key) else { return };
    for (channel, info) in members {
        let (channel, info): (Arc<str>, Arc<str>) = (channel.into(), info.into());
        if core.shared.presence.join(&channel, &info) {
            conn.members.push((channel, info));
        } else {
            let limit = core.shared.presence.limits().max_members;
            core.log.line(format_args!(
                "house: {channel:?} has --presence-max-members {limit}: {} is subscribed, not a member",
                conn.peer
            ));
        }
    }
}

/// Queues a run of events of `channel` (consecutive in the inbox) on every
/// subscriber of it on this loop, and empties `run`. A burst goes out as one
/// write per subscriber, not one per event; a stream that has not started,
/// or still skips what its replay had, takes them one by one.
fn fan_out(core: &mut Core, channel: &Arc<str>, run: &mut Vec<(Option<EventId>, Arc<[u8]>)>, now: Instant) {
    let subscribers = core.channels.subscribers(channel);
    trace!(core.log, "publish {} to {channel:?}: {} subscribers", run.len(), subscribers.len());
    let joined: Option<Vec<u8>> = (run.len() > 1).then(|| run.iter().flat_map(|(_, f)| f.iter().copied()).collect());
    let sse: &[u8] = joined.as_deref().unwrap_or_else(|| run.first().map_or(&[], |(_, f)| &f[..]));
    // The run as WebSocket frames, made for the first socket that takes it.
    let mut frames: Option<Vec<u8>> = None;
    let first = run.first().and_then(|(id, _)| *id);
    if let Some(m) = &core.metrics {
        m.delivered((run.len() * subscribers.len()) as u64);
    }
    for key in subscribers {
        let Some(conn) = core.conns.get_mut(key) else { continue };
        // A run that starts past what the replay had skips nothing.
        if let (Some(first), false) = (first, conn.live_after.is_empty())
            && let Some(i) = conn.live_after.iter().position(|(c, _)| c == channel)
            && first > conn.live_after[i].1
        {
            conn.live_after.swap_remove(i);
        }
        if conn.opening.is_none() && conn.live_after.is_empty() {
            let bytes = match conn.ws {
                Some(_) => frames.get_or_insert_with(|| {
                    let mut out = Vec::with_capacity(sse.len() + 32 * run.len());
                    messages::from_sse(sse, &mut out);
                    out
                }),
                None => sse,
            };
            write_event(core, key, bytes, now);
        } else {
            for (id, frame) in run.iter() {
                queue_event(core, key, channel, *id, frame, now);
            }
        }
    }
    run.clear();
}

/// Queues one event on stream `key`: held if it has not started, skipped if
/// its replay had it, dropped with the stream if over the cap.
fn queue_event(core: &mut Core, key: usize, channel: &Arc<str>, id: Option<EventId>, frame: &Arc<[u8]>, now: Instant) {
    let cap = core.cfg.limits.sse_buffer;
    let Some(conn) = core.conns.get_mut(key) else {
        return;
    };
    if let Some(opening) = &mut conn.opening {
        if opening.held_bytes + frame.len() > cap {
            let peer = conn.peer;
            core.log.line(format_args!("house: dropped subscriber {peer}: over the cap before it started"));
            if let Some(m) = &core.metrics {
                m.dropped_subscriber();
            }
            return core.close(key, None);
        }
        opening.held_bytes += frame.len();
        opening.held.push((channel.clone(), id, frame.clone()));
        return;
    }
    if let (Some(id), false) = (id, conn.live_after.is_empty())
        && let Some(i) = conn.live_after.iter().position(|(c, _)| c == channel)
    {
        if id <= conn.live_after[i].1 {
            return;
        }
        // Past the replay on this channel: nothing more to skip there.
        conn.live_after.swap_remove(i);
    }
    if conn.ws.is_some() {
        let mut out = Vec::with_capacity(frame.len() + 32);
        messages::from_sse(frame, &mut out);
        return write_event(core, key, &out, now);
    }
    write_event(core, key, frame, now);
}

/// Writes `bytes` (whole events) to live stream `key`, or drops the stream
/// if they would take it over its cap.
fn write_event(core: &mut Core, key: usize, bytes: &[u8], now: Instant) {
    let cap = core.cfg.limits.sse_buffer;
    let Some(conn) = core.conns.get_mut(key) else {
        return;
    };
    // Ending (shutdown, or a socket's close frame sent): nothing more.
    if conn.phase != Phase::Stream {
        return;
    }
    if conn.pending() + bytes.len() > cap {
        let (peer, pending) = (conn.peer, conn.pending());
        core.log.line(format_args!("house: dropped subscriber {peer}: {pending} bytes unread, over the cap"));
        if let Some(m) = &core.metrics {
            m.dropped_subscriber();
        }
        return core.close(key, None);
    }
    match conn.queue(bytes, now) {
        Ok(()) => conn.last_write = now,
        Err(e) => core.close(key, Some(&e)),
    }
}

/// A small, fast, good-enough spread for retry hints (xorshift64*).
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Jitter {
        Jitter(seed | 1)
    }

    pub fn draw(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}
