//! Quarantine for handlers that keep overrunning their CPU deadline.
//!
//! A call that overruns holds the event loop for the whole deadline, so a
//! handler that loops on every request would slow every other client.
//! After `--guest-strikes` overruns in a row, the handler is suspended for
//! `--guest-quarantine-ms`: its requests get a 503 at once, without running.
//! Any call that ends within its deadline clears the strikes. Traps are not
//! strikes: they end as soon as they happen and cost the loop nothing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Health {
    strikes: AtomicU32,
    suspended_until: Mutex<Option<Instant>>,
}

impl Health {
    /// How long the handler stays suspended, if it is.
    pub fn suspended(&self, now: Instant) -> Option<Duration> {
        let until = *self.suspended_until.lock().unwrap_or_else(|e| e.into_inner());
        until.and_then(|t| t.checked_duration_since(now)).filter(|d| !d.is_zero())
    }

    /// Records a call's outcome; returns true if this overrun suspends it.
    pub fn record(&self, overran: bool, strikes: u32, quarantine: Duration) -> bool {
        if !overran {
            self.strikes.store(0, Ordering::Relaxed);
            return false;
        }
        if self.strikes.fetch_add(1, Ordering::Relaxed) + 1 < strikes {
            return false;
        }
        self.strikes.store(0, Ordering::Relaxed);
        *self.suspended_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + quarantine);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strikes_in_a_row_suspend_and_a_success_forgives() {
        let h = Health::default();
        let q = Duration::from_secs(60);
        assert!(!h.record(true, 3, q));
        assert!(!h.record(false, 3, q));
        assert!(!h.record(true, 3, q) && !h.record(true, 3, q));
        assert!(h.suspended(Instant::now()).is_none());
        assert!(h.record(true, 3, q));
        assert!(h.suspended(Instant::now()).is_some_and(|d| d > Duration::from_secs(59)));
    }
}
