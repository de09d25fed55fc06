//! Logging: the access log (one line per request), lifecycle lines, and the
//! `--debug` trace of every stage of every connection.
//!
//! Lines are gathered in a buffer and written once per turn of the event
//! loop, so that logging costs one write(2) per turn rather than per request.
//! The trace is behind a flag checked before any formatting happens: off, it
//! costs one branch.

use std::fmt;
use std::io::Write;
use std::time::Duration;

pub struct Log {
    pub debug: bool,
    pub access: bool,
    buf: Vec<u8>,
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
        Log { debug, access, buf: Vec::with_capacity(64 * 1024) }
    }

    /// A line, written at the end of this turn of the loop.
    pub fn line(&mut self, args: fmt::Arguments<'_>) {
        let _ = self.buf.write_fmt(args);
        self.buf.push(b'\n');
        if self.buf.len() > 60 * 1024 {
            self.flush();
        }
    }

    pub fn access(&mut self, method: &str, path: &str, status: u16, took: Duration) {
        if self.access {
            let micros = took.as_micros();
            self.line(format_args!("{method} {path} {status} {}.{:03}ms", micros / 1000, micros % 1000));
        }
    }

    pub fn flush(&mut self) {
        if !self.buf.is_empty() {
            let _ = std::io::stderr().lock().write_all(&self.buf);
            self.buf.clear();
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.flush();
    }
}
