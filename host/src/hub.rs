//! The SSE hub: one logical channel table across the process's event loops.
//!
//! Each loop keeps its own table of which of *its* connections listen to a
//! channel (`sse::Channels`); the hub knows which *loops* have listeners. A
//! publish, from any loop, takes the hub's lock, and under it gives the
//! event its id and keeps it in the channel's history (memory engine,
//! `engine::history`), then appends it (framed once, shared bytes) to the
//! inbox of every loop with listeners and wakes those loops. One lock for
//! the order: every loop sees the events of a channel in the same order,
//! the order of their ids. A stream opens under the same lock (its channels
//! listened to, its replay read), so replay and live events meet without a
//! gap; the few events already in its loop's inbox are skipped by id.
//! No loop ever waits on another: a loop only takes the hub's lock for the
//! time of a few pushes, and inboxes are drained by their own loop.
//!
//! Inboxes are bounded (`--hub-queue-events`). A loop so far behind that its
//! inbox is full has subscribers that are not keeping up either: the events
//! it missed are counted, and the loop drops its streams (their browsers
//! reconnect) rather than letting them carry on with a silent gap.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use mio::Waker;

use crate::config::HistoryLimits;
use crate::engine::history::{EventId, History, HistoryStats, Replay, Start};
pub use crate::engine::{Link, Opener};

/// What the hub leaves for a loop.
pub enum Delivery {
    /// One event on its way to the loop's subscribers of `channel`.
    Event {
        channel: Arc<str>,
        /// None only for an event the Redis engine could not send (Redis
        /// unreachable): it reaches this host's subscribers without an id.
        id: Option<EventId>,
        frame: Arc<[u8]>,
    },
    /// A stream the loop opened can start (the Redis engine answers after
    /// a round trip): what it is owed before its live events.
    Opened { key: usize, conn: u64, replay: Replay },
}

/// What other loops leave for one loop.
struct Inbox {
    queue: Mutex<VecDeque<Delivery>>,
    /// Woken since it last drained: no need to wake it again.
    woken: AtomicBool,
    /// Events that did not fit since it last drained.
    overflowed: AtomicBool,
    /// Its streams should resume (see [`Hub::resync_streams`], the engine's `Deliver::resync`).
    resync: AtomicBool,
    waker: Arc<Waker>,
}

/// `from` for events that come from beyond the process: every loop with
/// listeners is woken.
pub const REMOTE: usize = usize::MAX;

/// What the hub's lock guards.
struct Table {
    /// Channel -> the loops that listen to it (bit per loop would cap the
    /// loop count; a short list is as fast for a few loops).
    loops: HashMap<Arc<str>, Vec<usize>>,
    /// The memory engine's history (unused with a link: Redis keeps it).
    history: History,
}

pub struct Hub {
    inboxes: Vec<Inbox>,
    table: Mutex<Table>,
    capacity: usize,
    /// Subscriptions on every loop together (for the stats).
    subscriptions: AtomicUsize,
    /// Events that could not be handed to a loop (its inbox was full).
    dropped: AtomicU64,
    link: OnceLock<Arc<dyn Link>>,
}

/// The hub's figures for `/_house/stats`.
pub struct HubStats {
    pub channels: usize,
    pub subscriptions: usize,
    pub dropped: u64,
    pub history: HistoryStats,
}

impl Hub {
    /// A hub for loops woken by `wakers` (loop `i` by `wakers[i]`), each
    /// inbox holding at most `capacity` events.
    pub fn new(wakers: Vec<Arc<Waker>>, capacity: usize, history: HistoryLimits) -> Hub {
        let inboxes = wakers
            .into_iter()
            .map(|waker| Inbox {
                queue: Mutex::new(VecDeque::new()),
                woken: AtomicBool::new(false),
                overflowed: AtomicBool::new(false),
                resync: AtomicBool::new(false),
                waker,
            })
            .collect();
        Hub {
            inboxes,
            table: Mutex::new(Table { loops: HashMap::new(), history: History::new(history) }),
            capacity,
            subscriptions: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            link: OnceLock::new(),
        }
    }

    /// The waker of loop `lp`'s poll (its guest calls wake it too).
    pub fn waker(&self, lp: usize) -> Arc<Waker> {
        self.inboxes[lp].waker.clone()
    }

    /// Connects the hub to other processes. Set once, before any loop runs.
    pub fn set_link(&self, link: Arc<dyn Link>) {
        if self.link.set(link).is_err() {
            panic!("the hub's link is set once");
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A stream of loop `opener.lp` opens on `channels`, of which `fresh`
    /// had no listener on that loop yet. Under one lock: from here on its
    /// channels' events reach the loop, and the replay returned accounts
    /// for every event before (memory engine). With a link, the replay may
    /// come later, as a [`Delivery::Opened`].
    pub fn open(&self, opener: Opener, fresh: &[Arc<str>], channels: &[Arc<str>], start: &Start) -> Option<Replay> {
        let mut table = self.table();
        for channel in fresh {
            self.listen(&mut table, opener.lp, channel);
        }
        match self.link.get() {
            Some(link) => link.open(opener, channels, start),
            None => Some(table.history.replay(channels, start)),
        }
    }

    fn listen(&self, table: &mut Table, lp: usize, channel: &Arc<str>) {
        match table.loops.get_mut(channel) {
            Some(loops) => {
                if !loops.contains(&lp) {
                    loops.push(lp);
                }
            }
            None => {
                if let Some(link) = self.link.get() {
                    link.listen(channel);
                }
                table.loops.insert(channel.clone(), vec![lp]);
            }
        }
    }

    /// The link's answer to [`Link::open`], for the opener's loop.
    pub fn opened(&self, opener: Opener, replay: Replay) {
        let inbox = &self.inboxes[opener.lp];
        // Not bounded by `capacity`: there is at most one per connection.
        let delivery = Delivery::Opened { key: opener.key, conn: opener.conn, replay };
        inbox.queue.lock().unwrap_or_else(PoisonError::into_inner).push_back(delivery);
        if !inbox.woken.swap(true, Ordering::AcqRel) {
            let _ = inbox.waker.wake();
        }
    }

    /// Loop `lp`'s last listener of `channel` left.
    pub fn unlisten(&self, lp: usize, channel: &str) {
        let mut table = self.table();
        if let Some(loops) = table.loops.get_mut(channel) {
            loops.retain(|&l| l != lp);
            if loops.is_empty()
                && let Some((name, _)) = table.loops.remove_entry(channel)
                && let Some(link) = self.link.get()
            {
                link.unlisten(&name);
            }
        }
    }

    /// Counts subscriptions made (+) and ended (-) on some loop.
    pub fn count_subscriptions(&self, added: usize, removed: usize) {
        self.subscriptions.fetch_add(added, Ordering::Relaxed);
        self.subscriptions.fetch_sub(removed, Ordering::Relaxed);
    }

    /// Publishes `body` (a framed event, without an id) to `channel`: the
    /// memory engine gives it its id, keeps it in the history and hands it
    /// to every loop listening; a link sends it out (it comes back through
    /// [`Hub::publish_remote`]). `from` is the publishing loop: it drains
    /// its own inbox before its turn ends, so it is not woken.
    pub fn publish(&self, from: usize, channel: &str, body: &Arc<[u8]>) {
        let mut table = self.table();
        // With a link, calls publish through their commits, never here.
        debug_assert!(self.link.get().is_none(), "a local publish with the Redis engine");
        let (id, frame) = table.history.append(channel, body, Instant::now());
        self.hand_out(&table, from, channel, Some(id), &frame);
    }

    /// Hands an event that came back from the link (framed, with its id)
    /// to this process's loops.
    pub fn publish_remote(&self, channel: &str, id: Option<EventId>, frame: &Arc<[u8]>) {
        let table = self.table();
        self.hand_out(&table, REMOTE, channel, id, frame);
    }

    fn hand_out(&self, table: &Table, from: usize, channel: &str, id: Option<EventId>, frame: &Arc<[u8]>) {
        let Some((name, loops)) = table.loops.get_key_value(channel) else {
            return; // nobody listens here
        };
        for &lp in loops {
            let inbox = &self.inboxes[lp];
            let mut queue = inbox.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.len() >= self.capacity {
                drop(queue);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                inbox.overflowed.store(true, Ordering::Release);
            } else {
                queue.push_back(Delivery::Event { channel: name.clone(), id, frame: frame.clone() });
                drop(queue);
            }
            if lp != from && !inbox.woken.swap(true, Ordering::AcqRel) {
                // A failed wake means the loop is gone (shutting down).
                let _ = inbox.waker.wake();
            }
        }
    }

    /// Takes what waits for loop `lp`, in order, into `out`. Returns whether
    /// some events for it were dropped since it last drained.
    pub fn drain(&self, lp: usize, out: &mut VecDeque<Delivery>) -> bool {
        let inbox = &self.inboxes[lp];
        inbox.woken.store(false, Ordering::Release);
        let mut queue = inbox.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if out.is_empty() {
            std::mem::swap(&mut *queue, out);
        } else {
            out.extend(queue.drain(..));
        }
        drop(queue);
        inbox.overflowed.swap(false, Ordering::AcqRel)
    }

    /// Asks every loop to end its streams with a retry hint, so that their
    /// browsers reconnect with their last id and are replayed what they
    /// missed: the Redis engine's answer to an outage, during which events
    /// from other hosts could not arrive.
    pub fn resync_streams(&self) {
        for inbox in &self.inboxes {
            inbox.resync.store(true, Ordering::Release);
            let _ = inbox.waker.wake();
        }
    }

    /// Whether loop `lp` was asked to resync its streams since it last looked.
    pub fn take_resync(&self, lp: usize) -> bool {
        self.inboxes[lp].resync.swap(false, Ordering::AcqRel)
    }

    /// Forgets the history of channels idle past `--history-idle-ms`.
    pub fn expire(&self, now: Instant) {
        self.table().history.expire(now);
    }

    pub fn stats(&self) -> HubStats {
        let table = self.table();
        HubStats {
            channels: table.loops.len(),
            subscriptions: self.subscriptions.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            history: table.history.stats(),
        }
    }
}

/// The engine's deliveries are the hub's to hand out.
impl crate::engine::Deliver for Hub {
    fn event(&self, channel: &str, id: EventId, frame: &Arc<[u8]>) {
        self.publish_remote(channel, Some(id), frame);
    }

    fn opened(&self, opener: Opener, replay: Replay) {
        Hub::opened(self, opener, replay);
    }

    fn resync(&self) {
        self.resync_streams();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(loops: usize, capacity: usize) -> (Hub, Vec<mio::Poll>) {
        let polls: Vec<mio::Poll> = (0..loops).map(|_| mio::Poll::new().unwrap()).collect();
        let wakers = polls.iter().map(|p| Arc::new(Waker::new(p.registry(), mio::Token(0)).unwrap())).collect();
        let history =
            HistoryLimits { events: 10, bytes: 1 << 20, idle: std::time::Duration::from_secs(60), budget: 1 << 20 };
        (Hub::new(wakers, capacity, history), polls)
    }

    fn frames(hub: &Hub, lp: usize) -> Vec<String> {
        let mut out = VecDeque::new();
        hub.drain(lp, &mut out);
        out.iter()
            .map(|d| match d {
                Delivery::Event { channel, frame, .. } => {
                    let data = String::from_utf8_lossy(frame);
                    format!("{channel}:{}", data.lines().nth(1).unwrap_or_default())
                }
                Delivery::Opened { .. } => "opened".into(),
            })
            .collect()
    }

    fn listen(hub: &Hub, lp: usize, channels: &[&str]) -> Replay {
        let names: Vec<Arc<str>> = channels.iter().map(|&c| Arc::from(c)).collect();
        let opener = Opener { lp, key: 0, conn: 0 };
        hub.open(opener, &names, &names, &Start::default()).expect("the memory engine answers at once")
    }

    #[test]
    fn events_reach_the_loops_that_listen_in_publish_order() {
        let (hub, _polls) = hub(3, 16);
        listen(&hub, 0, &["a"]);
        listen(&hub, 2, &["a", "b"]);
        for (i, ch) in ["a", "b", "a", "c"].iter().enumerate() {
            hub.publish(1, ch, &Arc::from(format!("data: {i}\n\n").as_bytes()));
        }
        assert_eq!(frames(&hub, 0), ["a:data: 0", "a:data: 2"]);
        assert!(frames(&hub, 1).is_empty());
        assert_eq!(frames(&hub, 2), ["a:data: 0", "b:data: 1", "a:data: 2"]);
        hub.unlisten(0, "a");
        hub.unlisten(2, "a");
        hub.unlisten(2, "b");
        assert_eq!(hub.stats().channels, 0, "a channel nobody listens to is gone");
        assert_eq!(hub.stats().history.events, 4, "history outlives listeners");
    }

    #[test]
    fn a_full_inbox_drops_and_says_so() {
        let (hub, _polls) = hub(2, 2);
        listen(&hub, 1, &["a"]);
        for _ in 0..3 {
            hub.publish(0, "a", &Arc::from(&b"x"[..]));
        }
        let mut out = VecDeque::new();
        assert!(hub.drain(1, &mut out), "the overflow is reported");
        assert_eq!(out.len(), 2);
        assert_eq!(hub.stats().dropped, 1);
        out.clear();
        assert!(!hub.drain(1, &mut out), "once");
    }
}
