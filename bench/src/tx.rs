//! Scenarios 14-16: every guest call a transaction (engine issue). The
//! checker's guest (`txcheck`) does a read-modify-write per request
//! (`/spread?keys=N`: get and set one of N counters, picked at random), and
//! the same work without the store (`/plain?keys=N`) is the baseline, on
//! the same host, in alternating rounds:
//! - 14: the write per request, spread over a million keys (no conflicts),
//!   embedded (each commit synced to disk, group commit) and on Redis;
//! - 15: 64 clients on one hot key: what commits per second, how many
//!   re-runs each commit cost, how many calls gave up (503), and that the
//!   counter ends at exactly the number of 200s (nothing lost, nothing
//!   twice);
//! - 16: a handler that touches no data (`/plain`), its p99 under wrk while
//!   another client commits writes one after another (each waiting for its
//!   sync) against the same handler with no writes: the loop must not wait
//!   on the disk.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, bail};

use crate::report::{Report, Row};
use crate::{history, read_response, redis, servers, wrk};

const SPREAD: &str = "/spread?keys=1000000";
const PLAIN: &str = "/plain?keys=1000000";
const HOT: &str = "/spread?keys=1";
const ROUNDS: usize = 3;

pub fn run(report: &mut Report, guests: &Path, cache: &Path, work: &Path) -> anyhow::Result<()> {
    let house = servers::house(guests, cache, &work.join("tx.log"), &["--threads", "1", "--quiet"])?;
    let spread = write_rows(report, &house, "embedded", 1.5)?;
    hot_key(report, &house, "embedded", spread)?;
    unrelated_p99(report, &house)?;
    drop(house);
    let redis = redis::start(work)?;
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let flags = ["--threads", "1", "--quiet", "--engine", url.as_str()];
    let house = servers::house(guests, cache, &work.join("tx-redis.log"), &flags)?;
    history::engine_up(house.admin)?;
    let spread = write_rows(report, &house, "Redis", 2.0)?;
    hot_key(report, &house, "Redis", spread)
}

/// Scenario 14; returns the writes' requests/s.
fn write_rows(report: &mut Report, house: &servers::Running, store: &str, at_most: f64) -> anyhow::Result<f64> {
    let secs = wrk::seconds();
    let name = format!("14. a read-modify-write per request, its own transaction ({store}, --threads 1)");
    eprintln!("bench: {name}: {ROUNDS} alternating rounds of {secs} s");
    let (mut plain, mut write) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        plain.push(wrk::run(house, PLAIN, secs)?);
        write.push(wrk::run(house, SPREAD, secs)?);
    }
    let [plain, write] = [plain, write].map(|r| wrk::Load::median(&r));
    if plain.non_2xx + write.non_2xx > 0 {
        bail!("{name}: unexpected statuses: {plain:?} {write:?}");
    }
    let base = "same guest, no key-value data";
    let whose = if store == "Redis" { " (house's, not Redis's)" } else { "" };
    report.row(Row::higher(&name, "requests/s", write.rps, plain.rps, base, None));
    report.row(Row::lower(
        &name,
        &format!("server CPU µs/request{whose}"),
        write.cpu_us,
        plain.cpu_us,
        base,
        Some(at_most),
    ));
    report.row(Row::lower(&name, "p99 latency µs", write.p99_us, plain.p99_us, base, None));
    Ok(write.rps)
}

/// Scenario 15.
fn hot_key(report: &mut Report, house: &servers::Running, store: &str, spread_rps: f64) -> anyhow::Result<()> {
    let secs = wrk::seconds();
    let name = format!("15. 64 clients on one hot key ({store}, --threads 1)");
    eprintln!("bench: {name}: {secs} s");
    let before = counter(house.addr)?;
    let reruns = metric(house.admin, "house_tx_reruns_total")?;
    let gave_up = metric(house.admin, "house_guest_calls_total{result=\"conflict\"}")?;
    let load = wrk::run_cold(house, HOT, secs)?;
    let after = counter(house.addr)?;
    let reruns = metric(house.admin, "house_tx_reruns_total")? - reruns;
    let gave_up = metric(house.admin, "house_guest_calls_total{result=\"conflict\"}")? - gave_up;
    let committed = load.requests - load.non_2xx;
    let counted = after - before;
    // wrk stops with up to one request in flight per connection: those
    // may commit (or give up) after wrk stopped counting, never before.
    if !(committed..=committed + 64).contains(&counted) {
        bail!("{name}: {committed} answers of 200, the counter went up by {counted}");
    }
    if !(load.non_2xx..=load.non_2xx + 64).contains(&gave_up) {
        bail!("{name}: {} answers that were not 200, {gave_up} calls that gave up", load.non_2xx);
    }
    let committed_rps = committed as f64 / secs as f64;
    report.row(Row::higher(
        &name,
        "commits/s",
        committed_rps,
        spread_rps,
        "writes spread over 1M keys (scenario 14)",
        None,
    ));
    report.section(
        &name,
        format!(
            "{committed} requests answered 200 in {secs} s ({committed_rps:.0}/s); the counter went up by {counted} \
             (the 200s plus {} calls still in flight when wrk stopped: nothing lost, nothing twice); {reruns} \
             re-runs ({:.2} per commit); {} calls gave up after --tx-retries and were answered 503 with Retry-After \
             ({:.1}% of {}); p99 {:.0} µs.",
            counted - committed,
            reruns as f64 / committed.max(1) as f64,
            load.non_2xx,
            100.0 * load.non_2xx as f64 / load.requests.max(1) as f64,
            load.requests,
            load.p99_us,
        ),
    );
    Ok(())
}

/// Scenario 16.
fn unrelated_p99(report: &mut Report, house: &servers::Running) -> anyhow::Result<()> {
    let secs = wrk::seconds();
    let name = "16. a handler with no data, its p99 while commits and syncs run (embedded, --threads 1)";
    eprintln!("bench: {name}: {ROUNDS} alternating rounds of {secs} s");
    let (mut quiet, mut busy) = (Vec::new(), Vec::new());
    let written = AtomicU64::new(0);
    for _ in 0..ROUNDS {
        quiet.push(wrk::run(house, PLAIN, secs)?);
        let stop = AtomicBool::new(false);
        let load = std::thread::scope(|s| {
            let writer = s.spawn(|| writes(house.addr, &stop, &written));
            let load = wrk::run(house, PLAIN, secs);
            stop.store(true, Ordering::Relaxed);
            writer.join().map_err(|_| anyhow::anyhow!("the writer panicked"))??;
            load
        })?;
        busy.push(load);
    }
    let [quiet, busy] = [quiet, busy].map(|r| wrk::Load::median(&r));
    let base = "no writes meanwhile";
    report.row(Row::lower(name, "p99 latency µs", busy.p99_us, quiet.p99_us, base, Some(1.2)));
    report.row(Row::higher(name, "requests/s", busy.rps, quiet.rps, base, None));
    let per_s = written.load(Ordering::Relaxed) as f64 / (ROUNDS as f64 * (secs + 1) as f64);
    report.section(name, format!("The writer committed {per_s:.0} writes/s, one after another, each synced to disk."));
    Ok(())
}

/// One client committing writes one after another until `stop`.
fn writes(addr: SocketAddr, stop: &AtomicBool, written: &AtomicU64) -> anyhow::Result<()> {
    let mut c = BufReader::new(TcpStream::connect(addr)?);
    while !stop.load(Ordering::Relaxed) {
        c.get_mut().write_all(format!("GET {SPREAD} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes())?;
        if read_response(&mut c)?.0 != 200 {
            bail!("a write was refused");
        }
        written.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// The hot counter's value.
fn counter(addr: SocketAddr) -> anyhow::Result<u64> {
    let mut c = BufReader::new(TcpStream::connect(addr)?);
    c.get_mut().write_all(b"GET /counter?key=s0 HTTP/1.1\r\nHost: bench\r\n\r\n")?;
    let (status, text) = read_response(&mut c)?;
    anyhow::ensure!(status == 200, "/counter answered {status}");
    text.trim().parse().context("the counter")
}

/// One sample of `/_house/metrics` (0 if absent).
fn metric(addr: SocketAddr, name: &str) -> anyhow::Result<u64> {
    let mut c = TcpStream::connect(addr)?;
    c.write_all(b"GET /_house/metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    c.read_to_string(&mut text)?;
    let line = text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '));
    Ok(line.and_then(|l| l.rsplit(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(0))
}
