//! The admin surface (`/_house/*`) lives on its own listener, loopback by
//! default (`--admin-bind`): the public port answers it 404, as if it were
//! not there, and the admin port serves nothing else.

use std::io::Write;

use house_tests::{Server, read_response};

const ADMIN: [&str; 4] = ["/_house/guests", "/_house/stats", "/_house/metrics", "/_house/openapi.json"];

#[test]
fn the_admin_surface_is_on_its_own_loopback_port_and_not_on_the_public_one() {
    let s = Server::start(&["hello"], &[]);
    assert_ne!(s.admin.port(), s.addr.port());
    assert!(s.admin.ip().is_loopback(), "{}", s.admin);
    for path in ADMIN {
        let public = s.get(path);
        assert_eq!(public.status, 404, "{path} on the public port: {}", public.body);
        assert!(public.body.contains(&format!("no handler for {path}")), "{}", public.body);
        assert_eq!(s.admin_get(path).status, 200, "{path} on the admin port");
    }
    // Another method gets 404 too, not a 405 that says the route exists.
    assert_eq!(s.request("POST", "/_house/stats", Some("")).status, 404);
    // The guests are on the public port only.
    assert_eq!(s.get("/hello?name=Ada").status, 200);
    let r = s.admin_get("/hello?name=Ada");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("the admin port, which serves /_house/ only"), "{}", r.body);
    // The admin port is HTTP/1.1 like the other: keep-alive, HEAD.
    let mut c = std::net::TcpStream::connect(s.admin).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut reader = std::io::BufReader::new(c.try_clone().unwrap());
    for _ in 0..2 {
        c.write_all(b"GET /_house/stats HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = read_response(&mut reader, false).expect("a response");
        assert_eq!(r.status, 200);
        let stats: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert!(stats["connections"].as_u64().unwrap() >= 1);
    }
}

#[test]
fn public_openapi_opts_the_document_back_in_and_nothing_else() {
    let s = Server::start(&["hello"], &["--public-openapi"]);
    let r = s.get("/_house/openapi.json");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("\"/hello\""), "{}", r.body);
    for path in &ADMIN[..3] {
        assert_eq!(s.get(path).status, 404, "{path}");
    }
}

#[test]
fn admin_bind_takes_an_address() {
    let s = Server::start(&["hello"], &["--admin-bind", "127.0.0.1:0"]);
    assert_eq!(s.admin_get("/_house/guests").status, 200);
    assert_eq!(s.get("/_house/guests").status, 404);
}

#[test]
fn an_admin_port_in_use_is_said_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = taken.local_addr().unwrap().to_string();
    let (guests, data) = (house_tests::TempDir::new("guests"), house_tests::TempDir::new("data"));
    let out = std::process::Command::new(house_tests::house_bin())
        .args(["--port", "0", "--no-cache", "--admin-bind", &at, "--guests"])
        .arg(guests.path())
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {at} (--admin-bind)")), "{err}");
}

/// `--admin-bind unix:PATH`: the admin surface on a Unix socket only this
/// user may open (0600); a stale socket file is replaced, and the file
/// goes when the process stops.
#[test]
fn the_admin_surface_can_be_a_unix_socket() {
    use std::io::{BufReader, Read};
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = house_tests::TempDir::new("admin-socket");
    let path = dir.path().join("admin.sock");
    // A socket file nobody listens on any more, as a killed house leaves.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let flag = format!("unix:{}", path.display());
    let mut s = Server::start(&["hello"], &["--admin-bind", &flag]);
    s.wait_for_log(&format!("admin on {flag} (GET /_house/...)"), std::time::Duration::ZERO);
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let mut c = std::os::unix::net::UnixStream::connect(&path).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /_house/stats HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = read_response(&mut BufReader::new(c.try_clone().unwrap()), false).expect("a response");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("\"connections\":"), "{}", r.body);
    c.write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let mut rest = String::new();
    c.read_to_string(&mut rest).unwrap();
    assert!(rest.starts_with("HTTP/1.1 404"), "guests are not on the admin socket: {rest}");
    assert_eq!(s.get("/_house/stats").status, 404);
    assert!(s.terminate().success());
    assert!(!path.exists(), "the socket file goes with the process");
}
