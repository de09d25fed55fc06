//! The house host as a library: everything but flag parsing's `main`. The
//! `house` binary is a thin wrapper; benchmarks use the pieces directly
//! (a guest call against a handler compiled in, for instance).

// One `unsafe` block in the whole host: deserializing a cached compiled
// module (guests/cache.rs), which wasmtime cannot check for us.
#![deny(unsafe_code)]

pub mod calls;
pub mod commands;
pub mod config;
pub mod conn;
pub mod core;
pub mod dispatch;
pub mod engine;
pub mod event_loop;
pub mod guests;
pub mod http;
pub mod hub;
pub mod identity;
pub mod log;
pub mod metrics;
pub mod random;
pub mod router;
pub mod serve;
pub mod shard;
pub mod socket;
pub mod sse;
pub mod streams;
pub mod timers;
pub mod websocket;
