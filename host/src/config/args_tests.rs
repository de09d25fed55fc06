//! The command line's tests (beside it: args.rs is long enough).
use super::*;

fn parse(args: &[&str]) -> anyhow::Result<Config> {
    match parse_args(args.iter().map(std::ffi::OsString::from))? {
        Command::Serve(cfg) => Ok(*cfg),
        _ => anyhow::bail!("not serve"),
    }
}

#[test]
fn log_levels() {
    let warn = parse(&["--log-level", "warn"]).unwrap();
    assert_eq!((warn.access_log, warn.debug), (false, false));
    let debug = parse(&["--log-level", "debug"]).unwrap();
    assert_eq!((debug.access_log, debug.debug), (true, true));
    assert_eq!(error(&["--log-level", "loud"]), "--log-level: \"loud\" is not warn, info or debug");
}

#[test]
fn subcommands_and_near_misses() {
    let command = |args: &[&str]| parse_args(args.iter().map(std::ffi::OsString::from));
    let Ok(Command::Check(cfg, files)) = command(&["check", "--guest-memory-mb", "32", "a.wasm", "b.wasm"]) else {
        panic!("check")
    };
    assert_eq!((cfg.guest.memory, files.len()), (32 << 20, 2));
    assert!(matches!(command(&["new", "x"]), Ok(Command::New(p, None)) if p == std::path::Path::new("x")));
    assert!(
        matches!(command(&["new", "x", "--sdk", "s"]), Ok(Command::New(_, Some(s))) if s == std::path::Path::new("s"))
    );
    assert!(matches!(command(&["-V"]), Ok(Command::Version)));
    assert_eq!(
        error(&["--max-bodybytes", "1"]),
        "unknown flag --max-bodybytes: did you mean --max-body-bytes? (see --help)"
    );
    assert_eq!(error(&["serve"]), "unexpected argument \"serve\" (see --help)");
    assert_eq!(error(&["--port", "1", "check", "a.wasm"]), "unexpected argument \"check\" (see --help)");
}

#[test]
fn the_admin_listener_is_loopback_5000_ports_up_unless_told() {
    let at = |args: &[&str]| parse(args).unwrap().admin_addr().map(|a| a.to_string());
    assert_eq!(at(&[]).as_deref(), Some("127.0.0.1:9242"));
    assert_eq!(at(&["--bind", "0.0.0.0", "--port", "80"]).as_deref(), Some("127.0.0.1:5080"));
    assert_eq!(at(&["--port", "0"]).as_deref(), Some("127.0.0.1:0"));
    assert_eq!(at(&["--port", "61000"]).as_deref(), Some("127.0.0.1:0"));
    assert_eq!(at(&["--admin-bind", "[::1]:9000"]).as_deref(), Some("[::1]:9000"));
    assert_eq!(at(&["--admin-bind", "unix:/run/house.sock"]).as_deref(), Some("unix:/run/house.sock"));
    assert!(error(&["--admin-bind", "unix:"]).contains("unix: needs a path"));
    assert!(error(&["--admin-bind", "localhost"]).starts_with("--admin-bind: invalid value"));
    let dev = |args: &[&str]| match parse_args(args.iter().map(std::ffi::OsString::from)).unwrap() {
        Command::Dev(cfg, _) => cfg.admin_addr(),
        _ => panic!("dev"),
    };
    assert_eq!(dev(&["dev", "crate"]), None, "house dev: one port");
    assert_eq!(
        dev(&["dev", "--admin-bind", "127.0.0.1:7", "crate"]).map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:7")
    );
}

fn error(args: &[&str]) -> String {
    format!("{:#}", parse(args).expect_err("an error"))
}

#[test]
fn defaults_and_values() {
    let cfg = parse(&[]).unwrap();
    assert_eq!((cfg.port, cfg.guest.strikes, cfg.limits.max_body), (4242, 3, 1024 * 1024));
    let cfg = parse(&[
        "--port=0",
        "--guest-strikes",
        "7",
        "--guest-memory-mb",
        "64",
        "--guest-publish-bytes",
        "10",
        "--compile-memory-mb",
        "300",
        "--cache-max-mb",
        "2",
        "--no-cache",
        "--quiet",
        "--threads",
        "3",
        "--guest-calls",
        "9",
        "--guest-warm-instances",
        "0",
        "--hub-queue-events",
        "5",
        "--history-events",
        "0",
        "--history-budget-mb",
        "3",
        "--retry-ms",
        "200",
        "--tx-retries",
        "0",
    ])
    .unwrap();
    assert_eq!((Config::default().kv.retries, cfg.kv.retries), (8, 0));
    assert_eq!((cfg.threads, cfg.guest.calls, cfg.hub_queue), (3, 9, 5));
    assert_eq!((Config::default().guest.warm, cfg.guest.warm), (64, 0));
    assert!(matches!(cfg.engine, Engine::Memory));
    assert_eq!((cfg.history.events, cfg.history.budget, cfg.retry), (0, 3 << 20, Duration::from_millis(200)));
    let redis = parse(&["--engine", "redis://127.0.0.1:7/2", "--engine-timeout-ms", "40"]).unwrap();
    let Engine::Redis(redis) = redis.engine else { panic!("redis") };
    assert_eq!((redis.url.as_str(), redis.timeout), ("redis://127.0.0.1:7/2", Duration::from_millis(40)));
    assert_eq!((cfg.port, cfg.guest.strikes, cfg.guest.memory), (0, 7, 64 << 20));
    assert_eq!((cfg.guest.budgets.publish_bytes, cfg.load.compile_memory), (10, 300 << 20));
    assert_eq!(cfg.load.cache_bytes, 2 << 20);
    assert!(cfg.cache_dir.is_none() && !cfg.access_log);
    assert!(matches!(parse_args(["-h".into()]).unwrap(), Command::Help));
}

#[test]
fn bad_values_are_refused_with_the_flag_named() {
    assert_eq!(error(&["--frob"]), "unknown flag --frob (see --help)");
    assert_eq!(error(&["stray"]), "unexpected argument \"stray\" (see --help)");
    assert!(error(&["--port", "http"]).starts_with("--port: invalid value \"http\""));
    assert!(error(&["--port", "70000"]).starts_with("--port: invalid value \"70000\""));
    assert_eq!(
        error(&["--max-body-bytes", "-1"]),
        "--max-body-bytes: invalid value \"-1\": invalid digit found in string"
    );
    assert_eq!(error(&["--request-timeout-ms", "0"]), "--request-timeout-ms: must be at least 1");
    assert_eq!(error(&["--max-headers", "999"]), "--max-headers: at most 256");
    assert_eq!(error(&["--guest-memory-mb", "5000"]), "--guest-memory-mb: a wasm32 memory is at most 4096 MiB");
    // Not truncated: 2^32 + 3 strikes is out of range, not 3.
    assert!(error(&["--guest-strikes", "4294967299"]).starts_with("--guest-strikes: invalid value"));
    assert_eq!(error(&["--guest-strikes", "0"]), "--guest-strikes: must be between 1 and 1000");
    assert_eq!(error(&["--guest-strikes", "1001"]), "--guest-strikes: must be between 1 and 1000");
    assert_eq!(error(&["--threads", "0"]), "--threads: must be at least 1");
    assert_eq!(error(&["--threads", "257"]), "--threads: at most 256");
    assert_eq!(error(&["--guest-calls", "0"]), "--guest-calls: must be at least 1");
    assert_eq!(error(&["--guest-calls", "4097"]), "--guest-calls: at most 4096");
    assert_eq!(error(&["--guest-warm-instances", "4097"]), "--guest-warm-instances: at most 4096");
    assert_eq!(error(&["--hub-queue-events", "0"]), "--hub-queue-events: must be at least 1");
    assert_eq!(error(&["--tx-retries", "101"]), "--tx-retries: at most 100");
    assert!(error(&["--port"]).contains("--port"), "a missing value names its flag");
    assert_eq!(
        error(&["--engine", "mongo://x"]),
        "--engine: \"mongo://x\" is neither `memory` nor a redis://HOST:PORT[/DB] address"
    );
    assert!(error(&["--engine", "redis://h:99999"]).starts_with("--engine: \"redis://h:99999\": "));
    assert_eq!(error(&["--engine-timeout-ms", "0"]), "--engine-timeout-ms: must be at least 1");
}
