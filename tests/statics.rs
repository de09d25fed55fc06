//! Static files a module ships (custom sections `house.static:PATH TYPE`),
//! served by the host itself: the bytes as built, the type, an ETag that
//! makes a revalidation a 304, HEAD, no instance per request, only GET and
//! HEAD, no way out of the module's own list of paths, and modules whose
//! static files are not plain refused at load with the reason.

use std::io::{BufReader, Write};
use std::time::Duration;

use house_tests::fault::{self, WatHandler};
use house_tests::{Response, Server, TempDir, read_response, repo, with_section};

const T: Duration = Duration::from_secs(20);

fn request(s: &Server, head: &str) -> Response {
    let mut c = s.connect();
    c.write_all(head.as_bytes()).unwrap();
    read_response(&mut BufReader::new(c), head.starts_with("HEAD")).expect("a response")
}

fn instantiations(s: &Server) -> u64 {
    let metrics = s.admin_get("/_house/metrics").body;
    let line = metrics.lines().find(|l| l.starts_with("house_guest_instantiations_total ")).expect("the counter");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn the_chat_page_is_served_from_the_module_with_etag_304_and_head_and_no_instance() {
    let s = Server::start(&["chat"], &["--quiet"]);
    let page = std::fs::read_to_string(repo().join("guests/chat/src/index.html")).unwrap();
    let before = instantiations(&s);

    let r = s.get("/index");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, page, "the file's bytes, as built into the module");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let etag = r.header("etag").expect("an ETag").to_owned();
    assert!(etag.len() == 18 && etag.starts_with('"') && etag.ends_with('"'), "{etag}");

    // Revalidation: the same tag (strong, weak, in a list, or *) is a 304
    // without a body; another tag is the page again.
    for inm in [etag.clone(), format!("W/{etag}"), format!("\"0000\", {etag}"), "*".to_owned()] {
        let r = request(&s, &format!("GET /index HTTP/1.1\r\nHost: t\r\nIf-None-Match: {inm}\r\n\r\n"));
        assert_eq!(r.status, 304, "If-None-Match: {inm}");
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert_eq!(r.header("content-length"), None);
        assert_eq!(r.body, "");
    }
    let r = request(&s, "GET /index HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"0123456789abcdef\"\r\n\r\n");
    assert_eq!((r.status, r.body.len()), (200, page.len()));

    // HEAD: the headers of the 200, its length, no body (the next response
    // on the connection would show one).
    let r = request(&s, "HEAD /index HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(page.len().to_string().as_str()));
    let raw = s.raw(b"HEAD /index HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(raw.ends_with("\r\n\r\n"), "HEAD sent a body: {raw:?}");

    // Only GET and HEAD.
    let r = s.post_form("/index", "");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));

    // A query string does not change the file (cache-busting links work).
    assert_eq!(s.get("/index?v=2").body, page);

    // None of it instantiated a guest.
    assert_eq!(instantiations(&s), before, "a static file costs no instance");
    // The handlers beside it still run.
    assert_eq!(s.get("/send-message?room=r&name=n&message=hello").status, 200);
    assert_eq!(instantiations(&s), before + 1);

    // /_house/guests lists it.
    let index: serde_json::Value = serde_json::from_str(&s.admin_get("/_house/guests").body).unwrap();
    let files = &index["guests"][0]["static_files"];
    assert_eq!(files[0]["path"], "/index");
    assert_eq!(files[0]["etag"], etag.as_str());
    assert_eq!(files[0]["size"], page.len());
}

#[test]
fn paths_never_leave_the_modules_list() {
    let s = Server::start(&["chat"], &["--quiet"]);
    for target in [
        "/../index",
        "/x/../index",
        "/%2e%2e/index",
        "/.%2e/index",
        "//index",
        "/index/",
        "/./index",
        "/INDEX",
        "/index%00",
    ] {
        let r = request(&s, &format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert!(matches!(r.status, 400 | 404), "{target}: {}", r.status);
        assert!(!r.body.contains("<html"), "{target} served the page");
    }
}

/// A module of one trivial handler with `sections` (name, data) added.
fn module_with_files(sections: &[(&str, &[u8])]) -> Vec<u8> {
    let mut m = fault::module(1, &[WatHandler::closing("h", "(global.get $ok)")]);
    for (name, data) in sections {
        m = with_section(&m, name, data);
    }
    m
}

#[test]
fn any_toolchain_can_ship_files_and_unplain_ones_are_refused_at_load() {
    let dir = TempDir::new("statics");
    let p = dir.path().to_owned();
    let s = Server::start_in(dir, &[]);

    // A hand-made module: a section per file, binary content kept exact.
    let png: Vec<u8> = (0..=255u8).collect();
    let good = module_with_files(&[
        ("house.static:/logo.png image/png", &png),
        ("house.static:/app.css text/css; charset=utf-8", b"body { margin: 0 }"),
        ("unrelated", b"ignored"),
    ]);
    std::fs::write(p.join("files.wasm"), good).unwrap();
    s.wait_for_log("house: loaded files.wasm", T);
    let r = request(&s, "GET /app.css HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (r.status, r.header("content-type"), r.body.as_str()),
        (200, Some("text/css; charset=utf-8"), "body { margin: 0 }")
    );
    let mut c = s.connect();
    c.write_all(b"GET /logo.png HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let raw = house_tests::read_to_close_bytes(&mut c);
    assert!(raw.ends_with(&png), "binary content as shipped");

    for (file, section, reason) in [
        (
            "up.wasm",
            "house.static:/../secret text/plain",
            "static path \"/../secret\" has an empty, '.' or '..' segment",
        ),
        ("pct.wasm", "house.static:/%2e%2e text/plain", "static path \"/%2e%2e\" contains '%'"),
        ("house.wasm", "house.static:/_house/x text/plain", "static path \"/_house/x\" is under /_house/"),
        ("notype.wasm", "house.static:/x", "static file section \"/x\": no content type"),
        ("claimed.wasm", "house.static:/h text/plain", "static file /h and handler h both claim GET /h"),
    ] {
        std::fs::write(p.join(file), module_with_files(&[(section, b"x")])).unwrap();
        s.wait_for_log(&format!("house: refused {file}: {reason}"), T);
    }
    let twice = module_with_files(&[("house.static:/t text/plain", b"a"), ("house.static:/t text/html", b"b")]);
    std::fs::write(p.join("twice.wasm"), twice).unwrap();
    s.wait_for_log("house: refused twice.wasm: static file /t is in the module twice", T);
    assert_eq!(s.get("/secret").status, 404);
}

/// `GET /`, when no guest serves it, links the pages the guests serve (and
/// only pages: the rest is on the admin port); a guest's own `/` wins.
#[test]
fn the_root_links_the_guests_pages_unless_a_guest_serves_it() {
    let s = Server::start(&["chat", "todo", "hello"], &[]);
    let r = s.get("/");
    assert_eq!((r.status, r.header("content-type")), (200, Some("text/html; charset=utf-8")));
    assert!(r.body.contains(r#"<a href="/index">/index</a> <small>chat</small>"#), "{}", r.body);
    assert!(r.body.contains(r#"<a href="/todo">/todo</a> <small>todo</small>"#), "{}", r.body);
    assert!(!r.body.contains("/hello") && !r.body.contains("/send-message"), "pages only: {}", r.body);
    assert_eq!(s.request("HEAD", "/", None).status, 200);
    assert_eq!(s.admin_get("/").status, 404, "not on the admin port");
    // A module that serves `/` itself.
    let root = module_with_files(&[("house.static:/ text/html; charset=utf-8", b"<p>mine</p>")]);
    std::fs::write(s.guests.path().join("root.wasm"), root).unwrap();
    s.wait_for_log("house: loaded root.wasm", Duration::from_secs(10));
    assert_eq!(s.get("/").body, "<p>mine</p>");
}
