//! Probing: is sending every page raw faster than the cost model's plan?
//!
//! The cost model predicts time from per-page costs, but two things it
//! cannot see decide whether compression pays on a real host:
//! - the link's capacity, when `max-bandwidth` is not set: a channel that
//!   compresses flat out sees only its own output rate on the wire;
//! - CPU contention: on a small host the compressing channels take CPU
//!   from the migration thread that hands them pages and from the guest,
//!   so a channel can wait most of the time and still be the reason the
//!   migration is slow.
//!
//! So the policy measures both arms: the plan, and all-raw.  A channel's
//! throughput is its period per page, from one batch's start to the next
//! batch's start (that period holds the socket write QEMU does after
//! encoding, and any wait for the next batch).  The current arm's recent
//! batches give its figure; now and then a window of [`PROBE_BATCHES`]
//! batches runs the other arm.  Only the window's second half is measured:
//! the first half refills (or drains) the socket buffers, whose writes
//! return before the link has carried the bytes.  Figures are sums, not
//! medians: summed periods over summed pages, because a socket write blocks
//! in bursts (most batches of a link-bound channel look fast, a few wait
//! for all of them).  When the
//! other arm is faster by [`SWITCH_MARGIN`], it becomes the current arm,
//! and stays so only if its first [`RECENT`] batches of its own are not
//! slower than the arm it replaced.
//!
//! Raw batches also give the link estimate: their bytes over their period
//! are what this channel's share of the link carried at least.
//!
//! A raw window stops as soon as its batches so far (at least
//! [`ABORT_AFTER`]) took longer per page than the current arm: early raw
//! batches can only look faster than they are, so that settles the
//! question (on a slow link a probe costs a few batches, not a window).
//! The policy also ends a raw window ([`Probe::end_raw_window`]) once the
//! connection's measured capacity shows raw pages cannot win.
//!
//! Windows come at doubling intervals, from [`PROBE_FIRST`] on, up to
//! [`PROBE_INTERVAL_MAX`] batches apart, so they cost a few percent and
//! less over a long migration.  On the raw arm, the plan is probed only
//! when it could win: a channel cannot beat its own encode time per page.

#![forbid(unsafe_code)]

/// Batches in one probe window.
pub const PROBE_BATCHES: u32 = 16;
/// The first batch at which a probe may start (the current arm needs a
/// few measured batches to be compared with).
pub const PROBE_FIRST: u64 = 5;
/// Batches between the first two windows; doubles after every window.
const PROBE_INTERVAL_MIN: u64 = 32;
/// Largest gap between windows, in batches.
pub const PROBE_INTERVAL_MAX: u64 = 512;
/// Batches for which a measured raw rate outranks the observed wire rate.
/// After that the observed rate (of whatever the channel then sends) is
/// fresher evidence, and a stale overestimate cannot hold the choice.
pub const PROBE_TRUST: u64 = 64;
/// The other arm must take at most this share of the current arm's time
/// per page to become current.
pub const SWITCH_MARGIN: f64 = 0.9;
/// Measured batches per window: the second half but the last, whose
/// period closes only when the batch after the window starts (its plan is
/// made by then: measuring it would delay the result a batch).
const SAMPLES: usize = (PROBE_BATCHES / 2 - 1) as usize;
/// Window position of the first measured batch.
const FIRST_SAMPLE: u32 = PROBE_BATCHES / 2;
/// A raw probe window ends early when, after at least this many batches,
/// its batches so far took longer per page than the current arm.
const ABORT_AFTER: u32 = 2;
/// A raw probe window ends as soon as one of its batches took this many
/// times the current arm's time per page: early batches are flattered by
/// socket buffers, so on a slow link the first one often settles it, and
/// once the buffers are full the next one does.
const CLEAR_LOSS: f64 = 2.0;
/// Recent batches of the current arm kept for its figure.
const RECENT: usize = 8;
/// Recent batches needed before the current arm's figure counts.
const RECENT_MIN: usize = 3;

/// The previous batch, whose period the next batch's start closes.
#[derive(Debug, Clone, Copy)]
struct Last {
    start_ns: u64,
    out_bytes: u64,
    pages: u64,
    window_pos: Option<u32>,
    raw: bool,
}

/// One measured batch: its period, its pages, and its bytes when raw.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    period_ns: f64,
    pages: f64,
    raw_bytes: Option<f64>,
}

/// Probe state of one channel.
#[derive(Debug, Clone)]
pub(super) struct Probe {
    /// Position in the window of the batch being encoded (`None`: not a
    /// probe batch).
    window_pos: Option<u32>,
    last: Option<Last>,
    window: [Sample; SAMPLES],
    window_len: usize,
    recent: [Sample; RECENT],
    recent_len: usize,
    recent_next: usize,
    next_at: u64,
    interval: u64,
    /// The current arm is all-raw.
    raw_arm: bool,
    /// Raw bytes/s this channel's link share carried, and the batch at
    /// which it was measured.
    estimate: Option<(f64, u64)>,
    batches: u64,
    switches: u64,
    /// The figure of the arm left at the last switch, until the new arm
    /// has [`RECENT`] batches of its own to confirm the switch.
    before: Option<f64>,
    /// The running window was cut short: raw was already slower.
    aborted: bool,
    /// The period the next batch closes spans a bitmap sync: it is no
    /// arm's figure.
    skip: bool,
    /// Summed period and pages of the running window's batches so far.
    so_far: (f64, f64),
}

impl Probe {
    pub(super) fn new() -> Probe {
        Probe {
            window_pos: None,
            last: None,
            window: [Sample::default(); SAMPLES],
            window_len: 0,
            recent: [Sample::default(); RECENT],
            recent_len: 0,
            recent_next: 0,
            next_at: PROBE_FIRST,
            interval: PROBE_INTERVAL_MIN,
            raw_arm: false,
            estimate: None,
            batches: 0,
            switches: 0,
            before: None,
            aborted: false,
            skip: false,
            so_far: (0.0, 0.0),
        }
    }

    /// Drops the period the next batch closes from every figure: it spans
    /// a bitmap sync (the end of a round, the sync, the scan for dirty
    /// pages), an idle time that neither arm causes.  Counted, it made the
    /// arm it fell in look several times slower: in the simulated 10 Gbit/s
    /// rounds of `the_idle_time_of_a_bitmap_sync_counts_for_no_arm` a
    /// channel switched to the plan that way, and the plan's own batches
    /// confirmed the switch against the inflated figure.
    pub(super) fn skip_period(&mut self) {
        self.skip = true;
    }

    /// Called once per planned batch: whether batch number `batch` is a
    /// probe batch (it then runs the arm that is not current).  A window,
    /// once started, runs to its end; a new one starts when `wanted` and
    /// its time has come.
    pub(super) fn on_plan(&mut self, batch: u64, wanted: bool) -> bool {
        self.window_pos = match self.window_pos {
            Some(pos) if pos + 1 < PROBE_BATCHES && !self.aborted => Some(pos + 1),
            Some(_) => None,
            None if wanted && batch >= self.next_at && self.recent_len >= RECENT_MIN => {
                self.window_len = 0;
                self.aborted = false;
                self.so_far = (0.0, 0.0);
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

    /// Whether the batch being encoded sends every page raw.
    pub(super) fn sends_raw(&self) -> bool {
        self.raw_arm != self.probing()
    }

    /// Whether the current arm is all-raw.
    pub(super) fn raw_arm(&self) -> bool {
        self.raw_arm
    }

    /// Whether the previous batch was a probe batch (its period says
    /// nothing about the plan's busy share).
    pub(super) fn last_was_probe(&self) -> bool {
        self.last.is_some_and(|l| l.window_pos.is_some())
    }

    /// Called once per encoded batch, with its start time, frame size and
    /// page count; `batch` is its number.  Closes the previous batch's
    /// period, and at a window's end decides which arm is current.
    pub(super) fn on_batch(&mut self, batch: u64, start_ns: u64, out_bytes: u64, pages: u64) {
        let skip = std::mem::take(&mut self.skip);
        if let Some(last) = self.last {
            let period = start_ns.saturating_sub(last.start_ns);
            if period > 0 && last.pages > 0 && !skip {
                let sample = Sample {
                    period_ns: period as f64,
                    pages: last.pages as f64,
                    raw_bytes: last.raw.then_some(last.out_bytes as f64),
                };
                match last.window_pos {
                    Some(_) if self.aborted => {}
                    Some(pos) => {
                        self.so_far.0 += sample.period_ns;
                        self.so_far.1 += sample.pages;
                        // Early raw batches can only look too fast (buffers
                        // absorb them), so raw that is slower over the
                        // window so far is slower: stop paying for it.
                        if last.raw {
                            self.judge_raw(pos, sample);
                        }
                        if pos >= FIRST_SAMPLE && self.window_len < SAMPLES {
                            self.window[self.window_len] = sample;
                            self.window_len += 1;
                        }
                    }
                    None => self.push_recent(sample, batch),
                }
            }
            // The batch being recorded is the window's last.
            if !self.aborted && last.window_pos.is_some_and(|pos| pos + 2 == PROBE_BATCHES) {
                self.end_window(batch);
            }
        }
        self.last = Some(Last {
            start_ns,
            out_bytes,
            pages,
            window_pos: self.window_pos,
            raw: self.sends_raw(),
        });
    }

    /// Ends a raw window whose batches so far (up to position `pos`)
    /// took longer per page than the current arm, after [`ABORT_AFTER`]
    /// batches, or as soon as one raw batch (`sample`) took
    /// [`CLEAR_LOSS`] times as long.  Raw batches can only look faster
    /// than they are (socket buffers absorb them), so a slow one is
    /// conclusive.  (The wait for the next window stays: an idle gap, a
    /// bitmap sync, inside one raw batch is a clear loss too, and a fast
    /// link must not be found later for it.)
    fn judge_raw(&mut self, pos: u32, sample: Sample) {
        let (period_ns, pages) = self.so_far;
        let Some(current) = self.current_ns_per_page().filter(|_| pages > 0.0) else {
            return;
        };
        let clear = sample.period_ns / sample.pages >= CLEAR_LOSS * current;
        if clear || (pos + 1 >= ABORT_AFTER && period_ns / pages > current) {
            self.aborted = true;
        }
    }

    fn push_recent(&mut self, sample: Sample, batch: u64) {
        self.recent[self.recent_next] = sample;
        self.recent_next = (self.recent_next + 1) % RECENT;
        self.recent_len = (self.recent_len + 1).min(RECENT);
        if let Some(rate) = raw_rate(&self.recent[..self.recent_len]) {
            self.estimate = Some((rate, batch));
        }
        // A switch is confirmed by the new arm's own steady state: a window
        // can still be flattered by socket buffers, a full history cannot.
        if self.recent_len == RECENT {
            if let (Some(before), Some(now)) = (self.before.take(), self.current_ns_per_page()) {
                if now > before {
                    self.switch_arm();
                }
            }
        }
    }

    /// Ends a running raw window at once: the connection showed that raw
    /// pages cannot beat the plan (see `Policy::raw_cannot_win`), so the
    /// rest of the window would only cost bytes.  Its figures are dropped
    /// and the current arm stays.
    pub(super) fn end_raw_window(&mut self) {
        if self.window_pos.is_some() && !self.raw_arm {
            self.aborted = true;
        }
    }

    /// Makes all-raw the current arm at once, without a window's figures
    /// or a confirmation: the connection showed that raw is the fastest
    /// there is (see [`super::transport`]).  A running window is dropped.
    pub(super) fn settle_raw(&mut self) {
        if self.raw_arm {
            return;
        }
        self.window_pos = None;
        // The dropped window's last batch, still to be recorded, must not
        // end it.
        self.aborted = true;
        self.switch_arm();
    }

    fn switch_arm(&mut self) {
        self.before = None;
        self.raw_arm = !self.raw_arm;
        self.switches += 1;
        self.recent_len = 0;
        self.recent_next = 0;
    }

    fn end_window(&mut self, batch: u64) {
        let window = &self.window[..self.window_len];
        if let Some(rate) = raw_rate(window) {
            self.estimate = Some((rate, batch));
        }
        let other = ns_per_page(window);
        let (Some(other), Some(current)) = (other, self.current_ns_per_page()) else {
            return;
        };
        if other < SWITCH_MARGIN * current {
            self.switch_arm();
            self.before = Some(current);
        }
    }

    /// The current arm's recent time per page (ns), if measured.
    pub(super) fn current_ns_per_page(&self) -> Option<f64> {
        if self.recent_len < RECENT_MIN {
            return None;
        }
        ns_per_page(&self.recent[..self.recent_len])
    }

    /// The last measured raw rate (bytes/s of this channel), if it is
    /// younger than [`PROBE_TRUST`] batches at `batch`, or at any age when
    /// `stale_ok`.
    pub(super) fn estimate(&self, batch: u64, stale_ok: bool) -> Option<f64> {
        self.estimate
            .filter(|&(_, at)| stale_ok || batch.saturating_sub(at) <= PROBE_TRUST)
            .map(|(rate, _)| rate)
    }

    /// Probe batches so far.
    pub(super) fn batches(&self) -> u64 {
        self.batches
    }

    /// Times the current arm changed.
    pub(super) fn switches(&self) -> u64 {
        self.switches
    }
}

/// Time per page over `samples`: their summed periods over their summed
/// pages.  A sum, not a median: a socket write blocks in bursts (a full
/// buffer frees room in large steps), so most batches of a link-bound
/// channel look fast and a few take the wait for all of them.
fn ns_per_page(samples: &[Sample]) -> Option<f64> {
    let (period, pages) = samples
        .iter()
        .fold((0.0, 0.0), |(t, n), s| (t + s.period_ns, n + s.pages));
    (pages > 0.0).then(|| period / pages)
}

/// Bytes/s of the raw batches among `samples`, summed the same way.
fn raw_rate(samples: &[Sample]) -> Option<f64> {
    let (bytes, period) = samples
        .iter()
        .filter_map(|s| s.raw_bytes.map(|b| (b, s.period_ns)))
        .fold((0.0, 0.0), |(b, t), (sb, st)| (b + sb, t + st));
    (period > 0.0).then(|| bytes * 1e9 / period)
}
