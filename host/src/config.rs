//! Command-line flags: where to listen, where the guests are, and one flag
//! for every limit, each with a default a small production server can use.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

/// Limits on what one connection may ask of the host.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes of request line + headers (431 beyond).
    pub max_head: usize,
    /// Header fields per request (431 beyond).
    pub max_headers: usize,
    /// Bytes of request body (413 beyond).
    pub max_body: usize,
    /// From a request's first byte to its last (408 beyond).
    pub request_timeout: Duration,
    /// How long a keep-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Open connections, SSE subscribers included (503 beyond).
    pub max_connections: usize,
    /// Bytes queued for one SSE subscriber that is not reading (dropped beyond).
    pub sse_buffer: usize,
    /// Idle time after which a stream gets a heartbeat comment.
    pub heartbeat: Duration,
}

/// Limits on one guest call.
#[derive(Debug, Clone)]
pub struct GuestLimits {
    /// CPU time a handler may take before it is interrupted (500).
    pub deadline: Duration,
    /// Linear memory one instance may grow to (500 beyond).
    pub memory: usize,
    /// Deadline overruns in a row that suspend a handler.
    pub strikes: u32,
    /// How long a suspended handler is answered 503 without running.
    pub quarantine: Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: IpAddr,
    pub port: u16,
    pub guests: PathBuf,
    pub cache_dir: Option<PathBuf>,
    pub debug: bool,
    pub access_log: bool,
    pub limits: Limits,
    pub guest: GuestLimits,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 4242,
            guests: PathBuf::from("guests"),
            cache_dir: None,
            debug: false,
            access_log: true,
            limits: Limits {
                max_head: 16 * 1024,
                max_headers: 64,
                max_body: 1024 * 1024,
                request_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
                max_connections: 16 * 1024,
                sse_buffer: 256 * 1024,
                heartbeat: Duration::from_secs(15),
            },
            guest: GuestLimits {
                deadline: Duration::from_millis(50),
                memory: 16 * 1024 * 1024,
                strikes: 3,
                quarantine: Duration::from_secs(10),
            },
        }
    }
}

pub const USAGE: &str = "\
house: an event-driven HTTP/1.1 server whose handlers are WebAssembly modules

USAGE:
    house [FLAGS]

FLAGS:
    --bind ADDR                 address to listen on [127.0.0.1]
    --port N                    port to listen on; 0 picks a free one [4242]
    --guests DIR                folder of .wasm guests, watched for changes [./guests]
    --cache-dir DIR             compiled-module cache [$XDG_CACHE_HOME/house or ~/.cache/house]
    --no-cache                  compile every guest from scratch
    --debug                     trace every stage of every connection to stderr
    --quiet                     no access log (one line per request otherwise)

LIMITS:
    --max-head-bytes N          request line + headers [16384]
    --max-headers N             header fields per request, at most 256 [64]
    --max-body-bytes N          request body [1048576]
    --request-timeout-ms N      time to send a whole request [10000]
    --idle-timeout-ms N         keep-alive idle time [60000]
    --max-connections N         open connections, streams included [16384]
    --sse-buffer-bytes N        queued bytes per SSE subscriber before it is dropped [262144]
    --heartbeat-ms N            idle time before a stream gets a heartbeat [15000]
    --guest-deadline-ms N       CPU time per guest call [50]
    --guest-memory-mb N         linear memory per guest instance [16]
    --guest-strikes N           deadline overruns in a row that suspend a handler [3]
    --guest-quarantine-ms N     how long a suspended handler gets 503s [10000]

    -h, --help                  print this help
";

/// What the command line asked for.
pub enum Command {
    Serve(Box<Config>),
    Help,
}

pub fn parse_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> anyhow::Result<Command> {
    use lexopt::prelude::*;

    let mut cfg = Config::default();
    let mut no_cache = false;
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next()? {
        let flag = match &arg {
            Long(name) => format!("--{name}"),
            Short(c) => format!("-{c}"),
            Value(v) => bail!("unexpected argument {:?} (see --help)", v),
        };
        let l = &mut cfg.limits;
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("bind") => cfg.bind = value(&mut parser, &flag)?,
            Long("port") => cfg.port = value(&mut parser, &flag)?,
            Long("guests") => cfg.guests = parser.value()?.into(),
            Long("cache-dir") => cfg.cache_dir = Some(parser.value()?.into()),
            Long("no-cache") => no_cache = true,
            Long("debug") => cfg.debug = true,
            Long("quiet") => cfg.access_log = false,
            Long("max-head-bytes") => l.max_head = positive(&mut parser, &flag)?,
            Long("max-headers") => {
                l.max_headers = positive(&mut parser, &flag)?;
                if l.max_headers > crate::http::request::MAX_HEADERS_CAP {
                    bail!("{flag}: at most {}", crate::http::request::MAX_HEADERS_CAP);
                }
            }
            Long("max-body-bytes") => l.max_body = value(&mut parser, &flag)?,
            Long("request-timeout-ms") => l.request_timeout = millis(&mut parser, &flag)?,
            Long("idle-timeout-ms") => l.idle_timeout = millis(&mut parser, &flag)?,
            Long("max-connections") => l.max_connections = positive(&mut parser, &flag)?,
            Long("sse-buffer-bytes") => l.sse_buffer = positive(&mut parser, &flag)?,
            Long("heartbeat-ms") => l.heartbeat = millis(&mut parser, &flag)?,
            Long("guest-deadline-ms") => cfg.guest.deadline = millis(&mut parser, &flag)?,
            Long("guest-strikes") => cfg.guest.strikes = positive(&mut parser, &flag)? as u32,
            Long("guest-quarantine-ms") => cfg.guest.quarantine = millis(&mut parser, &flag)?,
            Long("guest-memory-mb") => {
                let mb: usize = positive(&mut parser, &flag)?;
                if mb > 4096 {
                    bail!("{flag}: a wasm32 memory is at most 4096 MiB");
                }
                cfg.guest.memory = mb * 1024 * 1024;
            }
            _ => bail!("unknown flag {flag} (see --help)"),
        }
    }
    cfg.cache_dir = if no_cache { None } else { cfg.cache_dir.or_else(default_cache_dir) };
    Ok(Command::Serve(Box::new(cfg)))
}

fn value<T>(parser: &mut lexopt::Parser, flag: &str) -> anyhow::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let raw = parser.value()?;
    let text = raw.to_str().with_context(|| format!("{flag}: not valid UTF-8"))?;
    text.parse().with_context(|| format!("{flag}: invalid value {text:?}"))
}

fn positive(parser: &mut lexopt::Parser, flag: &str) -> anyhow::Result<usize> {
    let n: usize = value(parser, flag)?;
    if n == 0 {
        bail!("{flag}: must be at least 1");
    }
    Ok(n)
}

fn millis(parser: &mut lexopt::Parser, flag: &str) -> anyhow::Result<Duration> {
    Ok(Duration::from_millis(positive(parser, flag)? as u64))
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("house"))
}
