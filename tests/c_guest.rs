//! The C guest (`guests/c-greet`, built by `make guests` with clang and lld
//! against `guest-sdk/include/house.h`), served by the real binary like the
//! Rust guests: validated inputs with the host's exact 400s, a default,
//! methods, the key-value store.

use house_tests::Server;

#[test]
fn the_c_guest_is_served_like_any_other() {
    let s = Server::start(&["c-greet"], &["--quiet"]);
    let r = s.get("/c/hello?name=Ada");
    assert_eq!((r.status, r.body.as_str()), (200, "Hello, Ada!\n"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(s.get("/c/hello").body, "Hello, world!\n", "the manifest's default");
    let r = s.get(&format!("/c/hello?name={}", "%C3%A9".repeat(41))); // 41 characters, 82 bytes
    assert_eq!((r.status, r.body.trim_end()), (400, "name: length 41 is above the maximum 40"));
    let r = s.get(&format!("/c/hello?name={}", "%C3%A9".repeat(40)));
    assert_eq!(r.body, format!("Hello, {}!\n", "é".repeat(40)), "40 characters are within the rule");
    assert_eq!(s.get("/c/hello?name=Ada&extra=1").status, 400, "an undeclared parameter");
    assert_eq!(s.post_form("/c/hello", "name=Ada").status, 405, "GET only");

    for n in 1..=3 {
        let r = s.get("/c/visits");
        assert_eq!((r.status, r.body.as_str()), (200, format!(r#"{{"visits":{n}}}"#).as_str()));
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    assert_eq!(s.post_form("/c/visits", "").body, r#"{"visits":4}"#);
}
