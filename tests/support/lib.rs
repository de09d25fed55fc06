//! Test support: start the real `house` binary on a free port with a fresh
//! guests folder, wait until it says it is listening, and talk to it over
//! real sockets. Nothing here mocks the server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub mod checker;
pub mod fault;
pub mod identity;
pub mod proxy;
pub mod redis;
pub mod sse;
pub mod ws;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The release binary of this source tree (or `$HOUSE_BIN`, taken as it is).
pub fn house_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("HOUSE_BIN") {
        return PathBuf::from(bin);
    }
    build_once();
    repo().join("target/release/house")
}

/// Brings the host binary and the example guests up to date with the
/// source, once per test process: `cargo test` alone would otherwise test
/// whatever `target/release/house` and `guests/*.wasm` an earlier build left.
/// Both builds are no-ops (well under a second) when nothing changed.
fn build_once() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let run = |what: &str, cmd: &mut Command| {
            let out = cmd.current_dir(repo()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(out.status.success(), "{what} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        };
        run("cargo build -p house", Command::new(&cargo).args(["build", "--release", "-p", "house"]));
        run("make guests", Command::new("make").arg("-s").arg("guests").env("CARGO", &cargo));
    });
}

/// A built guest of the tests' own (`target/test-guests/`, see
/// `TEST_GUEST_CRATES` in the Makefile), up to date with its source.
pub fn test_guest(name: &str) -> PathBuf {
    if std::env::var_os("HOUSE_BIN").is_none() {
        build_once();
    }
    let path = repo().join("target/test-guests").join(format!("{name}.wasm"));
    assert!(path.exists(), "{} is missing: run `make guests` first", path.display());
    path
}

/// A built example guest from `guests/`, up to date with its source.
pub fn example_guest(name: &str) -> PathBuf {
    if std::env::var_os("HOUSE_BIN").is_none() {
        build_once();
    }
    let path = repo().join("guests").join(format!("{name}.wasm"));
    assert!(path.exists(), "{} is missing: run `make guests` first", path.display());
    path
}

/// A port nobody listens on now (bound and released: a server started on it
/// right after gets it unless another process races for it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().unwrap().port()
}

/// A fresh, empty folder under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("house-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Everything the server wrote to stderr, and a way to wait for a line.
#[derive(Default)]
struct LogState {
    text: Mutex<String>,
    changed: Condvar,
}

/// A running `house`.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// Where `/_house/*` is served (`--admin-bind`; the public address
    /// under `house dev`).
    pub admin: SocketAddr,
    pub guests: TempDir,
    /// The compiled-module cache (outside the guests folder: the host
    /// refuses one inside it).
    pub cache: TempDir,
    /// Its `--data-dir` (key-value data), fresh unless the flags give one.
    pub data: TempDir,
    log: Arc<LogState>,
}

impl Server {
    /// Starts house with `guests` (example guest names) copied into a fresh
    /// folder, and extra flags.
    pub fn start(guests: &[&str], flags: &[&str]) -> Server {
        let dir = TempDir::new("guests");
        for g in guests {
            std::fs::copy(example_guest(g), dir.path().join(format!("{g}.wasm"))).expect("copy guest");
        }
        Server::start_in(dir, flags)
    }

    /// Starts house on an existing guests folder.
    pub fn start_in(guests: TempDir, flags: &[&str]) -> Server {
        Server::start_with(guests, flags, |_| {})
    }

    /// As [`Server::start_in`], running `starting(pid)` after the process
    /// is spawned and before waiting for it to listen.
    pub fn start_with(guests: TempDir, flags: &[&str], starting: impl FnOnce(u32)) -> Server {
        Server::spawn(&[], guests, flags, starting)
    }

    /// `house dev` on `crates`, serving `guests`.
    pub fn start_dev(crates: &[&Path], guests: TempDir, flags: &[&str]) -> Server {
        let mut args: Vec<&std::ffi::OsStr> = vec!["dev".as_ref()];
        args.extend(crates.iter().map(|c| c.as_os_str()));
        Server::spawn(&args, guests, flags, |_| {})
    }

    fn spawn(leading: &[&std::ffi::OsStr], guests: TempDir, flags: &[&str], starting: impl FnOnce(u32)) -> Server {
        let cache = TempDir::new("cache");
        let data = TempDir::new("data");
        let mut child = Command::new(house_bin())
            .args(leading)
            .arg("--port")
            .arg("0")
            .arg("--guests")
            .arg(guests.path())
            .arg("--cache-dir")
            .arg(cache.path())
            .arg("--data-dir")
            .arg(data.path())
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn house");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(LogState::default());
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("HOUSE_TEST_LOG").is_some() {
                    eprintln!("[house] {line}");
                }
                let mut text = sink.text.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
                sink.changed.notify_all();
            }
        });
        starting(child.id());
        let unset: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut server = Server { child, addr: unset, admin: unset, guests, cache, data, log };
        let line = server.wait_for_log("listening on http://", Duration::from_secs(30));
        let addr = line.rsplit("http://").next().unwrap().trim();
        server.addr = addr.parse().expect("listening address");
        // Said before the listening line.
        server.admin = match server.try_wait_for_log("admin on http://", Duration::ZERO) {
            Some(line) => {
                let at = line.split("http://").nth(1).and_then(|rest| rest.split('/').next()).expect("admin address");
                at.parse().expect("admin address")
            }
            None => server.addr,
        };
        server
    }

    /// Waits until a stderr line contains `needle`; returns that line.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        self.try_wait_for_log(needle, timeout)
            .unwrap_or_else(|| panic!("no log line with {needle:?} within {timeout:?}; log:\n{}", self.log()))
    }

    pub fn try_wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut text = self.log.text.lock().unwrap();
        loop {
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return Some(line.to_owned());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            text = self.log.changed.wait_timeout(text, left).unwrap().0;
        }
    }

    /// How many stderr lines contain `needle` so far.
    pub fn count_log(&self, needle: &str) -> usize {
        self.log.text.lock().unwrap().lines().filter(|l| l.contains(needle)).count()
    }

    pub fn log(&self) -> String {
        self.log.text.lock().unwrap().clone()
    }

    pub fn connect(&self) -> TcpStream {
        connect_to(self.addr)
    }

    /// One GET of the admin surface (`/_house/...`), on its own listener.
    pub fn admin_get(&self, target: &str) -> Response {
        request_on(connect_to(self.admin), "GET", target, None)
    }

    /// One request on a fresh connection; the response.
    pub fn get(&self, target: &str) -> Response {
        self.request("GET", target, None)
    }

    /// A form POST on a fresh connection.
    pub fn post_form(&self, target: &str, body: &str) -> Response {
        self.request("POST", target, Some(body))
    }

    pub fn request(&self, method: &str, target: &str, form: Option<&str>) -> Response {
        request_on(self.connect(), method, target, form)
    }

    /// One request with `headers` and a body (`Content-Length` is added),
    /// on a fresh connection; the response.
    pub fn send(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Response {
        let mut c = self.connect();
        let mut req = format!("{method} {target} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n", body.len());
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        c.write_all(req.as_bytes()).unwrap();
        read_response(&mut BufReader::new(c), false).expect("a response")
    }

    /// A JSON POST on a fresh connection.
    pub fn post_json(&self, target: &str, headers: &[(&str, &str)], json: &str) -> Response {
        let mut all = vec![("Content-Type", "application/json")];
        all.extend_from_slice(headers);
        self.send("POST", target, &all, json)
    }

    /// Sends raw bytes; returns everything read until the server closes.
    pub fn raw(&self, bytes: &[u8]) -> String {
        let mut s = self.connect();
        s.write_all(bytes).unwrap();
        read_to_close(&mut s)
    }

    /// SIGKILL: the process ends at once, mid-whatever, without a goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "house did not exit within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The loop's counters from `/_house/stats`: (connections, channels, subscriptions).
    pub fn stats(&self) -> (u64, u64, u64) {
        let v: serde_json::Value = serde_json::from_str(&self.admin_get("/_house/stats").body).expect("stats JSON");
        let n = |k: &str| v[k].as_u64().expect("a count");
        (n("connections"), n("channels"), n("subscriptions"))
    }

    /// The whole of `/_house/stats`.
    pub fn stats_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.admin_get("/_house/stats").body).expect("stats JSON")
    }

    /// One counter of `/_house/stats`.
    pub fn stat(&self, name: &str) -> u64 {
        let v: serde_json::Value = serde_json::from_str(&self.admin_get("/_house/stats").body).expect("stats JSON");
        v[name].as_u64().unwrap_or_else(|| panic!("no count {name:?} in {v}"))
    }

    /// Polls `/_house/stats` until `pred` holds (bounded by `timeout`).
    pub fn wait_for_stats(&self, timeout: Duration, pred: impl Fn((u64, u64, u64)) -> bool) -> (u64, u64, u64) {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats();
            if pred(stats) {
                return stats;
            }
            assert!(Instant::now() < deadline, "stats never matched; last {stats:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory, in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// CPU time the server has used, user and system, in clock ticks
    /// (1/100 s on Linux), from /proc.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name (which may hold spaces), from the
        // third: utime and stime are the 14th and 15th.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` until it holds; panics after `timeout`. For state that has
/// no log line or event to wait on.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `module` with a custom section appended: different bytes, same behaviour
/// (a real reload, not a no-op).
pub fn with_custom_section(module: &[u8], tag: &str) -> Vec<u8> {
    with_section(module, &format!("test{tag}"), b"")
}

/// `module` with the custom section `name` holding `data` appended.
pub fn with_section(module: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
    fn leb128(out: &mut Vec<u8>, mut n: usize) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut payload = Vec::new();
    leb128(&mut payload, name.len());
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(data);
    let mut out = module.to_vec();
    out.push(0); // custom section id
    leb128(&mut out, payload.len());
    out.extend_from_slice(&payload);
    out
}

/// Reads until EOF (or a 10 s read timeout) and returns it as text.
pub fn read_to_close(s: &mut TcpStream) -> String {
    String::from_utf8_lossy(&read_to_close_bytes(s)).into_owned()
}

/// Reads until EOF (or a 10 s read timeout), as bytes.
pub fn read_to_close_bytes(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read: {e}; got so far: {:?}", String::from_utf8_lossy(&out)),
        }
    }
    out
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Reads one response (with a Content-Length body) from `r`; `None` on EOF.
pub fn read_response(r: &mut impl BufRead, head_only: bool) -> Option<Response> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':')?;
        headers.push((n.trim().to_owned(), v.trim().to_owned()));
    }
    let len: usize =
        headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-length")).map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; if head_only { 0 } else { len }];
    r.read_exact(&mut body).ok()?;
    Some(Response { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// Percent-encodes a query or form value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Asserts with both values shown in blocks, ripgrep-style.
#[macro_export]
macro_rules! assert_eq_show {
    ($got:expr, $expected:expr) => {{
        let (got, expected) = (&$got, &$expected);
        if got != expected {
            panic!("\nexpected:\n{expected:?}\n\ngot:\n{got:?}\n");
        }
    }};
}

/// Publishes through the typed guest's `/emit` on one keep-alive connection.
pub struct Emitter(BufReader<TcpStream>);

impl Emitter {
    pub fn new(addr: std::net::SocketAddr) -> Emitter {
        Emitter(BufReader::new(TcpStream::connect(addr).expect("connect")))
    }

    /// `data` to `channel`, `times` events in one call, answered 200.
    pub fn emit_times(&mut self, channel: &str, data: &str, times: usize) {
        let r = self.try_emit_times(channel, data, times);
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "emit {data} to {channel}: {}", r.body);
    }

    /// `data` to `channel`, `times` events in one call: the answer.
    pub fn try_emit_times(&mut self, channel: &str, data: &str, times: usize) -> Response {
        let body = format!("channel={channel}&data={}&times={times}", enc(data));
        let req = format!(
            "POST /emit HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.0.get_mut().write_all(req.as_bytes()).unwrap();
        read_response(&mut self.0, false).expect("a response")
    }

    pub fn try_emit(&mut self, channel: &str, data: &str) -> Response {
        self.try_emit_times(channel, data, 1)
    }

    pub fn emit(&mut self, channel: &str, data: &str) {
        self.emit_times(channel, data, 1);
    }
}

fn connect_to(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// One request on `s` (a fresh connection, closed after); the response.
fn request_on(mut s: TcpStream, method: &str, target: &str, form: Option<&str>) -> Response {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    if let Some(body) = form {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    s.write_all(req.as_bytes()).unwrap();
    read_response(&mut BufReader::new(s), method == "HEAD").expect("a response")
}
