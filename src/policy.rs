//! From link statistics to per-page routing: MECOM §III-A as a small cost
//! model.
//!
//! MECOM's condition for compression to pay is `R_cpr * rho > R_tran`: pages
//! must leave the compressor (at rate `R_cpr`, shrunk by `rho`) faster than
//! the link would carry them raw.  Generalised to tiers: for each tier we know
//! (by prior, then by measurement) its cost in CPU-seconds per input byte `t`
//! and its output ratio `r`.  With `C` channels compressing in parallel and a
//! link of `B` bytes/s, a byte of guest memory takes
//! `max(t / C, r / B)` seconds to reach the destination; the tier with the
//! smaller time wins.  A slow link therefore pulls pages into the high-ratio
//! tier, a fast link keeps them on the fast path.
//!
//! Within the fast path the similarity threshold moves: when the guest
//! dirties memory faster than the link carries it, or the CPU is the
//! bottleneck, more pages take WKdm (the cheapest codec that is good enough);
//! when the link is the bottleneck, more pages take LZ for its ratio.
//!
//! `docs/DESIGN.md` explains the model; this is the first policy, kept
//! deterministic so it can be tested with simulated links.

#![forbid(unsafe_code)]

use crate::config::{Config, Mode};

/// How far the adaptive policy moves the similarity threshold.
const SIMILARITY_SHIFT: u8 = 20;
/// Distinct sampled byte values at or above which a page is sent raw
/// without trying a codec (random data shows about 160 of 256).
const RAW_DISTINCT_BYTES: u32 = 140;
/// The high-ratio tier must be this much faster end to end to be chosen,
/// so the choice does not flap on noise.
const HYSTERESIS: f64 = 0.9;
/// Weight of a new measurement in the moving averages.
const EWMA_WEIGHT: f64 = 0.125;

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

/// Cost of one tier: seconds of CPU per input byte, and output/input ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierCost {
    /// CPU seconds per input byte.
    pub secs_per_byte: f64,
    /// Output bytes per input byte.
    pub ratio: f64,
}

impl TierCost {
    /// Seconds for one input byte to reach the destination.
    fn time(&self, channels: f64, bandwidth: f64) -> f64 {
        (self.secs_per_byte / channels).max(self.ratio / bandwidth)
    }

    fn blend(&mut self, measured: TierCost) {
        self.secs_per_byte += EWMA_WEIGHT * (measured.secs_per_byte - self.secs_per_byte);
        self.ratio += EWMA_WEIGHT * (measured.ratio - self.ratio);
    }
}

/// Which tier a measurement belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Zero/fill/sparse/WKdm/LZ/raw.
    Fast,
    /// zstd groups.
    HighRatio,
}

/// What the encoder does with the pages of the next frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Zero-byte percentage at or above which sparse coding is tried.
    pub sparse_threshold: u8,
    /// Similar-word percentage at or above which WKdm is tried.
    pub similarity_threshold: u8,
    /// Whether LZ-bound pages go to the zstd tier instead.
    pub high_ratio: bool,
    /// Distinct sampled bytes at or above which a page is sent raw.
    pub raw_distinct_bytes: u32,
}

/// The per-encoder policy state.
#[derive(Debug, Clone)]
pub struct Policy {
    mode: Mode,
    sparse_threshold: u8,
    similarity_threshold: u8,
    zstd_enabled: bool,
    stats: LinkStats,
    fast: TierCost,
    high_ratio: TierCost,
    page_size: u32,
}

impl Policy {
    /// Priors: single-core rates and ratios measured on the sample corpus
    /// (docs/DESIGN.md); replaced by measurements as frames are encoded.
    pub const FAST_PRIOR: TierCost = TierCost {
        secs_per_byte: 1.0 / 1.5e9,
        ratio: 0.45,
    };
    /// Prior for the zstd tier.
    pub const HIGH_RATIO_PRIOR: TierCost = TierCost {
        secs_per_byte: 1.0 / 0.4e9,
        ratio: 0.33,
    };

    /// A policy for `config`.
    pub fn new(config: &Config) -> Self {
        Policy {
            mode: config.mode,
            sparse_threshold: config.sparse_threshold,
            similarity_threshold: config.similarity_threshold,
            zstd_enabled: config.zstd_level > 0,
            stats: LinkStats::default(),
            fast: Self::FAST_PRIOR,
            high_ratio: Self::HIGH_RATIO_PRIOR,
            page_size: config.page_size,
        }
    }

    /// Takes the migration's latest statistics.
    pub fn update_stats(&mut self, stats: LinkStats) {
        self.stats = stats;
    }

    /// The statistics last given.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Feeds a measurement of `tier`: `bytes_in` page bytes became
    /// `bytes_out` bytes in `ns` nanoseconds.
    pub fn record(&mut self, tier: Tier, bytes_in: u64, bytes_out: u64, ns: u64) {
        if bytes_in == 0 {
            return;
        }
        let measured = TierCost {
            secs_per_byte: ns as f64 * 1e-9 / bytes_in as f64,
            ratio: bytes_out as f64 / bytes_in as f64,
        };
        match tier {
            Tier::Fast => self.fast.blend(measured),
            Tier::HighRatio => self.high_ratio.blend(measured),
        }
    }

    /// Current cost estimates (fast, high-ratio).
    pub fn costs(&self) -> (TierCost, TierCost) {
        (self.fast, self.high_ratio)
    }

    /// The plan for the next frame.
    pub fn plan(&self) -> Plan {
        let fixed = Plan {
            sparse_threshold: self.sparse_threshold,
            similarity_threshold: self.similarity_threshold,
            high_ratio: self.zstd_enabled,
            raw_distinct_bytes: RAW_DISTINCT_BYTES,
        };
        if self.mode == Mode::Fixed {
            return fixed;
        }
        let adaptive = Plan {
            high_ratio: false,
            ..fixed
        };
        if self.stats.bandwidth == 0 {
            // Unknown or unlimited link: only CPU time matters, so the
            // fast path.
            return adaptive;
        }
        let bandwidth = self.stats.bandwidth as f64;
        let channels = f64::from(self.stats.channels.max(1));
        let fast_time = self.fast.time(channels, bandwidth);
        let high_ratio =
            self.zstd_enabled && self.high_ratio.time(channels, bandwidth) < HYSTERESIS * fast_time;
        let dirty_bytes_rate = self.stats.dirty_pages_rate as f64 * f64::from(self.page_size);
        let cpu_bound = self.fast.secs_per_byte / channels > self.fast.ratio / bandwidth;
        let similarity_threshold = if dirty_bytes_rate > bandwidth || cpu_bound {
            self.similarity_threshold.saturating_sub(SIMILARITY_SHIFT)
        } else {
            self.similarity_threshold
                .saturating_add(SIMILARITY_SHIFT)
                .min(100)
        };
        Plan {
            similarity_threshold,
            high_ratio,
            ..adaptive
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GBIT: u64 = 125_000_000;

    fn policy(mode: Mode) -> Policy {
        Policy::new(&Config {
            mode,
            ..Config::default()
        })
    }

    fn link(bandwidth: u64, dirty_pages_rate: u64, channels: u32) -> LinkStats {
        LinkStats {
            bandwidth,
            dirty_pages_rate,
            channels,
            ..LinkStats::default()
        }
    }

    fn base() -> u8 {
        Config::default().similarity_threshold
    }

    #[test]
    fn unknown_link_keeps_the_fast_path() {
        let p = policy(Mode::Adaptive);
        let plan = p.plan();
        assert!(!plan.high_ratio);
        assert_eq!(plan.similarity_threshold, base());
    }

    #[test]
    fn slow_link_takes_the_high_ratio_tier() {
        let mut p = policy(Mode::Adaptive);
        p.update_stats(link(GBIT, 1000, 2));
        assert!(p.plan().high_ratio);
    }

    #[test]
    fn fast_link_keeps_the_fast_path() {
        let mut p = policy(Mode::Adaptive);
        p.update_stats(link(10 * GBIT, 1000, 2));
        assert!(!p.plan().high_ratio);
    }

    #[test]
    fn dirty_rate_above_the_link_widens_the_fast_path() {
        let mut p = policy(Mode::Adaptive);
        // 1 Gbit/s link, guest dirtying 2 GB/s.
        p.update_stats(link(GBIT, 500_000, 2));
        assert_eq!(p.plan().similarity_threshold, base() - SIMILARITY_SHIFT);
        // Same link, quiet guest: the link is the bottleneck, favour ratio.
        p.update_stats(link(GBIT, 100, 2));
        assert_eq!(
            p.plan().similarity_threshold,
            (base() + SIMILARITY_SHIFT).min(100)
        );
    }

    #[test]
    fn measurements_move_the_decision() {
        let mut p = policy(Mode::Adaptive);
        p.update_stats(link(GBIT, 1000, 2));
        assert!(p.plan().high_ratio);
        // zstd turns out to be very slow and barely better: stop using it.
        for _ in 0..100 {
            p.record(Tier::HighRatio, 1 << 20, 900_000, 50_000_000);
        }
        assert!(!p.plan().high_ratio);
        let (_, hr) = p.costs();
        assert!(hr.ratio > 0.8);
    }

    #[test]
    fn fixed_mode_ignores_the_link() {
        let mut p = policy(Mode::Fixed);
        p.update_stats(link(GBIT, 500_000, 2));
        let plan = p.plan();
        assert!(plan.high_ratio);
        assert_eq!(plan.similarity_threshold, base());
        let p = Policy::new(&Config {
            mode: Mode::Fixed,
            zstd_level: 0,
            ..Config::default()
        });
        assert!(!p.plan().high_ratio);
    }
}
