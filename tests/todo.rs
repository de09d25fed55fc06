//! The to-do example guest over real HTTP: a visitor gets a random `sid`
//! cookie, adds, completes and deletes items through the JSON API, its
//! other tab hears of each change, another visitor sees none of it (404 for
//! its ids), and the list survives a restart.

use std::io::{BufReader, Write};
use std::time::Duration;

use house_tests::sse::Subscriber;
use house_tests::{Response, Server, TempDir, read_response};

/// The to-do guest on `data`, its cookies signed with the key file kept
/// there (made on the first start): a restart keeps the sessions.
fn todo(data: &str) -> Server {
    let key = std::path::Path::new(data).join("cookie.key");
    if !key.exists() {
        house_tests::identity::key_file(
            std::path::Path::new(data),
            "cookie.key",
            &[(None, &house_tests::identity::secret())],
        );
    }
    Server::start(&["todo"], &["--quiet", "--data-dir", data, "--cookie-key-file", key.to_str().unwrap()])
}

/// A visitor: its cookie, once the page has set it.
struct Visitor<'a> {
    s: &'a Server,
    cookie: String,
}

impl<'a> Visitor<'a> {
    fn arrive(s: &'a Server) -> Visitor<'a> {
        let page = s.get("/todo");
        assert_eq!(page.status, 200);
        assert!(page.body.contains("<form"), "{}", page.body);
        assert_eq!(page.header("set-cookie"), None, "the page is a static file");
        let r = s.get("/todos");
        assert_eq!(r.status, 200);
        let set = r.header("set-cookie").expect("a first visit gets a cookie");
        let sid = set.strip_prefix("sid=").and_then(|v| v.split(';').next()).expect("sid=...");
        // 32 hex digits, then the host's signature.
        let (id, signature) = sid.split_once('.').expect("a signed value");
        assert_eq!((id.len(), signature.len()), (32, 43), "{set}");
        assert!(set.contains("HttpOnly") && set.contains("Max-Age="), "{set}");
        Visitor { s, cookie: format!("sid={sid}") }
    }

    fn call(&self, method: &str, target: &str, json: Option<&str>) -> Response {
        let mut c = self.s.connect();
        let body = json.unwrap_or("");
        let ct = if json.is_some() { "Content-Type: application/json\r\n" } else { "" };
        let req = format!(
            "{method} {target} HTTP/1.1\r\nHost: t\r\nCookie: {}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            self.cookie,
            body.len()
        );
        c.write_all(req.as_bytes()).unwrap();
        read_response(&mut BufReader::new(c), false).expect("a response")
    }

    fn list(&self) -> serde_json::Value {
        let r = self.call("GET", "/todos", None);
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str(&r.body).unwrap()
    }
}

#[test]
fn a_visitor_keeps_a_list_that_others_cannot_touch_and_a_restart_keeps() {
    let data = TempDir::new("todo");
    let dir = data.path().to_str().unwrap().to_owned();
    let mut s = todo(&dir);
    let ada = Visitor::arrive(&s);
    let again = s.get("/todos");
    assert_ne!(again.header("set-cookie"), None, "a visitor without the cookie is a new one");
    assert_eq!(ada.list(), serde_json::json!([]));

    // Ada's other tab follows her changes.
    let mut tab = {
        let stream = s.connect();
        let cookie = ada.cookie.clone();
        Subscriber::open_with(stream, "/todos/events", &[("Cookie", cookie.as_str())])
    };
    tab.set_timeout(Duration::from_secs(10));
    assert_eq!(tab.next_data().as_deref(), Some("listening"));

    let r = ada.call("POST", "/todos", Some(r#"{"title":"buy milk"}"#));
    assert_eq!((r.status, r.body.as_str()), (201, r#"{"id":1,"title":"buy milk","done":false}"#));
    assert_eq!(tab.next_data().as_deref(), Some("changed"));
    let r = ada.call("POST", "/todos", Some(r#"{"title":"call \"mum\" ✓"}"#));
    assert_eq!(r.status, 201);
    assert_eq!(tab.next_data().as_deref(), Some("changed"));
    let r = ada.call("PATCH", "/todos/1", Some(r#"{"done":true}"#));
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"id":1,"title":"buy milk","done":true}"#));
    assert_eq!(
        ada.list(),
        serde_json::json!([{"id":1,"title":"buy milk","done":true},{"id":2,"title":"call \"mum\" ✓","done":false}])
    );

    // The API's refusals, by the host (the typed bodies) or the guest.
    let refused = |method: &str, target: &str, body: Option<&str>| {
        let r = ada.call(method, target, body);
        assert_eq!(r.status, 400, "{}", r.body);
        r.body
    };
    assert_eq!(refused("POST", "/todos", Some(r#"{"title":""}"#)), "body.title: length 0 is below the minimum 1\n");
    assert_eq!(refused("POST", "/todos", Some(r#"{"title":"  "}"#)), "body.title: only spaces\n");
    assert_eq!(
        refused("POST", "/todos", Some(&format!(r#"{{"title":"{}"}}"#, "x".repeat(201)))),
        "body.title: length 201 is above the maximum 200\n"
    );
    assert_eq!(
        refused("POST", "/todos", Some(r#"{"name":"x"}"#)),
        "body: \"name\" is not a field of NewItem (it has title)\n"
    );
    assert_eq!(refused("POST", "/todos", Some("{")), "body: not valid JSON\n");
    assert_eq!(refused("POST", "/todos", None), "body: missing (a required JSON body)\n");
    assert_eq!(
        refused("PATCH", "/todos/1", Some(r#"{"done":"yes"}"#)),
        "body.done: \"yes\" is not a boolean (true or false)\n"
    );
    assert_eq!(ada.call("PATCH", "/todos/99", Some(r#"{"done":true}"#)).status, 404);
    assert_eq!(ada.call("DELETE", "/todos/0", None).status, 400, "ids start at 1");
    assert_eq!(ada.call("PUT", "/todos/1", None).status, 405);

    // Bob sees nothing of Ada's and can touch none of it.
    let bob = Visitor::arrive(&s);
    assert_eq!(bob.list(), serde_json::json!([]));
    // A sid Bob makes up, or Ada's without its signature, or Ada's with
    // Bob's signature, is no session: a new one is given.
    let ada_sid = ada.cookie.strip_prefix("sid=").unwrap().split_once('.').unwrap().0.to_owned();
    let bob_signature = bob.cookie.split_once('.').unwrap().1.to_owned();
    for forged in [format!("sid={ada_sid}"), format!("sid={ada_sid}.{bob_signature}"), "sid=x.y".to_owned()] {
        let eve = Visitor { s: &s, cookie: forged.clone() };
        let r = eve.call("GET", "/todos", None);
        assert_eq!((r.status, r.body.as_str()), (200, "[]"), "{forged}");
        assert!(r.header("set-cookie").is_some(), "{forged} is a new visitor");
    }
    assert_eq!(bob.call("DELETE", "/todos/1", None).status, 404);
    assert_eq!(bob.call("PATCH", "/todos/2", Some(r#"{"done":true}"#)).status, 404);

    let r = ada.call("DELETE", "/todos/2", None);
    assert_eq!((r.status, r.header("content-length")), (204, None));
    assert_eq!(ada.call("DELETE", "/todos/2", None).status, 404, "gone");

    let cookie = ada.cookie.clone();
    drop((ada, bob, tab));
    assert!(s.terminate().success());
    let s = todo(&dir);
    let ada = Visitor { s: &s, cookie };
    assert_eq!(ada.list(), serde_json::json!([{"id":1,"title":"buy milk","done":true}]), "kept across the restart");
    let r = ada.call("POST", "/todos", Some(r#"{"title":"after"}"#));
    assert!(r.body.starts_with(r#"{"id":3,"#), "ids go on: {}", r.body);
}

/// 8 clients add 25 items each to one visitor's list at once; each retries
/// a 503 (a transaction still in conflict after its re-runs: nothing was
/// changed) as Retry-After says. Every 201 is an item in the list, with an
/// id no other has: 200 of them.
fn concurrent_adds(servers: &[&Server]) {
    let ada = Visitor::arrive(servers[0]);
    let created = std::sync::Mutex::new(Vec::new());
    let retried = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for c in 0..8 {
            let visitor = Visitor { s: servers[c % servers.len()], cookie: ada.cookie.clone() };
            let (created, retried) = (&created, &retried);
            scope.spawn(move || {
                for i in 0..25 {
                    let body = format!(r#"{{"title":"client {c} item {i}"}}"#);
                    for attempt in 0.. {
                        assert!(attempt < 50, "client {c} item {i}: still refused after 50 tries");
                        let r = visitor.call("POST", "/todos", Some(&body));
                        if r.status == 503 && r.header("retry-after").is_some() {
                            assert_eq!(r.header("house-outcome"), None, "no outcome is unknown here");
                            retried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            continue;
                        }
                        assert_eq!(r.status, 201, "{}", r.body);
                        let item: serde_json::Value = serde_json::from_str(&r.body).unwrap();
                        created.lock().unwrap().push(item["id"].as_i64().unwrap());
                        break;
                    }
                }
            });
        }
    });
    let mut created = created.into_inner().unwrap();
    created.sort();
    created.dedup();
    assert_eq!(created.len(), 200, "every 201 has an id of its own");
    let listed = ada.list();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 200, "every 201 is in the list");
    let mut ids: Vec<i64> = listed.iter().map(|i| i["id"].as_i64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, created);
    eprintln!("200 concurrent adds: {} answers of 503 retried", retried.into_inner());
}

#[test]
fn concurrent_adds_on_one_host_with_two_loops_all_stay() {
    let data = TempDir::new("todo");
    let s = Server::start(&["todo"], &["--quiet", "--threads", "2", "--data-dir", data.path().to_str().unwrap()]);
    concurrent_adds(&[&s]);
}

#[test]
fn concurrent_adds_on_two_hosts_on_one_redis_all_stay() {
    let redis = house_tests::redis::Redis::start();
    let url = redis.url();
    let keys = TempDir::new("todo-keys");
    let key = house_tests::identity::cookie_key_file(keys.path());
    let flags = ["--quiet", "--threads", "1", "--engine", url.as_str(), "--cookie-key-file", key.as_str()];
    let (a, b) = (Server::start(&["todo"], &flags), Server::start(&["todo"], &flags));
    concurrent_adds(&[&a, &b]);
}

/// A 201 is on disk before it is sent: SIGKILL right after the last of 20
/// adds, and all 20 are there after the restart.
#[test]
fn acknowledged_adds_survive_a_sigkill_right_after() {
    let data = TempDir::new("todo");
    let dir = data.path().to_str().unwrap().to_owned();
    let mut s = todo(&dir);
    let ada = Visitor::arrive(&s);
    for i in 0..20 {
        let r = ada.call("POST", "/todos", Some(&format!(r#"{{"title":"item {i}"}}"#)));
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let cookie = ada.cookie.clone();
    drop(ada);
    s.kill();
    let s = todo(&dir);
    let ada = Visitor { s: &s, cookie };
    assert_eq!(ada.list().as_array().map(Vec::len), Some(20), "every acknowledged add is kept");
}
