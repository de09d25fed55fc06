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

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
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
}

pub type Finished = (Call, Result<CallOutput, Failure>);

/// What a slice of a call came to.
pub enum Slice {
    Done(Finished),
    /// It yielded at a tick: the call, to run again later.
    Yielded(Call),
}

impl Call {
    pub fn new(key: usize, conn: u64, head: Head, started: Instant, handler: Arc<Handler>, future: CallFuture) -> Call {
        Call { key, conn, head, started, handler, future }
    }

    /// Runs one slice: the result if the call ended, or the call back.
    pub fn slice(mut self) -> Slice {
        // The guest never waits on anything but the next slice, so there
        // is nobody to wake: a pending call is simply polled again.
        let mut cx = Context::from_waker(Waker::noop());
        match self.future.as_mut().poll(&mut cx) {
            Poll::Ready(result) => Slice::Done((self, result)),
            Poll::Pending => Slice::Yielded(self),
        }
    }
}

/// The calls of one loop that wait for a slice: new ones, not started yet
/// (they hold nothing but their arguments), and ones that yielded.
#[derive(Default)]
pub struct Calls {
    fresh: VecDeque<Call>,
    waiting: VecDeque<Call>,
}

impl Calls {
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

    pub fn is_empty(&self) -> bool {
        self.fresh.is_empty() && self.waiting.is_empty()
    }

    pub fn len(&self) -> usize {
        self.fresh.len() + self.waiting.len()
    }

    /// Starts new calls in arrival order, then gives yielded calls a slice
    /// each, round-robin, until `TURN_BUDGET` is spent (at least one slice
    /// of a yielded call per turn, so that every call progresses however
    /// many new ones arrive), and returns the ones that ended.
    pub fn run(&mut self, finished: &mut Vec<Finished>) {
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
        }
    }
}
