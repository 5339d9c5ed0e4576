//! The zstd tier's level: higher where the link leaves CPU to spare.
//!
//! On a slow link the tier's CPU is idle most of the time, and every byte
//! it saves is time.  The sample corpus, with `zstd -b<L> -B524288` on its
//! non-zero pages (`docs/DESIGN.md` §4), gave relative to level 1:
//!
//! | level | size | CPU (compile, sort) |
//! |---|---|---|
//! | 3 | 0.93, 0.91 | 1.54x, 1.52x |
//! | 6 | 0.90, 0.87 | 4.26x, 4.27x |
//!
//! (levels in between buy less per CPU; negative levels lose to LZ4.)  So
//! the controller scores the current routing at each rung of [`LADDER`],
//! with the tier's measured costs scaled by these factors, and moves when a
//! rung is clearly better.  A change restarts the channel's stream (the
//! encoder starts a new zstd frame), so it is rare: at most one per
//! [`LEVEL_DWELL`] batches.  Only the default level (1) adapts; a level the
//! operator sets stays.

#![forbid(unsafe_code)]

/// One rung: a zstd level and its CPU and size relative to level 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Rung {
    /// The zstd level.
    pub level: u8,
    /// CPU per page relative to level 1.
    pub cpu: f64,
    /// Output size relative to level 1.
    pub size: f64,
}

/// The levels the tier moves between, from the default up.
pub(super) const LADDER: [Rung; 3] = [
    Rung {
        level: 1,
        cpu: 1.0,
        size: 1.0,
    },
    Rung {
        level: 3,
        cpu: 1.55,
        size: 0.92,
    },
    Rung {
        level: 6,
        cpu: 4.3,
        size: 0.88,
    },
];

/// Batches between two level changes.
pub(super) const LEVEL_DWELL: u64 = 64;

/// Batches between two evaluations of the rung.  One scores every routing
/// of the classes at every rung, about 170 k instructions (callgrind,
/// `examples/raw_path.rs`): done every batch it was 1.3 k instructions a
/// page, almost the whole cost of a raw page again, and the costs it
/// scores change at most once per [`super::TIMED_EVERY`] batches.
pub(super) const LEVEL_CHECK: u64 = 16;
