//! The memory engine's channel history: the last events of every channel,
//! kept to replay to a stream that reconnects with `Last-Event-ID` and to
//! show a new one its backlog.
//!
//! It lives inside the hub's table, under the hub's lock: appending an
//! event, handing it to the loops and opening a stream are one critical
//! section, so a stream's replay and its live events meet without a gap or
//! a duplicate (see `Hub::open`).
//!
//! Ids are `EPOCH-SEQ`: EPOCH is drawn at random when the process starts
//! (an id from before a restart, whose history is gone, is recognised as
//! such) and SEQ counts every event of the process. One counter for every
//! channel makes ids comparable across channels, so a stream subscribed to
//! several resumes them all from one `Last-Event-ID`.
//!
//! Bounds: per channel by events and bytes (oldest events go first), for
//! all channels together by `budget` (the channels idle longest go first),
//! and by time (a channel idle for `idle` is forgotten). What is forgotten
//! is remembered as a watermark, so a resume that would cross it gets a
//! reset instead of a silent gap.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crate::config::HistoryLimits;

/// An event's id: `HI-LO` in decimal. The memory engine's HI is its epoch
/// and LO a counter; Redis's are a stream entry's milliseconds and
/// sequence. Ordered within one engine (per channel for Redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub hi: u64,
    pub lo: u64,
}

impl EventId {
    /// `HI-LO`, both decimal `u64`s, nothing else (a browser sends back
    /// whatever it was given, so anything else is not ours).
    pub fn parse(text: &str) -> Option<EventId> {
        let (hi, lo) = text.split_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(hi) || !digits(lo) {
            return None;
        }
        Some(EventId { hi: hi.parse().ok()?, lo: lo.parse().ok()? })
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.hi, self.lo)
    }
}

/// `body` (a framed event without an id) with `id: ID` first.
pub fn with_id(id: EventId, body: &[u8]) -> Vec<u8> {
    let mut hi = itoa::Buffer::new();
    let mut lo = itoa::Buffer::new();
    let (hi, lo) = (hi.format(id.hi), lo.format(id.lo));
    let mut out = Vec::with_capacity(body.len() + 6 + hi.len() + lo.len());
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(hi.as_bytes());
    out.push(b'-');
    out.extend_from_slice(lo.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// Where a stream opening wants to start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Start {
    /// The `Last-Event-ID` it reconnected with, as sent.
    pub after: Option<String>,
    /// Events of its channels' history to show it first (asked by the
    /// handler; used when there is no resume, or the resume was reset).
    pub backlog: usize,
}

impl Start {
    pub fn wants_history(&self) -> bool {
        self.after.is_some() || self.backlog > 0
    }
}

/// What a stream is owed when it opens, before its live events (shared
/// bytes: a copy for each of many streams is cheap).
#[derive(Debug, Default, Clone)]
pub struct Replay {
    /// The resume could not be honoured: the stream starts with
    /// `event: reset` so that the page refetches its state.
    pub reset: bool,
    /// The newest id there is on its channels, if any: the reset event
    /// carries it, so that the next reconnect resumes from there.
    pub position: Option<EventId>,
    /// Framed events, ids included, in order.
    pub frames: Vec<Arc<[u8]>>,
    /// Per channel, the newest id the replay accounts for: live events at
    /// or before it were replayed (or predate the stream) and are skipped.
    pub live_after: Vec<(Arc<str>, EventId)>,
}

/// The event a stream gets when its resume cannot be honoured (with the
/// newest id, if there is one).
pub fn reset_frame(position: Option<EventId>) -> Vec<u8> {
    const RESET: &[u8] = b"event: reset\ndata: the events since your last one are not all kept\n\n";
    match position {
        Some(id) => with_id(id, RESET),
        None => RESET.to_vec(),
    }
}

/// What keeping one event costs beyond its framed bytes: its slot in the
/// ring (an id and a fat pointer) and the shared allocation's counts.
pub const EVENT_OVERHEAD: usize = 48;
/// What keeping a channel costs beyond its name: the map entry, the ring,
/// its place in the age index.
pub const CHANNEL_OVERHEAD: usize = 160;

pub struct History {
    limits: HistoryLimits,
    epoch: u64,
    /// The last SEQ given out.
    last: u64,
    channels: HashMap<Arc<str>, Channel>,
    /// Channels by the SEQ of their last event: the idlest first.
    by_age: BTreeMap<u64, Arc<str>>,
    /// Bytes kept, overheads included.
    bytes: usize,
    /// Every event of a channel that has no entry here is at or before
    /// this SEQ (its history was forgotten, or it never had one).
    forgotten: u64,
}

struct Channel {
    events: VecDeque<(u64, Arc<[u8]>)>,
    bytes: usize,
    /// Every event of this channel after this SEQ is in `events`.
    complete_after: u64,
    last_seq: u64,
    last_at: Instant,
}

/// What `/_house/stats` says of the history.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryStats {
    pub channels: usize,
    pub events: usize,
    pub bytes: usize,
}

impl History {
    pub fn new(limits: HistoryLimits) -> History {
        History {
            limits,
            epoch: random_epoch(),
            last: 0,
            channels: HashMap::new(),
            by_age: BTreeMap::new(),
            bytes: 0,
            forgotten: 0,
        }
    }

    /// Gives the next event of `channel` its id, keeps it if history is
    /// on, and returns it framed with its id.
    pub fn append(&mut self, channel: &str, body: &[u8], now: Instant) -> (EventId, Arc<[u8]>) {
        self.last += 1;
        let seq = self.last;
        let id = EventId { hi: self.epoch, lo: seq };
        let frame: Arc<[u8]> = with_id(id, body).into();
        if self.limits.events == 0 {
            // Kept for no time: a resume from before this event is a reset.
            self.forgotten = seq;
            return (id, frame);
        }
        let name = match self.channels.get_key_value(channel) {
            Some((name, _)) => name.clone(),
            None => {
                let name: Arc<str> = channel.into();
                self.bytes += name.len() + CHANNEL_OVERHEAD;
                let fresh = Channel {
                    events: VecDeque::new(),
                    bytes: 0,
                    complete_after: self.forgotten,
                    last_seq: 0,
                    last_at: now,
                };
                self.channels.insert(name.clone(), fresh);
                name
            }
        };
        let ch = self.channels.get_mut(channel).expect("just found or inserted");
        // (A fresh channel's 0 is nobody's key: SEQs start at 1.)
        self.by_age.remove(&ch.last_seq);
        ch.last_seq = seq;
        ch.last_at = now;
        let cost = frame.len() + EVENT_OVERHEAD;
        ch.events.push_back((seq, frame.clone()));
        ch.bytes += cost;
        self.bytes += cost;
        while ch.events.len() > self.limits.events || ch.bytes > self.limits.bytes {
            let Some((old, frame)) = ch.events.pop_front() else { break };
            ch.complete_after = old;
            let cost = frame.len() + EVENT_OVERHEAD;
            ch.bytes -= cost;
            self.bytes -= cost;
        }
        self.by_age.insert(seq, name);
        // Over the budget: forget whole channels, the idlest first (this
        // one last: it was just published to).
        while self.bytes > self.limits.budget {
            let Some((_, oldest)) = self.by_age.pop_first() else { break };
            self.forget(&oldest);
        }
        (id, frame)
    }

    /// Forgets the channels with no event for the idle time. Returns how
    /// many were forgotten.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some((_, name)) = self.by_age.first_key_value() {
            let idle = self.channels.get(name).is_none_or(|ch| now.duration_since(ch.last_at) >= self.limits.idle);
            if !idle {
                break;
            }
            let (_, name) = self.by_age.pop_first().expect("just seen");
            self.forget(&name);
            n += 1;
        }
        n
    }

    fn forget(&mut self, name: &str) {
        if let Some((name, ch)) = self.channels.remove_entry(name) {
            self.forgotten = self.forgotten.max(ch.last_seq);
            self.bytes -= ch.bytes + name.len() + CHANNEL_OVERHEAD;
        }
    }

    /// What a stream opening on `channels` is owed: with `start.after`,
    /// every event after it, or a reset if they are not all here; with a
    /// backlog (and no resume), the last events of each channel. In id
    /// order. Events published from now on reach it live.
    pub fn replay(&self, channels: &[Arc<str>], start: &Start) -> Replay {
        let newest = EventId { hi: self.epoch, lo: self.last };
        let live_after = channels.iter().map(|c| (c.clone(), newest)).collect();
        let mut replay = Replay { reset: false, position: Some(newest), frames: Vec::new(), live_after };
        let mut picked: Vec<(u64, &Arc<[u8]>)> = Vec::new();
        if let Some(raw) = &start.after {
            match EventId::parse(raw) {
                Some(id) if id.hi == self.epoch && id.lo <= self.last && self.covers(channels, id.lo) => {
                    for ch in channels.iter().filter_map(|c| self.channels.get(c)) {
                        let from = ch.events.partition_point(|(seq, _)| *seq <= id.lo);
                        picked.extend(ch.events.range(from..).map(|(seq, f)| (*seq, f)));
                    }
                    picked.sort_unstable_by_key(|(seq, _)| *seq);
                    replay.frames = picked.into_iter().map(|(_, f)| f.clone()).collect();
                    return replay;
                }
                _ => replay.reset = true,
            }
        }
        if start.backlog > 0 {
            for ch in channels.iter().filter_map(|c| self.channels.get(c)) {
                let from = ch.events.len().saturating_sub(start.backlog);
                picked.extend(ch.events.range(from..).map(|(seq, f)| (*seq, f)));
            }
            picked.sort_unstable_by_key(|(seq, _)| *seq);
            // Several channels: the newest `backlog` of them all.
            let skip = picked.len().saturating_sub(start.backlog);
            replay.frames = picked.into_iter().skip(skip).map(|(_, f)| f.clone()).collect();
        }
        replay
    }

    /// Whether every event of `channels` after SEQ `after` is kept.
    fn covers(&self, channels: &[Arc<str>], after: u64) -> bool {
        channels.iter().all(|c| after >= self.channels.get(c).map_or(self.forgotten, |ch| ch.complete_after))
    }

    pub fn stats(&self) -> HistoryStats {
        HistoryStats {
            channels: self.channels.len(),
            events: self.channels.values().map(|c| c.events.len()).sum(),
            bytes: self.bytes,
        }
    }
}

/// An epoch that two processes (or two runs of one) practically never
/// share: a restarted host does not mistake an old id for one of its own.
fn random_epoch() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    // 40 bits: short ids, and still a one-in-a-trillion collision.
    (h.finish() >> 24).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(events: usize, bytes: usize, budget: usize) -> HistoryLimits {
        HistoryLimits { events, bytes, idle: Duration::from_secs(60), budget }
    }

    fn text(frames: &[Arc<[u8]>]) -> Vec<String> {
        frames
            .iter()
            .map(|f| String::from_utf8_lossy(f).lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or("").to_owned())
            .collect()
    }

    fn names(list: &[&str]) -> Vec<Arc<str>> {
        list.iter().map(|&c| Arc::from(c)).collect()
    }

    #[test]
    fn ids_parse_strictly() {
        assert_eq!(EventId::parse("12-3"), Some(EventId { hi: 12, lo: 3 }));
        for bad in ["", "12", "-3", "12-", "1-2-3", "a-1", "1- 2", "+1-2", "99999999999999999999-1"] {
            assert_eq!(EventId::parse(bad), None, "{bad:?}");
        }
        let id = EventId { hi: 7, lo: 42 };
        assert_eq!(EventId::parse(&id.to_string()), Some(id));
        assert_eq!(with_id(id, b"data: x\n\n"), b"id: 7-42\ndata: x\n\n");
    }

    fn after(id: EventId) -> Start {
        Start { after: Some(id.to_string()), backlog: 0 }
    }

    #[test]
    fn resumes_after_an_id_across_channels_in_order() {
        let mut h = History::new(limits(10, 1 << 20, 1 << 30));
        let now = Instant::now();
        let (first, _) = h.append("a", b"data: 1\n\n", now);
        h.append("b", b"data: 2\n\n", now);
        h.append("a", b"data: 3\n\n", now);
        h.append("c", b"data: x\n\n", now);
        let r = h.replay(&names(&["a", "b"]), &after(first));
        assert!(!r.reset);
        assert_eq!(text(&r.frames), ["2", "3"]);
        let frame = String::from_utf8(r.frames[0].to_vec()).unwrap();
        assert!(frame.starts_with(&format!("id: {}-2\n", first.hi)), "{frame}");
        // A channel never published to is covered too.
        assert!(!h.replay(&names(&["a", "never"]), &after(first)).reset);
    }

    #[test]
    fn what_is_not_kept_is_a_reset() {
        let mut h = History::new(limits(2, 1 << 20, 1 << 30));
        let now = Instant::now();
        let (first, _) = h.append("a", b"data: 1\n\n", now);
        let (second, _) = h.append("a", b"data: 2\n\n", now);
        h.append("a", b"data: 3\n\n", now);
        h.append("a", b"data: 4\n\n", now);
        let chs = names(&["a"]);
        assert!(h.replay(&chs, &after(first)).reset, "event 2 was dropped");
        // The last event dropped is the edge: everything after it is kept.
        let r = h.replay(&chs, &after(second));
        assert_eq!((r.reset, text(&r.frames)), (false, vec!["3".to_owned(), "4".to_owned()]));
        let beyond = EventId { hi: first.hi, lo: 99 };
        let other_epoch = EventId { hi: first.hi + 1, lo: 2 };
        for start in [after(beyond), after(other_epoch), Start { after: Some("garbage".into()), backlog: 0 }] {
            let r = h.replay(&chs, &start);
            assert!(r.reset && r.frames.is_empty(), "{:?}", start.after);
        }
        // A reset with a backlog: the page starts over from the backlog.
        let r = h.replay(&chs, &Start { after: Some("garbage".into()), backlog: 1 });
        assert_eq!((r.reset, text(&r.frames)), (true, vec!["4".to_owned()]));
    }

    #[test]
    fn without_history_only_a_stream_that_missed_nothing_resumes() {
        let mut h = History::new(limits(0, 1 << 20, 1 << 30));
        let now = Instant::now();
        let (first, _) = h.append("a", b"data: 1\n\n", now);
        let (second, _) = h.append("b", b"data: 2\n\n", now);
        assert!(h.replay(&names(&["a"]), &after(first)).reset, "event 2 is not kept");
        assert!(!h.replay(&names(&["a"]), &after(second)).reset, "nothing after 2 was missed");
        assert_eq!(h.stats().bytes, 0);
    }

    #[test]
    fn backlog_is_the_newest_events() {
        let mut h = History::new(limits(10, 1 << 20, 1 << 30));
        let now = Instant::now();
        for i in 0..5 {
            h.append(if i % 2 == 0 { "a" } else { "b" }, format!("data: {i}\n\n").as_bytes(), now);
        }
        let r = h.replay(&names(&["a"]), &Start { after: None, backlog: 2 });
        assert_eq!(text(&r.frames), ["2", "4"]);
        let r = h.replay(&names(&["a", "b"]), &Start { after: None, backlog: 3 });
        assert_eq!(text(&r.frames), ["2", "3", "4"]);
        assert!(h.replay(&names(&["a"]), &Start::default()).frames.is_empty());
    }

    #[test]
    fn the_budget_forgets_the_idlest_channels_and_resumes_across_them_reset() {
        let mut h = History::new(limits(100, 1 << 20, 4096));
        let now = Instant::now();
        let (early, _) = h.append("old", b"data: o\n\n", now);
        for i in 0..200 {
            h.append(&format!("ch{}", i % 20), b"data: some bytes\n\n", now);
            assert!(h.stats().bytes <= 4096);
        }
        assert!(h.stats().channels < 21, "some channels were forgotten");
        assert!(!h.channels.contains_key("old"), "the idlest went first");
        assert!(h.replay(&names(&["old"]), &after(early)).reset);
    }

    #[test]
    fn idle_channels_expire() {
        let mut h = History::new(HistoryLimits { idle: Duration::from_millis(10), ..limits(10, 1 << 20, 1 << 30) });
        let t0 = Instant::now();
        let (id, _) = h.append("a", b"data: 1\n\n", t0);
        h.append("b", b"data: 2\n\n", t0 + Duration::from_millis(8));
        assert_eq!(h.expire(t0 + Duration::from_millis(12)), 1);
        assert_eq!(h.stats().channels, 1);
        assert!(!h.replay(&names(&["a"]), &after(id)).reset, "nothing of `a` after its last event was lost");
        assert_eq!(h.expire(t0 + Duration::from_millis(20)), 1);
        assert_eq!(h.stats().bytes, 0);
    }
}
