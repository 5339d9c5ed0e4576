//! From link statistics and live measurements to per-class routing: MECOM
//! §III-A as a cost-model controller.
//!
//! MECOM's condition for compression to pay is `R_cpr * rho > R_tran`: pages
//! must leave the compressor (at rate `R_cpr`, shrunk by `rho`) faster than
//! the link would carry them raw.  mecom generalises it per page class: the
//! classifier sorts pages into [`PageClass`]es, and for every class the
//! controller keeps, per candidate [`Codec`], a moving average of encode
//! time `t` (ns per page) and output size `s` (bytes per page), seeded with
//! priors and fed by the encoder once per class per batch.  With `C`
//! channels compressing in parallel and a link of `B` bytes/s, a page takes
//! `max(t / C, s / B)` to reach the destination; each class takes the codec
//! with the smallest time (raw included, so never slower than `none`).
//!
//! Special cases, all in `docs/DESIGN.md` §4:
//! - link unknown: the cheapest codec that still compresses;
//! - dirty-bound (dirty rate at or above half the effective bandwidth):
//!   among the codecs within 10 % of the smallest time, the fewest bytes,
//!   since each round then lasts at least half the one before and bytes
//!   saved now shorten every later round;
//! - exploration: every [`EXPLORE_EVERY`] batches, a few pages of each class
//!   take a codec the class does not use (raw excepted: its cost is any
//!   class's raw page's), round robin, so estimates stay fresh
//!   ([`EXPLORE_EVERY_RAW`] while every page goes raw anyway);
//! - all raw in effect: when the classes the plan would compress make up
//!   under [`RAW_ENOUGH`] of recent pages, batches skip classification and
//!   go out raw in one pass;
//! - hysteresis: a class changes codec only for a 10 % better score;
//! - the connection's word: when the caller samples the channel's TCP
//!   statistics ([`TransportStats`]) and they show that raw pages were
//!   held up by the receiver, not the link, every page goes raw; while raw
//!   pages wait for the sender, the plan is not probed (see `transport`).
//!
//! Everything here is deterministic: the encoder measures (through a
//! [`Clock`]), the policy only does arithmetic, so tests drive it with
//! simulated links, dirty rates and costs.

#![forbid(unsafe_code)]

mod clock;
mod cost;
mod decide;
mod level;
mod meter;
mod probe;
#[cfg(test)]
mod tests;
mod transport;

pub use clock::{Clock, StepClock, WallClock};
pub use cost::{candidates, candidates_without_zstd, ClassCost, Codec, CostTable};
use level::{LADDER, LEVEL_CHECK, LEVEL_DWELL};
pub use meter::{Key, Meter, Tally};

use crate::classify::{PageClass, Thresholds};
use crate::config::{Config, Mode};
use decide::{Env, Regime, CPU_BOUND_BUSY, OBSERVED_HEADROOM};
use probe::Probe;
pub use probe::{PROBE_BATCHES, PROBE_FIRST, PROBE_INTERVAL_MAX, PROBE_TRUST, SWITCH_MARGIN};
use std::cell::Cell;
use transport::Transport;
pub use transport::{Bottleneck, TransportStats, JUDGE_NS, LINUX_TCP_INFO_MIN_LEN, RECEIVER_BOUND};

/// Distinct sampled byte values at or above which a page counts as random
/// (random data shows about 160 of 256).
const RAW_DISTINCT_BYTES: u32 = 140;
/// Costs are timed on one batch in this many (and on exploring batches).
pub const TIMED_EVERY: u64 = 4;
/// Every this many batches, each class explores one codec it does not use
/// (raw excepted).
pub const EXPLORE_EVERY: u64 = 8;
/// Pages of each class an exploring batch gives to the explored codec.
pub const EXPLORE_PAGES: u32 = 2;
/// Every this many batches, exploration while every page goes raw anyway
/// (raw arm, or all raw in effect).  Such a batch is the only one that
/// classifies pages, at about four times a raw batch's CPU: on a host whose
/// cores are all busy that CPU is migration time.  32 batches of 128 pages
/// still notice a change of workload within 16 MiB per channel.
pub const EXPLORE_EVERY_RAW: u64 = 32;
/// An all-raw plan's exploring batch classifies one page in this many.
/// Classifying is most of such a batch's cost (a profile is about 9 k
/// instructions a page against a raw page's 1.6 k), and the batch only
/// keeps the class mix fresh: on the corpus a sample of one page in four
/// gave a batch's share of pages that could compress within 0.007 of the
/// full count on average, 0.031 at most, and never the other side of
/// [`RAW_ENOUGH`] (`examples/sample_mix.rs`, `docs/DESIGN.md` §4).
pub const RAW_SAMPLE_STRIDE: u32 = 4;
/// Share of recent pages below which the classes a plan compresses (fill
/// pages included, whose tags save a page each) are not worth classifying
/// every page for: the batch goes out raw in one pass instead.  The class
/// mix stays fresh through exploring batches, which always classify (a
/// sample: [`RAW_SAMPLE_STRIDE`]).
pub const RAW_ENOUGH: f64 = 0.03;
/// CPU time to classify one page (`classify::profile`: about 1 µs on the
/// corpus, this host), for [`RAW_ENOUGH`]'s trade.
const CLASSIFY_NS: f64 = 1_000.0;
/// Batches for which a verdict of the connection holds on the raw arm
/// (where raw intervals renew it all the time).
pub const VERDICT_TRUST: u64 = PROBE_TRUST;
/// Share of the link (as measured while it was full) the wire rate must
/// reach for the link to count as full with compressed pages.
const LINK_FULL: f64 = 0.9;
/// Share of the wire rate below which the channels' link shares summed
/// are contradicted by it (see `Policy::full_link_share`).
const SHARE_CONTRADICTED: f64 = 0.5;
/// How many times a plan's encode time a raw page's time on the link
/// must be for raw pages to count as unable to win without a probe.  A
/// compressing channel's page can take more wall time than its encode
/// time when the host's cores are all busy (the next batch waits for a
/// migration thread that got less CPU); twice allows for a channel whose
/// every encode nanosecond costs the host another.  At 1 Gbit/s a raw
/// page takes 2 channels 65 µs, several times any codec's time.
const CONTENTION: f64 = 2.0;
/// A raw page's time on the link (the channels share it) at or above
/// which an all-raw batch still sends the pages the page cache holds as
/// deltas ([`Plan::raw_deltas`]).  Trying a delta costs a
/// cache lookup, an XOR and a sparse or LZ4 pass, 1-3 µs a page (XOR+LZ4
/// at 1.5-3.9 GB/s on real re-sent pages, `docs/results/replay/delta.md`),
/// and such a batch copies every page into the cache; a page re-dirtied in
/// place then costs tens of bytes instead of a page.  16 µs is 2 channels
/// on a link up to about 4 Gbit/s; at 10 Gbit/s (6.5 µs) a raw batch stays
/// one copy and one hash per page.
const RAW_DELTA_WIRE_NS: f64 = 16_000.0;
/// Weight of a new sample in the observed link rate.
const RATE_WEIGHT: f64 = 0.25;
/// Weight of a new batch in the busy fraction.
const BUSY_WEIGHT: f64 = 0.125;

/// Statistics the migration feeds the encoder (all zero = unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Monotonic timestamp, nanoseconds.
    pub timestamp_ns: u64,
    /// Guest pages dirtied per second.
    pub dirty_pages_rate: u64,
    /// Link bandwidth in bytes per second (0 = unknown or unlimited).
    pub bandwidth: u64,
    /// Dirty bitmap syncs so far.
    pub dirty_sync_count: u64,
    /// Dirty bytes still to send.
    pub remaining_bytes: u64,
    /// Bytes sent on all channels so far.
    pub wire_bytes: u64,
    /// Channels compressing in parallel.
    pub channels: u32,
    /// Downtime limit in milliseconds.
    pub downtime_limit_ms: u32,
}

/// What the encoder does with the pages of the next frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Where the page classes begin.
    pub thresholds: Thresholds,
    /// First-choice codec per class, by [`PageClass::index`] (the fill
    /// class's entry is unused: fill pages are always tags).
    pub codecs: [Codec; PageClass::COUNT],
    /// Per class, a codec that the first [`Plan::explore_pages`] pages of
    /// the class take instead, to measure it.
    pub explore: [Option<Codec>; PageClass::COUNT],
    /// Pages per class that take the exploring codec.
    pub explore_pages: u32,
    /// Whether the encoder times this batch's costs ([`TIMED_EVERY`], and
    /// every exploring batch).
    pub timed: bool,
    /// The level of the zstd tier.
    pub zstd_level: u8,
    /// The batch classifies one page in this many (1: every page), those
    /// whose index in the batch is [`Plan::classify_phase`] modulo it;
    /// the others go raw unclassified.  An all-raw plan's exploring batch
    /// classifies a sample ([`RAW_SAMPLE_STRIDE`]): it is there to keep
    /// the class mix fresh, and a sample measures the mix.
    pub classify_stride: u32,
    /// Which pages of each stride are classified (below
    /// [`Plan::classify_stride`]); it moves from one sampled batch to the
    /// next, so that no position in a batch is always in the sample.
    pub classify_phase: u32,
    /// Whether an all-raw plan still sends the pages the page cache holds
    /// as deltas (only with a cache, see [`Policy::set_deltas`], and on a
    /// link that is not fast; `docs/DESIGN.md` §6).  Classified batches try
    /// deltas whenever there is a cache.
    pub raw_deltas: bool,
}

impl Plan {
    /// Whether some class (fill aside) takes `codec` first.
    pub fn uses(&self, codec: Codec) -> bool {
        PageClass::ALL
            .iter()
            .any(|&c| c != PageClass::Fill && self.codecs[c.index()] == codec)
    }

    /// Whether every page goes raw (no class compresses, none explores):
    /// the encoder can then skip classifying pages.
    pub fn all_raw(&self) -> bool {
        self.explore.iter().all(Option::is_none)
            && PageClass::ALL
                .iter()
                .all(|&c| c == PageClass::Fill || self.codecs[c.index()] == Codec::Raw)
    }

    /// The codec the similar and generic classes both take, when that is
    /// one codec (not raw) and the batch is neither timed nor exploring.
    /// Classifying would then only tell fill pages, and the random and
    /// sparse ones when their classes go elsewhere, from the rest, so the
    /// encoder does only that ([`Thresholds::coarse`]: a repeated word, the
    /// zero bytes, the byte variety of a sample, never the word similarity
    /// that takes most of a profile's ~1 µs); and the zstd tier takes the
    /// rest as one group (one flush, not one per class).  Timed batches
    /// still classify, which keeps the class mix and per-class costs
    /// current.
    pub fn uniform(&self) -> Option<Codec> {
        if self.timed || self.explore.iter().any(Option::is_some) {
            return None;
        }
        let codec = self.codecs[PageClass::Generic.index()];
        (codec != Codec::Raw && self.codecs[PageClass::Similar.index()] == codec).then_some(codec)
    }

    /// The codec for the `seen`-th page (from 0) of `class` in the batch.
    pub fn codec(&self, class: PageClass, seen: u32) -> Codec {
        match self.explore[class.index()] {
            Some(c) if seen < self.explore_pages => c,
            _ => self.codecs[class.index()],
        }
    }
}

/// Link rate observed from successive [`LinkStats::wire_bytes`] samples.
#[derive(Debug, Clone, Copy, Default)]
struct Observed {
    last: Option<(u64, u64)>,
    rate: f64,
    /// The rate as it stood the last time the channel was not CPU-bound:
    /// the link's, not the channel's own output.
    trusted: f64,
}

/// The per-encoder controller state.
#[derive(Debug, Clone)]
pub struct Policy {
    mode: Mode,
    sparse_threshold: u8,
    similarity_threshold: u8,
    zstd_enabled: bool,
    /// The zstd level the configuration asked for.
    zstd_level: u8,
    /// Whether the tier's level follows the link ([`level`]).
    adapt_level: bool,
    /// The tier's rung of [`LADDER`] while it adapts, and the batch it
    /// was taken at.
    rung: (usize, u64),
    /// The batch the rung was last evaluated at.
    rung_checked: u64,
    /// What [`Policy::decide`] last saw, and what it chose.
    decided: Cell<Option<(Inputs, [Codec; PageClass::COUNT])>>,
    page_size: u32,
    stats: LinkStats,
    table: CostTable,
    current: [Codec; PageClass::COUNT],
    pinned: Option<[Codec; PageClass::COUNT]>,
    batches: u64,
    cursor: [u64; PageClass::COUNT],
    observed: Observed,
    busy: Option<f64>,
    /// Start time and encode time of the previous batch.
    last_batch: Option<(u64, u64)>,
    probe: Probe,
    transport: Transport,
    /// Whether the encoder can send deltas (it has a page cache).
    deltas: bool,
}

impl Policy {
    /// A policy for `config`.
    pub fn new(config: &Config) -> Self {
        Policy {
            mode: config.mode,
            sparse_threshold: config.sparse_threshold,
            similarity_threshold: config.similarity_threshold,
            zstd_enabled: config.zstd_level > 0,
            zstd_level: config.zstd_level,
            adapt_level: config.mode == Mode::Adaptive && config.zstd_level == LADDER[0].level,
            rung: (0, 0),
            rung_checked: 0,
            decided: Cell::new(None),
            page_size: config.page_size.max(1),
            stats: LinkStats::default(),
            table: CostTable::new(config.page_size.max(1)),
            current: PageClass::ALL.map(|c| candidates(c).first().copied().unwrap_or(Codec::Raw)),
            pinned: None,
            batches: 0,
            cursor: [0; PageClass::COUNT],
            observed: Observed::default(),
            busy: None,
            last_batch: None,
            probe: Probe::new(),
            transport: Transport::default(),
            deltas: false,
        }
    }

    /// Tells the controller whether the encoder can send deltas (it has a
    /// page cache), which all-raw plans then may use
    /// ([`Plan::raw_deltas`]).
    pub fn set_deltas(&mut self, on: bool) {
        self.deltas = on;
    }

    /// Takes the migration's latest statistics; successive samples with a
    /// growing `timestamp_ns` also give the observed link rate.
    pub fn update_stats(&mut self, stats: LinkStats) {
        if let Some((ts, wire)) = self.observed.last {
            if stats.timestamp_ns > ts && stats.wire_bytes >= wire {
                let rate =
                    (stats.wire_bytes - wire) as f64 * 1e9 / (stats.timestamp_ns - ts) as f64;
                self.observed.rate = if self.observed.rate > 0.0 {
                    self.observed.rate + RATE_WEIGHT * (rate - self.observed.rate)
                } else {
                    rate
                };
            } else if stats.timestamp_ns < ts || stats.wire_bytes < wire {
                // A new migration or a reset counter: start over.
                self.observed.rate = 0.0;
                self.observed.trusted = 0.0;
            }
        }
        if !self.cpu_bound() {
            self.observed.trusted = self.observed.rate;
        }
        if stats.timestamp_ns > 0 {
            self.observed.last = Some((stats.timestamp_ns, stats.wire_bytes));
        }
        // A bitmap sync since the last statistics: the period of the batch
        // before (closed by the next one) holds the round's end, the sync
        // and the scan for dirty pages, which neither arm causes.
        if stats.dirty_sync_count != self.stats.dirty_sync_count && self.stats.timestamp_ns > 0 {
            self.probe.skip_period();
        }
        self.stats = stats;
    }

    /// Takes a sample of the channel's connection (see [`TransportStats`]);
    /// call it before encoding a batch, as often as once per batch.
    pub fn update_transport(&mut self, stats: TransportStats) {
        self.transport.on_sample(stats, self.batches);
    }

    /// What limited the channel the last time it sent raw pages, if its
    /// connection was sampled (see [`Policy::update_transport`]).
    pub fn bottleneck(&self) -> Option<Bottleneck> {
        self.transport.verdict(self.batches, u64::MAX)
    }

    /// The statistics last given.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Link rate observed from `wire_bytes` over time, bytes/s (0 = none).
    pub fn observed_rate(&self) -> f64 {
        self.observed.rate
    }

    /// Feeds one batch's measurement of one class: `pages` pages of `class`
    /// routed to `codec` became `bytes` bytes (payloads and table entries)
    /// in `ns` nanoseconds.
    pub fn record_class(
        &mut self,
        class: PageClass,
        codec: Codec,
        pages: u64,
        bytes: u64,
        ns: u64,
    ) {
        self.table.record(class, codec, pages, bytes, ns);
    }

    /// Feeds one batch's page count per class.
    pub fn record_mix(&mut self, counts: &[u64; PageClass::COUNT]) {
        self.table.record_mix(counts);
    }

    /// Takes what the encoder measured of one batch: its class mix (when it
    /// classified pages) and, on timed batches, the cost of every (class,
    /// codec) pair it used.  An all-raw batch teaches nothing about classes
    /// or codecs; exploring batches, which always classify, keep the
    /// estimates fresh.
    pub fn observe(&mut self, meter: &Meter) {
        if let Some(mix) = meter.mix() {
            self.record_mix(mix);
        }
        for class in PageClass::ALL {
            if class == PageClass::Fill {
                continue;
            }
            for codec in Codec::ALL {
                if let Some(t) = meter.get(class, codec) {
                    self.record_class(class, codec, t.pages, t.bytes, t.ns);
                }
            }
        }
    }

    /// Feeds one batch's timing: it started at `start_ns` (on the encoder's
    /// clock), encoding its `pages` pages took `busy_ns`, and the frame was
    /// `out_bytes` long.  A batch's period runs from its start to the next
    /// batch's start, so it holds the socket write after encoding.  The
    /// busy share of that period tells whether the channel waits on the
    /// link (the observed rate is the link's) or on its own CPU (the link
    /// may be faster than observed); the probe compares periods per page.
    pub fn record_batch(&mut self, start_ns: u64, busy_ns: u64, pages: u64, out_bytes: u64) {
        if let Some((prev_start, prev_busy)) = self.last_batch {
            let period = start_ns.saturating_sub(prev_start);
            // A probe batch's share says nothing about the current arm's.
            if period > 0 && !self.probe.last_was_probe() {
                let share = (prev_busy as f64 / period as f64).clamp(0.0, 1.0);
                let busy = self.busy.get_or_insert(share);
                *busy += BUSY_WEIGHT * (share - *busy);
            }
        }
        self.last_batch = Some((start_ns, busy_ns));
        self.transport.on_written(out_bytes);
        self.probe
            .on_batch(self.batches, start_ns, out_bytes, pages);
    }

    /// The link rate the cost model works with, bytes/s over all channels:
    /// QEMU's `max-bandwidth` when set, else what was measured (the wire
    /// rate while the channel is not CPU-bound; a recent raw probe, or on
    /// a sampled connection the rate it carried while it filled the link,
    /// and its bytes per busy second times the channels: the largest).
    pub fn link_estimate(&self) -> Option<f64> {
        if self.stats.bandwidth > 0 {
            return Some(self.stats.bandwidth as f64);
        }
        self.measured_link()
    }

    /// Probe batches sent so far (see [`crate::policy`]).
    pub fn probe_batches(&self) -> u64 {
        self.probe.batches()
    }

    /// Whether the channel currently sends every page raw because probing
    /// found that faster than the plan.
    pub fn raw_arm(&self) -> bool {
        self.probe.raw_arm()
    }

    /// Times probing changed the current arm.
    pub fn arm_switches(&self) -> u64 {
        self.probe.switches()
    }

    fn cpu_bound(&self) -> bool {
        self.busy.is_some_and(|b| b >= CPU_BOUND_BUSY)
    }

    fn measured_link(&self) -> Option<f64> {
        let cpu_bound = self.cpu_bound();
        // While CPU-bound the wire shows the channel's own output; the
        // rate seen the last time it was not stands (trusting the new one
        // would spiral: a slower codec lowers the rate, which calls for a
        // slower codec), and so does the last probe, however old.
        let channels = f64::from(self.stats.channels.max(1));
        let rate = if cpu_bound {
            self.observed.trusted
        } else if self.observed.rate > 0.0 {
            self.observed.rate
        } else {
            // Until the migration's statistics give a wire rate (two
            // samples 100 ms apart), what the connection delivered stands
            // in, on the same terms: the channel is not CPU-bound.
            self.transport
                .delivered(self.batches, PROBE_TRUST)
                .map_or(0.0, |r| r * channels)
        };
        let observed = (rate > 0.0).then_some(rate * OBSERVED_HEADROOM);
        // A sampled connection measures its link share while the link is
        // full, from the bytes the peer acknowledged; a probe window's
        // write periods can be flattered by socket buffers (at 1 Gbit/s a
        // window showed four times the link).
        let probed = if self.transport.sampled() {
            let max_age = if cpu_bound { u64::MAX } else { PROBE_TRUST };
            self.transport.link_share(self.batches, max_age)
        } else {
            self.probe.estimate(self.batches, cpu_bound)
        }
        .map(|r| r * channels);
        // A connection's bytes per busy second under raw pages stay where
        // the wire rate falls because the channels wait for pages or a
        // CPU.  Times the channels it is the link while the link is full
        // (all connections busy at once, each with its share); while it is
        // not, busy times need not overlap and it may be up to that many
        // times the link, which leans to fewer compressing passes: the
        // right way while the link waits, and raw's bytes, once they fill
        // it, measure it again.  It stands until measured again, however
        // old: a link that got slower keeps the connection busier and so
        // is measured sooner.
        let busy = self
            .transport
            .busy_rate(self.batches, u64::MAX)
            .map(|r| r * channels);
        // A figure of 0 (nothing acknowledged yet) bounds nothing.
        [observed, probed, busy]
            .into_iter()
            .flatten()
            .filter(|&r| r > 0.0)
            .reduce(f64::max)
    }

    /// Whether probing the other arm could pay: adaptive, not pinned, no
    /// `max-bandwidth`;
    /// on the plan arm, when some class compresses and the connection does
    /// not show that raw cannot win; on the raw arm, when
    /// the plan's encode time per page (which a channel cannot beat) is
    /// below the raw arm's time per page.
    fn wants_probe(&self, codecs: &[Codec; PageClass::COUNT]) -> bool {
        // A configured link leaves only contention unknown; the model is
        // trusted then, and a plan shown by [`Policy::plan`] is the one used.
        if self.mode != Mode::Adaptive || self.pinned.is_some() || self.stats.bandwidth > 0 {
            return false;
        }
        if !self.probe.raw_arm() {
            return !self.raw_cannot_win(codecs)
                && PageClass::ALL
                    .iter()
                    .any(|&c| c != PageClass::Fill && codecs[c.index()] != Codec::Raw);
        }
        // Raw pages that wait for the receiver or the sender cannot go
        // faster compressed.  The network verdict must hold twice in a
        // row: on a busy host single verdicts swing.
        if let Some(v) = self.transport.verdict(self.batches, VERDICT_TRUST) {
            if v != Bottleneck::Network || self.transport.streak() < 2 {
                return false;
            }
        }
        let encode_ns = self.plan_encode_ns(codecs);
        self.probe
            .current_ns_per_page()
            .is_some_and(|raw| encode_ns < SWITCH_MARGIN * raw)
    }

    /// Whether the channel's connection shows that raw pages cannot beat
    /// the plan, so that a raw probe would only cost bytes:
    /// - its own compressed bytes kept it busy on the network for at least
    ///   the plan's ratio (its bytes per page over a page) of the time, by
    ///   the latest judgement (at most [`VERDICT_TRUST`] batches old): raw
    ///   pages, 1/ratio times the bytes, would need all of the time or
    ///   more;
    /// - the channels' compressed bytes together fill the link: the wire
    ///   rate is at least [`LINK_FULL`] of the link as this connection's
    ///   share last measured while it was full, times the channels.  Then
    ///   the link is the migration's bottleneck, even when this channel
    ///   waits for a CPU and raw would be faster for it alone: its raw
    ///   bytes would take the link from the other channels;
    /// - or the link (that share times the channels, or the wire rate when
    ///   that is higher: the link got faster) carries a raw page of every
    ///   channel in at least [`SWITCH_MARGIN`] of the plan's time per page;
    /// - or, whether or not the link was ever full, the link's capacity
    ///   (that share, or the bytes per busy second of raw pages, as the
    ///   raw start measures them, times the channels) carries a raw page
    ///   of every channel in at least [`CONTENTION`] times the plan's
    ///   encode time per page.  The time per page a channel measures also
    ///   holds its waits for pages, which raw pages would wait for as
    ///   well: in the late rounds of a 1 Gbit/s migration the channels
    ///   waited, probed raw, and switched to it.
    ///
    /// A probe window would only measure the link again, through socket
    /// buffers that flatter raw batches.  A sampled connection's first
    /// probe waits for the first judgement of its compressing intervals.
    fn raw_cannot_win(&self, codecs: &[Codec; PageClass::COUNT]) -> bool {
        if !self.transport.sampled() {
            return false;
        }
        if self
            .transport
            .compressed_busy(self.batches, u64::MAX)
            .is_none()
        {
            return true;
        }
        let busy = self.transport.compressed_busy(self.batches, VERDICT_TRUST);
        if busy.is_some_and(|busy| busy >= self.plan_ratio(codecs)) {
            return true;
        }
        let channels = f64::from(self.stats.channels.max(1));
        let raw_wire_ns = |link: f64| f64::from(self.page_size) * channels * 1e9 / link;
        let share = self.full_link_share();
        if let Some(share) = share {
            if self.observed.rate >= LINK_FULL * share * channels {
                return true;
            }
            let link = (share * channels).max(self.observed.rate);
            if self
                .probe
                .current_ns_per_page()
                .is_some_and(|current| raw_wire_ns(link) >= SWITCH_MARGIN * current)
            {
                return true;
            }
        }
        // Only figures that measure the link's capacity can say raw pages
        // would not get through faster; the wire rate is a lower bound.
        // The wire rate raises such a figure (it is a lower bound too), but
        // alone it says nothing of the capacity.
        let capacity = [share, self.transport.busy_rate(self.batches, u64::MAX)]
            .into_iter()
            .flatten()
            .reduce(f64::max)
            .map(|c| c.max(self.observed.rate / channels));
        capacity.is_some_and(|per_channel| {
            raw_wire_ns(per_channel * channels) >= CONTENTION * self.plan_encode_ns(codecs)
        })
    }

    /// The connection's share of the link (bytes/s) as last measured while
    /// the link was full, however old, unless the migration's wire rate
    /// contradicts it: channels that together move more than twice their
    /// shares' sum did not fill a link of that size.  On a host whose
    /// cores are all busy (a TCG vCPU, both QEMUs), acknowledgements stall
    /// while the data is in flight, so the connection counts as busy on
    /// the network with little or nothing acknowledged: at 10 Gbit/s such
    /// intervals gave shares of 0 and 24 MB/s while the wire carried
    /// 437 MB/s, and a channel took its compressed bytes for a full link
    /// and never probed raw (twice the time of `none`).  Per connection a
    /// share is noisy, so only a large contradiction counts: at 1 Gbit/s,
    /// where shares are the link's, leaving out those below 90 % of the
    /// wire rate let raw probes through and cost 10-25 % more bytes.
    fn full_link_share(&self) -> Option<f64> {
        let channels = f64::from(self.stats.channels.max(1));
        self.transport
            .link_share(self.batches, u64::MAX)
            .filter(|&share| {
                share > 0.0 && share * channels >= SHARE_CONTRADICTED * self.observed.rate
            })
    }

    /// The plan's encode time per page (ns), by the cost estimates and
    /// the class mix: what a channel cannot beat on this plan.
    fn plan_encode_ns(&self, codecs: &[Codec; PageClass::COUNT]) -> f64 {
        PageClass::ALL
            .iter()
            .map(|&c| self.table.mix(c) * self.table.get(c, codecs[c.index()]).ns_per_page)
            .sum()
    }

    /// The bytes per page of the routing `codecs` over a raw page's, by
    /// the cost estimates and the class mix.
    fn plan_ratio(&self, codecs: &[Codec; PageClass::COUNT]) -> f64 {
        let bytes: f64 = PageClass::ALL
            .iter()
            .map(|&c| self.table.mix(c) * self.table.get(c, codecs[c.index()]).bytes_per_page)
            .sum();
        bytes / f64::from(self.page_size)
    }

    /// The cost estimate of `codec` on `class`.
    pub fn class_cost(&self, class: PageClass, codec: Codec) -> ClassCost {
        self.table.get(class, codec)
    }

    /// Replaces the cost estimate of `codec` on `class` (tests, or callers
    /// with better priors); non-finite or negative values are ignored.
    pub fn set_class_cost(&mut self, class: PageClass, codec: Codec, cost: ClassCost) {
        self.table.set(class, codec, cost);
    }

    /// Forces every class onto the given codecs (`None` gives control
    /// back): for tests and benchmarks.  No exploration while pinned.
    pub fn pin(&mut self, codecs: Option<[Codec; PageClass::COUNT]>) {
        self.pinned = codecs;
    }

    /// Whether the dirty rate is at or above half the effective bandwidth
    /// under the current choices, so that bytes break ties (see
    /// [`crate::policy`]).
    pub fn dirty_bound(&self) -> bool {
        self.mode == Mode::Adaptive
            && self.env().regime(&self.table, &self.current) == Regime::DirtyBound
    }

    /// The plan the next frame would use, without advancing the
    /// controller (see [`Policy::next_plan`]).
    pub fn plan(&self) -> Plan {
        let codecs = self.decide();
        self.routed_plan(codecs, self.batches + 1)
    }

    /// The plan for batch `batch` from the chosen `codecs`: every class
    /// raw on the raw arm, on a raw probe batch or when the classes that
    /// compress are too rare to pay for classifying ([`RAW_ENOUGH`]).  The
    /// fill class's entry is left alone: fill pages are tags whenever a
    /// batch classifies, and an all-raw batch does not look at them.
    /// Exploration goes on either way, so the plan's costs and the class
    /// mix stay known.  An all-raw plan says whether it sends the pages
    /// the cache holds as deltas ([`Plan::raw_deltas`]).
    fn routed_plan(&self, codecs: [Codec; PageClass::COUNT], batch: u64) -> Plan {
        let mut plan =
            if self.probe.sends_raw() || self.raw_in_effect(&codecs) || self.measuring_link() {
                let mut plan = self.make_plan(raw_but_fill(&codecs), batch, EXPLORE_EVERY_RAW);
                plan.classify_stride = RAW_SAMPLE_STRIDE;
                plan.classify_phase =
                    ((batch / EXPLORE_EVERY_RAW) % u64::from(RAW_SAMPLE_STRIDE)) as u32;
                plan
            } else {
                self.make_plan(codecs, batch, EXPLORE_EVERY)
            };
        // A probe batch (whose exploration `next_plan` then clears) never
        // sends deltas: `raw_deltas_pay` is false while probing.
        plan.raw_deltas = plan.all_raw() && self.raw_deltas_pay();
        plan
    }

    /// Whether the channel sends raw pages until its connection has
    /// measured the link: adaptive, not pinned, no `max-bandwidth`, a
    /// sampled connection, no link estimate yet, and the link has kept up
    /// with the raw batches so far.  Raw pages cost the least CPU, so on a
    /// fast link the measuring is free, and their first
    /// [`transport::FIRST_BUSY_JUDGE_NS`] of busy time give the link.  A
    /// link that falls a batch behind is slower than raw pages come (every
    /// further raw batch would wait in the socket buffers): the channel
    /// then compresses blind, as one without samples does, until the busy
    /// time measures it.  Compressing blind from the start cost every batch
    /// a codec's time until a probe showed raw faster, on a 384 MiB guest
    /// at 10 Gbit/s the first 100–150 ms of a 0.3 s migration.
    fn measuring_link(&self) -> bool {
        self.mode == Mode::Adaptive
            && self.pinned.is_none()
            && self.stats.bandwidth == 0
            && self.transport.sampled()
            && !self.transport.backlogged()
            && self.link_estimate().is_none()
    }

    /// Whether the pages of an all-raw batch that the page cache holds go
    /// as deltas ([`Plan::raw_deltas`]), given a cache.  A plan is
    /// all raw when the link outruns every codec, and also when the pages
    /// do not compress (random data, [`RAW_ENOUGH`]): a page re-dirtied in
    /// place is then still tens of bytes as a delta, and a link that the
    /// deltas leave idle is what made raw look free.  Without this, a
    /// guest updating words of random pages at 250 000 pages/s sent 3.5 M
    /// pages raw and 21 k as deltas at 1 Gbit/s and did not converge in
    /// 120 s, in one run of three (`docs/benchmark.md`, *The
    /// non-convergence scenario*).  So deltas go on unless the link is
    /// fast ([`RAW_DELTA_WIRE_NS`]), the channel is measuring it with raw
    /// pages, or the batch is a raw probe (whose figure must be raw's).
    /// With no figure of the link at all, the bytes decide: deltas.
    fn raw_deltas_pay(&self) -> bool {
        if !self.deltas || self.measuring_link() || self.probe.probing() {
            return false;
        }
        let Some(link) = self.link_estimate() else {
            return true;
        };
        let channels = f64::from(self.stats.channels.max(1));
        f64::from(self.page_size) * channels * 1e9 / link >= RAW_DELTA_WIRE_NS
    }

    /// Whether the classes `codecs` compress (fill included) made up less
    /// than [`RAW_ENOUGH`] of recent pages (adaptive mode only: the other
    /// modes send what they are told), unless the link is known and the
    /// wire time their compression saves exceeds the channels' time to
    /// classify every page ([`CLASSIFY_NS`]): on a slow link the few pages
    /// that compress are worth finding.
    fn raw_in_effect(&self, codecs: &[Codec; PageClass::COUNT]) -> bool {
        if self.mode != Mode::Adaptive || self.pinned.is_some() {
            return false;
        }
        let compressing = PageClass::ALL
            .iter()
            .filter(|&&c| c == PageClass::Fill || codecs[c.index()] != Codec::Raw);
        let compressed: f64 = compressing.clone().map(|&c| self.table.mix(c)).sum();
        if compressed >= RAW_ENOUGH {
            return false;
        }
        let Some(link) = self.link_estimate() else {
            return true;
        };
        let page = f64::from(self.page_size);
        let saved_bytes: f64 = compressing
            .map(|&c| {
                let bytes = match c {
                    PageClass::Fill => 4.0,
                    _ => self.table.get(c, codecs[c.index()]).bytes_per_page,
                };
                self.table.mix(c) * (page - bytes).max(0.0)
            })
            .sum();
        let channels = f64::from(self.stats.channels.max(1));
        saved_bytes * 1e9 / link <= CLASSIFY_NS / channels
    }

    /// The plan for the next frame: commits the choices (the base of the
    /// next hysteresis step) and advances the exploration and probe
    /// schedules.  A probe batch sends every page raw and leaves the
    /// committed choices as they are.
    pub fn next_plan(&mut self) -> Plan {
        // While the link is measured the pages go raw, and raw is the
        // choice a codec must then beat by the usual margin.
        let codecs = if self.measuring_link() {
            raw_but_fill(&self.current)
        } else {
            self.decide()
        };
        if self.pinned.is_none() {
            self.current = codecs;
            self.adapt_level(&codecs);
        }
        self.batches += 1;
        // A new verdict from raw intervals (a probe window's, or all raw in
        // effect) that the receiver held raw pages up: raw is as fast as
        // the destination takes pages, so it is the arm.  Only the receiver
        // settles it; a sender verdict may come from an idle gap (a bitmap
        // sync), and the probe's periods judge that case.
        if self.mode == Mode::Adaptive
            && self.pinned.is_none()
            && self.stats.bandwidth == 0
            && self.transport.verdict(self.batches, 1) == Some(Bottleneck::Receiver)
        {
            self.probe.settle_raw();
        }
        // A raw window's own raw intervals measure the link's capacity;
        // once that shows raw cannot win, the window's remaining batches
        // would only send more bytes (in the late rounds of a 1 Gbit/s
        // migration, waits for pages made raw and plan periods look alike,
        // and a window ran to its end).
        if self.probe.probing() && !self.probe.raw_arm() && self.raw_cannot_win(&codecs) {
            self.probe.end_raw_window();
        }
        let wanted = self.wants_probe(&codecs);
        let probing = self.probe.on_plan(self.batches, wanted);
        let mut plan = self.routed_plan(codecs, self.batches);
        if probing {
            // The probed arm's own figure, undisturbed by exploration.
            plan.explore = [None; PageClass::COUNT];
        }
        for class in PageClass::ALL {
            if plan.explore[class.index()].is_some() {
                self.cursor[class.index()] += 1;
            }
        }
        // A batch of deltas is no raw interval: its busy time does not
        // measure the link.
        self.transport.on_batch(plan.all_raw() && !plan.raw_deltas);
        plan
    }

    /// Moves the zstd tier to another rung of [`LADDER`] when the link
    /// says it pays (the regime is judged under the routing `codecs`), at
    /// most once per [`LEVEL_DWELL`] batches, looking once per
    /// [`LEVEL_CHECK`]; the tier's estimates move with it.
    fn adapt_level(&mut self, codecs: &[Codec; PageClass::COUNT]) {
        let (rung, since) = self.rung;
        if !self.adapt_level
            || self.batches < since + LEVEL_DWELL
            || self.batches < self.rung_checked + LEVEL_CHECK
        {
            return;
        }
        self.rung_checked = self.batches;
        let env = self.env();
        let regime = env.regime(&self.table, codecs);
        if !matches!(regime, Regime::Converging | Regime::DirtyBound) {
            return;
        }
        let offered = PageClass::ALL.map(|c| self.candidates(c));
        let next = env.choose_rung(regime, &self.table, &offered, rung);
        if next != rung {
            let (old, new) = (LADDER[rung], LADDER[next]);
            self.table
                .scale(Codec::Zstd, new.cpu / old.cpu, new.size / old.size);
            self.rung = (next, self.batches);
        }
    }

    /// The zstd level the next frames use.
    pub fn zstd_level(&self) -> u8 {
        if self.adapt_level {
            LADDER[self.rung.0].level
        } else {
            self.zstd_level
        }
    }

    fn make_plan(&self, codecs: [Codec; PageClass::COUNT], batch: u64, every: u64) -> Plan {
        let exploring =
            self.mode != Mode::Fixed && self.pinned.is_none() && batch.is_multiple_of(every);
        let explore = PageClass::ALL.map(|class| {
            if !exploring {
                return None;
            }
            // Raw is never explored: its bytes are a page's, and its time
            // is any class's raw page's (see [`CostTable::record`]).
            let mut others = self
                .candidates(class)
                .iter()
                .copied()
                .filter(|&c| c != codecs[class.index()] && c != Codec::Raw);
            let count = others.clone().count() as u64;
            let pick = self.cursor[class.index()].checked_rem(count)?;
            others.nth(pick as usize)
        });
        Plan {
            thresholds: Thresholds {
                sparse: self.sparse_threshold,
                similarity: self.similarity_threshold,
                random_distinct_bytes: RAW_DISTINCT_BYTES,
            },
            codecs,
            explore,
            explore_pages: EXPLORE_PAGES,
            timed: explore.iter().any(Option::is_some)
                || batch.saturating_sub(1).is_multiple_of(TIMED_EVERY),
            zstd_level: self.zstd_level(),
            classify_stride: 1,
            classify_phase: 0,
            raw_deltas: false,
        }
    }

    /// `class`'s candidates that this configuration offers.
    fn candidates(&self, class: PageClass) -> &'static [Codec] {
        if self.zstd_enabled {
            candidates(class)
        } else {
            candidates_without_zstd(class)
        }
    }

    /// The codec per class (fixed, pinned, or chosen by the cost model).
    /// The choice is a function of what the rules see, so when that is
    /// what the last choice saw (most batches: costs are timed one batch
    /// in [`TIMED_EVERY`], and the link and the dirty rate move with the
    /// migration's statistics and the connection's judgements), the last
    /// choice stands: scoring every routing of the classes costs about
    /// 60 k instructions, 490 a page of a 128-page batch (callgrind,
    /// `examples/raw_path.rs`; with this, the whole choice costs 220).
    fn decide(&self) -> [Codec; PageClass::COUNT] {
        if let Some(pinned) = self.pinned {
            return pinned;
        }
        let env = self.env();
        let inputs = Inputs {
            env,
            table: self.table,
            current: self.current,
        };
        match self.decided.get() {
            Some((seen, codecs)) if seen == inputs => codecs,
            _ => {
                let codecs = self.choose(env);
                self.decided.set(Some((inputs, codecs)));
                codecs
            }
        }
    }

    /// [`Policy::decide`]'s choice, made afresh under `env`.
    fn choose(&self, env: Env) -> [Codec; PageClass::COUNT] {
        let regime = match self.mode {
            Mode::Fixed => return self.fixed_codecs(),
            Mode::Adaptive => env.regime(&self.table, &self.current),
            Mode::Bytes => Regime::MinBytes,
            Mode::Cpu => Regime::LinkUnknown,
        };
        if matches!(regime, Regime::Converging | Regime::DirtyBound) {
            let offered = PageClass::ALL.map(|c| self.candidates(c));
            return env.choose_joint(regime, &self.table, &offered, &self.current);
        }
        PageClass::ALL.map(|class| {
            let current = self.current[class.index()];
            if class == PageClass::Fill {
                return current;
            }
            let costs = self
                .candidates(class)
                .iter()
                .map(|&c| (c, self.table.get(class, c)));
            env.choose(regime == Regime::MinBytes, costs, current)
        })
    }

    /// MECOM's routing: the configured thresholds, zstd (when on) for every
    /// compressible class.
    fn fixed_codecs(&self) -> [Codec; PageClass::COUNT] {
        PageClass::ALL.map(|class| match class {
            PageClass::Fill | PageClass::Random => Codec::Raw,
            _ if self.zstd_enabled => Codec::Zstd,
            PageClass::Sparse => Codec::Sparse,
            PageClass::Similar => Codec::Wkdm,
            PageClass::Generic => Codec::Lz,
        })
    }

    fn env(&self) -> Env {
        Env::new(&self.stats, self.measured_link(), f64::from(self.page_size))
    }
}

/// Everything [`Policy::decide`]'s choice depends on.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Inputs {
    env: Env,
    table: CostTable,
    current: [Codec; PageClass::COUNT],
}

/// `codecs` with every class but fill sent raw (fill pages cost four
/// bytes whatever the link).
fn raw_but_fill(codecs: &[Codec; PageClass::COUNT]) -> [Codec; PageClass::COUNT] {
    PageClass::ALL.map(|c| match c {
        PageClass::Fill => codecs[c.index()],
        _ => Codec::Raw,
    })
}
