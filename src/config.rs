//! Encoder and decoder configuration.

#![forbid(unsafe_code)]

use crate::error::{Error, Result};
use crate::format;

/// How thresholds and tiers are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Thresholds and the high-ratio tier follow link and dirty-rate
    /// statistics (see [`crate::policy`]).
    Adaptive,
    /// The configured thresholds are used as they are, and the high-ratio
    /// tier (when its level is non-zero) takes every page the fast path
    /// would give to an LZ codec.
    Fixed,
    /// Favour bytes: each page class takes the codec with the smallest
    /// measured output, whatever it costs in CPU (metered or very slow
    /// links).  Measured and explored like [`Mode::Adaptive`].
    Bytes,
    /// Favour CPU: each page class takes the cheapest codec that still
    /// compresses, raw when none does (CPU-starved hosts).  Measured and
    /// explored like [`Mode::Adaptive`].
    Cpu,
}

/// Which LZ codec the fast path uses for low-similarity pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LzCodec {
    /// LZ4 block (faster, slightly larger).
    Lz4,
    /// LZO1X-1 (MECOM's choice).
    Lzo,
}

/// Everything an encoder or decoder is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Page size in bytes: a power of two from 4096 to 65536.
    pub page_size: u32,
    /// Most pages in one frame (1..=1024); sizes the handle's buffers.
    pub max_pages: usize,
    /// Adaptive or fixed thresholds.
    pub mode: Mode,
    /// Percentage of zero bytes at or above which the sparse codec is tried.
    pub sparse_threshold: u8,
    /// Percentage of similar words at or above which WKdm is tried.
    pub similarity_threshold: u8,
    /// zstd level of the high-ratio tier; 0 turns the tier off.
    pub zstd_level: u8,
    /// Pages per zstd group; 0 puts all high-ratio pages of a frame in one group.
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
