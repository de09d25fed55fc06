//! Channel history: ids, resuming with `Last-Event-ID` (no gap, no
//! duplicate), `event: reset` when a resume cannot be honoured, the
//! backlog on join, the memory engine's bounds and expiry, and the same
//! across two hosts on a real redis-server, a rolling restart included.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use house_tests::redis::Redis;
use house_tests::sse::Subscriber;
use house_tests::{Emitter, Server, enc, free_port, read_response, wait_until};

/// One event as the client sees it.
#[derive(Debug, Clone, PartialEq)]
struct Ev {
    id: Option<String>,
    event: Option<String>,
    retry: Option<u64>,
    data: String,
}

fn parse(raw: &str) -> Ev {
    let field = |name: &str| raw.lines().find_map(|l| l.strip_prefix(name)).map(str::to_owned);
    let data: Vec<&str> = raw.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    Ev {
        id: field("id: "),
        event: field("event: "),
        retry: field("retry: ").map(|r| r.parse().expect("a numeric retry")),
        data: data.join("\n"),
    }
}

/// Opens `/watch?ch=CHANNEL` on `addr`, resuming after `last` if given;
/// returns the subscriber once its first event ("watching 1") arrived.
fn watch(addr: SocketAddr, channel: &str, last: Option<&str>) -> Subscriber {
    let stream = TcpStream::connect(addr).expect("connect");
    let target = format!("/watch?ch={channel}");
    let mut sub = match last {
        Some(id) => Subscriber::open_with(stream, &target, &[("Last-Event-ID", id)]),
        None => Subscriber::open(stream, &target),
    };
    assert!(sub.head.starts_with("HTTP/1.1 200"), "{}", sub.head);
    sub.set_timeout(Duration::from_secs(10));
    let first = parse(&sub.next_raw().expect("the first event"));
    assert_eq!(first.data, "watching 1");
    sub
}

/// The next event (not a heartbeat), or None after `wait`.
fn next(sub: &mut Subscriber, wait: Duration) -> Option<Ev> {
    sub.set_timeout(wait);
    loop {
        let raw = sub.next_raw()?;
        if !raw.starts_with(':') {
            return Some(parse(&raw));
        }
    }
}

fn memory_host(extra: &[&str]) -> Server {
    Server::start(&["typed", "chat"], &[&["--quiet"], extra].concat())
}

/// Receives `n` events, checking their data; returns the last id.
fn expect(sub: &mut Subscriber, data: &[&str]) -> String {
    let mut last: Option<String> = None;
    for want in data {
        let ev = next(sub, Duration::from_secs(10)).unwrap_or_else(|| panic!("no event {want:?}"));
        assert_eq!((ev.event.as_deref(), ev.data.as_str()), (None, *want));
        let id = ev.id.expect("every event has an id");
        if let Some(prev) = &last {
            assert!(newer(&id, prev), "ids increase: {prev} then {id}");
        }
        last = Some(id);
    }
    last.expect("at least one event")
}

/// `a` comes after `b` (ids are `HI-LO`, decimal).
fn newer(a: &str, b: &str) -> bool {
    let key = |id: &str| {
        let (hi, lo) = id.split_once('-').expect("HI-LO");
        (hi.parse::<u64>().unwrap(), lo.parse::<u64>().unwrap())
    };
    key(a) > key(b)
}

/// Resume on `host_b` (the same host or another) after events published
/// through `publish_on`: exactly what was missed, then live, nothing twice.
fn resume_exactly(host_a: SocketAddr, host_b: SocketAddr, publish_on: SocketAddr) {
    let mut emitter = Emitter::new(publish_on);
    let mut sub = watch(host_a, "room", None);
    // With Redis, the first publish may race the subscription: the stream
    // only starts once it is live, so from here none is lost.
    for i in 1..=3 {
        emitter.emit("room", &format!("m{i}"));
    }
    let last = expect(&mut sub, &["m1", "m2", "m3"]);
    drop(sub);
    emitter.emit("room", "m4");
    emitter.emit("room", "m5");
    let mut back = watch(host_b, "room", Some(&last));
    expect(&mut back, &["m4", "m5"]);
    emitter.emit("room", "m6");
    expect(&mut back, &["m6"]);
    assert_eq!(next(&mut back, Duration::from_millis(300)), None, "nothing twice");
}

#[test]
fn a_stream_resumes_after_its_last_id_with_nothing_lost_or_twice() {
    let s = memory_host(&["--threads", "2"]);
    resume_exactly(s.addr, s.addr, s.addr);
}

/// The seam between replay and live, under fire: events published as fast
/// as one connection can while a subscriber keeps dropping and resuming.
/// It must end with every event exactly once, in order.
fn resume_under_load(sub_on: SocketAddr, publish_on: SocketAddr) {
    const EVENTS: usize = 600;
    let mut got: Vec<String> = Vec::new();
    let mut sub = watch(sub_on, "hot", None);
    let publisher = std::thread::spawn(move || {
        let mut emitter = Emitter::new(publish_on);
        for i in 0..EVENTS {
            emitter.emit("hot", &format!("{i}"));
        }
    });
    let mut resumes = 0;
    while got.len() < EVENTS {
        let ev = next(&mut sub, Duration::from_secs(10)).unwrap_or_else(|| panic!("stuck after {}", got.len()));
        assert_eq!(ev.event, None, "no reset: {ev:?}");
        got.push(ev.data);
        if got.len().is_multiple_of(37) {
            sub = watch(sub_on, "hot", ev.id.as_deref());
            resumes += 1;
        }
    }
    publisher.join().unwrap();
    let want: Vec<String> = (0..EVENTS).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
    assert!(resumes >= 10);
    assert_eq!(next(&mut sub, Duration::from_millis(300)), None, "nothing twice at the end");
}

#[test]
fn resuming_while_events_pour_in_loses_nothing_and_repeats_nothing() {
    let s = memory_host(&["--threads", "2", "--history-events", "1000"]);
    resume_under_load(s.addr, s.addr);
}

#[test]
fn with_redis_resuming_while_events_pour_in_loses_nothing_and_repeats_nothing() {
    let redis = Redis::start();
    let a = redis_host(&redis, None, &["--history-events", "1000"]);
    let b = redis_host(&redis, None, &["--history-events", "1000"]);
    resume_under_load(a.addr, b.addr);
    resume_under_load(a.addr, a.addr);
}

#[test]
fn ids_that_cannot_be_resumed_get_a_reset_that_carries_the_newest_id() {
    let s = memory_host(&[]);
    let mut emitter = Emitter::new(s.addr);
    let mut sub = watch(s.addr, "r", None);
    emitter.emit("r", "one");
    let id = expect(&mut sub, &["one"]);
    let (epoch, seq) = id.split_once('-').unwrap();
    let seq: u64 = seq.parse().unwrap();
    let beyond = format!("{epoch}-{}", seq + 1000);
    let unknown = format!("{}-{seq}", epoch.parse::<u64>().unwrap() + 1);
    for bad in [beyond.as_str(), unknown.as_str(), "garbage", ""] {
        let mut again = watch(s.addr, "r", Some(bad));
        let ev = next(&mut again, Duration::from_secs(10)).expect("a reset");
        assert_eq!(ev.event.as_deref(), Some("reset"), "{bad:?}: {ev:?}");
        assert_eq!(ev.id.as_deref(), Some(id.as_str()), "the reset says where the stream is now");
        // Resuming from the reset's id is honoured.
        drop(again);
        let mut resumed = watch(s.addr, "r", Some(&id));
        assert_eq!(next(&mut resumed, Duration::from_millis(200)), None, "{bad:?}: caught up, nothing to replay");
    }
    // History lost with a restart: the old id is a reset on the new process.
    drop(s);
    let s = memory_host(&[]);
    let mut after_restart = watch(s.addr, "r", Some(&id));
    let ev = next(&mut after_restart, Duration::from_secs(10)).expect("a reset");
    assert_eq!(ev.event.as_deref(), Some("reset"));
}

#[test]
fn an_id_older_than_the_history_kept_is_a_reset() {
    let s = memory_host(&["--history-events", "3"]);
    let mut emitter = Emitter::new(s.addr);
    let mut sub = watch(s.addr, "r", None);
    emitter.emit("r", "e1");
    let first = expect(&mut sub, &["e1"]);
    emitter.emit_times("r", "later", 4);
    expect(&mut sub, &["later"; 4]);
    let mut back = watch(s.addr, "r", Some(&first));
    assert_eq!(next(&mut back, Duration::from_secs(10)).and_then(|e| e.event).as_deref(), Some("reset"));
}

#[test]
fn a_chat_newcomer_sees_the_last_fifty_messages_then_live_ones() {
    let s = memory_host(&[]);
    for i in 0..60 {
        let body = format!("room=lobby&name=ada&message={}", enc(&format!("message {i:02}")));
        assert_eq!(s.post_form("/send-message", &body).status, 200);
    }
    let mut sub = Subscriber::open(s.connect(), "/source?room=lobby");
    assert_eq!(sub.next_data().as_deref(), Some("Listening..."));
    for i in 10..60 {
        let ev = next(&mut sub, Duration::from_secs(10)).expect("backlog");
        let msg: serde_json::Value = serde_json::from_str(&ev.data).unwrap();
        assert_eq!(msg["message"], format!("message {i:02}"));
        assert!(ev.id.is_some());
    }
    let body = "room=lobby&name=bob&message=live%20now";
    assert_eq!(s.post_form("/send-message", body).status, 200);
    let ev = next(&mut sub, Duration::from_secs(10)).expect("live");
    assert!(ev.data.contains("live now"), "{ev:?}");
}

#[test]
fn ten_thousand_channels_of_a_thousand_events_stay_within_the_budget() {
    const BUDGET_MB: u64 = 8;
    let s = memory_host(&["--history-budget-mb", "8", "--guest-publish-events", "1000", "--threads", "2"]);
    let rss_before = s.rss_kib();
    let mut emitter = Emitter::new(s.addr);
    let started = Instant::now();
    for ch in 0..10_000 {
        emitter.emit_times(&format!("c{ch}"), "a small event of some forty bytes or so", 1000);
        if (ch + 1) % 1000 == 0 {
            let bytes = s.stat("history_bytes");
            assert!(bytes <= BUDGET_MB << 20, "{bytes} bytes of history after {} channels", ch + 1);
        }
    }
    assert!(started.elapsed() < Duration::from_secs(120), "10M events took {:?}", started.elapsed());
    let stats = s.stats_json();
    let (bytes, events, channels) = (
        stats["history_bytes"].as_u64().unwrap(),
        stats["history_events"].as_u64().unwrap(),
        stats["history_channels"].as_u64().unwrap(),
    );
    assert!(bytes <= BUDGET_MB << 20 && bytes > (BUDGET_MB << 20) / 2, "{bytes} bytes");
    assert_eq!(events, channels * 100, "each channel kept its last 100");
    // What the process holds grew by about the budget, not by 10M events.
    let grown = s.rss_kib().saturating_sub(rss_before);
    assert!(grown < 3 * (BUDGET_MB << 10), "RSS grew by {grown} KiB for a budget of {BUDGET_MB} MiB");
}

#[test]
fn the_history_of_an_idle_channel_expires() {
    let s = memory_host(&["--history-idle-ms", "200"]);
    let mut emitter = Emitter::new(s.addr);
    emitter.emit_times("quiet", "x", 10);
    assert_eq!(s.stat("history_events"), 10);
    wait_until(Duration::from_secs(5), "the idle channel to expire", || s.stat("history_channels") == 0);
    assert_eq!(s.stat("history_bytes"), 0);
}

#[test]
fn shutdown_finishes_requests_in_flight_and_ends_streams_with_spread_retry_hints() {
    let mut s = memory_host(&["--retry-ms", "1000"]);
    let mut subs: Vec<Subscriber> = (0..20).map(|_| watch(s.addr, "r", None)).collect();
    wait_until(Duration::from_secs(5), "20 subscriptions", || s.stat("subscriptions") == 20);
    // A request half sent when SIGTERM comes is still answered.
    let body = "channel=r&data=last%20words";
    let mut half = s.connect();
    half.write_all(
        format!(
            "POST /emit HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{}",
            body.len(),
            &body[..10]
        )
        .as_bytes(),
    )
    .unwrap();
    wait_until(Duration::from_secs(5), "the half request to be read", || s.stat("connections") >= 21);
    let pid = s.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    s.wait_for_log("shutting down", Duration::from_secs(5));
    half.write_all(&body.as_bytes()[10..]).unwrap();
    let r = read_response(&mut BufReader::new(half), false).expect("the request in flight is answered");
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    let mut hints = Vec::new();
    for sub in &mut subs {
        let ev = next(sub, Duration::from_secs(5)).expect("a retry hint before the end");
        let retry = ev.retry.expect("a retry field");
        assert!((500..=1500).contains(&retry), "{retry}");
        hints.push(retry);
        assert_eq!(next(sub, Duration::from_secs(5)), None, "then the stream ends");
    }
    hints.sort_unstable();
    hints.dedup();
    assert!(hints.len() >= 5, "hints are spread: {hints:?}");
    assert!(s.terminate().success());
}

fn redis_host(redis: &Redis, port: Option<u16>, extra: &[&str]) -> Server {
    let port = port.map(|p| p.to_string());
    let url = redis.url();
    let mut flags = vec!["--engine", url.as_str(), "--quiet", "--threads", "2"];
    if let Some(port) = &port {
        flags.extend(["--port", port.as_str()]);
    }
    flags.extend(extra);
    let s = Server::start(&["typed"], &flags);
    wait_until(Duration::from_secs(10), "the engine to connect", || s.stats_json()["engine_up"] == true);
    s
}

#[test]
fn with_redis_a_stream_resumes_on_the_other_host() {
    let redis = Redis::start();
    let a = redis_host(&redis, None, &[]);
    let b = redis_host(&redis, None, &[]);
    resume_exactly(a.addr, b.addr, b.addr);
    // And the reset cases, from Redis's history.
    for bad in ["garbage", "1-0", "99999999999999-0"] {
        let mut sub = watch(a.addr, "room", Some(bad));
        let ev = next(&mut sub, Duration::from_secs(10)).expect("a reset");
        assert_eq!(ev.event.as_deref(), Some("reset"), "{bad:?}: {ev:?}");
    }
    let stream_len = redis.command(&["XLEN", "house:history:room"]);
    assert_eq!(stream_len.trim(), ":6", "one stream entry per event");
}

#[test]
fn with_redis_an_id_older_than_the_history_kept_is_a_reset() {
    let redis = Redis::start();
    let a = redis_host(&redis, None, &["--history-events", "3", "--guest-publish-events", "1000"]);
    let mut emitter = Emitter::new(a.addr);
    let mut sub = watch(a.addr, "old", None);
    emitter.emit("old", "e1");
    let first = expect(&mut sub, &["e1"]);
    // `MAXLEN ~` trims whole nodes of 100: 300 more go past any slack.
    emitter.emit_times("old", "later", 300);
    expect(&mut sub, &["later"; 300]);
    let len: u64 = redis.command(&["XLEN", "house:history:old"]).trim().trim_start_matches(':').parse().unwrap();
    assert!(len < 300, "trimmed to about 3: {len}");
    let mut back = watch(a.addr, "old", Some(&first));
    assert_eq!(next(&mut back, Duration::from_secs(10)).and_then(|e| e.event).as_deref(), Some("reset"));
}

#[test]
fn a_rolling_restart_loses_nothing_for_a_subscriber_of_the_restarted_host() {
    const EVENTS: usize = 40;
    let redis = Redis::start();
    let port_a = free_port();
    let mut a = redis_host(&redis, Some(port_a), &[]);
    let b = redis_host(&redis, None, &[]);
    let addr_a = a.addr;
    let addr_b = b.addr;
    // A browser on A: reconnects after each end, with its last id, to A
    // if it answers, else to B (as a load balancer would).
    let reader = std::thread::spawn(move || {
        let mut got: Vec<String> = Vec::new();
        let mut last: Option<String> = None;
        let mut reconnects = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut sub = watch(addr_a, "roll", None);
        while got.len() < EVENTS && Instant::now() < deadline {
            match next(&mut sub, Duration::from_secs(10)) {
                Some(ev) if ev.retry.is_some() && ev.id.is_none() => {
                    assert!(ev.data.is_empty(), "a retry hint alone: {ev:?}");
                }
                Some(ev) => {
                    assert_ne!(ev.event.as_deref(), Some("reset"), "no reset within the history window");
                    got.push(ev.data);
                    last = ev.id;
                }
                None => {
                    reconnects += 1;
                    sub = loop {
                        let target = if TcpStream::connect(addr_a).is_ok() { addr_a } else { addr_b };
                        // (A host shutting down may accept and close.)
                        let headers: Vec<(&str, &str)> = last.iter().map(|id| ("Last-Event-ID", id.as_str())).collect();
                        let opened = TcpStream::connect(target)
                            .ok()
                            .and_then(|stream| Subscriber::try_open_with(stream, "/watch?ch=roll", &headers));
                        if let Some(mut s) = opened {
                            s.set_timeout(Duration::from_secs(10));
                            if s.head.starts_with("HTTP/1.1 200") && s.next_data().as_deref() == Some("watching 1") {
                                break s;
                            }
                        }
                        assert!(Instant::now() < deadline, "could not reconnect");
                        std::thread::sleep(Duration::from_millis(20));
                    };
                }
            }
        }
        (got, reconnects)
    });
    wait_until(Duration::from_secs(10), "the subscriber on A", || a.stat("subscriptions") == 1);
    let mut emitter = Emitter::new(addr_b);
    for i in 0..EVENTS {
        if i == 10 {
            assert!(a.terminate().success(), "A exits cleanly");
            a = redis_host(&redis, Some(port_a), &[]);
        }
        emitter.emit("roll", &format!("e{i:02}"));
        std::thread::sleep(Duration::from_millis(100)); // 10 events/s
    }
    let (got, reconnects) = reader.join().expect("the subscriber");
    let want: Vec<String> = (0..EVENTS).map(|i| format!("e{i:02}")).collect();
    assert_eq!(got, want, "every event exactly once, in order");
    assert!(reconnects >= 1, "the restart ended the stream");
    drop(a);
}
