//! Which parts of an instance's memory a call wrote: the reset of a warm
//! instance (`guests::warm`) restores only those, instead of the whole
//! memory. Restoring all of it was the largest single cost of a guest call
//! (the chat's 64 KiB: 1.15 us of a 2.6 us call, and 12.7% of the loop's
//! CPU under load), while a call writes a few KiB of stack and heap.
//!
//! The loader rewrites a reusable module so that it keeps the record
//! itself, exactly: the memory is cut into 64 chunks (1 KiB for a 64 KiB
//! memory, more for a larger one), and every instruction that can write
//! memory sets the bit of the chunk it wrote, in a local of its function,
//! which is or-ed into a mutable global (`DIRTY_EXPORT`) when the function
//! returns. After the call, the host restores each chunk whose bit is set,
//! with the 16 bytes after it (the widest store, a `v128`, may cross into
//! the next chunk), then clears the global. What the host itself writes into
//! the memory (arguments, an import's results) it marks the same way
//! (`CallCtx::wrote`).
//!
//! Exact, because the rewrite leaves nothing out, which is checked, not
//! assumed: the module must validate with only the proposals whose memory
//! writes are listed here (MVP stores, SIMD stores and lane stores,
//! bulk memory's fill, copy and init; no threads' atomics, no multiple or
//! 64-bit memories, no exceptions, which could leave a function without
//! passing its return). A call that traps or grows its memory drops its
//! instance (the record is not needed). Any other module keeps the whole
//! memory's restore.

use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, ExportKind, ExportSection, Function, GlobalSection, GlobalType, Instruction,
    RawSection, ValType,
};
use wasmparser::{FuncType, Operator, Parser, Payload, TypeRef, Validator, WasmFeatures};

/// The export name of the global that gathers the written chunks (under
/// the prefix reserved to the host: a module exporting such a name is not
/// reused at all).
pub const DIRTY_EXPORT: &str = "house_reset.global.dirty";

/// Chunks of the memory: one bit each in an `i64`.
pub const CHUNKS: u32 = 64;

/// The smallest chunk (1 KiB, the chunk of a 64 KiB memory): below it, the
/// restore's cost is in the calls, not the bytes.
const MIN_SHIFT: u32 = 10;

/// Bytes restored past a chunk's end: the widest store (`v128`, 16 bytes)
/// that starts in a chunk may end in the next.
pub const OVERLAP: usize = 16;

/// The rewritten module and its chunk size (`1 << shift` bytes).
pub struct Tracked {
    pub bytes: Vec<u8>,
    pub shift: u32,
}

/// The proposals whose memory writes the rewrite knows.
fn known() -> WasmFeatures {
    WasmFeatures::MUTABLE_GLOBAL
        | WasmFeatures::SATURATING_FLOAT_TO_INT
        | WasmFeatures::SIGN_EXTENSION
        | WasmFeatures::REFERENCE_TYPES
        | WasmFeatures::MULTI_VALUE
        | WasmFeatures::BULK_MEMORY
        | WasmFeatures::SIMD
        | WasmFeatures::RELAXED_SIMD
        | WasmFeatures::TAIL_CALL
        | WasmFeatures::FLOATS
        | WasmFeatures::EXTENDED_CONST
        | WasmFeatures::FUNCTION_REFERENCES
        | WasmFeatures::GC_TYPES
}

/// The chunk size for a memory of `initial` bytes: 64 chunks cover it.
pub fn shift_for(initial: u64) -> u32 {
    let mut shift = MIN_SHIFT;
    while u64::from(CHUNKS) << shift < initial {
        shift += 1;
    }
    shift
}

/// `bytes` (a module planned for reuse, of one memory of `initial` bytes)
/// rewritten to record what it writes; or why not (its memory is then
/// restored whole).
pub fn track(bytes: &[u8], initial: u64) -> Result<Tracked, String> {
    if let Err(e) = Validator::new_with_features(known()).validate_all(bytes) {
        return Err(format!("it uses what the write record does not cover ({e})"));
    }
    let shift = shift_for(initial);
    let out = rewrite(bytes, shift).map_err(|e| format!("its code cannot be rewritten: {e}"))?;
    // The rewrite adds locals and code: a function near the limits of
    // either would go over them. Then the whole restore, not a refusal.
    if let Err(e) = Validator::new_with_features(known()).validate_all(&out) {
        return Err(format!("its rewritten code would not be valid ({e})"));
    }
    Ok(Tracked { bytes: out, shift })
}

/// Where a section goes in a module: its rank in the order sections must
/// come in (custom sections, 0, go anywhere).
fn rank(id: u8) -> u8 {
    match id {
        1..=5 => id,
        13 => 6,  // tags
        6 => 7,   // globals
        7 => 8,   // exports
        8 => 9,   // start
        9 => 10,  // elements
        12 => 11, // data count
        10 => 12, // code
        11 => 13, // data
        _ => 0,
    }
}

fn rewrite(bytes: &[u8], shift: u32) -> anyhow::Result<Vec<u8>> {
    // What the code rewrite needs to know first: each function's type, and
    // how many globals there are (the new one comes last).
    let mut types: Vec<Option<FuncType>> = Vec::new();
    let mut funcs: Vec<u32> = Vec::new();
    let mut globals = 0u32;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::TypeSection(section) => {
                for group in section {
                    for ty in group?.into_types() {
                        types.push(match ty.composite_type.inner {
                            wasmparser::CompositeInnerType::Func(f) => Some(f),
                            _ => None,
                        });
                    }
                }
            }
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    if let TypeRef::Global(_) = import?.ty {
                        globals += 1;
                    }
                }
            }
            Payload::FunctionSection(section) => {
                for ty in section {
                    funcs.push(ty?);
                }
            }
            Payload::GlobalSection(section) => globals += section.count(),
            _ => {}
        }
    }
    let dirty = globals;
    let mut module = wasm_encoder::Module::new();
    let (mut globals_done, mut exports_done) = (false, false);
    let mut defined = 0usize;
    let mut r = RoundtripReencoder;
    let add_global = |section: &mut GlobalSection| {
        section.global(GlobalType { val_type: ValType::I64, mutable: true, shared: false }, &ConstExpr::i64_const(0));
    };
    let add_export = |section: &mut ExportSection| {
        section.export(DIRTY_EXPORT, ExportKind::Global, dirty);
    };
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload?;
        let Some((id, range)) = payload.as_section() else { continue };
        // A section that the module lacks goes where the order puts it.
        if !globals_done && rank(id) > rank(6) {
            let mut section = GlobalSection::new();
            add_global(&mut section);
            module.section(&section);
            globals_done = true;
        }
        if !exports_done && rank(id) > rank(7) {
            let mut section = ExportSection::new();
            add_export(&mut section);
            module.section(&section);
            exports_done = true;
        }
        match payload {
            Payload::GlobalSection(reader) => {
                let mut section = GlobalSection::new();
                r.parse_global_section(&mut section, reader)?;
                add_global(&mut section);
                module.section(&section);
                globals_done = true;
            }
            Payload::ExportSection(reader) => {
                let mut section = ExportSection::new();
                r.parse_export_section(&mut section, reader)?;
                add_export(&mut section);
                module.section(&section);
                exports_done = true;
            }
            Payload::CodeSectionStart { .. } => {
                let mut code = CodeSection::new();
                for payload in Parser::new(0).parse_all(bytes) {
                    if let Payload::CodeSectionEntry(body) = payload? {
                        let ty = funcs.get(defined).and_then(|t| types.get(*t as usize)).and_then(Option::as_ref);
                        let ty = ty.ok_or_else(|| anyhow::anyhow!("function {defined} has no function type"))?;
                        function(&mut code, &body, ty, dirty, shift, &mut r)?;
                        defined += 1;
                    }
                }
                module.section(&code);
            }
            Payload::CodeSectionEntry(_) => {}
            _ => {
                module.section(&RawSection { id, data: &bytes[range] });
            }
        }
    }
    if !globals_done {
        let mut section = GlobalSection::new();
        add_global(&mut section);
        module.section(&section);
    }
    if !exports_done {
        let mut section = ExportSection::new();
        add_export(&mut section);
        module.section(&section);
    }
    Ok(module.finish())
}

/// Does `op` write memory?
fn writes(op: &Operator) -> bool {
    store_type(op).is_some()
        || matches!(op, Operator::MemoryFill { .. } | Operator::MemoryCopy { .. } | Operator::MemoryInit { .. })
}

/// The value type a store takes, and its offset.
fn store_type(op: &Operator) -> Option<(ValType, u64)> {
    use Operator as O;
    Some(match op {
        O::I32Store { memarg } | O::I32Store8 { memarg } | O::I32Store16 { memarg } => (ValType::I32, memarg.offset),
        O::I64Store { memarg } | O::I64Store8 { memarg } | O::I64Store16 { memarg } | O::I64Store32 { memarg } => {
            (ValType::I64, memarg.offset)
        }
        O::F32Store { memarg } => (ValType::F32, memarg.offset),
        O::F64Store { memarg } => (ValType::F64, memarg.offset),
        O::V128Store { memarg }
        | O::V128Store8Lane { memarg, .. }
        | O::V128Store16Lane { memarg, .. }
        | O::V128Store32Lane { memarg, .. }
        | O::V128Store64Lane { memarg, .. } => (ValType::V128, memarg.offset),
        _ => return None,
    })
}

/// One function body, rewritten if it writes memory (else copied).
fn function(
    code: &mut CodeSection,
    body: &wasmparser::FunctionBody,
    ty: &FuncType,
    dirty: u32,
    shift: u32,
    r: &mut RoundtripReencoder,
) -> anyhow::Result<()> {
    let mut ops = Vec::new();
    let mut reader = body.get_operators_reader()?;
    while !reader.eof() {
        ops.push(reader.read()?);
    }
    if !ops.iter().any(writes) {
        code.raw(body.as_bytes());
        return Ok(());
    }
    let results = ty.results();
    let block = match results {
        [] => BlockType::Empty,
        [one] => BlockType::Result(r.val_type(*one)?),
        // A block of several results needs a type of its own: such a
        // function is wrapped in one added to the type section. Rare
        // enough (rustc and clang return one value) to refuse instead.
        _ => {
            anyhow::bail!("a function returns several values");
        }
    };
    let mut locals = Vec::new();
    let mut declared = 0u32;
    for pair in body.get_locals_reader()? {
        let (count, ty) = pair?;
        declared += count;
        locals.push((count, r.val_type(ty)?));
    }
    // The new locals: the address written, the chunks written, a length,
    // and one to hold a stored value of each type.
    let base = ty.params().len() as u32 + declared;
    let (addr, mask, len, val_i32, val_i64, val_f32, val_f64, val_v128) =
        (base, base + 1, base + 2, base + 3, base + 4, base + 5, base + 6, base + 7);
    for ty in [
        ValType::I32,
        ValType::I64,
        ValType::I32,
        ValType::I32,
        ValType::I64,
        ValType::F32,
        ValType::F64,
        ValType::V128,
    ] {
        locals.push((1, ty));
    }
    let mut f = Function::new(locals);
    let flush = |f: &mut Function| {
        f.instruction(&Instruction::GlobalGet(dirty));
        f.instruction(&Instruction::LocalGet(mask));
        f.instruction(&Instruction::I64Or);
        f.instruction(&Instruction::GlobalSet(dirty));
    };
    // The body in a block of the function's results: a branch to the
    // function's label now lands before the flush at the end.
    f.instruction(&Instruction::Block(block));
    let last = ops.len() - 1;
    for (i, op) in ops.into_iter().enumerate() {
        if i == last {
            // The function's own `end`: the block's, then the flush.
            f.instruction(&Instruction::End);
            flush(&mut f);
            f.instruction(&Instruction::End);
            break;
        }
        if let Some((ty, offset)) = store_type(&op) {
            let val = match ty {
                ValType::I32 => val_i32,
                ValType::I64 => val_i64,
                ValType::F32 => val_f32,
                ValType::F64 => val_f64,
                _ => val_v128,
            };
            // [addr, value] -> the store, then its chunk's bit. The store
            // did not trap, so addr + offset is inside the memory and the
            // i32 sum does not wrap.
            f.instruction(&Instruction::LocalSet(val));
            f.instruction(&Instruction::LocalTee(addr));
            f.instruction(&Instruction::LocalGet(val));
            f.instruction(&r.instruction(op)?);
            f.instruction(&Instruction::I64Const(1));
            f.instruction(&Instruction::LocalGet(addr));
            if offset != 0 {
                f.instruction(&Instruction::I32Const(offset as u32 as i32));
                f.instruction(&Instruction::I32Add);
            }
            f.instruction(&Instruction::I32Const(shift as i32));
            f.instruction(&Instruction::I32ShrU);
            f.instruction(&Instruction::I64ExtendI32U);
            f.instruction(&Instruction::I64Shl);
            f.instruction(&Instruction::LocalGet(mask));
            f.instruction(&Instruction::I64Or);
            f.instruction(&Instruction::LocalSet(mask));
            continue;
        }
        match op {
            Operator::MemoryFill { .. } | Operator::MemoryCopy { .. } | Operator::MemoryInit { .. } => {
                // [dst, x, len]: the bits of dst's chunk through the chunk
                // of its last byte, (-1 << lo) & (-1 >>u (63 - hi)), or
                // none if len is 0 (nothing is written).
                f.instruction(&Instruction::LocalSet(len));
                f.instruction(&Instruction::LocalSet(val_i32));
                f.instruction(&Instruction::LocalTee(addr));
                f.instruction(&Instruction::LocalGet(val_i32));
                f.instruction(&Instruction::LocalGet(len));
                f.instruction(&r.instruction(op)?);
                f.instruction(&Instruction::I64Const(-1));
                f.instruction(&Instruction::LocalGet(addr));
                f.instruction(&Instruction::I32Const(shift as i32));
                f.instruction(&Instruction::I32ShrU);
                f.instruction(&Instruction::I64ExtendI32U);
                f.instruction(&Instruction::I64Shl);
                f.instruction(&Instruction::I64Const(-1));
                f.instruction(&Instruction::I64Const(63));
                f.instruction(&Instruction::LocalGet(addr));
                f.instruction(&Instruction::LocalGet(len));
                f.instruction(&Instruction::I32Add);
                f.instruction(&Instruction::I32Const(1));
                f.instruction(&Instruction::I32Sub);
                f.instruction(&Instruction::I32Const(shift as i32));
                f.instruction(&Instruction::I32ShrU);
                f.instruction(&Instruction::I64ExtendI32U);
                f.instruction(&Instruction::I64Sub);
                f.instruction(&Instruction::I64ShrU);
                f.instruction(&Instruction::I64And);
                f.instruction(&Instruction::I64Const(0));
                f.instruction(&Instruction::LocalGet(len));
                f.instruction(&Instruction::Select);
                f.instruction(&Instruction::LocalGet(mask));
                f.instruction(&Instruction::I64Or);
                f.instruction(&Instruction::LocalSet(mask));
            }
            Operator::Return
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::ReturnCallRef { .. } => {
                flush(&mut f);
                f.instruction(&r.instruction(op)?);
            }
            op => {
                f.instruction(&r.instruction(op)?);
            }
        }
    }
    code.function(&f);
    Ok(())
}

#[cfg(test)]
mod tests;
