//! Quarantine for handlers that keep overrunning their CPU deadline or their
//! per-call budgets.
//!
//! A call that overruns holds a guest worker for the whole deadline, so a
//! handler that loops on every request would slow every other client.
//! After `--guest-strikes` strikes within `--guest-strike-window-ms`, the
//! handler is suspended for `--guest-quarantine-ms`: its requests get a 503
//! at once, without running.
//!
//! Strikes are counted over a time window, not "in a row": if a fast call
//! cleared them, a client alternating overrun, overrun, fast would keep the
//! handler busy most of the time and never be suspended. Traps are not
//! strikes: they end as soon as they happen and cost the host nothing.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Health {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the most recent strikes happened, oldest first; at most
    /// `strikes` of them are kept.
    strikes: VecDeque<Instant>,
    suspended_until: Option<Instant>,
}

impl Health {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long the handler stays suspended, if it is.
    pub fn suspended(&self, now: impl FnOnce() -> Instant) -> Option<Duration> {
        // The clock only for a handler that was suspended (most never are).
        self.state().suspended_until.and_then(|t| t.checked_duration_since(now())).filter(|d| !d.is_zero())
    }

    /// Records a strike at `now`; returns true if it suspends the handler
    /// (`strikes` strikes within `window`).
    pub fn strike(&self, now: Instant, strikes: u32, window: Duration, quarantine: Duration) -> bool {
        let mut s = self.state();
        s.strikes.push_back(now);
        while s.strikes.len() > strikes as usize {
            s.strikes.pop_front();
        }
        let oldest = *s.strikes.front().expect("just pushed");
        if s.strikes.len() < strikes as usize || now.saturating_duration_since(oldest) > window {
            return false;
        }
        s.strikes.clear();
        s.suspended_until = Some(now + quarantine);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Duration = Duration::from_secs(60);
    const W: Duration = Duration::from_secs(10);

    #[test]
    fn strikes_within_the_window_suspend() {
        let h = Health::default();
        let t = Instant::now();
        assert!(!h.strike(t, 3, W, Q));
        assert!(!h.strike(t + Duration::from_secs(1), 3, W, Q));
        assert!(h.suspended(|| t).is_none());
        assert!(h.strike(t + Duration::from_secs(2), 3, W, Q));
        assert!(h.suspended(|| t + Duration::from_secs(2)).is_some_and(|d| d == Q));
    }

    #[test]
    fn strikes_spread_wider_than_the_window_do_not() {
        let h = Health::default();
        let t = Instant::now();
        for i in 0..10 {
            assert!(!h.strike(t + Duration::from_secs(6 * i), 3, W, Q), "strike {i}");
        }
        assert!(h.suspended(|| t + Duration::from_secs(60)).is_none());
    }
}
