//! `house`: flags in, a server out. Errors print their whole cause chain on
//! one line and exit non-zero.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};

use anyhow::Context;

use arc_swap::ArcSwap;
use house_host::config::AdminBind;
use house_host::config::{self, Command, Config};
use house_host::core::Shared;
use house_host::dispatch::{Dispatcher, Ports};
use house_host::engine;
use house_host::event_loop;
use house_host::guests::cache::Cache;
use house_host::guests::compile::Compiler;
use house_host::guests::loader::Loading;
use house_host::guests::{self, registry::Registry};
use house_host::hub::Hub;
use house_host::log::Log;
use house_host::socket::{self, Listener};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).take(3).collect();
    if args.first().map(String::as_str) == Some(guests::compile::WORKER_FLAG) {
        return guests::compile::worker_main(&args[1..]);
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("house: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    exit_on_panic();
    let cfg = match config::parse_args(std::env::args_os().skip(1))? {
        Command::Help => {
            print!("{}", config::USAGE);
            return Ok(());
        }
        Command::Version => {
            println!("house {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        Command::New(dir, sdk) => return house_host::commands::new::run(&dir, sdk.as_deref()),
        Command::Check(cfg, files) => {
            if house_host::commands::check::run(&cfg, &files)? {
                return Ok(());
            }
            // The refusals are said; exit 1 without another line.
            std::process::exit(1);
        }
        Command::Dev(mut cfg, crates) => {
            house_host::commands::dev::start(&crates, &cfg.guests)?;
            // The key `house new` made: signed cookies outlive a restart of
            // the dev server.
            if cfg.auth.cookie_key_file.is_none() {
                cfg.auth.cookie_key_file = crates.iter().map(|c| c.join("cookie.key")).find(|k| k.exists());
            }
            *cfg
        }
        Command::Serve(cfg) => *cfg,
    };
    raise_fd_limit(&cfg);
    // Keys first: a bad key file stops the start before anything listens.
    let identity = Arc::new(house_host::identity::Identity::load(&cfg.auth)?);
    let addr = SocketAddr::new(cfg.bind, cfg.port);
    let listeners = event_loop::bind(addr, cfg.threads).with_context(|| format!("cannot listen on {addr}"))?;
    let local = listeners[0].local_addr()?;
    // The admin surface on a listener of its own (loop 0 takes it: it is
    // light), so that what lists every module, route and count is not on
    // the port the internet reaches.
    let admin_at = cfg.admin_addr();
    let mut admin = match &admin_at {
        Some(AdminBind::Tcp(addr)) => Some(Listener::Tcp(
            event_loop::bind(*addr, 1).with_context(|| format!("cannot listen on {addr} (--admin-bind)"))?.remove(0),
        )),
        Some(AdminBind::Unix(path)) => Some(Listener::Unix(
            socket::bind_unix(path)
                .with_context(|| format!("cannot listen on unix:{} (--admin-bind)", path.display()))?,
        )),
        None => None,
    };
    let admin_said = match (&admin, &admin_at) {
        (Some(Listener::Tcp(l)), _) => format!("http://{}/_house/", l.local_addr()?),
        (Some(Listener::Unix(_)), Some(at)) => format!("{at} (GET /_house/...)"),
        _ => String::new(),
    };

    let log = Log::new(cfg.debug, cfg.access_log);
    // Guests' data is where the engine is: shared on Redis, else embedded.
    let kv = match &cfg.engine {
        config::Engine::Redis(redis) => {
            engine::kv::Kv::Redis(engine::kv::redis::Store::start(redis, cfg.kv, cfg.history, log.sibling())?)
        }
        config::Engine::Memory => {
            engine::kv::Kv::Embedded(engine::kv::embedded::Store::open(&cfg.data_dir, cfg.kv, log.sibling())?)
        }
    };
    let presence = Arc::new(engine::presence::Presence::new(cfg.presence));
    if let config::Engine::Redis(redis) = &cfg.engine {
        let remote = engine::redis_presence::RedisPresence::start(
            redis,
            cfg.presence.ttl,
            cfg.history,
            presence.clone(),
            log.sibling(),
        )?;
        presence.set_remote(remote);
    }
    let runtime = Arc::new(
        guests::Runtime::new(cfg.guest.clone(), cfg.limits.sse_buffer)
            .context("cannot start the wasm engine")?
            .with_kv(kv.clone())
            .with_presence(presence.clone())
            .with_loops(cfg.threads),
    );
    prepare_guests_folder(&cfg)?;
    let loading = Loading {
        cache: cfg.cache_dir.clone().map(|dir| Cache { dir, max_bytes: cfg.load.cache_bytes }),
        compiler: Compiler::child(cfg.load.compile_time, cfg.load.compile_memory)?,
        limits: cfg.load.clone(),
    };
    let mut registry = Registry::new(cfg.guests.clone(), loading);
    // Watch first, then scan: a file dropped in between is seen by one.
    let watcher = guests::watch::Watcher::new(&cfg.guests)
        .inspect_err(|e| eprintln!("house: warning: not watching the guests folder, no hot reload: {e:#}"))
        .ok();
    registry.load_all(&runtime);
    let routes = Arc::new(ArcSwap::from_pointee(registry.routes()));
    registry.announce();

    let polls = (0..cfg.threads).map(|_| mio::Poll::new()).collect::<Result<Vec<_>, _>>()?;
    let wakers = polls.iter().map(event_loop::waker).collect::<Result<Vec<_>, _>>()?;
    let hub = Arc::new(Hub::new(wakers, cfg.hub_queue, cfg.history));
    let engine = engine::Running::start(&cfg.engine, hub.clone(), cfg.limits.sse_buffer, cfg.history, log.sibling())?;
    if let Some(link) = engine.link() {
        hub.set_link(link);
    }
    let connections = AtomicUsize::new(0);
    let sockets = AtomicUsize::new(0);
    let shared = Arc::new(Shared { hub, engine, connections, sockets, stopping: AtomicBool::new(false), presence });
    let mut servers = Vec::with_capacity(cfg.threads);
    for (lp, (poll, listener)) in polls.into_iter().zip(listeners).enumerate() {
        let dispatcher = Dispatcher {
            routes: routes.clone(),
            runtime: runtime.clone(),
            sse_buffer: cfg.limits.sse_buffer,
            metrics: cfg.metrics,
            ports: Ports { admin_public: cfg.admin_public, public_openapi: cfg.public_openapi },
            identity: identity.clone(),
            ws_origins: cfg.limits.ws_allowed_origins.clone(),
        };
        servers.push(event_loop::Server::new(
            cfg.clone(),
            lp,
            poll,
            listener,
            admin.take(),
            dispatcher,
            shared.clone(),
            log.sibling(),
        )?);
    }
    if let Some(watcher) = watcher
        && let Err(e) = watcher.spawn(registry, runtime, routes)
    {
        eprintln!("house: warning: not watching the guests folder, no hot reload: {e:#}");
    }
    let loops = servers
        .into_iter()
        .enumerate()
        .map(|(lp, server)| std::thread::Builder::new().name(format!("house-loop-{lp}")).spawn(move || server.run()))
        .collect::<Result<Vec<_>, _>>()?;
    // Tests wait for the second line: it means the sockets are bound and
    // the guests present at start-up are served. One write(2) each, so
    // that a reader never sees half a line.
    let said = if admin_said.is_empty() {
        "house: admin (/_house/) on the public port\n".to_owned()
    } else {
        format!("house: admin on {admin_said} (guests, stats, metrics, openapi.json)\n")
    };
    let _ = std::io::Write::write_all(&mut std::io::stderr(), said.as_bytes());
    let _ =
        std::io::Write::write_all(&mut std::io::stderr(), format!("house: listening on http://{local}\n").as_bytes());
    let mut result = Ok(());
    for handle in loops {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(_) => result = Err(anyhow::anyhow!("an event loop panicked")),
        }
    }
    // The last calls' commits may still be on their way to the disk (or
    // to Redis): their answers were not sent, but what was handed over is
    // written or said not to be.
    let mut log = log;
    let unwritten = kv.drain(std::time::Duration::from_secs(1));
    if unwritten > 0 {
        log.line(format_args!(
            "house: kv: {unwritten} commits were not written before exit (their calls had no answer)"
        ));
    }
    // The admin socket's file goes with the process that made it.
    if let Some(AdminBind::Unix(path)) = &admin_at {
        let _ = std::fs::remove_file(path);
    }
    log.line(format_args!("house: stopped"));
    drop(log);
    result
}

/// Any thread of house that panics ends the process, non-zero, with the
/// panic in the log, at once. A loop that died alone would leave its share
/// of connections unanswered (its streams silent, its parked calls never
/// answered) while the others carried on looking healthy; the key-value
/// committer or the Redis bridge dying would hang every call. Restarting
/// the thread in place would keep a process whose state a bug has just
/// broken, and lose that loop's connections all the same. A supervisor
/// (systemd's `Restart=on-failure`, docs/deploy) restarts the whole process
/// cleanly in about a second; browsers reconnect with their Last-Event-ID.
fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let line = format!("house: thread {name} panicked: exiting (status 101), for a supervisor to restart\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        std::process::exit(101);
    }));
}

/// Creates the guests folder if it is missing (so that it can be watched and
/// the first guest dropped in is served), and refuses a module cache inside
/// it: a cache entry is native code, and whoever may drop a guest must not
/// be able to drop that.
fn prepare_guests_folder(cfg: &Config) -> anyhow::Result<()> {
    if !cfg.guests.exists() {
        std::fs::create_dir_all(&cfg.guests)
            .with_context(|| format!("cannot create the guests folder {}", cfg.guests.display()))?;
        eprintln!("house: created the guests folder {}", cfg.guests.display());
    }
    if let Some(cache) = &cfg.cache_dir {
        let guests = cfg.guests.canonicalize()?;
        // The cache folder may not exist yet: resolve its nearest existing
        // ancestor (links included) and append the rest.
        let wanted = std::path::absolute(cache)?;
        let mut base = wanted.clone();
        while !base.exists() && base.pop() {}
        let rest = wanted.strip_prefix(&base).unwrap_or(&wanted).to_owned();
        let cache_real = base.canonicalize()?.join(rest);
        if cache_real.starts_with(&guests) {
            anyhow::bail!(
                "--cache-dir {} is inside --guests {}: compiled modules are native code, and whoever can drop a \
                 guest must not be able to drop one",
                cache.display(),
                cfg.guests.display()
            );
        }
    }
    Ok(())
}

/// SSE subscribers are long-lived sockets: ask for as many descriptors as
/// the hard limit allows.
fn raise_fd_limit(cfg: &Config) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if (n as usize) < cfg.limits.max_connections + 64 => eprintln!(
            "house: warning: the descriptor limit ({n}) is below --max-connections ({})",
            cfg.limits.max_connections
        ),
        Ok(_) => {}
        Err(e) => eprintln!("house: warning: cannot raise the descriptor limit: {e}"),
    }
}
