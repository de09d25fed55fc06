//! The Redis engine: channels and their history shared by every house on
//! one Redis server. Each event is appended to its channel's stream
//! (`XADD ... MAXLEN ~`, expiring when idle), which gives it its id, and
//! published (PUBLISH) with that id, in one script: every host sees every
//! channel's events in id order, and any host can replay any channel.
//!
//! The event loops never touch a Redis socket. The hub tells the bridge
//! when a channel gains its first listener in this process and loses its
//! last (so a process subscribes only to what it has listeners for), hands
//! it every event published here, under the hub's lock, and asks it what
//! an opening stream is owed. The bridge only queues (bounded:
//! `--engine-queue-events`, `--engine-queue-bytes`; beyond, the event is
//! counted as unsent) and wakes its thread.
//!
//! Two threads per process:
//! - the *writer* connects, sends queued events as one pipeline of scripts
//!   per wake-up, sends SUBSCRIBE / UNSUBSCRIBE on the subscription socket,
//!   answers opening streams (once Redis has confirmed their channels'
//!   subscriptions, so that the history read and the live events meet
//!   without a gap), and reconnects with backoff when a socket fails;
//! - the *reader* reads the subscription socket and hands the events (this
//!   host's own too: that is how they get their ids) to the hub.
//!
//! The subscription socket is a plain `TcpStream` split between the two
//! (the `redis` crate encodes the commands and parses the replies): the
//! crate's synchronous `PubSub` owns its connection, so a subscription could
//! only change between two of its blocking reads, i.e. after a poll timeout.
//!
//! While Redis is unreachable, local channels work as in `memory`, without
//! ids or history; events that could not cross hosts are counted
//! (`engine_unsent`), not replayed late, and a stream that asks for its
//! history then starts with a reset. Redis's own output buffer limits drop
//! a subscriber that falls far behind; the reader then sees the socket
//! close and reconnects.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use redis::{ConnectionAddr, Value};

use super::EngineStats;
use super::history::{EventId, Replay, Start};
use crate::config::{HistoryLimits, RedisEngine};
use crate::guests::abi::ID_LINE_MAX;
use crate::hub::{Hub, Link, Opener};
use crate::log::Log;

/// Redis channel names are the house channel's with this prefix: pub/sub is
/// not per database in Redis, and others may use the same server.
pub const PREFIX: &str = "house:";
/// A channel's history is the stream at this prefix and its name.
pub const HISTORY: &str = "house:history:";
/// The first byte of every message: its format (1 was round 2's, before
/// ids: an origin tag and the frame). Format 2: the frame, `id:` first.
const FORMAT: u8 = 2;

/// Appends an event to its channel's history and publishes it with the id
/// that gave it, atomically: ids and publishes are in the same order.
/// KEYS: the stream, the pub/sub channel. ARGV: events kept, idle ms, the
/// framed event without its id.
const PUBLISH: &str = r"
local trim = ARGV[1] == '0' and '=' or '~'
local id = redis.call('XADD', KEYS[1], 'MAXLEN', trim, ARGV[1], '*', 'e', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], '\2id: ' .. id .. '\n' .. ARGV[3])
return 0
";

/// Whether an opening stream's resume can be honoured. KEYS: its
/// channels' streams. ARGV: the id it resumes after ('' for none), the
/// idle ms. Returns {reset (0 or 1), the newest id on them or ''}.
///
/// A resume is honoured if every channel's history covers it: the id is at
/// or after the channel's first kept entry (trimming takes the oldest) or
/// its last; a channel with no stream, or one never trimmed (Redis 7's
/// `entries-added` is its length) but perhaps recreated since it expired,
/// has lost nothing after an id younger than the idle time. The entries
/// themselves are read by XRANGE beside it in one MULTI (`Bridge::answer`):
/// Lua would copy each into a table and back, at six times the cost.
const CHECK: &str = r"
local after, idle = ARGV[1], tonumber(ARGV[2])
local function parse(id)
  if not id then return nil end
  local ms, seq = string.match(id, '^(%d+)%-(%d+)$')
  if not ms or #ms > 15 or #seq > 15 then return nil end
  return {tonumber(ms), tonumber(seq)}
end
local function before(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local newest, newest_text, infos = nil, '', {}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    local flat = redis.call('XINFO', 'STREAM', key)
    local info = {}
    for j = 1, #flat, 2 do info[flat[j]] = flat[j + 1] end
    infos[i] = info
    local last = parse(info['last-generated-id'])
    if last and (newest == nil or before(newest, last)) then newest, newest_text = last, info['last-generated-id'] end
  end
end
if after == '' then return {0, newest_text} end
local a = parse(after)
if a == nil or newest == nil or before(newest, a) then return {1, newest_text} end
for i, key in ipairs(KEYS) do
  local info, ok = infos[i], false
  if info == nil then
    ok = a[1] >= now - idle
  else
    local first = info['first-entry'] and parse(info['first-entry'][1])
    local last = parse(info['last-generated-id'])
    local added, length = tonumber(info['entries-added']), tonumber(info['length'])
    if (first and not before(a, first)) or (last and not before(a, last)) then
      ok = true
    elseif added ~= nil and added == length then
      ok = a[1] >= now - idle
    end
  end
  if not ok then return {1, newest_text} end
end
return {0, newest_text}
";

/// Reconnection backoff, from the first retry to the last.
const FIRST_RETRY: Duration = Duration::from_millis(50);
const LAST_RETRY: Duration = Duration::from_secs(1);
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A reply slower than this means the connection is dead.
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// `MAXLEN ~` trims whole nodes of a stream (100 entries each, Redis's
/// default): a channel may keep this many more than `--history-events`,
/// and a stream may be replayed that many more.
const TRIM_SLACK: usize = 200;
/// Channels per SUBSCRIBE command.
const SUBSCRIBE_CHUNK: usize = 512;

/// Refuses what `--engine` could never connect to (a bad port, TLS, a Unix
/// socket), so that a typo stops the server at start.
pub fn check_url(url: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    match client.get_connection_info().addr() {
        ConnectionAddr::Tcp(..) => Ok(()),
        _ => bail!("only redis://HOST:PORT[/DB] (plain TCP) is supported"),
    }
}

/// How long to wait before the next connection attempt (the engine's and
/// the key-value store's connections use one each).
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { next: FIRST_RETRY }
    }

    /// After a failed attempt: waits, twice as long each time up to a limit.
    pub(crate) fn wait(&mut self) {
        std::thread::sleep(self.next);
        self.next = (self.next * 2).min(LAST_RETRY);
    }

    /// After a connection that served since `since` broke. One that breaks
    /// at once (a refused AUTH on the subscription socket, a proxy that
    /// accepts and closes) backs off like a failed connect instead of
    /// becoming a busy loop; one that lasted retries at once.
    pub(crate) fn lost(&mut self, since: std::time::Instant) {
        if since.elapsed() >= LAST_RETRY {
            self.next = FIRST_RETRY;
        } else {
            self.wait();
        }
    }
}

/// A client for `--engine URL`, its host and port, and the address to show
/// in the log (without the password).
pub(crate) fn open(url: &str) -> anyhow::Result<(redis::Client, String, u16, String)> {
    let client = redis::Client::open(url).context("--engine")?;
    let info = client.get_connection_info();
    let ConnectionAddr::Tcp(host, port) = info.addr().clone() else {
        bail!("--engine: only redis://HOST:PORT[/DB] (plain TCP) is supported");
    };
    let shown = format!("redis://{host}:{port}/{}", info.redis_settings().db());
    Ok((client, host, port, shown))
}

pub struct Bridge {
    /// The address without its password, for the log.
    shown: String,
    host: String,
    port: u16,
    auth: Option<(Option<String>, String)>,
    client: redis::Client,
    queue_events: usize,
    queue_bytes: usize,
    sse_buffer: usize,
    history: HistoryLimits,
    hub: Arc<Hub>,
    state: Mutex<State>,
    wake: Condvar,
    up: AtomicBool,
    unsent: AtomicU64,
    refused: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Events to send, in order, and their bytes.
    queue: VecDeque<(Arc<str>, Arc<[u8]>)>,
    bytes: usize,
    /// Channels with listeners in this process.
    wanted: HashSet<Arc<str>>,
    /// Channels whose listening changed since the writer last looked (a
    /// set: churn on one channel is one entry, so this is bounded by the
    /// channels there are).
    changed: HashSet<Arc<str>>,
    /// Channels subscribed on the connection, and of those the SUBSCRIBEs
    /// Redis has not confirmed yet: a channel is live once none is pending.
    subscribed: HashSet<Arc<str>>,
    awaiting: HashMap<Arc<str>, u32>,
    /// Streams waiting for their channels to be live, or their history
    /// (at most one per connection).
    opens: Vec<PendingOpen>,
    /// Why the reader stopped, if it did.
    broken: Option<String>,
}

impl State {
    fn live(&self, channels: &[Arc<str>]) -> bool {
        channels.iter().all(|c| self.subscribed.contains(c) && !self.awaiting.contains_key(c))
    }
}

struct PendingOpen {
    opener: Opener,
    channels: Vec<Arc<str>>,
    start: Start,
}

/// The two sockets of one connection to Redis, and the scripts loaded.
struct Connected {
    commands: redis::Connection,
    subscriptions: TcpStream,
    reader: std::thread::JoinHandle<()>,
    publish: String,
    check: String,
}

impl Bridge {
    pub fn start(
        cfg: &RedisEngine,
        hub: Arc<Hub>,
        sse_buffer: usize,
        history: HistoryLimits,
        log: Log,
    ) -> anyhow::Result<Arc<Bridge>> {
        let (client, host, port, shown) = open(&cfg.url)?;
        let settings = client.get_connection_info().redis_settings();
        let auth = settings.password().map(|p| (settings.username().map(str::to_owned), p.to_owned()));
        let bridge = Arc::new(Bridge {
            shown,
            host,
            port,
            auth,
            client,
            queue_events: cfg.queue_events,
            queue_bytes: cfg.queue_bytes,
            sse_buffer,
            history,
            hub,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            up: AtomicBool::new(false),
            unsent: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let writer = bridge.clone();
        std::thread::Builder::new().name("house-redis".into()).spawn(move || writer.run(log))?;
        Ok(bridge)
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            kind: "redis",
            up: self.up.load(Ordering::Acquire),
            unsent: self.unsent.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    /// Waits up to `limit` for the events queued to be sent (shutdown).
    pub fn drain(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        let mut state = self.state();
        while !state.queue.is_empty() && self.up.load(Ordering::Acquire) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            state = self
                .wake
                .wait_timeout(state, left.min(Duration::from_millis(10)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The writer thread: connect, serve until something breaks, say so
    /// once, retry with backoff, forever.
    fn run(self: Arc<Self>, mut log: Log) {
        let mut backoff = Backoff::new();
        // Whether the current outage (or the start) has been said.
        let mut said_down = false;
        loop {
            let mut connected = match self.connect() {
                Ok(c) => c,
                Err(e) => {
                    if !said_down {
                        log.line(format_args!(
                            "house: engine {}: cannot reach Redis ({e:#}); channels stay on this host until it \
                             answers, retrying",
                            self.shown
                        ));
                        log.flush_now();
                        said_down = true;
                    }
                    backoff.wait();
                    continue;
                }
            };
            let channels = self.state().subscribed.len();
            log.line(format_args!("house: engine {}: connected, {channels} channels subscribed", self.shown));
            log.flush_now();
            if said_down {
                // Events of other hosts could not reach this one's streams
                // meanwhile, and this host's own went out without ids: its
                // streams resume from their last id, and get the gap from
                // Redis's history.
                self.hub.resync_streams();
            }
            let since = std::time::Instant::now();
            let why = self.serve(&mut connected);
            self.disconnect(connected);
            log.line(format_args!("house: engine {}: lost Redis ({why}); retrying", self.shown));
            log.flush_now();
            said_down = true;
            backoff.lost(since);
        }
    }

    fn connect(self: &Arc<Self>) -> anyhow::Result<Connected> {
        let mut commands = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        commands.set_read_timeout(Some(REPLY_TIMEOUT))?;
        commands.set_write_timeout(Some(REPLY_TIMEOUT))?;
        let mut load = |script: &str| redis::cmd("SCRIPT").arg("LOAD").arg(script).query::<String>(&mut commands);
        let (publish, check) = (load(PUBLISH)?, load(CHECK)?);
        let mut subscriptions = self.dial()?;
        if let Some((user, password)) = &self.auth {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = user {
                auth.arg(user);
            }
            subscriptions.write_all(&auth.arg(password).get_packed_command())?;
        }
        let reader = {
            let bridge = self.clone();
            let stream = subscriptions.try_clone()?;
            std::thread::Builder::new().name("house-redis-in".into()).spawn(move || bridge.read(stream))?
        };
        // From here on, publishes queue and listens count as changes; what
        // is wanted now is subscribed below, what changes later next turn.
        // (A reader that failed already has set `broken`: kept, and seen
        // by the first turn of `serve`.)
        let all: Vec<Arc<str>> = {
            let mut state = self.state();
            state.changed.clear();
            self.up.store(true, Ordering::Release);
            let all: Vec<Arc<str>> = state.wanted.iter().cloned().collect();
            for channel in &all {
                state.subscribed.insert(channel.clone());
                *state.awaiting.entry(channel.clone()).or_default() += 1;
            }
            all
        };
        let mut connected = Connected { commands, subscriptions, reader, publish, check };
        if let Err(e) = send_subscriptions(&mut connected.subscriptions, "SUBSCRIBE", &all) {
            self.disconnect(connected);
            return Err(e.into());
        }
        Ok(connected)
    }

    /// Closes both sockets, waits for the reader to stop, counts what was
    /// still queued as unsent (it is not replayed after a reconnect), and
    /// starts the streams that waited, with a reset if they wanted history.
    fn disconnect(&self, connected: Connected) {
        self.up.store(false, Ordering::Release);
        let _ = connected.subscriptions.shutdown(Shutdown::Both);
        let _ = connected.reader.join();
        let mut state = self.state();
        self.unsent.fetch_add(state.queue.len() as u64, Ordering::Relaxed);
        state.queue.clear();
        state.bytes = 0;
        state.broken = None;
        state.subscribed.clear();
        state.awaiting.clear();
        let opens = std::mem::take(&mut state.opens);
        drop(state);
        self.wake.notify_all();
        for open in opens {
            self.hub.opened(open.opener, unavailable(&open.start));
        }
    }

    /// The subscription socket: plain TCP, with keep-alive so that a Redis
    /// host that vanished is noticed even when nothing is published.
    fn dial(&self) -> anyhow::Result<TcpStream> {
        let mut last = None;
        for addr in (self.host.as_str(), self.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
                    let keepalive = socket2::TcpKeepalive::new()
                        .with_time(Duration::from_secs(10))
                        .with_interval(Duration::from_secs(5))
                        .with_retries(3);
                    socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive)?;
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(|| anyhow::anyhow!("{} resolves to no address", self.host), Into::into))
    }

    /// Sends what was queued, (un)subscribes what changed and answers the
    /// streams whose channels are live, until a socket fails; returns why.
    fn serve(&self, connected: &mut Connected) -> String {
        let mut batch = VecDeque::new();
        loop {
            let (on, off, ready) = {
                let mut state = self.state();
                loop {
                    if let Some(why) = state.broken.take() {
                        return why;
                    }
                    let ready = state.opens.iter().any(|o| state.live(&o.channels));
                    if !state.queue.is_empty() || !state.changed.is_empty() || ready {
                        break;
                    }
                    state = self.wake.wait(state).unwrap_or_else(PoisonError::into_inner);
                }
                std::mem::swap(&mut state.queue, &mut batch);
                state.bytes = 0;
                let changed = std::mem::take(&mut state.changed);
                let (mut on, mut off) = (Vec::new(), Vec::new());
                for channel in changed {
                    if state.wanted.contains(&channel) {
                        if state.subscribed.insert(channel.clone()) {
                            *state.awaiting.entry(channel.clone()).or_default() += 1;
                            on.push(channel);
                        }
                    } else if state.subscribed.remove(&channel) {
                        off.push(channel);
                    }
                }
                let opens = std::mem::take(&mut state.opens);
                let (ready, waiting): (Vec<_>, Vec<_>) = opens.into_iter().partition(|o| state.live(&o.channels));
                state.opens = waiting;
                (on, off, ready)
            };
            if let Err(e) = send_subscriptions(&mut connected.subscriptions, "SUBSCRIBE", &on)
                .and_then(|()| send_subscriptions(&mut connected.subscriptions, "UNSUBSCRIBE", &off))
            {
                self.unsent.fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.give_up(ready);
                return e.to_string();
            }
            if let Err(e) = self.answer(connected, ready) {
                self.unsent.fetch_add(batch.len() as u64, Ordering::Relaxed);
                return e;
            }
            if batch.is_empty() {
                continue;
            }
            let mut pipe = redis::pipe();
            let idle = self.history.idle.as_millis().to_string();
            for (channel, body) in batch.drain(..) {
                pipe.cmd("EVALSHA")
                    .arg(&connected.publish)
                    .arg(2)
                    .arg(format!("{HISTORY}{channel}"))
                    .arg(format!("{PREFIX}{channel}"))
                    .arg(self.history.events)
                    .arg(&idle)
                    .arg(&body[..])
                    .ignore();
            }
            let sent = pipe.query::<()>(&mut connected.commands);
            // Waiters in `drain` look at an empty queue.
            self.wake.notify_all();
            if let Err(e) = sent {
                self.unsent.fetch_add(pipe.len() as u64, Ordering::Relaxed);
                return e.to_string();
            }
        }
    }

    /// Starts the streams whose channels are live: at once if they want no
    /// history, else after reading it (one pipeline for them all).
    fn answer(&self, connected: &mut Connected, ready: Vec<PendingOpen>) -> Result<(), String> {
        let (plain, history): (Vec<_>, Vec<_>) = ready.into_iter().partition(|o| !o.start.wants_history());
        for open in plain {
            self.hub.opened(open.opener, Replay::default());
        }
        if history.is_empty() {
            return Ok(());
        }
        // Streams that ask the same thing get one read: after a restart,
        // a room's pages all come back with the id of its last event.
        let mut groups: Vec<(PendingOpen, Vec<Opener>)> = Vec::new();
        let mut same: HashMap<(Vec<Arc<str>>, Start), usize> = HashMap::new();
        for open in history {
            match same.entry((open.channels.clone(), open.start.clone())) {
                std::collections::hash_map::Entry::Occupied(e) => groups[*e.get()].1.push(open.opener),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(groups.len());
                    groups.push((open, Vec::new()));
                }
            }
        }
        // Per read, one MULTI: the check, then each channel's entries after
        // the id (if it is one), then each channel's newest (if a backlog
        // was asked: a reset falls back on it). One pipeline for them all.
        let mut pipe = redis::pipe();
        let idle = self.history.idle.as_millis().to_string();
        for (open, _) in &groups {
            pipe.cmd("MULTI").ignore();
            pipe.cmd("EVALSHA").arg(&connected.check).arg(open.channels.len()).ignore();
            for channel in &open.channels {
                pipe.arg(format!("{HISTORY}{channel}"));
            }
            pipe.arg(open.start.after.as_deref().unwrap_or("")).arg(&idle);
            if let Some(after) = open.start.after.as_deref().and_then(EventId::parse) {
                for channel in &open.channels {
                    let key = format!("{HISTORY}{channel}");
                    pipe.cmd("XRANGE")
                        .arg(key)
                        .arg(format!("({after}"))
                        .arg("+")
                        .arg("COUNT")
                        .arg(self.replay_max() + 1)
                        .ignore();
                }
            }
            if open.start.backlog > 0 {
                for channel in &open.channels {
                    let key = format!("{HISTORY}{channel}");
                    pipe.cmd("XREVRANGE").arg(key).arg("+").arg("-").arg("COUNT").arg(open.start.backlog).ignore();
                }
            }
            pipe.cmd("EXEC");
        }
        let failed = match pipe.query::<Vec<Value>>(&mut connected.commands) {
            Ok(replies) if replies.len() == groups.len() => {
                for ((open, others), reply) in groups.into_iter().zip(replies) {
                    let replay = self.replay(&open, reply);
                    for opener in others {
                        self.hub.opened(opener, replay.clone());
                    }
                    self.hub.opened(open.opener, replay);
                }
                return Ok(());
            }
            Ok(_) => "a history read got the wrong number of replies".to_owned(),
            Err(e) => e.to_string(),
        };
        for (open, others) in groups {
            for opener in others {
                self.hub.opened(opener, unavailable(&open.start));
            }
            self.hub.opened(open.opener, unavailable(&open.start));
        }
        Err(failed)
    }

    /// Events one stream may be replayed on one channel; beyond, a reset.
    fn replay_max(&self) -> usize {
        self.history.events + TRIM_SLACK
    }

    /// Streams that cannot get their history: they start with a reset.
    fn give_up(&self, opens: Vec<PendingOpen>) {
        for open in opens {
            self.hub.opened(open.opener, unavailable(&open.start));
        }
    }

    /// Turns one stream's EXEC reply (the check, then its XRANGEs, then its
    /// XREVRANGEs) into a replay: entries of each channel merged in id
    /// order, the newest `backlog` of them if that is what it gets.
    fn replay(&self, open: &PendingOpen, reply: Value) -> Replay {
        let Value::Array(items) = reply else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return unavailable(&open.start);
        };
        let mut items = items.into_iter();
        let Some(Value::Array(check)) = items.next() else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return unavailable(&open.start);
        };
        let mut check = check.into_iter();
        let mut reset = !matches!(check.next(), Some(Value::Int(0)));
        let position = match check.next() {
            Some(Value::BulkString(id)) => std::str::from_utf8(&id).ok().and_then(EventId::parse),
            _ => None,
        };
        let n = open.channels.len();
        let after: Vec<Value> = if open.start.after.as_deref().and_then(EventId::parse).is_some() {
            items.by_ref().take(n).collect()
        } else {
            Vec::new()
        };
        let newest: Vec<Value> = if open.start.backlog > 0 { items.take(n).collect() } else { Vec::new() };
        // More to replay than one stream may be sent (by count, or by the
        // memory engine's per-channel byte bound): start over instead.
        fn entries(v: &Value) -> &[Value] {
            match v {
                Value::Array(e) => e,
                _ => &[],
            }
        }
        let body_bytes = |e: &Value| match e {
            Value::Array(parts) => match parts.get(1) {
                Some(Value::Array(fields)) => match fields.get(1) {
                    Some(Value::BulkString(b)) => b.len(),
                    _ => 0,
                },
                _ => 0,
            },
            _ => 0,
        };
        let bytes: usize = after.iter().flat_map(|v| entries(v).iter().map(body_bytes)).sum();
        reset |= after.iter().any(|v| entries(v).len() > self.replay_max())
            || bytes > self.history.bytes.saturating_mul(open.channels.len());
        let resumed = open.start.after.is_some() && !reset;
        let chosen = if resumed { after } else { newest };
        let mut picked: Vec<(EventId, Arc<[u8]>)> = Vec::new();
        let mut live_after = Vec::new();
        for (channel, entries) in open.channels.iter().zip(chosen) {
            let Value::Array(entries) = entries else { continue };
            let mut last = None;
            for entry in entries {
                if let Some((id, frame)) = self.entry(entry) {
                    last = last.max(Some(id));
                    picked.push((id, frame));
                }
            }
            if let Some(id) = last {
                live_after.push((channel.clone(), id));
            }
        }
        picked.sort_by_key(|(id, _)| *id);
        let skip = if resumed { 0 } else { picked.len().saturating_sub(open.start.backlog) };
        let frames = picked.into_iter().skip(skip).map(|(_, frame)| frame).collect();
        Replay { reset, position, frames, live_after }
    }

    /// One stream entry, `[id, ["e", body]]`, as a framed event with its id.
    fn entry(&self, entry: Value) -> Option<(EventId, Arc<[u8]>)> {
        let Value::Array(parts) = entry else { return None };
        let mut parts = parts.into_iter();
        let (Some(Value::BulkString(id)), Some(Value::Array(fields))) = (parts.next(), parts.next()) else {
            return None;
        };
        let id = EventId::parse(std::str::from_utf8(&id).ok()?)?;
        let body = match fields.into_iter().nth(1) {
            Some(Value::BulkString(body)) if body.ends_with(b"\n\n") && body.len() <= self.sse_buffer => body,
            _ => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        Some((id, super::history::with_id(id, &body).into()))
    }

    /// The reader thread: events, this host's own included, to the hub.
    fn read(self: Arc<Self>, mut stream: TcpStream) {
        let mut parser = redis::Parser::new();
        let why = loop {
            match parser.parse_value(&mut stream) {
                Ok(Value::Array(items)) => self.received(items),
                // A refused AUTH, for one.
                Ok(Value::ServerError(e)) => break format!("Redis said: {e}"),
                Ok(_) => {}
                Err(e) => break e.to_string(),
            }
        };
        let mut state = self.state();
        state.broken.get_or_insert(why);
        drop(state);
        self.wake.notify_all();
    }

    fn received(&self, items: Vec<Value>) {
        let mut items = items.into_iter();
        let (Some(Value::BulkString(kind)), Some(Value::BulkString(channel)), Some(third)) =
            (items.next(), items.next(), items.next())
        else {
            return;
        };
        let name = channel.strip_prefix(PREFIX.as_bytes()).and_then(|c| std::str::from_utf8(c).ok());
        if kind == b"subscribe" {
            // A SUBSCRIBE confirmed: the channel is live once none is pending.
            if let Some(name) = name {
                let mut state = self.state();
                if let Some(n) = state.awaiting.get_mut(name) {
                    *n -= 1;
                    if *n == 0 {
                        state.awaiting.remove(name);
                    }
                }
                drop(state);
                self.wake.notify_all();
            }
            return;
        }
        let Value::BulkString(payload) = third else { return };
        if kind != b"message" {
            return;
        }
        let frame = payload.get(1..).unwrap_or_default();
        let id = frame
            .strip_prefix(b"id: ")
            .and_then(|rest| rest.split(|&b| b == b'\n').next())
            .and_then(|id| std::str::from_utf8(id).ok())
            .and_then(EventId::parse);
        match (name, id) {
            (Some(name), Some(id))
                if payload.first() == Some(&FORMAT)
                    && frame.len() <= self.sse_buffer + ID_LINE_MAX
                    && frame.ends_with(b"\n\n") =>
            {
                self.hub.publish_remote(name, Some(id), &Arc::from(frame));
            }
            _ => {
                self.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// What a stream starts with when its history cannot be read: nothing, or
/// a reset if it asked for history.
fn unavailable(start: &Start) -> Replay {
    Replay { reset: start.wants_history(), ..Replay::default() }
}

impl Link for Bridge {
    fn listen(&self, channel: &Arc<str>) {
        let mut state = self.state();
        state.wanted.insert(channel.clone());
        if self.up.load(Ordering::Acquire) {
            state.changed.insert(channel.clone());
            drop(state);
            self.wake.notify_all();
        }
    }

    fn unlisten(&self, channel: &Arc<str>) {
        let mut state = self.state();
        state.wanted.remove(channel);
        if self.up.load(Ordering::Acquire) {
            state.changed.insert(channel.clone());
            drop(state);
            self.wake.notify_all();
        }
    }

    fn publish(&self, channel: &str, body: &Arc<[u8]>) -> bool {
        if !self.up.load(Ordering::Acquire) {
            self.unsent.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let mut state = self.state();
        if state.queue.len() >= self.queue_events || state.bytes + body.len() > self.queue_bytes {
            drop(state);
            self.unsent.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        state.bytes += body.len();
        state.queue.push_back((channel.into(), body.clone()));
        drop(state);
        self.wake.notify_all();
        true
    }

    fn open(&self, opener: Opener, channels: &[Arc<str>], start: &Start) -> Option<Replay> {
        if !self.up.load(Ordering::Acquire) {
            return Some(unavailable(start));
        }
        let mut state = self.state();
        if !start.wants_history() && state.live(channels) {
            return Some(Replay::default());
        }
        state.opens.push(PendingOpen { opener, channels: channels.to_vec(), start: start.clone() });
        drop(state);
        self.wake.notify_all();
        None
    }
}

fn send_subscriptions(stream: &mut TcpStream, verb: &str, channels: &[Arc<str>]) -> std::io::Result<()> {
    for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
        let mut cmd = redis::cmd(verb);
        for channel in chunk {
            cmd.arg(format!("{PREFIX}{channel}"));
        }
        stream.write_all(&cmd.get_packed_command())?;
    }
    Ok(())
}
