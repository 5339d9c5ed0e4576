//! C status codes.  Values are never reused: a retired code stays listed as a
//! comment so old callers never misread a new meaning.

#![forbid(unsafe_code)]

use crate::error::Error;
use std::ffi::CStr;

/// Result of every fallible mecom call; 0 is success.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mecom_status {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullParameter = 1,
    /// A configuration value is out of range.
    InvalidConfig = 2,
    /// The page size is not a power of two from 4096 to 65536.
    UnsupportedPageSize = 3,
    /// More pages than the handle's max_pages.
    TooManyPages = 4,
    /// The output buffer is smaller than mecom_max_frame_len().
    BufferTooSmall = 5,
    /// The frame does not start with the mecom magic.
    BadMagic = 6,
    /// The frame's format version is unknown.
    UnsupportedVersion = 7,
    /// The frame uses feature bits this library does not implement.
    UnsupportedFeature = 8,
    /// The frame's page size differs from the decoder's.
    PageSizeMismatch = 9,
    /// The frame's page count differs from the caller's.
    PageCountMismatch = 10,
    /// A frame was lost, duplicated or reordered on the channel.
    SequenceMismatch = 11,
    /// The frame is shorter than its header or table.
    Truncated = 12,
    /// The frame's lengths do not add up.
    LengthMismatch = 13,
    /// A page uses an unknown method tag.
    UnknownMethod = 14,
    /// A page's payload is corrupt.
    CorruptPage = 15,
    /// The decoded pages fail the frame checksum.
    ChecksumMismatch = 16,
    /// The library panicked; the handle is now poisoned.
    Panic = 17,
    /// The handle panicked earlier and refuses further work.
    Poisoned = 18,
    /// An argument is inconsistent.
    InvalidArgument = 19,
}

impl From<&Error> for mecom_status {
    fn from(e: &Error) -> Self {
        match e {
            Error::InvalidConfig { .. } => mecom_status::InvalidConfig,
            Error::UnsupportedPageSize { .. } => mecom_status::UnsupportedPageSize,
            Error::TooManyPages { .. } => mecom_status::TooManyPages,
            Error::BufferTooSmall { .. } => mecom_status::BufferTooSmall,
            Error::BadMagic { .. } => mecom_status::BadMagic,
            Error::UnsupportedVersion { .. } => mecom_status::UnsupportedVersion,
            Error::UnsupportedFeature { .. } => mecom_status::UnsupportedFeature,
            Error::PageSizeMismatch { .. } => mecom_status::PageSizeMismatch,
            Error::PageCountMismatch { .. } => mecom_status::PageCountMismatch,
            Error::SequenceMismatch { .. } => mecom_status::SequenceMismatch,
            Error::Truncated { .. } => mecom_status::Truncated,
            Error::LengthMismatch { .. } => mecom_status::LengthMismatch,
            Error::UnknownMethod { .. } => mecom_status::UnknownMethod,
            Error::CorruptPage { .. } => mecom_status::CorruptPage,
            Error::ChecksumMismatch { .. } => mecom_status::ChecksumMismatch,
            Error::InvalidArgument { .. } => mecom_status::InvalidArgument,
        }
    }
}

/// Static description of a status value (any `u32`, known or not).
pub(crate) fn describe(status: u32) -> &'static CStr {
    match status {
        0 => c"ok",
        1 => c"a required pointer argument is NULL",
        2 => c"invalid configuration",
        3 => c"unsupported page size",
        4 => c"too many pages for one frame",
        5 => c"output buffer too small",
        6 => c"bad frame magic (not a mecom frame)",
        7 => c"unsupported frame format version",
        8 => c"frame uses unsupported features",
        9 => c"frame page size differs from the configured page size",
        10 => c"frame page count differs from the packet's page count",
        11 => c"frame sequence mismatch (lost, duplicated or reordered frame)",
        12 => c"frame truncated",
        13 => c"frame lengths inconsistent",
        14 => c"unknown page method",
        15 => c"corrupt page payload",
        16 => c"checksum mismatch in decoded pages",
        17 => c"internal panic (handle poisoned)",
        18 => c"handle poisoned by an earlier panic",
        19 => c"invalid argument",
        _ => c"unknown status",
    }
}
