//! Hot reload through the real binary, starting from an empty folder: drop,
//! replace, delete, garbage, a half-written file completed later, a rename
//! into place, two modules claiming one path, a reload of the chat guest
//! under load with no failed request and no dropped subscriber, and hot
//! reload after the process was stopped and continued.

use std::io::{BufReader, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use house_tests::fault::{self, WatHandler};
use house_tests::sse::Subscriber;
use house_tests::{Server, TempDir, example_guest, read_response, wait_until, with_custom_section};

const T: Duration = Duration::from_secs(10);

/// A module serving `path` with the body "ok", whose bytes differ by `tag`.
fn module(path: &str, tag: &str) -> Vec<u8> {
    let name = path.trim_start_matches('/').replace('-', "_");
    let manifest = format!(r#"{{"name":"{name}","path":"{path}","kind":"closing"}}"#);
    with_custom_section(&fault::module(1, &[WatHandler { name: &name, manifest, body: "(global.get $ok)" }]), tag)
}

/// A module answering `path` with `body`.
fn module_saying(path: &str, body: &str) -> Vec<u8> {
    let name = path.trim_start_matches('/').replace('-', "_");
    let manifest = format!(r#"{{"name":"{name}","path":"{path}","kind":"closing"}}"#);
    let block = fault::ok_block(body);
    let len = 16 + body.len();
    let wat_body = format!("(i64.const {})", ((len as u64) << 32) | 3072);
    // Put the block at 3072 with a data segment smuggled in through `extra`.
    let extra = format!("(data (memory 0) (i32.const 3072) \"{block}\")");
    fault::module_after(1, &[WatHandler { name: &name, manifest, body: &wat_body }], &extra)
}

fn empty_server() -> Server {
    Server::start_in(TempDir::new("reload"), &[])
}

fn body_of(s: &Server, path: &str) -> (u16, String) {
    let r = s.get(path);
    (r.status, r.body)
}

#[test]
fn drop_replace_delete() {
    let s = empty_server();
    let dir = s.guests.path().to_owned();
    assert_eq!(s.get("/mine").status, 404);
    std::fs::write(dir.join("mine.wasm"), module_saying("/mine", "v1")).unwrap();
    s.wait_for_log("house: loaded mine.wasm", T);
    wait_until(T, "v1 served", || body_of(&s, "/mine") == (200, "v1".into()));
    std::fs::write(dir.join("mine.wasm"), module_saying("/mine", "v2")).unwrap();
    s.wait_for_log("house: reloaded mine.wasm", T);
    wait_until(T, "v2 served", || body_of(&s, "/mine") == (200, "v2".into()));
    std::fs::remove_file(dir.join("mine.wasm")).unwrap();
    s.wait_for_log("house: unloaded mine.wasm", T);
    wait_until(T, "404 after delete", || s.get("/mine").status == 404);
}

#[test]
fn a_bad_file_is_refused_and_the_earlier_version_keeps_serving() {
    let s = empty_server();
    let dir = s.guests.path().to_owned();
    std::fs::write(dir.join("junk.wasm"), b"\0asm but not really").unwrap();
    s.wait_for_log("house: refused junk.wasm: not a valid wasm module", T);
    std::fs::write(dir.join("keep.wasm"), module_saying("/keep", "first")).unwrap();
    s.wait_for_log("house: loaded keep.wasm", T);
    wait_until(T, "first served", || body_of(&s, "/keep") == (200, "first".into()));
    std::fs::write(dir.join("keep.wasm"), fault::module(7, &[WatHandler::closing("keep", "(global.get $ok)")]))
        .unwrap();
    s.wait_for_log(
        "house: refused keep.wasm: speaks house ABI version 7, this host speaks 1; the earlier version keeps serving",
        T,
    );
    assert_eq!(body_of(&s, "/keep"), (200, "first".into()));
    // The log line is written once the new index serves: no waiting.
    let index: serde_json::Value = serde_json::from_str(&s.admin_get("/_house/guests").body).unwrap();
    let keep = index["guests"].as_array().unwrap().iter().find(|g| g["file"] == "keep.wasm").unwrap();
    assert_eq!(keep["loaded"], true);
    assert_eq!(keep["error"], "speaks house ABI version 7, this host speaks 1");
}

#[test]
fn a_half_written_file_is_never_loaded_half() {
    let s = empty_server();
    let dir = s.guests.path().to_owned();
    let bytes = std::fs::read(example_guest("hello")).unwrap();
    let (first, rest) = bytes.split_at(bytes.len() / 2);
    // A writer still at work: half the file, kept open.
    let mut f = std::fs::File::create(dir.join("hello.wasm")).unwrap();
    f.write_all(first).unwrap();
    f.flush().unwrap();
    // A second module loads meanwhile: proof the watcher is awake.
    std::fs::write(dir.join("other.wasm"), module("/other", "x")).unwrap();
    s.wait_for_log("house: loaded other.wasm", T);
    assert!(s.try_wait_for_log("hello.wasm", Duration::from_millis(300)).is_none(), "{}", s.log());
    assert_eq!(s.get("/hello").status, 404);
    f.write_all(rest).unwrap();
    drop(f);
    s.wait_for_log("house: loaded hello.wasm", T);
    wait_until(T, "hello served", || s.get("/hello").status == 200);
    assert_eq!(s.count_log("refused hello.wasm"), 0);

    // Half a file closed, then completed: refused, then loaded.
    std::fs::write(dir.join("late.wasm"), first).unwrap();
    s.wait_for_log("house: refused late.wasm", T);
    std::fs::write(dir.join("late.wasm"), &bytes).unwrap();
    s.wait_for_log("house: loaded late.wasm", T);
}

#[test]
fn a_rename_into_place_is_loaded() {
    let s = empty_server();
    let dir = s.guests.path().to_owned();
    std::fs::write(dir.join(".incoming.tmp"), module_saying("/moved", "moved in")).unwrap();
    std::fs::rename(dir.join(".incoming.tmp"), dir.join("moved.wasm")).unwrap();
    s.wait_for_log("house: loaded moved.wasm", T);
    wait_until(T, "served after rename", || body_of(&s, "/moved") == (200, "moved in".into()));
    std::fs::rename(dir.join("moved.wasm"), dir.join("moved.off")).unwrap();
    s.wait_for_log("house: unloaded moved.wasm", T);
    assert_eq!(s.count_log(".incoming.tmp"), 0, "dot files are ignored");
}

#[test]
fn two_modules_claiming_one_path_resolve_by_name_not_arrival() {
    let s = empty_server();
    let dir = s.guests.path().to_owned();
    // b.wasm arrives first, a.wasm second: b still wins (sorts last).
    std::fs::write(dir.join("b.wasm"), module_saying("/same", "from b")).unwrap();
    s.wait_for_log("house: loaded b.wasm", T);
    std::fs::write(dir.join("a.wasm"), module_saying("/same", "from a")).unwrap();
    s.wait_for_log("warning: /same is claimed by a.wasm (same) and b.wasm (same); b.wasm wins", T);
    wait_until(T, "a loaded", || s.log().contains("house: loaded a.wasm"));
    assert_eq!(body_of(&s, "/same"), (200, "from b".into()));
    // Another module arriving rebuilds the table; the conflict is not re-announced.
    std::fs::write(dir.join("c.wasm"), module_saying("/other", "c")).unwrap();
    s.wait_for_log("house: loaded c.wasm", T);
    wait_until(T, "c served", || body_of(&s, "/other") == (200, "c".into()));
    assert_eq!(s.count_log("warning: /same is claimed"), 1, "{}", s.log());
    std::fs::remove_file(dir.join("b.wasm")).unwrap();
    wait_until(T, "a serves once b is gone", || body_of(&s, "/same") == (200, "from a".into()));
}

#[test]
fn a_chat_reload_under_load_fails_no_request_and_drops_no_subscriber() {
    let dir = TempDir::new("chat-reload");
    let chat = std::fs::read(example_guest("chat")).unwrap();
    std::fs::write(dir.path().join("chat.wasm"), &chat).unwrap();
    let s = Arc::new(Server::start_in(dir, &["--quiet"]));
    const ROOMS: usize = 4;
    let mut subs: Vec<(usize, Subscriber)> = (0..100)
        .map(|i| {
            let mut sub = Subscriber::open(s.connect(), &format!("/source?room=r{}", i % ROOMS));
            sub.next_data().unwrap();
            (i % ROOMS, sub)
        })
        .collect();

    // 100 keep-alive senders, driven by 4 threads, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let sent: Arc<Vec<AtomicUsize>> = Arc::new((0..ROOMS).map(|_| AtomicUsize::new(0)).collect());
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (s, stop, sent) = (s.clone(), stop.clone(), sent.clone());
            thread::spawn(move || {
                let mut conns: Vec<_> = (0..25).map(|_| s.connect()).collect();
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    for (i, c) in conns.iter_mut().enumerate() {
                        let room = (t * 25 + i) % ROOMS;
                        let body = format!("room=r{room}&name=s{t}-{i}&message=message+{n}");
                        let req = format!("POST /send-message HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                        c.write_all(req.as_bytes()).unwrap();
                        let r = read_response(&mut BufReader::new(&*c), false).expect("a response");
                        assert_eq!((r.status, r.body.as_str()), (200, "sent\n"), "a request failed during reload");
                        sent[room].fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                }
            })
        })
        .collect();

    // Five reloads, each with different bytes, while the senders run.
    for round in 0..5 {
        let before = s.count_log("house: reloaded chat.wasm");
        let file = s.guests.path().join("chat.wasm");
        std::fs::write(&file, with_custom_section(&chat, &format!("round{round}"))).unwrap();
        wait_until(T, "the reload", || s.count_log("house: reloaded chat.wasm") > before);
    }
    stop.store(true, Ordering::Relaxed);
    for t in senders {
        t.join().expect("no sender saw a failure");
    }
    // A last message per room marks the end of the stream.
    for room in 0..ROOMS {
        assert_eq!(s.post_form("/send-message", &format!("room=r{room}&name=end&message=the+end")).status, 200);
    }
    let (_, _, subscriptions) = s.stats();
    assert_eq!(subscriptions, 100, "every subscriber is still subscribed");
    for (room, sub) in &mut subs {
        let mut got = 0;
        loop {
            let data = sub.next_data().expect("the subscriber is still connected");
            if data.contains(r#""name":"end""#) {
                break;
            }
            got += 1;
        }
        assert_eq!(got, sent[*room].load(Ordering::Relaxed), "room r{room}: every message arrived");
    }
}

/// A stop and a continue (SIGSTOP then SIGCONT: a debugger, a frozen
/// container) make the watcher's wait fail with EINTR, even without a
/// handler (signal(7)): hot reload goes on. (It used to end there, with
/// "hot reload stopped: Interrupted system call".)
#[test]
fn hot_reload_survives_a_stop_and_a_continue() {
    let s = empty_server();
    let dir = s.guests.path().to_owned();
    let pid = s.pid().to_string();
    let signal = |sig: &str| assert!(std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success());
    signal("-STOP");
    // Stopped for real before the continue (a SIGCONT discards a stop
    // still pending): the third field of /proc/PID/stat is `T`.
    let state = || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    wait_until(T, "the server stopped", || state().rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('T')));
    signal("-CONT");
    wait_until(T, "the server answers again", || s.get("/mine").status == 404);
    std::fs::write(dir.join("mine.wasm"), module_saying("/mine", "v1")).unwrap();
    s.wait_for_log("house: loaded mine.wasm", T);
    wait_until(T, "v1 served", || body_of(&s, "/mine") == (200, "v1".into()));
    assert!(!s.log().contains("hot reload stopped"), "{}", s.log());
}
