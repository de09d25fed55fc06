//! Scenario 11, channel history: 1,000 subscribers that reconnect at once
//! with an id 50 events back, against one live fan-out of those 50; what
//! history holds in memory against the bytes it keeps; and what keeping
//! it costs a publish.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::fanout::{Clients, read_one_response};

/// Publishes through the typed guest's `/emit` on one keep-alive connection.
pub struct Publisher(TcpStream);

impl Publisher {
    pub fn new(addr: SocketAddr) -> anyhow::Result<Publisher> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Publisher(s))
    }

    /// `times` events of `data` to `channel`, in one call.
    pub fn emit(&mut self, channel: &str, data: &str, times: usize) -> anyhow::Result<()> {
        let body = format!("channel={channel}&data={data}&times={times}");
        let req = format!(
            "POST /emit HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.0.write_all(req.as_bytes())?;
        read_one_response(&mut self.0)
    }
}

/// One round: (live fan-out of `batch` events to `n`, the same `n`
/// reconnecting with the id `batch` events back until all have caught up).
pub fn resume_round(addr: SocketAddr, n: usize, batch: usize) -> anyhow::Result<(Duration, Duration)> {
    let mut publisher = Publisher::new(addr)?;
    let mut clients = Clients::subscribe(addr, n, "/watch?ch=h", "")?;
    let started = Instant::now();
    publisher.emit("h", "an+event", batch)?;
    clients.wait_for(1 + batch, Duration::from_secs(60))?;
    let live = started.elapsed();
    let last = clients.last_id().context("the events carry no id")?;
    drop(clients);
    // Published while they are away.
    publisher.emit("h", "missed", batch)?;
    let started = Instant::now();
    let mut back = Clients::subscribe(addr, n, "/watch?ch=h", &format!("Last-Event-ID: {last}\r\n"))?;
    // A reset instead of the replay would be one event, not `batch`.
    back.wait_for(1 + batch, Duration::from_secs(60))?;
    Ok((live, started.elapsed()))
}

/// One counter of `/_house/stats`.
pub fn stat(addr: SocketAddr, name: &str) -> anyhow::Result<u64> {
    let mut c = TcpStream::connect(addr)?;
    c.write_all(b"GET /_house/stats HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    c.read_to_string(&mut text)?;
    let key = format!("\"{name}\":");
    let n = text.split(&key).nth(1).and_then(|t| t.split([',', '}']).next()).and_then(|n| n.parse().ok());
    n.with_context(|| format!("no {name} in /_house/stats"))
}

/// Waits (up to 10 s) until the host's engine is connected (`engine_up`).
pub fn engine_up(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = TcpStream::connect(addr)?;
        c.write_all(b"GET /_house/stats HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
        let mut text = String::new();
        c.read_to_string(&mut text)?;
        if text.contains("\"engine_up\":true") && text.contains("\"kv_up\":true") {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the engine of {addr} never connected");
        std::thread::sleep(Duration::from_millis(5));
    }
}
