//! Server-Sent Events through the real binary: framing (golden), fan-out to
//! 1,000 subscribers across rooms, a stalled reader dropped while the others
//! keep receiving, hang-ups leaving the table, heartbeats.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use house_tests::sse::Subscriber;
use house_tests::{Server, enc, read_response};

fn emit(s: &Server, form: &str) {
    let r = s.post_form("/emit", form);
    assert_eq!((r.status, r.body.as_str()), (200, "ok"), "{form}");
}

#[test]
fn stream_head_and_first_event() {
    let s = Server::start(&["typed", "chat"], &[]);
    let mut sub = Subscriber::open(s.connect(), "/watch?ch=a&ch=b");
    assert!(sub.head.starts_with("HTTP/1.1 200 OK\r\n"), "{}", sub.head);
    assert!(sub.head.contains("Content-Type: text/event-stream; charset=utf-8\r\n"));
    assert!(sub.head.contains("Cache-Control: no-cache\r\n"));
    assert!(!sub.head.contains("Content-Length"));
    assert_eq!(sub.next_raw().unwrap(), "data: watching 2\n\n");
    // A handler that returns nothing gets the article's first event.
    let mut chat = Subscriber::open(s.connect(), "/source?room=lobby");
    assert_eq!(chat.next_raw().unwrap(), "data: Listening...\n\n");
}

#[test]
fn framing_golden() {
    let s = Server::start(&["typed"], &[]);
    let mut sub = Subscriber::open(s.connect(), "/watch?ch=gold");
    sub.next_raw().unwrap();
    let cases: &[(&str, &str)] = &[
        ("data=plain", "data: plain\n\n"),
        (
            &format!("data={}&event=msg&id=42&retry=1500", enc("a\nb\r\nc\rd")),
            // The guest's id is replaced by the host's (docs/ABI.md).
            "event: msg\nretry: 1500\ndata: a\ndata: b\ndata: c\ndata: d\n\n",
        ),
        (&format!("data={}", enc("héllo 🦀 wörld")), "data: héllo 🦀 wörld\n\n"),
        // A message cannot forge a field or a second event.
        (
            &format!("data={}", enc("x\n\nevent: evil\nid: 9\n\ndata: y")),
            "data: x\ndata: \ndata: event: evil\ndata: id: 9\ndata: \ndata: data: y\n\n",
        ),
        (&format!("data={}", enc("trailing\n")), "data: trailing\ndata: \n\n"),
        ("data=", "data: \n\n"),
    ];
    let mut last = 0;
    for (form, framed) in cases {
        emit(&s, &format!("channel=gold&{form}"));
        assert_eq!(without_id(&sub.next_raw().unwrap(), &mut last), *framed, "{form}");
    }
    // Fields that would end a line are refused by the host, and the guest sees it.
    let r = s.post_form("/emit", &format!("channel=gold&data=x&event={}", enc("a\nb")));
    assert_eq!((r.status, r.body.as_str()), (500, "SSE event and id must not contain CR, LF or NUL\n"));
    emit(&s, "channel=gold&data=after");
    assert_eq!(without_id(&sub.next_raw().unwrap(), &mut last), "data: after\n\n", "the refused event was never sent");
}

/// `raw` without its first line, which must be the host's `id: EPOCH-SEQ`
/// with SEQ above `last` (updated).
fn without_id(raw: &str, last: &mut u64) -> String {
    let (line, rest) = raw.split_once('\n').expect("lines");
    let seq = line.strip_prefix("id: ").and_then(|id| id.split_once('-')).map(|(_, seq)| seq.parse::<u64>());
    let seq = seq.unwrap_or_else(|| panic!("no host id first in {raw:?}")).expect("a numeric SEQ");
    assert!(seq > *last, "ids increase");
    *last = seq;
    rest.to_owned()
}

#[test]
fn stream_refusals_and_validation() {
    let s = Server::start(&["typed", "chat"], &[]);
    let r = s.get("/refuse");
    assert_eq!((r.status, r.body.as_str()), (403, "no streams for you\n"));
    let r = s.get(&format!("/source?room={}", "r".repeat(17)));
    assert_eq!((r.status, r.body.as_str()), (400, "room: length 17 is above the maximum 16\n"));
    assert_eq!(s.stats().2, 0, "nothing subscribed");
    // Publishing to a room nobody is in is not an error; GET works as POST does.
    let r = s.post_form("/send-message", "room=empty&name=ada&message=hello%20nobody");
    assert_eq!((r.status, r.body.as_str()), (200, "sent\n"));
    let r = s.get("/send-message?room=empty&name=ada&message=hello%20again");
    assert_eq!((r.status, r.body.as_str()), (200, "sent\n"));
}

#[test]
fn a_thousand_subscribers_across_rooms_get_exactly_their_rooms_events() {
    let s = Server::start(&["chat"], &[]);
    const ROOMS: usize = 10;
    const PER_ROOM: usize = 100;
    let mut subs: Vec<(usize, Subscriber)> = Vec::new();
    for i in 0..ROOMS * PER_ROOM {
        let room = i % ROOMS;
        let mut sub = Subscriber::open(s.connect(), &format!("/source?room=room-{room}"));
        assert_eq!(sub.next_data().unwrap(), "Listening...");
        subs.push((room, sub));
    }
    assert_eq!(s.stats(), (1000 + 1, ROOMS as u64, 1000), "(connections incl. this request, channels, subscriptions)");
    // Three messages per room, interleaved across rooms, over one keep-alive connection.
    let mut c = s.connect();
    let mut r = std::io::BufReader::new(c.try_clone().unwrap());
    for n in 0..3 {
        for room in 0..ROOMS {
            let body = format!("room=room-{room}&name=n{n}&message=message%20{n}%20for%20{room}");
            let req = format!(
                "POST /send-message HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            c.write_all(req.as_bytes()).unwrap();
            assert_eq!(read_response(&mut r, false).unwrap().status, 200);
        }
    }
    for room in 0..ROOMS {
        let r = s.post_form("/send-message", &format!("room=room-{room}&name=end&message=the%20end"));
        assert_eq!(r.status, 200);
    }
    for (room, sub) in &mut subs {
        for n in 0..3 {
            let expected = format!(r#"{{"name":"n{n}","message":"message {n} for {room}"}}"#);
            assert_eq!(sub.next_data().unwrap(), expected);
        }
        // Nothing from another room slipped in before the end marker.
        assert_eq!(sub.next_data().unwrap(), r#"{"name":"end","message":"the end"}"#);
    }
}

#[test]
fn a_stalled_subscriber_is_dropped_while_the_others_keep_receiving() {
    let s = Server::start(&["typed"], &[]);
    let stalled = Subscriber::open(s.connect(), "/watch?ch=big");
    let mut live = Subscriber::open(s.connect(), "/watch?ch=big");
    live.next_raw().unwrap();
    // The live subscriber keeps up: the publisher never runs more than two
    // events ahead of it, whatever else the machine is doing.
    let received = Arc::new((Mutex::new(0usize), Condvar::new()));
    let reader = {
        let received = received.clone();
        thread::spawn(move || {
            live.set_timeout(Duration::from_secs(20));
            loop {
                match live.next_data() {
                    Some(d) if d == "stop" => break,
                    Some(d) => {
                        assert_eq!(d.len(), 50_000);
                        *received.0.lock().unwrap() += 1;
                        received.1.notify_all();
                    }
                    None => panic!("the live subscriber was cut off"),
                }
            }
        })
    };
    let rss_before = s.rss_kib();
    // 400 events of 50 KB: 20 MB, far more than the kernel buffers hold.
    let data = "x".repeat(50_000);
    let mut c = s.connect();
    let mut r = std::io::BufReader::new(c.try_clone().unwrap());
    for i in 0..400usize {
        let (lock, cv) = &*received;
        let guard = lock.lock().unwrap();
        let (guard, timeout) = cv.wait_timeout_while(guard, Duration::from_secs(20), |n| *n + 2 < i).unwrap();
        assert!(!timeout.timed_out(), "the live subscriber stopped receiving at event {i}");
        drop(guard);
        let body = format!("channel=big&data={data}");
        let req = format!(
            "POST /emit HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        c.write_all(req.as_bytes()).unwrap();
        assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    }
    emit(&s, "channel=big&data=stop");
    s.wait_for_log("house: dropped subscriber", Duration::from_secs(10));
    reader.join().expect("the live reader saw every event");
    assert_eq!(*received.0.lock().unwrap(), 400);
    s.wait_for_stats(Duration::from_secs(5), |(_, _, subs)| subs == 0);
    let grown = s.rss_kib().saturating_sub(rss_before);
    assert!(grown < 8 * 1024, "RSS grew by {grown} KiB for a stalled reader capped at 256 KiB");
    drop(stalled);
}

#[test]
fn a_hung_up_subscriber_leaves_the_table_without_a_publish() {
    let s = Server::start(&["chat"], &[]);
    let subs: Vec<Subscriber> = (0..5).map(|_| Subscriber::open(s.connect(), "/source?room=bye")).collect();
    s.wait_for_stats(Duration::from_secs(5), |(_, ch, n)| ch == 1 && n == 5);
    drop(subs);
    let started = Instant::now();
    s.wait_for_stats(Duration::from_secs(5), |(_, ch, n)| ch == 0 && n == 0);
    assert!(started.elapsed() < Duration::from_secs(1), "hang-ups seen by the loop, not at a later publish");
}

#[test]
fn idle_streams_get_heartbeats() {
    let s = Server::start(&["chat"], &["--heartbeat-ms", "100"]);
    let mut sub = Subscriber::open(s.connect(), "/source?room=quiet");
    sub.next_raw().unwrap();
    sub.set_timeout(Duration::from_secs(5));
    let started = Instant::now();
    assert_eq!(sub.next_raw().unwrap(), ":\n\n");
    assert_eq!(sub.next_raw().unwrap(), ":\n\n");
    assert!(started.elapsed() >= Duration::from_millis(150));
}
