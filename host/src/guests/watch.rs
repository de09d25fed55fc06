//! Hot reload: a thread that watches the guests folder with inotify, lets
//! each changed file settle, (re)loads or unloads it through the registry —
//! compiling here, never on the event loop — and hands the loop a complete
//! new route table through its waker. A request already running finishes
//! on the version it started on (it holds that version's handler); SSE
//! subscribers are untouched (channels belong to the host).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchMask};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::engine::Runtime;
use super::registry::{Registry, is_guest_file};
use crate::event_loop::Message;

/// Quiet time after a file is closed (or renamed into place) before it is
/// loaded: a writer that reopens it at once pushes the load back.
const SETTLE: Duration = Duration::from_millis(15);
/// A file written but not yet closed is loaded after this much silence
/// anyway (a writer that keeps it open); validation refuses it if it is
/// still incomplete, and the next close reloads it.
const OPEN_WRITER_QUIET: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    Written,
    Removed,
}

/// Starts the watcher thread. Loading happens on it; the loop only swaps.
pub fn spawn(
    mut registry: Registry,
    runtime: Arc<Runtime>,
    tx: Sender<Message>,
    waker: Arc<Waker>,
) -> anyhow::Result<()> {
    let inotify = Inotify::init()?;
    let mask = WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::DELETE
        | WatchMask::CREATE
        | WatchMask::MODIFY
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF;
    inotify.watches().add(registry.dir(), mask)?;
    std::thread::Builder::new().name("house-watch".into()).spawn(move || {
        if let Err(e) = watch(inotify, &mut registry, &runtime, &tx, &waker) {
            eprintln!("house: hot reload stopped: {e:#}");
        }
    })?;
    Ok(())
}

fn watch(
    mut inotify: Inotify,
    registry: &mut Registry,
    runtime: &Runtime,
    tx: &Sender<Message>,
    waker: &Waker,
) -> anyhow::Result<()> {
    let mut poll = Poll::new()?;
    let fd = inotify.as_raw_fd();
    poll.registry().register(&mut SourceFd(&fd), Token(0), Interest::READABLE)?;
    let mut events = Events::with_capacity(16);
    let mut buf = vec![0u8; 64 * 1024];
    // File name -> (when to act, what happened).
    let mut pending: HashMap<String, (Instant, Change)> = HashMap::new();
    loop {
        let timeout = pending.values().map(|(at, _)| at.saturating_duration_since(Instant::now())).min();
        poll.poll(&mut events, timeout)?;
        let now = Instant::now();
        let mut rescan = false;
        loop {
            let batch = match inotify.read_events(&mut buf) {
                Ok(batch) => batch,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
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
                } else if m.intersects(EventMask::CLOSE_WRITE | EventMask::MOVED_TO) {
                    (now + SETTLE, Change::Written)
                } else {
                    // CREATE or MODIFY: a writer is at work; wait for its close.
                    (now + OPEN_WRITER_QUIET, Change::Written)
                };
                pending.insert(name.to_owned(), next);
            }
        }
        let mut changed = rescan && registry.rescan(runtime);
        let due: Vec<(String, Change)> =
            pending.iter().filter(|(_, (at, _))| *at <= now).map(|(n, (_, c))| (n.clone(), *c)).collect();
        for (name, change) in due {
            pending.remove(&name);
            let exists = registry.dir().join(&name).exists();
            changed |= match change {
                Change::Written if exists => {
                    registry.load(runtime, &name);
                    true // loaded, or refused with a new error to show
                }
                _ => registry.remove(&name),
            };
        }
        if changed {
            let (router, index) = registry.routes();
            if tx.send(Message::Routes { router, index }).is_err() {
                return Ok(()); // the loop is gone: shutting down
            }
            waker.wake()?;
        }
    }
}
