//! Compiling a module, bounded: in a child process (`house --compile-worker`)
//! under an address-space limit and a wall-clock timeout, so that a module
//! built to be expensive to compile (50,000 functions, a function with
//! 12,000 locals) is refused with a reason instead of holding the loader for
//! seconds, and so that what the compiler allocated goes back to the system
//! with the child instead of staying in the server's heap.
//!
//! Before compiling, the module's shape is checked with wasmparser for what
//! the server would refuse anyway, with a message that says what the author
//! did (a memory larger than `--guest-memory-mb`).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use wasmtime::Engine;

use super::engine::code_config;

/// The hidden flag that turns `house` into a compiler process.
pub const WORKER_FLAG: &str = "--compile-worker";

/// How a module's machine code is made.
#[derive(Debug, Clone)]
pub enum Compiler {
    /// In this process, unbounded (benchmarks and tools that load trusted
    /// modules).
    InProcess,
    /// In a child process running `exe --compile-worker`, bounded.
    Child { exe: PathBuf, time: Duration, memory: usize },
}

impl Compiler {
    /// The bounded compiler, running this very executable.
    pub fn child(time: Duration, memory: usize) -> anyhow::Result<Compiler> {
        Ok(Compiler::Child { exe: std::env::current_exe()?, time, memory })
    }

    /// Compiles `bytes` to a serialized artifact `engine` can deserialize.
    pub fn compile(&self, engine: &Engine, bytes: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Compiler::InProcess => {
                engine.precompile_module(bytes).map_err(|e| format!("not a valid wasm module: {}", first_line(&e)))
            }
            Compiler::Child { exe, time, memory } => in_child(exe, *time, *memory, bytes),
        }
    }
}

/// Refuses what the serving engine could never instantiate, saying why in
/// the author's terms. `memory_limit` is `--guest-memory-mb` in bytes.
/// Returns the module's initial memory in bytes (the largest, were there
/// several; 0 without one).
pub fn check_shape(bytes: &[u8], memory_limit: usize) -> Result<u64, String> {
    let mut largest = 0;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        // Malformed modules are the compiler's to describe.
        let Ok(payload) = payload else { return Ok(largest) };
        if let wasmparser::Payload::MemorySection(memories) = payload {
            for memory in memories {
                let Ok(memory) = memory else { return Ok(largest) };
                let page = 1u64 << memory.page_size_log2.unwrap_or(16);
                let initial = memory.initial.saturating_mul(page);
                if initial > memory_limit as u64 {
                    return Err(format!(
                        "declares {} MiB of initial memory, over --guest-memory-mb {}",
                        initial.div_ceil(1024 * 1024),
                        memory_limit / (1024 * 1024)
                    ));
                }
                largest = largest.max(initial);
            }
        }
    }
    Ok(largest)
}

fn in_child(exe: &PathBuf, time: Duration, memory: usize, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new(exe)
        .arg(WORKER_FLAG)
        .arg(memory.to_string())
        .arg(time.as_secs().max(1).to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the compiler process: {e}"))?;
    // Feed and drain on threads of their own, so that neither pipe can
    // fill and stall the other, and the timeout below is the only wait.
    let mut stdin = child.stdin.take().expect("piped");
    let input = bytes.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut err = String::new();
        let read = stdout.read_to_end(&mut out);
        let _ = stderr.read_to_string(&mut err);
        let _ = tx.send((read.map(|_| out), err));
    });
    let outcome = rx.recv_timeout(time);
    if outcome.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| format!("compiler process: {e}"))?;
    let _ = feeder.join();
    let Ok((out, err)) = outcome else {
        return Err(format!("compiling took longer than --compile-timeout-ms {}", time.as_millis()));
    };
    if status.success() {
        return out.map_err(|e| format!("compiler process: {e}"));
    }
    let err = err.trim();
    if err.contains("memory allocation") || err.contains("out of memory") || err.contains("Cannot allocate") {
        return Err(format!("compiling needed more than --compile-memory-mb {}", memory / (1024 * 1024)));
    }
    // What the worker printed (wasmtime's reason), or how it died.
    if let Some(reason) = err.lines().find_map(|l| l.strip_prefix("house: ")) {
        return Err(reason.to_owned());
    }
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        // SIGXCPU: the CPU-time backstop; SIGKILL: usually the kernel's OOM.
        Some(24) => Err(format!("compiling took longer than --compile-timeout-ms {}", time.as_millis())),
        Some(sig) => Err(format!(
            "the compiler process died (signal {sig}): over --compile-memory-mb {}?",
            memory / (1024 * 1024)
        )),
        None => Err(format!("the compiler process failed: {}", err.lines().last().unwrap_or("no reason given"))),
    }
}

/// `house --compile-worker MEMORY SECONDS`: reads a module on stdin, writes
/// its artifact on stdout. Its own limits are set first, so nothing it
/// allocates can exceed them.
pub fn worker_main(args: &[String]) -> ExitCode {
    let (Some(memory), Some(seconds)) =
        (args.first().and_then(|a| a.parse::<u64>().ok()), args.get(1).and_then(|a| a.parse::<u64>().ok()))
    else {
        eprintln!("house: usage: house {WORKER_FLAG} MEMORY_BYTES CPU_SECONDS");
        return ExitCode::FAILURE;
    };
    let limited = rlimit::setrlimit(rlimit::Resource::AS, memory, memory)
        .and_then(|()| rlimit::setrlimit(rlimit::Resource::CPU, seconds + 1, seconds + 2));
    if let Err(e) = limited {
        eprintln!("house: cannot limit the compiler process: {e}");
        return ExitCode::FAILURE;
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut bytes) {
        eprintln!("house: reading the module: {e}");
        return ExitCode::FAILURE;
    }
    let artifact = Engine::new(&code_config()).and_then(|engine| engine.precompile_module(&bytes));
    match artifact {
        Ok(artifact) => match std::io::stdout().write_all(&artifact) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("house: writing the artifact: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("house: not a valid wasm module: {}", first_line(&e));
            ExitCode::FAILURE
        }
    }
}

pub fn first_line(e: &wasmtime::Error) -> String {
    format!("{e:#}").lines().next().unwrap_or_default().to_owned()
}
