//! The engine: where channels live beyond one event loop.
//!
//! `memory` (the default) is the hub alone: channels span the loops of this
//! process and nothing else, with nothing to run. `redis://` links the hub
//! to a Redis server so that every house on it shares its channels
//! (`redis.rs`). Both keep each channel's history (`history.rs` for
//! memory, Redis Streams for Redis) and give every event its id. Guests'
//! key-value data follows the engine (`kv/`): embedded with `memory`, on
//! the same Redis with `redis://`. So does presence (`presence.rs`): who is
//! in a channel, announced on it as they join and leave.

pub mod broker;
pub mod history;
pub mod kv;
pub mod presence;
pub mod redis;
pub mod redis_conn;
pub mod redis_presence;
mod redis_replay;
pub mod timer;

use std::sync::Arc;

pub use broker::{Deliver, EngineStats, Link, Opener};

use crate::config::{Engine, HistoryLimits};
use crate::log::Log;

/// A running engine.
pub enum Running {
    Memory,
    Redis(Arc<redis::Bridge>),
}

impl Running {
    /// Starts `engine`, delivering to `deliver` (the hub). Never waits for a
    /// server: Redis down at start is retried in the background while the
    /// host serves. Its link, if any, is for the hub ([`Running::link`]).
    pub fn start(
        engine: &Engine,
        deliver: Arc<dyn Deliver>,
        sse_buffer: usize,
        history: HistoryLimits,
        log: Log,
    ) -> anyhow::Result<Running> {
        match engine {
            Engine::Memory => Ok(Running::Memory),
            Engine::Redis(cfg) => Ok(Running::Redis(redis::Bridge::start(cfg, deliver, sse_buffer, history, log)?)),
        }
    }

    /// The broker beyond this process, for the hub to tell of its
    /// listeners (none for `memory`).
    pub fn link(&self) -> Option<Arc<dyn Link>> {
        match self {
            Running::Memory => None,
            Running::Redis(bridge) => Some(bridge.clone()),
        }
    }

    pub fn stats(&self) -> EngineStats {
        match self {
            Running::Memory => EngineStats { kind: "memory", up: true, refused: 0 },
            Running::Redis(bridge) => bridge.stats(),
        }
    }
}
