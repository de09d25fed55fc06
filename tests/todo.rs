//! The to-do example guest over real HTTP: a visitor gets a random `sid`
//! cookie, adds, completes and deletes items through the JSON API, its
//! other tab hears of each change, another visitor sees none of it (404 for
//! its ids), and the list survives a restart.

use std::io::{BufReader, Write};
use std::time::Duration;

use house_tests::sse::Subscriber;
use house_tests::{Response, Server, TempDir, read_response};

fn todo(data: &str) -> Server {
    Server::start(&["todo"], &["--quiet", "--data-dir", data])
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
        assert_eq!(sid.len(), 32, "{set}");
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

    // The API's refusals.
    assert_eq!(ada.call("POST", "/todos", Some(r#"{"title":""}"#)).status, 400);
    assert_eq!(ada.call("POST", "/todos", Some(&format!(r#"{{"title":"{}"}}"#, "x".repeat(201)))).status, 400);
    assert_eq!(ada.call("POST", "/todos", Some(r#"{"name":"x"}"#)).status, 400);
    assert_eq!(ada.call("POST", "/todos", Some("{")).status, 400, "not JSON");
    assert_eq!(ada.call("POST", "/todos", None).status, 400, "no body");
    assert_eq!(ada.call("PATCH", "/todos/1", Some(r#"{"done":"yes"}"#)).status, 400);
    assert_eq!(ada.call("PATCH", "/todos/99", Some(r#"{"done":true}"#)).status, 404);
    assert_eq!(ada.call("DELETE", "/todos/0", None).status, 400, "ids start at 1");
    assert_eq!(ada.call("PUT", "/todos/1", None).status, 405);

    // Bob sees nothing of Ada's and can touch none of it.
    let bob = Visitor::arrive(&s);
    assert_eq!(bob.list(), serde_json::json!([]));
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
