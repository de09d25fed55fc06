//! Guests' key-value data, embedded (redb under `--data-dir`): every
//! import through the hello guest, its bounds as error codes the guest
//! handles, a failing call's writes absent, data across a restart, exact
//! counts under concurrent increments, and one data directory per process.

use std::io::{BufReader, Write};
use std::time::Duration;

use house_tests::{Server, TempDir, enc, read_response, wait_until};

fn hello(flags: &[&str]) -> Server {
    Server::start(&["hello"], &[&["--quiet"], flags].concat())
}

fn said(s: &Server, target: &str) -> (u16, String) {
    let r = s.get(target);
    (r.status, r.body.trim_end().to_owned())
}

#[test]
fn set_get_delete_list_and_expire() {
    let s = hello(&[]);
    assert_eq!(said(&s, "/note?key=a"), (200, "(none)".into()));
    assert_eq!(said(&s, "/note?key=a&text=first"), (200, "set".into()));
    assert_eq!(said(&s, "/note?key=a"), (200, "first".into()));
    assert_eq!(said(&s, "/note?key=a&text=second"), (200, "set".into()));
    assert_eq!(said(&s, "/note?key=a"), (200, "second".into()));
    for k in ["ab", "b", "ac"] {
        said(&s, &format!("/note?key={k}&text=x"));
    }
    assert_eq!(said(&s, "/notes?prefix=a"), (200, "a\nab\nac".into()), "in key order");
    assert_eq!(said(&s, "/notes?prefix=a&limit=2"), (200, "a\nab".into()));
    assert_eq!(said(&s, "/notes?prefix=zz"), (200, "".into()));
    assert_eq!(said(&s, "/note?key=ab&delete=true"), (200, "deleted".into()));
    assert_eq!(said(&s, "/note?key=ab"), (200, "(none)".into()));
    assert_eq!(said(&s, "/note?key=nothing&delete=true"), (200, "deleted".into()), "deleting nothing is fine");
    assert_eq!(said(&s, &format!("/note?key=t&text={}&ttl_ms=150", enc("for a moment"))), (200, "set".into()));
    assert_eq!(said(&s, "/note?key=t"), (200, "for a moment".into()));
    wait_until(Duration::from_secs(5), "the note to expire", || said(&s, "/note?key=t").1 == "(none)");
    assert!(!said(&s, "/notes").1.lines().any(|k| k == "t"), "an expired key is not listed");
}

#[test]
fn bounds_are_errors_the_guest_handles() {
    let s = hello(&["--kv-key-bytes", "8", "--kv-value-bytes", "100", "--kv-module-mb", "1"]);
    assert_eq!(said(&s, "/note?key=12345678&text=v"), (200, "set".into()), "a key at the bound");
    assert_eq!(said(&s, "/note?key=123456789&text=v"), (507, "key or value too large".into()));
    assert_eq!(said(&s, &format!("/note?key=v&text={}", "x".repeat(100))), (200, "set".into()));
    assert_eq!(said(&s, &format!("/note?key=v&text={}", "x".repeat(101))), (507, "key or value too large".into()));
    // 1 MiB for the module: 100-byte values fill it after ~9,000 keys.
    let mut c = BufReader::new(s.connect());
    let mut refused_at = None;
    for i in 0..12_000 {
        let target = format!("/note?key=f{i}&text={}", "y".repeat(100));
        c.get_mut().write_all(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).unwrap();
        let r = read_response(&mut c, false).unwrap();
        if r.status == 507 {
            assert_eq!(r.body.trim_end(), "over this call's or this module's key-value budget");
            refused_at = Some(i);
            break;
        }
        assert_eq!(r.status, 200);
    }
    let at = refused_at.expect("the module's bytes are bounded");
    assert!((8_000..10_000).contains(&at), "refused after {at} keys of ~115 bytes for 1 MiB");
    // Other modules are not charged for it: reads still work here.
    assert_eq!(said(&s, "/note?key=v").0, 200);
}

#[test]
fn a_failing_call_leaves_no_write_behind() {
    let s = hello(&[]);
    assert_eq!(s.get("/note?key=k&text=kept").status, 200);
    let r = s.get("/note?key=k&text=lost&fail=true");
    assert_eq!(r.status, 500);
    assert_eq!(said(&s, "/note?key=k"), (200, "kept".into()), "the failed call's set is absent");
}

#[test]
fn data_survives_a_restart() {
    let data = TempDir::new("kv-restart");
    let dir = data.path().to_str().unwrap().to_owned();
    let mut s = hello(&["--data-dir", &dir]);
    assert_eq!(said(&s, "/note?key=durable&text=still+here"), (200, "set".into()));
    assert_eq!(said(&s, "/visits?page=p"), (200, r#"{"page":"p","visits":1}"#.into()));
    assert!(s.terminate().success());
    let s = hello(&["--data-dir", &dir]);
    assert_eq!(said(&s, "/note?key=durable"), (200, "still here".into()));
    assert_eq!(said(&s, "/visits?page=p"), (200, r#"{"page":"p","visits":2}"#.into()));
}

#[test]
fn concurrent_increments_lose_no_update() {
    const CLIENTS: usize = 8;
    const EACH: usize = 500;
    let s = hello(&["--threads", "2"]);
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            scope.spawn(|| {
                let mut c = BufReader::new(s.connect());
                for _ in 0..EACH {
                    c.get_mut().write_all(b"GET /visits?page=hot HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
                    assert_eq!(read_response(&mut c, false).unwrap().status, 200);
                }
            });
        }
    });
    let want = format!(r#"{{"page":"hot","visits":{}}}"#, CLIENTS * EACH + 1);
    assert_eq!(said(&s, "/visits?page=hot"), (200, want), "every increment counted once");
}

#[test]
fn one_data_directory_is_one_process() {
    let data = TempDir::new("kv-shared");
    let dir = data.path().to_str().unwrap();
    let _first = hello(&["--data-dir", dir]);
    let guests = TempDir::new("kv-shared-guests");
    let out = std::process::Command::new(house_tests::house_bin())
        .args(["--port", "0", "--no-cache", "--data-dir", dir, "--guests"])
        .arg(guests.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is another house using this --data-dir?"), "{err}");
}
