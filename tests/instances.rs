//! Every request runs in a fresh instance: what one call writes to its
//! globals, its memory or its argument buffer, the next call never sees.
//! And the argument buffer (`house_args`, docs/ABI.md): arguments that fit
//! are written there without a call to `house_alloc`; larger ones still go
//! through it.

use std::time::Duration;

use house_tests::{Server, TempDir, enc};

const T: Duration = Duration::from_secs(20);

/// A module of `pages` pages whose handler `h` (one string parameter `s`)
/// grows its memory by `grow` pages, then answers 200 only if its mutable
/// global, a byte of its first page, a byte of its last page and the byte
/// just past its arguments are all as a fresh instance has them, and dirties
/// all four; it traps otherwise. `house_alloc` traps: only the buffer can
/// work.
fn module(path: &str, pages: u32, grow: u32) -> String {
    let last = (pages + grow - 1) * 65536 + 100;
    let manifest =
        format!(r#"{{"name":"h","kind":"closing","path":"{path}","params":[{{"name":"s","type":"string"}}]}}"#);
    let packed = ((manifest.len() as u64) << 32) | 4096;
    let manifest = manifest.replace('"', "\\\"");
    format!(
        r#"(module
  (memory (export "memory") {pages})
  (global $n (mut i32) (i32.const 0))
  (global (export "house_args") i32 (i32.const 16384))
  (global (export "house_args_size") i32 (i32.const 12288))
  (data (i32.const 12288) "\40\00\00\00")
  (data (i32.const 1024) "\00\00\00\00\00\00\00\00\00\00\00\00\02\00\00\00ok")
  (data (i32.const 4096) "{manifest}")
  (func (export "house_abi_version") (result i32) i32.const 1)
  (func (export "house_alloc") (param i32) (result i32) unreachable)
  (func (export "house_meta.h") (result i64) i64.const {packed})
  (func (export "house_handler.h") (param $ptr i32) (param $len i32) (result i64)
    (if (i32.lt_s (memory.grow (i32.const {grow})) (i32.const 0)) (then unreachable))
    (if (i32.ne (local.get $ptr) (i32.const 16384)) (then unreachable))
    (if (i32.ne (global.get $n) (i32.const 0)) (then unreachable))
    (if (i32.ne (i32.load8_u (i32.const 30000)) (i32.const 0)) (then unreachable))
    (if (i32.ne (i32.load8_u (i32.const {last})) (i32.const 0)) (then unreachable))
    (if (i32.ne (i32.load8_u (i32.add (local.get $ptr) (local.get $len))) (i32.const 0)) (then unreachable))
    (global.set $n (i32.const 1))
    (i32.store8 (i32.const 30000) (i32.const 1))
    (i32.store8 (i32.const {last}) (i32.const 1))
    (i32.store8 (i32.add (local.get $ptr) (local.get $len)) (i32.const 1))
    (i64.const 0x0000001200000400)))"#
    )
}

#[test]
fn each_request_sees_a_fresh_instance_and_arguments_land_in_the_buffer() {
    let dir = TempDir::new("instances");
    let p = dir.path().to_owned();
    let s = Server::start_in(dir, &["--threads", "1"]);
    // Small memories are reset by rewriting them (and what a call grew
    // beyond that given back); larger ones by restoring their dirty pages.
    for (file, pages, grow) in [("small.wasm", 1, 0), ("grows.wasm", 1, 8), ("large.wasm", 17, 0), ("both.wasm", 17, 4)]
    {
        let path = format!("/{}", file.trim_end_matches(".wasm"));
        std::fs::write(p.join(file), wat::parse_str(module(&path, pages, grow)).unwrap()).unwrap();
        s.wait_for_log(&format!("house: loaded {file}"), T);
        // Arguments of every length up to the buffer: always there, never
        // a house_alloc, and each call's global, memory and buffer are
        // fresh (the previous call dirtied them all).
        for n in [0usize, 1, 7, 20, 60] {
            for _ in 0..3 {
                let r = s.get(&format!("{path}?s={}", enc(&"x".repeat(n))));
                assert_eq!((r.status, r.body.as_str()), (200, "ok"), "{file}: s of {n} bytes");
            }
        }
    }
    // 4 + 61 bytes do not fit 64: house_alloc (which traps here) is used.
    let r = s.get(&format!("/both?s={}", "x".repeat(61)));
    assert_eq!(r.status, 500);
    s.wait_for_log("guest both.wasm: h: ", T);
    assert!(s.log().contains("unreachable"), "{}", s.log());
    // Which reset each module got, for the operator.
    let index: serde_json::Value = serde_json::from_str(&s.get("/_house/guests").body).unwrap();
    let reset = |file: &str| {
        let g = index["guests"].as_array().unwrap().iter().find(|g| g["file"] == file).unwrap();
        g["memory_reset"].as_str().unwrap().to_owned()
    };
    assert_eq!((reset("small.wasm"), reset("large.wasm")), ("rewrite".to_owned(), "dirty pages".to_owned()));
}

#[test]
fn a_module_with_half_an_argument_buffer_or_one_outside_memory_is_refused() {
    let dir = TempDir::new("instances-bad");
    let p = dir.path().to_owned();
    let s = Server::start_in(dir, &[]);
    let half = module("/h", 1, 0).replace(r#"(global (export "house_args_size") i32 (i32.const 12288))"#, "");
    std::fs::write(p.join("half.wasm"), wat::parse_str(&half).unwrap()).unwrap();
    s.wait_for_log("house: refused half.wasm: exports one of house_args and house_args_size without the other", T);
    let outside = module("/h", 1, 0).replace(r#"(i32.const 16384))"#, r#"(i32.const 65500))"#);
    std::fs::write(p.join("outside.wasm"), wat::parse_str(&outside).unwrap()).unwrap();
    s.wait_for_log(
        "house: refused outside.wasm: house_args of 64 bytes: guest pointer 65500..65564 is outside its memory",
        T,
    );
}
