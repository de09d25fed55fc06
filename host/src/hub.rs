//! The SSE hub: one logical channel table across the process's event loops.
//!
//! Each loop keeps its own table of which of *its* connections listen to a
//! channel (`sse::Channels`); the hub knows which *loops* have listeners. A
//! publish, from any loop, takes the hub's lock, and under it appends the
//! event (framed once, shared bytes) to the inbox of every loop with
//! listeners, then wakes those loops. One lock for the order: every loop
//! sees the events of a channel in the same order, the order of publishing.
//! No loop ever waits on another: a loop only takes the hub's lock for the
//! time of a few pushes, and inboxes are drained by their own loop.
//!
//! Inboxes are bounded (`--hub-queue-events`). A loop so far behind that its
//! inbox is full has subscribers that are not keeping up either: the events
//! it missed are counted, and the loop drops its streams (their browsers
//! reconnect) rather than letting them carry on with a silent gap.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use mio::Waker;

/// One event on its way to a loop's subscribers of `channel`.
pub struct Delivery {
    pub channel: Arc<str>,
    pub frame: Arc<[u8]>,
}

/// What other loops leave for one loop.
struct Inbox {
    queue: Mutex<VecDeque<Delivery>>,
    /// Woken since it last drained: no need to wake it again.
    woken: AtomicBool,
    /// Events that did not fit since it last drained.
    overflowed: AtomicBool,
    waker: Arc<Waker>,
}

/// The hub's way beyond this process (the Redis engine): told when a
/// channel gains its first listener here and loses its last, and given
/// every event published here. Called under the hub's lock, so it sees
/// events in the order loops see them; it must only queue, never block.
pub trait Link: Send + Sync {
    fn listen(&self, channel: &Arc<str>);
    fn unlisten(&self, channel: &Arc<str>);
    fn publish(&self, channel: &str, frame: &Arc<[u8]>);
}

/// `from` for events that come from beyond the process: every loop with
/// listeners is woken.
pub const REMOTE: usize = usize::MAX;

pub struct Hub {
    inboxes: Vec<Inbox>,
    /// Channel -> how many loops listen to it, and which (bit per loop
    /// would cap the loop count; a short list is as fast for a few loops).
    table: Mutex<HashMap<Arc<str>, Vec<usize>>>,
    capacity: usize,
    /// Subscriptions on every loop together (for the stats).
    subscriptions: AtomicUsize,
    /// Events that could not be handed to a loop (its inbox was full).
    dropped: AtomicU64,
    link: OnceLock<Arc<dyn Link>>,
}

impl Hub {
    /// A hub for loops woken by `wakers` (loop `i` by `wakers[i]`), each
    /// inbox holding at most `capacity` events.
    pub fn new(wakers: Vec<Arc<Waker>>, capacity: usize) -> Hub {
        let inboxes = wakers
            .into_iter()
            .map(|waker| Inbox {
                queue: Mutex::new(VecDeque::new()),
                woken: AtomicBool::new(false),
                overflowed: AtomicBool::new(false),
                waker,
            })
            .collect();
        Hub {
            inboxes,
            table: Mutex::new(HashMap::new()),
            capacity,
            subscriptions: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            link: OnceLock::new(),
        }
    }

    /// Connects the hub to other processes. Set once, before any loop runs.
    pub fn set_link(&self, link: Arc<dyn Link>) {
        if self.link.set(link).is_err() {
            panic!("the hub's link is set once");
        }
    }

    /// Loop `lp` has its first listener of `channel`.
    pub fn listen(&self, lp: usize, channel: &str) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        match table.get_mut(channel) {
            Some(loops) => {
                if !loops.contains(&lp) {
                    loops.push(lp);
                }
            }
            None => {
                let name: Arc<str> = channel.into();
                if let Some(link) = self.link.get() {
                    link.listen(&name);
                }
                table.insert(name, vec![lp]);
            }
        }
    }

    /// Loop `lp`'s last listener of `channel` left.
    pub fn unlisten(&self, lp: usize, channel: &str) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(loops) = table.get_mut(channel) {
            loops.retain(|&l| l != lp);
            if loops.is_empty()
                && let Some((name, _)) = table.remove_entry(channel)
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

    /// Hands `frame` to every loop listening to `channel`, and to the link
    /// if there is one. `from` is the publishing loop: it drains its own
    /// inbox before its turn ends, so it is not woken.
    pub fn publish(&self, from: usize, channel: &str, frame: &Arc<[u8]>) {
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(link) = self.link.get() {
            link.publish(channel, frame);
        }
        self.hand_out(&table, from, channel, frame);
    }

    /// Hands an event that came from another process to this process's
    /// loops only.
    pub fn publish_remote(&self, channel: &str, frame: &Arc<[u8]>) {
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        self.hand_out(&table, REMOTE, channel, frame);
    }

    fn hand_out(&self, table: &HashMap<Arc<str>, Vec<usize>>, from: usize, channel: &str, frame: &Arc<[u8]>) {
        let Some((name, loops)) = table.get_key_value(channel) else {
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
                queue.push_back(Delivery { channel: name.clone(), frame: frame.clone() });
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

    /// (channels, subscriptions, events dropped between loops).
    pub fn stats(&self) -> (usize, usize, u64) {
        let channels = self.table.lock().unwrap_or_else(PoisonError::into_inner).len();
        (channels, self.subscriptions.load(Ordering::Relaxed), self.dropped.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(loops: usize, capacity: usize) -> (Hub, Vec<mio::Poll>) {
        let polls: Vec<mio::Poll> = (0..loops).map(|_| mio::Poll::new().unwrap()).collect();
        let wakers = polls.iter().map(|p| Arc::new(Waker::new(p.registry(), mio::Token(0)).unwrap())).collect();
        (Hub::new(wakers, capacity), polls)
    }

    fn frames(hub: &Hub, lp: usize) -> Vec<String> {
        let mut out = VecDeque::new();
        hub.drain(lp, &mut out);
        out.iter().map(|d| format!("{}:{}", d.channel, String::from_utf8_lossy(&d.frame))).collect()
    }

    #[test]
    fn events_reach_the_loops_that_listen_in_publish_order() {
        let (hub, _polls) = hub(3, 16);
        hub.listen(0, "a");
        hub.listen(2, "a");
        hub.listen(2, "b");
        for (i, ch) in ["a", "b", "a", "c"].iter().enumerate() {
            hub.publish(1, ch, &Arc::from(i.to_string().as_bytes()));
        }
        assert_eq!(frames(&hub, 0), ["a:0", "a:2"]);
        assert!(frames(&hub, 1).is_empty());
        assert_eq!(frames(&hub, 2), ["a:0", "b:1", "a:2"]);
        hub.unlisten(0, "a");
        hub.unlisten(2, "a");
        hub.unlisten(2, "b");
        assert_eq!(hub.stats().0, 0, "a channel nobody listens to is gone");
    }

    #[test]
    fn a_full_inbox_drops_and_says_so() {
        let (hub, _polls) = hub(2, 2);
        hub.listen(1, "a");
        for _ in 0..3 {
            hub.publish(0, "a", &Arc::from(&b"x"[..]));
        }
        let mut out = VecDeque::new();
        assert!(hub.drain(1, &mut out), "the overflow is reported");
        assert_eq!(out.len(), 2);
        assert_eq!(hub.stats().2, 1);
        out.clear();
        assert!(!hub.drain(1, &mut out), "once");
    }
}
