//! The command line: `house [FLAGS]`, `house check`, `house dev`, `house
//! new`, parsed into a [`Config`] (lexopt, one flag at a time), with the
//! usage text and a near-miss suggestion for a mistyped flag.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use super::{Config, Engine, MAX_HEADERS_CAP, MAX_STRIKES, MAX_THREADS, MAX_TX_RETRIES};

/// `--guest-calls` at most: each call in flight reserves address space for
/// a memory and a stack in the instance pool.
const MAX_CALLS: usize = 4096;

pub const USAGE: &str = "\
house: an event-driven HTTP/1.1 server whose handlers are WebAssembly modules

USAGE:
    house [FLAGS]                      serve the guests folder
    house check [FLAGS] FILE.wasm...   load each module as the server would, offline: print its
                                       routes, inputs and rules, or why it is refused (exit 1)
    house new NAME [--sdk DIR]         make a guest crate NAME to start from (builds anywhere), against the
                                       SDK at DIR [the guest-sdk beside this binary]
    house dev [FLAGS] CRATE_DIR...     serve, and rebuild each guest crate when its sources change:
                                       the new .wasm goes into --guests, build errors to stderr;
                                       /_house/* on the same port unless --admin-bind is given

FLAGS:
    --bind ADDR                 address to listen on [127.0.0.1]
    --port N                    port to listen on; 0 picks a free one [4242]
    --admin-bind ADDR:PORT|unix:PATH
                                where /_house/guests, stats, metrics and openapi.json are served (a Unix
                                socket is made 0600); the public port answers them 404 [127.0.0.1, port
                                --port + 5000]
    --public-openapi            serve /_house/openapi.json on the public port too
    --threads N                 event loops, one thread and listener each [the CPUs available]
    --hub-queue-events N        events waiting for one loop before they are dropped [65536]
    --engine memory|redis://HOST:PORT[/DB]
                                where channels live: this process only, or every house on one Redis [memory]
    --engine-timeout-ms N       a Redis reply slower than this ends its connection: 503 for the call, a reset for
                                a stream that opens meanwhile [2000]
    --history-events N          events of each channel kept to replay to a stream that reconnects; 0: none [100]
    --history-bytes N           bytes of each channel's history (memory engine) [262144]
    --history-idle-ms N         a channel with no event for this long forgets its history [3600000]
    --history-budget-mb N       history of all channels together, memory engine; idlest go first [256]
    --presence-max-members N    members of one channel (a connection beyond is subscribed, not listed) [100000]
    --presence-info-bytes N     bytes of a member's info (subscribe_as) [256]
    --presence-coalesce-ms N    at most one batch of join/leave events per channel this often [250]
    --presence-ttl-ms N         Redis engine: a host that stops refreshing (it died) leaves presence
                                within this [10000]
    --data-dir DIR              where guests' key-value data is kept (kv.redb; on Redis with --engine redis://) [./data]
    --kv-key-bytes N            bytes of a key [512]
    --kv-value-bytes N          bytes of a value [65536]
    --kv-ops N                  key-value operations one call may make [64]
    --kv-module-mb N            key-value bytes one module may keep [64]
    --kv-list-keys N            keys one listing may return [1000]
    --tx-retries N              times a call whose reads changed before its commit is run again, then 503 [8]
    --shutdown-grace-ms N       after SIGTERM, time for requests in flight and unsent bytes [5000]
    --retry-ms N                reconnection delay suggested to streams ended by shutdown, +-50% [1000]
    --guests DIR                folder of .wasm guests, watched for changes [./guests]
    --cache-dir DIR             compiled-module cache [$XDG_CACHE_HOME/house or ~/.cache/house]
    --no-cache                  compile every guest from scratch
    --debug                     trace every stage of every connection to stderr
    --quiet                     no access log (one line per request otherwise)
    --log-level warn|info|debug warnings and errors; and the access log; and --debug's trace [info]
    --no-metrics                no per-request metrics, no /_house/metrics

IDENTITY (keys are read from files, one per line: [KID] BASE64; # starts a comment):
    --auth-key-file FILE        HS256 secrets (32 bytes or more) that #[token] inputs verify with
    --auth-public-key-file FILE Ed25519 public keys (32 bytes) that EdDSA tokens verify with
    --auth-issuer S             the iss a token must carry
    --auth-audience S           an aud a token must carry
    --auth-leeway-s N           clock skew allowed for exp, nbf and iat [60]
    --cookie-key-file FILE      keys signing cookies (the first signs, all verify); without it a key
                                made at start, so signed cookies end with the process

LIMITS:
    --max-head-bytes N          request line + headers [16384]
    --max-headers N             header fields per request, at most 256 [64]
    --max-body-bytes N          request body [1048576]
    --request-timeout-ms N      time to send a whole request [10000]
    --idle-timeout-ms N         keep-alive idle time [60000]
    --max-connections N         open connections, streams included [16384]
    --sse-buffer-bytes N        queued bytes per SSE subscriber before it is dropped [262144]
    --heartbeat-ms N            idle time before a stream gets a heartbeat (a ping on a WebSocket) [15000]
    --ws-max-message-bytes N    bytes of one WebSocket message, fragments together (close 1009 beyond) [65536]
    --ws-idle-timeout-ms N      a WebSocket silent this long (no message, no pong) is closed [60000]
    --ws-allowed-origins LIST   comma-separated Origins a WebSocket upgrade may come from, e.g.
                                https://chat.example (403 otherwise); unset: any
    --guest-deadline-ms N       CPU time per guest call [50]
    --guest-memory-mb N         linear memory per guest instance [16]
    --guest-strikes N           overruns within the strike window that suspend a handler [3]
    --guest-strike-window-ms N  the window strikes are counted over [30000]
    --guest-quarantine-ms N     how long a suspended handler gets 503s [10000]
    --guest-calls N             guest calls in flight at once, at most 4096 (503 beyond) [256]
    --guest-warm-instances N    instances kept between requests, reset to a fresh one's state, divided
                                among the loops; 0: instantiate for every request; at most 4096 [64]

PER-CALL BUDGETS (over one: the call is a 500, publishes nothing, and is a strike):
    --guest-publish-events N    events one call may publish [256]
    --guest-publish-bytes N     framed bytes one call may publish [1048576]
    --guest-log-lines N         log lines one call may write [64]
    --guest-log-line-bytes N    bytes of one log line [4096]
    --guest-response-bytes N    bytes of a handler's response block [8388608]
    --guest-args-bytes N        bytes of the argument block (413 beyond) [2097152]

LOADING:
    --max-module-bytes N        size of a .wasm file [16777216]
    --max-manifest-bytes N      size of one manifest entry [65536]
    --compile-timeout-ms N      time one module may take to compile [10000]
    --compile-memory-mb N       address space of the compiler process [1024]
    --cache-max-mb N            size of the compiled-module cache [512]

    -h, --help                  print this help
    -V, --version               print the version

EXIT STATUS:
    0 stopped by SIGINT or SIGTERM (after --shutdown-grace-ms at most), or a command succeeded;
    1 a bad flag, a port in use, or another error at start (one line on stderr says which);
      house check: a module was refused

SIGNALS:
    SIGINT, SIGTERM   stop accepting, let requests in flight finish, end streams with a retry hint

ENVIRONMENT:
    XDG_CACHE_HOME, HOME   where the compiled-module cache goes by default
";

/// What the command line asked for.
pub enum Command {
    Serve(Box<Config>),
    /// `house check [FLAGS] FILE.wasm...`: load each as the server would.
    Check(Box<Config>, Vec<PathBuf>),
    /// `house dev [FLAGS] CRATE_DIR...`: serve, rebuilding the crates.
    Dev(Box<Config>, Vec<PathBuf>),
    /// `house new NAME [--sdk DIR]`: a guest crate to start from, against
    /// the SDK at DIR (default: the one beside this binary).
    New(PathBuf, Option<PathBuf>),
    Help,
    Version,
}

pub fn parse_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> anyhow::Result<Command> {
    use lexopt::prelude::*;

    let mut cfg = Config::default();
    let mut no_cache = false;
    let mut engine = String::from("memory");
    let mut engine_timeout = Duration::from_secs(2);
    let mut parser = lexopt::Parser::from_args(args);
    // A subcommand, first or not at all.
    let mut command = None;
    let mut files = Vec::new();
    let mut first = true;
    while let Some(arg) = parser.next()? {
        let at_start = std::mem::replace(&mut first, false);
        let flag = match &arg {
            Long(name) => format!("--{name}"),
            Short(c) => format!("-{c}"),
            Value(v) => match (command, v.to_str()) {
                (None, Some("check")) if at_start => {
                    command = Some("check");
                    continue;
                }
                (None, Some("dev")) if at_start => {
                    command = Some("dev");
                    continue;
                }
                (None, Some("new")) if at_start => {
                    let name = parser.value().context("house new NAME: the crate's name or path")?;
                    let mut sdk = None;
                    while let Some(extra) = parser.next()? {
                        match extra {
                            Long("sdk") => sdk = Some(PathBuf::from(parser.value().context("--sdk DIR")?)),
                            other => bail!("house new NAME takes only --sdk DIR, not {other:?}"),
                        }
                    }
                    return Ok(Command::New(name.into(), sdk));
                }
                (Some(_), _) => {
                    files.push(PathBuf::from(v));
                    continue;
                }
                _ => bail!("unexpected argument {:?} (see --help)", v),
            },
        };
        let l = &mut cfg.limits;
        let b = &mut cfg.guest.budgets;
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Long("bind") => cfg.bind = value(&mut parser, &flag)?,
            Long("port") => cfg.port = value(&mut parser, &flag)?,
            Long("admin-bind") => {
                let text: String = value(&mut parser, &flag)?;
                let bind = text.parse().map_err(|e| anyhow::anyhow!("{flag}: invalid value {text:?}: {e}"))?;
                cfg.admin_bind = Some(bind);
            }
            Long("public-openapi") => cfg.public_openapi = true,
            Long("auth-key-file") => cfg.auth.key_file = Some(parser.value()?.into()),
            Long("auth-public-key-file") => cfg.auth.public_key_file = Some(parser.value()?.into()),
            Long("auth-issuer") => cfg.auth.issuer = Some(value(&mut parser, &flag)?),
            Long("auth-audience") => cfg.auth.audience = Some(value(&mut parser, &flag)?),
            Long("auth-leeway-s") => cfg.auth.leeway_s = value(&mut parser, &flag)?,
            Long("cookie-key-file") => cfg.auth.cookie_key_file = Some(parser.value()?.into()),
            Long("threads") => {
                cfg.threads = positive(&mut parser, &flag)?;
                if cfg.threads > MAX_THREADS {
                    bail!("{flag}: at most {MAX_THREADS}");
                }
            }
            Long("hub-queue-events") => cfg.hub_queue = positive(&mut parser, &flag)?,
            Long("engine") => engine = value(&mut parser, &flag)?,
            Long("engine-timeout-ms") => engine_timeout = millis(&mut parser, &flag)?,
            Long("history-events") => cfg.history.events = value(&mut parser, &flag)?,
            Long("history-bytes") => cfg.history.bytes = positive(&mut parser, &flag)?,
            Long("history-idle-ms") => cfg.history.idle = millis(&mut parser, &flag)?,
            Long("history-budget-mb") => cfg.history.budget = positive(&mut parser, &flag)? * 1024 * 1024,
            Long("data-dir") => cfg.data_dir = parser.value()?.into(),
            Long("kv-key-bytes") => cfg.kv.key_bytes = positive(&mut parser, &flag)?,
            Long("kv-value-bytes") => cfg.kv.value_bytes = positive(&mut parser, &flag)?,
            Long("kv-ops") => cfg.kv.ops = positive(&mut parser, &flag)?,
            Long("kv-module-mb") => cfg.kv.module_bytes = positive(&mut parser, &flag)? as u64 * 1024 * 1024,
            Long("kv-list-keys") => cfg.kv.list_keys = positive(&mut parser, &flag)?,
            Long("tx-retries") => {
                cfg.kv.retries = value(&mut parser, &flag)?;
                if cfg.kv.retries > MAX_TX_RETRIES {
                    bail!("{flag}: at most {MAX_TX_RETRIES}");
                }
            }
            Long("shutdown-grace-ms") => cfg.shutdown_grace = millis(&mut parser, &flag)?,
            Long("retry-ms") => cfg.retry = millis(&mut parser, &flag)?,
            Long("guests") => cfg.guests = parser.value()?.into(),
            Long("cache-dir") => cfg.cache_dir = Some(parser.value()?.into()),
            Long("no-cache") => no_cache = true,
            Long("debug") => cfg.debug = true,
            Long("quiet") => cfg.access_log = false,
            // One flag for both, by level: warnings and errors only; and
            // the access log; and every stage of every connection.
            Long("log-level") => match value::<String>(&mut parser, &flag)?.as_str() {
                "warn" => (cfg.access_log, cfg.debug) = (false, false),
                "info" => (cfg.access_log, cfg.debug) = (true, false),
                "debug" => (cfg.access_log, cfg.debug) = (true, true),
                other => bail!("{flag}: {other:?} is not warn, info or debug"),
            },
            Long("no-metrics") => cfg.metrics = false,
            Long("max-head-bytes") => l.max_head = positive(&mut parser, &flag)?,
            Long("max-headers") => {
                l.max_headers = positive(&mut parser, &flag)?;
                if l.max_headers > MAX_HEADERS_CAP {
                    bail!("{flag}: at most {}", MAX_HEADERS_CAP);
                }
            }
            Long("max-body-bytes") => l.max_body = value(&mut parser, &flag)?,
            Long("request-timeout-ms") => l.request_timeout = millis(&mut parser, &flag)?,
            Long("idle-timeout-ms") => l.idle_timeout = millis(&mut parser, &flag)?,
            Long("max-connections") => l.max_connections = positive(&mut parser, &flag)?,
            Long("sse-buffer-bytes") => l.sse_buffer = positive(&mut parser, &flag)?,
            Long("heartbeat-ms") => l.heartbeat = millis(&mut parser, &flag)?,
            Long("presence-max-members") => cfg.presence.max_members = positive(&mut parser, &flag)?,
            Long("presence-info-bytes") => cfg.presence.info_bytes = positive(&mut parser, &flag)?,
            Long("presence-coalesce-ms") => cfg.presence.coalesce = millis(&mut parser, &flag)?,
            Long("presence-ttl-ms") => {
                cfg.presence.ttl = millis(&mut parser, &flag)?;
                if cfg.presence.ttl < Duration::from_millis(100) {
                    bail!("{flag}: at least 100");
                }
            }
            Long("ws-max-message-bytes") => l.ws_max_message = positive(&mut parser, &flag)?,
            Long("ws-idle-timeout-ms") => l.ws_idle_timeout = millis(&mut parser, &flag)?,
            Long("ws-allowed-origins") => {
                let list: String = value(&mut parser, &flag)?;
                l.ws_allowed_origins = list.split(',').map(|o| o.trim().to_owned()).filter(|o| !o.is_empty()).collect();
            }
            Long("guest-deadline-ms") => cfg.guest.deadline = millis(&mut parser, &flag)?,
            Long("guest-strikes") => {
                cfg.guest.strikes = value(&mut parser, &flag)?;
                if !(1..=MAX_STRIKES).contains(&cfg.guest.strikes) {
                    bail!("{flag}: must be between 1 and {MAX_STRIKES}");
                }
            }
            Long("guest-strike-window-ms") => cfg.guest.strike_window = millis(&mut parser, &flag)?,
            Long("guest-quarantine-ms") => cfg.guest.quarantine = millis(&mut parser, &flag)?,
            Long("guest-calls") => {
                cfg.guest.calls = positive(&mut parser, &flag)?;
                if cfg.guest.calls > MAX_CALLS {
                    bail!("{flag}: at most {MAX_CALLS}");
                }
            }
            Long("guest-warm-instances") => {
                cfg.guest.warm = value(&mut parser, &flag)?;
                if cfg.guest.warm > MAX_CALLS {
                    bail!("{flag}: at most {MAX_CALLS}");
                }
            }
            Long("guest-publish-events") => b.publish_events = positive(&mut parser, &flag)?,
            Long("guest-publish-bytes") => b.publish_bytes = positive(&mut parser, &flag)?,
            Long("guest-log-lines") => b.log_lines = value(&mut parser, &flag)?,
            Long("guest-log-line-bytes") => b.log_line_bytes = positive(&mut parser, &flag)?,
            Long("guest-response-bytes") => b.response_bytes = positive(&mut parser, &flag)?,
            Long("guest-args-bytes") => b.args_bytes = positive(&mut parser, &flag)?,
            Long("max-module-bytes") => cfg.load.module_bytes = positive(&mut parser, &flag)?,
            Long("max-manifest-bytes") => cfg.load.manifest_bytes = positive(&mut parser, &flag)?,
            Long("compile-timeout-ms") => cfg.load.compile_time = millis(&mut parser, &flag)?,
            Long("compile-memory-mb") => cfg.load.compile_memory = positive(&mut parser, &flag)? * 1024 * 1024,
            Long("cache-max-mb") => cfg.load.cache_bytes = positive(&mut parser, &flag)? as u64 * 1024 * 1024,
            Long("guest-memory-mb") => {
                let mb: usize = positive(&mut parser, &flag)?;
                if mb > 4096 {
                    bail!("{flag}: a wasm32 memory is at most 4096 MiB");
                }
                cfg.guest.memory = mb * 1024 * 1024;
            }
            _ => match did_you_mean(&flag) {
                Some(near) => bail!("unknown flag {flag}: did you mean {near}? (see --help)"),
                None => bail!("unknown flag {flag} (see --help)"),
            },
        }
    }
    cfg.engine = Engine::parse(&engine, engine_timeout)?;
    cfg.cache_dir = if no_cache { None } else { cfg.cache_dir.or_else(default_cache_dir) };
    match command {
        Some("check") if files.is_empty() => bail!("house check FILE.wasm...: which files?"),
        Some("check") => Ok(Command::Check(Box::new(cfg), files)),
        Some(_) if files.is_empty() => bail!("house dev CRATE_DIR...: which guest crates?"),
        Some(_) => {
            // One port while writing a guest, unless asked otherwise.
            cfg.admin_public = cfg.admin_bind.is_none();
            Ok(Command::Dev(Box::new(cfg), files))
        }
        None => Ok(Command::Serve(Box::new(cfg))),
    }
}

/// The flag of `USAGE` closest to a mistyped one, if one is close: at most
/// a third of its letters apart (Levenshtein).
fn did_you_mean(flag: &str) -> Option<&'static str> {
    let known =
        USAGE.split_whitespace().filter(|w| w.starts_with("--") && w.len() > 2).map(|w| w.trim_end_matches(','));
    let (distance, near) = known.map(|k| (edit_distance(flag, k), k)).min()?;
    (distance <= flag.len() / 3).then_some(near)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb)).min(row[j] + 1).min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
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

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
