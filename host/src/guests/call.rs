//! What a guest call gives back: its output, or why it failed, and the
//! steps it goes through (for a probe to time).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::abi::Publication;
use crate::metrics::CallResult;

/// Why a call did not produce a response.
#[derive(Debug)]
pub enum Failure {
    /// The handler is suspended for this much longer (see `health`).
    Suspended(Duration),
    /// `--guest-calls` calls are in flight already.
    Busy(usize),
    Failed(CallError),
}

/// A failed call: a trap, an overrun, a malformed return.
#[derive(Debug)]
pub struct CallError {
    pub reason: String,
    /// What the call logged before it failed (an SDK guest's panic message
    /// and place among them): worth as much as the reason to its author.
    pub logs: Vec<String>,
    /// It overran its CPU deadline or a budget: a strike (see `health`).
    pub strike: bool,
    /// How it failed, for the metrics.
    pub kind: CallResult,
}

impl From<&str> for CallError {
    fn from(reason: &str) -> CallError {
        CallError { reason: reason.into(), logs: Vec::new(), strike: false, kind: CallResult::Failed }
    }
}

impl From<String> for CallError {
    fn from(reason: String) -> CallError {
        CallError { reason, logs: Vec::new(), strike: false, kind: CallResult::Failed }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Suspended(left) => write!(f, "suspended for {:.1} s more", left.as_secs_f64()),
            Failure::Busy(n) => write!(f, "{n} guest calls are in flight already"),
            Failure::Failed(e) => f.write_str(&e.reason),
        }
    }
}

/// A guest call in flight: poll it until it is ready; `Pending` means it
/// yielded at an epoch tick and can be polled again at once.
pub type CallFuture = Pin<Box<dyn Future<Output = Result<CallOutput, Failure>> + Send>>;

/// The steps of one call, in order, for a probe to time (the bench's
/// breakdown of the guest call; the server's probe does nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The call has a store: an idle instance's, or one just made (limits,
    /// context, deadline callback).
    Store,
    /// The module is instantiated (nothing to do for an idle instance).
    Instantiated,
    /// The argument block is in the instance's memory.
    ArgsWritten,
    /// The handler has returned.
    Called,
    /// Its response block is decoded and checked.
    Decoded,
    /// The instance is reset and kept (`warm`), or its store dropped: its
    /// slots back in the pool, its memory reset by wasmtime.
    Dropped,
}

/// What a successful call produced.
pub struct CallOutput {
    pub status: u16,
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub subscriptions: Vec<String>,
    /// (channel, info) of the subscriptions made as a member (`subscribe_as`).
    pub members: Vec<(String, String)>,
    /// Events of history the stream asked to open with.
    pub backlog: usize,
    pub publishes: Vec<Publication>,
    pub logs: Vec<String>,
}
