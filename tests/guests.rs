//! Guests through the real binary: every type and rule at and one past each
//! bound, named types and defaults, responses, faults answered 500 while
//! other clients carry on, modules refused at load, redefinitions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use house_tests::fault::{self, WatHandler};
use house_tests::{Server, TempDir, enc, example_guest, wait_until};

/// A valid query for `/types`, with `name` replaced by `value` (or dropped).
fn types_query(name: &str, value: Option<&str>) -> String {
    let base = [("s", "abc"), ("i", "0"), ("f", "1"), ("b", "true"), ("k", "red"), ("j", "{}"), ("ks", "a"), ("u", "")];
    let mut q: Vec<String> = base.iter().filter(|(n, _)| *n != name).map(|(n, v)| format!("{n}={}", enc(v))).collect();
    if let Some(v) = value {
        q.push(format!("{name}={}", enc(v)));
    }
    format!("/types?{}", q.join("&"))
}

fn expect(s: &Server, target: &str, status: u16, body: &str) {
    let r = s.get(target);
    assert_eq!((r.status, r.body.as_str()), (status, body), "GET {target}");
}

fn ok(s: &Server, name: &str, value: &str, echoed: &str) {
    let r = s.get(&types_query(name, Some(value)));
    assert_eq!(r.status, 200, "{name}={value:?}: {}", r.body);
    assert!(r.body.contains(echoed), "{name}={value:?}: {} lacks {echoed}", r.body);
}

fn bad(s: &Server, name: &str, value: Option<&str>, reason: &str) {
    expect(s, &types_query(name, value), 400, &format!("{reason}\n"));
}

#[test]
fn strings_count_characters_at_and_past_each_bound() {
    let s = Server::start(&["typed"], &[]);
    ok(&s, "s", "ab", r#""s":"ab""#);
    ok(&s, "s", "abcde", r#""s":"abcde""#);
    bad(&s, "s", Some("a"), "s: length 1 is below the minimum 2");
    bad(&s, "s", Some("abcdef"), "s: length 6 is above the maximum 5");
    // Multibyte: five characters are ten bytes, and still fit.
    ok(&s, "s", "éé", r#""s":"éé""#);
    ok(&s, "s", "ééééé", r#""s":"ééééé""#);
    ok(&s, "s", "🦀🦀🦀🦀🦀", r#""s":"🦀🦀🦀🦀🦀""#);
    bad(&s, "s", Some("éééééé"), "s: length 6 is above the maximum 5");
    bad(&s, "s", None, "s: missing (a required string parameter)");
    expect(&s, &format!("{}&s=xy", types_query("s", Some("ab"))), 400, "s: given 2 times, expected one value\n");
}

#[test]
fn integers_and_floats_at_and_past_each_bound() {
    let s = Server::start(&["typed"], &[]);
    ok(&s, "i", "-10", r#""i":-10"#);
    ok(&s, "i", "10", r#""i":10"#);
    bad(&s, "i", Some("-11"), "i: -11 is below the minimum -10");
    bad(&s, "i", Some("11"), "i: 11 is above the maximum 10");
    bad(&s, "i", Some("1.5"), "i: \"1.5\" is not an integer");
    bad(&s, "i", Some("ten"), "i: \"ten\" is not an integer");
    bad(&s, "i", Some("99999999999999999999"), "i: \"99999999999999999999\" is not an integer");
    ok(&s, "f", "0.5", r#""f":0.5"#);
    ok(&s, "f", "2.5", r#""f":2.5"#);
    bad(&s, "f", Some("0.49"), "f: 0.49 is below the minimum 0.5");
    bad(&s, "f", Some("2.51"), "f: 2.51 is above the maximum 2.5");
    bad(&s, "f", Some("NaN"), "f: \"NaN\" is not a finite number");
    bad(&s, "f", Some("inf"), "f: \"inf\" is not a finite number");
}

#[test]
fn booleans_keywords_json_and_untyped() {
    let s = Server::start(&["typed"], &[]);
    ok(&s, "b", "on", r#""b":true"#);
    ok(&s, "b", "No", r#""b":false"#);
    bad(&s, "b", Some("maybe"), "b: \"maybe\" is not a boolean (true/false, 1/0, on/off, yes/no)");
    ok(&s, "k", "GREEN", r#""k":"green""#);
    bad(&s, "k", Some("blue"), "k: \"blue\" is not one of \"red\", \"green\"");
    bad(&s, "k", Some("re d"), "k: \"re d\" is not a keyword (letters, digits, '-', '_', '.')");
    ok(&s, "j", r#"{"a":[1,"x"]}"#, r#""j":{"a":[1,"x"]}"#);
    bad(&s, "j", Some("{a}"), "j: not valid JSON");
    ok(&s, "u", "anything at all", r#""u":"anything at all""#);
    bad(&s, "u", None, "u: missing (a required untyped parameter)");
}

#[test]
fn lists_have_length_bounds_and_element_rules() {
    let s = Server::start(&["typed"], &[]);
    let q = types_query("ks", None);
    expect(&s, &q, 400, "ks: 0 values is below the minimum 1\n");
    let r = s.get(&format!("{q}&ks=A&ks=b&ks=c"));
    assert!(r.body.contains(r#""ks":["a","b","c"]"#), "{}", r.body);
    expect(&s, &format!("{q}&ks=a&ks=b&ks=c&ks=d"), 400, "ks: 4 values is above the maximum 3\n");
    let base = types_query("is", None);
    assert!(s.get(&base).body.contains(r#""is":[]"#));
    assert!(s.get(&format!("{base}&is=0&is=100")).body.contains(r#""is":[0,100]"#));
    expect(&s, &format!("{base}&is=101"), 400, "is: 101 is above the maximum 100\n");
    expect(&s, &format!("{base}&is=-1"), 400, "is: -1 is below the minimum 0\n");
    expect(&s, &format!("{base}&is=1&is=2&is=3"), 400, "is: 3 values is above the maximum 2\n");
    expect(&s, &format!("{base}&is=x"), 400, "is: \"x\" is not an integer\n");
}

#[test]
fn named_types_and_defaults() {
    let s = Server::start(&["typed"], &[]);
    expect(&s, "/named?room=lobby", 200, "lobby:3");
    expect(&s, "/named?room=lobby&level=5", 200, "lobby:5");
    expect(&s, "/named?room=lobby&level=6", 400, "level: 6 is above the maximum 5\n");
    expect(&s, "/named?room=&level=1", 400, "room: length 0 is below the minimum 1\n");
    expect(&s, &format!("/named?room={}", "r".repeat(17)), 400, "room: length 17 is above the maximum 16\n");
    expect(&s, "/named", 400, "room: missing (a required Room parameter)\n");
    let r = s.get("/defaults");
    assert_eq!(r.body, r#"{"s":"hi","n":-2,"b":false,"tags":["a","b"],"x-y":7}"#);
    let r = s.get("/defaults?x-y=9&tags=z&b=1");
    assert_eq!(r.body, r#"{"s":"hi","n":-2,"b":true,"tags":["z"],"x-y":9}"#);
    let index: serde_json::Value = serde_json::from_str(&s.admin_get("/_house/guests").body).unwrap();
    let typed = &index["guests"][0];
    assert_eq!(typed["file"], "typed.wasm");
    let types: Vec<&str> = typed["types"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(types, ["Level", "Room", "Say"], "Say: the body of /watch's messages");
    // Readable by a person: a named type's rules, typed defaults, the
    // content type a stream really has, the load time as a date.
    assert_eq!(typed["types"][0]["rules"], serde_json::json!({"range": {"min": 1, "max": 5}}));
    let handler =
        |name: &str| typed["handlers"].as_array().unwrap().iter().find(|h| h["name"] == name).unwrap().clone();
    let defaults = handler("defaults");
    let default = |i: usize| defaults["params"][i]["default"].clone();
    assert_eq!(
        [default(0), default(1), default(2), default(3)],
        [serde_json::json!("hi"), (-2).into(), false.into(), serde_json::json!(["a", "b"])]
    );
    assert_eq!(defaults["params"][0]["required"], false);
    assert_eq!(handler("watch")["content_type"], "text/event-stream; charset=utf-8");
    assert!(typed["loaded_at"].as_str().is_some_and(|d| d.ends_with(" GMT")), "{}", typed["loaded_at"]);
}

#[test]
fn guest_responses_statuses_headers_and_errors() {
    let s = Server::start(&["typed"], &[]);
    let r = s.request("PUT", "/status?code=418", None);
    assert_eq!((r.status, r.body.as_str(), r.header("x-guest")), (418, "status 418", Some("typed")));
    let r = s.request("DELETE", "/status?code=200", None);
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD, PUT")));
    expect(&s, "/fail", 500, "this handler always fails\n");
    expect(&s, "/misuse", 200, "refused: only a stream handler can subscribe");
    s.wait_for_log("guest typed.wasm: fail: handler error: this handler always fails", Duration::from_secs(5));
}

/// A guest whose handler would loop forever: a request that fails
/// validation is answered at once, so no instance ran.
#[test]
fn a_rejected_request_instantiates_nothing() {
    let dir = TempDir::new("reject");
    let spin = WatHandler {
        name: "spin",
        manifest:
            r#"{"name":"spin","kind":"closing","params":[{"name":"n","type":"integer","rules":{"range":{"max":3}}}]}"#
                .into(),
        body: "(loop (br 0)) (global.get $ok)",
    };
    std::fs::write(dir.path().join("spin.wasm"), fault::module(1, &[spin])).unwrap();
    let s = Server::start_in(dir, &["--guest-deadline-ms", "1000"]);
    // A call runs to its 1 s deadline; a rejection that ran one would too.
    // Compared with each other, not with a fixed figure, so that a loaded
    // machine slows both alike.
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let started = Instant::now();
        expect(&s, "/spin?n=4", 400, "n: 4 is above the maximum 3\n");
        slowest = slowest.max(started.elapsed());
    }
    let started = Instant::now();
    assert_eq!(s.get("/spin?n=1").status, 500);
    let call = started.elapsed();
    assert!(call >= Duration::from_millis(900), "the valid request ran the guest: {call:?}");
    assert!(slowest * 4 < call, "the slowest rejection took {slowest:?}, a call {call:?}");
}

#[test]
fn faults_are_500_for_that_request_only() {
    let dir = TempDir::new("faults");
    std::fs::copy(example_guest("hello"), dir.path().join("hello.wasm")).unwrap();
    let handlers = [
        WatHandler::closing("spin", "(loop (br 0)) (global.get $ok)"),
        WatHandler::closing("crash", "unreachable"),
        WatHandler::closing("hog", "(loop (drop (memory.grow (i32.const 16))) (br 0)) (global.get $ok)"),
        WatHandler::closing("wild", "i64.const 0x0000001000ffff00"),
        WatHandler::closing("short", "i64.const 0x0000000300000400"),
        // A block whose content type is not UTF-8.
        WatHandler::closing(
            "mangled",
            "(i64.store (i32.const 2048) (i64.const 0)) (i32.store (i32.const 2052) (i32.const 1)) (i32.store (i32.const 2056) (i32.const 0xff)) (i64.const 0x0000000d00000800)",
        ),
    ];
    std::fs::write(dir.path().join("faulty.wasm"), fault::module(1, &handlers)).unwrap();
    let s = Arc::new(Server::start_in(dir, &["--guest-deadline-ms", "100", "--guest-memory-mb", "4"]));

    // A normal client keeps going the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let normal = {
        let (s, stop, served) = (s.clone(), stop.clone(), served.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let r = s.get("/hello?name=ok");
                assert_eq!((r.status, r.body.as_str()), (200, "Hello, ok!\n"));
                served.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    wait_until(Duration::from_secs(10), "the normal client's first 200", || served.load(Ordering::Relaxed) >= 1);
    let before_faults = served.load(Ordering::Relaxed);
    for name in ["spin", "crash", "hog", "wild", "short", "mangled"] {
        for _ in 0..3 {
            let r = s.get(&format!("/{name}"));
            assert_eq!((r.status, r.body.as_str()), (500, format!("handler {name} failed\n").as_str()), "/{name}");
        }
        s.wait_for_log(&format!("guest faulty.wasm: {name}: "), Duration::from_secs(5));
    }
    s.wait_for_log("spin: exceeded its CPU deadline of 100 ms", Duration::from_secs(1));
    // 1 page, then 16 more at a time: 65 pages is the first over 4 MiB.
    s.wait_for_log(
        "hog: its memory would grow to 4160 KiB, over --guest-memory-mb 4 (4096 KiB)",
        Duration::from_secs(1),
    );
    // Three overruns within the window suspend the handler: it no longer
    // holds the loop.
    s.wait_for_log(
        "spin: exceeded its CPU deadline of 100 ms; 3 strikes within 30 s: suspended for 10 s",
        Duration::from_secs(1),
    );
    let started = Instant::now();
    let r = s.get("/spin");
    let took = started.elapsed();
    assert_eq!(r.status, 503);
    assert!(
        r.body.starts_with("handler spin is suspended for ")
            && r.body.ends_with(" s: it kept overrunning its CPU deadline or budgets\n"),
        "{}",
        r.body
    );
    // Running would take the whole 100 ms deadline.
    assert!(took < Duration::from_millis(100), "a suspended handler is answered without running: {took:?}");
    s.wait_for_log("mangled: bad response: content type is not UTF-8", Duration::from_secs(1));
    let after_faults = served.load(Ordering::Relaxed);
    assert!(after_faults > before_faults, "the normal client was served while the faults ran");
    wait_until(Duration::from_secs(10), "the normal client carrying on", || {
        served.load(Ordering::Relaxed) >= after_faults + 5
    });
    stop.store(true, Ordering::Relaxed);
    normal.join().expect("the normal client never failed");
}

#[test]
fn bad_modules_are_refused_at_load_with_a_reason() {
    let dir = TempDir::new("refused");
    let p = dir.path();
    std::fs::copy(example_guest("hello"), p.join("hello.wasm")).unwrap();
    std::fs::write(p.join("garbage.wasm"), b"this is not wasm").unwrap();
    std::fs::write(p.join("future.wasm"), fault::module(2, &[WatHandler::closing("f", "(global.get $ok)")])).unwrap();
    let malformed =
        WatHandler { name: "m", manifest: r#"{"name":"m","kind":"sometimes"}"#.into(), body: "(global.get $ok)" };
    std::fs::write(p.join("malformed.wasm"), fault::module(1, &[malformed])).unwrap();
    let bad_rule = WatHandler {
        name: "r",
        manifest: r#"{"name":"r","kind":"closing","params":[{"name":"x","type":"float","rules":{"chars":{"max":2}}}]}"#
            .into(),
        body: "(global.get $ok)",
    };
    std::fs::write(p.join("badrule.wasm"), fault::module(1, &[bad_rule])).unwrap();
    let wasi = fault::module_with(
        1,
        &[WatHandler::closing("w", "(global.get $ok)")],
        r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
    );
    std::fs::write(p.join("wasi.wasm"), wasi).unwrap();
    std::fs::write(p.join("empty.wasm"), fault::module(1, &[])).unwrap();
    let s = Server::start_in(dir, &[]);
    let log = s.log();
    for (file, reason) in [
        ("garbage.wasm", "not a valid wasm module"),
        ("future.wasm", "speaks house ABI version 2, this host speaks 1"),
        ("malformed.wasm", "handler m: malformed manifest: unknown variant `sometimes`"),
        ("badrule.wasm", "handler r: x: rule chars does not apply to float"),
        ("wasi.wasm", "imports wasi_snapshot_preview1.fd_write, but a guest may import only house."),
        ("empty.wasm", "exports no handlers"),
    ] {
        assert!(log.contains(&format!("house: refused {file}: {reason}")), "{file}: {reason}\nlog:\n{log}");
    }
    assert_eq!(s.get("/hello").status, 200, "the good module serves");
    let index: serde_json::Value = serde_json::from_str(&s.admin_get("/_house/guests").body).unwrap();
    let garbage = index["guests"].as_array().unwrap().iter().find(|g| g["file"] == "garbage.wasm").unwrap();
    assert_eq!(garbage["loaded"], false);
    assert!(garbage["error"].as_str().unwrap().starts_with("not a valid wasm module"));
}

#[test]
fn two_modules_claiming_one_path_warn_and_the_last_name_wins() {
    let dir = TempDir::new("redefine");
    std::fs::copy(example_guest("hello"), dir.path().join("hello.wasm")).unwrap();
    let mine = WatHandler {
        name: "mine",
        manifest: r#"{"name":"mine","path":"/hello","kind":"closing"}"#.into(),
        body: "(global.get $ok)",
    };
    std::fs::write(dir.path().join("zz-override.wasm"), fault::module(1, &[mine])).unwrap();
    let s = Server::start_in(dir, &[]);
    s.wait_for_log(
        "warning: /hello is claimed by hello.wasm (hello) and zz-override.wasm (mine); zz-override.wasm wins",
        Duration::from_secs(5),
    );
    expect(&s, "/hello", 200, "ok");
    expect(&s, "/count?from=1&to=2", 200, r#"{"from":1,"to":2,"total":3}"#);
}
