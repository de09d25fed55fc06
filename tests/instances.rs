//! Every request runs in a fresh instance's state: what one call writes to
//! its globals, its memory or its argument buffer, the next call never
//! sees, whether its instance was made for it or kept from an earlier call
//! and reset (`guests::warm`). And the argument buffer (`house_args`, docs/ABI.md): arguments that fit
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
    let index: serde_json::Value = serde_json::from_str(&s.admin_get("/_house/guests").body).unwrap();
    let reset = |file: &str| {
        let g = index["guests"].as_array().unwrap().iter().find(|g| g["file"] == file).unwrap();
        g["memory_reset"].as_str().unwrap().to_owned()
    };
    assert_eq!((reset("small.wasm"), reset("large.wasm")), ("rewrite".to_owned(), "dirty pages".to_owned()));
    // small.wasm's instances were kept and reset between its calls (so the
    // checks above ran in reused instances); the others' were not: grows'
    // memory grew on every call, large and both start over 128 KiB.
    let instances = |file: &str| {
        index["guests"].as_array().unwrap().iter().find(|g| g["file"] == file).unwrap()["instances"].clone()
    };
    // Both record what they write (guests::dirty): only that is restored.
    let wrote = "what each call wrote";
    assert_eq!(instances("small.wasm"), serde_json::json!({"reused": true, "idle": 1, "restores": wrote}));
    assert_eq!(instances("grows.wasm"), serde_json::json!({"reused": true, "idle": 0, "restores": wrote}));
    assert_eq!(
        instances("large.wasm")["why_not"],
        "its memory starts at 1088 KiB, over the 128 KiB restored by copying"
    );
}

/// Counter `name` of the server's metrics.
fn metric(s: &Server, name: &str) -> u64 {
    let body = s.admin_get("/_house/metrics").body;
    let line = body.lines().find(|l| l.starts_with(&format!("{name} "))).expect("the counter");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// A one-page module whose handler `h` (at `/r`) answers 200 only if all
/// that a call can change is as a fresh instance has it: a hidden mutable
/// i32 global, a hidden mutable i64 global that starts at 7, an exported
/// mutable global, a byte among the zeros, a byte of its data, the last
/// byte of its memory, and its memory's size. It changes all of them; then
/// an `s` of one byte traps, one of two bytes grows the memory.
fn reused() -> String {
    let manifest = r#"{"name":"h","kind":"closing","path":"/r","params":[{"name":"s","type":"string"}]}"#;
    let packed = ((manifest.len() as u64) << 32) | 4096;
    let manifest = manifest.replace('"', "\\\"");
    format!(
        r#"(module
  (memory (export "memory") 1)
  (global $n (mut i32) (i32.const 0))
  (global $m (mut i64) (i64.const 7))
  (global $e (export "counter") (mut f64) (f64.const 1.5))
  (global (export "house_args") i32 (i32.const 16384))
  (global (export "house_args_size") i32 (i32.const 12288))
  (data (i32.const 12288) "\40\00\00\00")
  (data (i32.const 1024) "\00\00\00\00\00\00\00\00\00\00\00\00\02\00\00\00ok")
  (data (i32.const 2000) "fresh")
  (data (i32.const 4096) "{manifest}")
  (func (export "house_abi_version") (result i32) i32.const 1)
  (func (export "house_alloc") (param i32) (result i32) unreachable)
  (func (export "house_meta.h") (result i64) i64.const {packed})
  (func (export "house_handler.h") (param $ptr i32) (param $len i32) (result i64)
    (if (i32.ne (memory.size) (i32.const 1)) (then unreachable))
    (if (i32.ne (global.get $n) (i32.const 0)) (then unreachable))
    (if (i64.ne (global.get $m) (i64.const 7)) (then unreachable))
    (if (f64.ne (global.get $e) (f64.const 1.5)) (then unreachable))
    (if (i32.ne (i32.load8_u (i32.const 30000)) (i32.const 0)) (then unreachable))
    (if (i32.ne (i32.load8_u (i32.const 2000)) (i32.const 102)) (then unreachable))
    (if (i32.ne (i32.load8_u (i32.const 65535)) (i32.const 0)) (then unreachable))
    (global.set $n (i32.const 1))
    (global.set $m (i64.const 8))
    (global.set $e (f64.const 2.5))
    (i32.store8 (i32.const 30000) (i32.const 1))
    (i32.store8 (i32.const 2000) (i32.const 88))
    (i32.store8 (i32.const 65535) (i32.const 1))
    (if (i32.eq (local.get $len) (i32.const 5)) (then unreachable))
    (if (i32.eq (local.get $len) (i32.const 6)) (then (drop (memory.grow (i32.const 1)))))
    (i64.const 0x0000001200000400)))"#
    )
}

#[test]
fn a_kept_instance_is_reset_whole_and_one_that_failed_or_grew_is_not_kept() {
    let dir = TempDir::new("instances-warm");
    std::fs::write(dir.path().join("r.wasm"), wat::parse_str(reused()).unwrap()).unwrap();
    let s = Server::start_in(dir, &["--threads", "1"]);
    s.wait_for_log("house: loaded r.wasm", T);
    // (The argument block is 4 bytes of length, then `s`.)
    let call = |arg: &str| {
        let r = s.get(&format!("/r?s={arg}"));
        (r.status, r.body)
    };
    let ok = (200, "ok".to_owned());
    assert_eq!(call(""), ok, "a new instance");
    assert_eq!(call(""), ok, "the first, reset");
    assert_eq!(call("x").0, 500, "the first again: it traps after changing everything");
    assert_eq!(call(""), ok, "a new instance: the one that trapped was dropped");
    assert_eq!(call("xy"), ok, "that one again: it grows its memory");
    assert_eq!(call(""), ok, "a new instance: the one that grew was dropped");
    for _ in 0..20 {
        assert_eq!(call(""), ok, "that one, reset each time");
    }
    assert_eq!(metric(&s, "house_guest_instantiations_total"), 3);
    assert_eq!(metric(&s, "house_guest_instance_reuses_total"), 23);
}

#[test]
fn modules_that_could_keep_state_elsewhere_get_a_new_instance_for_every_request() {
    let dir = TempDir::new("instances-fresh");
    let p = dir.path().to_owned();
    let s = Server::start_in(dir, &["--threads", "1"]);
    let module = reused();
    let first = r#"(func (export "house_abi_version")"#;
    let start = module.replace(first, &format!("(func $init) (start $init) {first}"));
    let table = module.replace(first, &format!("(table 1 funcref) (elem declare func 0) {first}")).replace(
        "(global.set $n (i32.const 1))",
        "(global.set $n (i32.const 1)) (table.set 0 (i32.const 0) (ref.func 0))",
    );
    let reserved = module.replace(r#"(export "counter")"#, r#"(export "house_reset.global.2")"#);
    let variants = [
        ("start.wasm", &start, "it has a start function"),
        ("table.wasm", &table, "its code uses table.set"),
        ("reserved.wasm", &reserved, "it exports a name starting with house_reset.global., reserved to the host"),
    ];
    for (file, wat, why) in variants {
        std::fs::write(p.join(file), wat::parse_str(wat).unwrap()).unwrap();
        s.wait_for_log(&format!("house: loaded {file}"), T);
        let index: serde_json::Value = serde_json::from_str(&s.admin_get("/_house/guests").body).unwrap();
        let g = index["guests"].as_array().unwrap().iter().find(|g| g["file"] == file).unwrap();
        assert_eq!(g["instances"], serde_json::json!({"reused": false, "why_not": why}), "{file}");
        assert_eq!(s.get("/r?s=").status, 200, "{file}");
        assert_eq!(s.get("/r?s=").status, 200, "{file}: a new instance, not the last one");
        std::fs::remove_file(p.join(file)).unwrap();
        s.wait_for_log(&format!("house: unloaded {file}"), T);
    }
    assert_eq!(metric(&s, "house_guest_instantiations_total"), 6, "one per request");
    assert_eq!(metric(&s, "house_guest_instance_reuses_total"), 0);
}

#[test]
fn no_instance_is_kept_with_guest_warm_instances_0() {
    let dir = TempDir::new("instances-off");
    std::fs::write(dir.path().join("r.wasm"), wat::parse_str(reused()).unwrap()).unwrap();
    let s = Server::start_in(dir, &["--guest-warm-instances", "0"]);
    s.wait_for_log("house: loaded r.wasm", T);
    for _ in 0..3 {
        assert_eq!(s.get("/r?s=").status, 200);
    }
    assert_eq!(metric(&s, "house_guest_instantiations_total"), 3);
    assert_eq!(metric(&s, "house_guest_instance_reuses_total"), 0);
    let index: serde_json::Value = serde_json::from_str(&s.admin_get("/_house/guests").body).unwrap();
    assert_eq!(index["guests"][0]["instances"]["why_not"], "--guest-warm-instances is 0");
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

#[test]
fn a_reloaded_or_removed_module_gives_back_its_idle_instances() {
    let dir = TempDir::new("instances-reload");
    let p = dir.path().to_owned();
    std::fs::write(p.join("r.wasm"), wat::parse_str(reused()).unwrap()).unwrap();
    let s = Server::start_in(dir, &["--threads", "1"]);
    s.wait_for_log("house: loaded r.wasm", T);
    assert_eq!(s.get("/r?s=").status, 200);
    assert_eq!(metric(&s, "house_guest_instances_idle"), 1);
    // The old module goes with its idle instance once nothing serves it.
    let idle_becomes = |n: u64| {
        let deadline = std::time::Instant::now() + T;
        while metric(&s, "house_guest_instances_idle") != n {
            assert!(std::time::Instant::now() < deadline, "idle instances never came to {n}");
        }
    };
    std::fs::write(p.join("r.wasm"), wat::parse_str(reused().replace("fresh", "fres2")).unwrap()).unwrap();
    s.wait_for_log("house: reloaded r.wasm", T);
    idle_becomes(0);
    assert_eq!(s.get("/r?s=").status, 200, "the new module's first instance");
    idle_becomes(1);
    std::fs::remove_file(p.join("r.wasm")).unwrap();
    s.wait_for_log("house: unloaded r.wasm", T);
    idle_becomes(0);
}

/// `/_house/guests` counts a module's idle instances when it is asked, as
/// the metric does (it used to be counted when the routes were made).
#[test]
fn the_guests_index_counts_idle_instances_live() {
    let s = Server::start(&["hello"], &[]);
    let idle = || {
        let index: serde_json::Value = serde_json::from_str(&s.admin_get("/_house/guests").body).unwrap();
        index["guests"][0]["instances"]["idle"].as_u64().expect("hello.wasm is reused")
    };
    assert_eq!(idle(), 0);
    assert_eq!(s.get("/hello?name=Ada").status, 200);
    assert_eq!((idle(), metric(&s, "house_guest_instances_idle")), (1, 1));
}
