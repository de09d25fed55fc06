//! The compiled-module cache: a module's machine code, keyed by its content
//! and by everything about the engine that shapes compiled code, so that a
//! restart with unchanged guests deserializes (~0.2 ms) instead of compiling
//! (tens of ms), and a changed engine setting or host version never loads a
//! stale artifact (wasmtime also checks its own header on deserialize).
//!
//! An entry is machine code the host will run, so it is checked before use:
//! each file carries the SHA-256 of its artifact, and one that does not
//! match (truncated, corrupted) is ignored, removed and rebuilt. The cache
//! is bounded (`--cache-max-mb`): least recently used entries go first.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

use super::compile::{Compiler, first_line};

/// Whether a module came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Compiled,
    Cached,
}

/// Where compiled modules are kept, and how much of them.
#[derive(Debug, Clone)]
pub struct Cache {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

/// The first bytes of an entry, then the artifact's SHA-256, then the artifact.
const MAGIC: &[u8; 8] = b"HOUSECW2";
const HEADER: usize = MAGIC.len() + 32;

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

impl Cache {
    /// The cache file for `bytes` under this engine and host version.
    fn entry(&self, engine: &Engine, bytes: &[u8]) -> PathBuf {
        let mut h = ShaHasher(Sha256::new());
        h.write(b"house module cache v2\0");
        h.write(env!("CARGO_PKG_VERSION").as_bytes());
        engine.precompile_compatibility_hash().hash(&mut h);
        h.write(bytes);
        let digest = h.0.finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.cwasm"))
    }

    /// The artifact in `path`, if it is there and intact.
    fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let mut file = std::fs::read(path).ok()?;
        let intact = file.len() >= HEADER
            && &file[..MAGIC.len()] == MAGIC
            && Sha256::digest(&file[HEADER..]).as_slice() == &file[MAGIC.len()..HEADER];
        if !intact {
            eprintln!("house: ignoring corrupted cache entry {}; rebuilding it", path.display());
            let _ = std::fs::remove_file(path);
            return None;
        }
        // Recently used: eviction goes by modification time.
        if let Ok(f) = std::fs::File::options().write(true).open(path) {
            let _ = f.set_modified(SystemTime::now());
        }
        file.drain(..HEADER);
        Some(file)
    }

    /// Writes the entry beside its final name and renames it into place, so
    /// that a concurrent reader never sees half of it; then evicts.
    fn store(&self, path: &Path, artifact: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = Vec::with_capacity(HEADER + artifact.len());
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&Sha256::digest(artifact));
        file.extend_from_slice(artifact);
        std::fs::write(&tmp, file)?;
        std::fs::rename(&tmp, path)?;
        self.evict();
        Ok(())
    }

    /// Removes the least recently used entries until the cache fits its budget.
    fn evict(&self) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else { return };
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = dir
            .filter_map(|e| {
                let e = e.ok()?;
                let path = e.path();
                if path.extension()? != "cwasm" {
                    return None;
                }
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), path))
            })
            .collect();
        let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
        entries.sort();
        for (_, len, path) in entries {
            if total <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

/// The module for `bytes`: from the cache if an intact entry is there,
/// otherwise compiled by `compiler` (and cached).
pub fn load(
    engine: &Engine,
    bytes: &[u8],
    cache: Option<&Cache>,
    compiler: &Compiler,
) -> Result<(Module, Source), String> {
    let path = cache.map(|c| c.entry(engine, bytes));
    if let (Some(cache), Some(path)) = (cache, &path)
        && let Some(artifact) = cache.read(path)
    {
        match deserialize(engine, &artifact) {
            Ok(module) => return Ok((module, Source::Cached)),
            Err(e) => {
                eprintln!("house: ignoring cache entry {}: {}", path.display(), first_line(&e));
                let _ = std::fs::remove_file(path);
            }
        }
    }
    let artifact = compiler.compile(engine, bytes)?;
    let module = deserialize(engine, &artifact).map_err(|e| format!("not a valid wasm module: {}", first_line(&e)))?;
    if let (Some(cache), Some(path)) = (cache, &path)
        && let Err(e) = cache.store(path, &artifact)
    {
        eprintln!("house: cannot write to the module cache {}: {e}", cache.dir.display());
    }
    Ok((module, Source::Compiled))
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Module> {
    // SAFETY: the artifact was produced by `Engine::precompile_module` with
    // this engine's code settings, either just now (by this process or its
    // compiler child) or by an earlier run, in which case the cache entry's
    // SHA-256 was checked above; wasmtime checks its header (version and
    // settings) before using it. The cache folder is as trusted as the
    // binary itself (it may not lie inside the guests folder).
    unsafe { Module::deserialize(engine, artifact) }
}
