//! Starting the servers under test as separate processes, and telling when
//! they are ready (by the line each prints once it listens).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct Running {
    child: Child,
    pub addr: SocketAddr,
    /// Where `/_house/*` is served (house's `--admin-bind`; the baselines
    /// have none: their address).
    pub admin: SocketAddr,
    pub started: Instant,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release")
}

/// A baseline binary of this crate (`floor`, `sse-floor`): it prints
/// `listening on ADDR` on stdout.
pub fn baseline(name: &str) -> anyhow::Result<Running> {
    let mut child = Command::new(target_dir().join(name))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let started = Instant::now();
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let addr = line.trim().strip_prefix("listening on ").context("no listening line")?.parse()?;
    Ok(Running { child, addr, admin: addr, started })
}

/// Numbers the servers' data directories.
static NEXT_DATA: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `house` on a free port. Its log goes to `log` (a file, as in production
/// behind a log collector); readiness is its `listening on` line.
pub fn house(guests: &Path, cache: &Path, log: &Path, extra: &[&str]) -> anyhow::Result<Running> {
    let file = std::fs::File::create(log)?;
    let child = Command::new(target_dir().join("house"))
        .args(["--port", "0", "--heartbeat-ms", "3600000"])
        .arg("--guests")
        .arg(guests)
        .arg("--cache-dir")
        .arg(cache)
        // Each server its own key-value file (redb locks it; two servers
        // may share a log name).
        .arg("--data-dir")
        .arg(log.with_extension(format!("data{}", NEXT_DATA.fetch_add(1, std::sync::atomic::Ordering::Relaxed))))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .context("starting house")?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        // Complete lines only: the file may be read while it is written.
        if let Some(l) = text.split_inclusive('\n').find(|l| l.ends_with('\n') && l.contains("listening on http://")) {
            let addr = l.rsplit("http://").next().unwrap_or_default().trim().parse()?;
            // Said before the listening line.
            let admin = text
                .lines()
                .find_map(|l| l.split("admin on http://").nth(1))
                .and_then(|rest| rest.split('/').next())
                .context("no admin line")?
                .parse()?;
            return Ok(Running { child, addr, admin, started });
        }
        if Instant::now() > deadline {
            bail!("house did not start:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
