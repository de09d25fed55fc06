//! The compiled-module cache: a module's machine code, keyed by its content
//! and by everything about the engine that shapes compiled code, so that a
//! restart with unchanged guests deserializes (~0.2 ms) instead of compiling
//! (tens of ms), and a changed engine setting or host version never loads a
//! stale artifact (wasmtime also checks its own header on deserialize).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

/// Whether a module came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Compiled,
    Cached,
}

/// Feeds `Hash` values (the engine's compatibility hash) into SHA-256.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        unreachable!("only the digest is used")
    }
}

/// The cache file for `bytes` under this engine and host version.
fn entry(dir: &Path, engine: &Engine, bytes: &[u8]) -> PathBuf {
    let mut h = ShaHasher(Sha256::new());
    h.write(b"house module cache v1\0");
    h.write(env!("CARGO_PKG_VERSION").as_bytes());
    engine.precompile_compatibility_hash().hash(&mut h);
    h.write(bytes);
    let digest = h.0.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{hex}.cwasm"))
}

/// Compiles `bytes`, or loads the artifact a previous run cached.
pub fn compile(engine: &Engine, bytes: &[u8], dir: Option<&Path>) -> wasmtime::Result<(Module, Source)> {
    let Some(dir) = dir else { return Ok((Module::new(engine, bytes)?, Source::Compiled)) };
    let path = entry(dir, engine, bytes);
    if path.exists() {
        match deserialize(engine, &path) {
            Ok(module) => return Ok((module, Source::Cached)),
            Err(e) => {
                eprintln!("house: ignoring cache entry {}: {e}", path.display());
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let module = Module::new(engine, bytes)?;
    if let Err(e) = store(&module, dir, &path) {
        eprintln!("house: cannot write to the module cache {}: {e}", dir.display());
    }
    Ok((module, Source::Compiled))
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Module> {
    // SAFETY: the file was written by `store` below from a module this
    // engine compiled: its name is the SHA-256 of the module's bytes, the
    // host version and the engine's compatibility hash, and wasmtime checks
    // its header (version and settings) before using it. The cache folder
    // is as trusted as the binary itself.
    unsafe { Module::deserialize_file(engine, path) }
}

/// Writes the artifact beside its final name and renames it into place, so
/// that a concurrent reader never sees half of it.
fn store(module: &Module, dir: &Path, path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, module.serialize()?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
