//! HTTP load with wrk (Debian's package): one thread, 64 keep-alive
//! connections. wrk is a well-known, C, epoll-based generator: on a 2-core
//! machine its one core saturates near the floor's rate, which is why every
//! scenario also reports server CPU per request (from /proc).

use std::process::Command;

use anyhow::{Context, bail};

use crate::procfs;
use crate::servers::Running;

#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub requests: u64,
    /// Responses that were not 2xx/3xx.
    pub non_2xx: u64,
    /// Server CPU (user + system) per request, in microseconds.
    pub cpu_us: f64,
}

impl Load {
    /// Field by field, the median of several runs.
    pub fn median(runs: &[Load]) -> Load {
        let med = |f: fn(&Load) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        Load {
            rps: med(|l| l.rps),
            p50_us: med(|l| l.p50_us),
            p99_us: med(|l| l.p99_us),
            cpu_us: med(|l| l.cpu_us),
            requests: runs.iter().map(|l| l.requests).sum(),
            non_2xx: runs.iter().map(|l| l.non_2xx).sum(),
        }
    }
}

pub fn run(server: &Running, path: &str, secs: u64) -> anyhow::Result<Load> {
    // A short warm-up: connections open, caches and pools warm.
    wrk(&format!("http://{}{path}", server.addr), 1)?;
    run_cold(server, path, secs)
}

/// As [`run`], without the warm-up: everything wrk sends is in the figures
/// (the hot-key scenario counts every commit).
pub fn run_cold(server: &Running, path: &str, secs: u64) -> anyhow::Result<Load> {
    let url = format!("http://{}{path}", server.addr);
    let cpu0 = procfs::cpu_seconds(server.pid());
    let out = wrk(&url, secs)?;
    let cpu1 = procfs::cpu_seconds(server.pid());
    let mut load = parse(&out).with_context(|| format!("parsing wrk output:\n{out}"))?;
    load.cpu_us = (cpu1 - cpu0) * 1e6 / load.requests.max(1) as f64;
    Ok(load)
}

/// As [`run`], every request a POST of `body` as `application/json` (a
/// wrk script, written to `script`).
pub fn post_json(
    server: &Running,
    path: &str,
    body: &str,
    secs: u64,
    script: &std::path::Path,
) -> anyhow::Result<Load> {
    let quoted = serde_json::to_string(body)?;
    std::fs::write(
        script,
        format!("wrk.method = \"POST\"\nwrk.body = {quoted}\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"),
    )?;
    let url = format!("http://{}{path}", server.addr);
    wrk_with(&url, 1, Some(script))?;
    let cpu0 = procfs::cpu_seconds(server.pid());
    let out = wrk_with(&url, secs, Some(script))?;
    let cpu1 = procfs::cpu_seconds(server.pid());
    let mut load = parse(&out).with_context(|| format!("parsing wrk output:\n{out}"))?;
    load.cpu_us = (cpu1 - cpu0) * 1e6 / load.requests.max(1) as f64;
    Ok(load)
}

fn wrk(url: &str, secs: u64) -> anyhow::Result<String> {
    wrk_with(url, secs, None)
}

fn wrk_with(url: &str, secs: u64, script: Option<&std::path::Path>) -> anyhow::Result<String> {
    let mut args = vec!["-t1".to_owned(), "-c64".into(), format!("-d{secs}s"), "--latency".into()];
    if let Some(script) = script {
        args.push("-s".into());
        args.push(script.display().to_string());
    }
    let out = Command::new("wrk")
        .args(&args)
        .args(["--timeout", "5s", url])
        .output()
        .context("running wrk (make bench installs it)")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn duration_us(text: &str) -> Option<f64> {
    let text = text.trim();
    let (num, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        _ => return None,
    })
}

fn parse(out: &str) -> Option<Load> {
    let mut load = Load::default();
    for line in out.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            load.rps = v.trim().parse().ok()?;
        } else if let Some(v) = l.strip_prefix("50%") {
            load.p50_us = duration_us(v)?;
        } else if let Some(v) = l.strip_prefix("99%") {
            load.p99_us = duration_us(v)?;
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            load.non_2xx = v.trim().parse().ok()?;
        } else if l.contains(" requests in ") {
            load.requests = l.split_whitespace().next()?.parse().ok()?;
        }
    }
    (load.rps > 0.0).then_some(load)
}

/// How long wrk runs per scenario.
pub fn seconds() -> u64 {
    std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3)
}
