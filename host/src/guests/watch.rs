//! Hot reload: a thread that watches the guests folder with inotify, lets
//! each changed file settle, (re)loads or unloads it through the registry —
//! compiling off the event loop, several files at once so that one slow
//! module does not hold up the rest — and swaps in a complete new route
//! table, which every loop reads from its next request on. A request already running finishes on the
//! version it started on (it holds that version's handler); SSE subscribers
//! are untouched (channels belong to the host).
//!
//! The watch is set up before the folder is first scanned (`Watcher::new`,
//! then `Registry::load_all`, then `Watcher::spawn`): a file dropped between
//! the two is seen by one or the other, never by neither.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchMask};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::engine::Runtime;
use super::registry::{Loaded, PARALLEL_LOADS, Registry, is_guest_file, load_file};
use crate::router::Routes;

use arc_swap::ArcSwap;

/// Quiet time after a file is closed, renamed or linked into place before it
/// is loaded: a writer that reopens it at once pushes the load back.
const SETTLE: Duration = Duration::from_millis(15);
/// A file being written but not yet closed is loaded after this much silence
/// anyway (a writer that keeps it open); validation refuses it if it is
/// still incomplete, and the next close reloads it.
const OPEN_WRITER_QUIET: Duration = Duration::from_secs(2);

const INOTIFY: Token = Token(0);
const LOADED: Token = Token(1);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    Written,
    Removed,
}

/// An inotify watch on the guests folder, set up before the first scan.
pub struct Watcher {
    inotify: Inotify,
}

impl Watcher {
    pub fn new(dir: &Path) -> anyhow::Result<Watcher> {
        let inotify = Inotify::init()?;
        let mask = WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::DELETE
            | WatchMask::CREATE
            | WatchMask::MODIFY
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF;
        inotify.watches().add(dir, mask)?;
        Ok(Watcher { inotify })
    }

    /// Starts the watcher thread. Loading happens off it; the loop only swaps.
    pub fn spawn(
        self,
        mut registry: Registry,
        runtime: Arc<Runtime>,
        routes: Arc<ArcSwap<Routes>>,
    ) -> anyhow::Result<()> {
        std::thread::Builder::new().name("house-watch".into()).spawn(move || {
            if let Err(e) = watch(self.inotify, &mut registry, &runtime, &routes) {
                eprintln!("house: hot reload stopped: {e:#}");
            }
        })?;
        Ok(())
    }
}

fn watch(
    mut inotify: Inotify,
    registry: &mut Registry,
    runtime: &Arc<Runtime>,
    routes: &ArcSwap<Routes>,
) -> anyhow::Result<()> {
    let mut poll = Poll::new()?;
    let fd = inotify.as_raw_fd();
    poll.registry().register(&mut SourceFd(&fd), INOTIFY, Interest::READABLE)?;
    let done_waker = Arc::new(Waker::new(poll.registry(), LOADED)?);
    let (done_tx, done_rx) = channel::<(String, Option<Loaded>)>();
    let mut events = Events::with_capacity(16);
    let mut buf = vec![0u8; 64 * 1024];
    // File name -> (when to act, what happened).
    let mut pending: HashMap<String, (Instant, Change)> = HashMap::new();
    // Files being loaded on a thread of their own: their next change waits
    // until that load is applied, so that results are applied in order.
    let mut in_flight: HashSet<String> = HashSet::new();
    loop {
        let slots = in_flight.len() < PARALLEL_LOADS;
        let timeout = pending
            .iter()
            .filter(|(name, (_, change))| !in_flight.contains(*name) && (slots || *change == Change::Removed))
            .map(|(_, (at, _))| at.saturating_duration_since(Instant::now()))
            .min();
        // A signal (a SIGCONT after a SIGSTOP, a debugger attaching)
        // interrupts the wait: wait again, rather than end hot reload.
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        let now = Instant::now();
        let mut rescan = false;
        loop {
            let batch = match inotify.read_events(&mut buf) {
                Ok(batch) => batch,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            for event in batch {
                if event.mask.contains(EventMask::Q_OVERFLOW) {
                    rescan = true;
                    continue;
                }
                if event.mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF) {
                    anyhow::bail!("the guests folder {} was removed or moved", registry.dir().display());
                }
                let Some(name) = event.name.and_then(OsStr::to_str) else { continue };
                if !is_guest_file(name) {
                    continue;
                }
                let m = event.mask;
                let next = if m.intersects(EventMask::DELETE | EventMask::MOVED_FROM) {
                    (now, Change::Removed)
                } else if m.intersects(EventMask::CLOSE_WRITE | EventMask::MOVED_TO | EventMask::CREATE) {
                    // A hard link (what cargo makes in its target folder)
                    // arrives complete with a CREATE alone; a writer that
                    // creates and then writes is pushed back by its MODIFY.
                    (now + SETTLE, Change::Written)
                } else {
                    // MODIFY: a writer is at work; wait for its close.
                    (now + OPEN_WRITER_QUIET, Change::Written)
                };
                pending.insert(name.to_owned(), next);
            }
        }
        let mut changed = rescan && registry.rescan(runtime);
        while let Ok((name, loaded)) = done_rx.try_recv() {
            in_flight.remove(&name);
            if let Some(loaded) = loaded {
                changed |= registry.apply(loaded);
            }
        }
        let due: Vec<(String, Change)> = pending
            .iter()
            .filter(|(name, (at, _))| *at <= now && !in_flight.contains(*name))
            .map(|(n, (_, c))| (n.clone(), *c))
            .collect();
        for (name, change) in due {
            let exists = registry.dir().join(&name).exists();
            if change == Change::Written && exists {
                if in_flight.len() >= PARALLEL_LOADS {
                    continue; // waits for a slot
                }
                pending.remove(&name);
                in_flight.insert(name.clone());
                let (dir, loading, runtime) = (registry.dir().to_owned(), registry.loading().clone(), runtime.clone());
                let (done_tx, done_waker) = (done_tx.clone(), done_waker.clone());
                std::thread::Builder::new().name("house-load".into()).spawn(move || {
                    let loaded = load_file(&dir, &loading, &runtime, &name);
                    let _ = done_tx.send((name, loaded));
                    let _ = done_waker.wake();
                })?;
            } else {
                pending.remove(&name);
                changed |= registry.remove(&name);
            }
        }
        if changed {
            // Every loop sees the new table from its next request on.
            routes.store(Arc::new(registry.routes()));
        }
        registry.announce();
    }
}
