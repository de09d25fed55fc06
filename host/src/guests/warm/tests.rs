//! Kept instances: what a reset restores, and which modules may be kept.

use super::*;
use wasmparser::{Parser, Payload};

fn why(wat: &str) -> String {
    match plan(&wat::parse_str(wat).unwrap()) {
        Plan::Fresh(why) => why,
        Plan::Reuse { .. } => panic!("reused: {wat}"),
    }
}

#[test]
fn what_could_keep_state_outside_memory_and_globals_is_not_reused() {
    assert_eq!(why("(module)"), "it has 0 memories, not one");
    assert_eq!(why("(module (memory 3))"), "its memory starts at 192 KiB, over the 128 KiB restored by copying");
    assert_eq!(why("(module (memory 1 1 shared))"), "its memory is shared");
    assert_eq!(why(r#"(module (import "house" "m" (memory 1)))"#), "it imports its memory");
    assert_eq!(why(r#"(module (import "house" "g" (global (mut i32))) (memory 1))"#), "it imports a global");
    assert_eq!(
        why("(module (memory 1) (global (mut funcref) (ref.null func)))"),
        "it has a mutable global of a reference type"
    );
    assert_eq!(why(r#"(module (memory 1) (data "x") (func (data.drop 0)))"#), "its code uses data.drop");
    assert_eq!(
        why("(module (memory 1) (table 1 funcref) (func (drop (table.grow (ref.null func) (i32.const 1)))))"),
        "its code uses table.grow"
    );
    assert_eq!(why("(module (memory 1) (func $f) (start $f))"), "it has a start function");
    let component = b"\0asm\x0d\x00\x01\x00";
    assert!(matches!(plan(component), Plan::Fresh(why) if why == "it is a component"));
    assert!(
        matches!(plan(b"\0asm\x01\x00\x00\x00\x05"), Plan::Fresh(why) if why.starts_with("its code cannot be read"))
    );
}

#[test]
fn a_reused_module_gets_its_mutable_globals_exported_and_nothing_else_changes() {
    let wat = r#"(module
        (memory (export "memory") 1)
        (global i32 (i32.const 1))
        (global $sp (mut i32) (i32.const 1024))
        (global (export "g") (mut i64) (i64.const 7))
        (func (export "f") (result i32) (global.set $sp (i32.const 8)) (i32.const 1))
        (@custom "house.static:/x text/plain" "hi"))"#;
    let bytes = wat::parse_str(wat).unwrap();
    let Plan::Reuse { bytes: out, globals, .. } = plan(&bytes) else { panic!("not reused") };
    assert_eq!(globals, ["house_reset.global.1", "house_reset.global.2"]);
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::new(&engine, &out).unwrap();
    let exports: Vec<_> = module.exports().map(|e| e.name().to_owned()).collect();
    // And the global of the write record (`guests::dirty`), last.
    assert_eq!(exports, ["memory", "g", "f", "house_reset.global.1", "house_reset.global.2", dirty::DIRTY_EXPORT]);
    // The rest is as it was: the custom section, and the code of a function
    // that writes no memory, byte for byte.
    assert_eq!(super::super::statics::read(&out).unwrap().len(), super::super::statics::read(&bytes).unwrap().len());
    let bodies = |b: &[u8]| -> Vec<Vec<u8>> {
        Parser::new(0)
            .parse_all(b)
            .filter_map(|p| match p {
                Ok(Payload::CodeSectionEntry(body)) => Some(body.as_bytes().to_vec()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(bodies(&out), bodies(&bytes));
}

#[test]
fn memory_is_kept_as_runs_of_zeros_and_data() {
    let mut memory = vec![0u8; 4096];
    memory[300] = 1;
    memory[1000] = 2;
    memory[4095] = 3;
    let spans: Vec<_> = runs(&memory)
        .iter()
        .map(|r| match r {
            Run::Zeros(range) => (false, range.clone()),
            Run::Data(range, bytes) => {
                assert_eq!(&memory[range.clone()], &bytes[..]);
                (true, range.clone())
            }
        })
        .collect();
    assert_eq!(
        spans,
        [
            (false, 0..256),
            (true, 256..512),
            (false, 512..768),
            (true, 768..1024),
            (false, 1024..3840),
            (true, 3840..4096)
        ]
    );
}

/// A reusable module without an export section gets one for its mutable
/// globals, in its place among the sections (the fuzzer found it left
/// out), and the result still validates.
#[test]
fn a_module_without_exports_gets_its_globals_exported() {
    for wat in [
        "(module (memory 1) (global (mut i32) (i32.const 7)))",
        "(module (memory 1) (global (mut i64) (i64.const 7)) (func) (data (i32.const 0) \"x\"))",
    ] {
        let Plan::Reuse { bytes, globals, .. } = plan(&wat::parse_str(wat).unwrap()) else {
            panic!("not reused: {wat}")
        };
        assert_eq!(globals, ["house_reset.global.0"]);
        wasmparser::validate(&bytes).unwrap_or_else(|e| panic!("{wat}: {e}"));
        let exported: Vec<String> = Parser::new(0)
            .parse_all(&bytes)
            .filter_map(|p| match p {
                Ok(Payload::ExportSection(s)) => {
                    Some(s.into_iter().map(|e| e.unwrap().name.to_owned()).collect::<Vec<_>>())
                }
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(exported, [&globals[..], &[dirty::DIRTY_EXPORT.to_owned()]].concat(), "{wat}");
    }
}
