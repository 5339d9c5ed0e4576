//! Encoder and decoder configuration.

#![forbid(unsafe_code)]

use crate::error::{Error, Result};
use crate::format;

/// How each page class's codec is chosen.  In every mode the class
/// thresholds are the configured ones; what differs is the codec a class
/// takes.  Exported to C as `mecom_mode` (the value of
/// `mecom_config.mode`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Each class takes the codec that the measured costs, the link rate
    /// and the dirty rate (mecom_encoder_update_stats()) say delivers
    /// pages fastest, raw included; see `docs/DESIGN.md` section 4.
    Adaptive = 0,
    /// MECOM's routing: sparse, WKdm and LZ by class, and the zstd tier
    /// (when its level is non-zero) for every compressible class.
    Fixed = 1,
    /// Favour bytes: each page class takes the codec with the smallest
    /// measured output, whatever it costs in CPU (metered or very slow
    /// links).  Measured and explored like the adaptive mode.
    Bytes = 2,
    /// Favour CPU: each page class takes the cheapest codec that still
    /// compresses, raw when none does (CPU-starved hosts).  Measured and
    /// explored like the adaptive mode.
    Cpu = 3,
}

impl Mode {
    /// Every mode, in value order.
    ///
    /// cbindgen:ignore
    pub const ALL: [Mode; 4] = [Mode::Adaptive, Mode::Fixed, Mode::Bytes, Mode::Cpu];

    /// The mode whose C value is `value`.
    pub fn from_value(value: u32) -> Option<Mode> {
        Mode::ALL.into_iter().find(|&m| m as u32 == value)
    }
}

/// Which LZ codec the fast path uses for low-similarity pages.  Exported
/// to C as `mecom_lz_codec` (the value of `mecom_config.lz_codec`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LzCodec {
    /// LZ4 block (faster, slightly larger).
    Lz4 = 0,
    /// LZO1X-1 (MECOM's choice).
    Lzo = 1,
}

impl LzCodec {
    /// Every LZ codec, in value order.
    ///
    /// cbindgen:ignore
    pub const ALL: [LzCodec; 2] = [LzCodec::Lz4, LzCodec::Lzo];

    /// The codec whose C value is `value`.
    pub fn from_value(value: u32) -> Option<LzCodec> {
        LzCodec::ALL.into_iter().find(|&c| c as u32 == value)
    }
}

/// Everything an encoder or decoder is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Page size in bytes: a power of two from 4096 to 65536.
    pub page_size: u32,
    /// Most pages in one frame (1..=1024); sizes the handle's buffers.
    pub max_pages: usize,
    /// How each class's codec is chosen.
    pub mode: Mode,
    /// Percentage of zero bytes at or above which a page is in the sparse
    /// class.  A fixed setting in every mode.
    pub sparse_threshold: u8,
    /// Percentage of similar sampled words at or above which a page is in
    /// the similar (WKdm) class.  A fixed setting in every mode.
    pub similarity_threshold: u8,
    /// zstd level of the high-ratio tier; 0 turns the tier off.
    pub zstd_level: u8,
    /// Most pages per zstd group; 0 = no limit.  A group holds one class's
    /// zstd pages of a frame, so a frame has a group per class.
    pub zstd_group_pages: usize,
    /// LZ codec of the fast path.
    pub lz: LzCodec,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            page_size: 4096,
            max_pages: 128,
            mode: Mode::Adaptive,
            sparse_threshold: 75,
            similarity_threshold: 75,
            zstd_level: 1,
            zstd_group_pages: 0,
            lz: LzCodec::Lz4,
        }
    }
}

impl Config {
    /// Checks every field; returns log2 of the page size.
    pub fn validate(&self) -> Result<u8> {
        let shift = format::page_shift(self.page_size)?;
        if self.max_pages == 0 || self.max_pages > format::MAX_PAGES {
            return Err(Error::InvalidConfig {
                reason: "max_pages must be 1..=1024",
            });
        }
        if self.sparse_threshold > 100 {
            return Err(Error::InvalidConfig {
                reason: "sparse_threshold must be 0..=100",
            });
        }
        if self.similarity_threshold > 100 {
            return Err(Error::InvalidConfig {
                reason: "similarity_threshold must be 0..=100",
            });
        }
        if self.zstd_level > 19 {
            return Err(Error::InvalidConfig {
                reason: "zstd_level must be 0..=19",
            });
        }
        if self.zstd_group_pages > format::MAX_PAGES {
            return Err(Error::InvalidConfig {
                reason: "zstd_group_pages must be 0..=1024",
            });
        }
        Ok(shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_ranges_are_enforced() {
        assert_eq!(Config::default().validate(), Ok(12));
        let bad = [
            Config {
                page_size: 4097,
                ..Config::default()
            },
            Config {
                max_pages: 0,
                ..Config::default()
            },
            Config {
                max_pages: 1025,
                ..Config::default()
            },
            Config {
                sparse_threshold: 101,
                ..Config::default()
            },
            Config {
                similarity_threshold: 101,
                ..Config::default()
            },
            Config {
                zstd_level: 20,
                ..Config::default()
            },
            Config {
                zstd_group_pages: 2000,
                ..Config::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
