//! Key-value data for guests, embedded: one redb file under `--data-dir`,
//! nothing to run.
//!
//! Each module file has its own namespace (its keys are stored after its
//! file name and a NUL). A call reads the store directly and sees its own
//! writes; its writes (set, delete, increment) are kept in the call
//! ([`Pending`]) and committed in one transaction when the call succeeds,
//! so a call that traps, overruns or answers 5xx leaves nothing behind.
//! Increments are committed as deltas, read-modify-write inside the commit:
//! concurrent increments, on any loop, lose no update (the value a call
//! sees counts the commits before its read and its own increments).
//!
//! Durability, like Redis's `appendfsync everysec`: a call's commit does
//! not wait for the disk (`Durability::None`, microseconds on the loop);
//! the `house-kv` thread makes what was committed durable within a second,
//! and shutdown does so at once. A crash may lose the last second of
//! writes; the file stays consistent.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::config::KvLimits;

/// Namespaced key -> expiry (ms since the epoch, 0: none, 8 bytes LE) + value.
const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
/// Module file -> bytes its keys and values take.
const USAGE: TableDefinition<&str, u64> = TableDefinition::new("usage");
/// Expiry (ms, 8 bytes big-endian, so that keys sort by time) + namespaced
/// key -> nothing: what the sweeper deletes once it is due, oldest first.
const EXPIRIES: TableDefinition<&[u8], ()> = TableDefinition::new("expiries");
/// Expired keys one sweep deletes at most (the rest wait a second).
const SWEEP_BATCH: usize = 1000;

/// How often committed writes are made durable.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

pub struct Store {
    db: Database,
    limits: KvLimits,
    /// Commits since the last durable one.
    dirty: AtomicBool,
}

/// Why an operation was refused (the import's negative codes, docs/ABI.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvError {
    /// A key or value over its bound.
    TooLarge,
    /// Over the operations of one call, or the module's bytes.
    Budget,
    /// An increment of a value that is not a decimal integer.
    NotInteger,
    /// The store failed (disk full, I/O error): see the log.
    Unavailable,
}

/// A key (without its namespace) and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// One write of a call, committed in order if the call succeeds.
#[derive(Debug, Clone)]
pub enum Write {
    Set { key: Vec<u8>, value: Vec<u8>, expires: u64 },
    Delete { key: Vec<u8> },
    Incr { key: Vec<u8>, delta: i64 },
}

/// What one call has done to the store so far.
pub struct Pending {
    store: Arc<Store>,
    namespace: String,
    writes: Vec<Write>,
    /// What the call's own writes made of a key (None: deleted).
    seen: HashMap<Vec<u8>, Option<Vec<u8>>>,
    ops: usize,
    /// Bytes the writes may add to the module's usage, at most.
    growth: u64,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Store {
    /// Opens (or creates) `dir/kv.redb`; starts the thread that makes
    /// commits durable and deletes expired keys.
    pub fn open(dir: &Path, limits: KvLimits) -> anyhow::Result<Arc<Store>> {
        let store = Store::open_quiet(dir, limits)?;
        let weak = Arc::downgrade(&store);
        std::thread::Builder::new().name("house-kv".into()).spawn(move || {
            while let Some(store) = weak.upgrade() {
                if let Err(e) = store.sweep() {
                    eprintln!("house: kv: cannot delete expired keys: {e:#}");
                }
                if let Err(e) = store.flush() {
                    eprintln!("house: kv: cannot make writes durable: {e:#}");
                }
                drop(store);
                std::thread::sleep(FLUSH_EVERY);
            }
        })?;
        Ok(store)
    }

    /// [`Store::open`] without the thread (the unit tests sweep and flush
    /// themselves, and must not race it).
    fn open_quiet(dir: &Path, limits: KvLimits) -> anyhow::Result<Arc<Store>> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create --data-dir {}", dir.display()))?;
        let path = dir.join("kv.redb");
        let db = Database::create(&path)
            .with_context(|| format!("cannot open {} (is another house using this --data-dir?)", path.display()))?;
        let txn = db.begin_write()?;
        txn.open_table(DATA)?;
        txn.open_table(USAGE)?;
        txn.open_table(EXPIRIES)?;
        txn.commit()?;
        Ok(Arc::new(Store { db, limits, dirty: AtomicBool::new(false) }))
    }

    pub fn limits(&self) -> &KvLimits {
        &self.limits
    }

    /// Makes every commit so far durable (an empty commit that syncs).
    pub fn flush(&self) -> anyhow::Result<()> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.commit()?;
        Ok(())
    }

    /// Deletes keys whose time-to-live has passed (reads ignore them at
    /// once; this gives their bytes back to the module's budget).
    pub fn sweep(&self) -> anyhow::Result<usize> {
        let now = now_ms();
        let due: Vec<Vec<u8>> = {
            let txn = self.db.begin_read()?;
            let index = txn.open_table(EXPIRIES)?;
            let end = (now + 1).to_be_bytes();
            let mut due = Vec::new();
            for entry in index.range(..&end[..])? {
                due.push(entry?.0.value().to_vec());
                if due.len() >= SWEEP_BATCH {
                    break;
                }
            }
            due
        };
        if due.is_empty() {
            return Ok(0);
        }
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        let mut swept = 0;
        {
            let mut data = txn.open_table(DATA)?;
            let mut usage = txn.open_table(USAGE)?;
            let mut index = txn.open_table(EXPIRIES)?;
            for entry in &due {
                index.remove(entry.as_slice())?;
                let (when, key) = entry.split_at(8);
                let when = u64::from_be_bytes(when.try_into().unwrap_or_default());
                // Only if it still has that expiry (not set again since).
                let Some(len) = data.get(key)?.filter(|r| expiry(r.value()) == when).map(|r| r.value().len()) else {
                    continue;
                };
                data.remove(key)?;
                swept += 1;
                let namespace = key.split(|&b| b == 0).next().and_then(|n| std::str::from_utf8(n).ok()).unwrap_or("");
                let used = usage.get(namespace)?.map_or(0, |v| v.value());
                usage.insert(namespace, used.saturating_sub((key.len() + len) as u64))?;
            }
        }
        txn.commit()?;
        self.dirty.store(true, Ordering::Release);
        Ok(swept)
    }

    fn read(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DATA)?;
        let Some(record) = table.get(key)? else { return Ok(None) };
        Ok(live(record.value(), now_ms()).map(<[u8]>::to_vec))
    }

    fn usage(&self, namespace: &str) -> anyhow::Result<u64> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(USAGE)?;
        Ok(table.get(namespace)?.map_or(0, |v| v.value()))
    }

    /// Commits `writes` of module `namespace` in one transaction.
    pub fn commit(&self, namespace: &str, writes: &[Write]) -> anyhow::Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        {
            let mut data = txn.open_table(DATA)?;
            let mut usage = txn.open_table(USAGE)?;
            let mut index = txn.open_table(EXPIRIES)?;
            let mut used = usage.get(namespace)?.map_or(0, |v| v.value()) as i64;
            for write in writes {
                let key = namespaced(namespace, write.key());
                let old = data.get(key.as_slice())?.map(|r| r.value().to_vec());
                let old_expiry = old.as_deref().map_or(0, expiry);
                let old_len = old.as_ref().map_or(0, |r| (key.len() + r.len()) as i64);
                let new = match write {
                    Write::Set { value, expires, .. } => Some(record(*expires, value)),
                    Write::Delete { .. } => None,
                    Write::Incr { delta, .. } => {
                        // Read-modify-write here, under the write lock: no
                        // increment is lost. A value that is no longer an
                        // integer is counted from 0.
                        let current = old.as_deref().and_then(|r| live(r, now));
                        let n = current.and_then(integer).unwrap_or(0).saturating_add(*delta);
                        let expires = old.as_deref().filter(|r| live(r, now).is_some()).map_or(0, expiry);
                        Some(record(expires, n.to_string().as_bytes()))
                    }
                };
                match &new {
                    Some(r) => {
                        data.insert(key.as_slice(), r.as_slice())?;
                    }
                    None => {
                        data.remove(key.as_slice())?;
                    }
                }
                // The sweeper's index follows the record's expiry.
                let new_expiry = new.as_deref().map_or(0, expiry);
                if old_expiry != new_expiry {
                    if old_expiry != 0 {
                        index.remove(expiry_key(old_expiry, &key).as_slice())?;
                    }
                    if new_expiry != 0 {
                        index.insert(expiry_key(new_expiry, &key).as_slice(), ())?;
                    }
                }
                used += new.as_ref().map_or(0, |r| (key.len() + r.len()) as i64) - old_len;
            }
            usage.insert(namespace, used.max(0) as u64)?;
        }
        txn.commit()?;
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }
}

impl Write {
    fn key(&self) -> &[u8] {
        match self {
            Write::Set { key, .. } | Write::Delete { key } | Write::Incr { key, .. } => key,
        }
    }
}

fn namespaced(namespace: &str, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(namespace.len() + 1 + key.len());
    k.extend_from_slice(namespace.as_bytes());
    k.push(0);
    k.extend_from_slice(key);
    k
}

fn expiry_key(expires: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&expires.to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn record(expires: u64, value: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(8 + value.len());
    r.extend_from_slice(&expires.to_le_bytes());
    r.extend_from_slice(value);
    r
}

fn expiry(record: &[u8]) -> u64 {
    record.get(..8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
}

/// The value of a record, unless it has expired.
fn live(record: &[u8], now: u64) -> Option<&[u8]> {
    let expires = expiry(record);
    (expires == 0 || expires > now).then(|| record.get(8..).unwrap_or_default())
}

fn integer(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

impl Pending {
    pub fn new(store: Arc<Store>, namespace: &str) -> Pending {
        Pending { store, namespace: namespace.to_owned(), writes: Vec::new(), seen: HashMap::new(), ops: 0, growth: 0 }
    }

    fn op(&mut self, key: &[u8]) -> Result<(), KvError> {
        let l = self.store.limits;
        if key.is_empty() || key.len() > l.key_bytes {
            return Err(KvError::TooLarge);
        }
        if self.ops >= l.ops {
            return Err(KvError::Budget);
        }
        self.ops += 1;
        Ok(())
    }

    fn unavailable(&self, e: anyhow::Error) -> KvError {
        eprintln!("house: kv: {e:#}");
        KvError::Unavailable
    }

    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.op(key)?;
        if let Some(value) = self.seen.get(key) {
            return Ok(value.clone());
        }
        self.store.read(&namespaced(&self.namespace, key)).map_err(|e| self.unavailable(e))
    }

    pub fn set(&mut self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        if value.len() > self.store.limits.value_bytes {
            return Err(KvError::TooLarge);
        }
        self.op(key)?;
        self.grow(key.len() + value.len())?;
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

    pub fn incr(&mut self, key: &[u8], delta: i64) -> Result<i64, KvError> {
        let current = self.get(key)?;
        let n = match &current {
            None => 0,
            Some(v) => integer(v).ok_or(KvError::NotInteger)?,
        };
        let n = n.saturating_add(delta);
        self.grow(key.len() + 20)?;
        self.seen.insert(key.to_vec(), Some(n.to_string().into_bytes()));
        self.writes.push(Write::Incr { key: key.to_vec(), delta });
        Ok(n)
    }

    /// Keys starting with `prefix` and their values, in order, at most
    /// `limit` (and at most `--kv-list-keys`), as the store has them (the
    /// call's own writes are not merged in). One operation.
    pub fn list(&mut self, prefix: &[u8], limit: usize) -> Result<Vec<Entry>, KvError> {
        if prefix.len() > self.store.limits.key_bytes {
            return Err(KvError::TooLarge);
        }
        if self.ops >= self.store.limits.ops {
            return Err(KvError::Budget);
        }
        self.ops += 1;
        let limit = limit.min(self.store.limits.list_keys);
        let start = namespaced(&self.namespace, prefix);
        let skip = self.namespace.len() + 1;
        let now = now_ms();
        let scan = || -> anyhow::Result<Vec<Entry>> {
            let txn = self.store.db.begin_read()?;
            let table = txn.open_table(DATA)?;
            let mut keys = Vec::new();
            for entry in table.range(start.as_slice()..)? {
                let (k, v) = entry?;
                let k = k.value();
                if !k.starts_with(&start) || keys.len() >= limit {
                    break;
                }
                if let Some(value) = live(v.value(), now) {
                    keys.push((k[skip..].to_vec(), value.to_vec()));
                }
            }
            Ok(keys)
        };
        scan().map_err(|e| self.unavailable(e))
    }

    /// Counts bytes a write may add against the module's budget.
    fn grow(&mut self, bytes: usize) -> Result<(), KvError> {
        let used = self.store.usage(&self.namespace).map_err(|e| self.unavailable(e))?;
        let growth = self.growth + bytes as u64 + 8;
        if used + growth > self.store.limits.module_bytes {
            return Err(KvError::Budget);
        }
        self.growth = growth;
        Ok(())
    }

    /// The call succeeded: commit what it wrote.
    pub fn commit(self) -> anyhow::Result<()> {
        self.store.commit(&self.namespace, &self.writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (Arc<Store>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("house-kv-{}-{}", std::process::id(), rand_suffix()));
        let limits = KvLimits { key_bytes: 16, value_bytes: 32, ops: 8, module_bytes: 200, list_keys: 3 };
        (Store::open_quiet(&dir, limits).unwrap(), dir)
    }

    fn rand_suffix() -> u64 {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new().build_hasher().finish()
    }

    #[test]
    fn writes_show_in_the_call_and_after_its_commit_only() {
        let (s, _dir) = store();
        let mut call = Pending::new(s.clone(), "a.wasm");
        call.set(b"k", b"v", None).unwrap();
        assert_eq!(call.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(Pending::new(s.clone(), "a.wasm").get(b"k").unwrap(), None, "not before the commit");
        call.commit().unwrap();
        assert_eq!(Pending::new(s.clone(), "a.wasm").get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(Pending::new(s.clone(), "b.wasm").get(b"k").unwrap(), None, "namespaces are apart");
        let mut dropped = Pending::new(s.clone(), "a.wasm");
        dropped.delete(b"k").unwrap();
        drop(dropped); // a failed call: nothing committed
        assert!(Pending::new(s, "a.wasm").get(b"k").unwrap().is_some());
    }

    #[test]
    fn increments_commit_as_deltas() {
        let (s, _dir) = store();
        let (mut a, mut b) = (Pending::new(s.clone(), "m"), Pending::new(s.clone(), "m"));
        assert_eq!(a.incr(b"n", 1).unwrap(), 1);
        assert_eq!(b.incr(b"n", 1).unwrap(), 1, "both read 0");
        a.commit().unwrap();
        b.commit().unwrap();
        assert_eq!(Pending::new(s.clone(), "m").get(b"n").unwrap().as_deref(), Some(&b"2"[..]), "no update lost");
        let mut c = Pending::new(s, "m");
        c.set(b"t", b"text", None).unwrap();
        assert_eq!(c.incr(b"t", 1), Err(KvError::NotInteger));
    }

    #[test]
    fn bounds_are_error_codes() {
        let (s, _dir) = store();
        let mut call = Pending::new(s.clone(), "m");
        assert_eq!(call.set(b"", b"v", None), Err(KvError::TooLarge));
        assert_eq!(call.set(&[b'k'; 17], b"v", None), Err(KvError::TooLarge));
        assert_eq!(call.set(b"k", &[b'v'; 33], None), Err(KvError::TooLarge));
        for i in 0..5 {
            call.set(format!("k{i}").as_bytes(), b"v", None).unwrap();
        }
        call.get(b"k0").unwrap();
        call.get(b"k1").unwrap();
        call.get(b"k2").unwrap();
        assert_eq!(call.get(b"k0"), Err(KvError::Budget), "8 operations per call");
        call.commit().unwrap();
        let mut big = Pending::new(s.clone(), "m");
        for i in 0..5 {
            let _ = big.set(format!("b{i}").as_bytes(), &[b'x'; 32], None);
        }
        assert_eq!(big.set(b"b9", &[b'x'; 32], None), Err(KvError::Budget), "200 bytes per module");
        let mut list = Pending::new(s, "m");
        let keys: Vec<Vec<u8>> = list.list(b"k", 10).unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [b"k0".to_vec(), b"k1".to_vec(), b"k2".to_vec()], "at most 3");
    }

    #[test]
    fn expired_values_are_gone() {
        let (s, _dir) = store();
        let mut call = Pending::new(s.clone(), "m");
        call.set(b"t", b"v", Some(Duration::from_millis(1))).unwrap();
        call.set(b"u", b"v", Some(Duration::from_secs(60))).unwrap();
        call.commit().unwrap();
        std::thread::sleep(Duration::from_millis(5)); // the expiry itself is the point
        let mut later = Pending::new(s.clone(), "m");
        assert_eq!(later.get(b"t").unwrap(), None);
        assert!(later.get(b"u").unwrap().is_some());
        assert_eq!(later.list(b"", 10).unwrap(), [(b"u".to_vec(), b"v".to_vec())]);
        let before = s.usage("m").unwrap();
        assert_eq!(s.sweep().unwrap(), 1, "the expired key is deleted");
        assert!(s.usage("m").unwrap() < before, "and its bytes given back");
        assert_eq!(s.sweep().unwrap(), 0);
        // A key set again without a time-to-live is not swept.
        let mut again = Pending::new(s.clone(), "m");
        again.set(b"w", b"v", Some(Duration::from_millis(1))).unwrap();
        again.commit().unwrap();
        let mut keep = Pending::new(s.clone(), "m");
        keep.set(b"w", b"kept", None).unwrap();
        keep.commit().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.sweep().unwrap(), 0);
        assert_eq!(Pending::new(s, "m").get(b"w").unwrap().as_deref(), Some(&b"kept"[..]));
    }
}
