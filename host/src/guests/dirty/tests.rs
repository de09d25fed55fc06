//! The write record: every byte a call changes lies in a chunk it marked,
//! and a chunk is marked only where something was written.

use super::*;
use crate::guests::warm::{Plan, plan};

const MODULE: &str = r#"(module
    (memory (export "memory") 1)
    (data (i32.const 100) "hello")
    (data $seg "0123456789abcdef0123456789")
    (global $sp (mut i32) (i32.const 4096))
    (func $poke (param i32) (i32.store8 (local.get 0) (i32.const 7)))
    (func (export "stores") (param i32)
        (i32.store offset=2000 (i32.const 0) (i32.const -1))
        ;; 16 bytes from chunk 3 into chunk 4
        (v128.store (i32.const 4088) (v128.const i64x2 -1 -1))
        (memory.fill (i32.const 10000) (i32.const 9) (i32.const 3000))
        (memory.copy (i32.const 20000) (i32.const 100) (i32.const 5))
        (memory.init $seg (i32.const 30000) (i32.const 0) (i32.const 26))
        ;; nothing written: no chunk
        (memory.fill (i32.const 33000) (i32.const 9) (i32.const 0))
        ;; a branch to the function's own label leaves it
        (block (i64.store16 (i32.const 40000) (i64.const 0x1234)) (br 1))
        (unreachable))
    (func (export "returns") (param i32)
        (global.set $sp (i32.const 8))
        (if (i32.eqz (local.get 0)) (then (i32.store (i32.const 50000) (i32.const 1)) (return)))
        (i32.store (i32.const 51000) (i32.const 1)))
    (func (export "tail") (param i32)
        (f64.store (i32.const 60000) (f64.const 1.5))
        (return_call $poke (i32.const 62000)))
    (func (export "callee") (param i32)
        (call $poke (i32.const 65535))))"#;

/// Runs `export` in a new instance of the rewritten module; returns the
/// marked chunks after checking that they cover every changed byte.
fn run(export: &str, arg: i32) -> u64 {
    let Plan::Reuse { bytes, chunks, .. } = plan(&wat::parse_str(MODULE).unwrap()) else { panic!("not reused") };
    assert_eq!(chunks, Ok(10), "64 chunks of 1 KiB");
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::new(&engine, &bytes).unwrap();
    let mut store = wasmtime::Store::new(&engine, ());
    let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
    let memory = instance.get_memory(&mut store, "memory").unwrap();
    let before = memory.data(&store).to_vec();
    let f = instance.get_typed_func::<i32, ()>(&mut store, export).unwrap();
    f.call(&mut store, arg).unwrap();
    let marked = instance.get_global(&mut store, DIRTY_EXPORT).unwrap().get(&mut store).i64().unwrap() as u64;
    for (i, (a, b)) in before.iter().zip(memory.data(&store)).enumerate() {
        if a != b {
            let chunk = i >> 10;
            let covered = marked & (1 << chunk) != 0
                || (chunk > 0 && marked & (1 << (chunk - 1)) != 0 && i - (chunk << 10) < OVERLAP);
            assert!(covered, "{export}: byte {i} changed in chunk {chunk}, not marked ({marked:#x})");
        }
    }
    marked
}

fn bits(chunks: &[u32]) -> u64 {
    chunks.iter().fold(0, |m, c| m | 1 << c)
}

#[test]
fn each_kind_of_write_marks_its_chunks_and_nothing_else() {
    // 2000; 4088 (its last 8 bytes in chunk 4: the overlap); 10000..13000;
    // 20000; 30000..30026; 40000.
    assert_eq!(run("stores", 0), bits(&[1, 3, 9, 10, 11, 12, 19, 29, 39]));
}

#[test]
fn a_return_from_anywhere_keeps_its_marks() {
    assert_eq!(run("returns", 0), bits(&[48]));
    assert_eq!(run("returns", 1), bits(&[49]));
    assert_eq!(run("tail", 0), bits(&[58, 60]));
    assert_eq!(run("callee", 0), bits(&[63]));
}

#[test]
fn chunks_grow_with_the_memory_64_of_them() {
    assert_eq!(shift_for(64 * 1024), 10);
    assert_eq!(shift_for(128 * 1024), 11);
    assert_eq!(shift_for(1), 10);
}

#[test]
fn what_the_record_does_not_cover_restores_the_whole_memory() {
    let atomics = r#"(module (memory (export "memory") 1)
        (func (export "f") (i32.atomic.store (i32.const 0) (i32.const 1))))"#;
    let Plan::Reuse { chunks, .. } = plan(&wat::parse_str(atomics).unwrap()) else { panic!("not reused") };
    assert!(chunks.unwrap_err().contains("does not cover"));
    let pair = r#"(module (memory (export "memory") 1)
        (func (export "f") (result i32 i32) (i32.store (i32.const 0) (i32.const 1)) (i32.const 1) (i32.const 2)))"#;
    let Plan::Reuse { chunks, .. } = plan(&wat::parse_str(pair).unwrap()) else { panic!("not reused") };
    assert!(chunks.unwrap_err().contains("several values"));
}
