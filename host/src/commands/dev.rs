//! `house dev CRATE_DIR...`: serve, and rebuild each guest crate when its
//! sources change (like `spin watch`): the new `.wasm` is dropped into the
//! guests folder atomically (a dot-file renamed into place), where the
//! server's own hot reload picks it up; a failed build prints the
//! compiler's messages here and the last good version keeps serving.
//!
//! Changes are found by polling the crate's files (not `target/`, not
//! dot-folders) four times a second: a crate is a few files, a pass costs
//! microseconds, and it sees every way an editor saves (in place, by
//! rename, in a new folder) without a recursive watch to keep in step.

use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const POLL: Duration = Duration::from_millis(250);
/// Files looked at per crate at most (a crate is not a file system).
const MAX_FILES: usize = 10_000;

struct Watched {
    dir: PathBuf,
    /// The sources as last built (None: not built yet).
    stamp: Option<u64>,
}

/// Watches the crates on a thread of its own, building each once at once:
/// the server starts meanwhile, and serves each module when its build
/// lands (an earlier build's `.wasm` in the folder serves until then).
pub fn start(crates: &[PathBuf], guests: &Path) -> anyhow::Result<()> {
    for dir in crates {
        if !dir.join("Cargo.toml").is_file() {
            bail!("house dev: {} has no Cargo.toml (a guest crate, as `house new` makes)", dir.display());
        }
    }
    std::fs::create_dir_all(guests).with_context(|| format!("cannot create {}", guests.display()))?;
    let mut watched: Vec<Watched> = crates.iter().map(|dir| Watched { dir: dir.clone(), stamp: None }).collect();
    let guests = guests.to_owned();
    std::thread::Builder::new().name("house-dev".into()).spawn(move || {
        loop {
            for crate_ in &mut watched {
                let now = Some(stamp(&crate_.dir));
                if now != crate_.stamp {
                    crate_.stamp = now;
                    build(&crate_.dir, &guests);
                    // What changed during the build is built next round.
                }
            }
            std::thread::sleep(POLL);
        }
    })?;
    Ok(())
}

/// A hash of every source file's path, length and modification time.
fn stamp(dir: &Path) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut pending = vec![dir.to_owned()];
    let mut seen = 0;
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            // Editors' swap files, `.git`, the build's output: not sources
            // (`.cargo/config.toml` is: it sets the build's flags).
            let hidden = name.to_string_lossy().starts_with('.') && !(d == dir && name == ".cargo");
            if hidden || name == "target" {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                pending.push(e.path());
                continue;
            }
            seen += 1;
            if seen > MAX_FILES {
                return hasher.finish();
            }
            e.path().hash(&mut hasher);
            meta.len().hash(&mut hasher);
            meta.modified().ok().hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// `cargo build --release --target wasm32-unknown-unknown` in `dir`; its
/// modules into `guests`, or its errors onto stderr.
fn build(dir: &Path, guests: &Path) {
    let started = Instant::now();
    let say = |line: String| drop(std::io::stderr().write_all(format!("{line}\n").as_bytes()));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-unknown-unknown", "--message-format", "json"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => return say(format!("house dev: {}: cannot run cargo: {e}", dir.display())),
    };
    let mut messages = Vec::new();
    let mut modules = Vec::new();
    for line in out.stdout.split(|&b| b == b'\n') {
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
        match msg["reason"].as_str() {
            Some("compiler-message") => {
                if let Some(text) = msg["message"]["rendered"].as_str() {
                    messages.push(text.trim_end().to_owned());
                }
            }
            Some("compiler-artifact") => {
                let files = msg["filenames"].as_array().into_iter().flatten().filter_map(|f| f.as_str());
                modules.extend(files.filter(|f| f.ends_with(".wasm")).map(PathBuf::from));
            }
            _ => {}
        }
    }
    if !out.status.success() {
        say(format!("house dev: {}: the build failed; the last good version keeps serving", dir.display()));
        if messages.is_empty() {
            messages.push(String::from_utf8_lossy(&out.stderr).trim_end().to_owned());
        }
        return say(messages.join("\n"));
    }
    for text in &messages {
        say(text.clone()); // warnings
    }
    if modules.is_empty() {
        return say(format!("house dev: {}: built, but no .wasm (is it a cdylib?)", dir.display()));
    }
    for module in modules {
        let Some(name) = module.file_name() else { continue };
        let tmp = guests.join(format!(".{}.tmp", name.to_string_lossy()));
        let done = std::fs::copy(&module, &tmp).and_then(|_| std::fs::rename(&tmp, guests.join(name)));
        match done {
            Ok(()) => {
                say(format!("house dev: built {} in {:.1} s", name.to_string_lossy(), started.elapsed().as_secs_f64()))
            }
            Err(e) => say(format!("house dev: cannot drop {} into {}: {e}", name.to_string_lossy(), guests.display())),
        }
    }
}
