//! Page codecs.  Each is an encode/decode pair over one page with a proven
//! output bound; none of them allocates per page or trusts its input.
//!
//! Encoders take a `limit`: they return `None` as soon as the output would
//! exceed it, so a page that will not shrink costs as little as possible and
//! is then sent raw.  Decoders get the exact payload and the exact page and
//! fail with a short reason on anything inconsistent.

#![forbid(unsafe_code)]

pub mod dedup;
pub mod delta;
pub mod lz;
pub mod sparse;
pub mod wkdm;
pub mod zstd_stream;

/// Why a payload did not decode to exactly one page.
pub type DecodeResult = Result<(), &'static str>;
