//! Scenario 27: the largest subscriber counts this box allows. The
//! descriptor limit is 20,000 per process, so the servers and this load
//! client are separate processes, and 18,000 subscribers leave room for the
//! rest. Fan-out time and memory per subscriber at 5k, 10k and 18k, house
//! (one loop) beside the bare SSE floor at each count; and whether house's
//! growth is linear: its time and memory per subscriber at 18k against 5k.

use std::path::Path;
use std::time::Duration;

use crate::report::{Report, Row};
use crate::{SEND, fanout, median, servers};

const COUNTS: [usize; 3] = [5_000, 10_000, 18_000];

pub fn run(report: &mut Report, guests: &Path, cache: &Path, log: &Path) -> anyhow::Result<()> {
    // Two alternating halves of 5 publishes per server and count.
    const HALF: usize = 5;
    let publish_floor = "POST /publish HTTP/1.1\r\nHost: bench\r\nContent-Length: 0\r\n\r\n";
    let publish_house = format!("GET {SEND} HTTP/1.1\r\nHost: bench\r\n\r\n").replace("room=bench", "room=fan");
    // Per count: house's fan-out times and bytes per subscriber.
    let mut ours_at: Vec<(usize, Duration, f64)> = Vec::new();
    for n in COUNTS {
        eprintln!("bench: scale, {n} subscribers, {} publishes each", 2 * HALF);
        let (mut base, mut ours, mut base_mem, mut our_mem) = (Vec::new(), Vec::new(), 0.0f64, 0.0f64);
        for _ in 0..2 {
            let floor = servers::baseline("sse-floor")?;
            let run = fanout::run(floor.addr, floor.pid(), n, "/subscribe", publish_floor, HALF)?;
            drop(floor);
            base.extend(run.times);
            base_mem = base_mem.max(run.bytes_per_subscriber);
            // Above the default 16,384 connections, within the process's
            // 20,000 descriptors.
            let flags = ["--quiet", "--threads", "1", "--max-connections", "19000"];
            let house = servers::house(guests, cache, log, &flags)?;
            let run = fanout::run(house.addr, house.pid(), n, "/source?room=fan", &publish_house, HALF)?;
            drop(house);
            ours.extend(run.times);
            our_mem = our_mem.max(run.bytes_per_subscriber);
        }
        let name = format!("27. scale: SSE fan-out to {n} subscribers (one loop)");
        let floor = "bare mio SSE server";
        report.row(Row::time(&name, "publish → last receipt, median of 10", median(&ours), median(&base), floor, None));
        report.row(Row::bytes(&name, "host RSS per idle SSE subscriber", our_mem, base_mem, floor));
        ours_at.push((n, median(&ours), our_mem));
    }
    let (Some(&(small, small_t, small_mem)), Some(&(large, large_t, large_mem))) = (ours_at.first(), ours_at.last())
    else {
        return Ok(());
    };
    // Linear growth: the same time and memory per subscriber at both ends.
    let name = format!("27. scale: house at {large} against house at {small}");
    let base = format!("house at {small} subscribers");
    let per = |t: Duration, n: usize| t / n as u32;
    report.row(Row::time(&name, "fan-out time per subscriber", per(large_t, large), per(small_t, small), &base, None));
    report.row(Row::bytes(&name, "host RSS per idle SSE subscriber", large_mem, small_mem, &base));
    Ok(())
}
