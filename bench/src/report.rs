//! The results table: every figure next to its baseline from the same run,
//! the ratio, and where it stands against its target. Written into
//! BENCHMARKS.md (a full run) or printed (`--only`).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
enum Unit {
    PerSecond,
    Micros,
    Millis,
    Bytes,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    None,
    /// house / baseline must be at least this (higher is better).
    RatioAtLeast(f64),
    /// house / baseline must be at most this (lower is better).
    RatioAtMost(f64),
    /// house's own figure must be at most this, in the row's unit.
    AtMost(f64),
}

pub struct Row {
    scenario: String,
    metric: String,
    house: f64,
    base: f64,
    base_name: String,
    unit: Unit,
    target: Target,
}

impl Row {
    fn new(scenario: &str, metric: &str, house: f64, base: f64, base_name: &str, unit: Unit, target: Target) -> Row {
        Row { scenario: scenario.into(), metric: metric.into(), house, base, base_name: base_name.into(), unit, target }
    }

    /// A rate: higher is better.
    pub fn higher(scenario: &str, metric: &str, house: f64, base: f64, base_name: &str, at_least: Option<f64>) -> Row {
        let target = at_least.map_or(Target::None, Target::RatioAtLeast);
        Row::new(scenario, metric, house, base, base_name, Unit::PerSecond, target)
    }

    /// A cost in microseconds: lower is better.
    pub fn lower(scenario: &str, metric: &str, house: f64, base: f64, base_name: &str, at_most: Option<f64>) -> Row {
        let target = at_most.map_or(Target::None, Target::RatioAtMost);
        Row::new(scenario, metric, house, base, base_name, Unit::Micros, target)
    }

    /// A duration: lower is better.
    pub fn time(
        scenario: &str,
        metric: &str,
        house: Duration,
        base: Duration,
        base_name: &str,
        at_most: Option<f64>,
    ) -> Row {
        let target = at_most.map_or(Target::None, Target::RatioAtMost);
        let unit = if house < Duration::from_millis(1) { Unit::Micros } else { Unit::Millis };
        let scale = |d: Duration| match unit {
            Unit::Micros => d.as_secs_f64() * 1e6,
            _ => d.as_secs_f64() * 1e3,
        };
        Row::new(scenario, metric, scale(house), scale(base), base_name, unit, target)
    }

    /// Memory: lower is better.
    pub fn bytes(scenario: &str, metric: &str, house: f64, base: f64, base_name: &str) -> Row {
        Row::new(scenario, metric, house, base, base_name, Unit::Bytes, Target::None)
    }

    /// An absolute target for a duration row.
    pub fn at_most(mut self, limit: Duration) -> Row {
        self.target = Target::AtMost(match self.unit {
            Unit::Micros => limit.as_secs_f64() * 1e6,
            _ => limit.as_secs_f64() * 1e3,
        });
        self
    }

    /// An absolute target for a memory row.
    pub fn at_most_bytes(mut self, limit: f64) -> Row {
        self.target = Target::AtMost(limit);
        self
    }

    fn ratio(&self) -> f64 {
        if self.base > 0.0 { self.house / self.base } else { f64::NAN }
    }

    fn format(&self, v: f64) -> String {
        match self.unit {
            Unit::PerSecond => format!("{:.0}", v),
            Unit::Micros => format!("{v:.1} µs"),
            Unit::Millis => format!("{v:.2} ms"),
            Unit::Bytes if v >= 1024.0 * 1024.0 => format!("{:.1} MiB", v / 1024.0 / 1024.0),
            Unit::Bytes => format!("{:.2} KiB", v / 1024.0),
        }
    }

    fn target_cell(&self) -> String {
        let r = self.ratio();
        let verdict = |ok: bool| if ok { "met" } else { "**not met**" };
        match self.target {
            Target::None => "—".into(),
            Target::RatioAtLeast(t) => format!("≥ {t}x: {}", verdict(r >= t)),
            Target::RatioAtMost(t) => format!("≤ {t}x: {}", verdict(r <= t)),
            Target::AtMost(t) => format!("≤ {}: {}", self.format(t), verdict(self.house <= t)),
        }
    }
}

#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
    /// Tables of their own, after the results: (title, markdown).
    sections: Vec<(String, String)>,
}

impl Report {
    pub fn new() -> Report {
        Report::default()
    }

    pub fn row(&mut self, row: Row) {
        eprintln!(
            "bench: {} / {}: {} vs {} ({:.2}x)",
            row.scenario,
            row.metric,
            row.format(row.house),
            row.format(row.base),
            row.ratio()
        );
        self.rows.push(row);
    }

    /// A table of its own (a breakdown), printed after the results.
    pub fn section(&mut self, title: &str, markdown: String) {
        eprintln!("bench: {title}\n{markdown}");
        self.sections.push((title.to_owned(), markdown));
    }

    fn sections(&self) -> String {
        self.sections.iter().map(|(title, md)| format!("## {title}\n\n{md}\n")).collect()
    }

    fn table(&self) -> String {
        let mut t = String::from(
            "| scenario | figure | house | baseline | baseline is | ratio | target |\n|---|---|---:|---:|---|---:|---|\n",
        );
        for r in &self.rows {
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} | {:.2}x | {} |",
                r.scenario,
                r.metric,
                r.format(r.house),
                r.format(r.base),
                r.base_name,
                r.ratio(),
                r.target_cell()
            );
        }
        t
    }

    /// A full run rewrites `out`; a partial one (`--only`) prints its rows.
    pub fn write(&self, out: &Path, only: &[String]) -> anyhow::Result<()> {
        if only.len() < crate::ALL.len() {
            println!("{}\n{}", self.table(), self.sections());
            return Ok(());
        }
        let commit = Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let date = Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output().ok();
        let date = date.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
        let mut doc = String::new();
        let _ = write!(
            doc,
            "# Benchmarks\n\n\
             Produced by `make bench` (`house-bench`); do not edit by hand.\n\n\
             - date: {date}\n- commit: {commit}\n- CPU: {cpu}\n- load generator: wrk, 1 thread, 64 keep-alive connections; HTTP figures are medians of 3 alternating rounds of {secs} s\n\n\
             These machines are shared and noisy: read the **ratios**, each against a baseline run \
             minutes apart in the same `make bench`, not the absolute figures.\n\n\
             ## Results\n\n{table}\n{sections}{profile}{explain}",
            cpu = crate::procfs::cpu_model(),
            secs = crate::wrk::seconds(),
            table = self.table(),
            sections = self.sections(),
            profile = PROFILE,
            explain = EXPLAIN,
        );
        std::fs::write(out, doc)?;
        eprintln!("bench: wrote {}", out.display());
        Ok(())
    }
}

/// Where the time goes: `perf record -g` (DWARF call graphs) on the
/// running host's loop thread under load, `--threads 1`, taken by hand
/// (a profile is not a same-run ratio); the commits say when.
const PROFILE: &str = "## Where the time goes (perf profiles of the loop thread)

Taken with `perf record --call-graph dwarf` on `house --threads 1` under
the load named, shares of the loop thread's samples. Rerun them with
`perf record -F 999 --call-graph dwarf -p $(pidof house)` during a wrk run.

**Guest closing handler** (scenario 2's request, wrk 64 connections), at
156d28c: the kernel 47% (the response's `sendto` 35%, most of it the
loopback delivering it to the client; `recv` 9%; `epoll_wait` 5%); the
guest call 20%, of which the reset of the instance's 64 KiB memory 12.7%
(`memset` 8.6%, copying its data 1.2%); parsing and validating the
parameters 6%; the answer (head, body, access log) 5%; the request head 3%;
the publish (hub, history) 3.6%; allocation and freeing about 5%; the
per-request metrics 0.9%. After 9983db4 (the reset restores only the
chunks the call wrote): the guest call 11% of the loop, no `memset`.

**404 path**: the kernel 76% of the loop thread, house's own code 11%,
libc 6%. The log writer thread took another 4.7% of the samples, a third
of it waking up for each 8 KiB batch of access-log lines (now 32 KiB).

**Per event** (fan-out to 5,000 chat subscribers): `sendto` 94% of the
loop's time; the hub hop, the per-loop inbox, ids and history, framing and
metrics together under 4%. One write per subscriber per event is what the
floor does too: scenario 4 is at the floor's pace.

**Per connection** (5,000 subscribers connecting to the chat's stream):
accepting (`accept4`, `TCP_NODELAY`, `epoll_ctl`) 13%; reading the request
8%; opening the stream 17.5% (the guest's stream call, the subscription,
the backlog read, and the head's `sendto`, 15% of the loop on its own);
`epoll_wait` 12%.

";

const EXPLAIN: &str = "## What each scenario measures

Ratios are house ÷ baseline: above 1 means more requests per second, or
more time, CPU or memory than the baseline. Targets come from the issues.

1. **404 path** — the host alone: framing, routing, a plain-text error, the
   access log. Against `floor`, a bare single-threaded mio+httparse server
   answering a fixed 200 (`bench/src/bin/floor.rs`): the floor of our stack.
2. **Guest closing handler** — the chat's `send-message` (three validated
   strings; publishes to a room with no subscribers) in a fresh wasm instance
   per request. Against the floor and against scenario 1.
3. **Guest call alone** — the same handler called in-process with the
   request already parsed (`bench/src/guestcall.rs`): validation + instantiate
   + call + drop, against the same handler compiled into the host.
   3b: the same call to the chat as it is (its page a static file, in a
   custom section) against the chat built with the page in its memory image
   as a handler's string (`--features page-in-memory`), alternated in one
   process: what moving the page out saves each call.
4. **SSE fan-out** — 1,000 and 10,000 subscribers on one channel, 20
   publishes (two halves, alternating with the baseline); time from sending
   the publish to the last subscriber's receipt, measured by one client for both. Against `sse-floor`, a bare mio server
   that frames once and copies only what a socket refuses.
   At 10,000, also the same host with `--threads 2` (subscribers spread
   over two loops by the kernel) against `--threads 1`: target ≤ 1.1x.
   Connection setup: the time to connect all N (in batches of 500, each
   waiting for its first event: the head, and for house the chat's
   stream handler, its subscription, the backlog with its ids), counted as
   the median batch's time times the number of batches (a SYN the kernel
   drops costs a whole second, whichever server listens), the better of
   the two halves; target at 10,000 ≤ 1.2x the floor's. And the server's
   CPU per subscriber set up.
5. **Memory** — RSS of the host idle, and its growth per idle keep-alive
   connection (1,000 of them) and per idle SSE subscriber (10,000).
6. **Hot reload** — a new `chat.wasm` (fresh bytes, so compiled, not cached)
   renamed into the watched folder until `/index` answers 200; start-up with
   an empty and with a warm module cache. The baseline is the floor's own
   spawn-to-first-response.
7. **Flood of 400s** — `send-message` with a message too short: rejected by
   the host's validator, no instance created.
8. **Two loops against one** — the same host with `--threads 2` and
   `--threads 1`, same wrk load: requests/s, p99, and CPU per request (loops
   must not cost per request: target ≤ 1.1x).
9. **Across hosts** — two house processes on one real redis-server
   (`--engine redis://`), 1,000 subscribers on B, publish on A: time until
   the last has it, p50 and p99 of 100. Each publish runs house's script
   (XADD to the channel's history, then PUBLISH with the id). The baseline adds the same run's
   bare Redis PUBLISH→SUBSCRIBE round trip (two raw sockets) to one host's
   own fan-out to 1,000 (memory engine).
10. **Beside spinning calls** — `--threads 1`, 20 calls of a WAT handler
   spinning to a 300 ms deadline in flight; 500 requests of a handler that
   answers at once, on one keep-alive connection, against the same 500 with
   nothing spinning.
11. **History** — 1,000 subscribers of `/watch?ch=h` (typed guest), a
   burst of 50 events (one call), then all disconnect, 50 more are
   published, and all reconnect at once with the id of the last event they
   had: time from the first reconnect until every one has the 50 it missed,
   against the same run's live fan-out of the first 50 (memory engine, then
   Redis; median of 5). Also: RSS per event kept (1,000 channels x 100
   events of 100 bytes) and per channel (10,000 channels, one event each)
   against the bytes those events take framed, with the host's own
   accounting (`history_bytes`) beside; and the chat's publish with history
   on against `--history-events 0`, same wrk load.
12. **Key-value data** — the hello guest's `/note?key=..` (one read)
   against its `/hello`, which touches no key-value data; on the embedded
   store, then on Redis (`--engine redis://`, a real redis-server: each
   operation is a round trip, during which the call is parked and the loop
   serves others), same wrk load, alternating rounds. The CPU is house's
   alone: Redis's own is not counted. (Writes are scenario 14's.)
13. **Metrics** — the 404 path of scenario 1 with per-request metrics (a
   route-and-status count and a duration histogram per request) against
   the same host with `--no-metrics`, in the same rounds.
14. **A write per request, each call a transaction** — the checker's guest
   (`txcheck`), `/spread?keys=1000000`: a read-modify-write (get, then set)
   of one of a million counters picked at random, its own serializable
   transaction (its read checked at commit, re-run on a conflict; embedded:
   answered after its group commit is synced to disk; Redis: one Lua script
   checks and applies it), against `/plain?keys=1000000`, the same work with
   no store, same wrk load, alternating rounds; embedded, then Redis.
15. **One hot key** — the same write with `keys=1`: 64 connections on one
   counter. Every commit but one per group conflicts and runs again; the
   row is the commits per second against scenario 14's, the section below
   it the re-runs per commit, the calls that gave up after `--tx-retries`
   (answered 503 with Retry-After), and the counter checked against the
   200s: nothing lost, nothing twice.
16. **An unrelated handler while commits sync** — `/plain`'s p99 under wrk
   while one more client commits writes one after another (each answered
   after its sync), against the same load with no writes, alternating
   rounds: whether the loop waits on the disk.
17. **Flood of 400s from a typed body** — the `board` test guest's
   `POST /order` with a body whose second line has `qty: 0` (a nested rule):
   refused by the host's body checker, no instance made. Against the floor
   (as scenario 7), and against the same POSTs sent to a path nobody serves
   (a 404): the request's bytes framed and answered, without the check.
18. **A valid body of 10 fields (2 nested objects)** checked and encoded
   by the host (`house_abi::body::validate`, in-process), against parsing
   the same text into a `serde_json::Value` alone. Target: ≤ 2 µs.
19. **HS256 token** — `TokenKeys::verify` of a token with five claims:
   header, HMAC-SHA-256, times, as JSON; against the HMAC of its input
   alone. Target ≤ 3 µs.
20. **EdDSA token** — the same with an Ed25519 signature, against
   `verify_strict` alone. Target ≤ 60 µs.
27. **Scale** — the largest subscriber counts this box allows (20,000
   descriptors per process: the servers and the load client are separate
   processes): fan-out (median of 10 publishes) and RSS per idle
   subscriber at 5,000, 10,000 and 18,000, house on one loop
   (`--max-connections 19000`) against the floor at each count; then house
   at 18,000 against house at 5,000, per subscriber: 1.0x is linear.
21. **Typed body against `Json` + serde** — `order_typed` (a
   `#[derive(Body)]` order of 10 fields, checked by the host) against
   `order_serde` (the same order as `Json`, parsed and checked by serde in
   the guest), same answer, in-process: the request's validation plus the
   call, alternated; and the two modules' sizes.

The load generator is wrk, from Debian's packages (`make bench` installs
it): a well-known C epoll client, independent of our code, so it cannot
share our bugs. On two cores wrk's own core saturates near the floor's rate, so
requests-per-second ratios flatten near 1.0; **server CPU per request**
(user + system from `/proc`, divided by requests served) shows the real cost.
It includes the kernel's work for each send, waking the client among it;
on this virtual machine that wake-up is dear, and dearer the more often the
client sleeps, i.e. the slower the server is: a server twice as slow in user
space shows more than twice the CPU per request.

## Rerunning one scenario

    make build && cargo build --release -p house-bench
    ./target/release/house-bench --only http        # or guestcall, fanout, memory, reload, redis, spin, history, kv, tx, bodies, websocket, hosts, scale
    BENCH_SECONDS=10 ./target/release/house-bench   # longer HTTP runs

`--only` prints its rows and leaves this file alone; a full run rewrites it.
";
