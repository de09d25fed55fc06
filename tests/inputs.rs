//! What a guest may see beyond query parameters, each declared in its
//! manifest and validated by the host before an instance exists: path
//! segments, headers, cookies, a JSON body; undeclared parameters refused;
//! several cookies set; conflicting path patterns refused at load.

use std::io::{BufReader, Write};
use std::time::Duration;

use house_tests::fault::{WatHandler, module};
use house_tests::{Response, Server, TempDir, read_response};

const T: Duration = Duration::from_secs(10);

fn typed() -> Server {
    Server::start(&["typed"], &["--quiet"])
}

/// One request with extra header lines and a body, on a fresh connection.
fn send(s: &Server, method: &str, target: &str, headers: &[&str], body: &str) -> Response {
    let mut c = s.connect();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let req = format!("{method} {target} HTTP/1.1\r\nHost: t\r\n{extra}Content-Length: {}\r\n\r\n{body}", body.len());
    c.write_all(req.as_bytes()).unwrap();
    read_response(&mut BufReader::new(c), false).expect("a response")
}

fn said(r: &Response) -> (u16, &str) {
    (r.status, r.body.trim_end())
}

#[test]
fn path_segments_are_typed_and_literal_segments_win() {
    let s = typed();
    assert_eq!(said(&s.get("/items/42")), (200, "item 42"));
    assert_eq!(said(&s.get("/items/new")), (200, "the new-item form"), "the literal beats {{id}}");
    assert_eq!(said(&s.get("/items/0")), (400, "path id: 0 is below the minimum 1"));
    assert_eq!(said(&s.get("/items/x")), (400, "path id: \"x\" is not an integer"));
    assert_eq!(said(&s.get("/items/%34%32")), (200, "item 42"), "segments are percent-decoded");
    assert_eq!(s.get("/items/").status, 404, "a parameter takes a non-empty segment");
    assert_eq!(s.get("/items/1/2").status, 404);
    assert_eq!(said(&s.get("/rooms/Lobby/messages/7")), (200, "lobby #7"), "keywords are lower-cased");
    assert_eq!(said(&s.get("/rooms/lobby/messages/1000")), (400, "path n: 1000 is above the maximum 999"));
    let r = send(&s, "DELETE", "/items/42", &[], "");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD, POST")));
}

#[test]
fn headers_are_declared_typed_and_case_insensitive() {
    let s = typed();
    let r = send(&s, "GET", "/whoami", &["USER-AGENT: tester/1.0", "X-Level: 3"], "");
    assert_eq!(said(&r), (200, "tester/1.0 at level 3, session fresh"));
    let r = send(&s, "GET", "/whoami", &["User-Agent: t"], "");
    assert_eq!(said(&r), (200, "t at level 1, session fresh"), "an absent header takes its default");
    assert_eq!(
        said(&send(&s, "GET", "/whoami", &[], "")),
        (400, "header user-agent: missing (a required string header)")
    );
    let long = format!("User-Agent: {}", "a".repeat(65));
    assert_eq!(
        said(&send(&s, "GET", "/whoami", &[&long], "")),
        (400, "header user-agent: length 65 is above the maximum 64")
    );
    let at_max = format!("User-Agent: {}", "a".repeat(64));
    assert_eq!(send(&s, "GET", "/whoami", &[&at_max], "").status, 200);
    let r = send(&s, "GET", "/whoami", &["User-Agent: t", "X-Level: 6"], "");
    assert_eq!(said(&r), (400, "header x-level: 6 is above the maximum 5"));
    let r = send(&s, "GET", "/whoami", &["User-Agent: t", "X-Level: high"], "");
    assert_eq!(said(&r), (400, "header x-level: \"high\" is not an integer"));
    let r = send(&s, "GET", "/whoami", &["User-Agent: a", "User-Agent: b"], "");
    assert_eq!(said(&r), (400, "header user-agent: given 2 times, expected one value"));
    // A declared header that is not UTF-8 is refused; an undeclared one is
    // none of the guest's business, and goes unread.
    let raw = |header: &[u8]| {
        let mut c = s.connect();
        let mut req = b"GET /whoami HTTP/1.1\r\nHost: t\r\nUser-Agent: ok\r\n".to_vec();
        req.extend_from_slice(header);
        req.extend_from_slice(b"\r\n\r\n");
        c.write_all(&req).unwrap();
        read_response(&mut BufReader::new(c), false).expect("a response")
    };
    assert_eq!(said(&raw(b"X-Level: \xff")), (400, "header x-level: not valid UTF-8"));
    assert_eq!(raw(b"X-Other: \xff").status, 200);
}

#[test]
fn cookies_are_read_and_several_are_set() {
    let s = typed();
    let r = send(&s, "GET", "/whoami", &["User-Agent: t", "Cookie: theme=dark; sid=abc123; x=\"y\""], "");
    assert_eq!(said(&r), (200, "t at level 1, session abc123"));
    let cookies: Vec<&str> =
        r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie")).map(|(_, v)| v.as_str()).collect();
    assert_eq!(
        cookies,
        ["sid=abc123; Path=/; HttpOnly; SameSite=Lax", "seen=yes; Path=/; Max-Age=60; HttpOnly; SameSite=Lax"]
    );
    let r = send(&s, "GET", "/whoami", &["User-Agent: t", "Cookie: sid=\"quoted\""], "");
    assert_eq!(said(&r), (200, "t at level 1, session quoted"), "a quoted value loses its quotes");
    let long = format!("Cookie: sid={}", "s".repeat(33));
    let r = send(&s, "GET", "/whoami", &["User-Agent: t", &long], "");
    assert_eq!(said(&r), (400, "cookie sid: length 33 is above the maximum 32"));
}

#[test]
fn a_json_body_is_checked_and_only_json_is_taken() {
    let s = typed();
    let json = ["Content-Type: application/json"];
    assert_eq!(said(&send(&s, "POST", "/echo-json", &json, r#"{"title":"milk"}"#)), (200, r#"{"title":"milk"}"#));
    let vendor = ["Content-Type: application/vnd.api+json; charset=utf-8"];
    assert_eq!(send(&s, "PUT", "/echo-json", &vendor, "[1,2]").status, 200, "+json is JSON");
    let form = ["Content-Type: application/x-www-form-urlencoded"];
    assert_eq!(
        said(&send(&s, "POST", "/echo-json", &form, "title=milk")),
        (415, "the body must be Content-Type: application/json")
    );
    assert_eq!(send(&s, "POST", "/echo-json", &[], "{}").status, 415, "no Content-Type is not JSON");
    assert_eq!(said(&send(&s, "POST", "/echo-json", &json, r#"{"title":"#)), (400, "body: not valid JSON"));
    assert_eq!(said(&send(&s, "POST", "/echo-json", &json, "")), (400, "body: missing (a required JSON body)"));
    let big = format!(r#"["{}"]"#, "x".repeat(197));
    assert_eq!(said(&send(&s, "POST", "/echo-json", &json, &big)), (400, "body: length 201 is above the maximum 200"));
    let at_max = format!(r#"["{}"]"#, "x".repeat(196));
    assert_eq!(send(&s, "POST", "/echo-json", &json, &at_max).status, 200);
    let bad_utf8 = send(&s, "POST", "/echo-json", &json, "\"\u{e9}\"");
    assert_eq!(bad_utf8.status, 200, "UTF-8 is fine");
}

#[test]
fn undeclared_parameters_are_refused_by_name() {
    let s = typed();
    assert_eq!(
        said(&s.get("/items/42?verbose=1")),
        (400, "\"verbose\": not a parameter of this handler (it takes no query parameters)")
    );
    let r = s.get("/named?room=lobby&levle=2");
    assert_eq!(said(&r), (400, "\"levle\": not a parameter of this handler (it takes room, level)"));
    let r = s.post_form("/named", "room=lobby&extra=1");
    assert_eq!(r.status, 400, "in a form body too: {}", r.body);
}

fn handler(name: &str, path: &str, params: &str) -> WatHandler<'static> {
    let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
    WatHandler {
        name,
        manifest: format!(r#"{{"name":"{name}","kind":"closing","path":"{path}","params":[{params}]}}"#),
        body: "(global.get $ok)",
    }
}

#[test]
fn path_patterns_that_conflict_or_do_not_match_their_parameters_are_refused_at_load() {
    let dir = TempDir::new("patterns");
    let id = r#"{"name":"id","in":"path","type":"integer"}"#;
    let key = r#"{"name":"key","in":"path"}"#;
    let cases: [(&str, Vec<WatHandler<'static>>, &str); 6] = [
        (
            "twins",
            vec![handler("a", "/x/{id}", id), handler("b", "/x/{key}", key)],
            "handlers a and b both claim /x/{key}",
        ),
        (
            "undeclared",
            vec![handler("a", "/x/{id}", "")],
            "handler a: path segment {id} has no parameter (\"in\": \"path\")",
        ),
        ("stray", vec![handler("a", "/x", id)], "handler a: path parameter id is not a {id} segment of /x"),
        (
            "braces",
            vec![handler("a", "/x/a{id}", id)],
            "handler a: path segment \"a{id}\": braces only around a whole segment, {NAME}",
        ),
        (
            "body",
            vec![handler("a", "/x", r#"{"name":"b","in":"body","type":"string"}"#)],
            "handler a: b: a body is of type json or an object type",
        ),
        (
            "header",
            vec![handler("a", "/x", r#"{"name":"bad header","in":"header"}"#)],
            "handler a: header name \"bad header\" is not an HTTP token",
        ),
    ];
    for (file, handlers, _) in &cases {
        std::fs::write(dir.path().join(format!("{file}.wasm")), module(1, handlers)).unwrap();
    }
    let s = Server::start_in(dir, &[]);
    for (file, _, reason) in &cases {
        s.wait_for_log(&format!("house: refused {file}.wasm: {reason}"), T);
    }
}

#[test]
fn two_modules_claiming_one_shape_are_resolved_like_one_path() {
    let dir = TempDir::new("shapes");
    let id = r#"{"name":"id","in":"path"}"#;
    let key = r#"{"name":"key","in":"path"}"#;
    std::fs::write(dir.path().join("a.wasm"), module(1, &[handler("first", "/x/{id}", id)])).unwrap();
    std::fs::write(dir.path().join("b.wasm"), module(1, &[handler("second", "/x/{key}", key)])).unwrap();
    let s = Server::start_in(dir, &[]);
    s.wait_for_log("/x/{key} is claimed by a.wasm (first) and b.wasm (second); b.wasm wins", T);
    assert_eq!(said(&s.get("/x/1")), (200, "ok"));
}
