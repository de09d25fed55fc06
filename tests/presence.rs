//! Presence through the real binary: members by info across loops, one
//! join and one leave per member however many connections it has, the
//! `presence` import, coalescing under churn, and the bounds (members per
//! channel, info bytes).

use std::time::Duration;

use house_tests::sse::Subscriber;
use house_tests::ws::Ws;
use house_tests::{Server, enc, wait_until};

const T: Duration = Duration::from_secs(10);

fn members(s: &Server, ch: &str) -> Vec<String> {
    let r = s.get(&format!("/members?ch={ch}"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.body.lines().map(str::to_owned).filter(|l| !l.is_empty()).collect()
}

/// A stream on `ch` as a member under `info`, past its first event.
fn member(s: &Server, ch: &str, info: &str) -> Subscriber {
    let mut sub = Subscriber::open(s.connect(), &format!("/member?ch={ch}&info={}", enc(info)));
    assert_eq!(sub.next_data().as_deref(), Some(&*format!("member of {ch}")));
    sub
}

/// The next event's (type, data) on `sub`.
fn next_event(sub: &mut Subscriber) -> (String, String) {
    let raw = sub.next_raw().expect("an event");
    let field = |name: &str| {
        raw.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned)).unwrap_or_default()
    };
    (field("event"), field("data"))
}

#[test]
fn members_join_once_and_leave_once_across_loops() {
    // Two loops: connections land on either; the table is the process's.
    let s = Server::start(&["typed"], &["--threads", "2", "--presence-coalesce-ms", "1"]);
    let mut watcher = member(&s, "room", "watcher");
    assert_eq!(next_event(&mut watcher), ("join".into(), "watcher".into()), "its own join");
    let ada1 = member(&s, "room", "ada");
    assert_eq!(next_event(&mut watcher), ("join".into(), "ada".into()));
    // A second connection of the same member: no event.
    let ada2 = member(&s, "room", "ada");
    let mut ws = Ws::open(s.connect(), "/member?ch=room&info=bob", &[]);
    assert_eq!(ws.next_json()["data"], "member of room");
    assert_eq!(next_event(&mut watcher), ("join".into(), "bob".into()), "a socket is a member too");
    assert_eq!(members(&s, "room"), ["ada", "bob", "watcher"]);
    drop(ada1);
    drop(ws);
    assert_eq!(next_event(&mut watcher), ("leave".into(), "bob".into()), "ada's first tab left: no event");
    wait_until(T, "ada still listed with one tab", || members(&s, "room") == ["ada", "watcher"]);
    drop(ada2);
    assert_eq!(next_event(&mut watcher), ("leave".into(), "ada".into()));
    assert_eq!(members(&s, "room"), ["watcher"]);
    // Events of other channels and members of other channels are apart.
    let _other = member(&s, "elsewhere", "cy");
    assert_eq!(members(&s, "elsewhere"), ["cy"]);
    assert_eq!(members(&s, "room"), ["watcher"]);
}

#[test]
fn churn_is_coalesced_into_few_events() {
    let s = Server::start(&["typed"], &["--presence-coalesce-ms", "300"]);
    let mut watcher = member(&s, "busy", "watcher");
    assert_eq!(next_event(&mut watcher).0, "join");
    // 100 members come and 60 of them go again, faster than the window.
    let mut subs: Vec<Subscriber> = (0..100).map(|i| member(&s, "busy", &format!("m{i:03}"))).collect();
    subs.truncate(40);
    // However the window cut the churn, the events say what changed: a
    // few batches, each a `presence` count event or single joins/leaves.
    let mut events = 0;
    let mut net = 0i64;
    while net != 40 {
        let (kind, data) = next_event(&mut watcher);
        events += 1;
        match kind.as_str() {
            "join" => net += 1,
            "leave" => net -= 1,
            "presence" => {
                let v: serde_json::Value = serde_json::from_str(&data).unwrap();
                net += v["joined"].as_i64().unwrap() - v["left"].as_i64().unwrap();
            }
            other => panic!("{other}: {data}"),
        }
        assert!(events < 40, "churn of 160 changes is coalesced, not one event each");
    }
    assert_eq!(members(&s, "busy").len(), 41);
}

#[test]
fn members_and_info_are_bounded() {
    let s = Server::start(&["typed"], &["--presence-max-members", "3", "--presence-info-bytes", "16"]);
    let _a = member(&s, "full", "a");
    let _b = member(&s, "full", "b");
    let _c = member(&s, "full", "c");
    // A fourth is subscribed, not listed; the log says so.
    let mut d = member(&s, "full", "d");
    s.wait_for_log("has --presence-max-members 3", T);
    assert_eq!(members(&s, "full"), ["a", "b", "c"]);
    assert_eq!(s.get("/members?ch=full&limit=2").body, "a\nb", "the caller's limit too");
    // A member's second connection still counts while the channel is full.
    let _a2 = member(&s, "full", "a");
    let r = s.post_form("/emit", "channel=full&data=hello");
    assert_eq!(r.status, 200);
    assert_eq!(d.next_data().as_deref(), Some("hello"), "the fourth is subscribed");
    // Info over --presence-info-bytes, or with a line break: refused.
    for info in ["x".repeat(17), "two\nlines".into()] {
        let r = s.get(&format!("/member?ch=full&info={}", enc(&info)));
        assert_eq!(r.status, 400, "{info:?}");
        assert!(r.body.contains("too long, or has CR, LF or NUL"), "{}", r.body);
    }
}

/// Two hosts on one redis-server: one member set. `wait_until` polls what
/// a host's `/members` says (presence reads Redis).
#[test]
fn hosts_on_redis_share_members_and_a_killed_host_leaves_within_the_ttl() {
    let redis = house_tests::redis::Redis::start();
    let url = redis.url();
    let flags = ["--engine", &url, "--presence-coalesce-ms", "1", "--presence-ttl-ms", "1000"];
    let a = Server::start(&["typed"], &flags);
    let mut b = Server::start(&["typed"], &flags);
    // Streams opened before a host reaches Redis are ended when it does.
    for h in [&a, &b] {
        wait_until(T, "the host on Redis", || {
            let stats = h.stats_json();
            stats["engine_up"] == true && stats["kv_up"] == true
        });
    }
    // The watcher on A sees joins made on B, through Redis.
    let mut watcher = member(&a, "shared", "watcher");
    assert_eq!(next_event(&mut watcher), ("join".into(), "watcher".into()));
    let bob_on_b = member(&b, "shared", "bob");
    assert_eq!(next_event(&mut watcher), ("join".into(), "bob".into()), "a join on another host");
    // Bob on both hosts: one member; he leaves one host: no event.
    let bob_on_a = member(&a, "shared", "bob");
    wait_until(T, "both hosts list bob and the watcher", || {
        members(&a, "shared") == ["bob", "watcher"] && members(&b, "shared") == ["bob", "watcher"]
    });
    drop(bob_on_a);
    let _cy_on_b = member(&b, "shared", "cy");
    assert_eq!(next_event(&mut watcher), ("join".into(), "cy".into()), "bob's leaving one host said nothing");
    // B is killed: bob (on B only now) and cy leave within the ttl.
    drop(bob_on_b);
    let killed = std::time::Instant::now();
    b.kill();
    let mut left = Vec::new();
    while left.len() < 2 {
        let (kind, data) = next_event(&mut watcher);
        assert_eq!(kind, "leave", "{data}");
        left.push(data);
    }
    left.sort();
    assert_eq!(left, ["bob", "cy"]);
    // The ttl, plus a sweep's quarter and the test's own slack.
    assert!(killed.elapsed() < Duration::from_millis(2500), "{:?}", killed.elapsed());
    assert_eq!(members(&a, "shared"), ["watcher"]);
}
