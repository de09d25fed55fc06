//! Presence: who is in a channel. A stream (or socket) that subscribes with
//! a piece of info (`subscribe_as`: a name, a user id) is a member of that
//! channel under that info until it closes. Members are counted by info,
//! so one user with several tabs is one member: it joins when its first
//! connection does and leaves when its last one does.
//!
//! This table is the process's (every loop's connections together). A
//! change of the member set is announced on the channel itself, as events
//! `join` and `leave` whose data is the member's info, coalesced: at most
//! one batch per channel per `--presence-coalesce-ms`, a join and a leave
//! of the same info within it cancel out, and a batch of more than
//! [`BATCH_EVENTS`] changes is one `presence` event instead (its data says
//! how many joined and left: a client asks for the list again). The Redis
//! engine shares the table between hosts (`redis_presence`).
//!
//! Bounded: members per channel (`--presence-max-members`: a connection
//! beyond is subscribed but not a member, and the log says so), info bytes
//! (`--presence-info-bytes`, refused at `subscribe_as`), and the events.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use crate::config::PresenceLimits;

/// The members beyond this process (the Redis engine's `redis_presence`):
/// told this host's batches, asked every host's members.
pub trait Remote: Send + Sync {
    /// Queues a batch of this host's changes (never waits).
    fn apply(&self, batch: Batch);
    /// Every host's members of `channel`, at most `limit`, as
    /// `presence()`'s block (see [`Presence::members_block`]); None if they
    /// cannot be read now.
    fn members<'a>(
        &'a self,
        channel: &'a str,
        limit: usize,
    ) -> Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send + 'a>>;
}

/// More changes than this in one batch are announced as one `presence`
/// event (counts only) rather than one event each.
pub const BATCH_EVENTS: usize = 32;

/// One channel's members.
#[derive(Default)]
struct Room {
    /// Info -> connections that hold it.
    members: BTreeMap<Arc<str>, u32>,
    /// Changes not announced yet: info -> joined (true) or left (false).
    /// A join then a leave in one window cancel (the entry is removed).
    changes: BTreeMap<Arc<str>, bool>,
    /// When its last batch was announced.
    announced: Option<Instant>,
}

pub struct Presence {
    rooms: Mutex<HashMap<Arc<str>, Room>>,
    limits: PresenceLimits,
    /// Some change waits to be announced (read without the lock, so that
    /// a sweep with nothing to do costs nothing).
    waiting: AtomicBool,
    /// The Redis engine's side: every host's members (set once, at start).
    remote: OnceLock<Arc<dyn Remote>>,
}

/// One channel's changes of this process's members, coalesced over a
/// window: (info, joined) in info order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub channel: Arc<str>,
    pub changes: Vec<(Arc<str>, bool)>,
}

impl Batch {
    /// What this process announces of it on its own (memory engine; on
    /// Redis, the presence script decides, as hosts share members).
    pub fn announcements(self) -> Vec<Announcement> {
        let mut out = Vec::new();
        if self.changes.len() > BATCH_EVENTS {
            let joined = self.changes.iter().filter(|(_, j)| *j).count();
            let left = self.changes.len() - joined;
            let data = format!(r#"{{"joined":{joined},"left":{left}}}"#);
            out.push(Announcement { channel: self.channel, event: "presence", data });
            return out;
        }
        for (info, joined) in self.changes {
            let event = if joined { "join" } else { "leave" };
            out.push(Announcement { channel: self.channel.clone(), event, data: info.to_string() });
        }
        out
    }
}

/// A change to announce on a channel: an event's type and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub channel: Arc<str>,
    pub event: &'static str,
    pub data: String,
}

impl Presence {
    pub fn new(limits: PresenceLimits) -> Presence {
        Presence { rooms: Mutex::new(HashMap::new()), limits, waiting: AtomicBool::new(false), remote: OnceLock::new() }
    }

    /// Shares this process's members with the other hosts on Redis.
    pub fn set_remote(&self, remote: Arc<dyn Remote>) {
        let _ = self.remote.set(remote);
    }

    /// The Redis engine's side, if the host runs on one.
    pub fn remote(&self) -> Option<&Arc<dyn Remote>> {
        self.remote.get()
    }

    pub fn limits(&self) -> &PresenceLimits {
        &self.limits
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<Arc<str>, Room>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection joins `channel` as `info`. False if the channel is at
    /// `--presence-max-members` and `info` is not a member yet.
    pub fn join(&self, channel: &Arc<str>, info: &Arc<str>) -> bool {
        let mut rooms = self.rooms();
        let room = rooms.entry(channel.clone()).or_default();
        if let Some(n) = room.members.get_mut(info) {
            *n += 1;
            return true;
        }
        if room.members.len() >= self.limits.max_members {
            return false;
        }
        room.members.insert(info.clone(), 1);
        note(room, info, true);
        self.waiting.store(true, Ordering::Release);
        true
    }

    /// A member's connection left `channel` (it closed).
    pub fn leave(&self, channel: &str, info: &Arc<str>) {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(channel) else { return };
        let Some(n) = room.members.get_mut(info) else { return };
        *n -= 1;
        if *n == 0 {
            room.members.remove(info);
            note(room, info, false);
            self.waiting.store(true, Ordering::Release);
        }
        if room.members.is_empty() && room.changes.is_empty() {
            rooms.remove(channel);
        }
    }

    /// The members of `channel` (their info, in byte order), at most `limit`.
    pub fn members(&self, channel: &str, limit: usize) -> Vec<Arc<str>> {
        let rooms = self.rooms();
        rooms.get(channel).map_or_else(Vec::new, |room| room.members.keys().take(limit).cloned().collect())
    }

    /// [`Presence::members`] as `presence()`'s block (`kv_list`'s
    /// encoding), made under the lock from the table itself: no string is
    /// copied but into the block (10,000 members: no 10,000 allocations).
    pub fn members_block(&self, channel: &str, limit: usize) -> Vec<u8> {
        let rooms = self.rooms();
        let Some(room) = rooms.get(channel) else { return house_abi::kv::encode_list(std::iter::empty(), false) };
        let keys: Vec<&[u8]> = room.members.keys().take(limit).map(|m| m.as_bytes()).collect();
        house_abi::kv::encode_list(keys.iter().map(|k| (*k, &[][..])), false)
    }

    /// The batches due by `now`: channels whose changes wait and whose
    /// last batch is at least `--presence-coalesce-ms` old. The rest wait
    /// for a later call (the loops' sweep makes one every tick).
    pub fn due(&self, now: Instant) -> Vec<Batch> {
        let mut out = Vec::new();
        if !self.waiting.load(Ordering::Acquire) {
            return out;
        }
        let window = self.limits.coalesce;
        let mut rooms = self.rooms();
        let mut waiting = false;
        rooms.retain(|channel, room| {
            let ready = room.announced.is_none_or(|at| now.duration_since(at) >= window);
            if ready && !room.changes.is_empty() {
                room.announced = Some(now);
                let changes = std::mem::take(&mut room.changes).into_iter().collect();
                out.push(Batch { channel: channel.clone(), changes });
            }
            waiting |= !room.changes.is_empty();
            !room.members.is_empty() || !room.changes.is_empty()
        });
        self.waiting.store(waiting, Ordering::Release);
        out
    }

    /// Every (channel, info) this process holds now: what the Redis engine
    /// says this host holds after it was away.
    pub fn snapshot(&self) -> Vec<(Arc<str>, Arc<str>)> {
        let rooms = self.rooms();
        rooms.iter().flat_map(|(c, r)| r.members.keys().map(move |i| (c.clone(), i.clone()))).collect()
    }

    /// Whether some change waits to be announced.
    pub fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Acquire)
    }
}

fn note(room: &mut Room, info: &Arc<str>, joined: bool) {
    match room.changes.get(info) {
        // The opposite change waits: together they are no change.
        Some(&was) if was != joined => {
            room.changes.remove(info);
        }
        _ => {
            room.changes.insert(info.clone(), joined);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn presence(max_members: usize) -> Presence {
        let coalesce = Duration::from_millis(100);
        Presence::new(PresenceLimits { max_members, info_bytes: 64, coalesce, ttl: Duration::from_secs(1) })
    }

    fn s(x: &str) -> Arc<str> {
        Arc::from(x)
    }

    fn kinds(batches: Vec<Batch>) -> Vec<(&'static str, String)> {
        batches.into_iter().flat_map(Batch::announcements).map(|a| (a.event, a.data)).collect()
    }

    fn said(list: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        list.iter().map(|(e, d)| (*e, d.to_string())).collect()
    }

    #[test]
    fn one_member_with_several_connections_joins_once_and_leaves_once() {
        let p = presence(10);
        let (room, ada) = (s("room"), s("ada"));
        let t0 = Instant::now();
        assert!(p.join(&room, &ada));
        assert!(p.join(&room, &ada));
        assert_eq!(kinds(p.due(t0)), said(&[("join", "ada")]));
        p.leave(&room, &ada);
        assert_eq!(p.members(&room, 10), [s("ada")], "one tab left, one stays");
        let t1 = t0 + Duration::from_millis(100);
        assert!(p.due(t1).is_empty());
        p.leave(&room, &ada);
        assert_eq!(kinds(p.due(t1)), said(&[("leave", "ada")]));
        assert!(p.members(&room, 10).is_empty());
    }

    #[test]
    fn churn_within_a_window_is_coalesced() {
        let p = presence(1000);
        let room = s("room");
        let t0 = Instant::now();
        p.join(&room, &s("first"));
        assert_eq!(p.due(t0).len(), 1);
        // Within the window: nothing yet; a join and leave cancel.
        p.join(&room, &s("bob"));
        p.leave(&room, &s("bob"));
        p.join(&room, &s("cy"));
        assert!(p.due(t0 + Duration::from_millis(50)).is_empty(), "not before the window ends");
        assert_eq!(kinds(p.due(t0 + Duration::from_millis(100))), said(&[("join", "cy")]));
        // A burst over the batch bound is one event.
        for i in 0..100 {
            p.join(&room, &s(&format!("m{i}")));
        }
        let burst = p.due(t0 + Duration::from_millis(200));
        assert_eq!(kinds(burst), said(&[("presence", r#"{"joined":100,"left":0}"#)]));
    }

    #[test]
    fn a_full_channel_takes_no_new_member() {
        let p = presence(2);
        let room = s("room");
        assert!(p.join(&room, &s("a")));
        assert!(p.join(&room, &s("b")));
        assert!(!p.join(&room, &s("c")), "full");
        assert!(p.join(&room, &s("a")), "a member's second connection");
        assert_eq!(p.members(&room, 1), [s("a")], "bounded by the caller's limit too");
    }
}
