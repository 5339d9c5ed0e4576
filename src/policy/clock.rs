//! The encoder's time source.
//!
//! Costs should be CPU time of the encoding thread, but `std` has no
//! thread CPU clock and the crate allows no `unsafe` outside `src/ffi`, so
//! the default is the monotonic wall clock (`Instant`, a vDSO read).  Encoding
//! threads run flat out between their reads, so wall time over-counts only
//! when the thread is preempted; the EWMAs smooth that out.  A caller with a
//! thread CPU clock (or a test) passes its own [`Clock`].

#![forbid(unsafe_code)]

use std::time::Instant;

/// A monotonic time source, nanoseconds from an arbitrary origin.
pub trait Clock: Send {
    /// Nanoseconds since the clock's origin; never decreases.
    fn now_ns(&mut self) -> u64;
}

/// The monotonic wall clock.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    origin: Instant,
}

impl WallClock {
    /// A clock whose origin is now.
    pub fn new() -> WallClock {
        WallClock {
            origin: Instant::now(),
        }
    }
}

impl Default for WallClock {
    fn default() -> Self {
        WallClock::new()
    }
}

impl Clock for WallClock {
    fn now_ns(&mut self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that advances by a fixed step on every read: deterministic
/// timings for tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepClock {
    now: u64,
    step: u64,
}

impl StepClock {
    /// A clock at 0 that advances `step` nanoseconds per read.
    pub fn new(step: u64) -> StepClock {
        StepClock { now: 0, step }
    }
}

impl Clock for StepClock {
    fn now_ns(&mut self) -> u64 {
        self.now = self.now.saturating_add(self.step);
        self.now
    }
}
