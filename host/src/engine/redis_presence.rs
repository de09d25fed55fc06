//! Presence on the Redis engine: the members of every host on one Redis.
//!
//! Each host counts its own connections per (channel, info) in its
//! `Presence` table and sends Redis only what changes at the host level
//! (a member's first connection here, its last), in the table's coalesced
//! batches. Redis keeps, per channel, how many hosts hold each member
//! (`house:presence:CHANNEL`, info -> hosts), per host what it holds
//! (`house:presence:held:HOST`, a set of `CHANNEL\nINFO`), and when each
//! host was last heard of (`house:presence:hosts`, a sorted set). One
//! script per batch applies it and announces on the channel what changed
//! for everyone (a member's first host, its last), through the channel's
//! stream and pub/sub exactly as a call's events go: ids, history, every
//! host's subscribers.
//!
//! A host refreshes its entry every quarter of `--presence-ttl-ms`; an
//! entry three quarters old is a dead host's, and the next sweep (every
//! host runs one each quarter) removes what it held and announces those
//! members' leaves: a host SIGKILLed leaves presence within the ttl. A host
//! that was away (Redis down, or itself paused past the ttl and swept)
//! sends everything it holds when it is back; the script makes Redis agree.
//!
//! One thread per process with its own connection: the loops only queue
//! batches; a guest's `presence()` waits for its reply without holding its
//! loop.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use redis::Value;

use super::presence::{BATCH_EVENTS, Batch, Presence, Remote};
use super::redis_conn::{Address, Backoff, Conn};
use crate::config::{HistoryLimits, RedisEngine};
use crate::log::Log;

/// What the scripts share: the clock, announcing (as a call's commit
/// publishes an event), and one host's hold on a member. ARGV: 1 host,
/// 2 its entry's lifetime (ms), 3 history events, 4 history idle (ms),
/// 5 the most changes announced one by one.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local host, life, maxlen, idle, batch = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], tonumber(ARGV[5])
local function publish(ch, frame)
  local stream = 'house:history:' .. ch
  local trim = maxlen == '0' and '=' or '~'
  local id = redis.call('XADD', stream, 'MAXLEN', trim, maxlen, '*', 'e', frame)
  redis.call('PEXPIRE', stream, idle)
  redis.call('PUBLISH', 'house:' .. ch, '\2id: ' .. id .. '\n' .. frame)
end
local function announce(ch, changes)
  if #changes == 0 then return end
  if #changes > batch then
    local joined = 0
    for _, c in ipairs(changes) do if c[1] == 'join' then joined = joined + 1 end end
    publish(ch, 'event: presence\ndata: {"joined":' .. joined .. ',"left":' .. (#changes - joined) .. '}\n\n')
    return
  end
  for _, c in ipairs(changes) do publish(ch, 'event: ' .. c[1] .. '\ndata: ' .. c[2] .. '\n\n') end
end
local function hold(ch, info, delta, changes)
  local members = 'house:presence:' .. ch
  local n = redis.call('HINCRBY', members, info, delta)
  if delta > 0 and n == 1 then
    redis.call('ZADD', 'house:presence:names:' .. ch, 0, info)
    changes[#changes + 1] = {'join', info}
  end
  if n <= 0 then
    redis.call('HDEL', members, info)
    redis.call('ZREM', 'house:presence:names:' .. ch, info)
    if delta < 0 then changes[#changes + 1] = {'leave', info} end
  end
end
local function split(entry) return entry:match('^(.*)\n([^\n]*)$') end
"#;

/// A batch of this host's changes on one channel: ARGV 6 the channel, then
/// (info, '1' joined or '0' left) pairs.
const APPLY: &str = r#"
redis.call('ZADD', 'house:presence:hosts', now_ms() + life, host)
local ch = ARGV[6]
local held = 'house:presence:held:' .. host
local changes = {}
for i = 7, #ARGV, 2 do
  local entry = ch .. '\n' .. ARGV[i]
  if ARGV[i + 1] == '1' then
    if redis.call('SADD', held, entry) == 1 then hold(ch, ARGV[i], 1, changes) end
  elseif redis.call('SREM', held, entry) == 1 then
    hold(ch, ARGV[i], -1, changes)
  end
end
announce(ch, changes)
return 1
"#;

/// Refreshes this host, and removes the hosts not heard of in time, with
/// what they held. Returns 1 if this host was not listed (it is new, or was
/// swept): it must say again what it holds.
const SWEEP: &str = r#"
local now = now_ms()
local fresh = redis.call('ZADD', 'house:presence:hosts', now + life, host)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', 'house:presence:hosts', '-inf', now)) do
  local held = 'house:presence:held:' .. gone
  local by, order = {}, {}
  for _, entry in ipairs(redis.call('SMEMBERS', held)) do
    local ch, info = split(entry)
    if ch then
      if not by[ch] then by[ch] = {}; order[#order + 1] = ch end
      hold(ch, info, -1, by[ch])
    end
  end
  for _, ch in ipairs(order) do announce(ch, by[ch]) end
  redis.call('DEL', held)
  redis.call('ZREM', 'house:presence:hosts', gone)
end
return fresh
"#;

/// Everything this host holds now (ARGV 6..: `CHANNEL\nINFO`): Redis is
/// made to agree, announcing the difference.
const RESYNC: &str = r#"
redis.call('ZADD', 'house:presence:hosts', now_ms() + life, host)
local held = 'house:presence:held:' .. host
local want, by, order = {}, {}, {}
for i = 6, #ARGV do want[ARGV[i]] = true end
local function change(entry, delta)
  local ch, info = split(entry)
  if not ch then return end
  if not by[ch] then by[ch] = {}; order[#order + 1] = ch end
  hold(ch, info, delta, by[ch])
end
for _, entry in ipairs(redis.call('SMEMBERS', held)) do
  if want[entry] then want[entry] = nil else redis.call('SREM', held, entry); change(entry, -1) end
end
for entry in pairs(want) do redis.call('SADD', held, entry); change(entry, 1) end
for _, ch in ipairs(order) do announce(ch, by[ch]) end
return 1
"#;

/// The members of ARGV 6, at most ARGV 7, in byte order, as one string
/// joined by line breaks (no info has one): one reply to parse, not one
/// per member, and the order is the sorted set's (all scores 0: by bytes).
const READ: &str = r#"
local limit = tonumber(ARGV[7])
if limit <= 0 then return '' end
return table.concat(redis.call('ZRANGE', 'house:presence:names:' .. ARGV[6], 0, limit - 1), '\n')
"#;

const APPLY_SCRIPT: usize = 0;
const SWEEP_SCRIPT: usize = 1;
const RESYNC_SCRIPT: usize = 2;
const READ_SCRIPT: usize = 3;

/// Where a read's block goes (None: Redis could not be asked).
type Members = oneshot::Sender<Option<Vec<u8>>>;

#[derive(Default)]
struct Work {
    batches: Vec<Batch>,
    reads: Vec<(Arc<str>, usize, Members)>,
}

pub struct RedisPresence {
    address: Address,
    timeout: Duration,
    /// This process's name in Redis: random, so that a host restarted on
    /// the same port is another host (the old one's members leave).
    host: String,
    ttl: Duration,
    history: HistoryLimits,
    /// The scripts: their text and SHA1.
    scripts: [(String, String); 4],
    work: Mutex<Work>,
    wake: Condvar,
    up: AtomicBool,
    /// Batches were dropped (Redis slower than the churn, over
    /// [`MAX_BATCHES`]): say everything again instead.
    resync: AtomicBool,
}

/// Batches queued for Redis at most; beyond, they are dropped and the host
/// resyncs (one script with all it holds), so the queue stays bounded
/// however fast members come and go while Redis is slow.
const MAX_BATCHES: usize = 10_000;

impl RedisPresence {
    /// Starts the thread; `local` is this process's table (what it holds).
    pub fn start(
        cfg: &RedisEngine,
        ttl: Duration,
        history: HistoryLimits,
        local: Arc<Presence>,
        log: Log,
    ) -> anyhow::Result<Arc<RedisPresence>> {
        let mut id = [0u8; 8];
        crate::random::fill(&mut id)?;
        let script = |body: &str| {
            let text = format!("{PRELUDE}{body}");
            let hash = redis::Script::new(&text).get_hash().to_owned();
            (text, hash)
        };
        let presence = Arc::new(RedisPresence {
            address: Address::parse(&cfg.url)?,
            timeout: cfg.timeout,
            host: id.iter().map(|b| format!("{b:02x}")).collect(),
            ttl,
            history,
            scripts: [script(APPLY), script(SWEEP), script(RESYNC), script(READ)],
            work: Mutex::new(Work::default()),
            wake: Condvar::new(),
            up: AtomicBool::new(false),
            resync: AtomicBool::new(false),
        });
        let thread = presence.clone();
        std::thread::Builder::new().name("house-presence".into()).spawn(move || thread.run(&local, log))?;
        Ok(presence)
    }

    fn work(&self) -> MutexGuard<'_, Work> {
        self.work.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every host's members of `channel` (their info, in byte order), at
    /// most `limit`, as `presence()`'s block; None if Redis cannot be
    /// reached.
    async fn read(&self, channel: &str, limit: usize) -> Option<Vec<u8>> {
        if !self.up.load(Ordering::Acquire) {
            return None;
        }
        let (reply, answer) = oneshot::channel();
        self.work().reads.push((channel.into(), limit, reply));
        self.wake.notify_one();
        answer.await.ok().flatten()
    }

    /// A script call with the arguments every script takes.
    fn script(&self, which: usize) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.scripts[which].1).arg(0).arg(&self.host);
        // Three quarters of the ttl: a sweep every quarter then removes a
        // dead host within the ttl.
        cmd.arg((self.ttl.as_millis() * 3 / 4) as u64);
        cmd.arg(self.history.events).arg(self.history.idle.as_millis() as u64).arg(BATCH_EVENTS);
        cmd
    }

    fn run(self: Arc<Self>, local: &Presence, mut log: Log) {
        let mut backoff = Backoff::new();
        // Said once per outage, not at every attempt.
        let mut said = false;
        loop {
            let mut conn = match Conn::open(&self.address, self.timeout) {
                Ok(conn) => conn,
                Err(e) => {
                    if !std::mem::replace(&mut said, true) {
                        log.line(format_args!("house: presence: cannot reach {}: {e:#}", self.address.shown));
                    }
                    backoff.wait();
                    continue;
                }
            };
            said = false;
            let since = Instant::now();
            self.up.store(true, Ordering::Release);
            if let Err(e) = self.serve(&mut conn, local) {
                log.line(format_args!("house: presence: lost {}: {e:#}", self.address.shown));
            }
            self.up.store(false, Ordering::Release);
            // Reads waiting now are answered "unreachable"; batches are
            // dropped: the resync after reconnecting says it all again.
            let work = std::mem::take(&mut *self.work());
            for (_, _, reply) in work.reads {
                let _ = reply.send(None);
            }
            backoff.lost(since);
        }
    }

    /// Serves one connection until it fails: first says what this host
    /// holds, then batches and reads as they come, and a sweep each
    /// quarter of the ttl.
    fn serve(&self, conn: &mut Conn, local: &Presence) -> anyhow::Result<()> {
        let quarter = self.ttl / 4;
        let mut resync = true;
        let mut next_sweep = Instant::now();
        loop {
            if Instant::now() >= next_sweep {
                next_sweep = Instant::now() + quarter;
                let fresh = self.call(conn, self.script(SWEEP_SCRIPT), SWEEP_SCRIPT)?;
                resync |= fresh == Value::Int(1);
            }
            if resync || self.resync.swap(false, Ordering::AcqRel) {
                resync = false;
                // Batches queued before this snapshot are in it.
                self.work().batches.clear();
                let mut cmd = self.script(RESYNC_SCRIPT);
                for (channel, info) in local.snapshot() {
                    cmd.arg(format!("{channel}\n{info}"));
                }
                self.call(conn, cmd, RESYNC_SCRIPT)?;
            }
            let work = {
                let mut work = self.work();
                while work.batches.is_empty() && work.reads.is_empty() && !self.resync.load(Ordering::Acquire) {
                    let left = next_sweep.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    work = self.wake.wait_timeout(work, left).unwrap_or_else(PoisonError::into_inner).0;
                }
                std::mem::take(&mut *work)
            };
            for batch in work.batches {
                let mut cmd = self.script(APPLY_SCRIPT);
                cmd.arg(&*batch.channel);
                for (info, joined) in &batch.changes {
                    cmd.arg(&**info).arg(if *joined { "1" } else { "0" });
                }
                self.call(conn, cmd, APPLY_SCRIPT)?;
            }
            for (channel, limit, reply) in work.reads {
                let mut cmd = self.script(READ_SCRIPT);
                cmd.arg(&*channel).arg(limit.min(i32::MAX as usize));
                let joined = match self.call(conn, cmd, READ_SCRIPT)? {
                    Value::BulkString(b) => b,
                    _ => Vec::new(),
                };
                let names: Vec<&[u8]> = joined.split(|&b| b == b'\n').filter(|n| !n.is_empty()).collect();
                let block = house_abi::kv::encode_list(names.iter().map(|n| (*n, &[][..])), false);
                let _ = reply.send(Some(block));
            }
        }
    }

    /// Runs a script by its SHA1, loading it first if Redis does not have
    /// it (a restarted Redis forgets its scripts).
    fn call(&self, conn: &mut Conn, cmd: redis::Cmd, which: usize) -> anyhow::Result<Value> {
        let packed = cmd.get_packed_command();
        match conn.query(&packed, 1)?.pop() {
            Some(Err(e)) if e.code() == Some("NOSCRIPT") => {
                conn.command(redis::cmd("SCRIPT").arg("LOAD").arg(&self.scripts[which].0))?;
                Ok(conn.query(&packed, 1)?.pop().unwrap_or(Ok(Value::Nil))?)
            }
            Some(reply) => Ok(reply?),
            None => Ok(Value::Nil),
        }
    }
}

impl Remote for RedisPresence {
    fn apply(&self, batch: Batch) {
        // Down: nothing queues; the resync after reconnecting says it all.
        if !self.up.load(Ordering::Acquire) {
            return;
        }
        let mut work = self.work();
        if work.batches.len() >= MAX_BATCHES {
            work.batches.clear();
            self.resync.store(true, Ordering::Release);
        } else {
            work.batches.push(batch);
        }
        drop(work);
        self.wake.notify_one();
    }

    fn members<'a>(
        &'a self,
        channel: &'a str,
        limit: usize,
    ) -> std::pin::Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send + 'a>> {
        Box::pin(self.read(channel, limit))
    }
}
