//! Which loop this thread runs, for state kept per loop. Two loops on two
//! cores that write the same cache line on every request pay for it on
//! every request (the line moves between the cores): with `--threads 2` the
//! guest path cost 1.22x the CPU per request of one loop (BENCHMARKS.md,
//! scenario 8) while the per-call counters and the idle instances were
//! shared. So what every call writes is split into `SHARDS` parts, each on
//! cache lines of its own, and a thread uses the part of its loop.

use std::cell::Cell;

/// Parts: shard 0 for threads that are not loops (tools, benchmarks, the
/// engine's threads), the others for loops (loop `i` gets `1 + i % 15`:
/// beyond 15 loops, some share a part, which stays correct and costs only
/// the sharing).
pub const SHARDS: usize = 16;

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// Called by loop `lp`'s thread once, before it serves anything.
pub fn enter_loop(lp: usize) {
    SHARD.with(|s| s.set(of_loop(lp)));
}

/// The part of loop `lp`.
pub fn of_loop(lp: usize) -> usize {
    1 + lp % (SHARDS - 1)
}

/// This thread's part.
pub fn current() -> usize {
    SHARD.with(Cell::get)
}

/// `T` alone on its cache lines (128 bytes: adjacent-line prefetch pairs
/// 64-byte lines on x86).
#[derive(Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
