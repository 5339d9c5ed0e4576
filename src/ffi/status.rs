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
    /// The frame sets a retired feature bit (bit 0, once raw pages outside
    /// the checksum).
    RetiredFeature = 20,
    /// The caller gave a placement but the frame is not bound to one.
    Unbound = 21,
    /// A delta page was made against another version of the page than
    /// the destination holds.
    BaseMismatch = 22,
    /// A zstd group continues a stream the channel's decoder does not hold.
    StreamLost = 23,
}

impl mecom_status {
    /// Every status, for lookups by value.
    const ALL: [mecom_status; 24] = [
        mecom_status::Ok,
        mecom_status::NullParameter,
        mecom_status::InvalidConfig,
        mecom_status::UnsupportedPageSize,
        mecom_status::TooManyPages,
        mecom_status::BufferTooSmall,
        mecom_status::BadMagic,
        mecom_status::UnsupportedVersion,
        mecom_status::UnsupportedFeature,
        mecom_status::PageSizeMismatch,
        mecom_status::PageCountMismatch,
        mecom_status::SequenceMismatch,
        mecom_status::Truncated,
        mecom_status::LengthMismatch,
        mecom_status::UnknownMethod,
        mecom_status::CorruptPage,
        mecom_status::ChecksumMismatch,
        mecom_status::Panic,
        mecom_status::Poisoned,
        mecom_status::InvalidArgument,
        mecom_status::RetiredFeature,
        mecom_status::Unbound,
        mecom_status::BaseMismatch,
        mecom_status::StreamLost,
    ];

    /// The status whose value is `value`, if any.
    fn from_value(value: u32) -> Option<mecom_status> {
        mecom_status::ALL
            .iter()
            .copied()
            .find(|&s| s as u32 == value)
    }

    /// A static, one-line description: what [`Error`]'s `Display` says
    /// without the numbers (which C reads from `*_last_error()`).
    fn description(self) -> &'static CStr {
        match self {
            mecom_status::Ok => c"ok",
            mecom_status::NullParameter => c"a required pointer argument is NULL",
            mecom_status::InvalidConfig => c"invalid configuration",
            mecom_status::UnsupportedPageSize => c"unsupported page size",
            mecom_status::TooManyPages => c"too many pages for one frame",
            mecom_status::BufferTooSmall => c"output buffer too small",
            mecom_status::BadMagic => c"bad frame magic (not a mecom frame)",
            mecom_status::UnsupportedVersion => c"unsupported frame format version",
            mecom_status::UnsupportedFeature => c"frame uses unsupported features",
            mecom_status::PageSizeMismatch => {
                c"frame page size differs from the configured page size"
            }
            mecom_status::PageCountMismatch => {
                c"frame page count differs from the packet's page count"
            }
            mecom_status::SequenceMismatch => {
                c"frame sequence mismatch (lost, duplicated or reordered frame)"
            }
            mecom_status::Truncated => c"frame truncated",
            mecom_status::LengthMismatch => c"frame lengths inconsistent",
            mecom_status::UnknownMethod => c"unknown page method",
            mecom_status::CorruptPage => c"corrupt page payload",
            mecom_status::ChecksumMismatch => c"checksum mismatch in decoded pages",
            mecom_status::Panic => c"internal panic (handle poisoned)",
            mecom_status::Poisoned => c"handle poisoned by an earlier panic",
            mecom_status::InvalidArgument => c"invalid argument",
            mecom_status::RetiredFeature => {
                c"frame uses a retired feature (raw pages outside the checksum)"
            }
            mecom_status::Unbound => c"frame is not bound to its packet header",
            mecom_status::BaseMismatch => {
                c"delta or dedup page does not match the destination's version of its base page"
            }
            mecom_status::StreamLost => {
                c"zstd group continues a stream the channel's decoder does not hold"
            }
        }
    }
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
            Error::RetiredFeature { .. } => mecom_status::RetiredFeature,
            Error::Unbound => mecom_status::Unbound,
            Error::PageSizeMismatch { .. } => mecom_status::PageSizeMismatch,
            Error::PageCountMismatch { .. } => mecom_status::PageCountMismatch,
            Error::SequenceMismatch { .. } => mecom_status::SequenceMismatch,
            Error::Truncated { .. } => mecom_status::Truncated,
            Error::LengthMismatch { .. } => mecom_status::LengthMismatch,
            Error::UnknownMethod { .. } => mecom_status::UnknownMethod,
            Error::CorruptPage { .. } => mecom_status::CorruptPage,
            Error::BaseMismatch { .. } => mecom_status::BaseMismatch,
            Error::StreamLost { .. } => mecom_status::StreamLost,
            Error::ChecksumMismatch { .. } => mecom_status::ChecksumMismatch,
            Error::InvalidArgument { .. } => mecom_status::InvalidArgument,
        }
    }
}

/// Static description of a status value (any `u32`, known or not).
pub(crate) fn describe(status: u32) -> &'static CStr {
    mecom_status::from_value(status).map_or(c"unknown status", mecom_status::description)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_value_and_a_description() {
        for (value, status) in mecom_status::ALL.iter().enumerate() {
            assert_eq!(*status as usize, value, "{status:?}");
            assert_ne!(describe(value as u32), c"unknown status");
        }
        assert_eq!(describe(mecom_status::ALL.len() as u32), c"unknown status");
        assert_eq!(describe(u32::MAX), c"unknown status");
    }
}
