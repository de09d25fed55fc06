//! The HTTP core, through the real binary over real sockets: framing,
//! keep-alive and pipelining, parameters, every limit's status, smuggling
//! shapes, slow clients, signals, flags.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use house_tests::{Server, house_bin, read_response, read_to_close};

const H: &str = "Host: t\r\n";

fn is_plain_error(resp: &str, status: u16) {
    let head_end = resp.find("\r\n\r\n").expect("a complete head");
    let (head, body) = (&resp[..head_end], &resp[head_end + 4..]);
    assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "status {status} expected:\n{resp}");
    assert!(head.contains("Content-Type: text/plain; charset=utf-8"), "plain text expected:\n{resp}");
    let len: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).expect("length").parse().unwrap();
    assert_eq!(len, body.len(), "Content-Length matches the body:\n{resp}");
    assert!(body.ends_with('\n') && body.trim_end().lines().count() == 1 && body.len() > 5, "one-line reason:\n{resp}");
}

#[test]
fn unknown_path_is_404_with_a_reason() {
    let s = Server::start(&[], &[]);
    let r = s.get("/nowhere");
    assert_eq!(r.status, 404);
    assert_eq!(r.body, "no handler for /nowhere\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let line = s.wait_for_log("GET /nowhere 404", Duration::from_secs(5));
    assert!(line.ends_with("ms (no handler for /nowhere)"), "the reason, in the access log: {line}");
}

#[test]
fn the_access_log_says_why_a_request_was_refused() {
    let s = Server::start(&["hello"], &[]);
    assert_eq!(s.get("/hello?name=").status, 400);
    let line = s.wait_for_log("GET /hello 400", Duration::from_secs(5));
    assert!(line.ends_with("ms (name: length 0 is below the minimum 1)"), "{line}");
    assert_eq!(s.get("/hello?name=Ada").status, 200);
    let line = s.wait_for_log("GET /hello 200", Duration::from_secs(5));
    assert!(line.ends_with("ms"), "a 200 has no reason: {line}");
}

#[test]
fn method_not_taken_is_405_with_allow() {
    let s = Server::start(&["hello"], &[]);
    let r = s.request("DELETE", "/count", None);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}

#[test]
fn a_body_arriving_in_pieces_with_pauses() {
    let s = Server::start(&["hello"], &[]);
    let mut c = s.connect();
    let body = "name=Ada+Lovelace";
    let head = format!(
        "POST /hello HTTP/1.1\r\n{H}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    for piece in [&head[..10], &head[10..], &body[..4], &body[4..9], &body[9..]] {
        c.write_all(piece.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(60));
    }
    let r = read_response(&mut BufReader::new(c), false).unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "Hello, Ada Lovelace!\n"));
}

#[test]
fn three_pipelined_requests_answered_in_order() {
    let s = Server::start(&["hello"], &[]);
    let mut c = s.connect();
    let reqs = format!(
        "GET /hello?name=one HTTP/1.1\r\n{H}\r\nGET /nope HTTP/1.1\r\n{H}\r\nGET /hello?name=three HTTP/1.1\r\n{H}\r\n"
    );
    c.write_all(reqs.as_bytes()).unwrap();
    let mut r = BufReader::new(c);
    let bodies: Vec<String> = (0..3).map(|_| read_response(&mut r, false).unwrap().body).collect();
    assert_eq!(bodies, ["Hello, one!\n", "no handler for /nope\n", "Hello, three!\n"]);
}

#[test]
fn keep_alive_rules_by_version_and_connection_header() {
    let s = Server::start(&["hello"], &[]);
    // HTTP/1.1: kept alive by default.
    let mut c = s.connect();
    let mut r = BufReader::new(c.try_clone().unwrap());
    for name in ["a", "b"] {
        c.write_all(format!("GET /hello?name={name} HTTP/1.1\r\n{H}\r\n").as_bytes()).unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.body, format!("Hello, {name}!\n"));
        assert_eq!(resp.header("connection"), None);
    }
    // Connection: close is honoured.
    let out =
        s.raw(format!("GET /hello HTTP/1.1\r\n{H}Connection: close\r\n\r\nGET /hello HTTP/1.1\r\n{H}\r\n").as_bytes());
    assert_eq!(out.matches("HTTP/1.1 200").count(), 1, "{out}");
    assert!(out.contains("Connection: close"));
    // HTTP/1.0 closes unless it asks...
    let out = s.raw(b"GET /hello HTTP/1.0\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 200") && out.contains("Connection: close"), "{out}");
    // ...and stays open when it does.
    let mut c = s.connect();
    c.write_all(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.header("connection"), Some("keep-alive"));
    c.write_all(b"GET /hello?name=again HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().body, "Hello, again!\n");
}

#[test]
fn head_has_the_length_but_no_body() {
    let s = Server::start(&["hello"], &[]);
    let out = s.raw(format!("HEAD /hello HTTP/1.1\r\n{H}Connection: close\r\n\r\n").as_bytes());
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("Content-Length: 14\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\n"), "no body after the head: {out:?}");
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let s = Server::start(&["hello"], &["--idle-timeout-ms", "200"]);
    let mut c = s.connect();
    c.write_all(format!("GET /hello HTTP/1.1\r\n{H}\r\n").as_bytes()).unwrap();
    let started = Instant::now();
    let out = read_to_close(&mut c);
    assert!(out.starts_with("HTTP/1.1 200"));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(150) && took < Duration::from_secs(3), "closed after {took:?}");
}

#[test]
fn parameters_are_percent_decoded_strictly() {
    let s = Server::start(&["hello", "typed"], &[]);
    assert_eq!(s.get("/hello?name=J%C3%BCrgen+M.").body, "Hello, Jürgen M.!\n");
    let r = s.post_form("/hello", "name=a%2Bb+c");
    assert_eq!(r.body, "Hello, a+b c!\n");
    let r = s.get("/hello?name=%ZZ");
    assert_eq!((r.status, r.body.as_str()), (400, "name: invalid percent-escape\n"));
    let r = s.get("/hello?name=%C3");
    assert_eq!((r.status, r.body.as_str()), (400, "name: not valid UTF-8 once decoded\n"));
    let r = s.get("/hello?name=ab%");
    assert_eq!((r.status, r.body.as_str()), (400, "name: incomplete percent-escape\n"));
    // Repeated names are kept in order: a list parameter sees them all.
    let r = s.get("/types?s=abc&i=1&f=1&b=1&k=red&j=1&u=&ks=b&ks=A&ks=c");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains(r#""ks":["b","a","c"]"#), "{}", r.body);
}

#[test]
fn oversized_heads_and_too_many_headers_are_431() {
    let s = Server::start(&[], &["--max-head-bytes", "1024", "--max-headers", "8"]);
    let big = format!("GET / HTTP/1.1\r\n{H}X-Big: {}\r\n\r\n", "a".repeat(2000));
    let out = s.raw(big.as_bytes());
    is_plain_error(&out, 431);
    assert!(out.contains("request head exceeds the limit of 1024 bytes"));
    // Even a head that never ends is cut off at the limit.
    let mut c = s.connect();
    c.write_all(format!("GET / HTTP/1.1\r\n{H}X-Long: {}", "b".repeat(1500)).as_bytes()).unwrap();
    is_plain_error(&read_to_close(&mut c), 431);
    let many: String = (0..9).map(|i| format!("X-{i}: v\r\n")).collect();
    let out = s.raw(format!("GET / HTTP/1.1\r\n{H}{many}\r\n").as_bytes());
    is_plain_error(&out, 431);
    assert!(out.contains("more than 8 header fields"));
}

#[test]
fn a_body_over_the_cap_is_413_before_it_is_read() {
    let s = Server::start(&["hello"], &["--max-body-bytes", "100"]);
    let mut c = s.connect();
    // Only the head is sent: the answer must not wait for the body.
    c.write_all(format!("POST /hello HTTP/1.1\r\n{H}Content-Length: 5000\r\n\r\n").as_bytes()).unwrap();
    let out = read_to_close(&mut c);
    is_plain_error(&out, 413);
    assert!(out.contains("body of 5000 bytes exceeds the limit of 100 bytes"));
    // Chunked bodies are held to the same cap.
    let chunk = "x".repeat(150);
    let out = s.raw(
        format!("POST /hello HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n96\r\n{chunk}\r\n0\r\n\r\n").as_bytes(),
    );
    is_plain_error(&out, 413);
}

#[test]
fn an_incomplete_request_is_408_after_the_timeout() {
    let s = Server::start(&[], &["--request-timeout-ms", "300"]);
    let mut c = s.connect();
    c.write_all(format!("GET /slow HTTP/1.1\r\n{H}").as_bytes()).unwrap();
    let started = Instant::now();
    let out = read_to_close(&mut c);
    is_plain_error(&out, 408);
    assert!(out.contains("request not complete within 300 ms"));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn malformed_requests_are_400_and_close() {
    let s = Server::start(&["hello"], &[]);
    let cases: &[(&str, &str)] = &[
        ("GARBAGE\r\n\r\n", "malformed request"),
        ("GET /hello HTTP/1.1\r\nHost: t\r\nX: a\r\n folded\r\n\r\n", "malformed request"),
        ("GET /hello HTTP/1.1\r\nHost : t\r\n\r\n", "malformed request"),
        ("GET /hello HTTP/1.1\r\n\r\n", "exactly one Host header"),
        ("GET hello HTTP/1.1\r\nHost: t\r\n\r\n", "must be a path"),
        ("GET /hel%zzlo HTTP/1.1\r\nHost: t\r\n\r\n", "path: invalid percent-escape"),
    ];
    for (req, reason) in cases {
        let out = s.raw(req.as_bytes());
        is_plain_error(&out, 400);
        assert!(out.contains(reason), "{req:?} -> {out}");
    }
    let out = s.raw(b"GET / HTTP/2.0\r\n\r\n");
    is_plain_error(&out, 505);
}

/// Each shape that could make two parties disagree on where a request ends:
/// the body holds a second request that must never be processed.
#[test]
fn smuggling_shapes_are_refused_and_never_processed() {
    let s = Server::start(&["hello"], &[]);
    let smuggled = "GET /hello?name=SMUGGLED HTTP/1.1\r\nHost: t\r\n\r\n";
    let n = smuggled.len();
    let shapes = [
        format!(
            "POST /hello HTTP/1.1\r\n{H}Content-Length: {n}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /hello HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!("POST /hello HTTP/1.1\r\n{H}Content-Length: 0\r\nContent-Length: {n}\r\n\r\n{smuggled}"),
        format!("POST /hello HTTP/1.1\r\n{H}Content-Length: 0, {n}\r\n\r\n{smuggled}"),
        format!("POST /hello HTTP/1.1\r\n{H}Content-Length: +0\r\n\r\n{smuggled}"),
        format!("POST /hello HTTP/1.1\r\n{H}Content-Length : 0\r\n\r\n{smuggled}"),
        format!(
            "POST /hello HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!("POST /hello HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\nzz\r\n{smuggled}"),
        format!("POST /hello HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        format!("POST /hello HTTP/1.1\r\n{H}X: a\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
    ];
    for shape in &shapes {
        let out = s.raw(shape.as_bytes());
        is_plain_error(&out, 400);
        assert_eq!(out.matches("HTTP/1.1").count(), 1, "exactly one response to {shape:?}:\n{out}");
        assert!(!out.contains("SMUGGLED"), "{out}");
    }
    let out = s.raw(format!("POST /hello HTTP/1.1\r\n{H}Transfer-Encoding: gzip\r\n\r\n{smuggled}").as_bytes());
    is_plain_error(&out, 501);
    assert!(!out.contains("SMUGGLED"));
    assert_eq!(s.count_log("SMUGGLED"), 0);
}

#[test]
fn chunked_bodies_are_decoded() {
    let s = Server::start(&["hello"], &[]);
    let req = format!(
        "POST /hello HTTP/1.1\r\n{H}Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         5;ext=1\r\nname=\r\n3\r\nAda\r\n0\r\nTrailer: x\r\n\r\n"
    );
    let mut c = s.connect();
    // Byte by byte: the decoder resumes where it stopped.
    for b in req.as_bytes() {
        c.write_all(&[*b]).unwrap();
    }
    let out = read_to_close(&mut c);
    assert!(out.starts_with("HTTP/1.1 200") && out.ends_with("Hello, Ada!\n"), "{out}");
}

#[test]
fn expect_100_continue_gets_an_interim_response() {
    let s = Server::start(&["hello"], &[]);
    let mut c = s.connect();
    c.write_all(format!("POST /hello HTTP/1.1\r\n{H}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 8\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut buf = [0u8; 25];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(b"name=Bob").unwrap();
    assert!(read_to_close(&mut c).ends_with("Hello, Bob!\n"));
}

#[test]
fn over_the_connection_limit_new_ones_get_503_and_old_ones_live_on() {
    let s = Server::start(&["hello"], &["--max-connections", "3"]);
    let mut held: Vec<TcpStream> = (0..3).map(|_| s.connect()).collect();
    // The three are accepted before the fourth arrives.
    for c in &mut held {
        c.write_all(format!("GET /hello HTTP/1.1\r\n{H}\r\n").as_bytes()).unwrap();
        assert_eq!(read_response(&mut BufReader::new(c.try_clone().unwrap()), false).unwrap().status, 200);
    }
    let out = s.raw(format!("GET /hello HTTP/1.1\r\n{H}\r\n").as_bytes());
    is_plain_error(&out, 503);
    assert!(out.contains("limit of 3 connections"));
    for c in &mut held {
        c.write_all(format!("GET /hello?name=still HTTP/1.1\r\n{H}\r\n").as_bytes()).unwrap();
        let r = read_response(&mut BufReader::new(c.try_clone().unwrap()), false).unwrap();
        assert_eq!(r.body, "Hello, still!\n");
    }
}

#[test]
fn two_hundred_slow_clients_do_not_delay_a_normal_one() {
    let s = Server::start(&["hello"], &[]);
    let mut slow = Vec::new();
    for i in 0..200 {
        let mut c = s.connect();
        // Half a request each, never finished.
        c.write_all(format!("POST /hello HTTP/1.1\r\n{H}Content-Length: 100\r\n\r\nname=slow{i}").as_bytes()).unwrap();
        slow.push(c);
    }
    // One keep-alive client, timed over several requests.
    let mut c = s.connect();
    let mut r = BufReader::new(c.try_clone().unwrap());
    for _ in 0..5 {
        let started = Instant::now();
        c.write_all(format!("GET /hello HTTP/1.1\r\n{H}\r\n").as_bytes()).unwrap();
        assert_eq!(read_response(&mut r, false).unwrap().status, 200);
        let took = started.elapsed();
        // A loop that waited on a slow client would take its 10 s request
        // timeout; 1 s leaves a loaded machine its slack.
        assert!(took < Duration::from_secs(1), "a normal request took {took:?} behind 200 slow ones");
    }
    drop(slow);
}

#[test]
fn sigterm_finishes_and_exits_zero() {
    let mut s = Server::start(&["hello"], &[]);
    let mut c = s.connect();
    c.write_all(format!("GET /hello HTTP/1.1\r\n{H}\r\n").as_bytes()).unwrap();
    assert_eq!(read_response(&mut BufReader::new(c.try_clone().unwrap()), false).unwrap().status, 200);
    let status = s.terminate();
    assert!(status.success(), "exit status {status}");
    s.wait_for_log("house: stopped", Duration::from_secs(5));
    // The idle keep-alive connection was closed, not left hanging.
    assert_eq!(read_to_close(&mut c), "");
}

#[test]
fn debug_traces_each_stage() {
    let s = Server::start(&[], &["--debug"]);
    let _ = s.get("/x");
    for stage in ["accepted as", "read ", "parsed GET /x", "dispatch GET /x", "wrote ", "closed"] {
        s.wait_for_log(stage, Duration::from_secs(5));
    }
}

#[test]
fn bad_flags_and_a_busy_port_fail_with_one_line() {
    let out = Command::new(house_bin()).arg("--frobnicate").output().unwrap();
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "house: unknown flag --frobnicate (see --help)\n");
    let out = Command::new(house_bin()).args(["--port", "http"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("house: --port: invalid value \"http\""));
    let s = Server::start(&[], &[]);
    let port = s.addr.port().to_string();
    let out = Command::new(house_bin()).args(["--port", &port]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on 127.0.0.1:{port}")) && err.contains("in use"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let out = Command::new(house_bin()).arg("--help").output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("--max-body-bytes"));
}

#[test]
fn a_client_that_half_closes_gets_its_answers_then_the_close() {
    let s = Server::start(&["hello"], &[]);
    let mut c = s.connect();
    // Two requests and the FIN, in one go: the FIN is queued with the data.
    c.write_all(format!("GET /hello?name=a HTTP/1.1\r\n{H}\r\nGET /hello?name=b HTTP/1.1\r\n{H}\r\n").as_bytes())
        .unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let started = Instant::now();
    let out = read_to_close(&mut c);
    assert!(out.contains("Hello, a!") && out.ends_with("Hello, b!\n"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(2), "closed at once, not at the idle timeout");
}

/// A log collector that stops reading must not stop the server: lines are
/// dropped (and counted), requests keep being answered.
#[test]
fn a_stalled_stderr_does_not_stall_the_loop() {
    use std::io::BufRead;
    use std::process::Stdio;
    let data = house_tests::TempDir::new("data");
    let mut child = Command::new(house_bin())
        .args(["--port", "0", "--guests", "/nonexistent-house-guests", "--no-cache", "--data-dir"])
        .arg(data.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "house exited");
        if let Some(a) = line.trim().strip_prefix("house: listening on http://") {
            break a.to_owned();
        }
    };
    // From here on nobody reads stderr: its pipe (64 KiB) and the host's
    // queue of batches (64 x 8 KiB) fill after ~20,000 lines.
    let mut c = TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let started = Instant::now();
    for i in 0..40_000 {
        c.write_all(format!("GET /not-here-{i} HTTP/1.1\r\n{H}\r\n").as_bytes()).unwrap();
        let resp = read_response(&mut r, false).unwrap_or_else(|| panic!("no answer to request {i}"));
        assert_eq!(resp.status, 404);
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    // Once stderr is read again, the next request's line comes with the count.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in err.lines() {
            let Ok(line) = line else { break };
            if line.contains("log lines dropped") && tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let note = loop {
        c.write_all(format!("GET /again HTTP/1.1\r\n{H}\r\n").as_bytes()).unwrap();
        assert_eq!(read_response(&mut r, false).unwrap().status, 404);
        if let Ok(note) = rx.recv_timeout(Duration::from_millis(50)) {
            break note;
        }
        assert!(Instant::now() < deadline, "the dropped lines were never reported");
    };
    assert!(note.ends_with("log lines dropped: stderr is not keeping up"), "{note}");
    let _ = child.kill();
    let _ = child.wait();
}

/// A large response drained slowly by a client that keeps reading is not
/// cut off at the request timeout: bytes leaving count as activity.
#[test]
fn a_slow_download_is_not_cut_off() {
    // Large enough that the kernel's socket buffers (a few MiB on
    // loopback) hold a fraction of it; writable edges come every third of
    // a send buffer, so the timeout is set above that interval at this pace.
    const BODY: usize = 24 * 1024 * 1024;
    let body = format!(
        "(drop (memory.grow (i32.const 385))) (i32.store (i32.const 65548) (i32.const {BODY})) (i64.const {})",
        (((BODY + 16) as u64) << 32) | 65536
    );
    let dir = house_tests::TempDir::new("download");
    let handlers = [house_tests::fault::WatHandler::closing("big", &body)];
    std::fs::write(dir.path().join("big.wasm"), house_tests::fault::module(1, &handlers)).unwrap();
    let s = Server::start_in(
        dir,
        &["--request-timeout-ms", "1000", "--guest-memory-mb", "32", "--guest-response-bytes", "33554432"],
    );
    let mut c = s.connect();
    c.write_all(format!("GET /big HTTP/1.1\r\n{H}Connection: close\r\n\r\n").as_bytes()).unwrap();
    let started = Instant::now();
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => panic!("read: {e} after {got} bytes"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(got > BODY, "the whole response arrived: {got} bytes in {:?}", started.elapsed());
    assert!(started.elapsed() > Duration::from_millis(2000), "the download was slower than the timeout");
}

/// The access log's latency runs from the request's first byte to its
/// response, however the request arrived.
#[test]
fn access_log_latency_counts_from_the_first_byte() {
    let dir = house_tests::TempDir::new("latency");
    let handlers = [house_tests::fault::WatHandler::closing("spin", "(loop (br 0)) (global.get $ok)")];
    std::fs::write(dir.path().join("spin.wasm"), house_tests::fault::module(1, &handlers)).unwrap();
    let s = Server::start_in(dir, &["--guest-deadline-ms", "50"]);
    let mut c = s.connect();
    c.write_all(format!("POST /spin HTTP/1.1\r\n{H}Content-Type: text/plain\r\nContent-Length: 3\r\n\r\n").as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    c.write_all(b"a=1").unwrap();
    assert_eq!(read_response(&mut BufReader::new(c), false).unwrap().status, 500);
    let line = s.wait_for_log("POST /spin 500 ", Duration::from_secs(5));
    // `POST /spin 500 351.234ms (handler spin failed)`: the field after the status.
    let ms: f64 = line.split("500 ").nth(1).unwrap().split("ms").next().unwrap().parse().unwrap();
    assert!(ms >= 345.0, "the body's wait (300 ms) and the call (50 ms) are both in it: {line}");
}

/// SIGTERM ends the server even when nobody reads its stderr any more.
#[test]
fn sigterm_exits_even_with_a_stalled_stderr() {
    use std::io::BufRead;
    use std::process::Stdio;
    let data = house_tests::TempDir::new("data");
    let mut child = Command::new(house_bin())
        .args(["--port", "0", "--guests", "/nonexistent-house-guests", "--no-cache", "--data-dir"])
        .arg(data.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "house exited");
        if let Some(a) = line.trim().strip_prefix("house: listening on http://") {
            break a.to_owned();
        }
    };
    // Long paths fill the pipe and the host's queue in a few thousand lines.
    let mut c = TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let path = "x".repeat(4000);
    for i in 0..2000 {
        c.write_all(format!("GET /{path}{i} HTTP/1.1\r\n{H}\r\n").as_bytes()).unwrap();
        assert_eq!(read_response(&mut r, false).unwrap().status, 404);
    }
    drop((c, r));
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("house did not exit within 10 s of SIGTERM with its stderr stalled");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
    drop(err);
}

/// RFC 9112 / 9110 conformance through the binary: each kind of request
/// target, Host, version, method and chunk line gets its precise status.
#[test]
fn conformance_statuses_for_targets_hosts_versions_methods_and_chunks() {
    let s = Server::start(&["hello"], &["--max-head-bytes", "2048"]);
    // absolute-form: served, its authority replacing Host.
    let out = s.raw(b"GET http://example.com:4242/hello?name=abs HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 200") && out.ends_with("Hello, abs!\n"), "{out}");
    let cases: &[(&str, u16, &str)] = &[
        ("GET /hello HTTP/1.1\r\nHost: a,b\r\n\r\n", 400, "Host header is not a valid host[:port]"),
        ("GET /hello HTTP/1.1\r\nHost: u@h\r\n\r\n", 400, "Host header is not a valid"),
        ("GET /hello HTTP/1.1\r\nHost: h:8x\r\n\r\n", 400, "Host header is not a valid"),
        ("GET /hello HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n", 400, "exactly one Host header"),
        ("GET http://u@h/hello HTTP/1.1\r\nHost: h\r\n\r\n", 400, "authority is not a valid"),
        ("GET /hello HTTP/1.x\r\nHost: h\r\n\r\n", 400, "the version is not HTTP/DIGIT.DIGIT"),
        ("GET /hello HTTP/3.0\r\nHost: h\r\n\r\n", 505, "only HTTP/1.0 and HTTP/1.1"),
        ("BREW /hello HTTP/1.1\r\nHost: h\r\n\r\n", 501, "method BREW is not implemented"),
        ("GET /hello#top HTTP/1.1\r\nHost: h\r\n\r\n", 400, "#fragment"),
        (
            "POST /hello HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n",
            400,
            "invalid chunk size line",
        ),
        (
            "POST /hello HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;\r\nabc\r\n0\r\n\r\n",
            400,
            "an extension without a name",
        ),
        ("POST /hello HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\r\nabc\r\n0\r\n\r\n", 400, "no size"),
    ];
    for (req, status, reason) in cases {
        let out = s.raw(req.as_bytes());
        is_plain_error(&out, *status);
        assert!(out.contains(reason), "{req:?} -> {out}");
    }
    let out = s.raw(b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n");
    is_plain_error(&out, 400);
    assert!(out.contains("must be ASCII"), "{out}");
    let out = s.raw(format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(3000)).as_bytes());
    is_plain_error(&out, 414);
    assert!(out.contains("request target exceeds the limit of 2048 bytes"), "{out}");
}
