//! The Redis engine: channels and their history shared by every house on
//! one Redis server. A guest call's events are part of its commit
//! (`kv::redis`): one script appends each to its channel's stream (`XADD
//! ... MAXLEN ~`, expiring when idle), which gives it its id, and publishes
//! (PUBLISH) it with that id, together with the call's writes. Every host
//! sees every channel's events in id order, and any host can replay any
//! channel; a call is answered only once its events are there, and while
//! Redis cannot be reached it is answered 503, nothing published.
//!
//! The event loops never touch a Redis socket. The hub tells the bridge
//! when a channel gains its first listener in this process and loses its
//! last (so a process subscribes only to what it has listeners for), and
//! asks it what an opening stream is owed.
//!
//! Two threads per process:
//! - the *writer* connects, sends SUBSCRIBE / UNSUBSCRIBE on the
//!   subscription socket, answers opening streams (once Redis has confirmed
//!   their channels' subscriptions, so that the history read and the live
//!   events meet without a gap), and reconnects with backoff when a socket
//!   fails;
//! - the *reader* reads the subscription socket and hands the events (this
//!   host's own too: that is how they reach its loops) to the hub.
//!
//! The subscription socket is a plain `TcpStream` split between the two
//! (the `redis` crate encodes the commands and parses the replies): the
//! crate's synchronous `PubSub` owns its connection, so a subscription could
//! only change between two of its blocking reads, i.e. after a poll timeout.
//!
//! While the subscription is down, a stream that asks for its history
//! starts with a reset; once it is back, every stream is ended with a retry
//! hint and resumes from its last id (`Hub::resync_streams`). Redis's own
//! output buffer limits drop a subscriber that falls far behind; the
//! reader then sees the socket close and reconnects.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::bail;
use redis::Value;

use house_abi::ID_LINE_MAX;

use super::broker::{Deliver, EngineStats, Link, Opener};
use super::history::{EventId, Replay, Start};
use super::redis_conn::{Address, Backoff, Conn};
use super::redis_replay::{CHECK, Replays, unavailable};
use crate::config::{HistoryLimits, RedisEngine};
use crate::log::Log;

/// Redis channel names are the house channel's with this prefix: pub/sub is
/// not per database in Redis, and others may use the same server.
pub const PREFIX: &str = "house:";
/// The first byte of every message: its format (1 was round 2's, before
/// ids: an origin tag and the frame). Format 2: the frame, `id:` first.
const FORMAT: u8 = 2;

/// Channels per SUBSCRIBE command.
const SUBSCRIBE_CHUNK: usize = 512;

pub struct Bridge {
    address: Address,
    /// `--engine-timeout-ms`: every socket's read and write timeout; the
    /// subscription socket is pinged at half of it when idle, so that a
    /// hung Redis is noticed there too.
    timeout: Duration,
    /// What a stream that opens is owed, read from Redis.
    replays: Replays,
    hub: Arc<dyn Deliver>,
    state: Mutex<State>,
    wake: Condvar,
    up: AtomicBool,
    refused: AtomicU64,
}

#[derive(Default)]
struct State {
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
    commands: Conn,
    subscriptions: TcpStream,
    reader: std::thread::JoinHandle<()>,
    check: String,
}

impl Bridge {
    pub fn start(
        cfg: &RedisEngine,
        hub: Arc<dyn Deliver>,
        sse_buffer: usize,
        history: HistoryLimits,
        log: Log,
    ) -> anyhow::Result<Arc<Bridge>> {
        let bridge = Arc::new(Bridge {
            address: Address::parse(&cfg.url)?,
            timeout: cfg.timeout,
            replays: Replays { sse_buffer, history },
            hub,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            up: AtomicBool::new(false),
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
            refused: self.refused.load(Ordering::Relaxed),
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
                            self.address.shown
                        ));
                        log.flush_now();
                        said_down = true;
                    }
                    backoff.wait();
                    continue;
                }
            };
            let channels = self.state().subscribed.len();
            log.line(format_args!("house: engine {}: connected, {channels} channels subscribed", self.address.shown));
            log.flush_now();
            if said_down || channels > 0 {
                // Streams that were open before this connection (an outage,
                // or a start without Redis) were not subscribed on Redis
                // meanwhile, and other hosts' events could not reach them:
                // they resume from their last id, and get the gap from
                // Redis's history.
                self.hub.resync();
            }
            let since = std::time::Instant::now();
            let why = self.serve(&mut connected);
            self.disconnect(connected);
            log.line(format_args!("house: engine {}: lost Redis ({why}); retrying", self.address.shown));
            log.flush_now();
            said_down = true;
            backoff.lost(since);
        }
    }

    fn connect(self: &Arc<Self>) -> anyhow::Result<Connected> {
        let mut commands = Conn::open(&self.address, self.timeout)?;
        let check = match commands.command(redis::cmd("SCRIPT").arg("LOAD").arg(CHECK))? {
            Value::BulkString(hash) => String::from_utf8(hash)?,
            other => bail!("SCRIPT LOAD answered {other:?}"),
        };
        // Its reads time out too: it is pinged every half of the timeout
        // (`serve`), so silence that long is a Redis that hangs.
        let subscriptions = self.address.dial(self.timeout)?;
        let reader = {
            let bridge = self.clone();
            let stream = subscriptions.try_clone()?;
            std::thread::Builder::new().name("house-redis-in".into()).spawn(move || bridge.read(stream))?
        };
        // From here on, listens count as changes; what
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
        let mut connected = Connected { commands, subscriptions, reader, check };
        if let Err(e) = send_subscriptions(&mut connected.subscriptions, "SUBSCRIBE", &all) {
            self.disconnect(connected);
            return Err(e.into());
        }
        Ok(connected)
    }

    /// Closes both sockets, waits for the reader to stop, and starts the
    /// streams that waited, with a reset if they wanted history.
    fn disconnect(&self, connected: Connected) {
        self.up.store(false, Ordering::Release);
        let _ = connected.subscriptions.shutdown(Shutdown::Both);
        let _ = connected.reader.join();
        let mut state = self.state();
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

    /// (Un)subscribes what changed and answers the streams whose channels
    /// are live, until a socket fails; returns why.
    fn serve(&self, connected: &mut Connected) -> String {
        loop {
            let (on, off, ready) = {
                let mut state = self.state();
                loop {
                    if let Some(why) = state.broken.take() {
                        return why;
                    }
                    let ready = state.opens.iter().any(|o| state.live(&o.channels));
                    if !state.changed.is_empty() || ready {
                        break;
                    }
                    let (next, waited) =
                        self.wake.wait_timeout(state, self.timeout / 2).unwrap_or_else(PoisonError::into_inner);
                    state = next;
                    if waited.timed_out() {
                        drop(state);
                        // In subscribe mode Redis answers `pong`: the reader
                        // hears something within its read timeout.
                        if let Err(e) = connected.subscriptions.write_all(&redis::cmd("PING").get_packed_command()) {
                            return e.to_string();
                        }
                        state = self.state();
                    }
                }
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
                self.give_up(ready);
                return e.to_string();
            }
            if let Err(e) = self.answer(connected, ready) {
                return e;
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
        let asks: Vec<(&[Arc<str>], &Start)> = groups.iter().map(|(o, _)| (&o.channels[..], &o.start)).collect();
        let failed = match self.replays.read(&mut connected.commands, &connected.check, &asks, &self.refused) {
            Ok(replays) => {
                for ((open, others), replay) in groups.into_iter().zip(replays) {
                    for opener in others {
                        self.hub.opened(opener, replay.clone());
                    }
                    self.hub.opened(open.opener, replay);
                }
                return Ok(());
            }
            Err(e) => e,
        };
        for (open, others) in groups {
            for opener in others {
                self.hub.opened(opener, unavailable(&open.start));
            }
            self.hub.opened(open.opener, unavailable(&open.start));
        }
        Err(failed)
    }

    /// Streams that cannot get their history: they start with a reset.
    fn give_up(&self, opens: Vec<PendingOpen>) {
        for open in opens {
            self.hub.opened(open.opener, unavailable(&open.start));
        }
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
                    && frame.len() <= self.replays.sse_buffer + ID_LINE_MAX
                    && frame.ends_with(b"\n\n") =>
            {
                self.hub.event(name, id, &Arc::from(frame));
            }
            _ => {
                self.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
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
