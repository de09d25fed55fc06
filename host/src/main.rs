//! `house`: flags in, a server out. Errors print their whole cause chain on
//! one line and exit non-zero.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, mpsc};

use anyhow::Context;

use house_host::config::{self, Command, Config};
use house_host::dispatch::Dispatcher;
use house_host::event_loop;
use house_host::guests::{self, registry::Registry};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("house: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cfg = match config::parse_args(std::env::args_os().skip(1))? {
        Command::Help => {
            print!("{}", config::USAGE);
            return Ok(());
        }
        Command::Serve(cfg) => *cfg,
    };
    raise_fd_limit(&cfg);
    let addr = SocketAddr::new(cfg.bind, cfg.port);
    let listener = event_loop::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;

    let runtime = Arc::new(
        guests::Runtime::new(cfg.guest.clone(), cfg.limits.sse_buffer).context("cannot start the wasm engine")?,
    );
    let mut registry = Registry::new(cfg.guests.clone(), cfg.cache_dir.clone());
    registry.load_all(&runtime);
    let (router, guests_index) = registry.routes();

    let poll = mio::Poll::new()?;
    let (tx, rx) = mpsc::channel();
    let dispatcher = Dispatcher { router, runtime: runtime.clone(), guests_index, sse_buffer: cfg.limits.sse_buffer };
    let server = event_loop::Server::new(cfg, poll, listener, dispatcher, rx)?;
    if let Err(e) = guests::watch::spawn(registry, runtime, tx, server.waker()) {
        eprintln!("house: warning: not watching the guests folder, no hot reload: {e:#}");
    }
    // Tests wait for this line: it means the socket is bound and the
    // guests present at start-up are served.
    // One write(2), so that a reader never sees half the line.
    let _ =
        std::io::Write::write_all(&mut std::io::stderr(), format!("house: listening on http://{local}\n").as_bytes());
    server.run()
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
