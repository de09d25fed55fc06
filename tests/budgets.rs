//! What a guest makes the host do is bounded and charged to it: per-call
//! budgets for publishing, logging and responses; events that could never
//! reach a subscriber; strikes counted over a window, so that quarantine
//! cannot be dodged; effects dropped with a failed call.

use std::io::{BufReader, Write};
use std::time::Duration;

use house_tests::fault::{self, IMPORTS, WatHandler};
use house_tests::sse::Subscriber;
use house_tests::{Server, TempDir, read_response};

const CHANNEL: u32 = 30000; // "room"
const X: u32 = 30010; // "x"
const FINE: u32 = 30020; // "fine"
const ERR_500: u32 = 31000; // a response block: 500, no body

const DATA: &str = r#"
    (data (i32.const 30000) "room")
    (data (i32.const 30010) "x")
    (data (i32.const 30020) "fine")
    (data (i32.const 31000) "\f4\01\00\00\00\00\00\00\00\00\00\00\00\00\00\00")"#;

fn publish(data: u32, len: u32) -> String {
    format!(
        "(drop (call $publish (i32.const {CHANNEL}) (i32.const 4) (i32.const {data}) (i32.const {len}) \
         (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i64.const -1)))"
    )
}

/// `body` `times` times, in a loop.
fn repeat(times: u32, body: &str) -> String {
    format!(
        "(local $i i32) (loop $l {body} (local.set $i (i32.add (local.get $i) (i32.const 1))) \
         (br_if $l (i32.lt_u (local.get $i) (i32.const {times})))) (global.get $ok)"
    )
}

struct Bodies {
    flood: String,
    many: String,
    chatty: String,
    long_line: String,
    huge_event: String,
    err_after_publish: String,
    fine: String,
}

fn bodies() -> Bodies {
    Bodies {
        // 15 MiB of line breaks: 105 MiB once framed, if the host framed it.
        flood: format!(
            "(drop (memory.grow (i32.const 240))) (memory.fill (i32.const 65536) (i32.const 10) (i32.const 15728640)) \
             {} (global.get $ok)",
            publish(65536, 15 * 1024 * 1024)
        ),
        many: repeat(300, &publish(X, 1)),
        chatty: repeat(100, &format!("(call $log (i32.const {X}) (i32.const 1))")),
        long_line: "(call $log (i32.const 0) (i32.const 10000)) (global.get $ok)".into(),
        huge_event: format!(
            "(memory.fill (i32.const 32768) (i32.const 121) (i32.const 30000)) {} (global.get $ok)",
            publish(32768, 30_000)
        ),
        err_after_publish: format!("{} (i64.const {})", publish(X, 1), (16u64 << 32) | ERR_500 as u64),
        fine: format!("{} (global.get $ok)", publish(FINE, 4)),
    }
}

fn server(flags: &[&str]) -> Server {
    let b = bodies();
    let listen = format!("(drop (call $subscribe (i32.const {CHANNEL}) (i32.const 4))) (global.get $ok)");
    let handlers = [
        WatHandler::closing("flood", &b.flood),
        WatHandler::closing("many", &b.many),
        WatHandler::closing("chatty", &b.chatty),
        WatHandler::closing("long_line", &b.long_line),
        WatHandler::closing("huge_event", &b.huge_event),
        // A response block of 9 MiB (it need not exist: its length is
        // checked before it is read).
        WatHandler::closing("big_response", "i64.const 0x0090000000000400"),
        WatHandler::closing("err_after_publish", &b.err_after_publish),
        WatHandler::closing("fine", &b.fine),
        WatHandler { name: "listen", manifest: r#"{"name":"listen","kind":"stream"}"#.into(), body: &listen },
    ];
    let dir = TempDir::new("budgets");
    std::fs::write(dir.path().join("budget.wasm"), fault::module_parts(1, &handlers, IMPORTS, DATA)).unwrap();
    Server::start_in(dir, flags)
}

fn listen(s: &Server) -> Subscriber {
    let mut sub = Subscriber::open(s.connect(), "/listen");
    assert!(sub.head.starts_with("HTTP/1.1 200"), "{}", sub.head);
    assert_eq!(sub.next_data().as_deref(), Some("ok"));
    sub
}

/// Each budget fails its call with a 500 that names the budget, and nothing
/// the call published reaches the subscriber.
#[test]
fn over_a_budget_the_call_fails_and_publishes_nothing() {
    let s = server(&["--sse-buffer-bytes", "16384", "--guest-strikes", "100"]);
    let mut sub = listen(&s);
    let cases = [
        ("flood", "published more than 1048576 bytes (--guest-publish-bytes)"),
        ("many", "published more than 256 events (--guest-publish-events)"),
        ("chatty", "logged more than 64 lines (--guest-log-lines)"),
        ("long_line", "logged a line of 10000 bytes, over 4096 (--guest-log-line-bytes)"),
        ("big_response", "returned a response block of 9437184 bytes, over 8388608 (--guest-response-bytes)"),
        (
            "huge_event",
            "published an event of 30054 bytes framed with its id, which can never fit a subscriber's buffer \
             (--sse-buffer-bytes 16384)",
        ),
    ];
    for (name, reason) in cases {
        let r = s.get(&format!("/{}", name.replace('_', "-")));
        assert_eq!((r.status, r.body.as_str()), (500, format!("handler {name} failed\n").as_str()), "/{name}");
        s.wait_for_log(&format!("guest budget.wasm: {name}: {reason}"), Duration::from_secs(5));
    }
    // A budget given by flag is the one enforced.
    drop(sub);
    let s = server(&["--guest-publish-events", "400", "--guest-log-lines", "200"]);
    sub = listen(&s);
    assert_eq!(s.get("/many").status, 200);
    assert_eq!(s.get("/chatty").status, 200);
    for _ in 0..300 {
        assert_eq!(sub.next_data().as_deref(), Some("x"));
    }
    // And the subscriber was kept (an event it could fit).
    assert_eq!(s.stats().2, 1);
}

/// The subscriber is still there and sees the next good event first: the
/// failed calls' events were dropped, not delivered late.
#[test]
fn a_failed_call_publishes_nothing_an_sdk_err_included() {
    let s = server(&["--sse-buffer-bytes", "16384"]);
    let mut sub = listen(&s);
    let r = s.get("/err-after-publish");
    assert_eq!(r.status, 500);
    assert_eq!(s.get("/huge-event").status, 500);
    assert_eq!(s.get("/flood").status, 500);
    assert_eq!(s.get("/fine").status, 200);
    sub.set_timeout(Duration::from_secs(5));
    assert_eq!(sub.next_data().as_deref(), Some("fine"));
    assert_eq!(s.stats().2, 1, "the subscriber that was keeping up is still subscribed");
}

/// Budget overruns are strikes: the handler is suspended like one that spins.
#[test]
fn budget_overruns_are_strikes() {
    let s = server(&["--guest-strikes", "3"]);
    for _ in 0..3 {
        assert_eq!(s.get("/flood").status, 500);
    }
    s.wait_for_log(
        "flood: published more than 1048576 bytes (--guest-publish-bytes); 3 strikes within 30 s: suspended for 10 s",
        Duration::from_secs(5),
    );
    let r = s.get("/flood");
    assert_eq!(r.status, 503, "{}", r.body);
    // Other handlers of the module are not suspended.
    assert_eq!(s.get("/fine").status, 200);
}

/// A client alternating overrun, overrun, fast cannot keep a handler from
/// being suspended: strikes are counted over a window, and a fast call does
/// not clear them.
#[test]
fn quarantine_cannot_be_dodged_by_fast_calls_in_between() {
    let handlers = [WatHandler {
        name: "maybe",
        manifest: r#"{"name":"maybe","kind":"closing","params":[{"name":"spin","type":"boolean"}]}"#.into(),
        body: "(if (i32.load8_u (local.get $ptr)) (then (loop (br 0)))) (global.get $ok)",
    }];
    let dir = TempDir::new("dodge");
    std::fs::write(dir.path().join("maybe.wasm"), fault::module(1, &handlers)).unwrap();
    let s = Server::start_in(dir, &["--guest-deadline-ms", "20", "--guest-strikes", "3"]);
    let mut c = s.connect();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut ask = |spin: bool| {
        c.write_all(format!("GET /maybe?spin={spin} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).unwrap();
        read_response(&mut r, false).unwrap().status
    };
    let statuses: Vec<u16> = [true, true, false, true, false].into_iter().map(&mut ask).collect();
    assert_eq!(statuses, [500, 500, 200, 500, 503]);
    assert_eq!(ask(false), 503, "suspended means suspended, fast calls too");
}
