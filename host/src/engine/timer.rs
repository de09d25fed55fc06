//! Sleeping without a thread: a future that is woken once its deadline has
//! passed, for a parked guest call (the backoff between re-runs of a
//! transaction in conflict, the wait for Redis to come back before a commit
//! of unknown outcome is sent again).
//!
//! One `house-timer` thread for the process keeps the deadlines in a heap
//! and wakes each one's waker when it is due; the loops never wait (a
//! sleeping call is parked like one waiting for a reply). The heap holds at
//! most one entry per sleeping call, so `--guest-calls` bounds it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

struct Due {
    at: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Due {
    fn eq(&self, other: &Due) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Due) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Due) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Timer {
    heap: Mutex<(BinaryHeap<Reverse<Due>>, u64)>,
    wake: Condvar,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let timer: &'static Timer =
            Box::leak(Box::new(Timer { heap: Mutex::new((BinaryHeap::new(), 0)), wake: Condvar::new() }));
        std::thread::Builder::new().name("house-timer".into()).spawn(move || timer.run()).expect("spawn house-timer");
        timer
    })
}

impl Timer {
    fn run(&self) {
        let mut guard = self.heap.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            while guard.0.peek().is_some_and(|Reverse(d)| d.at <= now) {
                if let Some(Reverse(due)) = guard.0.pop() {
                    due.waker.wake();
                }
            }
            guard = match guard.0.peek() {
                Some(Reverse(next)) => {
                    let left = next.at.saturating_duration_since(now);
                    self.wake.wait_timeout(guard, left).unwrap_or_else(PoisonError::into_inner).0
                }
                None => self.wake.wait(guard).unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    fn add(&self, at: Instant, waker: Waker) {
        let mut guard = self.heap.lock().unwrap_or_else(PoisonError::into_inner);
        guard.1 += 1;
        let seq = guard.1;
        let first = guard.0.peek().is_none_or(|Reverse(d)| at < d.at);
        guard.0.push(Reverse(Due { at, seq, waker }));
        if first {
            self.wake.notify_one();
        }
    }
}

/// Ready once `d` has passed.
pub fn sleep(d: Duration) -> Sleep {
    Sleep { at: Instant::now() + d, armed: false }
}

pub struct Sleep {
    at: Instant,
    armed: bool,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        // Armed once: a spurious poll before the deadline (a poller that
        // spins, `run_here`) does not add an entry each time.
        if !self.armed {
            self.armed = true;
            timer().add(self.at, cx.waker().clone());
        }
        Poll::Pending
    }
}

/// A pseudo-random fraction in [0, 1), for jitter (no need for the
/// CSPRNG: it only spreads re-runs apart; each `RandomState` has new keys).
pub fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let n = std::collections::hash_map::RandomState::new().build_hasher().finish();
    (n >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_are_woken_in_order_of_their_deadlines() {
        let started = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        for ms in [30u64, 10, 20] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                futures_executor_lite(sleep(Duration::from_millis(ms)));
                tx.send(ms).unwrap();
            });
        }
        let order: Vec<u64> = (0..3).map(|_| rx.recv().unwrap()).collect();
        assert_eq!(order, [10, 20, 30]);
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!((0.0..1.0).contains(&jitter()));
    }

    /// Polls `f`, parking the thread until its waker is called.
    fn futures_executor_lite<F: Future>(f: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
        let mut f = std::pin::pin!(f);
        loop {
            if let Poll::Ready(out) = f.as_mut().poll(&mut Context::from_waker(&waker)) {
                return out;
            }
            std::thread::park();
        }
    }
}
