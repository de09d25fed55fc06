//! The wasmtime embedding: one `Engine` for the process, the pooling
//! allocator, an epoch ticker for CPU deadlines, and the per-request call: a
//! fresh, isolated instance from the module's `InstancePre`, dropped after.

use std::time::Duration;

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimitsBuilder, Trap,
};

use super::Handler;
use super::abi::{self, CallCtx, Publication};
use crate::config::GuestLimits;

/// How often the epoch advances: the granularity of guest deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Instances alive at once: one per loop thread calling, plus loaders.
const POOL_INSTANCES: u32 = 64;

/// Why a call did not produce a response.
#[derive(Debug)]
pub enum Failure {
    /// The handler is suspended for this much longer (see `health`).
    Suspended(Duration),
    Failed(CallError),
}

/// A failed call: a trap, an overrun, a malformed return.
#[derive(Debug)]
pub struct CallError {
    pub reason: String,
    /// The CPU deadline interrupted it (a strike, see `health`).
    pub overran: bool,
}

impl From<&str> for CallError {
    fn from(reason: &str) -> CallError {
        CallError { reason: reason.into(), overran: false }
    }
}

impl From<String> for CallError {
    fn from(reason: String) -> CallError {
        CallError { reason, overran: false }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Suspended(left) => write!(f, "suspended for {:.1} s more", left.as_secs_f64()),
            Failure::Failed(e) => f.write_str(&e.reason),
        }
    }
}

/// What a successful call produced.
pub struct CallOutput {
    pub status: u16,
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub subscriptions: Vec<String>,
    pub publishes: Vec<Publication>,
    pub logs: Vec<String>,
}

pub struct Runtime {
    engine: Engine,
    linker: wasmtime::Linker<CallCtx>,
    limits: GuestLimits,
    deadline_ticks: u64,
}

impl Runtime {
    pub fn new(limits: GuestLimits) -> anyhow::Result<Runtime> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(POOL_INSTANCES)
            .total_memories(POOL_INSTANCES)
            .total_tables(POOL_INSTANCES)
            .max_memory_size(limits.memory)
            // Keeping the low pages resident (reset in place, not unmapped)
            // is what makes a fresh instance per request cheap.
            .linear_memory_keep_resident(2 * 1024 * 1024)
            .table_keep_resident(64 * 1024)
            .pagemap_scan(Enabled::Auto);
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .wasm_backtrace_max_frames(None)
            .max_wasm_stack(512 * 1024);
        let engine = Engine::new(&config)?;
        let linker = abi::linker(&engine)?;
        let ticker = engine.weak();
        std::thread::Builder::new().name("house-epoch".into()).spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
        let deadline_ticks = (limits.deadline.as_millis() as u64 / EPOCH_TICK.as_millis() as u64).max(1);
        Ok(Runtime { engine, linker, limits, deadline_ticks })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn linker(&self) -> &wasmtime::Linker<CallCtx> {
        &self.linker
    }

    /// A store for one call, with the memory cap and the CPU deadline set.
    pub fn store(&self, kind: super::Kind) -> Store<CallCtx> {
        let limits =
            StoreLimitsBuilder::new().memory_size(self.limits.memory).instances(1).trap_on_grow_failure(true).build();
        let mut store = Store::new(&self.engine, CallCtx::new(kind, limits));
        store.limiter(|ctx| &mut ctx.limits);
        store.set_epoch_deadline(self.deadline_ticks);
        store
    }

    /// Calls `handler` with an encoded argument block, in a fresh instance,
    /// unless it is suspended for overrunning its deadline too often.
    pub fn call(&self, handler: &Handler, args: &[u8]) -> Result<CallOutput, Failure> {
        if let Some(left) = handler.health.suspended(std::time::Instant::now()) {
            return Err(Failure::Suspended(left));
        }
        let result = self.call_fresh(handler, args);
        let overran = matches!(&result, Err(f) if f.overran);
        if handler.health.record(overran, self.limits.strikes, self.limits.quarantine) {
            return Err(Failure::Failed(CallError {
                reason: format!(
                    "exceeded its CPU deadline of {} ms {} times in a row: suspended for {} s",
                    self.limits.deadline.as_millis(),
                    self.limits.strikes,
                    self.limits.quarantine.as_secs_f64()
                ),
                overran: true,
            }));
        }
        result.map_err(Failure::Failed)
    }

    fn call_fresh(&self, handler: &Handler, args: &[u8]) -> Result<CallOutput, CallError> {
        let module = &handler.module;
        let mut store = self.store(handler.spec.kind);
        let describe = |e: wasmtime::Error| self.failure(e);
        let instance = module.pre.instantiate(&mut store).map_err(describe)?;
        let memory = instance
            .get_module_export(&mut store, &module.memory)
            .and_then(wasmtime::Extern::into_memory)
            .ok_or("memory export is not a memory")?;
        store.data_mut().memory = Some(memory);
        let (ptr, len) = if args.is_empty() {
            (0, 0)
        } else {
            let alloc = module.alloc.as_ref().ok_or("house_alloc is missing")?;
            let alloc = instance
                .get_module_export(&mut store, alloc)
                .and_then(wasmtime::Extern::into_func)
                .ok_or("house_alloc is not a function")?
                .typed::<u32, u32>(&store)
                .map_err(describe)?;
            let ptr = alloc.call(&mut store, args.len() as u32).map_err(describe)?;
            memory
                .write(&mut store, ptr as usize, args)
                .map_err(|_| format!("house_alloc returned {ptr}, outside memory"))?;
            (ptr, args.len() as u32)
        };
        let func = instance
            .get_module_export(&mut store, &handler.export)
            .and_then(wasmtime::Extern::into_func)
            .ok_or("handler export is not a function")?
            .typed::<(u32, u32), u64>(&store)
            .map_err(describe)?;
        let packed = func.call(&mut store, (ptr, len)).map_err(describe)?;
        let (ptr, len) = (packed as u32, (packed >> 32) as u32);
        let block = abi::slice(memory.data(&store), ptr, len).map_err(|e| format!("bad response: {e}"))?;
        let resp = abi::decode_response(block).map_err(|e| format!("bad response: {e}"))?;
        let ctx = store.into_data();
        Ok(CallOutput {
            status: resp.status,
            content_type: resp.content_type,
            headers: resp.headers,
            body: resp.body,
            subscriptions: ctx.subscriptions,
            publishes: ctx.publishes,
            logs: ctx.logs,
        })
    }

    /// One line for a failed call: a deadline overrun is named as such.
    pub fn describe(&self, e: wasmtime::Error) -> String {
        self.failure(e).reason
    }

    fn failure(&self, e: wasmtime::Error) -> CallError {
        if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            let reason = format!("exceeded its CPU deadline of {} ms", self.limits.deadline.as_millis());
            return CallError { reason, overran: true };
        }
        CallError { reason: format!("{e:#}").replace('\n', " "), overran: false }
    }
}
