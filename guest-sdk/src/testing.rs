//! What handlers asked of the host, when run natively (outside wasm32): the
//! host imports record here instead, so a handler can be unit-tested as an
//! ordinary function.

use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

std::thread_local! {
    pub(crate) static RECORDED: RefCell<Recorded> = RefCell::new(Recorded::default());
}

/// One `publish` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The channel it went to.
    pub channel: String,
    /// Its data.
    pub data: String,
    /// Its `event:` type, if any.
    pub event: Option<String>,
    /// The id the handler gave (the host would drop it).
    pub id: Option<String>,
}

/// Every import call since the last [`take`], on this thread.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Channels subscribed, in order.
    pub subscriptions: Vec<String>,
    /// (channel, info) of the subscriptions made as a member
    /// ([`crate::subscribe_as`]), in order.
    pub members: Vec<(String, String)>,
    /// The largest backlog asked for ([`crate::subscribe_with_backlog`]).
    pub backlog: u32,
    /// Events published, in order.
    pub published: Vec<Published>,
    /// Lines logged, in order.
    pub logs: Vec<String>,
}

/// Returns and clears what this thread's handlers asked of the host.
pub fn take() -> Recorded {
    RECORDED.with(|r| core::mem::take(&mut *r.borrow_mut()))
}
