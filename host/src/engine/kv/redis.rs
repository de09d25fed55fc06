//! Guests' key-value data on the Redis server of `--engine redis://`:
//! every host on it sees the same data.
//!
//! Layout, per module file `M` (the braces are a hash tag: a module's keys
//! would share one Redis Cluster slot):
//! - `house:kv:{M}:v:KEY`: the value, a plain Redis string with Redis's
//!   own time-to-live (readable with redis-cli);
//! - `house:kv:{M}:keys`: a sorted set of the module's keys, all scored 0,
//!   so that a prefix listing is one `ZRANGE BYLEX`;
//! - `house:kv:{M}:sizes` (key -> bytes counted) and `house:kv:{M}:usage`
//!   (their sum): the module's bytes, for `--kv-module-mb`;
//! - `house:kv:{M}:expiries`: key -> expiry (ms), what the sweep tidies
//!   once Redis has expired the value;
//! - `house:kv:modules`: the modules that have data, for the sweep.
//!
//! A call's writes are committed by one Lua script (atomic: all or none,
//! and no other client runs in between); its increments are `INCRBY`s
//! inside it, so increments from any number of hosts lose no update.
//!
//! The loops never touch this socket: an operation queues a command and
//! waits on a oneshot channel (the guest call is parked meanwhile, see
//! `calls`); the `house-kv-redis` thread sends everything queued as one
//! pipeline, hands each reply back and wakes the loop. The queue holds at
//! most one command per guest call in flight (a call waits for each reply
//! before its next operation), so `--guest-calls` bounds it. Until the first
//! connection, operations wait for it; while Redis is unreachable after
//! that, every operation fails at once with `KV_UNAVAILABLE`.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_channel::oneshot;
use redis::{Cmd, RedisResult, Value};

use super::scripts::{COMMIT, LIST, PRELUDE, READ, SWEEP};
use super::{Commit, CommitError, KvError, Listed, Read, Version, Write};
use crate::config::{HistoryLimits, KvLimits, RedisEngine};
use crate::engine::redis_conn::Address;
use crate::log::Log;

/// Keys one sweep tidies at most.
pub(super) const SWEEP_BATCH: usize = 1000;
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Not connected yet: operations wait for the first connection (a request
/// right after the start is served, not refused).
pub(super) const CONNECTING: u8 = 0;
pub(super) const UP: u8 = 1;
/// The last attempt failed: operations fail at once.
pub(super) const DOWN: u8 = 2;

/// Redis cannot be reached: already said once in the log by the thread,
/// so the operations that fail for it say nothing more.
#[derive(Debug)]
pub struct Unreachable;

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redis is unreachable")
    }
}

impl std::error::Error for Unreachable {}

pub struct Store {
    pub(super) address: Address,
    /// `--engine-timeout-ms`: a Redis that accepted a command but does not
    /// answer within it is treated as lost; the calls waiting on it get
    /// `KV_UNAVAILABLE` (or their commit is sent again), not a hang.
    pub(super) timeout: Duration,
    pub(super) limits: KvLimits,
    /// What a channel's history keeps (the events a commit appends).
    pub(super) history: HistoryLimits,
    pub(super) queue: Mutex<Queue>,
    pub(super) wake: Condvar,
    /// A pipeline was answered (`drain` waits on it).
    pub(super) done: Condvar,
    /// `CONNECTING`, `UP` or `DOWN`.
    pub(super) state: AtomicU8,
    /// Which Redis process the connection is to: its `run_id`, and a count
    /// that changes with it. A commit whose reply was lost is not sent again
    /// to another process: a Redis restarted without its data has lost the
    /// commit's id too, and would apply it a second time.
    pub(super) run_id: Mutex<String>,
    pub(super) incarnation: AtomicU64,
    /// The scripts' texts and hashes: read, list, commit, sweep.
    pub(super) scripts: [(String, String); 4],
}

pub(super) const READ_SCRIPT: usize = 0;
pub(super) const LIST_SCRIPT: usize = 1;
pub(super) const COMMIT_SCRIPT: usize = 2;
pub(super) const SWEEP_SCRIPT: usize = 3;

pub(super) struct Queue {
    pub(super) requests: Vec<Request>,
    /// A pipeline is out: its replies are not all handed back yet.
    pub(super) busy: bool,
}

/// What comes back for a request: its reply, or word that it went out with
/// a pipeline whose connection (to Redis process `n`) failed before the
/// reply. A request dropped without either was never sent.
pub(super) enum Answer {
    Reply(RedisResult<Value>),
    Lost(u64),
}

pub(super) struct Request {
    pub(super) cmd: Cmd,
    pub(super) reply: oneshot::Sender<Answer>,
    /// Only to this Redis process (`Store::incarnation`): a commit's
    /// resend; dropped unsent if the connection is to another.
    pub(super) only_to: Option<u64>,
}

/// Why a command has no reply.
pub(super) enum Lost {
    /// It was never sent (Redis was down, or it was meant for a Redis
    /// process that is gone): nothing of it happened.
    NotSent,
    /// It went out to Redis process `n` and the connection failed before
    /// its reply: it may have run.
    Maybe(u64),
}

/// How long a commit whose reply was lost is sent again (with its id, so
/// that it is applied once) before its outcome is called unknown.
pub(super) const RESEND_FOR: Duration = Duration::from_secs(3);
pub(super) const RESEND_EVERY: Duration = Duration::from_millis(50);

impl Store {
    /// Starts the thread that connects (now and after every failure) and
    /// serves the operations. Never waits for Redis.
    pub fn start(cfg: &RedisEngine, limits: KvLimits, history: HistoryLimits, log: Log) -> anyhow::Result<Arc<Store>> {
        let address = Address::parse(&cfg.url)?;
        let script = |body: &str| {
            let text = if std::ptr::eq(body, SWEEP) { body.to_owned() } else { format!("{PRELUDE}{body}") };
            let hash = redis::Script::new(&text).get_hash().to_owned();
            (text, hash)
        };
        let store = Arc::new(Store {
            address,
            timeout: cfg.timeout,
            limits,
            history,
            queue: Mutex::new(Queue { requests: Vec::new(), busy: false }),
            wake: Condvar::new(),
            done: Condvar::new(),
            state: AtomicU8::new(CONNECTING),
            run_id: Mutex::new(String::new()),
            incarnation: AtomicU64::new(0),
            scripts: [script(READ), script(LIST), script(COMMIT), script(SWEEP)],
        });
        let thread = store.clone();
        std::thread::Builder::new().name("house-kv-redis".into()).spawn(move || thread.run(log))?;
        Ok(store)
    }

    pub fn limits(&self) -> &KvLimits {
        &self.limits
    }

    /// Whether the store is connected now (`/_house/stats`).
    pub fn up(&self) -> bool {
        self.state.load(Ordering::Acquire) == UP
    }

    pub(super) fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// At shutdown: waits up to `limit` until every command queued has its
    /// reply (or has failed); the number still out.
    pub fn drain(&self, limit: Duration) -> usize {
        let until = Instant::now() + limit;
        let mut queue = self.queue();
        while queue.busy || !queue.requests.is_empty() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.state.load(Ordering::Acquire) == DOWN {
                break;
            }
            queue = self.done.wait_timeout(queue, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        queue.requests.len() + usize::from(queue.busy)
    }

    /// Sends `cmd` with the next pipeline and waits for its reply.
    async fn send(&self, cmd: Cmd) -> Result<RedisResult<Value>, Lost> {
        self.send_to(cmd, None).await
    }

    /// [`Store::send`], only to the Redis process `only_to` if given.
    async fn send_to(&self, cmd: Cmd, only_to: Option<u64>) -> Result<RedisResult<Value>, Lost> {
        if self.state.load(Ordering::Acquire) == DOWN {
            return Err(Lost::NotSent);
        }
        let (reply, answer) = oneshot::channel();
        self.queue().requests.push(Request { cmd, reply, only_to });
        self.wake.notify_one();
        match answer.await {
            Ok(Answer::Reply(reply)) => Ok(reply),
            Ok(Answer::Lost(n)) => Err(Lost::Maybe(n)),
            // Dropped from the queue unsent (the connection failed first).
            Err(oneshot::Canceled) => Err(Lost::NotSent),
        }
    }

    async fn query(&self, cmd: Cmd) -> anyhow::Result<Value> {
        match self.send(cmd).await {
            Ok(reply) => Ok(reply?),
            Err(Lost::NotSent | Lost::Maybe(_)) => Err(Unreachable.into()),
        }
    }

    fn script(&self, which: usize) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.scripts[which].1).arg(0);
        cmd
    }

    /// A key's value and version, if the call's earlier `reads` still hold
    /// (else `KvError::Conflict`).
    pub async fn read(
        &self,
        namespace: &str,
        key: &[u8],
        reads: &[Read],
    ) -> anyhow::Result<(Option<Vec<u8>>, Version)> {
        let mut cmd = self.script(READ_SCRIPT);
        cmd.arg(namespace).arg(key);
        read_set(&mut cmd, reads);
        let reply = self.query(cmd).await?;
        let mut items = verdict(reply)?.into_iter();
        let value = match items.next() {
            Some(Value::BulkString(v)) => Some(v),
            Some(Value::Nil) => None,
            other => bail!("the read script answered {other:?}"),
        };
        Ok((value, number(items.next())?))
    }

    pub async fn usage(&self, namespace: &str) -> anyhow::Result<u64> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(format!("house:kv:{{{namespace}}}:usage"));
        match self.query(cmd).await? {
            Value::Nil => Ok(0),
            Value::BulkString(n) => {
                Ok(std::str::from_utf8(&n).ok().and_then(|n| n.parse::<i64>().ok()).unwrap_or(0).max(0) as u64)
            }
            other => bail!("GET answered {other:?}"),
        }
    }

    /// A listing, if the call's earlier `reads` still hold; None if it
    /// would step over more than `may_skip` expired keys.
    pub async fn scan(
        &self,
        namespace: &str,
        prefix: &[u8],
        limit: usize,
        values: bool,
        may_skip: usize,
        reads: &[Read],
    ) -> anyhow::Result<Option<Listed>> {
        let (min, max) = lex_range(prefix);
        let mut cmd = self.script(LIST_SCRIPT);
        cmd.arg(namespace).arg(min).arg(max).arg(limit).arg(if values { "1" } else { "0" }).arg(may_skip);
        read_set(&mut cmd, reads);
        let reply = self.query(cmd).await?;
        if let Value::Array(items) = &reply
            && matches!(items.first(), Some(Value::BulkString(s)) if s == b"skip")
        {
            return Ok(None);
        }
        let mut items = verdict(reply)?.into_iter();
        let skipped = number(items.next())? as usize;
        let mut entries = Vec::new();
        while let Some(key) = items.next() {
            let Value::BulkString(key) = key else { bail!("the listing script answered {key:?}") };
            let version = number(items.next())?;
            let value = if values {
                match items.next() {
                    Some(Value::BulkString(v)) => v,
                    other => bail!("a key without its value: {other:?}"),
                }
            } else {
                Vec::new()
            };
            entries.push((key, version, value));
        }
        Ok(Some(Listed { entries, skipped }))
    }

    /// Commits a call's writes and events: checked and applied by one
    /// script, with an id. A reply lost with the connection is asked for again by sending
    /// the same commit once Redis is back (the id makes a second arrival a
    /// no-op that says `dup`), for up to `RESEND_FOR`; after that the
    /// outcome is unknown.
    pub async fn commit(&self, commit: Commit) -> Result<(), CommitError> {
        let mut cmd = self.script(COMMIT_SCRIPT);
        let mut id = [0u8; 16];
        crate::random::fill(&mut id).map_err(|e| CommitError::Unavailable(e.into()))?;
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        cmd.arg(&commit.namespace).arg(&id).arg(self.limits.module_bytes);
        cmd.arg(self.history.events).arg(self.history.idle.as_millis() as u64).arg(commit.writes.len());
        read_set(&mut cmd, &commit.reads);
        for write in &commit.writes {
            match write {
                Write::Set { key, value, expires } => cmd.arg("s").arg(&key[..]).arg(&value[..]).arg(*expires),
                Write::Delete { key } => cmd.arg("d").arg(&key[..]).arg("").arg(0),
                Write::Incr { key, delta } => cmd.arg("i").arg(&key[..]).arg(*delta).arg(0),
            };
        }
        for (channel, body) in &commit.events {
            cmd.arg(channel.as_str()).arg(&body[..]);
        }
        // The Redis process a send that got no reply went to: only that one
        // may be asked again (one restarted without its data would apply
        // it a second time).
        let mut sent_to: Option<u64> = None;
        let until = Instant::now() + RESEND_FOR;
        loop {
            if let Some(n) = sent_to
                && self.incarnation.load(Ordering::Acquire) != n
            {
                return Err(CommitError::Unknown(anyhow::anyhow!(
                    "Redis restarted before its reply: it may have been applied (and lost with the restart); it \
                     is not sent again"
                )));
            }
            let why = match self.send_to(cmd.clone(), sent_to).await {
                Ok(Ok(reply)) => {
                    return match verdict(reply) {
                        Ok(_) => Ok(()),
                        Err(e) => match e.downcast::<Refused>() {
                            Ok(Refused::Conflict(key)) => Err(CommitError::Conflict(vec![key])),
                            Ok(Refused::Quota) => Err(CommitError::Conflict(Vec::new())),
                            Err(e) => Err(CommitError::Unknown(e)),
                        },
                    };
                }
                // The scripts were flushed: it did not run (the thread
                // reconnects and loads them again).
                Ok(Err(e)) if e.code() == Some("NOSCRIPT") => anyhow::Error::from(e),
                // Any other error may have stopped the script half-way.
                Ok(Err(e)) => return Err(CommitError::Unknown(e.into())),
                Err(Lost::NotSent) if sent_to.is_none() => {
                    return Err(CommitError::Unavailable(Unreachable.into()));
                }
                Err(Lost::NotSent) => anyhow::Error::from(Unreachable),
                Err(Lost::Maybe(n)) => {
                    sent_to = Some(n);
                    anyhow::anyhow!("the connection failed before its reply")
                }
            };
            if Instant::now() >= until {
                return Err(match sent_to {
                    Some(_) => CommitError::Unknown(why),
                    None => CommitError::Unavailable(why),
                });
            }
            crate::engine::timer::sleep(RESEND_EVERY).await;
        }
    }
}

/// The `ZRANGE BYLEX` ends that hold exactly the keys starting with
/// `prefix`: from the prefix itself, up to (not including) the first
/// string after all of them (the prefix with its last byte below 0xff
/// incremented and what follows dropped; none: to the end).
fn lex_range(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        return (b"-".to_vec(), b"+".to_vec());
    }
    let mut min = b"[".to_vec();
    min.extend_from_slice(prefix);
    let max = match prefix.iter().rposition(|&b| b != 0xff) {
        Some(i) => {
            let mut max = b"(".to_vec();
            max.extend_from_slice(&prefix[..i]);
            max.push(prefix[i] + 1);
            max
        }
        None => b"+".to_vec(),
    };
    (min, max)
}

/// Appends a call's read set to a script's arguments (see `PRELUDE`).
fn read_set(cmd: &mut Cmd, reads: &[Read]) {
    cmd.arg(reads.len());
    for read in reads {
        match read {
            Read::Key { key, version } => {
                cmd.arg("k").arg(&key[..]).arg(*version);
            }
            Read::Range { prefix, limit, seen } => {
                let (min, max) = lex_range(prefix);
                cmd.arg("r").arg(min).arg(max).arg(*limit).arg(seen.len());
                for (key, version) in seen {
                    cmd.arg(&key[..]).arg(*version);
                }
            }
        }
    }
}

/// Why a script did not do what it was asked.
#[derive(Debug)]
enum Refused {
    /// This key (or a range starting at it) changed since the call read it.
    Conflict(Vec<u8>),
    Quota,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Conflict(key) => write!(f, "{:?} changed", String::from_utf8_lossy(key)),
            Refused::Quota => f.write_str("over the module's quota"),
        }
    }
}

impl std::error::Error for Refused {}

/// A script's answer after its first item (`ok` or `dup`); a conflict as
/// `KvError::Conflict` wrapped in `Refused` (the commit tells them apart).
fn verdict(reply: Value) -> anyhow::Result<Vec<Value>> {
    let Value::Array(mut items) = reply else { bail!("a script answered {reply:?}") };
    if items.is_empty() {
        bail!("a script answered nothing");
    }
    let first = items.remove(0);
    match &first {
        Value::BulkString(s) if s == b"ok" || s == b"dup" => Ok(items),
        Value::BulkString(s) if s == b"conflict" => {
            let key = match items.into_iter().next() {
                Some(Value::BulkString(k)) => k,
                _ => Vec::new(),
            };
            Err(anyhow::Error::new(Refused::Conflict(key)).context(KvError::Conflict))
        }
        Value::BulkString(s) if s == b"quota" => Err(Refused::Quota.into()),
        other => bail!("a script answered {other:?}"),
    }
}

fn number(value: Option<Value>) -> anyhow::Result<u64> {
    match value {
        Some(Value::Int(n)) => Ok(n.max(0) as u64),
        other => bail!("a script answered {other:?} for a number"),
    }
}

#[cfg(test)]
mod tests {
    use super::lex_range;

    #[test]
    fn prefix_ranges() {
        assert_eq!(lex_range(b""), (b"-".to_vec(), b"+".to_vec()));
        assert_eq!(lex_range(b"ab"), (b"[ab".to_vec(), b"(ac".to_vec()));
        assert_eq!(lex_range(b"a\xff"), (b"[a\xff".to_vec(), b"(b".to_vec()));
        assert_eq!(lex_range(b"\xff\xff"), (b"[\xff\xff".to_vec(), b"+".to_vec()));
    }
}
