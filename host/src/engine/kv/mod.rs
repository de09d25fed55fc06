//! Guests' key-value data: what one call reads and writes, whichever store
//! keeps it (`embedded`: a redb file under `--data-dir`, the default;
//! `redis`: the Redis server of `--engine redis://`, shared by every host
//! on it).
//!
//! Each module file has its own namespace. A call reads the store and sees
//! its own writes; its writes (set, delete, increment) are kept in the call
//! ([`Pending`]) and committed at its end, atomically, only if it succeeds:
//! a call that traps, overruns or answers 5xx leaves nothing behind.
//! Increments are committed as deltas, applied inside the commit, so
//! concurrent increments on any loop of any host lose no update (the value
//! a call sees counts the commits before its read and its own increments).
//!
//! The operations are async: on Redis a read is a round trip, during which
//! the call is parked and its loop serves other connections (`calls`). On
//! the embedded store they never wait.

pub mod embedded;
pub mod redis;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::KvLimits;

/// Why an operation was refused (the import's negative codes, docs/ABI.md).
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
}

/// A key (without its namespace) and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

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

    /// At shutdown: makes what was committed durable (embedded; Redis
    /// keeps its own).
    pub fn flush(&self) -> anyhow::Result<()> {
        match self {
            Kv::Embedded(s) => s.flush(),
            Kv::Redis(_) => Ok(()),
        }
    }

    async fn read(&self, namespace: &str, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        match self {
            Kv::Embedded(s) => s.read(namespace, key),
            Kv::Redis(s) => s.read(namespace, key).await,
        }
    }

    async fn usage(&self, namespace: &str) -> anyhow::Result<u64> {
        match self {
            Kv::Embedded(s) => s.usage(namespace),
            Kv::Redis(s) => s.usage(namespace).await,
        }
    }

    async fn scan(&self, namespace: &str, prefix: &[u8], limit: usize, values: bool) -> anyhow::Result<Vec<Entry>> {
        match self {
            Kv::Embedded(s) => s.scan(namespace, prefix, limit, values),
            Kv::Redis(s) => s.scan(namespace, prefix, limit, values).await,
        }
    }

    async fn commit(&self, namespace: &str, writes: &[Write]) -> anyhow::Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        match self {
            Kv::Embedded(s) => s.commit(namespace, writes),
            Kv::Redis(s) => s.commit(namespace, writes).await,
        }
    }
}

/// What one call has done to the store so far.
pub struct Pending {
    kv: Kv,
    namespace: String,
    writes: Vec<Write>,
    /// What the call's own writes made of a key (None: deleted).
    seen: HashMap<Vec<u8>, Option<Vec<u8>>>,
    ops: usize,
    /// The module's bytes when the call first wrote (read once: on Redis
    /// each read is a round trip), and what its writes may add, at most.
    used: Option<u64>,
    growth: u64,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A stored value as an integer, as increments read it.
pub(crate) fn integer(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

fn unavailable(e: anyhow::Error) -> KvError {
    eprintln!("house: kv: {e:#}");
    KvError::Unavailable
}

impl Pending {
    pub fn new(kv: Kv, namespace: &str) -> Pending {
        Pending {
            kv,
            namespace: namespace.to_owned(),
            writes: Vec::new(),
            seen: HashMap::new(),
            ops: 0,
            used: None,
            growth: 0,
        }
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

    pub async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.op(key)?;
        if let Some(value) = self.seen.get(key) {
            return Ok(value.clone());
        }
        self.kv.read(&self.namespace, key).await.map_err(unavailable)
    }

    pub async fn set(&mut self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        if value.len() > self.kv.limits().value_bytes {
            return Err(KvError::TooLarge);
        }
        self.op(key)?;
        self.grow(key.len() + value.len()).await?;
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

    pub async fn incr(&mut self, key: &[u8], delta: i64) -> Result<i64, KvError> {
        let current = self.get(key).await?;
        let n = match &current {
            None => 0,
            Some(v) => integer(v).ok_or(KvError::NotInteger)?,
        };
        let n = n.saturating_add(delta);
        self.grow(key.len() + 20).await?;
        self.seen.insert(key.to_vec(), Some(n.to_string().into_bytes()));
        self.writes.push(Write::Incr { key: key.to_vec(), delta });
        Ok(n)
    }

    /// Keys starting with `prefix` (and their values if `values`), in
    /// order, at most `limit` (and at most `--kv-list-keys`), as the store
    /// has them (the call's own writes are not merged in). One operation.
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
        self.kv.scan(&self.namespace, prefix, limit, values).await.map_err(unavailable)
    }

    /// Counts bytes a write may add against the module's budget.
    async fn grow(&mut self, bytes: usize) -> Result<(), KvError> {
        let used = match self.used {
            Some(used) => used,
            None => *self.used.insert(self.kv.usage(&self.namespace).await.map_err(unavailable)?),
        };
        let growth = self.growth + bytes as u64 + 8;
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

    /// The call succeeded: commit what it wrote, in one transaction.
    pub async fn commit(self) -> anyhow::Result<()> {
        self.kv.commit(&self.namespace, &self.writes).await
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// The embedded store never waits: its futures are ready at once.
    fn now<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("the embedded store waited"),
        }
    }

    fn store() -> (Arc<embedded::Store>, Kv) {
        let dir = std::env::temp_dir().join(format!("house-kv-{}-{}", std::process::id(), rand_suffix()));
        let limits = KvLimits { key_bytes: 16, value_bytes: 32, ops: 8, module_bytes: 200, list_keys: 3 };
        let s = embedded::Store::open_quiet(&dir, limits).unwrap();
        (s.clone(), Kv::Embedded(s))
    }

    fn rand_suffix() -> u64 {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new().build_hasher().finish()
    }

    fn get(kv: &Kv, module: &str, key: &[u8]) -> Option<Vec<u8>> {
        now(Pending::new(kv.clone(), module).get(key)).unwrap()
    }

    #[test]
    fn writes_show_in_the_call_and_after_its_commit_only() {
        let (_, kv) = store();
        let mut call = Pending::new(kv.clone(), "a.wasm");
        now(call.set(b"k", b"v", None)).unwrap();
        assert_eq!(now(call.get(b"k")).unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(get(&kv, "a.wasm", b"k"), None, "not before the commit");
        now(call.commit()).unwrap();
        assert_eq!(get(&kv, "a.wasm", b"k").as_deref(), Some(&b"v"[..]));
        assert_eq!(get(&kv, "b.wasm", b"k"), None, "namespaces are apart");
        let mut dropped = Pending::new(kv.clone(), "a.wasm");
        dropped.delete(b"k").unwrap();
        drop(dropped); // a failed call: nothing committed
        assert!(get(&kv, "a.wasm", b"k").is_some());
    }

    #[test]
    fn increments_commit_as_deltas() {
        let (_, kv) = store();
        let (mut a, mut b) = (Pending::new(kv.clone(), "m"), Pending::new(kv.clone(), "m"));
        assert_eq!(now(a.incr(b"n", 1)).unwrap(), 1);
        assert_eq!(now(b.incr(b"n", 1)).unwrap(), 1, "both read 0");
        now(a.commit()).unwrap();
        now(b.commit()).unwrap();
        assert_eq!(get(&kv, "m", b"n").as_deref(), Some(&b"2"[..]), "no update lost");
        let mut c = Pending::new(kv, "m");
        now(c.set(b"t", b"text", None)).unwrap();
        assert_eq!(now(c.incr(b"t", 1)), Err(KvError::NotInteger));
    }

    #[test]
    fn bounds_are_error_codes() {
        let (_, kv) = store();
        let mut call = Pending::new(kv.clone(), "m");
        assert_eq!(now(call.set(b"", b"v", None)), Err(KvError::TooLarge));
        assert_eq!(now(call.set(&[b'k'; 17], b"v", None)), Err(KvError::TooLarge));
        assert_eq!(now(call.set(b"k", &[b'v'; 33], None)), Err(KvError::TooLarge));
        for i in 0..5 {
            now(call.set(format!("k{i}").as_bytes(), b"v", None)).unwrap();
        }
        now(call.get(b"k0")).unwrap();
        now(call.get(b"k1")).unwrap();
        now(call.get(b"k2")).unwrap();
        assert_eq!(now(call.get(b"k0")), Err(KvError::Budget), "8 operations per call");
        now(call.commit()).unwrap();
        let mut big = Pending::new(kv.clone(), "m");
        for i in 0..5 {
            let _ = now(big.set(format!("b{i}").as_bytes(), &[b'x'; 32], None));
        }
        assert_eq!(now(big.set(b"b9", &[b'x'; 32], None)), Err(KvError::Budget), "200 bytes per module");
        let mut list = Pending::new(kv, "m");
        let keys: Vec<Vec<u8>> = now(list.list(b"k", 10, false)).unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [b"k0".to_vec(), b"k1".to_vec(), b"k2".to_vec()], "at most 3");
    }

    #[test]
    fn expired_values_are_gone() {
        let (s, kv) = store();
        let mut call = Pending::new(kv.clone(), "m");
        now(call.set(b"t", b"v", Some(Duration::from_millis(1)))).unwrap();
        now(call.set(b"u", b"v", Some(Duration::from_secs(60)))).unwrap();
        now(call.commit()).unwrap();
        std::thread::sleep(Duration::from_millis(5)); // the expiry itself is the point
        let mut later = Pending::new(kv.clone(), "m");
        assert_eq!(now(later.get(b"t")).unwrap(), None);
        assert!(now(later.get(b"u")).unwrap().is_some());
        assert_eq!(now(later.list(b"", 10, true)).unwrap(), [(b"u".to_vec(), b"v".to_vec())]);
        let before = s.usage("m").unwrap();
        assert_eq!(s.sweep().unwrap(), 1, "the expired key is deleted");
        assert!(s.usage("m").unwrap() < before, "and its bytes given back");
        assert_eq!(s.sweep().unwrap(), 0);
        // A key set again without a time-to-live is not swept.
        let mut again = Pending::new(kv.clone(), "m");
        now(again.set(b"w", b"v", Some(Duration::from_millis(1)))).unwrap();
        now(again.commit()).unwrap();
        let mut keep = Pending::new(kv.clone(), "m");
        now(keep.set(b"w", b"kept", None)).unwrap();
        now(keep.commit()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.sweep().unwrap(), 0);
        assert_eq!(get(&kv, "m", b"w").as_deref(), Some(&b"kept"[..]));
    }
}
