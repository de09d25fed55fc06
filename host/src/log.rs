//! Logging: the access log (one line per request), lifecycle lines, and the
//! `--debug` trace of every stage of every connection.
//!
//! Lines are gathered in a buffer and handed in batches (32 KiB, or 10 ms
//! after the first line) to a writer thread: stderr may be a pipe to a log
//! collector that stalls, and the loop must never wait on it. If the writer
//! falls more than `QUEUED` batches behind, lines are dropped and their number
//! reported.
//! The trace is behind a flag checked before any formatting happens: off, it
//! costs one branch.

use std::fmt;
use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

/// How long exiting waits for the writer to write the last lines: stderr may
/// be a pipe nobody reads, and a SIGTERM must still end the process.
const EXIT_WAIT: Duration = Duration::from_secs(1);

/// Handoffs waiting for the writer before lines are dropped.
const QUEUED: usize = 64;
/// Lines are handed to the writer once this many bytes gather, or once the
/// oldest has waited `HANDOFF_AFTER`: waking the writer every turn would cost
/// more than the write it saves. (At 8 KiB, a loop answering 200,000 404s a
/// second woke it 1,100 times a second, and its wake-ups were a third of
/// its CPU; at most `QUEUED` handoffs wait: 2 MiB.)
const HANDOFF_BYTES: usize = 32 * 1024;
const HANDOFF_AFTER: Duration = Duration::from_millis(10);

/// Batches to the writer, and (for the first log only) its "all written".
type Writer = (SyncSender<Vec<u8>>, Option<Receiver<()>>);

pub struct Log {
    pub debug: bool,
    pub access: bool,
    buf: Vec<u8>,
    /// To the writer thread (one per process, shared by every loop's log);
    /// `None` once shut down. The first log's receiver hears when the writer
    /// has written everything and exited (once every log is dropped).
    writer: Option<Writer>,
    /// Lines dropped since the writer last kept up.
    dropped: usize,
    /// When the oldest line not yet handed off was written.
    oldest: Option<Instant>,
}

/// `trace!(log, "...", args)`: a `--debug` line; formats nothing when off.
macro_rules! trace {
    ($log:expr, $($arg:tt)*) => {
        if $log.debug {
            $log.line(format_args!("debug: {}", format_args!($($arg)*)));
        }
    };
}
pub(crate) use trace;

impl Log {
    pub fn new(debug: bool, access: bool) -> Log {
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUED);
        let (done_tx, done) = sync_channel::<()>(1);
        let writer = std::thread::Builder::new()
            .name("house-log".into())
            .spawn(move || {
                let mut err = std::io::stderr();
                for chunk in rx {
                    // An empty chunk is the first log's exit barrier: what
                    // was sent before it is written.
                    if chunk.is_empty() {
                        let _ = done_tx.try_send(());
                        continue;
                    }
                    let _ = err.write_all(&chunk);
                }
                let _ = done_tx.try_send(());
            })
            .map(|_| (tx, Some(done)))
            .ok();
        Log { debug, access, buf: Vec::new(), writer, dropped: 0, oldest: None }
    }

    /// A log that writes nothing (unit tests).
    pub fn discard() -> Log {
        Log { debug: false, access: false, buf: Vec::new(), writer: None, dropped: 0, oldest: None }
    }

    /// A log with its own buffer (for another loop) and the same writer.
    /// Drop it before the first one: that one waits for the writer to end.
    pub fn sibling(&self) -> Log {
        let writer = self.writer.as_ref().map(|(tx, _)| (tx.clone(), None));
        Log { debug: self.debug, access: self.access, buf: Vec::new(), writer, dropped: 0, oldest: None }
    }

    /// When the loop must wake up to hand off waiting lines, if any wait.
    pub fn deadline(&self) -> Option<Instant> {
        self.oldest.map(|t| t + HANDOFF_AFTER)
    }

    fn start_line(&mut self) {
        if self.buf.is_empty() {
            self.oldest = Some(Instant::now());
        }
    }

    /// A line, handed to the writer within `HANDOFF_AFTER`.
    pub fn line(&mut self, args: fmt::Arguments<'_>) {
        self.start_line();
        let _ = self.buf.write_fmt(args);
        self.buf.push(b'\n');
        if self.buf.len() > 60 * 1024 {
            self.flush();
        }
    }

    /// `METHOD PATH STATUS 0.123ms`, and for a refusal of the host's own
    /// ` (reason)`, the short text the client got. Appended piece by piece:
    /// it runs once per request.
    pub fn access(&mut self, method: &str, path: &str, status: u16, took: Duration, reason: Option<&str>) {
        if !self.access {
            return;
        }
        self.start_line();
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let mut n = itoa::Buffer::new();
        let b = &mut self.buf;
        b.extend_from_slice(method.as_bytes());
        b.push(b' ');
        b.extend_from_slice(path.as_bytes());
        b.push(b' ');
        b.extend_from_slice(n.format(status).as_bytes());
        b.push(b' ');
        b.extend_from_slice(n.format(micros / 1000).as_bytes());
        let frac = micros % 1000;
        b.extend_from_slice(&[
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
        b.extend_from_slice(b"ms");
        if let Some(reason) = reason {
            b.extend_from_slice(b" (");
            // One line whatever the reason holds.
            b.extend(reason.bytes().map(|c| if c == b'\n' || c == b'\r' { b' ' } else { c }));
            b.push(b')');
        }
        b.push(b'\n');
        if b.len() > 60 * 1024 {
            self.flush();
        }
    }

    /// Called at the end of every turn of the loop: hands the gathered lines
    /// to the writer if there are enough of them or they have waited long
    /// enough. Never waits.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if self.buf.len() < HANDOFF_BYTES && self.oldest.is_some_and(|t| t.elapsed() < HANDOFF_AFTER) {
            return;
        }
        self.flush_now();
    }

    /// Hands the gathered lines to the writer now (for threads that log a
    /// line now and then, with no turn to flush at). Never waits.
    pub fn flush_now(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        self.oldest = None;
        let mut chunk = std::mem::take(&mut self.buf);
        let Some((tx, _)) = &self.writer else {
            let _ = std::io::stderr().write_all(&chunk);
            return;
        };
        if self.dropped > 0 {
            let note = format!("house: {} log lines dropped: stderr is not keeping up\n", self.dropped);
            chunk.splice(0..0, note.into_bytes());
        }
        match tx.try_send(chunk) {
            Ok(()) => self.dropped = 0,
            Err(TrySendError::Full(chunk)) => {
                self.dropped += chunk.iter().filter(|&&b| b == b'\n').count();
            }
            Err(TrySendError::Disconnected(chunk)) => {
                let _ = std::io::stderr().write_all(&chunk);
            }
        }
    }
}

impl Drop for Log {
    /// At exit the last lines are worth a short wait: hand them over and
    /// give the writer `EXIT_WAIT` to finish, never longer (a stalled stderr
    /// must not keep a stopping server alive).
    fn drop(&mut self) {
        let chunk = std::mem::take(&mut self.buf);
        if let Some((tx, done)) = self.writer.take() {
            if !chunk.is_empty() {
                let _ = tx.try_send(chunk);
            }
            // The first log waits for its lines to be written, not for the
            // writer to end: threads that outlive the loops (the engine's)
            // hold logs too, and waiting for them cost every stop
            // EXIT_WAIT. Only it sends the barrier: another's would leave an
            // acknowledgement behind that this wait would take for its own.
            if let Some(done) = done
                && tx.try_send(Vec::new()).is_ok()
            {
                drop(tx);
                let _ = done.recv_timeout(EXIT_WAIT);
            }
        }
    }
}
