//! What `mecom bench` measures: the CBC settings and the baseline codecs,
//! by name.  Both the option parser and the benchmark read these tables.

use crate::lib_api::{Config, LinkStats, LzCodec, Mode};

/// One CBC configuration to measure.  Add a setting by adding a line to
/// [`SETTINGS`].
#[derive(Debug, PartialEq, Eq)]
pub struct Setting {
    /// Name for `--settings` and the reports.
    pub name: &'static str,
    /// Threshold mode.
    pub mode: Mode,
    /// zstd level of the high-ratio tier (0 = off).
    pub zstd_level: u8,
    /// Pages per zstd group (0 = all of a frame).
    pub group: usize,
    /// LZ codec of the fast path.
    pub lz: LzCodec,
    /// Link bandwidth given to `update_stats` (bytes/s; 0 = no stats given).
    pub bandwidth: u64,
    /// One-line description.
    pub about: &'static str,
}

impl Setting {
    /// A fixed-mode setting.
    const fn fixed(
        name: &'static str,
        zstd_level: u8,
        group: usize,
        lz: LzCodec,
        about: &'static str,
    ) -> Setting {
        Setting {
            name,
            mode: Mode::Fixed,
            zstd_level,
            group,
            lz,
            bandwidth: 0,
            about,
        }
    }

    /// An adaptive setting (zstd level 1, LZ4) told about a link of
    /// `bandwidth` bytes/s over [`ADAPTIVE_CHANNELS`] channels (0: told
    /// nothing, as an encoder that never gets statistics).
    const fn adaptive(name: &'static str, bandwidth: u64, about: &'static str) -> Setting {
        Setting {
            name,
            mode: Mode::Adaptive,
            zstd_level: 1,
            group: 0,
            lz: LzCodec::Lz4,
            bandwidth,
            about,
        }
    }

    /// The encoder and decoder configuration.
    pub fn config(&self, page_size: usize, batch: usize) -> Config {
        Config {
            page_size: page_size as u32,
            max_pages: batch,
            mode: self.mode,
            zstd_level: self.zstd_level,
            zstd_group_pages: self.group,
            lz: self.lz,
            ..Config::default()
        }
    }

    /// The statistics given to the encoder after creation, if any.
    pub fn link(&self) -> Option<LinkStats> {
        (self.bandwidth > 0).then_some(LinkStats {
            bandwidth: self.bandwidth,
            channels: ADAPTIVE_CHANNELS,
            ..LinkStats::default()
        })
    }
}

/// Channels the adaptive settings are told about.
pub const ADAPTIVE_CHANNELS: u32 = 2;

/// The CBC settings `mecom bench` knows, in report order.
pub const SETTINGS: &[Setting] = &[
    Setting::fixed(
        "fast",
        0,
        0,
        LzCodec::Lz4,
        "fixed thresholds, zstd off, LZ4",
    ),
    Setting::fixed(
        "fast-lzo",
        0,
        0,
        LzCodec::Lzo,
        "fixed thresholds, zstd off, LZO1X-1",
    ),
    Setting::fixed(
        "ratio",
        1,
        0,
        LzCodec::Lz4,
        "fixed, zstd-1 tier, groups of any size (one per class)",
    ),
    Setting::fixed(
        "ratio-g8",
        1,
        8,
        LzCodec::Lz4,
        "fixed, zstd-1 tier, groups of at most 8 pages",
    ),
    Setting::fixed(
        "ratio-p1",
        1,
        1,
        LzCodec::Lz4,
        "fixed, zstd-1 tier, one group per page",
    ),
    Setting::adaptive(
        "adaptive",
        0,
        "adaptive, zstd-1, no link given (the library's default)",
    ),
    Setting::adaptive(
        "adaptive-1g",
        125_000_000,
        "adaptive, zstd-1, told: 1 Gbit/s link, 2 channels",
    ),
    Setting::adaptive(
        "adaptive-10g",
        1_250_000_000,
        "adaptive, zstd-1, told: 10 Gbit/s link, 2 channels",
    ),
];

/// Which baseline codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaselineKind {
    /// `lz4_flex::block::compress_into`, one page at a time.
    Lz4Page,
    /// `lzo1x::compress` level 1, one page at a time.
    LzoPage,
    /// zstd level 1, one page at a time.
    ZstdPage,
    /// zstd level 1, one frame per batch, each on its own.
    ZstdBatch,
    /// zstd level 1, one stream flushed after every batch, as QEMU's
    /// multifd-zstd keeps per channel.
    ZstdStream,
}

/// A baseline codec measured next to CBC.
#[derive(Debug, PartialEq, Eq)]
pub struct Baseline {
    /// Name for `--baselines` and the reports.
    pub name: &'static str,
    /// The codec.
    pub kind: BaselineKind,
    /// One-line description.
    pub about: &'static str,
}

/// The baselines `mecom bench` knows, in report order.
pub const BASELINES: &[Baseline] = &[
    Baseline {
        name: "lz4_flex",
        kind: BaselineKind::Lz4Page,
        about: "lz4_flex block, each page on its own",
    },
    Baseline {
        name: "lzo1x-1",
        kind: BaselineKind::LzoPage,
        about: "lzo1x crate level 1, each page on its own",
    },
    Baseline {
        name: "zstd-1/page",
        kind: BaselineKind::ZstdPage,
        about: "libzstd level 1, each page on its own",
    },
    Baseline {
        name: "zstd-1/batch",
        kind: BaselineKind::ZstdBatch,
        about: "libzstd level 1, one frame per batch, each on its own",
    },
    Baseline {
        name: "zstd-1/stream",
        kind: BaselineKind::ZstdStream,
        about: "libzstd level 1, one stream flushed per batch (QEMU multifd-zstd, one channel)",
    },
];
