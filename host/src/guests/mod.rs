//! Guests: WebAssembly modules that declare handlers with typed, validated
//! parameters. This module owns the wasmtime embedding (`engine`), the ABI
//! (`abi`), manifests (`manifest`), parameter validation (`validate`),
//! loading (`loader`, `cache`), the static files a module ships (`statics`),
//! the set of loaded modules (`registry`), hot reload (`watch`) and the
//! instances kept between requests (`warm`), with the record of what a call
//! wrote that their reset restores (`dirty`).

pub mod abi;
pub mod cache;
pub mod call;
pub mod compile;
pub mod dirty;
pub mod engine;
pub mod health;
pub mod linker;
pub mod loader;
pub mod manifest;
pub mod openapi;
pub mod registry;
pub mod statics;
mod transact;
pub mod validate;
pub mod warm;
pub mod watch;

use std::sync::Arc;

pub use abi::Publication;
pub use engine::Runtime;
pub use manifest::{HandlerSpec, Kind};

/// One handler of one loaded module: what the route table points at.
pub struct Handler {
    pub spec: HandlerSpec,
    pub module: Arc<loader::LoadedModule>,
    /// Its place among its module's handlers (`LoadedModule::handlers`).
    pub index: usize,
    pub export: wasmtime::ModuleExport,
    /// Recent strikes (deadline and budget overruns), and the suspension
    /// they lead to.
    pub health: health::Health,
}
