//! The decision rules: which codec a class takes, given its cost estimates,
//! the link and the dirty rate.

#![forbid(unsafe_code)]

use super::cost::{ClassCost, Codec, CostTable};
use super::LinkStats;
use crate::classify::PageClass;

/// A challenger must beat the current codec's score by this factor.
const HYSTERESIS: f64 = 0.9;
/// Busy share above which a channel is CPU-bound: the rate it observes on
/// the wire is then its own output rate, not the link's.
pub(super) const CPU_BOUND_BUSY: f64 = 0.8;
/// The observed wire rate is a lower bound of the link: assume a bit more.
pub(super) const OBSERVED_HEADROOM: f64 = 1.1;
/// A codec "compresses" when its pages average at most this share of a page.
const COMPRESS_LIMIT: f64 = 31.0 / 32.0;
/// Share of the effective bandwidth at or above which the dirty rate
/// decides: each round then lasts at least half the one before, so bytes
/// saved now shorten every round after (`docs/DESIGN.md` §4).
pub(super) const DIRTY_BOUND: f64 = 0.5;
/// Smallest time per page (ns), so rates stay finite.
const TIME_FLOOR_NS: f64 = 1e-3;

/// Which rule chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Regime {
    /// No link rate known: the cheapest codec that compresses.
    LinkUnknown,
    /// Minimise `max(t / C, s / B)`.
    Converging,
    /// Dirty rate at or above [`DIRTY_BOUND`] of the effective bandwidth:
    /// the fewest bytes among the codecs within 10 % of the smallest
    /// `max(t / C, s / B)`.
    DirtyBound,
    /// Pinned by [`crate::Mode::Bytes`]: the smallest output.
    MinBytes,
}

/// What the rules see of the migration.
#[derive(Debug, Clone, Copy)]
pub(super) struct Env {
    /// Channels compressing in parallel (`C_eff`).
    channels: f64,
    /// Link bytes/s, configured or observed.
    link: Option<f64>,
    /// Guest bytes dirtied per second.
    dirty: f64,
    page: f64,
}

impl Env {
    /// `measured` is the link rate measured by the policy (bytes/s, all
    /// channels); QEMU's configured bandwidth, when set, wins.
    pub(super) fn new(stats: &LinkStats, measured: Option<f64>, page: f64) -> Env {
        let link = if stats.bandwidth > 0 {
            Some(stats.bandwidth as f64)
        } else {
            measured.filter(|&b| b > 0.0 && b.is_finite())
        };
        Env {
            channels: f64::from(stats.channels.max(1)),
            link,
            dirty: stats.dirty_pages_rate as f64 * page,
            page,
        }
    }

    /// Nanoseconds for one page of this cost to reach the destination.
    fn time(&self, c: ClassCost) -> f64 {
        let cpu = c.ns_per_page / self.channels;
        let wire = self.link.map_or(0.0, |b| c.bytes_per_page * 1e9 / b);
        cpu.max(wire).max(TIME_FLOOR_NS)
    }

    /// The regime under the `current` choices and the class mix.
    pub(super) fn regime(&self, table: &CostTable, current: &[Codec; PageClass::COUNT]) -> Regime {
        if self.link.is_none() {
            return Regime::LinkUnknown;
        }
        let ns_per_page: f64 = PageClass::ALL
            .iter()
            .map(|&c| table.mix(c) * self.time(table.get(c, current[c.index()])))
            .sum();
        // Guest bytes per second the channels deliver together.
        let effective = self.page * 1e9 / ns_per_page.max(TIME_FLOOR_NS);
        if self.dirty > 0.0 && self.dirty >= DIRTY_BOUND * effective {
            Regime::DirtyBound
        } else {
            Regime::Converging
        }
    }

    /// The codec among `costs` (candidates with their estimates) under
    /// `regime`, sticking to `current` unless a challenger is clearly better.
    pub(super) fn choose(
        &self,
        regime: Regime,
        costs: impl Iterator<Item = (Codec, ClassCost)> + Clone,
        current: Codec,
    ) -> Codec {
        // Under DirtyBound: the fastest delivery, estimated, and the bytes,
        // exact; where the estimates cannot tell codecs apart, bytes decide.
        let fastest = match regime {
            Regime::DirtyBound => costs
                .clone()
                .map(|(_, c)| self.time(c))
                .fold(f64::INFINITY, f64::min),
            _ => 0.0,
        };
        // Score (lower is better) of each eligible candidate.
        let score = |codec: Codec, c: ClassCost| -> Option<f64> {
            let slack = if codec == current { 1.0 } else { HYSTERESIS };
            match regime {
                Regime::Converging => Some(self.time(c)),
                Regime::MinBytes => Some(c.bytes_per_page),
                Regime::DirtyBound => {
                    (self.time(c) * HYSTERESIS <= fastest).then_some(c.bytes_per_page)
                }
                Regime::LinkUnknown => (codec != Codec::Raw
                    && c.bytes_per_page <= COMPRESS_LIMIT * self.page * slack)
                    .then_some(c.ns_per_page),
            }
        };
        let mut best: Option<(Codec, f64)> = None;
        let mut current_score = None;
        for (codec, c) in costs {
            let Some(s) = score(codec, c).filter(|s| !s.is_nan()) else {
                continue;
            };
            if codec == current {
                current_score = Some(s);
            }
            if best.is_none_or(|(_, b)| s < b) {
                best = Some((codec, s));
            }
        }
        match (best, current_score) {
            (Some((codec, s)), Some(cur)) if s < HYSTERESIS * cur => codec,
            (Some(_), Some(_)) => current,
            (Some((codec, _)), None) => codec,
            (None, _) => Codec::Raw,
        }
    }
}
