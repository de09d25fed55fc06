//! `--engine redis://`: two real house processes on one real redis-server
//! share their channels: order, exactly-once local delivery, isolation,
//! Redis killed and restarted under them, Redis absent at start.

use std::time::{Duration, Instant};

use house_tests::redis::Redis;
use house_tests::sse::Subscriber;
use house_tests::{Emitter, Server, free_port, wait_until};

fn host(engine: &str, extra: &[&str]) -> Server {
    Server::start(&["typed", "hello"], &[&["--engine", engine, "--quiet"], extra].concat())
}

/// A host on a Redis that is there: once it is connected. (A stream that
/// opened before would be ended by the resync that follows the first
/// connection, as every stream open while the engine was down is.)
fn host_up(engine: &str, extra: &[&str]) -> Server {
    let s = host(engine, extra);
    house_tests::wait_until(Duration::from_secs(10), "the host to be on Redis", || {
        let stats = s.stats_json();
        stats["engine_up"] == true && stats["kv_up"] == true
    });
    s
}

fn watch(s: &Server, channel: &str) -> Subscriber {
    let mut sub = Subscriber::open(s.connect(), &format!("/watch?ch={channel}"));
    assert_eq!(sub.next_data().as_deref(), Some("watching 1"));
    sub
}

/// The next event that is not a probe (see `crossing`), or None after `wait`.
fn next(sub: &mut Subscriber, wait: Duration) -> Option<String> {
    sub.set_timeout(wait);
    loop {
        match sub.next_data() {
            Some(data) if data == "probe" => continue,
            other => return other,
        }
    }
}

/// Publishes probes on `from` until one reaches `sub` on another host:
/// then that host has subscribed on Redis. Returns how long it took.
fn crossing(from: &mut Emitter, sub: &mut Subscriber, channel: &str, within: Duration) -> Duration {
    let start = Instant::now();
    sub.set_timeout(Duration::from_millis(50));
    loop {
        from.emit(channel, "probe");
        if let Some(data) = sub.next_data() {
            assert_eq!(data, "probe", "only probes so far");
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "no event crossed to the other host within {within:?}");
    }
}

/// Waits for `old` (a stream on `s`) to be ended by the host once it is
/// back on Redis, with a retry hint first; returns a new stream.
fn resynced(s: &Server, mut old: Subscriber, channel: &str) -> Subscriber {
    old.set_timeout(Duration::from_secs(10));
    let mut hinted = false;
    while let Some(raw) = old.next_raw() {
        hinted |= raw.starts_with("retry: ");
    }
    assert!(hinted, "the stream was told when to come back");
    watch(s, channel)
}

fn engine_up(s: &Server) -> bool {
    s.stats_json()["engine_up"].as_bool().expect("engine_up")
}

#[test]
fn two_hosts_share_channels_in_order_and_once() {
    let redis = Redis::start();
    let a = host_up(&redis.url(), &["--threads", "2"]);
    let b = host_up(&redis.url(), &["--threads", "2"]);
    let mut on_a = watch(&a, "room1");
    let mut on_b = watch(&b, "room1");
    let mut other_room = watch(&a, "room2");
    let mut from_a = Emitter::new(a.addr);
    let mut from_b = Emitter::new(b.addr);
    crossing(&mut from_b, &mut on_a, "room1", Duration::from_secs(5));
    crossing(&mut from_a, &mut on_b, "room1", Duration::from_secs(5));

    for i in 0..1000 {
        from_b.emit("room1", &format!("e{i}"));
    }
    let wait = Duration::from_secs(10);
    let got: Vec<String> = (0..1000).map(|_| next(&mut on_a, wait).expect("an event")).collect();
    let want: Vec<String> = (0..1000).map(|i| format!("e{i}")).collect();
    assert_eq!(got, want, "every event of B's, in order, once");
    let got: Vec<String> = (0..1000).map(|_| next(&mut on_b, wait).expect("an event")).collect();
    assert_eq!(got, want, "B's own subscriber, once each");

    // A's own publish reaches A's subscriber once: through Redis, which
    // gives it its id, like everyone else's.
    from_a.emit("room1", "own");
    assert_eq!(next(&mut on_a, wait).as_deref(), Some("own"));
    assert_eq!(next(&mut on_b, wait).as_deref(), Some("own"));
    from_b.emit("room1", "last");
    assert_eq!(next(&mut on_a, wait).as_deref(), Some("last"), "no second copy of \"own\"");
    assert_eq!(next(&mut on_a, Duration::from_millis(300)), None, "nothing more");

    // Rooms stay apart across hosts: room2 on A saw only its own probes.
    crossing(&mut from_b, &mut other_room, "room2", Duration::from_secs(5));
    assert_eq!(next(&mut other_room, Duration::from_millis(300)), None, "nothing of room1");
    for s in [&a, &b] {
        let stats = s.stats_json();
        assert_eq!((stats["engine"].as_str(), stats["engine_up"].as_bool()), (Some("redis"), Some(true)), "{stats}");
    }
}

#[test]
fn redis_killed_then_restarted_under_two_hosts() {
    let mut redis = Redis::start();
    let a = host_up(&redis.url(), &[]);
    let b = host_up(&redis.url(), &[]);
    let mut on_a = watch(&a, "k");
    let mut on_b = watch(&b, "k");
    let mut from_a = Emitter::new(a.addr);
    let mut from_b = Emitter::new(b.addr);
    crossing(&mut from_b, &mut on_a, "k", Duration::from_secs(15));
    crossing(&mut from_a, &mut on_b, "k", Duration::from_secs(15));

    redis.kill();
    wait_until(Duration::from_secs(5), "both hosts to notice", || !engine_up(&a) && !engine_up(&b));
    wait_until(Duration::from_secs(5), "their stores to notice", || {
        a.stats_json()["kv_up"] == false && b.stats_json()["kv_up"] == false
    });
    // HTTP goes on, without one error; a publish that cannot reach every
    // host is refused (503, Retry-After), and reaches no one: an answer of
    // 200 would say the event was sent.
    for i in 0..100 {
        for s in [&a, &b] {
            let r = s.get(&format!("/hello?name=n{i}"));
            assert_eq!((r.status, r.body.as_str()), (200, format!("Hello, n{i}!\n").as_str()));
        }
        for from in [&mut from_a, &mut from_b] {
            let r = from.try_emit("k", &format!("lost{i}"));
            assert_eq!((r.status, r.header("retry-after")), (503, Some("1")), "{}", r.body);
        }
    }
    assert_eq!(next(&mut on_a, Duration::from_millis(300)), None, "nothing was delivered");
    assert_eq!(next(&mut on_b, Duration::from_millis(300)), None, "nothing was delivered");
    // The engine's line (the key-value store says its own, when it notices).
    let lost = format!("house: engine redis://127.0.0.1:{}/0: lost Redis", redis.port);
    assert_eq!(a.count_log(&lost), 1, "said once:\n{}", a.log());

    redis.restart();
    // Back on Redis, each host ends its streams with a retry hint: they
    // may have missed what the other host published meanwhile, and resume
    // from their last id (here: a restarted Redis lost that history).
    let mut on_a = resynced(&a, on_a, "k");
    let mut on_b = resynced(&b, on_b, "k");
    let took = crossing(&mut from_b, &mut on_a, "k", Duration::from_secs(10));
    crossing(&mut from_a, &mut on_b, "k", Duration::from_secs(10));
    assert!(took <= Duration::from_secs(2), "cross-host delivery resumed {took:?} after Redis came back");
    from_b.emit("k", "after");
    assert_eq!(next(&mut on_a, Duration::from_secs(5)).as_deref(), Some("after"));
    assert!(engine_up(&a) && engine_up(&b));
}

#[test]
fn redis_absent_at_start_then_found() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let a = host(&url, &[]);
    a.wait_for_log("cannot reach Redis", Duration::from_secs(5));
    assert!(!engine_up(&a));
    let r = a.get("/hello");
    assert_eq!((r.status, r.body.as_str()), (200, "Hello, world!\n"));
    let mut on_a = watch(&a, "late");
    let mut from_a = Emitter::new(a.addr);
    let r = from_a.try_emit("late", "local");
    assert_eq!((r.status, r.header("retry-after")), (503, Some("1")), "refused, not delivered here only");
    assert_eq!(next(&mut on_a, Duration::from_millis(300)), None);

    let redis = Redis::start_on(port);
    let mut on_a = resynced(&a, on_a, "late");
    a.wait_for_log("connected, 1 channels subscribed", Duration::from_secs(5));
    assert_eq!(a.count_log("channels stay on this host until it answers"), 1, "said once:\n{}", a.log());
    assert_eq!(a.count_log("cannot reach Redis"), 2, "and the key-value store once:\n{}", a.log());
    let b = host_up(&redis.url(), &[]);
    let mut from_b = Emitter::new(b.addr);
    crossing(&mut from_b, &mut on_a, "late", Duration::from_secs(15));

    // What is on Redis but not a house event is counted and goes nowhere.
    redis.command(&["PUBLISH", "house:late", "not an event"]);
    redis.command(&["PUBLISH", "house:late", ""]);
    wait_until(Duration::from_secs(5), "the refusals to be counted", || a.stat("engine_refused") == 2);
    from_b.emit("late", "still fine");
    assert_eq!(next(&mut on_a, Duration::from_secs(5)).as_deref(), Some("still fine"));

    // The last listener gone, the host unsubscribes.
    drop(on_a);
    wait_until(Duration::from_secs(5), "A to unsubscribe", || {
        redis.command(&["PUBSUB", "NUMSUB", "house:late"]).ends_with(":0\r\n")
    });
}

#[test]
fn bad_engine_addresses_stop_the_server_at_start() {
    let out = std::process::Command::new(house_tests::house_bin())
        .args(["--port", "0", "--engine", "redis://127.0.0.1:99999"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("house: --engine: \"redis://127.0.0.1:99999\": "), "{err}");
}

/// Redis hangs (SIGSTOP): nothing waits on it for longer than
/// `--engine-timeout-ms` and a few seconds to ask again. A stream that
/// opens with a resume is answered with a reset, a publish with 503 (its
/// outcome unknown: the stopped Redis may still run it when it wakes), and
/// both hosts come back once Redis does.
#[test]
fn a_hung_redis_is_answered_within_the_engine_timeout() {
    let redis = Redis::start();
    let a = host_up(&redis.url(), &["--engine-timeout-ms", "1000"]);
    wait_until(Duration::from_secs(10), "the host to be on Redis", || engine_up(&a) && a.stats_json()["kv_up"] == true);
    let mut on_a = watch(&a, "hung");
    let mut from_a = Emitter::new(a.addr);
    crossing(&mut from_a, &mut on_a, "hung", Duration::from_secs(5));
    redis.pause();

    let started = Instant::now();
    let mut opening = Subscriber::open_with(a.connect(), "/watch?ch=hung", &[("Last-Event-ID", "1-1")]);
    opening.set_timeout(Duration::from_secs(10));
    assert_eq!(opening.next_data().as_deref(), Some("watching 1"));
    let owed = opening.next_raw().expect("what the stream is owed");
    assert!(owed.contains("event: reset"), "its history cannot be read: {owed:?}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "a stream opening on a hung Redis waited {took:?}");

    let started = Instant::now();
    let r = from_a.try_emit("hung", "during");
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(took < Duration::from_secs(6), "a publish on a hung Redis waited {took:?}");

    redis.resume();
    wait_until(Duration::from_secs(10), "the host to be back on Redis", || engine_up(&a));
    let mut on_a = watch(&a, "hung");
    let mut from_a = Emitter::new(a.addr);
    wait_until(Duration::from_secs(10), "publishing to work again", || from_a.try_emit("hung", "probe").status == 200);
    crossing(&mut from_a, &mut on_a, "hung", Duration::from_secs(5));
}

/// Redis restarted without persistence: the channel's history is gone,
/// and the stream recreated by the next publish begins after every id of
/// the old one. A resume from an old id is a reset, however young the id.
#[test]
fn a_resume_across_a_redis_restart_without_persistence_is_a_reset() {
    let mut redis = Redis::start();
    let a = host_up(&redis.url(), &[]);
    // A stream opened before the host reaches Redis is ended once it does.
    wait_until(Duration::from_secs(10), "the host to be on Redis", || engine_up(&a) && a.stats_json()["kv_up"] == true);
    let mut on_a = watch(&a, "epoch");
    let mut from_a = Emitter::new(a.addr);
    crossing(&mut from_a, &mut on_a, "epoch", Duration::from_secs(5));
    from_a.emit("epoch", "old");
    on_a.set_timeout(Duration::from_secs(5));
    let raw = on_a.next_raw().expect("the event");
    let id = raw.lines().find_map(|l| l.strip_prefix("id: ")).expect("an id").to_owned();
    assert!(raw.contains("data: old"), "{raw:?}");

    redis.kill();
    redis.restart();
    // Back on the new Redis, a new stream for the channel carries events
    // again (through Redis: the engine is subscribed).
    let mut again = resynced(&a, on_a, "epoch");
    let mut from_a = Emitter::new(a.addr);
    wait_until(Duration::from_secs(10), "publishing to work again", || from_a.try_emit("epoch", "probe").status == 200);
    crossing(&mut from_a, &mut again, "epoch", Duration::from_secs(5));
    assert!(redis.command(&["EXISTS", "house:history:epoch"]).contains(":1"), "the stream was recreated");
    let mut back = Subscriber::open_with(a.connect(), "/watch?ch=epoch", &[("Last-Event-ID", id.as_str())]);
    back.set_timeout(Duration::from_secs(10));
    assert_eq!(back.next_data().as_deref(), Some("watching 1"));
    let owed = back.next_raw().expect("what it is owed");
    assert!(owed.contains("event: reset"), "the history after {id} is gone: {owed:?}");
}
