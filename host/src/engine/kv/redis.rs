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

use super::{Commit, CommitError, KvError, Listed, Read, Version, Write};
use crate::config::{HistoryLimits, KvLimits, RedisEngine};
use crate::engine::redis::Backoff;
use crate::engine::redis_conn::{Address, Conn};
use crate::log::Log;

/// What every script below starts with: the module's key prefix, a key's
/// version (0: absent or expired; 1: written before versions were kept),
/// a listing, and the check of a call's reads.
///
/// A read set in ARGV, from index `i`: its length, then for each read
/// either `k`, key, version or `r`, min, max, limit (a listing's range, as
/// `ZRANGE BYLEX` takes it), the number of keys it found, then each key
/// and version.
const PRELUDE: &str = r"
local p = 'house:kv:{' .. ARGV[1] .. '}:'
local function ver(key)
  if redis.call('EXISTS', p .. 'v:' .. key) == 0 then return 0 end
  return tonumber(redis.call('HGET', p .. 'ver', key)) or 1
end
local function range(min, max, limit, values, may_skip)
  local out, found, offset, skipped = {}, 0, 0, 0
  while found < limit do
    local batch = redis.call('ZRANGE', p .. 'keys', min, max, 'BYLEX', 'LIMIT', offset, limit - found)
    if #batch == 0 then break end
    offset = offset + #batch
    for _, key in ipairs(batch) do
      local vk = p .. 'v:' .. key
      local v
      if values then v = redis.call('GET', vk) else v = redis.call('EXISTS', vk) == 1 end
      if v then
        found = found + 1
        out[#out + 1] = key
        out[#out + 1] = ver(key)
        if values then out[#out + 1] = v end
      else
        skipped = skipped + 1
        if skipped > may_skip then return nil, skipped end
      end
    end
  end
  return out, skipped
end
local function check(i)
  local n = tonumber(ARGV[i])
  i = i + 1
  local changed = nil
  for _ = 1, n do
    if ARGV[i] == 'k' then
      if changed == nil and ver(ARGV[i + 1]) ~= tonumber(ARGV[i + 2]) then changed = ARGV[i + 1] end
      i = i + 3
    else
      local m = tonumber(ARGV[i + 4])
      if changed == nil then
        local now = range(ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), false, 1e15)
        local same = #now == 2 * m
        for j = 1, m do
          if same and (now[2 * j - 1] ~= ARGV[i + 3 + 2 * j] or now[2 * j] ~= tonumber(ARGV[i + 4 + 2 * j])) then
            same = false
          end
        end
        if not same then changed = ARGV[i + 1] end
      end
      i = i + 5 + 2 * m
    end
  end
  return changed, i
end
";

/// Reads a key, if the call's earlier reads still hold. ARGV: the module,
/// the key, the read set. Returns `ok`, the value (or nil), its version;
/// or `conflict` and a key whose version changed.
const READ: &str = r"
local changed = check(3)
if changed then return {'conflict', changed} end
local v = redis.call('GET', p .. 'v:' .. ARGV[2])
if not v then return {'ok', false, 0} end
return {'ok', v, ver(ARGV[2])}
";

/// Lists a module's live keys in a lexical range, if the call's earlier
/// reads still hold. ARGV: the module, the range's ends, the limit, `1`
/// for values too, the expired keys it may step over, the read set.
/// Returns `ok`, the number stepped over, then key, version (and value)
/// for each; `conflict` and a key; or `skip` when over the budget. Keys
/// whose value has expired but that the sweep has not tidied yet are
/// stepped over.
const LIST: &str = r"
local changed = check(7)
if changed then return {'conflict', changed} end
local out, skipped = range(ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6]))
if not out then return {'skip'} end
table.insert(out, 1, skipped)
table.insert(out, 1, 'ok')
return out
";

/// Commits one call: its writes and its events, if nothing it read has
/// changed, its module stays within its quota, and this commit (by its id)
/// was not applied already. ARGV: the module, the commit's id, the quota in
/// bytes, the events a channel's history keeps and its idle ms, the number
/// of writes, the read set, then for each write its op (`s`et, `d`elete,
/// `i`ncrement), key, value or delta, and expiry (ms since the epoch, `0`:
/// none), then for each event its channel and its framed body. Each event
/// is appended to its channel's history, which gives it its id, and
/// published with that id (as the engine's own events are: `engine::redis`).
/// Returns `ok`, `dup` (applied before: a resend), `conflict` and a key, or
/// `quota`. It checks everything before it writes anything: a script's
/// writes are not undone if it stops half-way. The id is kept for a minute:
/// a resend is sent within `RESEND_FOR` of the first, and a commit that
/// read what it writes could not apply twice anyway (its second arrival
/// finds the versions it read changed by its first); a minute of ids at
/// thousands of commits a second is a few MiB of Redis's memory.
const COMMIT: &str = r"
local applied = p .. 'tx:' .. ARGV[2]
if redis.call('EXISTS', applied) == 1 then return {'dup'} end
local changed, first = check(7)
if changed then return {'conflict', changed} end
local last = first + 4 * tonumber(ARGV[6]) - 1
local keys, sizes, expiries = p .. 'keys', p .. 'sizes', p .. 'expiries'
local size, grow = {}, 0
for i = first, last, 4 do
  local op, key, arg = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if size[key] == nil then size[key] = tonumber(redis.call('HGET', sizes, key)) or 0 end
  local new = 0
  if op == 's' then new = #key + #arg elseif op == 'i' then new = #key + 20 end
  grow = grow + new - size[key]
  size[key] = new
end
if grow > 0 and (tonumber(redis.call('GET', p .. 'usage')) or 0) + grow > tonumber(ARGV[3]) then
  return {'quota'}
end
local version = redis.call('INCR', p .. 'seq') + 1
local used = 0
for i = first, last, 4 do
  local op, key, arg, expires = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local vk = p .. 'v:' .. key
  local old = tonumber(redis.call('HGET', sizes, key)) or 0
  if op == 'd' then
    redis.call('DEL', vk)
    redis.call('ZREM', keys, key)
    redis.call('ZREM', expiries, key)
    redis.call('HDEL', sizes, key)
    redis.call('HDEL', p .. 'ver', key)
    used = used - old
  else
    if op == 's' then
      if expires ~= '0' then
        redis.call('SET', vk, arg, 'PXAT', expires)
        redis.call('ZADD', expiries, expires, key)
      else
        redis.call('SET', vk, arg)
        redis.call('ZREM', expiries, key)
      end
    else
      -- A value that is no longer an integer counts from 0 (as in the
      -- embedded store), keeping its time-to-live; one that would
      -- overflow stays as it is.
      local r = redis.pcall('INCRBY', vk, arg)
      if type(r) == 'table' and r.err and not string.find(r.err, 'overflow') then
        redis.call('SET', vk, arg, 'KEEPTTL')
      end
    end
    local new = #key + redis.call('STRLEN', vk)
    redis.call('HSET', sizes, key, new)
    redis.call('HSET', p .. 'ver', key, version)
    redis.call('ZADD', keys, 0, key)
    used = used + new - old
  end
end
if used ~= 0 then redis.call('INCRBY', p .. 'usage', used) end
if last >= first then redis.call('SADD', 'house:kv:modules', ARGV[1]) end
local trim = ARGV[4] == '0' and '=' or '~'
for i = last + 1, #ARGV, 2 do
  local stream = 'house:history:' .. ARGV[i]
  local id = redis.call('XADD', stream, 'MAXLEN', trim, ARGV[4], '*', 'e', ARGV[i + 1])
  redis.call('PEXPIRE', stream, ARGV[5])
  redis.call('PUBLISH', 'house:' .. ARGV[i], '\2id: ' .. id .. '\n' .. ARGV[i + 1])
end
redis.call('SET', applied, 1, 'PX', 60000)
return {'ok'}
";

/// Tidies after keys Redis has expired: their entries in the key set and
/// the sizes, and their bytes in the module's usage. ARGV: at most this
/// many keys. Run by every host each second (it is idempotent; with
/// nothing due it costs a few lookups).
const SWEEP: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local budget = tonumber(ARGV[1])
for _, m in ipairs(redis.call('SMEMBERS', 'house:kv:modules')) do
  if budget <= 0 then break end
  local p = 'house:kv:{' .. m .. '}:'
  local due = redis.call('ZRANGEBYSCORE', p .. 'expiries', '-inf', now, 'LIMIT', 0, budget)
  local freed = 0
  for _, key in ipairs(due) do
    local left = redis.call('PTTL', p .. 'v:' .. key)
    if left == -2 then
      freed = freed + (tonumber(redis.call('HGET', p .. 'sizes', key)) or 0)
      redis.call('HDEL', p .. 'sizes', key)
      redis.call('HDEL', p .. 'ver', key)
      redis.call('ZREM', p .. 'keys', key)
      redis.call('ZREM', p .. 'expiries', key)
    elseif left == -1 then
      redis.call('ZREM', p .. 'expiries', key)
    else
      redis.call('ZADD', p .. 'expiries', now + left, key)
    end
  end
  if freed > 0 then redis.call('DECRBY', p .. 'usage', freed) end
  budget = budget - #due
end
return 0
";

/// Keys one sweep tidies at most.
const SWEEP_BATCH: usize = 1000;
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Not connected yet: operations wait for the first connection (a request
/// right after the start is served, not refused).
const CONNECTING: u8 = 0;
const UP: u8 = 1;
/// The last attempt failed: operations fail at once.
const DOWN: u8 = 2;

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
    address: Address,
    /// `--engine-timeout-ms`: a Redis that accepted a command but does not
    /// answer within it is treated as lost; the calls waiting on it get
    /// `KV_UNAVAILABLE` (or their commit is sent again), not a hang.
    timeout: Duration,
    limits: KvLimits,
    /// What a channel's history keeps (the events a commit appends).
    history: HistoryLimits,
    queue: Mutex<Queue>,
    wake: Condvar,
    /// A pipeline was answered (`drain` waits on it).
    done: Condvar,
    /// `CONNECTING`, `UP` or `DOWN`.
    state: AtomicU8,
    /// Which Redis process the connection is to: its `run_id`, and a count
    /// that changes with it. A commit whose reply was lost is not sent again
    /// to another process: a Redis restarted without its data has lost the
    /// commit's id too, and would apply it a second time.
    run_id: Mutex<String>,
    incarnation: AtomicU64,
    /// The scripts' texts and hashes: read, list, commit, sweep.
    scripts: [(String, String); 4],
}

const READ_SCRIPT: usize = 0;
const LIST_SCRIPT: usize = 1;
const COMMIT_SCRIPT: usize = 2;
const SWEEP_SCRIPT: usize = 3;

struct Queue {
    requests: Vec<Request>,
    /// A pipeline is out: its replies are not all handed back yet.
    busy: bool,
}

/// What comes back for a request: its reply, or word that it went out with
/// a pipeline whose connection (to Redis process `n`) failed before the
/// reply. A request dropped without either was never sent.
enum Answer {
    Reply(RedisResult<Value>),
    Lost(u64),
}

struct Request {
    cmd: Cmd,
    reply: oneshot::Sender<Answer>,
    /// Only to this Redis process (`Store::incarnation`): a commit's
    /// resend; dropped unsent if the connection is to another.
    only_to: Option<u64>,
}

/// Why a command has no reply.
enum Lost {
    /// It was never sent (Redis was down, or it was meant for a Redis
    /// process that is gone): nothing of it happened.
    NotSent,
    /// It went out to Redis process `n` and the connection failed before
    /// its reply: it may have run.
    Maybe(u64),
}

/// How long a commit whose reply was lost is sent again (with its id, so
/// that it is applied once) before its outcome is called unknown.
const RESEND_FOR: Duration = Duration::from_secs(3);
const RESEND_EVERY: Duration = Duration::from_millis(50);

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

    fn queue(&self) -> MutexGuard<'_, Queue> {
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

    /// The thread: connect, serve until the connection fails, say so once
    /// per outage, retry with backoff, forever.
    fn run(self: Arc<Self>, mut log: Log) {
        let mut backoff = Backoff::new();
        let mut said_down = false;
        loop {
            let mut conn = match self.connect() {
                Ok(conn) => conn,
                Err(e) => {
                    self.state.store(DOWN, Ordering::Release);
                    self.fail_queued();
                    if !said_down {
                        log.line(format_args!(
                            "house: kv {}: cannot reach Redis ({e:#}); retrying",
                            self.address.shown
                        ));
                        log.flush_now();
                        said_down = true;
                    }
                    backoff.wait();
                    continue;
                }
            };
            if said_down {
                log.line(format_args!("house: kv {}: connected", self.address.shown));
                log.flush_now();
            }
            self.state.store(UP, Ordering::Release);
            let since = Instant::now();
            let why = self.serve(&mut conn, &mut log);
            self.state.store(DOWN, Ordering::Release);
            // Whatever queued meanwhile fails now, not after the reconnect.
            self.fail_queued();
            log.line(format_args!("house: kv {}: lost Redis ({why}); retrying", self.address.shown));
            log.flush_now();
            said_down = true;
            backoff.lost(since);
        }
    }

    fn connect(&self) -> anyhow::Result<Conn> {
        let mut conn = Conn::open(&self.address, self.timeout)?;
        for (script, _) in &self.scripts {
            conn.command(redis::cmd("SCRIPT").arg("LOAD").arg(script))?;
        }
        let info = match conn.command(redis::cmd("INFO").arg("server"))? {
            Value::BulkString(text) => String::from_utf8_lossy(&text).into_owned(),
            Value::VerbatimString { text, .. } => text,
            other => bail!("INFO answered {other:?}"),
        };
        let run_id = info.lines().find_map(|l| l.strip_prefix("run_id:")).unwrap_or_default().trim().to_owned();
        let mut known = self.run_id.lock().unwrap_or_else(PoisonError::into_inner);
        if *known != run_id {
            *known = run_id;
            self.incarnation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(conn)
    }

    /// Drops what is queued (its calls see the failure) and says the
    /// pipeline out is over.
    fn fail_queued(&self) {
        let mut queue = self.queue();
        queue.requests.clear();
        queue.busy = false;
        drop(queue);
        self.done.notify_all();
    }

    /// Sends what is queued as one pipeline, and the sweep once a second,
    /// until the connection fails; returns why.
    fn serve(&self, conn: &mut Conn, log: &mut Log) -> String {
        let mut swept = Instant::now();
        let mut sweep = true;
        loop {
            let batch = {
                let mut queue = self.queue();
                while queue.requests.is_empty() && !sweep {
                    let left = SWEEP_EVERY.saturating_sub(swept.elapsed());
                    if left.is_zero() {
                        sweep = true;
                        break;
                    }
                    queue = self.wake.wait_timeout(queue, left).unwrap_or_else(PoisonError::into_inner).0;
                }
                queue.busy = true;
                std::mem::take(&mut queue.requests)
            };
            // Under steady load the queue is never empty: sweep on time anyway.
            sweep |= swept.elapsed() >= SWEEP_EVERY;
            let mut pipe = redis::pipe();
            let mut replies = Vec::with_capacity(batch.len());
            let current = self.incarnation.load(Ordering::Acquire);
            for request in batch {
                // Meant for a Redis that has been restarted since: dropped
                // unsent (its call sees the incarnation changed).
                if request.only_to.is_some_and(|inc| inc != current) {
                    continue;
                }
                pipe.add_command(request.cmd);
                replies.push(request.reply);
            }
            if sweep {
                pipe.cmd("EVALSHA").arg(&self.scripts[SWEEP_SCRIPT].1).arg(0).arg(SWEEP_BATCH);
            }
            let answers = match conn.query(&pipe.get_packed_pipeline(), pipe.len()) {
                Ok(answers) => answers,
                Err(e) => {
                    // They went out: each may have run.
                    for reply in replies {
                        let _ = reply.send(Answer::Lost(current));
                    }
                    return e.to_string();
                }
            };
            let mut answers = answers.into_iter();
            let mut flushed = false;
            for (reply, answer) in replies.into_iter().zip(answers.by_ref()) {
                flushed |= answer.as_ref().is_err_and(|e| e.code() == Some("NOSCRIPT"));
                let _ = reply.send(Answer::Reply(answer));
            }
            self.queue().busy = false;
            self.done.notify_all();
            if sweep {
                if let Some(Err(e)) = answers.next() {
                    flushed |= e.code() == Some("NOSCRIPT");
                    if !flushed {
                        log.line(format_args!(
                            "house: kv {}: the sweep of expired keys failed: {e}",
                            self.address.shown
                        ));
                        log.flush_now();
                    }
                }
                swept = Instant::now();
                sweep = false;
            }
            if flushed {
                // Someone ran SCRIPT FLUSH: the reconnect loads them again.
                return "its scripts were flushed".into();
            }
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
