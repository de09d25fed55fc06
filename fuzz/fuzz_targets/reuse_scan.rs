//! The scan and the export rewrite that decide whether a module's instances
//! are reused (`guests::warm::plan`), on modules of every shape: valid ones
//! built by wasm-smith (biased toward one small memory, which the scan
//! looks for), then possibly with bytes changed. Nothing may panic; a
//! module planned for reuse comes back still valid (if it was), with an
//! export for each mutable global it named, as a global of that index,
//! and everything it exported before still exported. Where it is rewritten
//! to record what it writes (`guests::dirty`), the rewritten module runs:
//! each exported function is called in turn (fuel-bounded), and after each
//! call that returns, every byte of memory that changed lies in a chunk the
//! record marked (or in the 16 bytes after one).

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use house_host::guests::dirty::{DIRTY_EXPORT, OVERLAP};
use house_host::guests::warm::{GLOBAL_EXPORT_PREFIX, Plan, plan};
use libfuzzer_sys::fuzz_target;
use wasmparser::{ExternalKind, Parser, Payload, Validator, WasmFeatures};

fn exports(bytes: &[u8]) -> Vec<(String, ExternalKind, u32)> {
    let mut out = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        if let Ok(Payload::ExportSection(section)) = payload {
            for e in section.into_iter().flatten() {
                out.push((e.name.to_owned(), e.kind, e.index));
            }
        }
    }
    out
}

fn valid(bytes: &[u8]) -> bool {
    Validator::new_with_features(WasmFeatures::all()).validate_all(bytes).is_ok()
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(mut config) = wasm_smith::Config::arbitrary(&mut u) else { return };
    if bool::arbitrary(&mut u).unwrap_or(true) {
        config.min_memories = 1;
        config.max_memories = 1;
        config.max_memory32_bytes = 2 << 16;
        config.allow_start_export = bool::arbitrary(&mut u).unwrap_or(false);
        // Runnable without a host: no imports, and the memory exported.
        config.max_imports = 0;
        config.export_everything = true;
    }
    let Ok(module) = wasm_smith::Module::new(config, &mut u) else { return };
    let mut bytes = module.to_bytes();
    let flips: Vec<(u16, u8)> = Vec::arbitrary(&mut u).unwrap_or_default();
    for (i, x) in flips.into_iter().take(4) {
        let len = bytes.len();
        if len > 8 {
            bytes[8 + usize::from(i) % (len - 8)] ^= x;
        }
    }
    match plan(&bytes) {
        Plan::Reuse { bytes: out, globals, chunks } => {
            if valid(&bytes) {
                assert!(valid(&out), "the rewrite broke a valid module");
            }
            let before = exports(&bytes);
            let after = exports(&out);
            for e in &before {
                assert!(after.contains(e), "export {:?} lost", e.0);
            }
            for name in &globals {
                let index: u32 = name.strip_prefix(GLOBAL_EXPORT_PREFIX).and_then(|i| i.parse().ok()).expect("a name");
                assert!(
                    after.iter().any(|(n, k, i)| n == name && *k == ExternalKind::Global && *i == index),
                    "mutable global {index} is not exported as {name}"
                );
            }
            let recorded = usize::from(chunks.is_ok());
            assert_eq!(after.len(), before.len() + globals.len() + recorded);
            if let Ok(shift) = chunks
                && valid(&bytes)
            {
                assert!(valid(&out), "the write record broke a valid module");
                record_covers_writes(&out, shift);
            }
        }
        Plan::Fresh(why) => assert!(!why.is_empty()),
    }
});

/// Runs each exported function of `bytes` (rewritten to record its writes
/// in chunks of `1 << shift` bytes) and checks that the record covers
/// every byte that changed.
fn record_covers_writes(bytes: &[u8], shift: u32) {
    use wasmtime::{Config, Engine, Instance, Module, Store, Val};
    let mut config = Config::new();
    config.consume_fuel(true);
    let Ok(engine) = Engine::new(&config) else { return };
    // What this engine does not support, it refuses here.
    let Ok(module) = Module::new(&engine, bytes) else { return };
    let mut store = Store::new(&engine, ());
    if store.set_fuel(100_000).is_err() {
        return;
    }
    let Ok(instance) = Instance::new(&mut store, &module, &[]) else { return };
    let Some(memory) = module.exports().find_map(|e| e.ty().memory().map(|_| e.name().to_owned())) else { return };
    let Some(memory) = instance.get_memory(&mut store, &memory) else { return };
    let record = instance.get_global(&mut store, DIRTY_EXPORT).expect("the record is exported");
    let image = memory.data(&store).to_vec();
    let funcs: Vec<String> =
        module.exports().filter(|e| e.ty().func().is_some()).map(|e| e.name().to_owned()).collect();
    for name in funcs {
        let func = instance.get_func(&mut store, &name).expect("an exported function");
        let ty = func.ty(&store);
        let Some(params) = ty.params().map(|t| Val::default_for_ty(&t)).collect::<Option<Vec<_>>>() else { return };
        let mut results: Vec<Val> = ty.results().map(|_| Val::I32(0)).collect();
        // A call that traps or grows the memory drops its instance in the
        // server: the record is not used, and this run stops there.
        if func.call(&mut store, &params, &mut results).is_err() || memory.data_size(&store) != image.len() {
            return;
        }
        let marked = record.get(&mut store).i64().expect("an i64") as u64;
        for (i, (a, b)) in image.iter().zip(memory.data(&store)).enumerate() {
            if a != b {
                let chunk = i >> shift;
                let covered = marked & (1 << chunk) != 0
                    || (chunk > 0 && marked & (1 << (chunk - 1)) != 0 && i - (chunk << shift) < OVERLAP);
                assert!(covered, "{name}: byte {i} changed in chunk {chunk}, not marked ({marked:#x})");
            }
        }
    }
}
