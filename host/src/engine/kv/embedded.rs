//! Guests' key-value data, embedded: one redb file under `--data-dir`,
//! nothing to run (the default engine's store).
//!
//! A module's keys are stored after its file name and a NUL. Each record
//! carries its key's version: the number of the commit that last wrote it.
//!
//! Reads come from a snapshot (a redb read transaction, one per call), on
//! the loop: redb lets readers go on while a commit writes and syncs (its
//! state lock is released before the file is flushed), so a read never
//! waits for the disk.
//!
//! Commits go to the `house-kv` thread, which takes every commit waiting
//! and applies them in one redb write transaction, each only if what its
//! call read is as the call saw it and its module stays within its quota
//! (checked in order, so a commit sees the ones before it in the group),
//! then syncs once (`Durability::Immediate`): group commit, one fsync
//! shared by every call that is waiting. A call is answered only after its
//! commit is on disk, so an acknowledged write survives a SIGKILL or a
//! power loss right after it. The loops never take redb's write lock.
//!
//! The same thread deletes keys whose time-to-live has passed, once a
//! second, between groups.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_channel::oneshot;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition};

use super::record::{expiry, expiry_key, live, namespaced, record, upgrade, version};
use super::{Commit, CommitError, Listed, Read, Version, Write, integer, now_ms};
use crate::config::KvLimits;
use crate::log::Log;

/// Namespaced key -> its record (`record`).
const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
/// Module file -> bytes its keys and values take.
const USAGE: TableDefinition<&str, u64> = TableDefinition::new("usage");
/// Expiry (ms, 8 bytes big-endian, so that keys sort by time) + namespaced
/// key -> nothing: what the sweeper deletes once it is due, oldest first.
const EXPIRIES: TableDefinition<&[u8], ()> = TableDefinition::new("expiries");
/// `format` (2: records carry versions) and `seq` (the last commit's number).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const FORMAT: u64 = 2;
/// Expired keys one sweep deletes at most (the rest wait a second).
const SWEEP_BATCH: usize = 1000;
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The state a call's reads come from.
pub struct Snapshot(redb::ReadTransaction);

type Reply = oneshot::Sender<Result<(), CommitError>>;

struct Queue {
    commits: Vec<(Commit, Reply)>,
    /// The thread is applying a group now.
    busy: bool,
    /// The thread waits for commits: the next one must wake it (while it
    /// works it takes what queued meanwhile without being told).
    idle: bool,
}

pub struct Store {
    db: Database,
    limits: KvLimits,
    queue: Mutex<Queue>,
    /// Commits were queued (the thread waits on it).
    wake: Condvar,
    /// A group was written (`drain` waits on it).
    done: Condvar,
}

impl Store {
    /// Opens (or creates) `dir/kv.redb`; starts the thread that commits
    /// and deletes expired keys.
    pub fn open(dir: &Path, limits: KvLimits, log: Log) -> anyhow::Result<Arc<Store>> {
        let store = Store::open_quiet(dir, limits)?;
        let thread = store.clone();
        std::thread::Builder::new().name("house-kv".into()).spawn(move || thread.run(log))?;
        Ok(store)
    }

    /// [`Store::open`] without the thread: commits wait until the caller
    /// runs [`Store::commit_waiting`] (the unit tests, which must not race
    /// the sweep).
    pub(super) fn open_quiet(dir: &Path, limits: KvLimits) -> anyhow::Result<Arc<Store>> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create --data-dir {}", dir.display()))?;
        let path = dir.join("kv.redb");
        let db = Database::create(&path)
            .with_context(|| format!("cannot open {} (is another house using this --data-dir?)", path.display()))?;
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut data = txn.open_table(DATA)?;
            txn.open_table(USAGE)?;
            txn.open_table(EXPIRIES)?;
            let mut meta = txn.open_table(META)?;
            if meta.get("format")?.map(|v| v.value()) != Some(FORMAT) {
                upgrade(&mut data)?;
                meta.insert("format", FORMAT)?;
                meta.insert("seq", 1)?;
            }
        }
        txn.commit()?;
        Ok(Arc::new(Store {
            db,
            limits,
            queue: Mutex::new(Queue { commits: Vec::new(), busy: false, idle: false }),
            wake: Condvar::new(),
            done: Condvar::new(),
        }))
    }

    pub fn limits(&self) -> &KvLimits {
        &self.limits
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A consistent view for one call's reads.
    pub fn snapshot(&self) -> anyhow::Result<Snapshot> {
        Ok(Snapshot(self.db.begin_read()?))
    }

    /// The live value of `key` in module `namespace`, and its version.
    pub fn read(&self, snap: &Snapshot, namespace: &str, key: &[u8]) -> anyhow::Result<(Option<Vec<u8>>, Version)> {
        let table = snap.0.open_table(DATA)?;
        let Some(record) = table.get(namespaced(namespace, key).as_slice())? else { return Ok((None, 0)) };
        let record = record.value();
        Ok(match live(record, now_ms()) {
            Some(value) => (Some(value.to_vec()), version(record)),
            None => (None, 0),
        })
    }

    /// Bytes module `namespace` keeps.
    pub fn usage(&self, snap: &Snapshot, namespace: &str) -> anyhow::Result<u64> {
        let table = snap.0.open_table(USAGE)?;
        Ok(table.get(namespace)?.map_or(0, |v| v.value()))
    }

    /// The live keys of module `namespace` starting with `prefix`, in
    /// order, at most `limit`, with their versions and (if `values`) their
    /// values; None if it would step over more than `may_skip` expired keys.
    pub fn scan(
        &self,
        snap: &Snapshot,
        namespace: &str,
        prefix: &[u8],
        limit: usize,
        values: bool,
        may_skip: usize,
    ) -> anyhow::Result<Option<Listed>> {
        let table = snap.0.open_table(DATA)?;
        scan(&table, namespace, prefix, limit, values, may_skip)
    }

    /// Hands `commit` to the committer and waits until it is on disk, or
    /// refused.
    pub async fn commit(&self, commit: Commit) -> Result<(), CommitError> {
        let (reply, answer) = oneshot::channel();
        let idle = {
            let mut queue = self.queue();
            queue.commits.push((commit, reply));
            std::mem::take(&mut queue.idle)
        };
        if idle {
            self.wake.notify_one();
        }
        answer.await.unwrap_or_else(|_| Err(CommitError::Unavailable(anyhow::anyhow!("the store's thread stopped"))))
    }

    /// At shutdown: waits up to `limit` until every commit handed over is
    /// written; the number that are not.
    pub fn drain(&self, limit: Duration) -> usize {
        let until = Instant::now() + limit;
        let mut queue = self.queue();
        while queue.busy || !queue.commits.is_empty() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            queue = self.done.wait_timeout(queue, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        queue.commits.len() + usize::from(queue.busy)
    }

    /// The committer: every commit waiting, as one group, then the sweep
    /// when it is due.
    fn run(&self, mut log: Log) {
        let mut swept = Instant::now();
        loop {
            let batch = {
                let mut queue = self.queue();
                while queue.commits.is_empty() {
                    let left = SWEEP_EVERY.saturating_sub(swept.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    queue.idle = true;
                    queue = self.wake.wait_timeout(queue, left).unwrap_or_else(PoisonError::into_inner).0;
                }
                queue.idle = false;
                queue.busy = true;
                std::mem::take(&mut queue.commits)
            };
            if !batch.is_empty() {
                self.group(batch, &mut log);
            }
            if swept.elapsed() >= SWEEP_EVERY {
                if let Err(e) = self.sweep() {
                    log.line(format_args!("house: kv: cannot delete expired keys: {e:#}"));
                    log.flush_now();
                }
                swept = Instant::now();
            }
            self.queue().busy = false;
            self.done.notify_all();
        }
    }

    /// Applies what is waiting now, as the thread would (unit tests).
    #[cfg(test)]
    pub(super) fn commit_waiting(&self) {
        let batch = std::mem::take(&mut self.queue().commits);
        self.group(batch, &mut Log::discard());
    }

    /// One write transaction for `batch`, synced once; each commit answered
    /// once its fate is known.
    fn group(&self, batch: Vec<(Commit, Reply)>, log: &mut Log) {
        let mut applied = Vec::with_capacity(batch.len());
        // Refused ones are answered after the group is committed too: a
        // call run again at once then reads what beat it, instead of
        // conflicting again with a write it cannot see yet.
        let mut refused = Vec::new();
        let result = (|| -> anyhow::Result<()> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            {
                let mut tables = Tables {
                    data: txn.open_table(DATA)?,
                    usage: txn.open_table(USAGE)?,
                    expiries: txn.open_table(EXPIRIES)?,
                };
                let mut meta = txn.open_table(META)?;
                let mut seq = meta.get("seq")?.map_or(1, |v| v.value());
                let now = now_ms();
                for (commit, reply) in batch {
                    match tables.apply(&commit, seq + 1, self.limits.module_bytes, now)? {
                        Ok(()) => {
                            seq += 1;
                            applied.push(reply);
                        }
                        // Nothing of it was written.
                        Err(keys) => refused.push((reply, keys)),
                    }
                }
                meta.insert("seq", seq)?;
            }
            txn.commit()?;
            Ok(())
        })();
        for (reply, keys) in refused {
            let _ = reply.send(Err(CommitError::Conflict(keys)));
        }
        match result {
            Ok(()) => {
                for reply in applied {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) => {
                // The transaction is aborted; but a failed sync may have
                // left part of it on disk, so those that were in it cannot
                // be told it did not happen.
                log.line(format_args!("house: kv: a commit of {} calls failed: {e:#}", applied.len()));
                log.flush_now();
                for reply in applied {
                    let _ = reply.send(Err(CommitError::Unknown(anyhow::anyhow!("{e:#}"))));
                }
            }
        }
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
        // Not synced: a sweep lost in a crash is done again.
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
        Ok(swept)
    }
}

/// A namespaced key, its record before the commit and after it (None:
/// absent).
type Planned = (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);

/// The tables one group writes.
struct Tables<'t> {
    data: Table<'t, &'static [u8], &'static [u8]>,
    usage: Table<'t, &'static str, u64>,
    expiries: Table<'t, &'static [u8], ()>,
}

impl Tables<'_> {
    /// Applies `commit` as commit number `seq` if what it read still holds
    /// and its module stays within `quota` bytes (or shrinks); else writes
    /// nothing and returns the keys in conflict (none: the quota).
    fn apply(&mut self, commit: &Commit, seq: u64, quota: u64, now: u64) -> anyhow::Result<Result<(), Vec<Vec<u8>>>> {
        let ns = commit.namespace.as_str();
        let mut changed = Vec::new();
        for read in &commit.reads {
            match read {
                Read::Key { key, version: seen } => {
                    let record = self.data.get(namespaced(ns, key).as_slice())?;
                    let now_version = record.map_or(0, |r| live(r.value(), now).map_or(0, |_| version(r.value())));
                    if now_version != *seen {
                        changed.push(key.clone());
                    }
                }
                Read::Range { prefix, limit, seen } => {
                    let listed = scan(&self.data, ns, prefix, *limit, false, usize::MAX)?;
                    let now_seen = listed.map(|l| l.entries.into_iter().map(|(k, v, _)| (k, v)));
                    if !now_seen.is_some_and(|s| s.eq(seen.iter().cloned())) {
                        changed.push(prefix.clone());
                    }
                }
            }
        }
        if !changed.is_empty() {
            return Ok(Err(changed));
        }
        // What the writes make of each key, in order (a key written twice
        // ends as its last write made it), before anything is written.
        let mut plan: Vec<Planned> = Vec::new();
        let mut at: HashMap<Vec<u8>, usize> = HashMap::new();
        for write in &commit.writes {
            let key = namespaced(ns, write.key());
            let i = match at.get(&key) {
                Some(&i) => i,
                None => {
                    let old = self.data.get(key.as_slice())?.map(|r| r.value().to_vec());
                    plan.push((key.clone(), old.clone(), old));
                    at.insert(key, plan.len() - 1);
                    plan.len() - 1
                }
            };
            let current = plan[i].2.as_deref();
            let new = match write {
                Write::Set { value, expires, .. } => Some(record(*expires, seq, value)),
                Write::Delete { .. } => None,
                Write::Incr { delta, .. } => {
                    // The call read this value (the check above holds) or
                    // wrote it: the sum is what it was handed.
                    let value = current.and_then(|r| live(r, now));
                    let n = value.and_then(integer).unwrap_or(0).saturating_add(*delta);
                    let expires = current.filter(|r| live(r, now).is_some()).map_or(0, expiry);
                    Some(record(expires, seq, n.to_string().as_bytes()))
                }
            };
            plan[i].2 = new;
        }
        let size = |key: &[u8], r: &Option<Vec<u8>>| r.as_ref().map_or(0, |r| (key.len() + r.len()) as i64);
        let delta: i64 = plan.iter().map(|(k, old, new)| size(k, new) - size(k, old)).sum();
        let used = self.usage.get(ns)?.map_or(0, |v| v.value());
        if delta > 0 && used.saturating_add(delta as u64) > quota {
            return Ok(Err(Vec::new()));
        }
        for (key, old, new) in &plan {
            match new {
                Some(r) => self.data.insert(key.as_slice(), r.as_slice())?,
                None => self.data.remove(key.as_slice())?,
            };
            // The sweeper's index follows the record's expiry.
            let (old_expiry, new_expiry) = (old.as_deref().map_or(0, expiry), new.as_deref().map_or(0, expiry));
            if old_expiry != new_expiry {
                if old_expiry != 0 {
                    self.expiries.remove(expiry_key(old_expiry, key).as_slice())?;
                }
                if new_expiry != 0 {
                    self.expiries.insert(expiry_key(new_expiry, key).as_slice(), ())?;
                }
            }
        }
        self.usage.insert(ns, (used as i64 + delta).max(0) as u64)?;
        Ok(Ok(()))
    }
}

/// A listing over `table` (a snapshot's or the committer's).
fn scan(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    namespace: &str,
    prefix: &[u8],
    limit: usize,
    values: bool,
    may_skip: usize,
) -> anyhow::Result<Option<Listed>> {
    let start = namespaced(namespace, prefix);
    let skip = namespace.len() + 1;
    let now = now_ms();
    let mut listed = Listed { entries: Vec::new(), skipped: 0 };
    if limit == 0 {
        return Ok(Some(listed));
    }
    for entry in table.range(start.as_slice()..)? {
        let (k, v) = entry?;
        let k = k.value();
        if !k.starts_with(&start) {
            break;
        }
        let record = v.value();
        match live(record, now) {
            Some(value) => {
                let value = if values { value.to_vec() } else { Vec::new() };
                listed.entries.push((k[skip..].to_vec(), version(record), value));
                if listed.entries.len() >= limit {
                    break;
                }
            }
            None => {
                listed.skipped += 1;
                if listed.skipped > may_skip {
                    return Ok(None);
                }
            }
        }
    }
    Ok(Some(listed))
}
