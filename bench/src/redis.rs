//! A redis-server for the cross-host scenario, and the baseline it is held
//! to: the bare round trip of PUBLISH on one connection to the message on a
//! subscribed one, with nothing of house in between.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(dir: &Path) -> anyhow::Result<Redis> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting redis-server (make bench installs it)")?;
    let redis = Redis { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let mut reply = [0u8; 7];
            if s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n" {
                return Ok(redis);
            }
        }
        if Instant::now() > deadline {
            bail!("redis-server never answered on {port}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `reps` times: PUBLISH a house-sized message, and the time until the
/// subscriber has read all of it.
pub fn round_trips(port: u16, reps: usize) -> anyhow::Result<Vec<Duration>> {
    let mut sub = TcpStream::connect(("127.0.0.1", port))?;
    let mut publisher = TcpStream::connect(("127.0.0.1", port))?;
    sub.set_nodelay(true)?;
    publisher.set_nodelay(true)?;
    sub.set_read_timeout(Some(Duration::from_secs(5)))?;
    publisher.set_read_timeout(Some(Duration::from_secs(5)))?;
    sub.write_all(b"SUBSCRIBE house:rtt\r\n")?;
    read_until(&mut sub, b":1\r\n")?;
    // The size of a chat message as house sends it (tag + framed event).
    let payload = "x".repeat(60);
    let publish = format!("*3\r\n$7\r\nPUBLISH\r\n$9\r\nhouse:rtt\r\n${}\r\n{payload}\r\n", payload.len());
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let started = Instant::now();
        publisher.write_all(publish.as_bytes())?;
        read_until(&mut sub, format!("{payload}\r\n").as_bytes())?;
        times.push(started.elapsed());
        read_until(&mut publisher, b":1\r\n")?;
    }
    Ok(times)
}

fn read_until(s: &mut TcpStream, end: &[u8]) -> anyhow::Result<()> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(end) {
        let n = s.read(&mut buf)?;
        if n == 0 {
            bail!("redis closed the connection");
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(())
}
