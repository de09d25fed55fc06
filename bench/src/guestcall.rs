//! The cost of the guest call alone: the chat's `send_message` called in a
//! fresh instance per request (the way house serves it), against the same
//! handler compiled into the host, both in this process with the request
//! already parsed, so that sockets and HTTP are out of the picture. Both
//! sides validate the same three parameters, build the same JSON and frame
//! the same SSE event.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use house_host::config::Config;
use house_host::guests::compile::Compiler;
use house_host::guests::loader::Loading;
use house_host::guests::{Handler, Runtime, registry::Registry, validate};
use house_host::router::{Lookup, Target};
use house_host::sse;

pub struct GuestCall {
    pub guest: Duration,
    pub native: Duration,
}

/// The same call to the chat built with its page in the memory image (as
/// before static files) and as it is, alternated in one process.
pub struct PageInMemory {
    pub static_file: Duration,
    pub in_memory: Duration,
}

/// The handler of `method path` among the modules in `guests`, loaded as
/// the server loads them.
pub(crate) fn handler(runtime: &Arc<Runtime>, guests: &Path, path: &str, method: &str) -> anyhow::Result<Arc<Handler>> {
    let loading = Loading { cache: None, compiler: Compiler::InProcess, limits: Config::default().load };
    let mut registry = Registry::new(guests.to_owned(), loading);
    registry.load_all(runtime);
    let router = registry.routes().router;
    let Lookup::Found(route, _) = router.lookup(path, method) else {
        bail!("no module in {} serves {method} {path}", guests.display())
    };
    let Target::Guest(handler) = &route.target else { bail!("{method} {path} is not a guest's handler") };
    Ok(handler.clone())
}

/// `send_message` of the chat module in `guests`.
fn send_message(runtime: &Arc<Runtime>, guests: &Path) -> anyhow::Result<Arc<Handler>> {
    handler(runtime, guests, "/send-message", "GET")
}

fn inputs() -> anyhow::Result<validate::Inputs<'static>> {
    let mut params = validate::Inputs::default();
    params.params.extend_from_urlencoded(b"room=bench&name=ada&message=hello+there").map_err(anyhow::Error::msg)?;
    Ok(params)
}

/// One validated call in a fresh instance, as house serves a request.
fn call(runtime: &Arc<Runtime>, handler: &Arc<Handler>, params: &validate::Inputs<'_>) -> anyhow::Result<usize> {
    let args = validate::encode_args(&handler.spec.params, params).map_err(|e| anyhow::anyhow!("{}", e.reason))?;
    let out = runtime.call(handler, &args).map_err(|f| anyhow::anyhow!("guest call: {f}"))?;
    Ok(out.publishes.len() + out.body.len())
}

/// The runtime with the limits `house` runs with by default; `warm`: with
/// idle instances kept (the default), or a new instance for every call
/// (`--guest-warm-instances 0`).
pub(crate) fn runtime(warm: bool) -> anyhow::Result<Arc<Runtime>> {
    let mut limits = Config::default().guest;
    if !warm {
        limits.warm = 0;
    }
    Ok(Arc::new(Runtime::new(limits, Config::default().limits.sse_buffer)?))
}

/// Scenario 3c: the same call in an idle instance reset after its last
/// call (the default) and in a new instance each time, alternated.
pub struct Reuse {
    pub reused: Duration,
    pub fresh: Duration,
}

pub fn reuse(guests: &Path, iterations: u32) -> anyhow::Result<Reuse> {
    let (warm, cold) = (runtime(true)?, runtime(false)?);
    let (a, b) = (send_message(&warm, guests)?, send_message(&cold, guests)?);
    let params = inputs()?;
    let (reused, fresh) = alternated(iterations, || call(&warm, &a, &params), || call(&cold, &b, &params))?;
    Ok(Reuse { reused, fresh })
}

/// The time per call of `a` and of `b`, alternated in four rounds each so
/// that a noisy neighbour hits both.
pub(crate) fn alternated(
    iterations: u32,
    mut a: impl FnMut() -> anyhow::Result<usize>,
    mut b: impl FnMut() -> anyhow::Result<usize>,
) -> anyhow::Result<(Duration, Duration)> {
    let (mut ta, mut tb) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..4 {
        ta += time(iterations / 4, &mut a)?;
        tb += time(iterations / 4, &mut b)?;
    }
    Ok((ta / 4, tb / 4))
}

/// Scenario 3b: `in_memory_dir` holds the chat built with
/// `--features page-in-memory`.
pub fn page_in_memory(guests: &Path, in_memory_dir: &Path, iterations: u32) -> anyhow::Result<PageInMemory> {
    let runtime = runtime(true)?;
    let (now, before) = (send_message(&runtime, guests)?, send_message(&runtime, in_memory_dir)?);
    let params = inputs()?;
    let (static_file, in_memory) =
        alternated(iterations, || call(&runtime, &now, &params), || call(&runtime, &before, &params))?;
    Ok(PageInMemory { static_file, in_memory })
}

/// Where the time of one guest call goes, step by step (the server's own
/// code, told by a probe as each step ends), and the same path for a
/// trivial module: what wasmtime alone costs with these settings.
pub struct Breakdown {
    pub phases: Vec<(&'static str, Duration)>,
    pub total: Duration,
    /// `Instant::now()`, which each phase's figure includes once.
    pub clock: Duration,
    /// A trivial module (one page, no parameters, returns a constant
    /// block) through the same runtime and path.
    pub trivial: Duration,
}

pub const PHASES: [&str; 8] = [
    "validation and argument encoding",
    "an idle instance taken, or a store made (limits, context, deadline callback)",
    "instantiation (none for an idle instance)",
    "arguments into the instance's memory",
    "the handler's call (guest code and its imports)",
    "response decoding and checks",
    "reset: memory and globals restored and the instance kept, or the store dropped (wasmtime resets the slot)",
    "call output (effects, logs)",
];

/// A module as small as a house guest can be.
fn trivial_module() -> anyhow::Result<Vec<u8>> {
    let manifest = r#"{"name":"t","kind":"closing"}"#;
    let packed = ((manifest.len() as u64) << 32) | 2048;
    let wat = format!(
        r#"(module
  (memory (export "memory") 1)
  (data (i32.const 1024) "\00\00\00\00\00\00\00\00\00\00\00\00\02\00\00\00ok")
  (data (i32.const 2048) "{}")
  (func (export "house_abi_version") (result i32) i32.const 1)
  (func (export "house_meta.t") (result i64) i64.const {packed})
  (func (export "house_handler.t") (param i32 i32) (result i64) i64.const 0x0000001200000400))"#,
        manifest.replace('"', "\\\"")
    );
    Ok(wat::parse_str(wat)?)
}

/// The breakdown with idle instances kept (`warm`) or a new one per call.
pub fn breakdown(guests: &Path, work: &Path, iterations: u32, warm: bool) -> anyhow::Result<Breakdown> {
    let runtime = runtime(warm)?;
    let handler = send_message(&runtime, guests)?;
    let params = inputs()?;
    let mut sums = [Duration::ZERO; PHASES.len()];
    let mut total = Duration::ZERO;
    for _ in 0..iterations {
        let started = Instant::now();
        let args = validate::encode_args(&handler.spec.params, &params).map_err(|e| anyhow::anyhow!("{}", e.reason))?;
        let mut last = Instant::now();
        sums[0] += last - started;
        let mut step = 1;
        let mut probe = |_| {
            let now = Instant::now();
            sums[step] += now - last;
            last = now;
            step += 1;
        };
        let out = runtime.call_probed(&handler, &args, &mut probe).map_err(|e| anyhow::anyhow!("{}", e.reason))?;
        std::hint::black_box(out);
        let ended = Instant::now();
        sums[PHASES.len() - 1] += ended - last;
        total += ended - started;
    }
    let clock = {
        let started = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(Instant::now());
        }
        started.elapsed() / iterations
    };
    let dir = work.join("trivial");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("trivial.wasm"), trivial_module()?)?;
    let loading = Loading { cache: None, compiler: Compiler::InProcess, limits: Config::default().load };
    let mut registry = Registry::new(dir, loading);
    registry.load_all(&runtime);
    let router = registry.routes().router;
    let Lookup::Found(route, _) = router.lookup("/t", "GET") else { bail!("the trivial module is not loaded") };
    let Target::Guest(trivial) = &route.target else { bail!("/t is not a guest") };
    let trivial = time(iterations, || {
        let out = runtime.call(trivial, &[]).map_err(|f| anyhow::anyhow!("trivial call: {f}"))?;
        Ok(out.body.len())
    })?;
    Ok(Breakdown {
        phases: PHASES.iter().zip(sums).map(|(name, sum)| (*name, sum / iterations)).collect(),
        total: total / iterations,
        clock,
        trivial,
    })
}

pub fn run(guests: &Path, iterations: u32) -> anyhow::Result<GuestCall> {
    let runtime = runtime(true)?;
    let handler = send_message(&runtime, guests)?;
    let params = inputs()?;
    let guest = time(iterations, || call(&runtime, &handler, &params))?;
    let native = time(iterations, || {
        let args = validate::encode_args(&handler.spec.params, &params).map_err(|e| anyhow::anyhow!("{}", e.reason))?;
        Ok(native_send_message(&args))
    })?;
    Ok(GuestCall { guest, native })
}

/// Time per call of `f`: the median of 20 rounds' means, after a warm-up.
/// (A machine shared with others slows some rounds down; the median of
/// rounds is what the code costs, the mean of all is what the neighbours
/// did.)
pub(crate) fn time(iterations: u32, mut f: impl FnMut() -> anyhow::Result<usize>) -> anyhow::Result<Duration> {
    const ROUNDS: u32 = 20;
    let mut sink = 0;
    for _ in 0..iterations / 10 {
        sink += f()?;
    }
    let per_round = (iterations / ROUNDS).max(1);
    let mut rounds = Vec::with_capacity(ROUNDS as usize);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..per_round {
            sink += f()?;
        }
        rounds.push(started.elapsed() / per_round);
    }
    std::hint::black_box(sink);
    rounds.sort();
    Ok(rounds[rounds.len() / 2])
}

/// `send_message` compiled into the host: decode the three strings, build
/// `{"name":..,"message":..}`, frame it for the room.
fn native_send_message(args: &[u8]) -> usize {
    let mut pos = 0;
    let mut text = || {
        let len = u32::from_le_bytes(args[pos..pos + 4].try_into().unwrap()) as usize;
        let s = std::str::from_utf8(&args[pos + 4..pos + 4 + len]).unwrap();
        pos += 4 + len;
        s
    };
    let (room, name, message) = (text(), text(), text());
    let data = format!("{{\"name\":{},\"message\":{}}}", json_string(name), json_string(message));
    let frame = sse::frame(&sse::Event { data, ..Default::default() });
    std::hint::black_box((room.len(), &frame));
    frame.len() + "sent\n".len()
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
