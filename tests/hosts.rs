//! Four house processes on one redis-server, as docs/DEPLOY.md runs them
//! (scaled to a test: 4 x 250 subscribers; `make bench` scenario 26 runs
//! 4 x 2,500): fan-out to every host's subscribers, presence and resume
//! across hosts, and one host SIGKILLed mid-run: its members leave presence
//! within the ttl, and its clients resume on the others with nothing lost.

use std::time::{Duration, Instant};

use house_tests::redis::Redis;
use house_tests::sse::Subscriber;
use house_tests::{Server, enc, wait_until};

const T: Duration = Duration::from_secs(20);
const PER_HOST: usize = 250;

fn hosts(redis: &Redis) -> Vec<Server> {
    let url = redis.url();
    let flags = ["--engine", &url, "--quiet", "--presence-coalesce-ms", "50", "--presence-ttl-ms", "1000"];
    let hosts: Vec<Server> = (0..4).map(|_| Server::start(&["typed"], &flags)).collect();
    for h in &hosts {
        wait_until(T, "every host on Redis", || {
            let stats = h.stats_json();
            stats["engine_up"] == true && stats["kv_up"] == true
        });
    }
    hosts
}

fn watch(s: &Server, ch: &str) -> Subscriber {
    let mut sub = Subscriber::open(s.connect(), &format!("/watch?ch={ch}"));
    assert_eq!(sub.next_data().as_deref(), Some("watching 1"));
    sub
}

fn member(s: &Server, ch: &str, info: &str) -> Subscriber {
    let mut sub = Subscriber::open(s.connect(), &format!("/member?ch={ch}&info={}", enc(info)));
    assert_eq!(sub.next_data().as_deref(), Some(&*format!("member of {ch}")));
    sub
}

fn members(s: &Server, ch: &str) -> Vec<String> {
    s.get(&format!("/members?ch={ch}")).body.lines().map(str::to_owned).collect()
}

/// The next event's (id, data), skipping presence events.
fn next_event(sub: &mut Subscriber) -> (String, String) {
    loop {
        let raw = sub.next_raw().expect("an event");
        let field = |name: &str| raw.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned));
        if field("event").is_some() {
            continue;
        }
        if let Some(data) = field("data") {
            return (field("id").unwrap_or_default(), data);
        }
    }
}

fn emit(s: &Server, ch: &str, data: &str) {
    let r = s.post_form("/emit", &format!("channel={ch}&data={data}"));
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn four_hosts_fan_out_share_presence_and_survive_a_killed_host() {
    let redis = Redis::start();
    let mut hosts = hosts(&redis);

    // Fan-out: 250 subscribers on each host, one publish on host 0.
    let mut subs: Vec<Vec<Subscriber>> =
        hosts.iter().map(|h| (0..PER_HOST).map(|_| watch(h, "fan")).collect()).collect();
    emit(&hosts[0], "fan", "to-all");
    for (i, group) in subs.iter_mut().enumerate() {
        for sub in group.iter_mut() {
            assert_eq!(next_event(sub).1, "to-all", "host {i}");
        }
    }
    drop(subs);

    // Presence: a member on each host, listed by every host.
    let mut held: Vec<Subscriber> =
        hosts.iter().enumerate().map(|(i, h)| member(h, "room", &format!("on-{i}"))).collect();
    let all = ["on-0", "on-1", "on-2", "on-3"];
    for h in &hosts {
        wait_until(T, "every host lists every member", || members(h, "room") == all);
    }

    // Clients of host 3 listen; events are published through host 0
    // before and after host 3 is killed.
    let mut on_3: Vec<Subscriber> = (0..20).map(|_| watch(&hosts[3], "kill")).collect();
    let mut watcher = member(&hosts[0], "room", "watcher");
    let mut last_ids = vec![String::new(); on_3.len()];
    for n in 0..10 {
        emit(&hosts[0], "kill", &format!("e{n}"));
    }
    for (sub, last) in on_3.iter_mut().zip(&mut last_ids) {
        // Each client has read some of the events when its host dies.
        for n in 0..5 {
            let (id, data) = next_event(sub);
            assert_eq!(data, format!("e{n}"));
            *last = id;
        }
    }
    let killed = Instant::now();
    hosts[3].kill();
    drop(on_3);
    for n in 10..20 {
        emit(&hosts[0], "kill", &format!("e{n}"));
    }
    // Host 3's member leaves presence within the ttl (plus a sweep's
    // quarter and the test's slack), said by a leave event to the others.
    loop {
        let raw = watcher.next_raw().expect("an event");
        if raw.contains("event: leave\ndata: on-3\n") {
            break;
        }
    }
    assert!(killed.elapsed() < Duration::from_millis(2500), "{:?}", killed.elapsed());
    for h in &hosts[..3] {
        assert_eq!(members(h, "room"), ["on-0", "on-1", "on-2", "watcher"]);
    }
    // Its clients resume on the other hosts with their last ids: every
    // event they missed, in order, once, nothing lost.
    for (i, last) in last_ids.iter().enumerate() {
        let host = &hosts[i % 3];
        let mut again = Subscriber::open_with(host.connect(), "/watch?ch=kill", &[("Last-Event-ID", last)]);
        assert_eq!(again.next_data().as_deref(), Some("watching 1"));
        for n in 5..20 {
            assert_eq!(next_event(&mut again).1, format!("e{n}"), "client {i} resumed on another host");
        }
    }
    held.truncate(3);
}
