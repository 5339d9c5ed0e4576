//! The one error type of the library.
//!
//! Every variant carries the numbers needed to diagnose the failure without a
//! debugger: what the frame said and what the decoder expected.  Each variant
//! maps onto exactly one C status code (see `ffi::status`).

#![forbid(unsafe_code)]

use crate::method::{Method, RETIRED_TAGS};
use std::fmt;

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong when configuring, encoding or decoding.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A configuration value is out of range.
    InvalidConfig {
        /// Which value, and its allowed range.
        reason: &'static str,
    },
    /// The page size is not a power of two in 4096..=65536.
    UnsupportedPageSize {
        /// The page size that was asked for.
        page_size: u32,
    },
    /// More pages than the handle's `max_pages` (or the format's limit).
    TooManyPages {
        /// Pages in the call or frame.
        pages: usize,
        /// The most the handle accepts.
        max: usize,
    },
    /// The output buffer cannot hold the frame.
    BufferTooSmall {
        /// Bytes the frame needs at most.
        needed: usize,
        /// Bytes the caller gave.
        given: usize,
    },
    /// The frame does not start with the mecom magic.
    BadMagic {
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// The frame's format version is not one this decoder reads.
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// The frame sets feature bits this decoder does not implement.
    UnsupportedFeature {
        /// The unknown bits.
        features: u32,
    },
    /// The frame sets a feature bit that was retired (see
    /// [`crate::format::RETIRED_FEATURES`]): written by an older or broken
    /// encoder, and never accepted.
    RetiredFeature {
        /// The retired bits that are set.
        features: u32,
    },
    /// The caller gave the frame's placement (the packet header that
    /// carried it), but the frame is not bound to one: it came from a
    /// source that does not bind placements, so its header fields would go
    /// unverified.
    Unbound,
    /// The frame's page size differs from the decoder's.
    PageSizeMismatch {
        /// Page size in the frame.
        frame: u32,
        /// Page size the decoder was configured with.
        expected: u32,
    },
    /// The frame's page count differs from the count the caller expects.
    PageCountMismatch {
        /// Pages in the frame.
        frame: usize,
        /// Pages the caller passed.
        expected: usize,
    },
    /// Frames arrived out of order, duplicated or with one missing.
    SequenceMismatch {
        /// Sequence number in the frame.
        frame: u32,
        /// Sequence number the decoder expected next.
        expected: u32,
    },
    /// The frame ends before its header or page table does.
    Truncated {
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// Lengths in the frame do not add up.
    LengthMismatch {
        /// What the frame declares.
        declared: usize,
        /// What is actually there.
        actual: usize,
    },
    /// A page table entry names a method this decoder does not know, or a
    /// reserved field is not zero.
    UnknownMethod {
        /// Index of the page in the frame.
        page: usize,
        /// The method tag found.
        tag: u8,
    },
    /// A page's payload does not decode to exactly one page.
    CorruptPage {
        /// Index of the page in the frame.
        page: usize,
        /// The method that failed.
        method: Method,
        /// What was wrong.
        reason: &'static str,
    },
    /// A delta or dedup page does not apply: the destination's version of
    /// its base (the page itself for a delta, the source page for a dedup
    /// reference) is not the one the source encoded against (the source's
    /// page cache and the destination disagree).
    BaseMismatch {
        /// Index of the page in the frame.
        page: usize,
        /// Hash of the version the page was encoded against.
        expected: u64,
        /// Hash of the destination's base.
        found: u64,
    },
    /// A zstd group continues a stream this decoder does not hold: the
    /// channel's first group did not open a stream, or an earlier frame of
    /// the channel failed after its group was decoded.
    StreamLost {
        /// Index of the group's head page in the frame.
        page: usize,
    },
    /// The decoded pages do not match the checksum the encoder computed.
    ChecksumMismatch {
        /// Checksum carried by the frame.
        expected: u64,
        /// Checksum of what was decoded.
        computed: u64,
    },
    /// An argument is inconsistent (for example a page slice of the wrong size).
    InvalidArgument {
        /// What was wrong.
        reason: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig { reason } => write!(f, "invalid configuration: {reason}"),
            Error::UnsupportedPageSize { page_size } => write!(
                f,
                "unsupported page size {page_size} (must be a power of two from 4096 to 65536)"
            ),
            Error::TooManyPages { pages, max } => {
                write!(f, "{pages} pages in one frame, at most {max} allowed")
            }
            Error::BufferTooSmall { needed, given } => {
                write!(f, "output buffer of {given} bytes, {needed} needed")
            }
            Error::BadMagic { found } => write!(f, "bad frame magic {found:02x?}"),
            Error::UnsupportedVersion { version } => {
                write!(f, "unsupported frame format version {version}")
            }
            Error::UnsupportedFeature { features } => {
                write!(f, "frame uses unsupported feature bits {features:#x}")
            }
            Error::RetiredFeature { features } => write!(
                f,
                "frame uses retired feature bits {features:#x} (raw pages outside the checksum)"
            ),
            Error::Unbound => write!(
                f,
                "frame is not bound to its packet header (source without placement binding)"
            ),
            Error::PageSizeMismatch { frame, expected } => write!(
                f,
                "frame page size {frame} differs from the configured {expected}"
            ),
            Error::PageCountMismatch { frame, expected } => write!(
                f,
                "frame holds {frame} pages, the packet announced {expected}"
            ),
            Error::SequenceMismatch { frame, expected } => write!(
                f,
                "frame sequence {frame}, expected {expected}"
            ),
            Error::Truncated { needed, available } => write!(
                f,
                "frame truncated: {needed} bytes needed, {available} present"
            ),
            Error::LengthMismatch { declared, actual } => write!(
                f,
                "frame lengths inconsistent: {declared} declared, {actual} present"
            ),
            Error::UnknownMethod { page, tag } if RETIRED_TAGS.contains(tag) => write!(
                f,
                "page {page}: method tag {tag:#04x} ({}) is retired",
                if *tag == RETIRED_TAGS[0] {
                    "stateless zstd group"
                } else {
                    "zstd member of the nearest head"
                }
            ),
            Error::UnknownMethod { page, tag } => {
                write!(f, "page {page}: unknown method tag {tag:#04x}")
            }
            Error::StreamLost { page } => write!(
                f,
                "page {page}: zstd group continues a stream this channel's decoder does not hold"
            ),
            Error::CorruptPage {
                page,
                method,
                reason,
            } => write!(f, "page {page}: corrupt {} payload: {reason}", method.name()),
            Error::BaseMismatch {
                page,
                expected,
                found,
            } => write!(
                f,
                "page {page}: encoded against version {expected:#018x} of its base page, the destination holds {found:#018x}"
            ),
            Error::ChecksumMismatch { expected, computed } => write!(
                f,
                "checksum mismatch: frame says {expected:#018x}, decoded pages give {computed:#018x}"
            ),
            Error::InvalidArgument { reason } => write!(f, "invalid argument: {reason}"),
        }
    }
}

impl std::error::Error for Error {}
