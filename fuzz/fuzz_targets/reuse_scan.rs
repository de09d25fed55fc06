//! The scan and the export rewrite that decide whether a module's instances
//! are reused (`guests::warm::plan`), on modules of every shape: valid ones
//! built by wasm-smith (biased toward one small memory, which the scan
//! looks for), then possibly with bytes changed. Nothing may panic; a
//! module planned for reuse comes back still valid (if it was), with an
//! export for each mutable global it named, as a global of that index,
//! and everything it exported before still exported.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
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
        Plan::Reuse { bytes: out, globals } => {
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
            assert_eq!(after.len(), before.len() + globals.len());
        }
        Plan::Fresh(why) => assert!(!why.is_empty()),
    }
});
