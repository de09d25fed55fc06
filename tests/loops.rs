//! Several event loops in one process (`--threads`): connections spread over
//! them by the kernel (`SO_REUSEPORT`), one channel table across them, one
//! connection limit, one reload for all, one shutdown.

use std::io::Write;
use std::time::{Duration, Instant};

use house_tests::sse::Subscriber;
use house_tests::{Server, TempDir, read_response, wait_until};

/// 1,000 subscribers on 4 loops (on this 2-core box too): every one gets
/// every event published from other connections (landing on any loop),
/// exactly once and in publish order, framed the same.
#[test]
fn a_publish_on_any_loop_reaches_subscribers_on_every_loop_in_order() {
    let s = Server::start(&["typed"], &["--threads", "4"]);
    assert_eq!(s.stat("loops"), 4);
    let mut subs: Vec<Subscriber> = (0..1000)
        .map(|_| {
            let mut sub = Subscriber::open(s.connect(), "/watch?ch=all");
            sub.next_raw().unwrap();
            sub
        })
        .collect();
    assert_eq!(s.stat("subscriptions"), 1000);
    assert_eq!(s.stat("channels"), 1);
    // Each publish from a fresh connection: they land on every loop too.
    for i in 0..40 {
        let r = s.post_form("/emit", &format!("channel=all&data=e{i}"));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // Every subscriber, whatever its loop, sees the same ids in the same order.
    let mut ids = Vec::new();
    for (n, sub) in subs.iter_mut().enumerate() {
        for i in 0..40 {
            let raw = sub.next_raw().unwrap();
            let (id, rest) = raw.split_once('\n').unwrap();
            assert_eq!(rest, format!("data: e{i}\n\n"), "subscriber {n}");
            if n == 0 {
                ids.push(id.to_owned());
            } else {
                assert_eq!(id, ids[i], "subscriber {n}, event {i}");
            }
        }
    }
    drop(subs);
    s.wait_for_stats(Duration::from_secs(5), |(_, channels, subscriptions)| channels == 0 && subscriptions == 0);
    assert_eq!(s.stat("hub_dropped"), 0);
}

/// `--max-connections` counts every loop's connections together.
#[test]
fn the_connection_limit_is_process_wide() {
    let s = Server::start(&["typed"], &["--threads", "4", "--max-connections", "8"]);
    // Eight open connections, each answered once (so each is accepted,
    // on whichever loop), spread over the four loops.
    let open: Vec<_> = (0..8)
        .map(|_| {
            let mut c = s.connect();
            c.write_all(b"GET /nothing-here HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            let r = read_response(&mut std::io::BufReader::new(c.try_clone().unwrap()), false).expect("a response");
            assert_eq!(r.status, 404, "{}", r.body);
            c
        })
        .collect();
    let r = s.get("/nothing-here");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("limit of 8 connections"), "{}", r.body);
    drop(open);
}

/// A reload reaches every loop at once: every connection, whatever loop it
/// is on, sees the new route from its next request on.
#[test]
fn one_reload_reaches_every_loop() {
    let dir = TempDir::new("loops-reload");
    let s = Server::start_in(dir, &["--threads", "4"]);
    let mut conns: Vec<_> = (0..16).map(|_| s.connect()).collect();
    let ask = |c: &mut std::net::TcpStream| {
        c.write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        read_response(&mut std::io::BufReader::new(c.try_clone().unwrap()), false).expect("a response").status
    };
    for c in &mut conns {
        assert_eq!(ask(c), 404);
    }
    let guests = s.guests.path().to_owned();
    std::fs::copy(house_tests::example_guest("hello"), guests.join(".hello.tmp")).unwrap();
    std::fs::rename(guests.join(".hello.tmp"), guests.join("hello.wasm")).unwrap();
    s.wait_for_log("house: loaded hello.wasm", Duration::from_secs(20));
    // Once one connection sees the new table, every other does at once.
    let (first, rest) = conns.split_first_mut().unwrap();
    wait_until(Duration::from_secs(5), "the route served", || ask(first) == 200);
    for c in rest {
        assert_eq!(ask(c), 200);
    }
    // And so does every fresh connection, on whichever loop it lands.
    for i in 0..200 {
        assert_eq!(s.get("/hello").status, 200, "fresh connection {i}");
    }
}

/// SIGTERM is heard once and stops every loop.
#[test]
fn one_signal_stops_every_loop() {
    let mut s = Server::start(&["typed"], &["--threads", "4"]);
    let _idle: Vec<_> = (0..8).map(|_| s.connect()).collect();
    let status = s.terminate();
    assert!(status.success(), "{status:?}");
    let log = s.log();
    assert_eq!(log.matches("house: shutting down").count(), 1, "{log}");
    assert_eq!(log.matches("house: stopped").count(), 1, "{log}");
}

/// A loop that panics ends the process at once, non-zero, with the panic
/// and its thread in the log: its connections are not left hanging while
/// the other loops look healthy (a supervisor restarts the process).
#[test]
fn a_loop_that_panics_ends_the_process_and_says_so() {
    use std::io::{BufRead, Read};
    let (guests, data) = (house_tests::TempDir::new("guests"), house_tests::TempDir::new("data"));
    let mut child = std::process::Command::new(house_tests::house_bin())
        .args(["--port", "0", "--admin-bind", "127.0.0.1:0", "--threads", "2", "--no-cache", "--guests"])
        .arg(guests.path())
        .arg("--data-dir")
        .arg(data.path())
        .env("HOUSE_TEST_PANIC_PATH", "/boom")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let addr = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "house exited before listening:\n{log}");
        log.push_str(&line);
        if let Some(at) = line.trim().split("listening on http://").nth(1) {
            break at.to_owned();
        }
    };
    // An idle keep-alive connection, on whichever loop: it must not outlive
    // the process.
    let mut idle = std::net::TcpStream::connect(&addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    c.write_all(b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "house still runs 10 s after a loop panicked");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(101));
    stderr.read_to_string(&mut log).unwrap();
    assert!(log.contains("HOUSE_TEST_PANIC_PATH: a request for /boom"), "{log}");
    assert!(log.contains("house: thread house-loop-"), "{log}");
    assert!(log.contains("panicked: exiting (status 101), for a supervisor to restart"), "{log}");
    let mut byte = [0u8; 1];
    assert!(matches!(idle.read(&mut byte), Ok(0) | Err(_)), "the idle connection is closed");
}
