//! What `GET /_house/metrics` says, in Prometheus's text format (0.0.4).
//!
//! Two kinds of figures. Those every request touches are kept per loop
//! ([`LoopMetrics`]): one loop writes them, so a counter is a plain load and
//! store (no locked instruction) and the route table's mutex is never
//! contended but by a scrape. Those every guest call touches are atomics
//! split by loop ([`crate::shard`]), each loop's on cache lines of its own.
//! The rare ones (loads, quarantines, re-runs) are process-wide atomics in
//! [`METRICS`]. Gauges (open connections, channels, engine state) are read
//! when scraped.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::shard::{self, Padded, SHARDS};

/// Histogram bucket bounds, seconds: from a cheap 404 (tens of µs) to a
/// call at its deadline and a slow client.
const BOUNDS: [f64; 14] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

pub struct Histogram {
    /// Per bucket (not cumulative; the last is +Inf), then the count's sum.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    const fn new() -> Histogram {
        Histogram { buckets: [const { AtomicU64::new(0) }; BOUNDS.len() + 1], sum_ns: AtomicU64::new(0) }
    }

    fn bucket(d: Duration) -> usize {
        let s = d.as_secs_f64();
        BOUNDS.iter().position(|&b| s <= b).unwrap_or(BOUNDS.len())
    }

    /// Observes `d` (shared writers: atomic additions).
    pub fn observe(&self, d: Duration) {
        self.buckets[Histogram::bucket(d)].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    /// Observes `d` from this histogram's only writer.
    fn observe_alone(&self, d: Duration) {
        bump(&self.buckets[Histogram::bucket(d)], 1);
        bump(&self.sum_ns, d.as_nanos() as u64);
    }

    fn add_to(&self, total: &mut [u64; BOUNDS.len() + 2]) {
        for (t, b) in total.iter_mut().zip(&self.buckets) {
            *t += b.load(Relaxed);
        }
        total[BOUNDS.len() + 1] += self.sum_ns.load(Relaxed);
    }
}

/// Adds `n` to a counter that only the calling thread writes: a load and
/// a store, not a locked read-modify-write.
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed) + n, Relaxed);
}

/// One loop's figures.
#[derive(Default)]
pub struct LoopMetrics {
    /// Route (its pattern, or `unmatched` / `unparsed`) -> status -> count.
    /// Bounded: labels are route patterns (never raw paths) of the modules
    /// served since the start, and statuses are 100..=599.
    requests: Mutex<HashMap<String, HashMap<u16, u64>>>,
    request_seconds: HistogramCell,
    events_delivered: AtomicU64,
    subscribers_dropped: AtomicU64,
}

/// A histogram in a `Default` struct.
pub struct HistogramCell(Histogram);

impl Default for HistogramCell {
    fn default() -> HistogramCell {
        HistogramCell(Histogram::new())
    }
}

impl LoopMetrics {
    /// A new loop's figures, counted in every scrape from now on.
    pub fn register() -> Arc<LoopMetrics> {
        let m = Arc::new(LoopMetrics::default());
        METRICS.loops.lock().unwrap_or_else(PoisonError::into_inner).push(m.clone());
        m
    }

    /// A request answered (its response queued) after `took`.
    pub fn request(&self, route: &str, status: u16, took: Duration) {
        {
            let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
            let by_status = match requests.get_mut(route) {
                Some(by_status) => by_status,
                None => requests.entry(route.to_owned()).or_default(),
            };
            *by_status.entry(status).or_default() += 1;
        }
        self.request_seconds.0.observe_alone(took);
    }

    /// Events written to subscribers.
    pub fn delivered(&self, events: u64) {
        bump(&self.events_delivered, events);
    }

    /// A subscriber dropped for falling too far behind.
    pub fn dropped_subscriber(&self) {
        bump(&self.subscribers_dropped, 1);
    }
}

/// How a guest call ended, for `house_guest_calls_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    Ok,
    /// It answered a server error of its own (5xx).
    ServerError,
    Trap,
    Deadline,
    Budget,
    /// A malformed return.
    Failed,
    Busy,
    Suspended,
    /// Its transaction was still in conflict after `--tx-retries` re-runs.
    Conflict,
    /// The key-value store could not be reached for its commit: nothing
    /// was applied.
    Unavailable,
    /// Its commit's outcome is not known.
    Unknown,
}

const CALL_RESULTS: [&str; 11] = [
    "ok",
    "server_error",
    "trap",
    "deadline",
    "budget",
    "failed",
    "busy",
    "suspended",
    "conflict",
    "unavailable",
    "unknown",
];

/// How a module load ended.
#[derive(Clone, Copy)]
pub enum LoadResult {
    Loaded,
    Reloaded,
    Refused,
    Unloaded,
}

const LOAD_RESULTS: [&str; 4] = ["loaded", "reloaded", "refused", "unloaded"];

/// What every guest call counts, one loop's part.
struct CallFigures {
    call_seconds: Histogram,
    calls: [AtomicU64; CALL_RESULTS.len()],
    instantiations: AtomicU64,
    reuses: AtomicU64,
    published: AtomicU64,
}

impl CallFigures {
    const fn new() -> CallFigures {
        CallFigures {
            call_seconds: Histogram::new(),
            calls: [const { AtomicU64::new(0) }; CALL_RESULTS.len()],
            instantiations: AtomicU64::new(0),
            reuses: AtomicU64::new(0),
            published: AtomicU64::new(0),
        }
    }
}

pub struct Metrics {
    loops: Mutex<Vec<Arc<LoopMetrics>>>,
    calls: [Padded<CallFigures>; SHARDS],
    reruns: AtomicU64,
    quarantines: AtomicU64,
    loads: [AtomicU64; LOAD_RESULTS.len()],
}

pub static METRICS: Metrics = Metrics {
    loops: Mutex::new(Vec::new()),
    calls: [const { Padded(CallFigures::new()) }; SHARDS],
    reruns: AtomicU64::new(0),
    quarantines: AtomicU64::new(0),
    loads: [const { AtomicU64::new(0) }; LOAD_RESULTS.len()],
};

impl Metrics {
    /// This thread's loop's part of the per-call figures.
    fn mine(&self) -> &CallFigures {
        &self.calls[shard::current()]
    }

    /// The sum of `figure` over every loop's part.
    fn sum(&self, figure: impl Fn(&CallFigures) -> &AtomicU64) -> u64 {
        self.calls.iter().map(|part| figure(part).load(Relaxed)).sum()
    }

    /// A guest call ended after `took` (from its first slice to its end).
    pub fn call(&self, result: CallResult, took: Option<Duration>) {
        let mine = self.mine();
        mine.calls[result as usize].fetch_add(1, Relaxed);
        if let Some(took) = took {
            mine.call_seconds.observe(took);
        }
    }

    pub fn instantiated(&self) {
        self.mine().instantiations.fetch_add(1, Relaxed);
    }

    pub fn reused(&self) {
        self.mine().reuses.fetch_add(1, Relaxed);
    }

    /// A call ran again: its transaction was in conflict.
    pub fn rerun(&self) {
        self.reruns.fetch_add(1, Relaxed);
    }

    pub fn quarantined(&self) {
        self.quarantines.fetch_add(1, Relaxed);
    }

    pub fn load(&self, result: LoadResult) {
        self.loads[result as usize].fetch_add(1, Relaxed);
    }

    /// Events published (by guests here; each counted once).
    pub fn published(&self, events: u64) {
        self.mine().published.fetch_add(events, Relaxed);
    }
}

/// What a scrape reads at that moment.
pub struct Gauges {
    pub connections: u64,
    pub websockets: u64,
    pub subscriptions: u64,
    pub channels: u64,
    pub calls_in_flight: u64,
    /// Instances kept between requests, idle now (`guests::warm`).
    pub instances_idle: u64,
    pub hub_dropped: u64,
    pub history_events: u64,
    pub history_bytes: u64,
    pub engine: &'static str,
    pub engine_up: bool,
    pub engine_refused: u64,
    pub kv_up: bool,
}

/// The whole exposition.
pub fn render(g: &Gauges) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let loops: Vec<Arc<LoopMetrics>> = METRICS.loops.lock().unwrap_or_else(PoisonError::into_inner).clone();

    let mut requests: std::collections::BTreeMap<(String, u16), u64> = Default::default();
    let mut request_seconds = [0u64; BOUNDS.len() + 2];
    let (mut delivered, mut dropped) = (0, 0);
    for l in &loops {
        for (route, by_status) in l.requests.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            for (status, n) in by_status {
                *requests.entry((route.clone(), *status)).or_default() += n;
            }
        }
        l.request_seconds.0.add_to(&mut request_seconds);
        delivered += l.events_delivered.load(Relaxed);
        dropped += l.subscribers_dropped.load(Relaxed);
    }
    head(&mut out, "house_http_requests_total", "counter", "Requests answered, by route pattern and status.");
    for ((route, status), n) in &requests {
        let _ = writeln!(out, "house_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}", escape(route));
    }
    histogram(
        &mut out,
        "house_http_request_duration_seconds",
        "From a request's first byte to its response queued.",
        &request_seconds,
    );
    let mut call_seconds = [0u64; BOUNDS.len() + 2];
    for part in &METRICS.calls {
        part.call_seconds.add_to(&mut call_seconds);
    }
    histogram(
        &mut out,
        "house_guest_call_duration_seconds",
        "Guest calls, from their first slice to their end (waits included).",
        &call_seconds,
    );

    head(&mut out, "house_guest_calls_total", "counter", "Guest calls by how they ended.");
    for (i, name) in CALL_RESULTS.iter().enumerate() {
        let n = METRICS.sum(|part| &part.calls[i]);
        let _ = writeln!(out, "house_guest_calls_total{{result=\"{name}\"}} {n}");
    }
    counter(
        &mut out,
        "house_guest_instantiations_total",
        "Guest instances made for a call (a call that found no idle instance of its module).",
        METRICS.sum(|part| &part.instantiations),
    );
    counter(
        &mut out,
        "house_guest_instance_reuses_total",
        "Calls that ran in an idle instance, reset to a fresh instance's state after its last call.",
        METRICS.sum(|part| &part.reuses),
    );
    counter(
        &mut out,
        "house_tx_reruns_total",
        "Guest calls run again because what they read changed before their commit.",
        METRICS.reruns.load(Relaxed),
    );
    counter(
        &mut out,
        "house_guest_quarantines_total",
        "Handlers suspended for overrunning too often.",
        METRICS.quarantines.load(Relaxed),
    );
    head(&mut out, "house_module_loads_total", "counter", "Guest module files loaded, reloaded, refused and unloaded.");
    for (name, n) in LOAD_RESULTS.iter().zip(&METRICS.loads) {
        let _ = writeln!(out, "house_module_loads_total{{result=\"{name}\"}} {}", n.load(Relaxed));
    }
    counter(
        &mut out,
        "house_events_published_total",
        "Events published by guests on this host.",
        METRICS.sum(|part| &part.published),
    );
    counter(
        &mut out,
        "house_events_delivered_total",
        "Events handed to this host's subscribers (one per event per subscriber).",
        delivered,
    );
    counter(
        &mut out,
        "house_sse_subscribers_dropped_total",
        "Subscribers dropped for falling behind (--sse-buffer-bytes).",
        dropped,
    );
    counter(
        &mut out,
        "house_hub_dropped_total",
        "Events a loop's full inbox could not take (its streams were closed).",
        g.hub_dropped,
    );

    gauge(&mut out, "house_connections", "Open connections, streams included.", g.connections);
    gauge(&mut out, "house_websockets", "Open connections that are WebSockets.", g.websockets);
    gauge(&mut out, "house_sse_subscriptions", "Stream subscriptions to channels.", g.subscriptions);
    gauge(&mut out, "house_channels", "Channels with a subscriber on this host.", g.channels);
    gauge(&mut out, "house_guest_calls_in_flight", "Guest calls started and not ended.", g.calls_in_flight);
    gauge(
        &mut out,
        "house_guest_instances_idle",
        "Guest instances kept between requests, reset and waiting (at most --guest-warm-instances).",
        g.instances_idle,
    );
    gauge(&mut out, "house_history_events", "Events kept for replay (memory engine).", g.history_events);
    gauge(&mut out, "house_history_bytes", "Bytes of those, overheads included.", g.history_bytes);
    head(&mut out, "house_engine_up", "gauge", "1 if the engine is connected (memory: always).");
    let _ = writeln!(out, "house_engine_up{{engine=\"{}\"}} {}", g.engine, u8::from(g.engine_up));
    counter(
        &mut out,
        "house_engine_refused_total",
        "Messages from the engine that were not house events.",
        g.engine_refused,
    );
    gauge(&mut out, "house_kv_up", "1 if the key-value store can be reached.", u64::from(g.kv_up));
    out
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, n: u64) {
    head(out, name, "counter", help);
    let _ = writeln!(out, "{name} {n}");
}

fn gauge(out: &mut String, name: &str, help: &str, n: u64) {
    head(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {n}");
}

/// `counts`: per bucket, then the sum in nanoseconds.
fn histogram(out: &mut String, name: &str, help: &str, counts: &[u64; BOUNDS.len() + 2]) {
    head(out, name, "histogram", help);
    let mut cumulative = 0;
    for (i, n) in counts[..=BOUNDS.len()].iter().enumerate() {
        cumulative += n;
        let le = BOUNDS.get(i).map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_sum {}", counts[BOUNDS.len() + 1] as f64 / 1e9);
    let _ = writeln!(out, "{name}_count {cumulative}");
}

/// A label value: backslash, quote and line feed escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
