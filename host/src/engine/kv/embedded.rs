//! Guests' key-value data, embedded: one redb file under `--data-dir`,
//! nothing to run (the default engine's store).
//!
//! A module's keys are stored after its file name and a NUL. A call's
//! writes are committed in one transaction ([`Store::commit`]);
//! increments are read-modify-write inside it, under redb's single writer,
//! so concurrent increments on any loop lose no update.
//!
//! Durability, like Redis's `appendfsync everysec`: a commit does not wait
//! for the disk (`Durability::None`, microseconds on the loop); the
//! `house-kv` thread makes what was committed durable within a second, and
//! shutdown does so at once. A crash may lose the last second of writes;
//! the file stays consistent.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Entry, Write, integer, now_ms};
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
    pub(super) fn open_quiet(dir: &Path, limits: KvLimits) -> anyhow::Result<Arc<Store>> {
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

    /// The live value of `key` in module `namespace`.
    pub fn read(&self, namespace: &str, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DATA)?;
        let Some(record) = table.get(namespaced(namespace, key).as_slice())? else { return Ok(None) };
        Ok(live(record.value(), now_ms()).map(<[u8]>::to_vec))
    }

    /// Bytes module `namespace` keeps.
    pub fn usage(&self, namespace: &str) -> anyhow::Result<u64> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(USAGE)?;
        Ok(table.get(namespace)?.map_or(0, |v| v.value()))
    }

    /// The live keys of module `namespace` starting with `prefix`, in
    /// order, at most `limit`, with their values if `values`.
    pub fn scan(&self, namespace: &str, prefix: &[u8], limit: usize, values: bool) -> anyhow::Result<Vec<Entry>> {
        let start = namespaced(namespace, prefix);
        let skip = namespace.len() + 1;
        let now = now_ms();
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DATA)?;
        let mut keys = Vec::new();
        for entry in table.range(start.as_slice()..)? {
            let (k, v) = entry?;
            let k = k.value();
            if !k.starts_with(&start) || keys.len() >= limit {
                break;
            }
            if let Some(value) = live(v.value(), now) {
                keys.push((k[skip..].to_vec(), if values { value.to_vec() } else { Vec::new() }));
            }
        }
        Ok(keys)
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
