//! WebSockets (issue 26's figures), each against SSE on the same host in
//! this run: fan-out to 10,000 sockets against 10,000 streams (22); the
//! host's memory per idle socket (23); a chat message in and out over one
//! socket against a POST and its SSE event (24).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use house_tests::sse::Subscriber;
use house_tests::ws::Ws;

use crate::report::{Report, Row};
use crate::{SEND, fanout, max, median, percentile, procfs, servers};

pub fn run(report: &mut Report, guests: &Path, cache: &Path, work: &Path) -> anyhow::Result<()> {
    fan_out(report, guests, cache, work)?;
    chat(report, guests, cache, work)
}

/// 22 and 23: the chat's `/source` as 10,000 sockets and as 10,000
/// streams, 20 publishes each, in two alternating halves, a fresh host
/// (one loop) for each run.
fn fan_out(report: &mut Report, guests: &Path, cache: &Path, work: &Path) -> anyhow::Result<()> {
    const HALF: usize = 10;
    const N: usize = 10_000;
    eprintln!("bench: fan-out to {N} WebSockets against {N} SSE streams, {} publishes each", 2 * HALF);
    let publish = format!("GET {SEND} HTTP/1.1\r\nHost: bench\r\n\r\n").replace("room=bench", "room=fan");
    let flags = ["--quiet", "--threads", "1"];
    let log = work.join("ws.log");
    let (mut sse, mut ws, mut sse_mem, mut ws_mem) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..2 {
        let house = servers::house(guests, cache, &log, &flags)?;
        let run = fanout::run(house.addr, house.pid(), N, "/source?room=fan", &publish, HALF)?;
        drop(house);
        sse.extend(run.times);
        sse_mem.push(run.bytes_per_subscriber);
        let house = servers::house(guests, cache, &log, &flags)?;
        let run = fanout::run_sockets(house.addr, house.pid(), N, "/source?room=fan", &publish, HALF)?;
        drop(house);
        ws.extend(run.times);
        ws_mem.push(run.bytes_per_subscriber);
    }
    let name = format!("22. WebSocket fan-out to {N} subscribers");
    let base = "SSE fan-out, same host";
    report.row(Row::time(&name, "publish → last receipt, median of 20", median(&ws), median(&sse), base, Some(1.0)));
    report.row(Row::time(&name, "publish → last receipt, max of 20", max(&ws), max(&sse), base, None));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let row = Row::bytes("23. memory", "host RSS per idle WebSocket subscriber", mean(&ws_mem), mean(&sse_mem), base);
    report.row(row.at_most_bytes(1024.0));
    Ok(())
}

/// 24: one client says something in a room and waits until it is answered
/// and its event is back: over one socket (a message, its reply frame and
/// its event), against a POST to `/chat/say` on a keep-alive connection and
/// the event on an SSE stream. Sequential, in four alternating blocks; the
/// host's CPU per message is read from /proc (schedstat) around each block.
fn chat(report: &mut Report, guests: &Path, cache: &Path, work: &Path) -> anyhow::Result<()> {
    const BLOCK: usize = 1_000;
    eprintln!("bench: a chat message in and out, over a WebSocket and as POST + SSE, {} each", 2 * BLOCK);
    let house = servers::house(guests, cache, &work.join("ws-chat.log"), &["--quiet", "--threads", "1"])?;
    let (mut ws_times, mut sse_times, mut ws_cpu, mut sse_cpu) = (Vec::new(), Vec::new(), 0.0, 0.0);
    // Each way in a room of its own, under a name claimed there.
    let ws_cookie = claim(house.addr, "ws")?;
    let sse_cookie = claim(house.addr, "sse")?;
    let mut socket = Ws::open(TcpStream::connect(house.addr)?, "/source?room=ws", &[("Cookie", &ws_cookie)]);
    socket.stream.set_nodelay(true)?;
    socket.next_json();
    let mut stream = Subscriber::open(TcpStream::connect(house.addr)?, "/source?room=sse");
    stream.next_raw().context("the stream's first event")?;
    let mut post = TcpStream::connect(house.addr)?;
    post.set_nodelay(true)?;
    let mut answers = BufReader::new(post.try_clone()?);
    let body = "room=sse&message=hello+there";
    let request = format!(
        "POST /chat/say HTTP/1.1\r\nHost: bench\r\nCookie: {sse_cookie}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for _ in 0..2 {
        let cpu = procfs::cpu_precise(house.pid());
        for _ in 0..BLOCK {
            let started = Instant::now();
            socket.send_text(r#"{"message":"hello there"}"#);
            let (mut replied, mut echoed) = (false, false);
            while !(replied && echoed) {
                let frame = socket.next_json();
                match frame.get("status").and_then(|s| s.as_u64()) {
                    Some(200) => replied = true,
                    Some(status) => bail!("a message was answered {status}: {frame}"),
                    None => echoed = true,
                }
            }
            ws_times.push(started.elapsed());
        }
        ws_cpu += procfs::cpu_precise(house.pid()) - cpu;
        let cpu = procfs::cpu_precise(house.pid());
        for _ in 0..BLOCK {
            let started = Instant::now();
            post.write_all(request.as_bytes())?;
            let status = crate::read_status(&mut answers)?;
            if status != 200 {
                bail!("/chat/say answered {status}");
            }
            stream.next_raw().context("the event of a POST")?;
            sse_times.push(started.elapsed());
        }
        sse_cpu += procfs::cpu_precise(house.pid()) - cpu;
    }
    let name = "24. a chat message in and out over one WebSocket";
    let base = "POST /chat/say + its SSE event";
    let per = |cpu: f64| cpu * 1e6 / (2 * BLOCK) as f64;
    report.row(Row::time(name, "latency p50", median(&ws_times), median(&sse_times), base, Some(0.7)));
    let p99 = |t: &[Duration]| percentile(t, 0.99);
    report.row(Row::time(name, "latency p99", p99(&ws_times), p99(&sse_times), base, None));
    report.row(Row::lower(name, "server CPU µs/message", per(ws_cpu), per(sse_cpu), base, Some(0.7)));
    Ok(())
}

/// Claims the name `bench` in `room`: the signed cookie to send.
fn claim(addr: std::net::SocketAddr, room: &str) -> anyhow::Result<String> {
    let mut c = TcpStream::connect(addr)?;
    let body = format!("room={room}&name=bench");
    write!(
        c,
        "POST /chat/name HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut head = String::new();
    let mut r = BufReader::new(c);
    let mut cookie = None;
    loop {
        head.clear();
        if r.read_line(&mut head)? == 0 || head == "\r\n" {
            break;
        }
        if let Some(v) = head.to_ascii_lowercase().strip_prefix("set-cookie:") {
            let at = head.len() - v.len();
            cookie = head[at..].trim().split(';').next().map(str::to_owned);
        }
    }
    cookie.context("/chat/name set no cookie")
}
