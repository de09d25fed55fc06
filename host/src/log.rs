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

    /// `METHOD PATH STATUS 0.123ms`. Appended piece by piece: it runs once
    /// per request.
    pub fn access(&mut self, method: &str, path: &str, status: u16, took: Duration) {
        if !self.access {
            return;
        }
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
        b.extend_from_slice(b"ms\n");
        if b.len() > 60 * 1024 {
            self.flush();
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
