//! The codecs a page class may take, and per-class cost estimates.

#![forbid(unsafe_code)]

use crate::classify::PageClass;

/// Weight of a new batch's measurement in the moving averages.
const EWMA_WEIGHT: f64 = 0.125;

/// Codecs the controller chooses among for `class` (the first is the
/// fast-path default).  The fill class has no choice.
pub fn candidates(class: PageClass) -> &'static [Codec] {
    match class {
        PageClass::Fill => &[],
        PageClass::Sparse => &[Codec::Sparse, Codec::Lz, Codec::Zstd, Codec::Raw],
        PageClass::Similar => &[Codec::Wkdm, Codec::Lz, Codec::Zstd, Codec::Raw],
        PageClass::Generic => &[Codec::Lz, Codec::Zstd, Codec::Raw],
        PageClass::Random => &[Codec::Raw, Codec::Lz, Codec::Zstd],
    }
}

/// [`candidates`] without the zstd tier (its level is 0).
pub fn candidates_without_zstd(class: PageClass) -> &'static [Codec] {
    match class {
        PageClass::Fill => &[],
        PageClass::Sparse => &[Codec::Sparse, Codec::Lz, Codec::Raw],
        PageClass::Similar => &[Codec::Wkdm, Codec::Lz, Codec::Raw],
        PageClass::Generic => &[Codec::Lz, Codec::Raw],
        PageClass::Random => &[Codec::Raw, Codec::Lz],
    }
}

/// A first-choice method for the pages of a class.  Every codec falls back
/// to LZ, then raw, when it does not shrink a page; any codec is safe for
/// any page (the wire format is the same whatever is chosen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// The page verbatim.
    Raw,
    /// Runs of non-zero words.
    Sparse,
    /// WKdm.
    Wkdm,
    /// The configured LZ codec (LZ4 or LZO1X-1).
    Lz,
    /// The zstd high-ratio group.
    Zstd,
}

impl Codec {
    /// Number of codecs.
    ///
    /// cbindgen:ignore
    pub const COUNT: usize = 5;
    /// Every codec, in index order.
    pub const ALL: [Codec; Codec::COUNT] = [
        Codec::Raw,
        Codec::Sparse,
        Codec::Wkdm,
        Codec::Lz,
        Codec::Zstd,
    ];

    /// Index into per-codec arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Estimated cost of one codec on one class: CPU nanoseconds and output
/// bytes per page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassCost {
    /// Encode time per page, nanoseconds.
    pub ns_per_page: f64,
    /// Output bytes per page (payload plus its table entry).
    pub bytes_per_page: f64,
}

impl ClassCost {
    /// Moves the estimate towards a measurement.
    pub(crate) fn blend(&mut self, ns: f64, bytes: f64, weight: f64) {
        self.ns_per_page += weight * (ns - self.ns_per_page);
        self.bytes_per_page += weight * (bytes - self.bytes_per_page);
    }
}

/// Prior (nanoseconds per input byte, output/input ratio) of `codec` on
/// `class`, single core: the order of magnitude of `mecom bench` on the
/// sample corpus; measurements replace them within a few dozen batches.
fn prior(class: PageClass, codec: Codec) -> (f64, f64) {
    use Codec as C;
    use PageClass as K;
    match (class, codec) {
        // Fill pages: a compare pass and a 4-byte payload; not measured.
        (K::Fill, _) => (0.05, 0.002),
        // memcpy.
        (_, C::Raw) => (0.1, 1.0),
        (K::Sparse, C::Sparse) => (0.25, 0.08),
        (K::Sparse, C::Lz) => (0.35, 0.10),
        (K::Sparse, C::Zstd) => (1.2, 0.06),
        (K::Similar, C::Wkdm) => (0.9, 0.40),
        (K::Similar, C::Lz) => (1.3, 0.40),
        (K::Similar, C::Zstd) => (2.5, 0.28),
        (K::Generic, C::Lz) => (1.5, 0.50),
        (K::Generic, C::Zstd) => (2.5, 0.35),
        (K::Random, C::Lz) => (1.0, 1.0),
        (K::Random, C::Zstd) => (3.0, 1.0),
        // Codecs outside a class's candidates: they fall back to LZ.
        (K::Generic | K::Random, C::Sparse | C::Wkdm) => (2.0, 0.6),
        (K::Sparse, C::Wkdm) | (K::Similar, C::Sparse) => (1.0, 0.5),
    }
}

/// Per-class, per-codec cost estimates (EWMAs seeded with priors), and the
/// class mix of recent batches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostTable {
    costs: [[ClassCost; Codec::COUNT]; PageClass::COUNT],
    /// Share of pages in each class, smoothed.
    mix: [f64; PageClass::COUNT],
}

impl CostTable {
    /// Priors for pages of `page_size` bytes.
    pub fn new(page_size: u32) -> CostTable {
        let p = f64::from(page_size);
        let mut costs = [[ClassCost {
            ns_per_page: 0.0,
            bytes_per_page: 0.0,
        }; Codec::COUNT]; PageClass::COUNT];
        for class in PageClass::ALL {
            for codec in Codec::ALL {
                let (ns_per_byte, ratio) = prior(class, codec);
                costs[class.index()][codec.index()] = ClassCost {
                    ns_per_page: ns_per_byte * p,
                    bytes_per_page: ratio * p + 4.0,
                };
            }
        }
        // Until measured: mostly generic pages.
        let mix = [0.1, 0.1, 0.3, 0.4, 0.1];
        CostTable { costs, mix }
    }

    /// The estimate for `codec` on `class`.
    pub fn get(&self, class: PageClass, codec: Codec) -> ClassCost {
        self.costs[class.index()][codec.index()]
    }

    /// Overwrites an estimate (tests, and callers with better priors).
    pub fn set(&mut self, class: PageClass, codec: Codec, cost: ClassCost) {
        if cost.ns_per_page.is_finite()
            && cost.bytes_per_page.is_finite()
            && cost.ns_per_page >= 0.0
            && cost.bytes_per_page >= 0.0
        {
            self.costs[class.index()][codec.index()] = cost;
        }
    }

    /// Scales every class's estimate for `codec`: its CPU by `cpu`, its
    /// output by `size` (the zstd tier changed level).
    pub(crate) fn scale(&mut self, codec: Codec, cpu: f64, size: f64) {
        for class in PageClass::ALL {
            let c = &mut self.costs[class.index()][codec.index()];
            c.ns_per_page *= cpu;
            c.bytes_per_page *= size;
        }
    }

    /// Feeds one batch's measurement: `pages` pages of `class` routed to
    /// `codec` took `ns` nanoseconds and became `bytes` bytes.
    pub fn record(&mut self, class: PageClass, codec: Codec, pages: u64, bytes: u64, ns: u64) {
        if pages == 0 {
            return;
        }
        let n = pages as f64;
        // A batch of many pages is worth more than one exploration page.
        let weight = (EWMA_WEIGHT * n / 8.0).clamp(EWMA_WEIGHT / 8.0, EWMA_WEIGHT);
        // A raw page costs the same whatever its class: a copy, a hash and
        // a page of bytes.  Every class learns it from any class's raw
        // pages, so raw never needs exploring (which would send whole
        // pages to find out).
        let classes: &[PageClass] = if codec == Codec::Raw {
            &PageClass::ALL
        } else {
            std::slice::from_ref(&class)
        };
        for c in classes {
            self.costs[c.index()][codec.index()].blend(ns as f64 / n, bytes as f64 / n, weight);
        }
    }

    /// Feeds one batch's class counts.
    pub fn record_mix(&mut self, counts: &[u64; PageClass::COUNT]) {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return;
        }
        for (m, &c) in self.mix.iter_mut().zip(counts) {
            *m += EWMA_WEIGHT * (c as f64 / total as f64 - *m);
        }
    }

    /// Smoothed share of pages in `class`.
    pub fn mix(&self, class: PageClass) -> f64 {
        self.mix[class.index()]
    }
}
