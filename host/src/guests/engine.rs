//! The wasmtime embedding: two engines for the process (the pooling
//! allocator set for small memories and for the rest: `Reset`), an epoch
//! ticker for CPU deadlines, and the per-request call: an isolated instance
//! in a fresh instance's state, either new from the module's `InstancePre`
//! or an idle one reset after its last call (`warm`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline,
};

use super::Handler;
use super::abi::{self, CallCtx};
pub use super::call::{CallError, CallFuture, CallOutput, Failure, Phase};
pub use super::warm::SMALL_MEMORY;
use super::warm::{Count, Live, Warm};
use crate::config::GuestLimits;
use crate::engine::kv::{Kv, KvError, Pending};
use crate::engine::presence::Presence;
use crate::metrics::{CallResult, METRICS};

/// How often the epoch advances: the granularity of guest deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Instances alive at once beyond the calls in flight (`--guest-calls`):
/// loaders instantiate each module once to check it.
const LOADER_INSTANCES: u32 = 16;

/// How an instance's memory is reset after its call, chosen per module by
/// its initial memory (measured: BENCHMARKS.md, scenario 3, and the notes
/// in `Runtime::lane`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// Rewrite the resident memory whole (memset, and memcpy of the data
    /// image): for memories of up to `SMALL_MEMORY` bytes at the start,
    /// cheaper than finding the dirty pages.
    Rewrite = 0,
    /// Find the dirty pages (one `PAGEMAP_SCAN` ioctl) and restore only
    /// those: for larger memories, whose rewriting would cost more.
    DirtyPages = 1,
}

impl Reset {
    /// The reset for a module whose initial memory is `initial` bytes.
    pub fn for_memory(initial: u64) -> Reset {
        if initial <= SMALL_MEMORY { Reset::Rewrite } else { Reset::DirtyPages }
    }

    pub fn name(self) -> &'static str {
        match self {
            Reset::Rewrite => "rewrite",
            Reset::DirtyPages => "dirty pages",
        }
    }
}

/// One wasmtime engine, its pooling allocator set for one `Reset`, and its
/// linker. Modules are compiled with the same code settings for both
/// (`code_config`), so one compiled artifact loads into either.
struct Lane {
    engine: Engine,
    linker: wasmtime::Linker<CallCtx>,
}

/// Runs `future` to its end on this thread, polling it again whenever it
/// is pending (a guest yielding at a tick, or waiting on a Redis reply: it
/// spins, which is for tools, benchmarks and the loader, never the loops).
pub fn run_here<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

pub struct Runtime {
    /// By `Reset as usize`.
    lanes: [Lane; 2],
    limits: GuestLimits,
    sse_buffer: usize,
    deadline_ticks: u64,
    /// Calls in flight, all loops together (at most `--guest-calls`).
    in_flight: AtomicUsize,
    /// Guests' key-value data, if the host keeps any.
    kv: Option<Kv>,
    /// Idle instances of all modules (`--guest-warm-instances`).
    warm: Arc<Count>,
    /// Who is in which channel (`subscribe_as`, `presence`).
    presence: Option<Arc<Presence>>,
}

/// A call's claim on one of the `--guest-calls` places, given back when the
/// call's future is dropped, finished or not (it borrows the runtime the
/// future holds: one reference count changed per call, not two).
struct Slot<'a>(&'a Runtime);

impl Slot<'_> {
    fn take(runtime: &Runtime) -> Option<Slot<'_>> {
        let max = runtime.limits.calls;
        let taken = runtime.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1));
        // Made only if taken (`then`, not `then_some`: a slot made and
        // dropped on a refusal would give back a place it never took).
        taken.is_ok().then(|| Slot(runtime))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The engine settings that shape compiled code. The compiler process
/// (`compile`) uses exactly these, so that what it produces deserializes
/// here; the pooling allocator is added on top for the serving engine.
pub fn code_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true).wasm_backtrace_max_frames(None).max_wasm_stack(512 * 1024);
    config
}

impl Runtime {
    pub fn new(limits: GuestLimits, sse_buffer: usize) -> anyhow::Result<Runtime> {
        let lanes = [Runtime::lane(&limits, Reset::Rewrite)?, Runtime::lane(&limits, Reset::DirtyPages)?];
        let tickers: Vec<_> = lanes.iter().map(|lane| lane.engine.weak()).collect();
        std::thread::Builder::new().name("house-epoch".into()).spawn(move || {
            loop {
                for ticker in &tickers {
                    let Some(engine) = ticker.upgrade() else { return };
                    engine.increment_epoch();
                }
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
        let deadline_ticks = (limits.deadline.as_millis() as u64 / EPOCH_TICK.as_millis() as u64).max(1);
        let warm = Arc::new(Count::new(limits.warm));
        Ok(Runtime {
            lanes,
            limits,
            sse_buffer,
            deadline_ticks,
            in_flight: AtomicUsize::new(0),
            kv: None,
            warm,
            presence: None,
        })
    }

    /// The engine for modules reset by `reset`. Each has room for every
    /// call in flight and every idle instance: all of them may be of one
    /// kind.
    fn lane(limits: &GuestLimits, reset: Reset) -> anyhow::Result<Lane> {
        let mut pool = PoolingAllocationConfig::new();
        let instances = (limits.calls + limits.warm) as u32 + LOADER_INSTANCES;
        pool.total_core_instances(instances)
            .total_memories(instances)
            .total_tables(instances)
            .total_stacks(instances)
            .max_memory_size(limits.memory)
            .table_keep_resident(64 * 1024);
        match reset {
            // Measured on the chat (two pages), guest call alone: 5.2 us
            // rewriting against 5.9 us with the scan; over HTTP 13.0 against
            // 14.0 us of CPU a request. Memory a call grew beyond the first
            // SMALL_MEMORY bytes is given back (madvise) instead.
            Reset::Rewrite => pool.linear_memory_keep_resident(SMALL_MEMORY as usize).pagemap_scan(Enabled::No),
            // One PAGEMAP_SCAN ioctl (~2 us here whatever the size) finds
            // what to restore. Rewriting instead would cost a guest with
            // rustc's default 1 MiB stack 25.6 us a call against 6.3.
            Reset::DirtyPages => pool.linear_memory_keep_resident(2 * 1024 * 1024).pagemap_scan(Enabled::Auto),
        };
        let mut config = code_config();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let linker = super::linker::linker(&engine)?;
        Ok(Lane { engine, linker })
    }

    /// Gives calls the presence table.
    pub fn with_presence(mut self, presence: Arc<Presence>) -> Runtime {
        self.presence = Some(presence);
        self
    }

    /// Gives calls the key-value store (each module its namespace).
    pub fn with_kv(mut self, kv: Kv) -> Runtime {
        self.kv = Some(kv);
        self
    }

    /// Divides `--guest-warm-instances` among `loops` loops, the threads
    /// that call guests in the server; before any module is loaded.
    pub fn with_loops(mut self, loops: usize) -> Runtime {
        self.warm = Arc::new(Count::for_loops(self.limits.warm, loops));
        self
    }

    /// Idle instances of all modules, and how many may be.
    pub fn warm(&self) -> &Arc<Count> {
        &self.warm
    }

    /// The key-value store calls use, if any.
    pub fn kv(&self) -> Option<&Kv> {
        self.kv.as_ref()
    }

    /// The engine modules reset by `reset` are compiled for and run in.
    pub fn engine(&self, reset: Reset) -> &Engine {
        &self.lanes[reset as usize].engine
    }

    /// Guest calls in flight now, all loops together.
    pub fn calls_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn limits(&self) -> &GuestLimits {
        &self.limits
    }

    pub fn linker(&self, reset: Reset) -> &wasmtime::Linker<CallCtx> {
        &self.lanes[reset as usize].linker
    }

    /// A store for one instance of a module reset by `reset`, with the
    /// memory cap and the CPU deadline set.
    pub fn store(&self, reset: Reset, kind: super::Kind) -> Store<CallCtx> {
        let mut store = Store::new(self.engine(reset), self.ctx(kind));
        store.limiter(|ctx| &mut ctx.limits);
        store.set_epoch_deadline(self.deadline_ticks);
        store
    }

    /// A call's context: nothing done yet.
    fn ctx(&self, kind: super::Kind) -> CallCtx {
        let mut ctx =
            CallCtx::new(kind, abi::MemoryLimit { max: self.limits.memory }, self.limits.budgets, self.sse_buffer);
        ctx.presence = self.presence.clone();
        ctx
    }

    /// A store for the calls of one instance, run in slices: each call
    /// yields at every tick and is interrupted once it has run for its
    /// deadline's worth of ticks. The deadline is set again after each
    /// yield, so waiting to be resumed is not charged to the call.
    fn call_store(&self, reset: Reset, kind: super::Kind) -> Store<CallCtx> {
        let mut store = self.store(reset, kind);
        let deadline = self.deadline_ticks;
        store.epoch_deadline_callback(move |mut ctx| {
            let ctx = ctx.data_mut();
            ctx.ticks += 1;
            Ok(if ctx.ticks >= deadline { UpdateDeadline::Interrupt } else { UpdateDeadline::Yield(1) })
        });
        store
    }

    /// Calls `handler` with an encoded argument block, in an instance in a
    /// fresh instance's state (new, or idle and reset: `warm`), unless it is suspended for overrunning its deadline or budgets too
    /// often. The call runs in slices: polling the future runs it until it
    /// ends or the next epoch tick, where it yields (`Pending`; poll again
    /// when you like, no waker is involved). Its deadline counts the ticks it
    /// ran, not the time it waited between them. Its first poll fails with
    /// `Busy` if `--guest-calls` calls are in flight already.
    pub fn call_async(self: &Arc<Self>, handler: Arc<Handler>, args: Vec<u8>) -> Result<CallFuture, Failure> {
        if let Some(left) = handler.health.suspended(std::time::Instant::now) {
            METRICS.call(CallResult::Suspended, None);
            return Err(Failure::Suspended(left));
        }
        let runtime = self.clone();
        Ok(Box::pin(async move {
            // The place is taken when the call starts (its first poll), not
            // when it is made: a call still waiting for its first slice holds
            // no instance, so a burst of requests is not refused for that.
            let Some(slot) = Slot::take(&runtime) else {
                METRICS.call(CallResult::Busy, None);
                return Err(Failure::Busy(runtime.limits.calls));
            };
            let runtime = slot.0;
            let started = std::time::Instant::now();
            let mut result = runtime.transact(&handler, &args, |_| {}).await;
            let ended = match &result {
                Ok(out) if out.status >= 500 => CallResult::ServerError,
                Ok(_) => CallResult::Ok,
                Err(e) => e.kind,
            };
            METRICS.call(ended, Some(started.elapsed()));
            if let Err(e) = &mut result
                && e.strike
            {
                let l = &runtime.limits;
                if handler.health.strike(std::time::Instant::now(), l.strikes, l.strike_window, l.quarantine) {
                    METRICS.quarantined();
                    e.reason = format!(
                        "{}; {} strikes within {} s: suspended for {} s",
                        e.reason,
                        l.strikes,
                        l.strike_window.as_secs_f64(),
                        l.quarantine.as_secs_f64()
                    );
                }
            }
            result.map_err(Failure::Failed)
        }))
    }

    /// [`Runtime::call_async`] run to completion on this thread (tools and
    /// benchmarks; the server runs calls in slices from its loop instead).
    pub fn call(self: &Arc<Self>, handler: &Arc<Handler>, args: &[u8]) -> Result<CallOutput, Failure> {
        run_here(self.call_async(handler.clone(), args.to_vec())?)
    }

    /// One call run to completion on this thread, `probe` told as each
    /// step ends (no `--guest-calls` slot, no metrics, no strikes).
    pub fn call_probed(
        &self,
        handler: &Handler,
        args: &[u8],
        probe: impl FnMut(Phase),
    ) -> Result<CallOutput, CallError> {
        run_here(self.transact(handler, args, probe))
    }

    /// One run of the call; its key-value state, not committed yet.
    pub(super) async fn call_fresh(
        &self,
        handler: &Handler,
        args: &[u8],
        mut probe: impl FnMut(Phase),
    ) -> Result<(CallOutput, Option<Pending>), CallError> {
        let module = &handler.module;
        let kind = handler.spec.kind;
        let describe = |e: wasmtime::Error| self.failure(e);
        // An idle instance of the module, in a fresh instance's state, or a
        // new instance.
        let warm = module.instances.warm();
        let mut live = match warm.and_then(Warm::take) {
            Some(mut live) => {
                live.store.data_mut().kind = kind;
                METRICS.reused();
                probe(Phase::Store);
                probe(Phase::Instantiated);
                live
            }
            None => {
                let mut store = self.call_store(module.reset, kind);
                probe(Phase::Store);
                let instance = module.pre.instantiate_async(&mut store).await.map_err(describe)?;
                METRICS.instantiated();
                probe(Phase::Instantiated);
                let memory = instance
                    .get_module_export(&mut store, &module.memory)
                    .and_then(wasmtime::Extern::into_memory)
                    .ok_or("memory export is not a memory")?;
                Live::new(store, instance, memory, module.handlers.len(), warm)
                    .ok_or("a mutable global's export is not a global")?
            }
        };
        let Live { store, instance, memory, .. } = &mut live;
        let (instance, memory) = (*instance, *memory);
        if let Some(kv) = &self.kv {
            store.data_mut().kv = Some(Pending::new(kv.clone(), &module.file));
        }
        store.data_mut().memory = Some(memory);
        store.data_mut().chunk_shift = warm.and_then(Warm::chunk_shift).unwrap_or(0);
        store.set_epoch_deadline(1);
        let (ptr, len) = if args.is_empty() {
            (0, 0)
        } else if let Some((buffer, size)) = module.args_buffer
            && args.len() <= size as usize
        {
            // The module's own buffer: no call into it before the handler.
            memory.write(&mut *store, buffer as usize, args).map_err(|_| "house_args is outside memory")?;
            store.data_mut().wrote(buffer, args.len());
            (buffer, args.len() as u32)
        } else {
            let alloc = module.alloc.as_ref().ok_or("house_alloc is missing")?;
            let alloc = instance
                .get_module_export(&mut *store, alloc)
                .and_then(wasmtime::Extern::into_func)
                .ok_or("house_alloc is not a function")?
                .typed::<u32, u32>(&*store)
                .map_err(describe)?;
            let ptr = alloc.call_async(&mut *store, args.len() as u32).await.map_err(describe)?;
            memory
                .write(&mut *store, ptr as usize, args)
                .map_err(|_| format!("house_alloc returned {ptr}, outside memory"))?;
            store.data_mut().wrote(ptr, args.len());
            (ptr, args.len() as u32)
        };
        probe(Phase::ArgsWritten);
        let (func, store) = live.handler(handler.index, &handler.export).map_err(describe)?;
        let packed = match func.call_async(&mut *store, (ptr, len)).await {
            Ok(packed) => packed,
            Err(e) => {
                let mut failed = self.failure(e);
                failed.logs = std::mem::take(&mut store.data_mut().logs);
                return Err(failed);
            }
        };
        probe(Phase::Called);
        let (ptr, len) = (packed as u32, (packed >> 32) as u32);
        let budget = self.limits.budgets.response_bytes;
        if len as usize > budget {
            let reason = format!("returned a response block of {len} bytes, over {budget} (--guest-response-bytes)");
            return Err(CallError { reason, logs: Vec::new(), strike: true, kind: CallResult::Budget });
        }
        let block = abi::slice(memory.data(&*store), ptr, len).map_err(|e| format!("bad response: {e}"))?;
        let resp = abi::decode_response(block).map_err(|e| format!("bad response: {e}"))?;
        if handler.spec.kind == super::Kind::Stream && resp.status == 200 {
            self.check_first_event(&resp.body)?;
        }
        probe(Phase::Decoded);
        // The call succeeded: its instance is reset and kept if its module
        // can be (`warm`), else dropped (wasmtime resets its slot).
        let mut ctx = match warm {
            Some(warm) => {
                let ctx = std::mem::replace(store.data_mut(), self.ctx(kind));
                warm.keep(live, ctx.written);
                ctx
            }
            None => live.store.into_data(),
        };
        probe(Phase::Dropped);
        // Effects are transactional: a call that answers a server error (the
        // SDK's `Err`) has failed, and what it wrote is dropped with it (and
        // what it published, by the dispatcher). The writes are committed
        // by `transact`, before the call counts as done, so that a publish
        // announcing them is only seen once they are there.
        let mut kv = ctx.kv.take();
        if let Some(kv) = &mut kv {
            ctx.logs.extend(kv.take_errors());
        }
        Ok((
            CallOutput {
                status: resp.status,
                content_type: resp.content_type,
                headers: resp.headers,
                body: resp.body,
                subscriptions: ctx.subscriptions,
                members: ctx.members,
                backlog: ctx.backlog,
                publishes: ctx.publishes,
                logs: ctx.logs,
            },
            kv,
        ))
    }

    /// A stream's first event must be text that fits a subscriber's buffer.
    fn check_first_event(&self, body: &[u8]) -> Result<(), CallError> {
        let Ok(data) = std::str::from_utf8(body) else { return Err("its first event is not UTF-8".into()) };
        let first = crate::sse::Event { data: data.to_owned(), ..Default::default() };
        let cap = self.sse_buffer;
        if crate::sse::framed_len(&first) > cap {
            return Err(
                format!("its first event can never fit a subscriber's buffer (--sse-buffer-bytes {cap})").into()
            );
        }
        Ok(())
    }

    /// One line for a failed call: a deadline overrun is named as such.
    pub fn describe(&self, e: wasmtime::Error) -> String {
        self.failure(e).reason
    }

    fn failure(&self, e: wasmtime::Error) -> CallError {
        if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            let reason = format!("exceeded its CPU deadline of {} ms", self.limits.deadline.as_millis());
            return CallError { reason, logs: Vec::new(), strike: true, kind: CallResult::Deadline };
        }
        if e.downcast_ref::<KvError>() == Some(&KvError::Conflict) {
            let reason = "what it read changed while it ran".to_owned();
            return CallError { reason, logs: Vec::new(), strike: false, kind: CallResult::Conflict };
        }
        if let Some(over) = e.downcast_ref::<abi::OverMemory>() {
            return CallError { reason: over.to_string(), logs: Vec::new(), strike: false, kind: CallResult::Trap };
        }
        if let Some(over) = e.downcast_ref::<abi::OverBudget>() {
            return CallError { reason: over.0.clone(), logs: Vec::new(), strike: true, kind: CallResult::Budget };
        }
        CallError {
            reason: format!("{e:#}").replace('\n', " "),
            logs: Vec::new(),
            strike: false,
            kind: CallResult::Trap,
        }
    }
}
