//! One call's transaction (`Pending`) against the embedded store: reads,
//! versions, conflicts, quotas, expiry budgets.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use super::*;

/// Reads from the embedded store never wait: their futures are ready
/// at once.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the embedded store waited"),
    }
}

/// Commits `call` as the store's thread would: queued, then applied.
fn commit(s: &embedded::Store, call: Pending) -> Result<(), CommitError> {
    let mut f = std::pin::pin!(call.commit(Vec::new()));
    let mut cx = Context::from_waker(Waker::noop());
    if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
        return out;
    }
    s.commit_waiting();
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the commit was not answered"),
    }
}

fn limits() -> KvLimits {
    KvLimits { key_bytes: 16, value_bytes: 32, ops: 8, module_bytes: 300, list_keys: 3, retries: 0 }
}

fn store() -> (Arc<embedded::Store>, Kv, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("house-kv-{}-{}", std::process::id(), rand_suffix()));
    let s = embedded::Store::open_quiet(&dir, limits()).unwrap();
    (s.clone(), Kv::Embedded(s), dir)
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

fn get(kv: &Kv, module: &str, key: &[u8]) -> Option<Vec<u8>> {
    now(Pending::new(kv.clone(), module).get(key)).unwrap()
}

fn conflict(r: Result<(), CommitError>) -> Vec<Vec<u8>> {
    match r {
        Err(CommitError::Conflict(keys)) => keys,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn writes_show_in_the_call_and_after_its_commit_only() {
    let (s, kv, _) = store();
    let mut call = Pending::new(kv.clone(), "a.wasm");
    now(call.set(b"k", b"v", None)).unwrap();
    assert_eq!(now(call.get(b"k")).unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(get(&kv, "a.wasm", b"k"), None, "not before the commit");
    commit(&s, call).unwrap();
    assert_eq!(get(&kv, "a.wasm", b"k").as_deref(), Some(&b"v"[..]));
    assert_eq!(get(&kv, "b.wasm", b"k"), None, "namespaces are apart");
    let mut dropped = Pending::new(kv.clone(), "a.wasm");
    dropped.delete(b"k").unwrap();
    drop(dropped); // a failed call: nothing committed
    assert!(get(&kv, "a.wasm", b"k").is_some());
}

#[test]
fn two_calls_that_read_the_same_counter_do_not_both_commit() {
    let (s, kv, _) = store();
    let (mut a, mut b) = (Pending::new(kv.clone(), "m"), Pending::new(kv.clone(), "m"));
    assert_eq!(now(a.incr(b"n", 1)).unwrap(), 1);
    assert_eq!(now(b.incr(b"n", 1)).unwrap(), 1, "both read 0");
    commit(&s, a).unwrap();
    assert_eq!(conflict(commit(&s, b)), [b"n".to_vec()], "b's 1 was never committed");
    let mut c = Pending::new(kv.clone(), "m");
    assert_eq!(now(c.incr(b"n", 1)).unwrap(), 2, "its re-run reads a's commit");
    commit(&s, c).unwrap();
    assert_eq!(get(&kv, "m", b"n").as_deref(), Some(&b"2"[..]));
    let mut d = Pending::new(kv, "m");
    now(d.set(b"t", b"text", None)).unwrap();
    assert_eq!(now(d.incr(b"t", 1)), Err(KvError::NotInteger));
}

#[test]
fn reads_come_from_one_snapshot_and_a_read_only_call_commits_nothing() {
    let (s, kv, _) = store();
    let mut w = Pending::new(kv.clone(), "m");
    now(w.set(b"x", b"1", None)).unwrap();
    commit(&s, w).unwrap();
    let mut reader = Pending::new(kv.clone(), "m");
    assert_eq!(now(reader.get(b"x")).unwrap().as_deref(), Some(&b"1"[..]));
    let mut w = Pending::new(kv.clone(), "m");
    now(w.set(b"x", b"2", None)).unwrap();
    now(w.set(b"y", b"2", None)).unwrap();
    commit(&s, w).unwrap();
    assert_eq!(now(reader.get(b"y")).unwrap(), None, "y as of the reader's snapshot, with x = 1");
    commit(&s, reader).unwrap();
}

#[test]
fn a_key_inserted_into_a_listed_range_is_a_conflict() {
    let (s, kv, _) = store();
    let mut lister = Pending::new(kv.clone(), "m");
    assert!(now(lister.list(b"todo:", 10, false)).unwrap().is_empty());
    now(lister.set(b"count", b"0", None)).unwrap();
    let mut inserter = Pending::new(kv.clone(), "m");
    now(inserter.set(b"todo:1", b"x", None)).unwrap();
    commit(&s, inserter).unwrap();
    assert_eq!(conflict(commit(&s, lister)), [b"todo:".to_vec()], "a phantom");
    // Writes outside the range do not conflict with it.
    let mut lister = Pending::new(kv.clone(), "m");
    assert_eq!(now(lister.list(b"todo:", 10, false)).unwrap().len(), 1);
    now(lister.set(b"count", b"1", None)).unwrap();
    let mut other = Pending::new(kv.clone(), "m");
    now(other.set(b"zz", b"x", None)).unwrap();
    commit(&s, other).unwrap();
    commit(&s, lister).unwrap();
    // Removing a key from it does.
    let mut lister = Pending::new(kv.clone(), "m");
    now(lister.list(b"todo:", 10, false)).unwrap();
    now(lister.set(b"count", b"2", None)).unwrap();
    let mut remover = Pending::new(kv.clone(), "m");
    remover.delete(b"todo:1").unwrap();
    commit(&s, remover).unwrap();
    assert_eq!(conflict(commit(&s, lister)), [b"todo:".to_vec()]);
}

#[test]
fn the_quota_is_checked_inside_the_commit() {
    let (s, kv, _) = store();
    // Each call alone fits; together they would not.
    let mut calls: Vec<Pending> = (0..6).map(|_| Pending::new(kv.clone(), "m")).collect();
    for (i, call) in calls.iter_mut().enumerate() {
        now(call.set(format!("k{i}").as_bytes(), &[b'x'; 32], None)).unwrap();
    }
    let results: Vec<_> = calls.into_iter().map(|c| commit(&s, c)).collect();
    let committed = results.iter().filter(|r| r.is_ok()).count();
    assert!((1..6).contains(&committed), "the quota held");
    for r in results.into_iter().filter(|r| r.is_err()) {
        assert!(conflict(r).is_empty(), "refused for the quota, run again");
    }
    let snap = s.snapshot().unwrap();
    assert!(s.usage(&snap, "m").unwrap() <= 300);
}

#[test]
fn bounds_are_error_codes() {
    let (s, kv, _) = store();
    let mut call = Pending::new(kv.clone(), "m");
    assert_eq!(now(call.set(b"", b"v", None)), Err(KvError::TooLarge));
    assert_eq!(now(call.set(&[b'k'; 17], b"v", None)), Err(KvError::TooLarge));
    assert_eq!(now(call.set(b"k", &[b'v'; 33], None)), Err(KvError::TooLarge));
    for i in 0..4 {
        now(call.set(format!("k{i}").as_bytes(), b"v", None)).unwrap();
    }
    now(call.get(b"k0")).unwrap();
    now(call.get(b"k1")).unwrap();
    now(call.get(b"k2")).unwrap();
    now(call.get(b"k3")).unwrap();
    assert_eq!(now(call.get(b"k0")), Err(KvError::Budget), "8 operations per call");
    commit(&s, call).unwrap();
    let mut big = Pending::new(kv.clone(), "m");
    for i in 0..4 {
        let _ = now(big.set(format!("b{i}").as_bytes(), &[b'x'; 32], None));
    }
    assert_eq!(now(big.set(b"b9", &[b'x'; 32], None)), Err(KvError::Budget), "300 bytes per module");
    let mut list = Pending::new(kv, "m");
    let keys: Vec<Vec<u8>> = now(list.list(b"k", 10, false)).unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, [b"k0".to_vec(), b"k1".to_vec(), b"k2".to_vec()], "at most 3");
}

#[test]
fn expired_values_are_gone_and_stepping_over_them_costs_operations() {
    let (s, kv, _) = store();
    let mut call = Pending::new(kv.clone(), "m");
    now(call.set(b"t", b"v", Some(Duration::from_millis(1)))).unwrap();
    now(call.set(b"u", b"v", Some(Duration::from_secs(60)))).unwrap();
    commit(&s, call).unwrap();
    std::thread::sleep(Duration::from_millis(5)); // the expiry itself is the point
    let mut later = Pending::new(kv.clone(), "m");
    assert_eq!(now(later.get(b"t")).unwrap(), None);
    assert!(now(later.get(b"u")).unwrap().is_some());
    assert_eq!(now(later.list(b"", 10, true)).unwrap(), [(b"u".to_vec(), b"v".to_vec())]);
    assert_eq!(later.ops, 4, "get, get, list, and one for the expired key it stepped over");
    let snap = s.snapshot().unwrap();
    let before = s.usage(&snap, "m").unwrap();
    assert_eq!(s.sweep().unwrap(), 1, "the expired key is deleted");
    let snap = s.snapshot().unwrap();
    assert!(s.usage(&snap, "m").unwrap() < before, "and its bytes given back");
    assert_eq!(s.sweep().unwrap(), 0);
    // More expired keys than the call's operations can pay for.
    let (s, kv, _) = store();
    for batch in 0..3 {
        let mut call = Pending::new(kv.clone(), "m");
        for i in 0..2 {
            now(call.set(format!("e{batch}{i}").as_bytes(), b"v", Some(Duration::from_millis(1)))).unwrap();
        }
        commit(&s, call).unwrap();
    }
    std::thread::sleep(Duration::from_millis(5));
    let snap = s.snapshot().unwrap();
    let listed = s.scan(&snap, "m", b"", 10, false, 3).unwrap();
    assert!(listed.is_none(), "six expired keys, three may be stepped over");
    assert_eq!(s.scan(&snap, "m", b"", 10, false, 6).unwrap().unwrap().skipped, 6);
}

#[test]
fn commits_survive_a_reopen_and_keep_their_versions() {
    let (s, kv, dir) = store();
    let mut call = Pending::new(kv.clone(), "m");
    now(call.set(b"k", b"v", None)).unwrap();
    commit(&s, call).unwrap();
    let mut reader = Pending::new(kv.clone(), "m");
    now(reader.get(b"k")).unwrap();
    now(reader.set(b"j", b"w", None)).unwrap();
    let Pending { reads, writes, kv: held, snapshot, .. } = reader;
    drop((s, kv, held, snapshot));
    let s = embedded::Store::open_quiet(&dir, limits()).unwrap();
    let kv = Kv::Embedded(s.clone());
    assert_eq!(get(&kv, "m", b"k").as_deref(), Some(&b"v"[..]));
    let mut again = Pending::new(kv, "m");
    again.reads = reads;
    again.writes = writes;
    commit(&s, again).expect("k still has the version the call read");
}
