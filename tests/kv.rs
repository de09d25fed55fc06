//! Guests' key-value data through the hello guest, on both stores: the
//! embedded one (redb under `--data-dir`) and Redis (`--engine redis://`,
//! a real redis-server). Every import, its bounds as error codes the guest
//! handles, a failing or trapping call's writes absent, exact counts under
//! concurrent increments; on the embedded store, data across a restart and
//! one data directory per process; on Redis, two hosts that see the same
//! data, 8 clients x 2 hosts x 500 increments that end at exactly 8,000,
//! and Redis lost and back under a running host.

use std::io::{BufReader, Write};
use std::time::Duration;

use house_tests::redis::Redis;
use house_tests::{Server, TempDir, enc, read_response, wait_until};

fn hello(flags: &[&str]) -> Server {
    Server::start(&["hello"], &[&["--quiet"], flags].concat())
}

/// A host on `redis`, once its store is connected.
fn on_redis(redis: &Redis, flags: &[&str]) -> Server {
    let url = redis.url();
    let s = hello(&[&["--engine", url.as_str()], flags].concat());
    wait_until(Duration::from_secs(10), "the key-value store to connect", || s.stats_json()["kv_up"] == true);
    s
}

fn said(s: &Server, target: &str) -> (u16, String) {
    let r = s.get(target);
    (r.status, r.body.trim_end().to_owned())
}

/// `count` requests of `target` on one connection, each answered 200 in
/// the end: a 503 with `Retry-After` (the call's transaction stayed in
/// conflict through its re-runs; nothing happened) is asked again, as a
/// client should. Returns how many were.
fn hammer(s: &Server, target: &str, count: usize) -> usize {
    let mut c = BufReader::new(s.connect());
    let mut retried = 0;
    for _ in 0..count {
        loop {
            c.get_mut().write_all(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).unwrap();
            let r = read_response(&mut c, false).unwrap();
            if r.status == 503 && r.header("retry-after").is_some() && r.header("house-outcome").is_none() {
                retried += 1;
                assert!(retried <= count, "more 503s than requests");
                continue;
            }
            assert_eq!(r.status, 200, "{}", r.body);
            break;
        }
    }
    retried
}

fn set_get_delete_list_and_expire(s: &Server) {
    assert_eq!(said(s, "/note?key=a"), (200, "(none)".into()));
    assert_eq!(said(s, "/note?key=a&text=first"), (200, "set".into()));
    assert_eq!(said(s, "/note?key=a"), (200, "first".into()));
    assert_eq!(said(s, "/note?key=a&text=second"), (200, "set".into()));
    assert_eq!(said(s, "/note?key=a"), (200, "second".into()));
    for k in ["ab", "b", "ac"] {
        said(s, &format!("/note?key={k}&text=x"));
    }
    assert_eq!(said(s, "/notes?prefix=a"), (200, "a\nab\nac".into()), "in key order");
    assert_eq!(said(s, "/notes?prefix=a&limit=2"), (200, "a\nab".into()));
    assert_eq!(said(s, "/notes?prefix=zz"), (200, "".into()));
    assert_eq!(said(s, "/notes?limit=0"), (200, "".into()));
    assert_eq!(said(s, "/note?key=ab&delete=true"), (200, "deleted".into()));
    assert_eq!(said(s, "/note?key=ab"), (200, "(none)".into()));
    assert_eq!(said(s, "/notes?prefix=a"), (200, "a\nac".into()), "a deleted key is not listed");
    assert_eq!(said(s, "/note?key=nothing&delete=true"), (200, "deleted".into()), "deleting nothing is fine");
    assert_eq!(said(s, &format!("/note?key=t&text={}&ttl_ms=150", enc("for a moment"))), (200, "set".into()));
    assert_eq!(said(s, "/note?key=t"), (200, "for a moment".into()));
    wait_until(Duration::from_secs(5), "the note to expire", || said(s, "/note?key=t").1 == "(none)");
    assert!(!said(s, "/notes").1.lines().any(|k| k == "t"), "an expired key is not listed");
    // Counting from a value that is not a number is refused, not reset.
    assert_eq!(said(s, "/note?key=visits:text&text=abc"), (200, "set".into()));
    assert_eq!(s.get("/visits?page=text").status, 500, "the SDK's Err: a 500");
}

fn bounds_are_errors_the_guest_handles(s: &Server) {
    assert_eq!(said(s, "/note?key=12345678&text=v"), (200, "set".into()), "a key at the bound");
    assert_eq!(said(s, "/note?key=123456789&text=v"), (507, "key or value too large".into()));
    assert_eq!(said(s, &format!("/note?key=v&text={}", "x".repeat(100))), (200, "set".into()));
    assert_eq!(said(s, &format!("/note?key=v&text={}", "x".repeat(101))), (507, "key or value too large".into()));
    // 1 MiB for the module: 100-byte values fill it after ~8,000 keys.
    let mut c = BufReader::new(s.connect());
    let mut refused_at = None;
    for i in 0..12_000 {
        let target = format!("/note?key=f{i}&text={}", "y".repeat(100));
        c.get_mut().write_all(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).unwrap();
        let r = read_response(&mut c, false).unwrap();
        if r.status == 507 {
            assert_eq!(r.body.trim_end(), "over this call's or this module's key-value budget");
            refused_at = Some(i);
            break;
        }
        assert_eq!(r.status, 200);
    }
    let at = refused_at.expect("the module's bytes are bounded");
    assert!((7_500..10_000).contains(&at), "refused after {at} keys of 115-130 bytes (as each store counts) for 1 MiB");
    // Deleting gives bytes back: one more key fits.
    assert_eq!(said(s, "/note?key=f0&delete=true"), (200, "deleted".into()));
    assert_eq!(said(s, &format!("/note?key=again&text={}", "y".repeat(100))), (200, "set".into()));
    assert_eq!(said(s, "/note?key=v").0, 200, "reads still work");
}

const BOUNDS: [&str; 6] = ["--kv-key-bytes", "8", "--kv-value-bytes", "100", "--kv-module-mb", "1"];

fn a_failing_call_leaves_no_write_behind(s: &Server) {
    assert_eq!(s.get("/note?key=k&text=kept").status, 200);
    let r = s.get("/note?key=k&text=lost&fail=true");
    assert_eq!(r.status, 500);
    assert_eq!(said(s, "/note?key=k"), (200, "kept".into()), "the failed call's set is absent");
    let r = s.get("/note?key=k&text=lost&trap=true");
    assert_eq!((r.status, r.body.trim_end()), (500, "handler note failed"));
    assert_eq!(said(s, "/note?key=k"), (200, "kept".into()), "the trapping call's set is absent");
    // The SDK's panic hook: the message and its place reach the log.
    s.wait_for_log("guest hello.wasm: note: panicked at hello/src/lib.rs:", Duration::from_secs(5));
    assert!(s.log().contains(": trapped on purpose, after writing"), "{}", s.log());
    assert_eq!(s.get("/note?key=k&delete=true&trap=true").status, 500);
    assert_eq!(said(s, "/note?key=k"), (200, "kept".into()), "and its delete");
}

/// `hosts` each get `clients` connections incrementing one counter `each`
/// times; the count is then exactly their product.
fn concurrent_increments_lose_no_update(hosts: &[&Server], clients: usize, each: usize) {
    let retried: usize = std::thread::scope(|scope| {
        let mut threads = Vec::new();
        for s in hosts {
            for _ in 0..clients {
                threads.push(scope.spawn(|| hammer(s, "/visits?page=hot", each)));
            }
        }
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    eprintln!("{} increments on one key: {retried} answers of 503 asked again", hosts.len() * clients * each);
    let want = format!(r#"{{"page":"hot","visits":{}}}"#, hosts.len() * clients * each + 1);
    assert_eq!(said(hosts[0], "/visits?page=hot"), (200, want), "every increment counted once");
}

#[test]
fn embedded_set_get_delete_list_and_expire() {
    set_get_delete_list_and_expire(&hello(&[]));
}

#[test]
fn redis_set_get_delete_list_and_expire() {
    let redis = Redis::start();
    let s = on_redis(&redis, &[]); // running: its sweep is checked below
    set_get_delete_list_and_expire(&s);
    // The data is Redis's, in plain strings under the module's prefix.
    assert!(redis.command(&["GET", "house:kv:{hello.wasm}:v:a"]).contains("second"));
    // The expired note's bookkeeping is tidied by the sweep (each second),
    // its bytes given back to the module.
    let usage = || redis.command(&["GET", "house:kv:{hello.wasm}:usage"]);
    let before = usage();
    wait_until(Duration::from_secs(5), "the sweep", || {
        redis.command(&["HEXISTS", "house:kv:{hello.wasm}:sizes", "t"]) == ":0\r\n"
    });
    assert_ne!(usage(), before, "the expired note's bytes are given back");
    assert_eq!(
        redis.command(&["ZSCORE", "house:kv:{hello.wasm}:keys", "t"]),
        "$-1\r\n",
        "and it is out of the listing"
    );
}

#[test]
fn embedded_bounds_are_errors_the_guest_handles() {
    bounds_are_errors_the_guest_handles(&hello(&BOUNDS));
}

#[test]
fn redis_bounds_are_errors_the_guest_handles() {
    let redis = Redis::start();
    bounds_are_errors_the_guest_handles(&on_redis(&redis, &BOUNDS));
}

#[test]
fn embedded_a_failing_call_leaves_no_write_behind() {
    a_failing_call_leaves_no_write_behind(&hello(&[]));
}

#[test]
fn redis_a_failing_call_leaves_no_write_behind() {
    let redis = Redis::start();
    a_failing_call_leaves_no_write_behind(&on_redis(&redis, &[]));
}

#[test]
fn embedded_concurrent_increments_lose_no_update() {
    concurrent_increments_lose_no_update(&[&hello(&["--threads", "2"])], 8, 500);
}

#[test]
fn redis_8_clients_x_2_hosts_x_500_increments_are_8000() {
    let redis = Redis::start();
    let (a, b) = (on_redis(&redis, &["--threads", "2"]), on_redis(&redis, &["--threads", "2"]));
    concurrent_increments_lose_no_update(&[&a, &b], 8, 500);
    assert_eq!(said(&b, "/visits?page=hot").1, r#"{"page":"hot","visits":8002}"#, "the other host counts on");
}

#[test]
fn redis_two_hosts_see_the_same_data() {
    let redis = Redis::start();
    let (a, b) = (on_redis(&redis, &[]), on_redis(&redis, &[]));
    assert_eq!(said(&a, "/note?key=shared&text=from+a"), (200, "set".into()));
    assert_eq!(said(&b, "/note?key=shared"), (200, "from a".into()));
    assert_eq!(said(&b, "/note?key=shared2&text=from+b"), (200, "set".into()));
    assert_eq!(said(&a, "/notes?prefix=shared"), (200, "shared\nshared2".into()));
    assert_eq!(said(&b, "/note?key=shared&delete=true"), (200, "deleted".into()));
    assert_eq!(said(&a, "/note?key=shared"), (200, "(none)".into()));
    // A host started later, and one restarted, see it all.
    drop(a);
    let c = on_redis(&redis, &[]);
    assert_eq!(said(&c, "/note?key=shared2"), (200, "from b".into()));
}

#[test]
fn redis_a_call_waiting_on_redis_costs_its_loop_nothing() {
    let redis = Redis::start();
    let s = on_redis(&redis, &["--threads", "1"]);
    assert_eq!(said(&s, "/note?key=k&text=waited+for"), (200, "set".into()));
    redis.pause();
    let mut waiting = BufReader::new(s.connect());
    waiting.get_mut().write_all(b"GET /note?key=k HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    wait_until(Duration::from_secs(5), "the call to start", || s.stats_json()["guest_calls"] == 1);
    // The one loop serves others while that call is parked...
    assert_eq!(s.get("/hello?name=x").status, 200);
    // ...and does not spin on it: half a second of waiting (the window
    // is the measurement) costs next to no CPU (a spin would be ~50 ticks).
    let before = s.cpu_ticks();
    std::thread::sleep(Duration::from_millis(500));
    let spent = s.cpu_ticks() - before;
    assert!(spent <= 10, "{spent} ticks of CPU in 0.5 s with a call parked");
    redis.resume();
    let r = read_response(&mut waiting, false).unwrap();
    assert_eq!((r.status, r.body.trim_end()), (200, "waited for"));
}

#[test]
fn redis_lost_and_back_under_a_running_host() {
    let mut redis = Redis::start();
    let s = on_redis(&redis, &[]);
    assert_eq!(said(&s, "/note?key=k&text=before"), (200, "set".into()));
    redis.kill();
    wait_until(Duration::from_secs(10), "the host to notice", || s.stats_json()["kv_up"] == false);
    // Every operation fails at once with a code the guest turns into 503.
    let started = std::time::Instant::now();
    assert_eq!(said(&s, "/note?key=k"), (503, "the key-value store is unavailable".into()));
    assert_eq!(said(&s, "/note?key=k&text=during").0, 503);
    assert!(started.elapsed() < Duration::from_secs(1), "no wait for a Redis that is gone");
    // Guests without key-value data are untouched meanwhile.
    assert_eq!(s.get("/hello?name=x").status, 200);
    redis.restart(); // empty: it kept nothing
    wait_until(Duration::from_secs(10), "the host to reconnect", || s.stats_json()["kv_up"] == true);
    assert_eq!(said(&s, "/note?key=k&text=after"), (200, "set".into()));
    assert_eq!(said(&s, "/note?key=k"), (200, "after".into()));
}

#[test]
fn embedded_data_survives_a_restart() {
    let data = TempDir::new("kv-restart");
    let dir = data.path().to_str().unwrap().to_owned();
    let mut s = hello(&["--data-dir", &dir]);
    assert_eq!(said(&s, "/note?key=durable&text=still+here"), (200, "set".into()));
    assert_eq!(said(&s, "/visits?page=p"), (200, r#"{"page":"p","visits":1}"#.into()));
    assert!(s.terminate().success());
    let s = hello(&["--data-dir", &dir]);
    assert_eq!(said(&s, "/note?key=durable"), (200, "still here".into()));
    assert_eq!(said(&s, "/visits?page=p"), (200, r#"{"page":"p","visits":2}"#.into()));
}

#[test]
fn embedded_one_data_directory_is_one_process() {
    let data = TempDir::new("kv-shared");
    let dir = data.path().to_str().unwrap();
    let _first = hello(&["--data-dir", dir]);
    let guests = TempDir::new("kv-shared-guests");
    let out = std::process::Command::new(house_tests::house_bin())
        .args(["--port", "0", "--no-cache", "--data-dir", dir, "--guests"])
        .arg(guests.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is another house using this --data-dir?"), "{err}");
}

/// With no re-runs allowed, increments that collide are refused: 503 with
/// Retry-After and a reason, nothing changed (the counter ends at the 200s),
/// and the log names the key in conflict.
#[test]
fn embedded_a_call_still_in_conflict_is_a_503_that_changes_nothing() {
    let s = hello(&["--threads", "2", "--tx-retries", "0"]);
    let (ok, refused) = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let mut c = BufReader::new(s.connect());
                    let (mut ok, mut refused) = (0, 0);
                    for _ in 0..100 {
                        c.get_mut().write_all(b"GET /visits?page=hot HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
                        let r = read_response(&mut c, false).unwrap();
                        match r.status {
                            200 => ok += 1,
                            503 => {
                                assert_eq!(r.header("retry-after"), Some("1"));
                                assert_eq!(
                                    r.body.trim_end(),
                                    "too many concurrent writes to the same data: nothing was changed; try again"
                                );
                                refused += 1;
                            }
                            other => panic!("{other}: {}", r.body),
                        }
                    }
                    (ok, refused)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    });
    assert!(refused > 0, "800 colliding increments with no re-runs: some are refused");
    let want = format!(r#"{{"page":"hot","visits":{}}}"#, ok + 1);
    assert_eq!(said(&s, "/visits?page=hot"), (200, want), "every 200 counted, no 503");
    s.wait_for_log(
        "its transaction was still in conflict after 0 re-runs (--tx-retries): \"visits:hot\" changed under it",
        Duration::from_secs(5),
    );
}
