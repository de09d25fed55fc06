//! The server's configuration: where to listen, where the guests are, and
//! one setting for every limit, each with a default a small production
//! server can use. Plain data at the bottom of the crate: it imports no
//! module above it. The command line that fills it in is `args`.

mod args;

pub use args::{Command, USAGE, parse_args};

use std::net::{IpAddr, SocketAddr};
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
    /// Idle time after which a stream gets a heartbeat comment (a ping on
    /// a WebSocket).
    pub heartbeat: Duration,
    /// Bytes of one WebSocket message, fragments together (1009 beyond).
    pub ws_max_message: usize,
    /// A WebSocket that sends nothing (not even a pong to the heartbeat's
    /// ping) for this long is closed (1001): its peer is gone.
    pub ws_idle_timeout: Duration,
    /// The `Origin`s a WebSocket upgrade may come from (empty: any).
    pub ws_allowed_origins: Vec<String>,
}

/// Limits on one guest call.
#[derive(Debug, Clone)]
pub struct GuestLimits {
    /// CPU time a handler may take before it is interrupted (500).
    pub deadline: Duration,
    /// Linear memory one instance may grow to (500 beyond).
    pub memory: usize,
    /// Deadline overruns (and budget overruns) within `strike_window` that
    /// suspend a handler.
    pub strikes: u32,
    /// The window over which strikes are counted.
    pub strike_window: Duration,
    /// How long a suspended handler is answered 503 without running.
    pub quarantine: Duration,
    /// What one call may ask of the host (see `Budgets`).
    pub budgets: Budgets,
    /// Guest calls in flight at once, all loops together (503 beyond).
    /// Each holds an instance, a memory and a fiber stack of the pool.
    pub calls: usize,
    /// Instances kept between requests, reset to a fresh instance's state
    /// (`guests::warm`), all modules together, divided among the loops; 0:
    /// a new instance for every request. Each holds what a call in flight
    /// holds.
    pub warm: usize,
}

/// Per-call budgets: host work a guest causes is bounded and charged to it.
/// Going over one fails the call (500), publishes nothing and is a strike.
#[derive(Debug, Clone, Copy)]
pub struct Budgets {
    /// Events one call may publish.
    pub publish_events: usize,
    /// Framed bytes one call may publish, all events together.
    pub publish_bytes: usize,
    /// Log lines one call may write.
    pub log_lines: usize,
    /// Bytes of one log line.
    pub log_line_bytes: usize,
    /// Bytes of the argument block the host writes into the guest (413 beyond:
    /// that is the client's doing, not the guest's).
    pub args_bytes: usize,
    /// Bytes of the response block a handler returns.
    pub response_bytes: usize,
}

/// Channel history (see `engine::history`): what a reconnecting stream can
/// be replayed, and what a new one can be shown.
#[derive(Debug, Clone, Copy)]
pub struct HistoryLimits {
    /// Events kept per channel; 0 keeps none (ids are still assigned).
    pub events: usize,
    /// Bytes kept per channel (framed events; the memory engine's bound).
    pub bytes: usize,
    /// A channel with no event for this long forgets its history.
    pub idle: Duration,
    /// Bytes the memory engine keeps for all channels together; beyond,
    /// the channels idle longest are forgotten first.
    pub budget: usize,
}

/// Bounds on presence (see `engine::presence`).
#[derive(Debug, Clone, Copy)]
pub struct PresenceLimits {
    /// Members per channel; a connection beyond is subscribed, not a member.
    pub max_members: usize,
    /// Bytes of one member's info (`subscribe_as` refuses more).
    pub info_bytes: usize,
    /// At most one batch of join and leave events per channel this often.
    pub coalesce: Duration,
    /// Redis engine: a host that stops refreshing its members (it died)
    /// is out of every channel's presence after this long.
    pub ttl: Duration,
}

/// Bounds on guests' key-value data (see `engine::kv`). Over one, the
/// import returns an error code the guest can handle.
#[derive(Debug, Clone, Copy)]
pub struct KvLimits {
    /// Bytes of a key.
    pub key_bytes: usize,
    /// Bytes of a value.
    pub value_bytes: usize,
    /// Operations one call may make.
    pub ops: usize,
    /// Bytes of keys and values one module may keep.
    pub module_bytes: u64,
    /// Keys one listing may return.
    pub list_keys: usize,
    /// Times a call whose transaction is in conflict is run again before it
    /// is answered 503 (`engine::kv`).
    pub retries: u32,
}

/// The most `--tx-retries` may ask for: each re-run holds a call's place.
pub const MAX_TX_RETRIES: u32 = 100;

/// Limits on loading a module: its file, its manifest, its compilation.
#[derive(Debug, Clone)]
pub struct LoadLimits {
    /// Bytes of a `.wasm` file.
    pub module_bytes: usize,
    /// Bytes of one manifest entry (a handler's or a type's JSON).
    pub manifest_bytes: usize,
    /// Wall time one compilation may take.
    pub compile_time: Duration,
    /// Address space the compiling process may use.
    pub compile_memory: usize,
    /// Bytes the compiled-module cache may hold (oldest entries go first).
    pub cache_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: IpAddr,
    pub port: u16,
    /// `--admin-bind`: where `/_house/*` is served (None: the default, see
    /// [`Config::admin_addr`]).
    pub admin_bind: Option<AdminBind>,
    /// `/_house/*` on the public port as well (`house dev`, for one port
    /// to think about while writing a guest).
    pub admin_public: bool,
    /// `--public-openapi`: `/_house/openapi.json` on the public port too.
    pub public_openapi: bool,
    pub guests: PathBuf,
    pub cache_dir: Option<PathBuf>,
    pub debug: bool,
    pub access_log: bool,
    /// Per-request metrics and `/_house/metrics` (off: `--no-metrics`).
    pub metrics: bool,
    /// Event loops, each on its own thread with its own listener.
    pub threads: usize,
    /// Events one loop's inbox holds from the hub before it drops them.
    pub hub_queue: usize,
    /// Where channels live beyond this process.
    pub engine: Engine,
    pub history: HistoryLimits,
    pub presence: PresenceLimits,
    /// Where guests' key-value data lives.
    pub data_dir: PathBuf,
    pub kv: KvLimits,
    /// After SIGTERM, how long requests in flight and unwritten bytes may
    /// take before the process exits anyway.
    pub shutdown_grace: Duration,
    /// The reconnection delay a stream ended by shutdown suggests to its
    /// browser, spread over half to one and a half times this.
    pub retry: Duration,
    pub limits: Limits,
    pub guest: GuestLimits,
    pub load: LoadLimits,
    /// Where the keys for tokens and signed cookies are.
    pub auth: AuthConfig,
}

/// `--auth-*` and `--cookie-key-file`: paths and rules, not keys (the
/// keys are read at start by `identity::Identity::load`).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub key_file: Option<PathBuf>,
    pub public_key_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_s: u64,
    pub cookie_key_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            key_file: None,
            public_key_file: None,
            issuer: None,
            audience: None,
            leeway_s: 60,
            cookie_key_file: None,
        }
    }
}

/// The default admin port's distance from the public one.
const ADMIN_PORT_OFFSET: u16 = 5000;

impl Config {
    /// Where the admin listener binds: `--admin-bind`, else loopback on the
    /// public port + 5000 (any free one when that is 0 or past 65535), so
    /// that `/_house/*` never reaches the internet unless asked to. (+5000,
    /// not +1: hosts on one box take consecutive ports, 4242 and 4243.)
    /// None: no admin listener (`house dev` serves it on the public port).
    pub fn admin_addr(&self) -> Option<AdminBind> {
        if self.admin_public {
            return None;
        }
        let port = if self.port == 0 { 0 } else { self.port.checked_add(ADMIN_PORT_OFFSET).unwrap_or(0) };
        Some(self.admin_bind.clone().unwrap_or(AdminBind::Tcp(SocketAddr::from(([127, 0, 0, 1], port)))))
    }
}

/// Where the admin listener is: an address, or a Unix socket's path
/// (`unix:PATH`: only who may open that file may ask).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminBind {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::str::FromStr for AdminBind {
    type Err = String;

    fn from_str(s: &str) -> Result<AdminBind, String> {
        match s.strip_prefix("unix:") {
            Some("") => Err("unix: needs a path".into()),
            Some(path) => Ok(AdminBind::Unix(path.into())),
            None => s.parse().map(AdminBind::Tcp).map_err(|_| "expected ADDR:PORT or unix:PATH".into()),
        }
    }
}

impl std::fmt::Display for AdminBind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminBind::Tcp(addr) => addr.fmt(f),
            AdminBind::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 4242,
            admin_bind: None,
            admin_public: false,
            public_openapi: false,
            guests: PathBuf::from("guests"),
            cache_dir: None,
            debug: false,
            access_log: true,
            metrics: true,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS),
            hub_queue: 64 * 1024,
            engine: Engine::Memory,
            history: HistoryLimits {
                events: 100,
                bytes: 256 * 1024,
                idle: Duration::from_secs(3600),
                budget: 256 * 1024 * 1024,
            },
            presence: PresenceLimits {
                max_members: 100_000,
                info_bytes: 256,
                coalesce: Duration::from_millis(250),
                ttl: Duration::from_secs(10),
            },
            data_dir: PathBuf::from("data"),
            kv: KvLimits {
                key_bytes: 512,
                value_bytes: 64 * 1024,
                ops: 64,
                module_bytes: 64 * 1024 * 1024,
                list_keys: 1000,
                retries: 8,
            },
            shutdown_grace: Duration::from_secs(5),
            retry: Duration::from_secs(1),
            limits: Limits {
                max_head: 16 * 1024,
                max_headers: 64,
                max_body: 1024 * 1024,
                request_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
                max_connections: 16 * 1024,
                sse_buffer: 256 * 1024,
                heartbeat: Duration::from_secs(15),
                ws_max_message: 64 * 1024,
                ws_idle_timeout: Duration::from_secs(60),
                ws_allowed_origins: Vec::new(),
            },
            guest: GuestLimits {
                deadline: Duration::from_millis(50),
                memory: 16 * 1024 * 1024,
                strikes: 3,
                strike_window: Duration::from_secs(30),
                quarantine: Duration::from_secs(10),
                budgets: Budgets {
                    publish_events: 256,
                    publish_bytes: 1024 * 1024,
                    log_lines: 64,
                    log_line_bytes: 4096,
                    args_bytes: 2 * 1024 * 1024,
                    response_bytes: 8 * 1024 * 1024,
                },
                calls: 256,
                warm: 64,
            },
            load: LoadLimits {
                module_bytes: 16 * 1024 * 1024,
                manifest_bytes: 64 * 1024,
                compile_time: Duration::from_secs(10),
                compile_memory: 1024 * 1024 * 1024,
                cache_bytes: 512 * 1024 * 1024,
            },
            auth: AuthConfig::default(),
        }
    }
}

/// `--engine`: what holds the channels.
#[derive(Debug, Clone)]
pub enum Engine {
    /// In this process only: nothing to run.
    Memory,
    /// Shared by every house on one Redis (see `engine::redis`).
    Redis(RedisEngine),
}

#[derive(Debug, Clone)]
pub struct RedisEngine {
    /// As given, `redis://[[USER]:PASSWORD@]HOST:PORT[/DB]`.
    pub url: String,
    /// A reply (or a write) slower than this means the connection is dead:
    /// every Redis socket's read and write timeout.
    pub timeout: Duration,
}

impl Engine {
    fn parse(text: &str, timeout: Duration) -> anyhow::Result<Engine> {
        if text == "memory" {
            return Ok(Engine::Memory);
        }
        if !text.starts_with("redis://") {
            bail!("--engine: {text:?} is neither `memory` nor a redis://HOST:PORT[/DB] address");
        }
        // Checked here so that a typo stops the server at start, not at the
        // first reconnect (with the redis crate's own parser, as the engine
        // connects: config is plain data, and imports no engine).
        let client = redis::Client::open(text).with_context(|| format!("--engine: {text:?}"))?;
        if !matches!(client.get_connection_info().addr(), redis::ConnectionAddr::Tcp(..)) {
            bail!("--engine: {text:?}: only redis://HOST:PORT[/DB] (plain TCP) is supported");
        }
        Ok(Engine::Redis(RedisEngine { url: text.to_owned(), timeout }))
    }
}

/// The most headers `--max-headers` may allow (`http::request` keeps that
/// many on its stack while it parses).
pub const MAX_HEADERS_CAP: usize = 256;

/// `--threads` at most (and the default's bound).
pub const MAX_THREADS: usize = 256;

/// `--guest-strikes` at most: the strike window keeps this many timestamps.
pub const MAX_STRIKES: u32 = 1000;
