//! Every request runs in a fresh instance: what one call writes to its
//! globals, its memory or its argument buffer, the next call never sees.
//! And the argument buffer (`house_args`, docs/ABI.md): arguments that fit
//! are written there without a call to `house_alloc`; larger ones still go
//! through it.

use std::time::Duration;

use house_tests::{Server, TempDir, enc};

const T: Duration = Duration::from_secs(20);

/// A module whose handler `h` (one string parameter `s`) answers 200 only
/// if its mutable global, a byte of its memory and the byte just past its
/// arguments are all as a fresh instance has them, then dirties all three;
/// it traps otherwise. `house_alloc` traps: only the buffer can work.
const MODULE: &str = r#"(module
  (memory (export "memory") 1)
  (global $n (mut i32) (i32.const 0))
  (global (export "house_args") i32 (i32.const 16384))
  (global (export "house_args_size") i32 (i32.const 12288))
  (data (i32.const 12288) "\40\00\00\00")
  (data (i32.const 1024) "\00\00\00\00\00\00\00\00\00\00\00\00\02\00\00\00ok")
  (data (i32.const 4096) "{\"name\":\"h\",\"kind\":\"closing\",\"params\":[{\"name\":\"s\",\"type\":\"string\"}]}")
  (func (export "house_abi_version") (result i32) i32.const 1)
  (func (export "house_alloc") (param i32) (result i32) unreachable)
  (func (export "house_meta.h") (result i64) i64.const 0x0000004500001000)
  (func (export "house_handler.h") (param $ptr i32) (param $len i32) (result i64)
    (if (i32.ne (local.get $ptr) (i32.const 16384)) (then unreachable))
    (if (i32.ne (global.get $n) (i32.const 0)) (then unreachable))
    (if (i32.ne (i32.load8_u (i32.const 30000)) (i32.const 0)) (then unreachable))
    (if (i32.ne (i32.load8_u (i32.add (local.get $ptr) (local.get $len))) (i32.const 0)) (then unreachable))
    (global.set $n (i32.const 1))
    (i32.store8 (i32.const 30000) (i32.const 1))
    (i32.store8 (i32.add (local.get $ptr) (local.get $len)) (i32.const 1))
    (i64.const 0x0000001200000400)))"#;

#[test]
fn each_request_sees_a_fresh_instance_and_arguments_land_in_the_buffer() {
    let dir = TempDir::new("instances");
    let path = dir.path().join("fresh.wasm");
    let s = Server::start_in(dir, &["--threads", "1"]);
    std::fs::write(&path, wat::parse_str(MODULE).unwrap()).unwrap();
    s.wait_for_log("house: loaded fresh.wasm", T);

    // Arguments of every length up to the buffer: always there, never a
    // house_alloc, and each call's global, memory and buffer are fresh
    // (the previous call dirtied all three).
    for n in [0usize, 1, 7, 20, 60] {
        for _ in 0..3 {
            let r = s.get(&format!("/h?s={}", enc(&"x".repeat(n))));
            assert_eq!((r.status, r.body.as_str()), (200, "ok"), "s of {n} bytes");
        }
    }
    // 4 + 61 bytes do not fit 64: house_alloc (which traps here) is used.
    let r = s.get(&format!("/h?s={}", "x".repeat(61)));
    assert_eq!(r.status, 500);
    s.wait_for_log("guest fresh.wasm: h: ", T);
    assert!(s.log().contains("unreachable"), "{}", s.log());
}

#[test]
fn a_module_with_half_an_argument_buffer_or_one_outside_memory_is_refused() {
    let dir = TempDir::new("instances-bad");
    let p = dir.path().to_owned();
    let s = Server::start_in(dir, &[]);
    let half = MODULE.replace(r#"(global (export "house_args_size") i32 (i32.const 12288))"#, "");
    std::fs::write(p.join("half.wasm"), wat::parse_str(&half).unwrap()).unwrap();
    s.wait_for_log("house: refused half.wasm: exports one of house_args and house_args_size without the other", T);
    let outside = MODULE.replace(r#"(i32.const 16384))"#, r#"(i32.const 65500))"#);
    std::fs::write(p.join("outside.wasm"), wat::parse_str(&outside).unwrap()).unwrap();
    s.wait_for_log(
        "house: refused outside.wasm: house_args of 64 bytes: guest pointer 65500..65564 is outside its memory",
        T,
    );
}
