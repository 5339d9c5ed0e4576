//! Link probing: what the link carries when this channel sends pages raw.
//!
//! A channel that compresses flat out sees only its own output rate on the
//! wire, so it cannot tell whether the link would carry raw pages faster
//! than it compresses them.  That is the case that makes compression slower
//! than `none`: a fast link (10 Gbit/s) with no `max-bandwidth` set.  The
//! probe answers by measurement.  Now and then, for [`PROBE_BATCHES`]
//! batches, every page goes raw, and the channel times each of those
//! batches from its start to the next batch's start.  That period holds the
//! socket write QEMU does after encoding, so a raw batch's bytes over its
//! period is what this channel's share of the link carried.
//!
//! Only the second half of the window is measured (but its last batch,
//! whose period ends after the next plan is made): the first half refills
//! the socket buffers, whose writes return before the link has carried the
//! bytes.  The median of those batches ignores one idle gap (the migration
//! thread syncing the dirty bitmap).  The result is a lower bound of the
//! link, which is what the cost model needs: raw wins only when it is
//! really faster.
//!
//! Probes start only while the channel is CPU-bound (otherwise the observed
//! wire rate is already the link's), the first after [`PROBE_FIRST`]
//! batches, then at doubling intervals up to [`PROBE_INTERVAL_MAX`], so
//! their cost on a slow link stays a few percent and shrinks over a long
//! migration.

#![forbid(unsafe_code)]

/// Batches in one probe window.
pub const PROBE_BATCHES: u32 = 12;
/// The first batch at which a probe may start (the busy share needs a few
/// batches to mean anything).
pub const PROBE_FIRST: u64 = 3;
/// Batches between the first two probes; doubles after every probe.
const PROBE_INTERVAL_MIN: u64 = 32;
/// Largest gap between probes, in batches.
pub const PROBE_INTERVAL_MAX: u64 = 512;
/// Batches for which a probe's result outranks the observed wire rate.
/// After that the observed rate (of whatever the channel then sends) is
/// fresher evidence, and a stale overestimate cannot hold the choice.
pub const PROBE_TRUST: u64 = 64;
/// Measured batches per window: the second half but the last, whose
/// period closes only when the batch after the window starts (its plan is
/// already made by then: measuring it would delay the result a batch).
const SAMPLES: usize = (PROBE_BATCHES / 2 - 1) as usize;
/// Window position of the first measured batch.
const FIRST_SAMPLE: u32 = PROBE_BATCHES / 2;

/// The previous batch, whose period the next batch's start closes.
#[derive(Debug, Clone, Copy)]
struct Last {
    start_ns: u64,
    out_bytes: u64,
    window_pos: Option<u32>,
}

/// Probe state of one channel.
#[derive(Debug, Clone)]
pub(super) struct Probe {
    /// Position in the window of the batch being encoded (`None`: not a
    /// probe batch).
    window_pos: Option<u32>,
    last: Option<Last>,
    samples: [f64; SAMPLES],
    count: usize,
    next_at: u64,
    interval: u64,
    /// Raw bytes/s this channel's link share carried, and the batch at
    /// which it was measured.
    estimate: Option<(f64, u64)>,
    /// Probe batches so far.
    batches: u64,
}

impl Probe {
    pub(super) fn new() -> Probe {
        Probe {
            window_pos: None,
            last: None,
            samples: [0.0; SAMPLES],
            count: 0,
            next_at: PROBE_FIRST,
            interval: PROBE_INTERVAL_MIN,
            estimate: None,
            batches: 0,
        }
    }

    /// Called once per planned batch: whether batch number `batch` is a
    /// probe batch.  A window, once started, runs to its end; a new one
    /// starts when `wanted` and its time has come.
    pub(super) fn on_plan(&mut self, batch: u64, wanted: bool) -> bool {
        self.window_pos = match self.window_pos {
            Some(pos) if pos + 1 < PROBE_BATCHES => Some(pos + 1),
            Some(_) => None,
            None if wanted && batch >= self.next_at => {
                self.count = 0;
                self.next_at = batch
                    .saturating_add(u64::from(PROBE_BATCHES))
                    .saturating_add(self.interval);
                self.interval = (self.interval * 2).min(PROBE_INTERVAL_MAX);
                Some(0)
            }
            None => None,
        };
        if self.window_pos.is_some() {
            self.batches += 1;
        }
        self.window_pos.is_some()
    }

    /// Whether the batch being encoded is a probe batch.
    pub(super) fn probing(&self) -> bool {
        self.window_pos.is_some()
    }

    /// Whether the previous batch was a probe batch (its period says
    /// nothing about the plan's busy share).
    pub(super) fn last_was_probe(&self) -> bool {
        self.last.is_some_and(|l| l.window_pos.is_some())
    }

    /// Called once per encoded batch, with its start time and frame size;
    /// `batch` is its number.  Closes the previous batch's period.
    pub(super) fn on_batch(&mut self, batch: u64, start_ns: u64, out_bytes: u64) {
        if let Some(last) = self.last {
            if let Some(pos) = last.window_pos {
                let period = start_ns.saturating_sub(last.start_ns);
                if pos >= FIRST_SAMPLE && period > 0 && self.count < SAMPLES {
                    self.samples[self.count] = last.out_bytes as f64 * 1e9 / period as f64;
                    self.count += 1;
                }
                // The batch being recorded is the window's last.
                if pos + 2 == PROBE_BATCHES && self.count > 0 {
                    self.estimate = Some((median(&mut self.samples[..self.count]), batch));
                }
            }
        }
        self.last = Some(Last {
            start_ns,
            out_bytes,
            window_pos: self.window_pos,
        });
    }

    /// The last probe's rate (bytes/s of this channel), if it is younger
    /// than [`PROBE_TRUST`] batches at `batch`, or at any age when `stale_ok`.
    pub(super) fn estimate(&self, batch: u64, stale_ok: bool) -> Option<f64> {
        self.estimate
            .filter(|&(_, at)| stale_ok || batch.saturating_sub(at) <= PROBE_TRUST)
            .map(|(rate, _)| rate)
    }

    /// Probe batches so far.
    pub(super) fn batches(&self) -> u64 {
        self.batches
    }
}

/// The median of `v` (reorders it); `v` is not empty and holds no NaN.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}
