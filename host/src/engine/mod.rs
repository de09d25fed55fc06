//! The engine: where channels live beyond one event loop.
//!
//! `memory` (the default) is the hub alone: channels span the loops of this
//! process and nothing else, with nothing to run. `redis://` links the hub
//! to a Redis server so that every house on it shares its channels
//! (`redis.rs`). Both keep each channel's history (`history.rs` for
//! memory, Redis Streams for Redis) and give every event its id. Guests'
//! key-value data follows the engine (`kv/`): embedded with `memory`, on
//! the same Redis with `redis://`.

pub mod history;
pub mod kv;
pub mod redis;
pub mod redis_conn;
pub mod timer;

use std::sync::Arc;

use crate::config::{Engine, HistoryLimits};
use crate::hub::Hub;
use crate::log::Log;

/// What `/_house/stats` says of the engine.
pub struct EngineStats {
    pub kind: &'static str,
    /// Connected to its server (always, for `memory`).
    pub up: bool,
    /// Messages from the server that were not house events, or too large.
    pub refused: u64,
}

/// A running engine.
pub enum Running {
    Memory,
    Redis(Arc<redis::Bridge>),
}

impl Running {
    /// Starts `engine` for `hub`. Never waits for a server: Redis down at
    /// start is retried in the background while local channels serve.
    pub fn start(
        engine: &Engine,
        hub: &Arc<Hub>,
        sse_buffer: usize,
        history: HistoryLimits,
        log: Log,
    ) -> anyhow::Result<Running> {
        match engine {
            Engine::Memory => Ok(Running::Memory),
            Engine::Redis(cfg) => {
                let bridge = redis::Bridge::start(cfg, hub.clone(), sse_buffer, history, log)?;
                hub.set_link(bridge.clone());
                Ok(Running::Redis(bridge))
            }
        }
    }

    pub fn stats(&self) -> EngineStats {
        match self {
            Running::Memory => EngineStats { kind: "memory", up: true, refused: 0 },
            Running::Redis(bridge) => bridge.stats(),
        }
    }
}
