//! `GET /_house/metrics`, read by a real Prometheus text-format parser
//! (`prometheus_client` from PyPI, in the venv `make test` makes): every
//! family parses, and the figures are exactly what the requests made.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use house_tests::sse::Subscriber;
use house_tests::{Server, repo};

/// Parses the exposition; every sample as `name{k=v,...}` -> value.
fn parse(text: &str) -> HashMap<String, f64> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let python = repo().join("tests/.venv/bin/python");
    assert!(python.exists(), "{} is missing: `make test-tools` makes it", python.display());
    let mut child =
        Command::new(python).args(["-c", SCRIPT]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the parser refused the exposition:\n{text}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn scrape(s: &Server) -> HashMap<String, f64> {
    let r = s.admin_get("/_house/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    parse(&r.body)
}

#[test]
fn the_exposition_parses_and_counts_what_happened() {
    let s = Server::start(&["chat", "hello"], &["--quiet", "--threads", "2"]);
    let before = scrape(&s);
    assert_eq!(before["house_guest_calls_total{result=ok}"], 0.0);
    assert_eq!(before["house_module_loads_total{result=loaded}"], 2.0);

    for _ in 0..3 {
        assert_eq!(s.get("/hello?name=Ada").status, 200);
    }
    assert_eq!(s.get("/hello?name=").status, 400);
    assert_eq!(s.get("/nowhere").status, 404);
    assert_eq!(s.get("/note?key=k&text=x&trap=true").status, 500);
    let mut sub = Subscriber::open(s.connect(), "/source?room=m");
    assert!(sub.next_data().is_some());
    assert_eq!(s.get("/send-message?room=m&name=ada&message=hello+there").status, 200);
    assert!(sub.next_data().is_some_and(|d| d.contains("hello there")));

    let m = scrape(&s);
    let n = |k: &str| m.get(k).copied().unwrap_or_else(|| panic!("no sample {k}: {m:?}"));
    assert_eq!(n("house_http_requests_total{route=/hello,status=200}"), 3.0);
    assert_eq!(n("house_http_requests_total{route=/hello,status=400}"), 1.0, "a 400 counts for its route");
    assert_eq!(n("house_http_requests_total{route=unmatched,status=404}"), 1.0);
    assert_eq!(n("house_http_requests_total{route=/note,status=500}"), 1.0);
    assert_eq!(n("house_http_requests_total{route=/source,status=200}"), 1.0);
    assert_eq!(n("house_http_requests_total{route=/_house/metrics,status=200}"), 1.0, "the first scrape");
    assert_eq!(n("house_guest_calls_total{result=ok}"), 5.0, "3 hellos, the stream, the send");
    assert_eq!(n("house_guest_calls_total{result=trap}"), 1.0);
    // Every call but the 400 (no instance for it) ran in an instance, new
    // or kept. Each loop keeps its own (the kernel spreads these
    // connections over the two loops): a module's first call on each loop
    // makes one, so a hello and the stream made one each, and at most one
    // more each on the other loop; the trap's was dropped after it.
    let (made, reused) = (n("house_guest_instantiations_total{}"), n("house_guest_instance_reuses_total{}"));
    assert_eq!(made + reused, 6.0, "3 hellos, the trap, the stream, the send");
    assert!((2.0..=4.0).contains(&made), "{made} instances made");
    assert!(n("house_guest_instances_idle{}") >= 1.0, "the chat's, kept after the send");
    assert_eq!(n("house_guest_call_duration_seconds_count{}"), 6.0);
    assert_eq!(n("house_events_published_total{}"), 1.0);
    assert_eq!(n("house_events_delivered_total{}"), 1.0);
    assert_eq!(n("house_sse_subscriptions{}"), 1.0);
    assert_eq!(n("house_engine_up{engine=memory}"), 1.0);
    assert_eq!(n("house_kv_up{}"), 1.0);
    // Every request so far, in the histogram too (the +Inf bucket is all).
    let answered = 3.0 + 1.0 + 1.0 + 1.0 + 1.0 + 1.0 + 1.0;
    assert_eq!(n("house_http_request_duration_seconds_count{}"), answered);
    assert_eq!(n("house_http_request_duration_seconds_bucket{le=+Inf}"), answered);
    assert!(n("house_http_request_duration_seconds_bucket{le=5}") <= answered);
    drop(sub);
}

#[test]
fn a_module_dropped_in_and_removed_is_counted() {
    let s = Server::start(&["hello"], &["--quiet"]);
    std::fs::copy(house_tests::example_guest("chat"), s.guests.path().join("chat.wasm")).unwrap();
    s.wait_for_log("house: loaded chat.wasm", Duration::from_secs(10));
    std::fs::write(s.guests.path().join("broken.wasm"), "not a module").unwrap();
    s.wait_for_log("house: refused broken.wasm", Duration::from_secs(10));
    std::fs::remove_file(s.guests.path().join("chat.wasm")).unwrap();
    s.wait_for_log("house: unloaded chat.wasm", Duration::from_secs(10));
    let m = scrape(&s);
    assert_eq!(m["house_module_loads_total{result=loaded}"], 2.0);
    assert_eq!(m["house_module_loads_total{result=refused}"], 1.0);
    assert_eq!(m["house_module_loads_total{result=unloaded}"], 1.0);
}

#[test]
fn no_metrics_means_no_endpoint() {
    let s = Server::start(&["hello"], &["--quiet", "--no-metrics"]);
    let r = s.admin_get("/_house/metrics");
    assert_eq!((r.status, r.body.trim_end()), (404, "metrics are off (--no-metrics)"));
}
