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
//! Then, after each successful call whose memory did not grow, its memory
//! is overwritten with the copy taken right after instantiation and every
//! mutable global set back to its initial value. Mutable globals are
//! usually not exported (a Rust guest's stack pointer is not), so the
//! loader adds an export for each (`GLOBAL_EXPORT_PREFIX`), the one change
//! made to a module's bytes. A call that fails (trap, deadline, budget, a
//! malformed response) or grows its memory drops its instance, and the next
//! request of that module gets a new one. Any other module gets a fresh
//! instance for every request, as `--guest-warm-instances 0` gives every
//! module.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use wasmparser::{Encoding, Operator, Parser, Payload, TypeRef, ValType};
use wasmtime::{Global, Instance, Memory, ModuleExport, Store, TypedFunc, Val};

use super::abi::CallCtx;

/// The export name the loader gives a module's mutable global `N`
/// (`house_reset.global.N`, by index in the global index space). Reserved:
/// a module that exports such a name already is not reused.
pub const GLOBAL_EXPORT_PREFIX: &str = "house_reset.global.";

/// The largest initial memory reset by rewriting it whole (two wasm pages:
/// a guest with a 64 KiB stack and a few KiB of data); the engine's
/// `Reset::Rewrite` lane takes the same bound (`guests::engine`).
pub const SMALL_MEMORY: u64 = 128 * 1024;

/// The largest initial memory restored by copying it (as `Reset::Rewrite`'s
/// bound, for the same reason: the copy's cost grows with the size).
pub const MAX_MEMORY: u64 = SMALL_MEMORY;

/// What the loader makes of a module's bytes.
pub enum Plan {
    /// Reusable: these bytes (the module's, with its mutable globals
    /// exported) are the ones to compile; the exports' names, in order.
    Reuse { bytes: Vec<u8>, globals: Vec<String> },
    /// A fresh instance per request, and why.
    Fresh(String),
}

/// Reads `bytes` and decides. A module wasmparser cannot read is left to
/// the compiler to describe (`Fresh`).
pub fn plan(bytes: &[u8]) -> Plan {
    match scan(bytes) {
        Ok(Ok(mutable)) => match with_exports(bytes, &mutable) {
            Ok((bytes, globals)) => Plan::Reuse { bytes, globals },
            Err(e) => Plan::Fresh(format!("its sections cannot be read: {e}")),
        },
        Ok(Err(why)) => Plan::Fresh(why),
        Err(e) => Plan::Fresh(format!("its code cannot be read: {e}")),
    }
}

/// The mutable globals' indices if the module can be reused, else why not.
fn scan(bytes: &[u8]) -> wasmparser::Result<Result<Vec<u32>, String>> {
    let mut memories = Vec::new();
    let mut mutable = Vec::new();
    let mut globals = 0u32;
    let mut exports = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            // Left whole to the compiler, which says what it is.
            Payload::Version { encoding: Encoding::Component, .. } => return Ok(Err("it is a component".into())),
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    match import?.ty {
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => {}
                        TypeRef::Memory(_) => return Ok(Err("it imports its memory".into())),
                        TypeRef::Global(_) => return Ok(Err("it imports a global".into())),
                        _ => return Ok(Err("it imports a table or a tag".into())),
                    }
                }
            }
            Payload::MemorySection(section) => {
                for memory in section {
                    memories.push(memory?);
                }
            }
            Payload::GlobalSection(section) => {
                for global in section {
                    let ty = global?.ty;
                    if ty.mutable {
                        if !matches!(
                            ty.content_type,
                            ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64 | ValType::V128
                        ) {
                            return Ok(Err("it has a mutable global of a reference type".into()));
                        }
                        mutable.push(globals);
                    }
                    globals += 1;
                }
            }
            Payload::ExportSection(section) => {
                for export in section {
                    exports.push(export?.name.to_owned());
                }
            }
            Payload::StartSection { .. } => return Ok(Err("it has a start function".into())),
            Payload::CodeSectionEntry(body) => {
                let mut ops = body.get_operators_reader()?;
                while !ops.eof() {
                    if let Some(op) = changes_instance(&ops.read()?) {
                        return Ok(Err(format!("its code uses {op}")));
                    }
                }
            }
            _ => {}
        }
    }
    let [memory] = memories[..] else {
        return Ok(Err(format!("it has {} memories, not one", memories.len())));
    };
    if memory.shared {
        return Ok(Err("its memory is shared".into()));
    }
    let initial = memory.initial.saturating_mul(1 << memory.page_size_log2.unwrap_or(16));
    if initial > MAX_MEMORY {
        return Ok(Err(format!(
            "its memory starts at {} KiB, over the {} KiB restored by copying",
            initial / 1024,
            MAX_MEMORY / 1024
        )));
    }
    if exports.iter().any(|name| name.starts_with(GLOBAL_EXPORT_PREFIX)) {
        return Ok(Err(format!("it exports a name starting with {GLOBAL_EXPORT_PREFIX}, reserved to the host")));
    }
    Ok(Ok(mutable))
}

/// The instruction's name if it changes instance state other than memory
/// and globals.
fn changes_instance(op: &Operator) -> Option<&'static str> {
    Some(match op {
        Operator::TableSet { .. } => "table.set",
        Operator::TableGrow { .. } => "table.grow",
        Operator::TableFill { .. } => "table.fill",
        Operator::TableCopy { .. } => "table.copy",
        Operator::TableInit { .. } => "table.init",
        Operator::ElemDrop { .. } => "elem.drop",
        Operator::DataDrop { .. } => "data.drop",
        _ => return None,
    })
}

/// `bytes` with an export added for each global in `mutable`: every section
/// copied as it is, the export section re-encoded with the additions.
fn with_exports(bytes: &[u8], mutable: &[u32]) -> wasmparser::Result<(Vec<u8>, Vec<String>)> {
    use wasm_encoder::{ExportKind, ExportSection, RawSection};
    let names: Vec<String> = mutable.iter().map(|i| format!("{GLOBAL_EXPORT_PREFIX}{i}")).collect();
    let add_ours = |exports: &mut ExportSection| {
        for (name, index) in names.iter().zip(mutable) {
            exports.export(name, ExportKind::Global, *index);
        }
    };
    let mut module = wasm_encoder::Module::new();
    // A module without an export section gets one, where the order of
    // sections puts it: before start (8), element (9), code (10), data (11)
    // and data count (12). (Found by the fuzzer: the names were returned
    // but never exported, and every call of such a module would fail.)
    let mut exported = names.is_empty();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload?;
        if let Payload::ExportSection(section) = &payload {
            let mut exports = ExportSection::new();
            for export in section.clone() {
                let export = export?;
                exports.export(export.name, encoder_kind(export.kind), export.index);
            }
            add_ours(&mut exports);
            module.section(&exports);
            exported = true;
        } else if let Some((id, range)) = payload.as_section() {
            if !exported && (8..=12).contains(&id) {
                let mut exports = ExportSection::new();
                add_ours(&mut exports);
                module.section(&exports);
                exported = true;
            }
            module.section(&RawSection { id, data: &bytes[range] });
        }
    }
    if !exported {
        let mut exports = ExportSection::new();
        add_ours(&mut exports);
        module.section(&exports);
    }
    Ok((module.finish(), names))
}

fn encoder_kind(kind: wasmparser::ExternalKind) -> wasm_encoder::ExportKind {
    use wasm_encoder::ExportKind as E;
    use wasmparser::ExternalKind as K;
    match kind {
        K::Func | K::FuncExact => E::Func,
        K::Table => E::Table,
        K::Memory => E::Memory,
        K::Global => E::Global,
        K::Tag => E::Tag,
    }
}

/// How a module's requests get their instance.
pub enum Instances {
    /// An idle instance, reset after its last call, when there is one.
    Reused(Warm),
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
    idle: Mutex<Vec<Live>>,
    /// Idle instances of all modules, and how many may be.
    count: Arc<Count>,
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

/// An instance in use, or waiting for its module's next request in the
/// state of a fresh one; with what is looked up once per instance.
pub struct Live {
    pub store: Store<CallCtx>,
    pub instance: Instance,
    pub memory: Memory,
    /// Its mutable globals, in `Warm::globals`' order (none if its module
    /// is not reused).
    globals: Vec<Global>,
    /// Its handlers' functions, by the handler's index in its module, as
    /// they are first called (empty for an instance that is not kept).
    handlers: Vec<Option<TypedFunc<(u32, u32), u64>>>,
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
        // Handlers are looked up once per instance only where it is kept.
        let handlers = if warm.is_some() { vec![None; handlers] } else { Vec::new() };
        Some(Live { store, instance, memory, globals, handlers })
    }

    /// The handler at `index` of its module, exported as `export`.
    pub fn handler(&mut self, index: usize, export: &ModuleExport) -> wasmtime::Result<TypedFunc<(u32, u32), u64>> {
        if let Some(Some(func)) = self.handlers.get(index) {
            return Ok(func.clone());
        }
        let func = self
            .instance
            .get_module_export(&mut self.store, export)
            .and_then(wasmtime::Extern::into_func)
            .ok_or_else(|| wasmtime::format_err!("handler export is not a function"))?
            .typed::<(u32, u32), u64>(&self.store)?;
        if let Some(slot) = self.handlers.get_mut(index) {
            *slot = Some(func.clone());
        }
        Ok(func)
    }
}

/// Idle instances of all modules, at most `max` (`--guest-warm-instances`):
/// each holds a slot of the pooling allocator and its memory.
pub struct Count {
    idle: AtomicUsize,
    max: usize,
}

impl Count {
    pub fn new(max: usize) -> Count {
        Count { idle: AtomicUsize::new(0), max }
    }

    pub fn idle(&self) -> usize {
        self.idle.load(Ordering::Relaxed)
    }
}

impl Warm {
    /// Takes the fresh state from `instance`, just instantiated in `store`
    /// (nothing called yet); `globals` names its mutable globals' exports.
    pub fn new(
        store: &mut Store<CallCtx>,
        instance: &Instance,
        memory: Memory,
        module: &wasmtime::Module,
        globals: &[String],
        count: Arc<Count>,
    ) -> Result<Warm, String> {
        let size = memory.data_size(&*store);
        let image = runs(memory.data(&*store));
        let mut initial = Vec::with_capacity(globals.len());
        for name in globals {
            let export = module.get_export_index(name).ok_or_else(|| format!("export {name} vanished"))?;
            let global = instance
                .get_module_export(&mut *store, &export)
                .and_then(wasmtime::Extern::into_global)
                .ok_or_else(|| format!("export {name} is not a global"))?;
            initial.push((export, global.get(&mut *store)));
        }
        Ok(Warm { image, size, globals: initial, idle: Mutex::new(Vec::new()), count })
    }

    /// An idle instance, if there is one.
    pub fn take(&self) -> Option<Live> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
        self.count.idle.fetch_sub(1, Ordering::Relaxed);
        Some(idle)
    }

    /// Resets `idle` (it has just served a call that succeeded) to a fresh
    /// instance's state and keeps it, unless its memory grew or the most
    /// are idle already: then it is dropped, and wasmtime resets its slot.
    pub fn keep(&self, mut idle: Live) {
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
        for (global, (_, value)) in idle.globals.iter().zip(&self.globals) {
            if global.set(&mut idle.store, *value).is_err() {
                return;
            }
        }
        let count = &self.count;
        if count.idle.fetch_add(1, Ordering::Relaxed) >= count.max {
            count.idle.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(idle);
    }

    /// Idle instances of this module now.
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for Warm {
    fn drop(&mut self) {
        // Its idle instances go with it (a hot reload replaced it).
        let idle = self.idle.get_mut().unwrap_or_else(|e| e.into_inner()).len();
        self.count.idle.fetch_sub(idle, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
