//! Presence and several hosts (issue 26's figures): a guest's `presence()`
//! of a channel with 10,000 members, on one host and on Redis (25); fan-out
//! over 4 hosts x 2,500 subscribers on one redis-server against one host
//! with 10,000 on the same Redis (26), all in this run.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::fanout::{Clients, read_one_response};
use crate::report::{Report, Row};
use crate::{SEND, history, median, redis, servers};

pub fn run(report: &mut Report, guests: &Path, cache: &Path, work: &Path) -> anyhow::Result<()> {
    let redis = redis::start(work)?;
    let url = format!("redis://127.0.0.1:{}", redis.port);
    presence(report, guests, cache, work, &url)?;
    four_hosts(report, guests, cache, work, &url)
}

/// 25: `GET /members?ch=big&limit=10000&count=1` (the typed guest: its
/// `presence()` returns the 10,000 names, decoded into the guest's strings,
/// and it answers how many) with 10,000 members, against the same call for
/// a channel with none, median of 50 each, on one host (memory engine) and
/// on Redis.
fn presence(report: &mut Report, guests: &Path, cache: &Path, work: &Path, url: &str) -> anyhow::Result<()> {
    const MEMBERS: usize = 10_000;
    const ASKS: usize = 50;
    for (engine, extra) in [("one host", vec![]), ("Redis", vec!["--engine", url])] {
        eprintln!("bench: presence() of {MEMBERS} members, {engine}");
        let flags = [&["--quiet", "--threads", "1"], &extra[..]].concat();
        let house = servers::house(guests, cache, &work.join("presence.log"), &flags)?;
        if !extra.is_empty() {
            history::engine_up(house.admin)?;
        }
        let members = Clients::subscribe_each(house.addr, MEMBERS, &|i| format!("/member?ch=big&info=m{i:05}"))?;
        let ask = |ch: &str, want: usize| -> anyhow::Result<Vec<Duration>> {
            let mut c = TcpStream::connect(house.addr)?;
            c.set_nodelay(true)?;
            let mut r = BufReader::new(c.try_clone()?);
            let request = format!("GET /members?ch={ch}&limit={MEMBERS}&count=1 HTTP/1.1\r\nHost: bench\r\n\r\n");
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut times = Vec::with_capacity(ASKS);
            while times.len() < ASKS {
                let started = Instant::now();
                c.write_all(request.as_bytes())?;
                let (status, body) = crate::read_response(&mut r)?;
                let took = started.elapsed();
                if status != 200 {
                    bail!("/members answered {status}: {body}");
                }
                // Joins reach Redis in batches: wait until all are there.
                let got: usize = body.trim().parse()?;
                if got == want {
                    times.push(took);
                } else if Instant::now() > deadline {
                    bail!("/members listed {got} of {want}");
                }
            }
            Ok(times)
        };
        let full = ask("big", MEMBERS)?;
        let empty = ask("none", 0)?;
        drop(members);
        let name = format!("25. presence() of a channel with {MEMBERS} members, {engine}");
        let metric = "a request whose guest calls presence(), median of 50";
        let row = Row::time(&name, metric, median(&full), median(&empty), "no members", None);
        report.row(row.at_most(Duration::from_millis(1)));
    }
    Ok(())
}

/// 26: the chat's room on 4 hosts x 2,500 subscribers, a publish through
/// the first, until the last subscriber of all has it; against 10,000 on
/// one host of the same Redis, its own publish. Two alternating halves of
/// 10 publishes.
fn four_hosts(report: &mut Report, guests: &Path, cache: &Path, work: &Path, url: &str) -> anyhow::Result<()> {
    const HALF: usize = 10;
    const N: usize = 10_000;
    eprintln!("bench: fan-out to 4 hosts x {} against 1 host x {N}, on Redis", N / 4);
    let flags = ["--quiet", "--threads", "1", "--engine", url];
    let (mut one, mut four) = (Vec::new(), Vec::new());
    for half in 0..2 {
        // Rooms of their own: each run starts without history.
        let room = format!("fan4-{half}");
        let publish =
            format!("GET {SEND} HTTP/1.1\r\nHost: bench\r\n\r\n").replace("room=bench", &format!("room={room}"));
        let source = format!("/source?room={room}");
        let single = servers::house(guests, cache, &work.join("one.log"), &flags)?;
        history::engine_up(single.admin)?;
        let mut groups = vec![Clients::subscribe(single.addr, N, &source, "")?];
        one.extend(measure(&mut groups, single.addr, &publish, HALF)?);
        drop((groups, single));
        let room = format!("fan4b-{half}");
        let publish = publish.replace(&format!("room=fan4-{half}"), &format!("room={room}"));
        let source = format!("/source?room={room}");
        let hosts = (0..4)
            .map(|i| servers::house(guests, cache, &work.join(format!("host{i}.log")), &flags))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for h in &hosts {
            history::engine_up(h.admin)?;
        }
        let mut groups =
            hosts.iter().map(|h| Clients::subscribe(h.addr, N / 4, &source, "")).collect::<anyhow::Result<Vec<_>>>()?;
        four.extend(measure(&mut groups, hosts[0].addr, &publish, HALF)?);
    }
    let name = format!("26. 4 hosts x {} subscribers on one Redis", N / 4);
    let base = format!("1 host x {N}, same Redis");
    report.row(Row::time(&name, "publish → last receipt, median of 20", median(&four), median(&one), &base, Some(1.2)));
    Ok(())
}

/// Publishes `reps` times through `publish_to`, each timed until every
/// subscriber of every group has it (after a warm-up publish that crosses).
fn measure(
    groups: &mut [Clients],
    publish_to: SocketAddr,
    publish: &str,
    reps: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut publisher = TcpStream::connect(publish_to)?;
    publisher.set_nodelay(true)?;
    // Warm-up: a host subscribes on Redis a moment after its first stream.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        publisher.write_all(publish.as_bytes())?;
        read_one_response(&mut publisher)?;
        if groups.iter_mut().all(|g| g.wait_for(2, Duration::from_millis(300)).is_ok()) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the warm-up publish never reached every host");
        }
    }
    // Later warm-ups may still be on their way: let them land, then count
    // from 1 on every host.
    std::thread::sleep(Duration::from_millis(300));
    for g in groups.iter_mut() {
        let _ = g.wait_for(usize::MAX, Duration::from_millis(1));
        g.rebase(1)?;
    }
    let mut times = Vec::with_capacity(reps);
    for rep in 0..reps {
        let started = Instant::now();
        publisher.write_all(publish.as_bytes())?;
        for g in groups.iter_mut() {
            g.wait_for(2 + rep, Duration::from_secs(30))?;
        }
        times.push(started.elapsed());
        read_one_response(&mut publisher)?;
    }
    Ok(times)
}
