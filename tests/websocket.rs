//! WebSocket (RFC 6455) through the real binary, by Autobahn|Testsuite's
//! case families (it needs Python 2, which this machine cannot install, so
//! its cases are ported here, scaled to this machine): framing (1.x),
//! ping/pong (2.x), reserved bits (3.x), opcodes (4.x), fragmentation
//! (5.x), UTF-8 (6.x), close (7.x) and limits (9.x); then what house adds:
//! the handshake's refusals, messages validated by the host, resume,
//! heartbeats as pings, the idle timeout, slow-consumer eviction and
//! shutdown.

use std::time::{Duration, Instant};

use house_tests::ws::{self, BINARY, CLOSE, CONT, PING, PONG, TEXT, Ws};
use house_tests::{Server, read_response, wait_until};

/// A server with the typed guest (`/watch` opens a socket whose messages
/// `{"channel", "data", "times"}` publish) and `flags`.
fn server(flags: &[&str]) -> Server {
    Server::start(&["typed", "chat", "todo"], flags)
}

/// A socket on `/watch?ch=CH`, past its first event.
fn watch(s: &Server, ch: &str) -> Ws {
    let mut w = Ws::open(s.connect(), &format!("/watch?ch={ch}"), &[]);
    assert_eq!(w.next_json(), serde_json::json!({"data": "watching 1"}));
    w
}

fn say(channel: &str, data: &str) -> String {
    serde_json::json!({"channel": channel, "data": data}).to_string()
}

/// The next reply to a message (events before it, a room's backlog say,
/// are skipped).
fn next_reply(w: &mut Ws) -> serde_json::Value {
    loop {
        let got = w.next_json();
        if got.get("status").is_some() {
            return got;
        }
    }
}

/// The next two frames: a message's reply and the event it published (in
/// either order: they travel different paths).
fn reply_and_event(w: &mut Ws) -> (serde_json::Value, serde_json::Value) {
    let a = w.next_json();
    let b = w.next_json();
    if a.get("status").is_some() { (a, b) } else { (b, a) }
}

// ---- The handshake ----

#[test]
fn the_handshake_and_its_refusals() {
    let s = server(&["--ws-allowed-origins", "https://chat.example, https://other.example"]);
    let origin = [("Origin", "https://chat.example")];
    let w = Ws::open(s.connect(), "/watch?ch=a", &origin);
    assert!(w.head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{}", w.head);
    assert!(w.head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "RFC 6455 1.3: {}", w.head);
    let refused = |target: &str, extra: &[(&str, &str)], drop: &str| {
        let mut req = ws::upgrade_request(target, extra);
        if !drop.is_empty() {
            let start = req.find(drop).unwrap();
            let end = start + req[start..].find("\r\n").unwrap() + 2;
            req.replace_range(start..end, "");
        }
        let mut c = s.connect();
        std::io::Write::write_all(&mut c, req.as_bytes()).unwrap();
        let r = read_response(&mut std::io::BufReader::new(c), false).expect("a response");
        (r.status, r.body.clone(), r.header("sec-websocket-version").map(str::to_owned))
    };
    let (status, body, version) = refused("/watch?ch=a", &origin, "Sec-WebSocket-Version");
    assert_eq!((status, version.as_deref()), (426, Some("13")), "{body}");
    let mut req_v8 = origin.to_vec();
    req_v8.push(("Sec-WebSocket-Version", "8"));
    assert_eq!(refused("/watch?ch=a", &req_v8, "Sec-WebSocket-Version: 13").0, 426);
    let (status, body, _) = refused("/watch?ch=a", &origin, "Sec-WebSocket-Key");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Sec-WebSocket-Key"), "{body}");
    let (status, body, _) = refused("/watch?ch=a", &[("Origin", "https://evil.example")], "");
    assert_eq!(status, 403, "cross-site WebSocket hijacking: {body}");
    assert_eq!(refused("/watch?ch=a", &[], "").0, 403, "no Origin while origins are set");
    // Only a stream's path opens a socket; a guest's refusal is its answer.
    let (status, body, _) = refused("/misuse", &origin, "");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a stream"), "{body}");
    assert_eq!(refused("/refuse", &origin, "").0, 403);
    assert_eq!(refused("/watch?ch=a&nope=1", &origin, "").0, 400, "the stream's inputs are validated");
    // Frames sent at once, before the 101 arrives, are not lost.
    let mut c = s.connect();
    let mut early = ws::upgrade_request("/watch?ch=early", &origin).into_bytes();
    early.extend(ws::frame(true, 0, TEXT, say("early", "soon").as_bytes()));
    std::io::Write::write_all(&mut c, &early).unwrap();
    let mut w = Ws::read_open(c);
    assert!(w.head.contains(" 101 "), "{}", w.head);
    assert_eq!(w.next_json(), serde_json::json!({"data": "watching 1"}));
    let (reply, event) = reply_and_event(&mut w);
    assert_eq!((reply["status"].as_u64(), event["data"].as_str()), (Some(200), Some("soon")));
}

// ---- 1.x framing ----

#[test]
fn framing_1_text_of_every_length_form() {
    let s = server(&["--ws-max-message-bytes", "200000"]);
    let mut w = watch(&s, "f");
    for n in [0usize, 1, 125, 126, 127, 128, 65535, 65536] {
        let data = "x".repeat(n);
        w.send_text(&say("f", &data));
        let (reply, event) = reply_and_event(&mut w);
        assert_eq!(reply, serde_json::json!({"status": 200, "body": "published 1"}), "{n}");
        assert_eq!(event["data"].as_str().map(str::len), Some(n), "{n}");
        assert!(event["id"].is_string(), "events carry their ids: {event}");
    }
}

#[test]
fn framing_1_a_server_frame_is_final_unmasked_and_has_no_reserved_bits() {
    let s = server(&[]);
    let mut w = watch(&s, "g");
    let big = "y".repeat(70_000);
    let r = s.post_form("/emit", &format!("channel=g&data={big}"));
    assert_eq!(r.status, 200);
    let f = w.next_data().unwrap();
    assert_eq!((f.fin, f.rsv, f.opcode), (true, 0, TEXT));
    assert_eq!(f.json()["data"].as_str().map(str::len), Some(70_000));
}

// ---- 2.x ping and pong ----

#[test]
fn pings_2_are_answered_with_their_payload() {
    let s = server(&[]);
    let mut w = watch(&s, "p");
    for payload in [&b""[..], b"hello", &[0xFF; 125][..], &[0, 1, 2, 254, 255][..]] {
        w.send(true, PING, payload);
        let f = w.next_frame().unwrap();
        assert_eq!((f.opcode, f.payload.as_slice()), (PONG, payload));
    }
    // Unsolicited pongs are ignored; ten pings get ten pongs, in order.
    w.send(true, PONG, b"unasked");
    for i in 0..10u8 {
        w.send(true, PING, &[i]);
    }
    for i in 0..10u8 {
        assert_eq!(w.next_frame().unwrap().payload, [i]);
    }
    // A control frame over 125 bytes is a protocol error.
    w.send(true, PING, &[0; 126]);
    w.expect_close(1002);
    assert!(w.closed_by_server());
}

// ---- 3.x reserved bits, 4.x opcodes ----

#[test]
fn reserved_bits_3_and_opcodes_4_are_protocol_errors() {
    let s = server(&[]);
    for rsv in 1..=7u8 {
        for opcode in [TEXT, PING] {
            let mut w = watch(&s, "r");
            w.send_raw(&ws::frame(true, rsv, opcode, b"{}"));
            w.expect_close(1002);
        }
    }
    for opcode in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        let mut w = watch(&s, "o");
        w.send(true, opcode, b"");
        w.expect_close(1002);
        assert!(w.closed_by_server(), "opcode {opcode}");
    }
}

#[test]
fn an_unmasked_client_frame_is_a_protocol_error() {
    let s = server(&[]);
    let mut w = watch(&s, "u");
    w.send_raw(&[0x81, 0x02, b'{', b'}']);
    w.expect_close(1002);
}

#[test]
fn binary_messages_are_refused_with_1003() {
    let s = server(&[]);
    let mut w = watch(&s, "b");
    w.send(true, BINARY, &[1, 2, 3]);
    w.expect_close(1003);
}

// ---- 5.x fragmentation ----

#[test]
fn fragmentation_5() {
    let s = server(&[]);
    let mut w = watch(&s, "fr");
    let text = say("fr", "in three parts");
    let (a, rest) = text.as_bytes().split_at(5);
    let (b, c) = rest.split_at(7);
    // Fragments, with control frames between them.
    w.send(false, TEXT, a);
    w.send(true, PING, b"between");
    w.send(false, CONT, b);
    w.send(true, PONG, b"unasked");
    w.send(true, CONT, c);
    assert_eq!(w.next_frame().unwrap().payload, b"between");
    let (reply, event) = reply_and_event(&mut w);
    assert_eq!((reply["status"].as_u64(), event["data"].as_str()), (Some(200), Some("in three parts")));
    // One byte per fragment.
    let bytes = say("fr", "byte by byte").into_bytes();
    for (i, byte) in bytes.iter().enumerate() {
        let opcode = if i == 0 { TEXT } else { CONT };
        w.send(i + 1 == bytes.len(), opcode, &[*byte]);
    }
    let (_, event) = reply_and_event(&mut w);
    assert_eq!(event["data"], "byte by byte");
    // Empty fragments around the message.
    w.send(false, TEXT, b"");
    w.send(false, CONT, text.as_bytes());
    w.send(true, CONT, b"");
    let (reply, _) = reply_and_event(&mut w);
    assert_eq!(reply["status"], 200);

    let cases: [&[(bool, u8, &[u8])]; 4] = [
        // A continuation with no message begun.
        &[(true, CONT, b"x")],
        // A new message before the last one ended.
        &[(false, TEXT, b"{"), (true, TEXT, b"{}")],
        // A fragmented ping.
        &[(false, PING, b"a"), (true, CONT, b"b")],
        // A fragmented close.
        &[(false, CLOSE, b"\x03\xe8"), (true, CONT, b"")],
    ];
    for frames in cases {
        let mut w = watch(&s, "fr2");
        for (fin, opcode, payload) in frames {
            w.send(*fin, *opcode, payload);
        }
        w.expect_close(1002);
    }
}

// ---- 6.x UTF-8 ----

#[test]
fn utf8_6_is_checked_in_text_and_across_fragments() {
    let s = server(&[]);
    let mut w = watch(&s, "utf");
    // "κόσμε", split inside a code point.
    let text = say("utf", "κόσμε 🦀").into_bytes();
    let cut = text.iter().position(|&b| b == 0xCE).unwrap() + 1;
    w.send(false, TEXT, &text[..cut]);
    w.send(true, CONT, &text[cut..]);
    let (_, event) = reply_and_event(&mut w);
    assert_eq!(event["data"], "κόσμε 🦀");
    let bad: [&[&[u8]]; 5] = [
        &[b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"],
        &[b"\xff"],
        &[b"\xc0\xaf"],
        // An invalid sequence across fragments.
        &[b"{\"a\":\"\xce", b"\x41\"}"],
        // Truncated at the end of the message.
        &[b"{\"a\":\"\xf0\x9f\xa6"],
    ];
    for parts in bad {
        let mut w = watch(&s, "utf2");
        for (i, part) in parts.iter().enumerate() {
            w.send(i + 1 == parts.len(), if i == 0 { TEXT } else { CONT }, part);
        }
        w.expect_close(1007);
    }
    // Fail fast: the close comes before the message's last fragment.
    let mut w = watch(&s, "utf3");
    w.send(false, TEXT, b"\xff\xfe");
    w.expect_close(1007);
}

// ---- 7.x close ----

#[test]
fn close_7_handshake_and_codes() {
    let s = server(&[]);
    for code in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] {
        let mut w = watch(&s, "c");
        w.send_close(code);
        assert_eq!(w.expect_close(code).payload.len(), 2, "echoed without a reason");
        assert!(w.closed_by_server(), "{code}: the server ends the TCP connection");
    }
    // A close without a payload is echoed without one.
    let mut w = watch(&s, "c");
    w.send(true, CLOSE, b"");
    let f = w.next_data().unwrap();
    assert_eq!((f.opcode, f.close_code()), (CLOSE, None));
    // Codes that may not be sent, a one-byte payload, a reason that is not UTF-8.
    for payload in [
        &[0x03, 0xE7][..],
        &[0x03, 0xEC],
        &[0x03, 0xED],
        &[0x03, 0xEE],
        &[0x03, 0xF7],
        &[0x13, 0x88],
        &[0x00, 0x00],
        &[0x03],
    ] {
        let mut w = watch(&s, "c");
        w.send(true, CLOSE, payload);
        w.expect_close(1002);
    }
    let mut w = watch(&s, "c");
    w.send(true, CLOSE, b"\x03\xe8\xff");
    w.expect_close(1007);
    // Nothing is answered after the close: a message sent after it is not.
    let mut w = watch(&s, "c");
    w.send_close(1000);
    w.send_text(&say("c", "too late"));
    w.expect_close(1000);
    assert!(w.next_data().is_none(), "nothing after the close frame");
    s.post_form("/emit", "channel=c&data=late");
}

// ---- 9.x limits ----

#[test]
fn limits_9_messages_over_the_limit_are_1009_before_their_bytes_arrive() {
    let s = server(&["--ws-max-message-bytes", "1024"]);
    // A frame saying it carries 1 MiB: refused at its header.
    let mut w = watch(&s, "l");
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 20).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    w.send_raw(&header);
    w.expect_close(1009);
    // Fragments that add up to more.
    let mut w = watch(&s, "l");
    w.send(false, TEXT, &[b' '; 600]);
    w.send(true, CONT, &[b' '; 600]);
    w.expect_close(1009);
    // Many messages at the limit pass, in order.
    let mut w = watch(&s, "l");
    let started = Instant::now();
    for i in 0..200 {
        let data = format!("{i:0>width$}", width = 1024 - say("l", "").len());
        let text = say("l", &data);
        assert_eq!(text.len(), 1024);
        w.send_text(&text);
    }
    let mut replies = 0;
    while replies < 200 {
        if w.next_json().get("status").is_some() {
            replies += 1;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_message_larger_than_a_request_body_is_read_whole() {
    // A socket's messages are bounded by their own flag, not the body's.
    let s = server(&["--ws-max-message-bytes", "1500000", "--max-body-bytes", "1000"]);
    let mut w = watch(&s, "big");
    w.send_text(&say("big", &"y".repeat(1_200_000)));
    let got = w.next_json();
    assert_eq!(got["status"], 400, "read whole, then refused by the body's rule: {got}");
    assert!(got["error"].as_str().unwrap().contains("body.data"), "{got}");
}

// ---- What house adds ----

#[test]
fn messages_are_validated_by_the_host_and_the_socket_stays_open() {
    let s = server(&[]);
    let mut w = watch(&s, "v");
    let refusals = [
        ("{\"channel\":\"\",\"data\":\"x\"}", "body.channel"),
        ("{\"channel\":\"v\",\"data\":\"x\",\"times\":0}", "body.times"),
        ("{\"data\":\"x\"}", "body.channel"),
        ("not json", "body"),
        ("{\"channel\":\"v\",\"data\":\"x\",\"extra\":1}", "extra"),
    ];
    for (text, names) in refusals {
        w.send_text(text);
        let got = w.next_json();
        assert_eq!(got["status"], 400, "{text}: {got}");
        assert!(got["error"].as_str().unwrap().contains(names), "{text}: {got}");
    }
    w.send_text(&say("v", "still open"));
    let (reply, event) = reply_and_event(&mut w);
    assert_eq!((reply["status"].as_u64(), event["data"].as_str()), (Some(200), Some("still open")));
    // A stream without a message handler listens only.
    let visit = s.get("/todos");
    let sid = visit.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let mut todo = Ws::open(s.connect(), "/todos/events", &[("Cookie", &sid)]);
    todo.next_json();
    todo.send_text("{}");
    let got = todo.next_json();
    assert_eq!(got["status"], 404, "{got}");
}

#[test]
fn events_reach_sockets_and_streams_with_the_same_ids_and_resume_by_query() {
    let s = server(&[]);
    let mut w = watch(&s, "same");
    let mut sse = house_tests::sse::Subscriber::open(s.connect(), "/watch?ch=same");
    sse.next_raw().unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        s.post_form("/emit", &format!("channel=same&data=e{i}&event=tick"));
        let ev = w.next_json();
        assert_eq!((ev["data"].as_str(), ev["event"].as_str()), (Some(&*format!("e{i}")), Some("tick")));
        let raw = sse.next_raw().unwrap();
        let id = ev["id"].as_str().unwrap().to_owned();
        assert!(raw.contains(&format!("id: {id}\n")), "{raw} vs {id}");
        ids.push(id);
    }
    // Resume after the second: the last three are replayed, in order.
    let mut again = Ws::open(s.connect(), &format!("/watch?ch=same&last-event-id={}", ids[1]), &[]);
    assert_eq!(again.next_json()["data"], "watching 1");
    for (i, id) in ids.iter().enumerate().skip(2) {
        let ev = again.next_json();
        assert_eq!((ev["id"].as_str(), ev["data"].as_str()), (Some(&**id), Some(&*format!("e{i}"))));
    }
    s.post_form("/emit", "channel=same&data=live");
    assert_eq!(again.next_json()["data"], "live");
    // The host counts its sockets (stats, metrics).
    assert_eq!(s.stats_json()["websockets"], 2);
    assert!(s.admin_get("/_house/metrics").body.contains("\nhouse_websockets 2\n"));
    drop((w, again));
    wait_until(Duration::from_secs(10), "the sockets closed", || s.stats_json()["websockets"] == 0);
}

#[test]
fn heartbeats_are_pings_and_a_silent_socket_is_closed() {
    let s = server(&["--heartbeat-ms", "100", "--ws-idle-timeout-ms", "1500"]);
    let mut w = watch(&s, "hb");
    let f = w.next_frame().unwrap();
    assert_eq!(f.opcode, PING, "{f:?}");
    // Answering the pings keeps it open past the idle timeout.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        let f = w.next_frame().unwrap();
        assert_eq!(f.opcode, PING);
        w.send(true, PONG, &f.payload);
    }
    // Silent from now on: closed with 1001.
    loop {
        let f = w.next_frame().expect("a close frame");
        if f.opcode == CLOSE {
            assert_eq!(f.close_code(), Some(1001));
            break;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[test]
fn a_socket_that_does_not_read_is_dropped_and_the_others_get_everything() {
    let s = server(&[]);
    let stalled = watch(&s, "slow");
    let mut reader = watch(&s, "slow");
    // The reader keeps up: the publisher never runs more than two events
    // ahead of it.
    let received = std::sync::Arc::new((std::sync::Mutex::new(0usize), std::sync::Condvar::new()));
    let reading = {
        let received = received.clone();
        std::thread::spawn(move || {
            loop {
                let ev = reader.next_json();
                match ev["data"].as_str() {
                    Some("stop") => break,
                    Some(d) => assert_eq!(d.len(), 50_000),
                    None => panic!("{ev}"),
                }
                *received.0.lock().unwrap() += 1;
                received.1.notify_all();
            }
        })
    };
    let rss_before = s.rss_kib();
    // 400 events of 50 KB: 20 MB, far more than the kernel buffers hold.
    let data = "x".repeat(50_000);
    for i in 0..400usize {
        let (lock, cv) = &*received;
        let guard = lock.lock().unwrap();
        let (guard, timeout) = cv.wait_timeout_while(guard, Duration::from_secs(20), |n| *n + 2 < i).unwrap();
        assert!(!timeout.timed_out(), "the reading socket stopped receiving at event {i}");
        drop(guard);
        assert_eq!(s.post_form("/emit", &format!("channel=slow&data={data}")).status, 200);
    }
    assert_eq!(s.post_form("/emit", "channel=slow&data=stop").status, 200);
    s.wait_for_log("house: dropped subscriber", Duration::from_secs(10));
    reading.join().expect("the reading socket saw every event");
    assert_eq!(*received.0.lock().unwrap(), 400);
    let grown = s.rss_kib().saturating_sub(rss_before);
    assert!(grown < 8 * 1024, "RSS grew by {grown} KiB for a stalled socket capped at 256 KiB");
    drop(stalled);
}

#[test]
fn shutdown_closes_sockets_with_1001() {
    let mut s = server(&[]);
    let mut w = watch(&s, "bye");
    let closing = std::thread::spawn(move || {
        let f = w.next_data().expect("a close frame");
        // The client answers, as a browser does.
        w.send_close(1001);
        (f.close_code(), w.closed_by_server())
    });
    assert!(s.terminate().success());
    assert_eq!(closing.join().unwrap(), (Some(1001), true));
}

#[test]
fn the_chat_over_one_socket_with_a_verified_name() {
    let s = server(&[]);
    let r = s.post_form("/chat/name", "room=ws&name=ada");
    assert_eq!(r.status, 204, "{}", r.body);
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let mut w = Ws::open(s.connect(), "/source?room=ws", &[("Cookie", &cookie)]);
    assert_eq!(w.next_json()["data"], "Listening...");
    // With a verified name, the socket is in the room's presence.
    let join = w.next_json();
    assert_eq!((join["event"].as_str(), join["data"].as_str()), (Some("join"), Some("ada")), "{join}");
    assert_eq!(s.get("/chat/members?room=ws").body, r#"["ada"]"#);
    let mut sse = house_tests::sse::Subscriber::open(s.connect(), "/source?room=ws");
    sse.next_raw().unwrap();
    w.send_text(r#"{"message":"hello over a socket"}"#);
    let (reply, event) = reply_and_event(&mut w);
    assert_eq!(reply, serde_json::json!({"status": 200, "body": "sent\n"}));
    let said: serde_json::Value = serde_json::from_str(event["data"].as_str().unwrap()).unwrap();
    assert_eq!(said, serde_json::json!({"name": "ada", "message": "hello over a socket", "verified": true}));
    // (After the room's backlog: ada's join.)
    assert!(sse.next_raw().unwrap().contains("event: join\n"));
    assert!(sse.next_raw().unwrap().contains("hello over a socket"), "SSE subscribers get it too");
    // Without the cookie, the guest refuses (and the socket stays open).
    let mut anon = Ws::open(s.connect(), "/source?room=ws", &[]);
    anon.send_text(r#"{"message":"who am i?"}"#);
    let got = next_reply(&mut anon);
    assert_eq!(got["status"], 403, "{got}");
    anon.send_text(r#"{"message":"hi"}"#);
    let got = next_reply(&mut anon);
    assert_eq!(got["status"], 400, "message: chars(min = 5): {got}");
}

#[test]
fn a_message_handler_needs_a_stream_at_its_path_and_takes_no_methods() {
    use house_tests::fault::{self, WatHandler};
    let t = Duration::from_secs(20);
    let dir = house_tests::TempDir::new("message-kind");
    let p = dir.path().to_owned();
    let s = Server::start_in(dir, &[]);
    let handler = |name: &'static str, manifest: &str| WatHandler {
        name,
        manifest: manifest.to_owned(),
        body: "(global.get $ok)",
    };
    let message = r#"{"name":"m","kind":"message","path":"/s"}"#;
    let stream = r#"{"name":"st","kind":"stream","path":"/s"}"#;
    std::fs::write(p.join("lone.wasm"), fault::module(1, &[handler("m", message)])).unwrap();
    s.wait_for_log("house: refused lone.wasm: message handler m has no stream handler at /s to open its WebSocket", t);
    let with_methods = r#"{"name":"m","kind":"message","path":"/s","methods":["POST"]}"#;
    std::fs::write(p.join("methods.wasm"), fault::module(1, &[handler("m", with_methods), handler("st", stream)]))
        .unwrap();
    s.wait_for_log("house: refused methods.wasm: handler m: a message handler takes WebSocket messages", t);
    // Beside its stream, a module in WAT (no SDK) answers messages.
    std::fs::write(p.join("pair.wasm"), fault::module(1, &[handler("m", message), handler("st", stream)])).unwrap();
    s.wait_for_log("house: loaded pair.wasm", t);
    let mut w = Ws::open(s.connect(), "/s", &[]);
    assert_eq!(w.next_json(), serde_json::json!({"data": "ok"}));
    w.send_text("{}");
    assert_eq!(w.next_json(), serde_json::json!({"status": 200, "body": "ok"}));
    // A message is never an HTTP method.
    let r = s.send("MESSAGE", "/s", &[], "");
    assert_eq!(r.status, 501, "{}", r.body);
}
