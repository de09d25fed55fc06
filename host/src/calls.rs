//! Guest calls in flight on one loop, run in slices so that none holds the
//! loop: a call runs until it returns or reaches an epoch tick, where it
//! yields (wasmtime's async support: the call lives on a fiber stack from
//! the pool, no extra thread). Most calls end within their first slice,
//! which the loop runs as soon as the request is complete; the others wait
//! here and share a bounded slice of every turn, round-robin.
//!
//! Why slices on the loop rather than worker threads: a guest call that
//! ends in its first slice (nearly all of them) costs no hand-off, no
//! wake-up and no cache miss on another core, and a loop per core already
//! keeps every core busy.
//!
//! A call can also wait for something (a key-value reply from Redis): then
//! it is *parked*, costs the loop nothing, and is woken through the loop's
//! `mio::Waker` when the reply is there. Each call has its own `Waker`,
//! which tells the two apart: wasmtime wakes it at once when it yields at
//! a tick (the call stays runnable, no system call); a wake that finds it
//! parked queues its id for the loop and wakes the loop.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::guests::Handler;
use crate::guests::engine::{CallFuture, CallOutput, Failure};
use crate::http::request::Head;

/// Guest time a loop spends per turn on calls that have already yielded,
/// before it goes back to its sockets. A call's slice ends at the next
/// epoch tick (1 ms), so a turn runs at most about this plus one tick.
pub const TURN_BUDGET: Duration = Duration::from_millis(1);

/// A call and the request it answers.
pub struct Call {
    /// The connection, by slab key and by id (a key is reused once its
    /// connection closes; the id never is).
    pub key: usize,
    pub conn: u64,
    pub head: Head,
    pub started: Instant,
    pub handler: Arc<Handler>,
    future: CallFuture,
    id: u64,
    wake: Arc<CallWake>,
    waker: Waker,
}

/// Parked calls that were woken, for their loop to run again.
struct Woken {
    ids: Mutex<Vec<u64>>,
    loop_waker: Arc<mio::Waker>,
}

/// One call's waker.
struct CallWake {
    id: u64,
    /// Woken since its last slice began.
    woken: AtomicBool,
    /// Parked (or about to be): a wake must go through the loop.
    parked: AtomicBool,
    to: Arc<Woken>,
}

impl Wake for CallWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // `woken` then `parked` here, `parked` then `woken` in `slice`
        // (all SeqCst): one side at least sees the other, so a wake is
        // never lost between the poll and the parking.
        if !self.woken.swap(true, SeqCst) && self.parked.load(SeqCst) {
            let mut ids = self.to.ids.lock().unwrap_or_else(PoisonError::into_inner);
            ids.push(self.id);
            // The first id since the loop last took them wakes it; the
            // others ride along (a group commit answers dozens at once:
            // one eventfd write, not dozens).
            if ids.len() == 1 {
                let _ = self.to.loop_waker.wake();
            }
        }
    }
}

pub type Finished = (Call, Result<CallOutput, Failure>);

/// What a slice of a call came to.
pub enum Slice {
    Done(Finished),
    /// It yielded at a tick: the call, to run again later.
    Yielded(Call),
    /// It waits for a reply: the call, to park until it is woken.
    Parked(Call),
}

impl Call {
    /// Runs one slice: the result if the call ended, or the call back.
    pub fn slice(mut self) -> Slice {
        self.wake.woken.store(false, SeqCst);
        let mut cx = Context::from_waker(&self.waker);
        match self.future.as_mut().poll(&mut cx) {
            Poll::Ready(result) => Slice::Done((self, result)),
            Poll::Pending => {
                self.wake.parked.store(true, SeqCst);
                if self.wake.woken.load(SeqCst) {
                    self.wake.parked.store(false, SeqCst);
                    Slice::Yielded(self)
                } else {
                    Slice::Parked(self)
                }
            }
        }
    }
}

/// The calls of one loop that wait for a slice: new ones, not started yet
/// (they hold nothing but their arguments), and ones that yielded; and the
/// ones parked until they are woken. Each is at most `--guest-calls`.
pub struct Calls {
    fresh: VecDeque<Call>,
    waiting: VecDeque<Call>,
    parked: HashMap<u64, Call>,
    woken: Arc<Woken>,
    next_id: u64,
}

impl Calls {
    /// `loop_waker` wakes the loop these calls run on.
    pub fn new(loop_waker: Arc<mio::Waker>) -> Calls {
        Calls {
            fresh: VecDeque::new(),
            waiting: VecDeque::new(),
            parked: HashMap::new(),
            woken: Arc::new(Woken { ids: Mutex::new(Vec::new()), loop_waker }),
            next_id: 0,
        }
    }

    /// A call of this loop, not run yet.
    pub fn call(
        &mut self,
        (key, conn): (usize, u64),
        head: Head,
        started: Instant,
        handler: Arc<Handler>,
        future: CallFuture,
    ) -> Call {
        let id = self.next_id;
        self.next_id += 1;
        let wake = Arc::new(CallWake {
            id,
            woken: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            to: self.woken.clone(),
        });
        let waker = Waker::from(wake.clone());
        Call { key, conn, head, started, handler, future, id, wake, waker }
    }

    /// A call that has not had its first slice.
    pub fn push_fresh(&mut self, call: Call) {
        self.fresh.push_back(call);
    }

    /// Drops the calls not started yet whose connection `gone` says has
    /// closed: nothing has run, so nothing is lost, and a client that left
    /// costs no guest work.
    pub fn forget_fresh(&mut self, gone: impl Fn(&Call) -> bool) {
        self.fresh.retain(|call| !gone(call));
    }

    /// A call that yielded.
    pub fn push(&mut self, call: Call) {
        self.waiting.push_back(call);
    }

    /// A call that waits to be woken.
    pub fn park(&mut self, call: Call) {
        self.parked.insert(call.id, call);
    }

    pub fn is_empty(&self) -> bool {
        self.fresh.is_empty() && self.waiting.is_empty() && self.parked.is_empty()
    }

    /// Whether a call can run now (else the loop may sleep: a parked call
    /// that is woken wakes it).
    pub fn runnable(&self) -> bool {
        !self.fresh.is_empty() || !self.waiting.is_empty()
    }

    pub fn len(&self) -> usize {
        self.fresh.len() + self.waiting.len() + self.parked.len()
    }

    /// Starts new calls in arrival order, then gives yielded calls a slice
    /// each, round-robin, until `TURN_BUDGET` is spent (at least one slice
    /// of a yielded call per turn, so that every call progresses however
    /// many new ones arrive), and returns the ones that ended.
    pub fn run(&mut self, finished: &mut Vec<Finished>) {
        let woken = std::mem::take(&mut *self.woken.ids.lock().unwrap_or_else(PoisonError::into_inner));
        for id in woken {
            // Not there: it was woken while it still ran, and stayed runnable.
            if let Some(call) = self.parked.remove(&id) {
                call.wake.parked.store(false, SeqCst);
                self.waiting.push_back(call);
            }
        }
        let started = Instant::now();
        while started.elapsed() < TURN_BUDGET {
            let Some(call) = self.fresh.pop_front() else { break };
            self.slice(call, finished);
        }
        for i in 0..self.waiting.len() {
            if i > 0 && started.elapsed() >= TURN_BUDGET {
                break;
            }
            let Some(call) = self.waiting.pop_front() else { break };
            self.slice(call, finished);
        }
    }

    fn slice(&mut self, call: Call, finished: &mut Vec<Finished>) {
        match call.slice() {
            Slice::Done(done) => finished.push(done),
            Slice::Yielded(call) => self.waiting.push_back(call),
            Slice::Parked(call) => self.park(call),
        }
    }
}
