//! The decision rules: which codec a class takes, given its cost estimates,
//! the link and the dirty rate.

#![forbid(unsafe_code)]

use super::cost::{ClassCost, Codec, CostTable};
use super::level::{Rung, LADDER};
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
    /// Minimise `max(Σ m t / C, Σ m s / B)` over the classes together.
    Converging,
    /// Dirty rate at or above [`DIRTY_BOUND`] of the effective bandwidth:
    /// the fewest bytes among the choices within 10 % of the smallest
    /// `max(Σ m t / C, Σ m s / B)`.
    DirtyBound,
    /// Pinned by [`crate::Mode::Bytes`]: the smallest output.
    MinBytes,
}

/// Weight a class has in [`Env::load`] however rare it is, so that its
/// codec is still chosen for when it shows up.
const MIX_FLOOR: f64 = 0.01;

/// The zstd tier's costs as measured.
const SAME: Rung = Rung {
    level: 0,
    cpu: 1.0,
    size: 1.0,
};

/// What one routing costs per guest page.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// Nanoseconds: the larger of the channels' CPU and the link's time.
    time: f64,
    /// Bytes sent.
    bytes: f64,
}

/// Calls `f` with every combination of `candidates` from class `k` on
/// (classes without candidates keep their codec in `combo`).
fn enumerate(
    candidates: &[&[Codec]; PageClass::COUNT],
    k: usize,
    combo: &mut [Codec; PageClass::COUNT],
    f: &mut dyn FnMut(&[Codec; PageClass::COUNT]),
) {
    if k == PageClass::COUNT {
        return f(combo);
    }
    if candidates[k].is_empty() {
        return enumerate(candidates, k + 1, combo, f);
    }
    for &c in candidates[k] {
        combo[k] = c;
        enumerate(candidates, k + 1, combo, f);
    }
}

/// What the rules see of the migration.
#[derive(Debug, Clone, Copy, PartialEq)]
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

    /// The regime under the `current` choices and the class mix.
    pub(super) fn regime(&self, table: &CostTable, current: &[Codec; PageClass::COUNT]) -> Regime {
        if self.link.is_none() {
            return Regime::LinkUnknown;
        }
        let ns_per_page = self.load(table, current, SAME).time;
        // Guest bytes per second the channels deliver together.
        let effective = self.page * 1e9 / ns_per_page;
        if self.dirty > 0.0 && self.dirty >= DIRTY_BOUND * effective {
            Regime::DirtyBound
        } else {
            Regime::Converging
        }
    }

    /// CPU and wire time per guest page (ns) of routing each class by
    /// `codecs`, with the classes mixed as `table` says: the channels and
    /// the link are shared by every class, so their loads add up before
    /// the larger one limits.  The zstd tier's costs are scaled by `zstd`
    /// (its CPU and size relative to the level `table` measured).
    fn load(&self, table: &CostTable, codecs: &[Codec; PageClass::COUNT], zstd: Rung) -> Load {
        let (mut cpu, mut bytes) = (0.0f64, 0.0f64);
        for class in PageClass::ALL {
            let codec = codecs[class.index()];
            let c = table.get(class, codec);
            let (t, s) = match codec {
                Codec::Zstd => (zstd.cpu, zstd.size),
                _ => (1.0, 1.0),
            };
            let m = table.mix(class).max(MIX_FLOOR);
            cpu += m * t * c.ns_per_page / self.channels;
            bytes += m * s * c.bytes_per_page;
        }
        let wire = self.link.map_or(0.0, |b| bytes * 1e9 / b);
        Load {
            time: cpu.max(wire).max(TIME_FLOOR_NS),
            bytes,
        }
    }

    /// The codecs of all classes together, with a known link (regime
    /// [`Regime::Converging`] or [`Regime::DirtyBound`]): every combination
    /// of `candidates` is scored by [`Env::load`].  Converging: the
    /// fastest; dirty-bound: the fewest bytes among those within 10 % of
    /// the fastest.  `current` stays unless a combination is 10 % better.
    /// So while the link limits, any class may take a slower codec that
    /// saves bytes as long as the channels' CPU keeps up with the link.
    pub(super) fn choose_joint(
        &self,
        regime: Regime,
        table: &CostTable,
        candidates: &[&[Codec]; PageClass::COUNT],
        current: &[Codec; PageClass::COUNT],
    ) -> [Codec; PageClass::COUNT] {
        let fastest = self.fastest(table, candidates, &[SAME]);
        let Some(((_, best), best_score)) =
            self.best_routing(regime, fastest, table, candidates, &[SAME])
        else {
            return *current;
        };
        let valid = PageClass::ALL.iter().all(|&k| {
            candidates[k.index()].is_empty() || candidates[k.index()].contains(&current[k.index()])
        });
        match self.score(regime, fastest, self.load(table, current, SAME)) {
            Some(cur) if valid && best_score >= HYSTERESIS * cur => *current,
            _ => best,
        }
    }

    /// The rung of [`LADDER`] for the zstd tier (regime
    /// [`Regime::Converging`] or [`Regime::DirtyBound`]), from rung
    /// `current`, whose costs `table` holds: each rung is scored by its
    /// best routing of `candidates` (the tier's costs scaled to the rung),
    /// as [`Env::choose_joint`] scores routings, and `current` stays
    /// unless another rung is 10 % better.
    pub(super) fn choose_rung(
        &self,
        regime: Regime,
        table: &CostTable,
        candidates: &[&[Codec]; PageClass::COUNT],
        current: usize,
    ) -> usize {
        let Some(now) = LADDER.get(current) else {
            return current;
        };
        let rungs = LADDER.map(|r| Rung {
            level: r.level,
            cpu: r.cpu / now.cpu,
            size: r.size / now.size,
        });
        let fastest = self.fastest(table, candidates, &rungs);
        let Some(((best, _), best_score)) =
            self.best_routing(regime, fastest, table, candidates, &rungs)
        else {
            return current;
        };
        let here = &rungs[current..=current];
        match self.best_routing(regime, fastest, table, candidates, here) {
            Some((_, cur)) if best_score >= HYSTERESIS * cur => current,
            _ => best,
        }
    }

    /// The smallest time of any routing of `candidates` under any of
    /// `scales` of the zstd tier.
    fn fastest(
        &self,
        table: &CostTable,
        candidates: &[&[Codec]; PageClass::COUNT],
        scales: &[Rung],
    ) -> f64 {
        let mut combo = [Codec::Raw; PageClass::COUNT];
        let mut fastest = f64::INFINITY;
        enumerate(candidates, 0, &mut combo, &mut |c| {
            for &r in scales {
                fastest = fastest.min(self.load(table, c, r).time);
            }
        });
        fastest
    }

    /// A routing's score under `regime` (lower is better): its time, or
    /// in the dirty-bound regime its bytes when its time is within 10 %
    /// of `fastest` (else none).
    fn score(&self, regime: Regime, fastest: f64, l: Load) -> Option<f64> {
        match regime {
            Regime::DirtyBound => (l.time * HYSTERESIS <= fastest).then_some(l.bytes),
            _ => Some(l.time),
        }
    }

    /// The best (scale index, routing) of `candidates` under `scales`,
    /// with its score (`fastest` bounds the dirty-bound band).  Two passes over the (at most 144) combinations per
    /// scale, allocating nothing.
    #[allow(clippy::type_complexity)]
    fn best_routing(
        &self,
        regime: Regime,
        fastest: f64,
        table: &CostTable,
        candidates: &[&[Codec]; PageClass::COUNT],
        scales: &[Rung],
    ) -> Option<((usize, [Codec; PageClass::COUNT]), f64)> {
        let mut combo = [Codec::Raw; PageClass::COUNT];
        let mut best: Option<((usize, [Codec; PageClass::COUNT]), f64)> = None;
        enumerate(candidates, 0, &mut combo, &mut |c| {
            for (i, &r) in scales.iter().enumerate() {
                if let Some(s) = self.score(regime, fastest, self.load(table, c, r)) {
                    if best.is_none_or(|(_, b)| s < b) {
                        best = Some(((i, *c), s));
                    }
                }
            }
        });
        best
    }

    /// The codec of one class among `costs` (candidates with their
    /// estimates) under a rule that needs no link rate ([`Regime::MinBytes`]
    /// or [`Regime::LinkUnknown`]; the others route all classes together,
    /// [`Env::choose_joint`]), sticking to `current` unless a challenger is
    /// clearly better.
    pub(super) fn choose(
        &self,
        smallest: bool,
        costs: impl Iterator<Item = (Codec, ClassCost)>,
        current: Codec,
    ) -> Codec {
        // Score (lower is better) of each eligible candidate.
        let score = |codec: Codec, c: ClassCost| -> Option<f64> {
            let slack = if codec == current { 1.0 } else { HYSTERESIS };
            match smallest {
                true => Some(c.bytes_per_page),
                false => (codec != Codec::Raw
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
