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

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_channel::oneshot;
use redis::{Cmd, RedisResult, Value};

use super::{Entry, Write};
use crate::config::KvLimits;
use crate::log::Log;
// A Redis that accepted a command but does not answer within
// `REPLY_TIMEOUT` is treated as lost: the calls waiting on it get
// `KV_UNAVAILABLE`, not a hang.
use crate::engine::redis::{Backoff, CONNECT_TIMEOUT, REPLY_TIMEOUT};

/// Commits one call's writes. ARGV: the module, then for each write its
/// op (`s`et, `d`elete, `i`ncrement), key, value or delta, and expiry (ms
/// since the epoch, `0`: none).
const COMMIT: &str = r"
local p = 'house:kv:{' .. ARGV[1] .. '}:'
local keys, sizes, expiries = p .. 'keys', p .. 'sizes', p .. 'expiries'
local used = 0
for i = 2, #ARGV, 4 do
  local op, key, arg, expires = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local vk = p .. 'v:' .. key
  local old = tonumber(redis.call('HGET', sizes, key)) or 0
  if op == 'd' then
    redis.call('DEL', vk)
    redis.call('ZREM', keys, key)
    redis.call('ZREM', expiries, key)
    redis.call('HDEL', sizes, key)
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
    redis.call('ZADD', keys, 0, key)
    used = used + new - old
  end
end
if used ~= 0 then redis.call('INCRBY', p .. 'usage', used) end
redis.call('SADD', 'house:kv:modules', ARGV[1])
return 0
";

/// Lists a module's live keys in a lexical range. ARGV: the module, the
/// range's ends (ZRANGE BYLEX syntax), the limit, `1` for values too.
/// Returns key, value, key, value... (or keys only). Keys whose value has
/// expired but that the sweep has not tidied yet are skipped.
const LIST: &str = r"
local p = 'house:kv:{' .. ARGV[1] .. '}:'
local limit, values = tonumber(ARGV[4]), ARGV[5] == '1'
local out, found, offset = {}, 0, 0
while found < limit do
  local batch = redis.call('ZRANGE', p .. 'keys', ARGV[2], ARGV[3], 'BYLEX', 'LIMIT', offset, limit - found)
  if #batch == 0 then break end
  offset = offset + #batch
  for _, key in ipairs(batch) do
    local vk = p .. 'v:' .. key
    if values then
      local v = redis.call('GET', vk)
      if v then
        found = found + 1
        out[#out + 1] = key
        out[#out + 1] = v
      end
    elseif redis.call('EXISTS', vk) == 1 then
      found = found + 1
      out[#out + 1] = key
    end
  end
end
return out
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
    /// The address without its password, for the log.
    shown: String,
    client: redis::Client,
    limits: KvLimits,
    queue: Mutex<Vec<Request>>,
    wake: Condvar,
    /// `CONNECTING`, `UP` or `DOWN`.
    state: AtomicU8,
    commit: String,
    list: String,
    sweep: String,
}

struct Request {
    cmd: Cmd,
    reply: oneshot::Sender<RedisResult<Value>>,
}

impl Store {
    /// Starts the thread that connects (now and after every failure) and
    /// serves the operations. Never waits for Redis.
    pub fn start(url: &str, limits: KvLimits, log: Log) -> anyhow::Result<Arc<Store>> {
        let (client, _, _, shown) = crate::engine::redis::open(url)?;
        let hash = |code: &str| redis::Script::new(code).get_hash().to_owned();
        let store = Arc::new(Store {
            shown,
            client,
            limits,
            queue: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            state: AtomicU8::new(CONNECTING),
            commit: hash(COMMIT),
            list: hash(LIST),
            sweep: hash(SWEEP),
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

    fn queue(&self) -> MutexGuard<'_, Vec<Request>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `cmd` with the next pipeline and waits for its reply.
    async fn query(&self, cmd: Cmd) -> anyhow::Result<Value> {
        if self.state.load(Ordering::Acquire) == DOWN {
            return Err(Unreachable.into());
        }
        let (reply, answer) = oneshot::channel();
        self.queue().push(Request { cmd, reply });
        self.wake.notify_one();
        match answer.await {
            Ok(reply) => Ok(reply?),
            // The connection failed before this command's reply.
            Err(oneshot::Canceled) => Err(Unreachable.into()),
        }
    }

    pub async fn read(&self, namespace: &str, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(value_key(namespace, key));
        match self.query(cmd).await? {
            Value::Nil => Ok(None),
            Value::BulkString(value) => Ok(Some(value)),
            other => bail!("GET answered {other:?}"),
        }
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

    pub async fn scan(&self, namespace: &str, prefix: &[u8], limit: usize, values: bool) -> anyhow::Result<Vec<Entry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (min, max) = lex_range(prefix);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.list).arg(0).arg(namespace).arg(min).arg(max).arg(limit).arg(if values { "1" } else { "0" });
        let Value::Array(items) = self.query(cmd).await? else { bail!("the listing script answered no array") };
        let mut items = items.into_iter().map(|item| match item {
            Value::BulkString(b) => Ok(b),
            other => Err(anyhow::anyhow!("the listing script answered {other:?}")),
        });
        let mut entries = Vec::new();
        while let Some(key) = items.next() {
            let value = if values { items.next().context("a key without its value")?? } else { Vec::new() };
            entries.push((key?, value));
        }
        Ok(entries)
    }

    pub async fn commit(&self, namespace: &str, writes: &[Write]) -> anyhow::Result<()> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.commit).arg(0).arg(namespace);
        for write in writes {
            match write {
                Write::Set { key, value, expires } => cmd.arg("s").arg(&key[..]).arg(&value[..]).arg(*expires),
                Write::Delete { key } => cmd.arg("d").arg(&key[..]).arg("").arg(0),
                Write::Incr { key, delta } => cmd.arg("i").arg(&key[..]).arg(*delta).arg(0),
            };
        }
        self.query(cmd).await.map(drop)
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
                    self.queue().clear();
                    if !said_down {
                        log.line(format_args!("house: kv {}: cannot reach Redis ({e:#}); retrying", self.shown));
                        log.flush_now();
                        said_down = true;
                    }
                    backoff.wait();
                    continue;
                }
            };
            if said_down {
                log.line(format_args!("house: kv {}: connected", self.shown));
                log.flush_now();
            }
            self.state.store(UP, Ordering::Release);
            let since = Instant::now();
            let why = self.serve(&mut conn, &mut log);
            self.state.store(DOWN, Ordering::Release);
            // Whatever queued meanwhile fails now, not after the reconnect.
            self.queue().clear();
            log.line(format_args!("house: kv {}: lost Redis ({why}); retrying", self.shown));
            log.flush_now();
            said_down = true;
            backoff.lost(since);
        }
    }

    fn connect(&self) -> anyhow::Result<redis::Connection> {
        let mut conn = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        conn.set_read_timeout(Some(REPLY_TIMEOUT))?;
        conn.set_write_timeout(Some(REPLY_TIMEOUT))?;
        for script in [COMMIT, LIST, SWEEP] {
            redis::cmd("SCRIPT").arg("LOAD").arg(script).query::<String>(&mut conn)?;
        }
        Ok(conn)
    }

    /// Sends what is queued as one pipeline, and the sweep once a second,
    /// until the connection fails; returns why.
    fn serve(&self, conn: &mut redis::Connection, log: &mut Log) -> String {
        let mut swept = Instant::now();
        let mut sweep = true;
        loop {
            let batch = {
                let mut queue = self.queue();
                while queue.is_empty() && !sweep {
                    let left = SWEEP_EVERY.saturating_sub(swept.elapsed());
                    if left.is_zero() {
                        sweep = true;
                        break;
                    }
                    queue = self.wake.wait_timeout(queue, left).unwrap_or_else(PoisonError::into_inner).0;
                }
                std::mem::take(&mut *queue)
            };
            // Under steady load the queue is never empty: sweep on time anyway.
            sweep |= swept.elapsed() >= SWEEP_EVERY;
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            let mut replies = Vec::with_capacity(batch.len());
            for request in batch {
                pipe.add_command(request.cmd);
                replies.push(request.reply);
            }
            if sweep {
                pipe.cmd("EVALSHA").arg(&self.sweep).arg(0).arg(SWEEP_BATCH);
            }
            // Dropping `replies` on failure wakes their calls with an error.
            let answers = match pipe.query::<Vec<RedisResult<Value>>>(conn) {
                Ok(answers) => answers,
                Err(e) => return e.to_string(),
            };
            let mut answers = answers.into_iter();
            let mut flushed = false;
            for (reply, answer) in replies.into_iter().zip(answers.by_ref()) {
                flushed |= answer.as_ref().is_err_and(|e| e.code() == Some("NOSCRIPT"));
                let _ = reply.send(answer);
            }
            if sweep {
                if let Some(Err(e)) = answers.next() {
                    flushed |= e.code() == Some("NOSCRIPT");
                    if !flushed {
                        log.line(format_args!("house: kv {}: the sweep of expired keys failed: {e}", self.shown));
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

fn value_key(namespace: &str, key: &[u8]) -> Vec<u8> {
    let mut k = format!("house:kv:{{{namespace}}}:v:").into_bytes();
    k.extend_from_slice(key);
    k
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
