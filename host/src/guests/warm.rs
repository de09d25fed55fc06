//! Warm instances: an instance whose call succeeded is reset to the state
//! of a fresh instance of its module and kept for the next request, instead
//! of being dropped and a new one instantiated (measured: BENCHMARKS.md,
//! scenario 3; a fresh instance costs its store, its instantiation and
//! wasmtime's slot reset on drop, about 3 us of a 5 us call here).
//!
//! "The state of a fresh instance" is complete, not approximate. What a
//! core wasm instance can change while it runs is its memories (contents
//! and size), its mutable globals, its tables and its dropped data and
//! element segments. So a module is reused only if
//! - it has exactly one memory, its own (not imported), not shared, of at
//!   most `MAX_MEMORY` bytes at the start (restoring writes all of it, so
//!   its cost grows with the size: zeroing 1 MiB alone takes ~9 us here,
//!   while a new instance whose dirty pages wasmtime resets costs a 1 MiB
//!   stack guest 6.3 us a call);
//! - it has no start function (a fresh instance would run it again, and it
//!   could ask the host for something that differs each time, such as
//!   random bytes);
//! - its code has no instruction that changes a table or drops a segment
//!   (`table.set/grow/fill/copy/init`, `elem.drop`, `data.drop`);
//! - its mutable globals are numbers (not references), and none is imported.
//!
//! Then, after each successful call whose memory did not grow, what the
//! call wrote of its memory is overwritten from the copy taken right after
//! instantiation (where the module records what it writes, `guests::dirty`;
//! else all of it) and every mutable global set back to its initial value.
//! Mutable globals are usually not exported (a Rust guest's stack pointer
//! is not), so the loader adds an export for each (`GLOBAL_EXPORT_PREFIX`);
//! with the write record, those are the changes made to a module's bytes
//! (`warm/plan.rs`). A call that fails (trap, deadline, budget, a malformed
//! response) or grows its memory drops its instance, and the next request
//! of that module gets a new one. Any other module gets a fresh instance
//! for every request, as `--guest-warm-instances 0` gives every module.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime::{Global, Instance, Memory, ModuleExport, Store, TypedFunc, Val};

use super::abi::CallCtx;
use super::dirty;
use crate::shard::{self, Padded, SHARDS};

mod plan;

pub use plan::{GLOBAL_EXPORT_PREFIX, MAX_MEMORY, Plan, SMALL_MEMORY, plan};

/// How a module's requests get their instance.
pub enum Instances {
    /// An idle instance, reset after its last call, when there is one.
    Reused(Box<Warm>),
    /// A new one for every request, and why.
    New { why: String },
}

impl Instances {
    /// The module's idle instances, if it is reused.
    pub fn warm(&self) -> Option<&Warm> {
        match self {
            Instances::Reused(warm) => Some(warm),
            Instances::New { .. } => None,
        }
    }
}

/// A reusable module's fresh state and its idle instances.
pub struct Warm {
    /// Its memory right after instantiation, as runs of zeros and of data
    /// (restoring writes zeros where it can: measured on the chat's 128 KiB,
    /// copying the whole image took 2.6-3.1 us a call, zeros and data 1.2).
    image: Vec<Run>,
    /// Its size in bytes.
    size: usize,
    /// Its mutable globals' exports and initial values.
    globals: Vec<(ModuleExport, Val)>,
    /// Where the module records the chunks it writes: only those are
    /// restored (`guests::dirty`); else why its whole memory is.
    chunks: Result<Chunks, String>,
    /// Per loop (`crate::shard`).
    idle: [Padded<Mutex<Vec<Live>>>; SHARDS],
    /// Idle instances of all modules, and how many may be.
    count: Arc<Count>,
}

/// A fresh instance's memory whole, to restore chunks of, and the global
/// whose bits say which.
struct Chunks {
    shift: u32,
    image: Box<[u8]>,
    written: ModuleExport,
}

/// A stretch of a fresh instance's memory.
enum Run {
    Zeros(std::ops::Range<usize>),
    Data(std::ops::Range<usize>, Box<[u8]>),
}

/// Zero runs shorter than this are folded into the data around them: a
/// few bytes more to copy cost less than another call.
const MIN_ZEROS: usize = 256;

/// `memory` as runs of zeros and of data, at `MIN_ZEROS`' granularity.
fn runs(memory: &[u8]) -> Vec<Run> {
    let mut runs = Vec::new();
    let (mut start, mut zeros) = (0, true);
    let flush = |runs: &mut Vec<Run>, range: std::ops::Range<usize>, zeros: bool| {
        if range.is_empty() {
            return;
        }
        runs.push(if zeros { Run::Zeros(range) } else { Run::Data(range.clone(), memory[range].into()) });
    };
    for (i, chunk) in memory.chunks(MIN_ZEROS).enumerate() {
        let zero = chunk.iter().all(|&b| b == 0);
        if zero != zeros {
            flush(&mut runs, start..i * MIN_ZEROS, zeros);
            (start, zeros) = (i * MIN_ZEROS, zero);
        }
    }
    flush(&mut runs, start..memory.len(), zeros);
    runs
}

/// A handler's export: (argument block pointer, length) -> packed response.
pub type HandlerFunc = TypedFunc<(u32, u32), u64>;

/// An instance in use, or waiting for its module's next request in the
/// state of a fresh one; with what is looked up once per instance.
pub struct Live {
    pub store: Store<CallCtx>,
    pub instance: Instance,
    pub memory: Memory,
    /// Its mutable globals, in `Warm::globals`' order (none if its module
    /// is not reused).
    globals: Vec<Global>,
    /// The global of the chunks its calls wrote, if its module records them.
    written: Option<Global>,
    /// Its handlers' functions, by the handler's index in its module, as
    /// they are first called (empty for an instance that is not kept).
    handlers: Vec<Option<HandlerFunc>>,
}

impl Live {
    /// `instance`, just made in `store`; `warm` if its module is reused
    /// (its mutable globals are looked up: None if one is not a global).
    pub fn new(
        mut store: Store<CallCtx>,
        instance: Instance,
        memory: Memory,
        handlers: usize,
        warm: Option<&Warm>,
    ) -> Option<Live> {
        let globals = match warm {
            Some(warm) => warm
                .globals
                .iter()
                .map(|(export, _)| {
                    instance.get_module_export(&mut store, export).and_then(wasmtime::Extern::into_global)
                })
                .collect::<Option<Vec<_>>>()?,
            None => Vec::new(),
        };
        let written = match warm.and_then(|w| w.chunks.as_ref().ok()) {
            Some(chunks) => Some(instance.get_module_export(&mut store, &chunks.written)?.into_global()?),
            None => None,
        };
        // Handlers are looked up once per instance (`Live::handler`): a kept
        // one has room for all of its module's.
        let handlers = if warm.is_some() { vec![None; handlers] } else { Vec::new() };
        Some(Live { store, instance, memory, globals, written, handlers })
    }

    /// The handler at `index` of its module, exported as `export`, and the
    /// store to call it in, borrowed apart: the function is looked up once
    /// per instance and never cloned (a clone took a reference on wasmtime's
    /// type registry each call: 0.5% of the loop on the guest path).
    pub fn handler(
        &mut self,
        index: usize,
        export: &ModuleExport,
    ) -> wasmtime::Result<(&HandlerFunc, &mut Store<CallCtx>)> {
        if self.handlers.len() <= index {
            self.handlers.resize(index + 1, None);
        }
        if self.handlers[index].is_none() {
            let func = self
                .instance
                .get_module_export(&mut self.store, export)
                .and_then(wasmtime::Extern::into_func)
                .ok_or_else(|| wasmtime::format_err!("handler export is not a function"))?
                .typed::<(u32, u32), u64>(&self.store)?;
            self.handlers[index] = Some(func);
        }
        let func = self.handlers[index].as_ref().ok_or_else(|| wasmtime::format_err!("handler {index} vanished"))?;
        Ok((func, &mut self.store))
    }
}

/// Idle instances of all modules, at most `max` (`--guest-warm-instances`):
/// each holds a slot of the pooling allocator and its memory. Counted and
/// kept per loop (`crate::shard`): a loop takes back the instances it used
/// last, whose memory is still in its core's cache, and two loops never
/// write the same lines to take one. `max` is divided among the loops.
pub struct Count {
    idle: [Padded<AtomicUsize>; SHARDS],
    /// How many each part may keep.
    caps: [usize; SHARDS],
}

impl Count {
    /// All `max` for the calling threads that are not loops (tools).
    pub fn new(max: usize) -> Count {
        let mut caps = [0; SHARDS];
        caps[0] = max;
        Count { idle: Default::default(), caps }
    }

    /// `max` divided among `loops` loops (the first ones get what does not
    /// divide evenly); none for other threads: the server calls guests on
    /// its loops only.
    pub fn for_loops(max: usize, loops: usize) -> Count {
        let mut caps = [0; SHARDS];
        for lp in 0..loops {
            caps[shard::of_loop(lp)] += max / loops + usize::from(lp < max % loops);
        }
        Count { idle: Default::default(), caps }
    }

    pub fn idle(&self) -> usize {
        self.idle.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }
}

impl Warm {
    /// Takes the fresh state from `instance`, just instantiated in `store`
    /// (nothing called yet); `globals` names its mutable globals' exports;
    /// `chunks` is its chunk size if it records the chunks it writes, else
    /// why not.
    pub fn new(
        store: &mut Store<CallCtx>,
        instance: &Instance,
        memory: Memory,
        module: &wasmtime::Module,
        (globals, chunks): (&[String], Result<u32, String>),
        count: Arc<Count>,
    ) -> Result<Warm, String> {
        let size = memory.data_size(&*store);
        let chunks = match chunks {
            Ok(shift) => Ok(Chunks {
                shift,
                image: memory.data(&*store).into(),
                written: module
                    .get_export_index(dirty::DIRTY_EXPORT)
                    .ok_or_else(|| format!("export {} vanished", dirty::DIRTY_EXPORT))?,
            }),
            Err(why) => Err(why),
        };
        // Runs are the restore of a memory whose writes are not recorded.
        let image = if chunks.is_ok() { Vec::new() } else { runs(memory.data(&*store)) };
        let mut initial = Vec::with_capacity(globals.len());
        for name in globals {
            let export = module.get_export_index(name).ok_or_else(|| format!("export {name} vanished"))?;
            let global = instance
                .get_module_export(&mut *store, &export)
                .and_then(wasmtime::Extern::into_global)
                .ok_or_else(|| format!("export {name} is not a global"))?;
            initial.push((export, global.get(&mut *store)));
        }
        Ok(Warm { image, size, globals: initial, chunks, idle: Default::default(), count })
    }

    /// The chunk size as a shift, if the module records what it writes.
    pub fn chunk_shift(&self) -> Option<u32> {
        self.chunks.as_ref().ok().map(|c| c.shift)
    }

    /// What its reset restores, for the operator (`/_house/guests`).
    pub fn restores(&self) -> String {
        match &self.chunks {
            Ok(_) => "what each call wrote".to_owned(),
            Err(why) => format!("its whole memory: {why}"),
        }
    }

    /// An idle instance of this loop's, if there is one.
    pub fn take(&self) -> Option<Live> {
        let part = shard::current();
        let idle = self.idle[part].lock().unwrap_or_else(|e| e.into_inner()).pop()?;
        self.count.idle[part].fetch_sub(1, Ordering::Relaxed);
        Some(idle)
    }

    /// Resets `idle` (it has just served a call that succeeded) to a fresh
    /// instance's state and keeps it, unless its memory grew or the most
    /// are idle already: then it is dropped, and wasmtime resets its slot.
    /// `host` holds the chunks the host wrote into during the call.
    pub fn keep(&self, mut idle: Live, host: u64) {
        match (&self.chunks, idle.written) {
            (Ok(chunks), Some(written)) => {
                let Some(guest) = written.get(&mut idle.store).i64() else { return };
                let data = idle.memory.data_mut(&mut idle.store);
                if data.len() != self.size {
                    return;
                }
                let mut bits = guest as u64 | host;
                while bits != 0 {
                    let start = (bits.trailing_zeros() as usize) << chunks.shift;
                    bits &= bits - 1;
                    let end = (start + (1 << chunks.shift) + dirty::OVERLAP).min(data.len());
                    if start < end {
                        data[start..end].copy_from_slice(&chunks.image[start..end]);
                    }
                }
                if written.set(&mut idle.store, Val::I64(0)).is_err() {
                    return;
                }
            }
            (Ok(_), None) => return,
            (Err(_), _) => {
                let data = idle.memory.data_mut(&mut idle.store);
                if data.len() != self.size {
                    return;
                }
                for run in &self.image {
                    match run {
                        Run::Zeros(range) => data[range.clone()].fill(0),
                        Run::Data(range, bytes) => data[range.clone()].copy_from_slice(bytes),
                    }
                }
            }
        }
        for (global, (_, value)) in idle.globals.iter().zip(&self.globals) {
            if global.set(&mut idle.store, *value).is_err() {
                return;
            }
        }
        let part = shard::current();
        let count = &self.count.idle[part];
        if count.fetch_add(1, Ordering::Relaxed) >= self.count.caps[part] {
            count.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        self.idle[part].lock().unwrap_or_else(|e| e.into_inner()).push(idle);
    }

    /// Idle instances of this module now.
    pub fn idle(&self) -> usize {
        self.idle.iter().map(|part| part.lock().unwrap_or_else(|e| e.into_inner()).len()).sum()
    }
}

impl Drop for Warm {
    fn drop(&mut self) {
        // Its idle instances go with it (a hot reload replaced it).
        for (part, idle) in self.idle.iter_mut().enumerate() {
            let n = idle.0.get_mut().unwrap_or_else(|e| e.into_inner()).len();
            self.count.idle[part].fetch_sub(n, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
