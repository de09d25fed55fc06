//! Every import a guest can call, with the arguments a guest chooses: a
//! sequence of calls (`subscribe`, `subscribe_as`, `presence`, `backlog`,
//! `publish`, `random`, `log` and every `kv_*`) with arbitrary pointers, lengths, counts and deltas
//! into a memory of arbitrary bytes, run through the host's own linker,
//! call context and budgets, against a real embedded store, then
//! committed. Nothing may panic; an import either answers a code or traps
//! the call; what the call leaves (subscriptions, events, log lines, its
//! transaction) stays within the host's rules and budgets.

#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use house_host::config::Config;
use house_host::engine::kv::{Kv, Pending, embedded};
use house_host::engine::presence::Presence;
use house_host::guests::engine::{Reset, Runtime, run_here};
use house_host::guests::{Kind, abi::CallCtx};
use house_host::log::Log;
use libfuzzer_sys::fuzz_target;

/// A guest that runs a script of import calls: records of 48 bytes (the
/// import's number, eight 32-bit arguments, one 64-bit one) at `ops`.
const INTERPRETER: &str = r#"
(module
  (import "house" "subscribe" (func $subscribe (param i32 i32) (result i32)))
  (import "house" "backlog" (func $backlog (param i32) (result i32)))
  (import "house" "publish" (func $publish (param i32 i32 i32 i32 i32 i32 i32 i32 i64) (result i32)))
  (import "house" "random" (func $random (param i32 i32) (result i32)))
  (import "house" "log" (func $log (param i32 i32)))
  (import "house" "kv_get" (func $kv_get (param i32 i32) (result i64)))
  (import "house" "kv_read" (func $kv_read (param i32 i32) (result i32)))
  (import "house" "kv_set" (func $kv_set (param i32 i32 i32 i32 i64) (result i32)))
  (import "house" "kv_delete" (func $kv_delete (param i32 i32) (result i32)))
  (import "house" "kv_incr" (func $kv_incr (param i32 i32 i64 i32) (result i32)))
  (import "house" "kv_list" (func $kv_list (param i32 i32 i32 i32) (result i64)))
  (import "house" "subscribe_as" (func $subscribe_as (param i32 i32 i32 i32) (result i32)))
  (import "house" "presence" (func $presence (param i32 i32 i32) (result i64)))
  (memory (export "memory") 2)
  (func $a (param $p i32) (param $i i32) (result i32)
    (i32.load (i32.add (local.get $p) (i32.add (i32.const 4) (i32.shl (local.get $i) (i32.const 2))))))
  (func (export "run") (param $p i32) (param $n i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $p) (i32.mul (local.get $n) (i32.const 48))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (block $step
          (block $k12 (block $k11
          (block $k10 (block $k9 (block $k8 (block $k7 (block $k6 (block $k5
          (block $k4 (block $k3 (block $k2 (block $k1 (block $k0
            (br_table $k0 $k1 $k2 $k3 $k4 $k5 $k6 $k7 $k8 $k9 $k10 $k11 $k12
              (i32.rem_u (i32.load (local.get $p)) (i32.const 13))))
          (drop (call $subscribe (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1))))
          (br $step))
          (drop (call $backlog (call $a (local.get $p) (i32.const 0))))
          (br $step))
          (drop (call $publish
            (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1))
            (call $a (local.get $p) (i32.const 2)) (call $a (local.get $p) (i32.const 3))
            (call $a (local.get $p) (i32.const 4)) (call $a (local.get $p) (i32.const 5))
            (call $a (local.get $p) (i32.const 6)) (call $a (local.get $p) (i32.const 7))
            (i64.load offset=40 (local.get $p))))
          (br $step))
          (drop (call $random (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1))))
          (br $step))
          (call $log (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1)))
          (br $step))
          (drop (call $kv_get (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1))))
          (br $step))
          (drop (call $kv_read (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1))))
          (br $step))
          (drop (call $kv_set
            (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1))
            (call $a (local.get $p) (i32.const 2)) (call $a (local.get $p) (i32.const 3))
            (i64.load offset=40 (local.get $p))))
          (br $step))
          (drop (call $kv_delete (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1))))
          (br $step))
          (drop (call $kv_incr
            (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1))
            (i64.load offset=40 (local.get $p)) (call $a (local.get $p) (i32.const 2))))
          (br $step))
          (drop (call $kv_list
            (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1))
            (call $a (local.get $p) (i32.const 2)) (call $a (local.get $p) (i32.const 3))))
          (br $step))
          (drop (call $subscribe_as
            (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1))
            (call $a (local.get $p) (i32.const 2)) (call $a (local.get $p) (i32.const 3))))
          (br $step))
          (drop (call $presence
            (call $a (local.get $p) (i32.const 0)) (call $a (local.get $p) (i32.const 1))
            (call $a (local.get $p) (i32.const 2)))))
        (local.set $p (i32.add (local.get $p) (i32.const 48)))
        (br $next)))))
"#;

/// Where the script goes in the guest's memory, after the data.
const SCRIPT_AT: usize = 64 * 1024;
/// The data the calls point into: the first page.
const DATA: usize = 64 * 1024;

#[derive(Arbitrary, Debug)]
enum Arg {
    /// Somewhere in the data, with a length that fits it (or nearly).
    In { at: u16, len: u16 },
    /// Anything at all (out of bounds, overflowing, negative).
    Raw(u32, u32),
}

impl Arg {
    fn pair(&self) -> (u32, u32) {
        match *self {
            Arg::In { at, len } => (u32::from(at) % DATA as u32, u32::from(len) % 300),
            Arg::Raw(p, l) => (p, l),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Subscribe(Arg),
    Backlog(i32),
    Publish { channel: Arg, data: Arg, event: Arg, id: Arg, retry: i64 },
    Random(Arg),
    Log(Arg),
    KvGet(Arg),
    KvRead(Arg),
    KvSet { key: Arg, value: Arg, ttl_ms: i64 },
    KvDelete(Arg),
    KvIncr { key: Arg, delta: i64, out: u32 },
    KvList { prefix: Arg, limit: i32, values: bool },
    SubscribeAs { channel: Arg, info: Arg },
    Presence { channel: Arg, limit: i32 },
}

impl Op {
    /// The script record the interpreter reads.
    fn record(&self) -> [u8; 48] {
        let mut args = [0u32; 8];
        let mut wide = 0i64;
        let mut put = |i: usize, a: &Arg| {
            let (p, l) = a.pair();
            args[i] = p;
            args[i + 1] = l;
        };
        let op = match self {
            Op::Subscribe(a) => {
                put(0, a);
                0
            }
            Op::Backlog(n) => {
                args[0] = *n as u32;
                1
            }
            Op::Publish { channel, data, event, id, retry } => {
                put(0, channel);
                put(2, data);
                put(4, event);
                put(6, id);
                wide = *retry;
                2
            }
            Op::Random(a) => {
                put(0, a);
                3
            }
            Op::Log(a) => {
                put(0, a);
                4
            }
            Op::KvGet(a) => {
                put(0, a);
                5
            }
            Op::KvRead(a) => {
                put(0, a);
                6
            }
            Op::KvSet { key, value, ttl_ms } => {
                put(0, key);
                put(2, value);
                wide = *ttl_ms;
                7
            }
            Op::KvDelete(a) => {
                put(0, a);
                8
            }
            Op::KvIncr { key, delta, out } => {
                put(0, key);
                args[2] = *out;
                wide = *delta;
                9
            }
            Op::KvList { prefix, limit, values } => {
                put(0, prefix);
                args[2] = *limit as u32;
                args[3] = u32::from(*values);
                10
            }
            Op::SubscribeAs { channel, info } => {
                put(0, channel);
                put(2, info);
                11
            }
            Op::Presence { channel, limit } => {
                put(0, channel);
                args[2] = *limit as u32;
                12
            }
        };
        let mut r = [0u8; 48];
        r[..4].copy_from_slice(&(op as u32).to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            r[4 + 4 * i..8 + 4 * i].copy_from_slice(&a.to_le_bytes());
        }
        r[40..].copy_from_slice(&wide.to_le_bytes());
        r
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    stream: bool,
    /// The data the calls point into (text, mostly: channels, keys).
    data: Vec<u8>,
    ops: Vec<Op>,
}

struct Harness {
    runtime: Arc<Runtime>,
    kv: Kv,
    pre: wasmtime::InstancePre<CallCtx>,
    _dir: std::path::PathBuf,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let cfg = Config::default();
        let dir = std::env::temp_dir().join(format!("house-fuzz-imports-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = embedded::Store::open(&dir, cfg.kv, Log::new(false, false)).expect("a store");
        let kv = Kv::Embedded(store);
        // A presence table with members in it, for `presence` to read.
        let presence = Arc::new(Presence::new(cfg.presence));
        for i in 0..50 {
            presence.join(&Arc::from("lobby"), &Arc::from(format!("member {i}").as_str()));
        }
        let runtime = Arc::new(
            Runtime::new(cfg.guest.clone(), cfg.limits.sse_buffer).expect("a runtime").with_presence(presence),
        );
        let wasm = wat::parse_str(INTERPRETER).expect("the interpreter assembles");
        let module = wasmtime::Module::new(runtime.engine(Reset::DirtyPages), wasm).expect("it compiles");
        let pre = runtime.linker(Reset::DirtyPages).instantiate_pre(&module).expect("it links");
        Harness { runtime, kv, pre, _dir: dir }
    })
}

fuzz_target!(|input: Input| {
    let h = harness();
    let ops = &input.ops[..input.ops.len().min(64)];
    let kind = if input.stream { Kind::Stream } else { Kind::Closing };
    let mut store = h.runtime.store(Reset::DirtyPages, kind);
    let instance = run_here(h.pre.instantiate_async(&mut store)).expect("instantiates");
    let memory = instance.get_memory(&mut store, "memory").expect("memory");
    let data = &input.data[..input.data.len().min(DATA)];
    memory.write(&mut store, 0, data).unwrap();
    let script: Vec<u8> = ops.iter().flat_map(|op| op.record()).collect();
    memory.write(&mut store, SCRIPT_AT, &script).unwrap();
    store.data_mut().memory = Some(memory);
    store.data_mut().kv = Some(Pending::new(h.kv.clone(), "fuzz.wasm"));
    let run = instance.get_typed_func::<(u32, u32), ()>(&mut store, "run").expect("run");
    // A trap (an import refusing a pointer, a budget) ends the call, as it
    // would a handler's: fine, as long as nothing panics.
    let finished = run_here(run.call_async(&mut store, (SCRIPT_AT as u32, ops.len() as u32))).is_ok();
    let ctx = store.into_data();
    let budgets = Config::default().guest.budgets;
    assert!(ctx.publishes.len() <= budgets.publish_events);
    assert!(ctx.published_bytes <= budgets.publish_bytes);
    assert!(ctx.logs.len() <= budgets.log_lines);
    for line in &ctx.logs {
        assert!(!line.contains(['\r', '\n']), "a log line stays one line: {line:?}");
    }
    for p in &ctx.publishes {
        assert!(p.frame.ends_with(b"\n\n") && !p.frame.starts_with(b"id:"), "a framed event without an id");
    }
    if kind == Kind::Closing {
        assert!(ctx.subscriptions.is_empty() && ctx.backlog == 0, "only a stream subscribes");
        assert!(ctx.members.is_empty(), "only a stream is a member");
    }
    for (channel, info) in &ctx.members {
        assert!(ctx.subscriptions.contains(channel), "a member is subscribed");
        assert!(info.len() <= Config::default().presence.info_bytes && !info.contains(['\r', '\n', '\0']));
    }
    if finished && let Some(kv) = ctx.kv {
        // The transaction commits, or is refused as a conflict (none here:
        // one call at a time), never half.
        let _ = run_here(kv.commit(Vec::new()));
    }
});
