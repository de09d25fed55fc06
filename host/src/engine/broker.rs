//! What the engine offers the rest of the host, as types and traits (the
//! engine imports nothing from the hub, the loops, `guests/` or `http/`;
//! they use it):
//! - [`Link`]: a broker beyond this process (the Redis engine), which the
//!   hub tells of its listeners and asks what an opening stream is owed;
//! - [`Deliver`]: what the broker hands back to this process (the hub
//!   implements it): events with their ids, answers to opening streams, and
//!   "resume your streams" after an outage;
//! - [`EngineStats`]: what `/_house/stats` says of it.
//!
//! Transactions over guests' data are `kv`'s (`kv::Pending`), history and
//! ids `history`'s.

use std::sync::Arc;

use super::history::{EventId, Replay, Start};

/// A stream being opened: its loop, and its connection there (by slab key
/// and by id, as a key is reused).
#[derive(Debug, Clone, Copy)]
pub struct Opener {
    pub lp: usize,
    pub key: usize,
    pub conn: u64,
}

/// The hub's way beyond this process: told when a channel gains its first
/// listener here and loses its last, and asked what an opening stream is
/// owed. Its events are published by the calls' commits and come back
/// through [`Deliver::event`]. Called under the hub's lock; it must only
/// queue, never block.
pub trait Link: Send + Sync {
    fn listen(&self, channel: &Arc<str>);
    fn unlisten(&self, channel: &Arc<str>);
    /// A stream opening on `channels`: what it is owed if the link can say
    /// at once, or None and the answer later, through [`Deliver::opened`].
    fn open(&self, opener: Opener, channels: &[Arc<str>], start: &Start) -> Option<Replay>;
}

/// What a broker hands to this process's loops.
pub trait Deliver: Send + Sync {
    /// An event (framed, with its id) of `channel`, to every loop listening.
    fn event(&self, channel: &str, id: EventId, frame: &Arc<[u8]>);
    /// The answer to [`Link::open`], for the opener's loop.
    fn opened(&self, opener: Opener, replay: Replay);
    /// Streams may have missed events (the broker was away): end them with
    /// a retry hint so that they resume from their last id.
    fn resync(&self);
}

/// What `/_house/stats` says of the engine.
pub struct EngineStats {
    pub kind: &'static str,
    /// Connected to its server (always, for `memory`).
    pub up: bool,
    /// Messages from the server that were not house events, or too large.
    pub refused: u64,
}
