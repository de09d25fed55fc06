//! Loading a module is bounded: file and manifest sizes, memory declared
//! beyond what an instance may have, compile time and memory (in a child
//! process, so the server's own memory comes back), the compiled-module
//! cache (checked, bounded, never inside the guests folder), and the
//! guests folder itself (created if missing, watched before it is scanned,
//! files linked into place).

use std::process::Command;
use std::time::{Duration, Instant};

use house_tests::fault::{self, WatHandler};
use house_tests::{Server, TempDir, example_guest, house_bin, wait_until};

const T: Duration = Duration::from_secs(20);

/// A valid guest with `n` extra trivial functions: slow to compile, cheap
/// to run.
fn many_functions(n: usize) -> Vec<u8> {
    let mut extra = String::with_capacity(n * 40);
    for i in 0..n {
        extra.push_str(&format!("(func (result i32) i32.const {i})\n"));
    }
    fault::module_after(1, &[WatHandler::closing("many", "(global.get $ok)")], &extra)
}

fn ok_module(path: &str) -> Vec<u8> {
    let manifest = format!(r#"{{"name":"h","kind":"closing","path":"{path}"}}"#);
    fault::module(1, &[WatHandler { name: "h", manifest, body: "(global.get $ok)" }])
}

#[test]
fn oversized_files_manifests_paths_and_memories_are_refused_with_what_the_author_did() {
    let dir = TempDir::new("sizes");
    let p = dir.path().to_owned();
    let s = Server::start_in(
        dir,
        &["--max-module-bytes", "40000", "--max-manifest-bytes", "20000", "--guest-memory-mb", "4"],
    );
    std::fs::copy(example_guest("typed"), p.join("typed.wasm")).unwrap();
    let size = std::fs::metadata(p.join("typed.wasm")).unwrap().len();
    s.wait_for_log(&format!("house: refused typed.wasm: the file is {size} bytes, over --max-module-bytes 40000"), T);

    let long = format!("/{}", "p".repeat(30_000));
    std::fs::write(p.join("manifest.wasm"), ok_module(&long)).unwrap();
    s.wait_for_log(
        "house: refused manifest.wasm: house_meta.h: a manifest entry of 30040 bytes, over --max-manifest-bytes 20000",
        T,
    );
    let long = format!("/{}", "p".repeat(3000));
    std::fs::write(p.join("path.wasm"), ok_module(&long)).unwrap();
    s.wait_for_log("house: refused path.wasm: handler h: its path is 3001 bytes long; at most 2048", T);

    // 128 pages: 8 MiB of initial memory.
    let wat =
        "(module (memory (export \"memory\") 128) (func (export \"house_abi_version\") (result i32) i32.const 1))";
    std::fs::write(p.join("memory.wasm"), wat::parse_str(wat).unwrap()).unwrap();
    s.wait_for_log("house: refused memory.wasm: declares 8 MiB of initial memory, over --guest-memory-mb 4", T);
    // Nothing refused was ever served, and the server is fine.
    assert_eq!(s.admin_get("/_house/stats").status, 200);
}

/// A module that takes long to compile is refused at the timeout, and
/// files dropped after it load meanwhile.
#[test]
fn a_slow_compile_is_refused_at_its_timeout_and_does_not_hold_up_other_files() {
    let s = Server::start(&[], &["--compile-timeout-ms", "150", "--no-cache"]);
    let p = s.guests.path().to_owned();
    std::fs::write(p.join("slow.wasm"), many_functions(50_000)).unwrap();
    std::fs::write(p.join("quick.wasm"), ok_module("/quick")).unwrap();
    s.wait_for_log("house: loaded quick.wasm", T);
    assert_eq!(s.count_log("slow.wasm"), 0, "quick.wasm loaded while slow.wasm was compiling:\n{}", s.log());
    wait_until(T, "/quick served", || s.get("/quick").status == 200);
    s.wait_for_log("house: refused slow.wasm: compiling took longer than --compile-timeout-ms 150", T);
}

#[test]
fn a_compile_over_its_memory_is_refused() {
    let s = Server::start(&[], &["--compile-memory-mb", "64", "--no-cache"]);
    std::fs::write(s.guests.path().join("slow.wasm"), many_functions(50_000)).unwrap();
    let line = s.wait_for_log("house: refused slow.wasm: ", T);
    assert!(line.contains("--compile-memory-mb 64"), "{line}");
}

/// The compiler's memory is the child's: loading and unloading a module
/// that is expensive to compile leaves the server about where it was.
#[test]
fn memory_comes_back_after_a_big_module_is_unloaded() {
    let s = Server::start(&["hello"], &["--no-cache"]);
    assert_eq!(s.get("/hello").status, 200);
    let before = s.rss_kib();
    let file = s.guests.path().join("many.wasm");
    std::fs::write(&file, many_functions(50_000)).unwrap();
    s.wait_for_log("house: loaded many.wasm", T);
    wait_until(T, "/many served", || s.get("/many").status == 200);
    std::fs::remove_file(&file).unwrap();
    s.wait_for_log("house: unloaded many.wasm", T);
    wait_until(T, "/many gone", || s.get("/many").status == 404);
    let after = s.rss_kib();
    assert!(after < before + 32 * 1024, "RSS {before} KiB before, {after} KiB after the unload");
}

fn cache_entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.path())).filter(|p| p.extension().is_some_and(|e| e == "cwasm")).collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_corrupted_cache_entry_is_ignored_and_rebuilt() {
    let cache = TempDir::new("cache-corrupt");
    let c = cache.path().to_str().unwrap().to_owned();
    let s = Server::start(&["hello"], &["--cache-dir", &c]);
    s.wait_for_log("house: loaded hello.wasm", T);
    drop(s);
    let entries = cache_entries(cache.path());
    assert_eq!(entries.len(), 1, "{entries:?}");
    // Flip bytes in the middle of the machine code.
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&entries[0], &bytes).unwrap();
    let s = Server::start(&["hello"], &["--cache-dir", &c]);
    s.wait_for_log("ignoring corrupted cache entry", T);
    let line = s.wait_for_log("house: loaded hello.wasm", T);
    assert!(!line.contains("from cache"), "{line}");
    assert_eq!(s.get("/hello?name=x").body, "Hello, x!\n");
    drop(s);
    let s = Server::start(&["hello"], &["--cache-dir", &c]);
    let line = s.wait_for_log("house: loaded hello.wasm", T);
    assert!(line.contains("from cache"), "rebuilt: {line}");
}

#[test]
fn the_cache_is_bounded() {
    let cache = TempDir::new("cache-bound");
    let c = cache.path().to_str().unwrap().to_owned();
    let s = Server::start(&["hello"], &["--cache-dir", &c, "--cache-max-mb", "1"]);
    s.wait_for_log("house: loaded hello.wasm", T);
    // Forty different modules of ~100 KiB of code each.
    for i in 0..40 {
        std::fs::write(s.guests.path().join(format!("m{i}.wasm")), many_functions(2000 + i)).unwrap();
    }
    wait_until(T, "all loaded", || s.count_log("house: loaded m") == 40);
    let total: u64 = cache_entries(cache.path()).iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    assert!(total <= 1024 * 1024, "the cache holds {total} bytes");
    assert!(!cache_entries(cache.path()).is_empty());
}

#[test]
fn a_cache_inside_the_guests_folder_is_refused() {
    let dir = TempDir::new("cache-inside");
    let inside = dir.path().join("sub/.cache");
    let out = Command::new(house_bin())
        .args(["--port", "0", "--guests", dir.path().to_str().unwrap(), "--cache-dir", inside.to_str().unwrap()])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is inside --guests") && err.contains("native code"), "{err}");
}

#[test]
fn a_missing_guests_folder_is_created_and_watched() {
    let parent = TempDir::new("missing");
    let dir = parent.path().join("not/yet");
    let s = Server::start_in(TempDir::new("unused"), &["--guests", dir.to_str().unwrap()]);
    assert!(dir.is_dir());
    s.wait_for_log("house: created the guests folder", T);
    std::fs::copy(example_guest("hello"), dir.join("hello.wasm")).unwrap();
    wait_until(T, "hello served from the new folder", || s.get("/hello").status == 200);
}

/// cargo puts its outputs in place with hard links: a file replaced that
/// way is loaded (at the settle time, not after the open-writer wait).
#[test]
fn a_file_replaced_by_a_hard_link_is_loaded() {
    let s = Server::start(&[], &[]);
    let p = s.guests.path().to_owned();
    let staging = TempDir::new("staging");
    std::fs::write(staging.path().join("one.wasm"), ok_module("/one")).unwrap();
    std::fs::write(staging.path().join("two.wasm"), ok_module("/two")).unwrap();
    std::fs::hard_link(staging.path().join("one.wasm"), p.join("x.wasm")).unwrap();
    wait_until(T, "/one served", || s.get("/one").status == 200);
    std::fs::remove_file(p.join("x.wasm")).unwrap();
    let replaced = Instant::now();
    std::fs::hard_link(staging.path().join("two.wasm"), p.join("x.wasm")).unwrap();
    wait_until(T, "/two served", || s.get("/two").status == 200);
    assert!(replaced.elapsed() < Duration::from_millis(1500), "took {:?}", replaced.elapsed());
    assert_eq!(s.get("/one").status, 404);
}

/// A file dropped while the server is still loading what was there at
/// start is served: the folder is watched before it is scanned.
#[test]
fn a_file_dropped_during_start_up_is_loaded() {
    let dir = TempDir::new("startup");
    std::fs::write(dir.path().join("slow.wasm"), many_functions(30_000)).unwrap();
    let p = dir.path().to_owned();
    let s = Server::start_with(dir, &["--no-cache"], |pid| {
        // The start-up scan is under way once its compiler process runs.
        wait_until(T, "the compiler process", || compiler_running(pid));
        std::fs::copy(example_guest("hello"), p.join("hello.wasm")).unwrap();
    });
    wait_until(T, "hello served", || s.get("/hello").status == 200);
}

/// Whether `pid` has a `house --compile-worker` child.
fn compiler_running(pid: u32) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else { return false };
    procs.filter_map(Result::ok).any(|e| {
        let path = e.path();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        let ppid = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().nth(1)).unwrap_or_default();
        ppid == pid.to_string()
            && std::fs::read(path.join("cmdline")).is_ok_and(|c| c.windows(16).any(|w| w == b"--compile-worker"))
    })
}
