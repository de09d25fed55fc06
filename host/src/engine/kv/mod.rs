//! Guests' key-value data: what one call reads and writes, whichever store
//! keeps it (`embedded`: a redb file under `--data-dir`, the default;
//! `redis`: the Redis server of `--engine redis://`, shared by every host
//! on it).
//!
//! Each module file has its own namespace. A call is one transaction,
//! optimistic and serializable:
//! - what it reads is recorded with the version it had ([`Read`]): a key's
//!   version changes with every commit that writes it (0: absent), and a
//!   listing records every key and version it returned, so that a key
//!   another commit inserts into its range, or removes from it, shows;
//! - its reads are consistent: on the embedded store they all come from one
//!   snapshot (a redb read transaction); on Redis each read checks, in the
//!   same script, that what the call read before still holds, and a call
//!   whose view broke is stopped and run again ([`KvError::Conflict`]);
//! - what it writes (set, delete, increment) stays in the call
//!   ([`Pending`]) and is committed at its end, only if it succeeds, and
//!   only if nothing it read has changed since (checked inside the commit,
//!   atomically with applying it, together with the module's quota). If
//!   something has, the commit is refused ([`CommitError::Conflict`]) and
//!   the runtime runs the call again from the start (`--tx-retries`);
//! - a call that only reads commits nothing.
//!
//! So the value an increment returns is the committed one, and two calls
//! that read the same counter never both commit.
//!
//! The operations are async: on Redis a read is a round trip, during which
//! the call is parked and its loop serves other connections (`calls`); on
//! the embedded store reads come from the snapshot at once, and the commit
//! is handed to the store's committer thread (it waits for the disk).

pub mod embedded;
mod record;
pub mod redis;
mod redis_thread;
mod scripts;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::KvLimits;

/// Why an operation was refused (the import's negative codes, docs/ABI.md),
/// or why the call cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvError {
    /// A key or value over its bound.
    TooLarge,
    /// Over the operations of one call, or the module's bytes.
    Budget,
    /// An increment of a value that is not a decimal integer.
    NotInteger,
    /// The store failed or cannot be reached: see the log.
    Unavailable,
    /// What the call read before has changed (Redis): its view is no longer
    /// one state of the store. Not a code for the guest: the call is
    /// stopped and run again.
    Conflict,
}

/// Why a commit did not happen.
#[derive(Debug)]
pub enum CommitError {
    /// Something the call read has changed since (these keys), or the
    /// module's quota would be exceeded by what others committed meanwhile:
    /// nothing was applied; run the call again.
    Conflict(Vec<Vec<u8>>),
    /// The store could not be reached or refused: nothing was applied.
    Unavailable(anyhow::Error),
    /// The commit was sent, and whether it was applied is not known (the
    /// connection failed before its reply, and Redis did not come back in
    /// time to ask). It will not be applied twice: it carries an id.
    Unknown(anyhow::Error),
}

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommitError::Conflict(keys) => write!(f, "conflict on {}", shown_keys(keys)),
            CommitError::Unavailable(e) => write!(f, "the store is unavailable: {e:#}"),
            CommitError::Unknown(e) => write!(f, "the outcome is unknown: {e:#}"),
        }
    }
}

/// Keys for a log line: as text where they are, escaped where not, at
/// most a few.
pub fn shown_keys(keys: &[Vec<u8>]) -> String {
    let mut out: Vec<String> = keys.iter().take(8).map(|k| format!("{:?}", String::from_utf8_lossy(k))).collect();
    if keys.len() > 8 {
        out.push(format!("and {} more", keys.len() - 8));
    }
    if out.is_empty() { "the module's quota".into() } else { out.join(", ") }
}

/// A key's version: 0 for an absent (or expired) key; otherwise changed by
/// every commit that writes the key.
pub type Version = u64;

/// A key (without its namespace) and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// What a call read, as the commit checks it.
#[derive(Debug, Clone)]
pub enum Read {
    Key {
        key: Vec<u8>,
        version: Version,
    },
    /// A listing: the live keys starting with `prefix`, at most `limit`, were
    /// exactly `seen` (keys and versions, in order).
    Range {
        prefix: Vec<u8>,
        limit: usize,
        seen: Vec<(Vec<u8>, Version)>,
    },
}

/// One write of a call, committed in order if the call succeeds.
#[derive(Debug, Clone)]
pub enum Write {
    /// `expires`: ms since the epoch, 0 for never.
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
        expires: u64,
    },
    Delete {
        key: Vec<u8>,
    },
    /// Applied as a delta to the committed value, which is the one the call
    /// read (or wrote) since the commit checks it: the value the guest was
    /// handed is the one committed. It keeps the key's time-to-live.
    Incr {
        key: Vec<u8>,
        delta: i64,
    },
}

impl Write {
    fn key(&self) -> &[u8] {
        match self {
            Write::Set { key, .. } | Write::Delete { key } | Write::Incr { key, .. } => key,
        }
    }
}

/// Everything one commit carries.
pub struct Commit {
    pub namespace: String,
    pub reads: Vec<Read>,
    pub writes: Vec<Write>,
    /// Events the call published, as (channel, framed body without an id),
    /// where the store keeps channels too (Redis): they get their ids in the
    /// commit and are visible exactly when its writes are.
    pub events: Vec<(String, Arc<[u8]>)>,
}

/// The store guests' data is in.
#[derive(Clone)]
pub enum Kv {
    Embedded(Arc<embedded::Store>),
    Redis(Arc<redis::Store>),
}

impl Kv {
    pub fn limits(&self) -> &KvLimits {
        match self {
            Kv::Embedded(s) => s.limits(),
            Kv::Redis(s) => s.limits(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Kv::Embedded(_) => "embedded",
            Kv::Redis(_) => "redis",
        }
    }

    /// Whether operations can be served now (Redis: connected).
    pub fn up(&self) -> bool {
        match self {
            Kv::Embedded(_) => true,
            Kv::Redis(s) => s.up(),
        }
    }

    /// At shutdown: waits until every commit handed to the store is
    /// written (embedded: on disk; Redis: answered), at most `limit`; says
    /// how many were not.
    pub fn drain(&self, limit: Duration) -> usize {
        match self {
            Kv::Embedded(s) => s.drain(limit),
            Kv::Redis(s) => s.drain(limit),
        }
    }
}

/// Bytes a write may add to a module's usage, at most (each store counts
/// less: the key, the value and a few bytes of its own): what a call is
/// refused for early, with `KV_BUDGET`, before its commit checks exactly.
fn cost(namespace: &str, key: &[u8], value_len: usize) -> u64 {
    (namespace.len() + 1 + key.len() + value_len + 32) as u64
}

/// Expired entries a listing may step over for each operation of the
/// call's budget it is charged: a module with many keys that have expired
/// but are not swept yet cannot make one call scan them all.
pub const SKIPPED_PER_OP: usize = 64;

/// What one call has done to the store so far.
pub struct Pending {
    kv: Kv,
    namespace: String,
    writes: Vec<Write>,
    reads: Vec<Read>,
    /// What the call sees of a key: what it read, or what its own writes
    /// made of it (None: absent or deleted).
    seen: HashMap<Vec<u8>, Option<Vec<u8>>>,
    ops: usize,
    /// The module's bytes when the call first wrote, and what its writes
    /// may add, at most.
    used: Option<u64>,
    growth: u64,
    /// The embedded store's snapshot every read of the call comes from,
    /// taken at the first.
    snapshot: Option<embedded::Snapshot>,
    /// Why the store failed the call's operations (for its log).
    errors: Vec<String>,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A stored value as an integer, as increments read it.
pub(crate) fn integer(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// Errors of the store one call keeps for its log, at most.
const ERRORS_KEPT: usize = 4;

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KvError::TooLarge => "too large",
            KvError::Budget => "over budget",
            KvError::NotInteger => "not an integer",
            KvError::Unavailable => "the store is unavailable",
            KvError::Conflict => "what the call read has changed",
        })
    }
}

impl std::error::Error for KvError {}

impl Pending {
    pub fn new(kv: Kv, namespace: &str) -> Pending {
        Pending {
            kv,
            namespace: namespace.to_owned(),
            writes: Vec::new(),
            reads: Vec::new(),
            seen: HashMap::new(),
            ops: 0,
            used: None,
            growth: 0,
            snapshot: None,
            errors: Vec::new(),
        }
    }

    /// A store error as the guest sees it; why, kept for the call's log
    /// (not when Redis is unreachable: its thread says so once per outage).
    fn failed(&mut self, e: anyhow::Error) -> KvError {
        if e.downcast_ref::<KvError>() == Some(&KvError::Conflict) {
            return KvError::Conflict;
        }
        if e.downcast_ref::<redis::Unreachable>().is_none() && self.errors.len() < ERRORS_KEPT {
            self.errors.push(format!("key-value store: {e:#}"));
        }
        KvError::Unavailable
    }

    /// Why the store failed this call's operations, if it did.
    pub fn take_errors(&mut self) -> Vec<String> {
        std::mem::take(&mut self.errors)
    }

    fn op(&mut self, key: &[u8]) -> Result<(), KvError> {
        let l = self.kv.limits();
        if key.is_empty() || key.len() > l.key_bytes {
            return Err(KvError::TooLarge);
        }
        if self.ops >= l.ops {
            return Err(KvError::Budget);
        }
        self.ops += 1;
        Ok(())
    }

    fn snapshot(&mut self, store: &embedded::Store) -> Result<&embedded::Snapshot, KvError> {
        if self.snapshot.is_none() {
            let snapshot = store.snapshot().map_err(|e| self.failed(e))?;
            self.snapshot = Some(snapshot);
        }
        self.snapshot.as_ref().ok_or(KvError::Unavailable)
    }

    pub async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.op(key)?;
        if let Some(value) = self.seen.get(key) {
            return Ok(value.clone());
        }
        let read = match self.kv.clone() {
            Kv::Embedded(s) => {
                let ns = self.namespace.clone();
                s.read(self.snapshot(&s)?, &ns, key)
            }
            Kv::Redis(s) => s.read(&self.namespace, key, &self.reads).await,
        };
        let (value, version) = read.map_err(|e| self.failed(e))?;
        self.reads.push(Read::Key { key: key.to_vec(), version });
        self.seen.insert(key.to_vec(), value.clone());
        Ok(value)
    }

    pub async fn set(&mut self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        if value.len() > self.kv.limits().value_bytes {
            return Err(KvError::TooLarge);
        }
        self.op(key)?;
        self.grow(cost(&self.namespace, key, value.len())).await?;
        let expires = ttl.map_or(0, |t| now_ms().saturating_add(t.as_millis() as u64).max(1));
        self.seen.insert(key.to_vec(), Some(value.to_vec()));
        self.writes.push(Write::Set { key: key.to_vec(), value: value.to_vec(), expires });
        Ok(())
    }

    pub fn delete(&mut self, key: &[u8]) -> Result<(), KvError> {
        self.op(key)?;
        self.seen.insert(key.to_vec(), None);
        self.writes.push(Write::Delete { key: key.to_vec() });
        Ok(())
    }

    /// The key's value plus `delta`: a read of the key (recorded like any
    /// other) and a write, so the value returned is the committed one.
    pub async fn incr(&mut self, key: &[u8], delta: i64) -> Result<i64, KvError> {
        let current = self.get(key).await?;
        let n = match &current {
            None => 0,
            Some(v) => integer(v).ok_or(KvError::NotInteger)?,
        };
        let n = n.saturating_add(delta);
        self.grow(cost(&self.namespace, key, 20)).await?;
        self.seen.insert(key.to_vec(), Some(n.to_string().into_bytes()));
        self.writes.push(Write::Incr { key: key.to_vec(), delta });
        Ok(n)
    }

    /// Keys starting with `prefix` (and their values if `values`), in
    /// order, at most `limit` (and at most `--kv-list-keys`), as the store
    /// has them (the call's own writes are not merged in). One operation,
    /// plus one for every `SKIPPED_PER_OP` expired keys stepped over.
    pub async fn list(&mut self, prefix: &[u8], limit: usize, values: bool) -> Result<Vec<Entry>, KvError> {
        let l = self.kv.limits();
        if prefix.len() > l.key_bytes {
            return Err(KvError::TooLarge);
        }
        if self.ops >= l.ops {
            return Err(KvError::Budget);
        }
        self.ops += 1;
        let limit = limit.min(l.list_keys);
        let may_skip = (l.ops - self.ops) * SKIPPED_PER_OP;
        let listed = match self.kv.clone() {
            Kv::Embedded(s) => {
                let ns = self.namespace.clone();
                s.scan(self.snapshot(&s)?, &ns, prefix, limit, values, may_skip)
            }
            Kv::Redis(s) => s.scan(&self.namespace, prefix, limit, values, may_skip, &self.reads).await,
        };
        let listed = listed.map_err(|e| self.failed(e))?;
        let Some(listed) = listed else { return Err(KvError::Budget) };
        self.ops += listed.skipped.div_ceil(SKIPPED_PER_OP);
        let seen = listed.entries.iter().map(|(k, v, _)| (k.clone(), *v)).collect();
        self.reads.push(Read::Range { prefix: prefix.to_vec(), limit, seen });
        Ok(listed.entries.into_iter().map(|(k, _, v)| (k, v)).collect())
    }

    /// Counts bytes a write may add against the module's budget (the commit
    /// checks again, exactly and atomically).
    async fn grow(&mut self, bytes: u64) -> Result<(), KvError> {
        let used = match self.used {
            Some(used) => used,
            None => {
                let used = match self.kv.clone() {
                    Kv::Embedded(s) => {
                        let ns = self.namespace.clone();
                        s.usage(self.snapshot(&s)?, &ns)
                    }
                    Kv::Redis(s) => s.usage(&self.namespace).await,
                };
                let used = used.map_err(|e| self.failed(e))?;
                *self.used.insert(used)
            }
        };
        let growth = self.growth + bytes;
        if used + growth > self.kv.limits().module_bytes {
            return Err(KvError::Budget);
        }
        self.growth = growth;
        Ok(())
    }

    /// Whether the call wrote anything.
    pub fn has_writes(&self) -> bool {
        !self.writes.is_empty()
    }

    /// Whether the store keeps channels too, so that a call's events are
    /// part of its commit (Redis); else the hub publishes them after it.
    pub fn commits_events(&self) -> bool {
        matches!(self.kv, Kv::Redis(_))
    }

    /// The call succeeded: commit what it wrote and (if the store keeps
    /// channels) published, atomically, if nothing it read has changed. A
    /// call that did neither commits nothing.
    pub async fn commit(self, events: Vec<(String, Arc<[u8]>)>) -> Result<(), CommitError> {
        if self.writes.is_empty() && events.is_empty() {
            return Ok(());
        }
        // The snapshot is let go before the commit waits: it would pin
        // the pages the committer is about to replace.
        drop(self.snapshot);
        let commit = Commit { namespace: self.namespace, reads: self.reads, writes: self.writes, events };
        match &self.kv {
            Kv::Embedded(s) => s.commit(commit).await,
            Kv::Redis(s) => s.commit(commit).await,
        }
    }
}

/// What a listing found: `(key, version, value)` (an empty value unless
/// values were asked for), and how many expired keys it stepped over.
pub struct Listed {
    pub entries: Vec<(Vec<u8>, Version, Vec<u8>)>,
    pub skipped: usize,
}

#[cfg(test)]
mod tests;
