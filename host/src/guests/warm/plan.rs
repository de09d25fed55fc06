//! Which modules may be kept (`plan`), and the one rewrite that reuse
//! needs: an export for each mutable global, so that the host can set it
//! back (and, where it applies, the write record: `guests::dirty`).

use wasmparser::{Encoding, Operator, Parser, Payload, TypeRef, ValType};

use crate::guests::dirty;

/// The export name the loader gives a module's mutable global `N`
/// (`house_reset.global.N`, by index in the global index space). Reserved:
/// a module that exports such a name already is not reused.
pub const GLOBAL_EXPORT_PREFIX: &str = "house_reset.global.";

/// The largest initial memory reset by rewriting it whole (two wasm pages:
/// a guest with a 64 KiB stack and a few KiB of data); the engine's
/// `Reset::Rewrite` lane takes the same bound (`guests::engine`).
pub const SMALL_MEMORY: u64 = 128 * 1024;

/// The largest initial memory restored by copying it (as `Reset::Rewrite`'s
/// bound, for the same reason: the whole restore's cost grows with the
/// size; the write record's does not, and could take larger memories).
pub const MAX_MEMORY: u64 = SMALL_MEMORY;

/// What the loader makes of a module's bytes.
pub enum Plan {
    /// Reusable: these bytes (the module's, with its mutable globals
    /// exported, and where it can be, rewritten to record the chunks of
    /// memory it writes) are the ones to compile; the exports' names, in
    /// order; the chunk size as a shift if it records them, else why its
    /// memory is restored whole (`guests::dirty`).
    Reuse { bytes: Vec<u8>, globals: Vec<String>, chunks: Result<u32, String> },
    /// A fresh instance per request, and why.
    Fresh(String),
}

/// Reads `bytes` and decides. A module wasmparser cannot read is left to
/// the compiler to describe (`Fresh`).
pub fn plan(bytes: &[u8]) -> Plan {
    match scan(bytes) {
        Ok(Ok((mutable, initial))) => match with_exports(bytes, &mutable) {
            Ok((bytes, globals)) => match dirty::track(&bytes, initial) {
                Ok(tracked) => Plan::Reuse { bytes: tracked.bytes, globals, chunks: Ok(tracked.shift) },
                Err(why) => Plan::Reuse { bytes, globals, chunks: Err(why) },
            },
            Err(e) => Plan::Fresh(format!("its sections cannot be read: {e}")),
        },
        Ok(Err(why)) => Plan::Fresh(why),
        Err(e) => Plan::Fresh(format!("its code cannot be read: {e}")),
    }
}

/// The mutable globals' indices and the memory's initial size if the
/// module can be reused, else why not.
fn scan(bytes: &[u8]) -> wasmparser::Result<Result<(Vec<u32>, u64), String>> {
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
    Ok(Ok((mutable, initial)))
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
