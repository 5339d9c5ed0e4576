//! # mecom: characteristic-based compression of guest memory pages
//!
//! mecom compresses batches of guest RAM pages for live migration, the way
//! MECOM (Jin et al., IEEE CLUSTER 2009) proposed: each page is looked at
//! once, classified by what it contains, and sent with the cheapest codec
//! that is good enough for it.
//!
//! | class | codec |
//! |---|---|
//! | all zero, one repeated word | a tag, or the word |
//! | mostly zero bytes | runs of non-zero words ([sparse](Method::Sparse)) |
//! | high 32-bit word similarity | WKdm |
//! | low similarity | LZ4 (or LZO1X-1) |
//! | looks random | raw |
//! | anything, when the link is slow | zstd over a group of pages |
//!
//! A batch becomes one self-describing frame (see `docs/FORMAT.md`): a
//! header, a per-page method tag and length, the payloads, and a checksum of
//! the decoded pages.  The decoder trusts nothing in it.
//!
//! QEMU's multifd threads use the C ABI in [`ffi`] (header
//! `include/mecom.h`); Rust callers use [`Encoder`] and [`Decoder`].
//!
//! # Example
//!
//! ```
//! use mecom::{Config, Decoder, Encoder};
//!
//! let config = Config::default();
//! let pages: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 4096]).collect();
//! let refs: Vec<&[u8]> = pages.iter().map(|p| p.as_slice()).collect();
//!
//! let mut enc = Encoder::new(config.clone())?;
//! let mut frame = vec![0; enc.max_frame_len(refs.len())];
//! let len = enc.encode(&refs, &mut frame)?;
//!
//! let mut dec = Decoder::new(config)?;
//! let mut out = vec![0; 4 * 4096];
//! dec.decode_into(&frame[..len], &mut out)?;
//! assert_eq!(out, pages.concat());
//! # Ok::<(), mecom::Error>(())
//! ```
//!
//! # Safety
//!
//! Every module but [`ffi`] is `#![forbid(unsafe_code)]`; `ffi` holds the
//! only `unsafe` blocks, each with a `// SAFETY:` comment.

mod cache;
pub mod classify;
mod codec;
mod config;
mod counters;
mod decoder;
mod encoder;
mod error;
pub mod ffi;
pub mod format;
mod hash;
mod method;
pub mod policy;

pub use cache::{CacheCounters, PageCache};
pub use config::{Config, LzCodec, Mode};
pub use counters::Counters;
pub use decoder::{max_parts, Decoder, FrameInfo, Part};
pub use encoder::Encoder;
pub use error::{Error, Result};
pub use format::Placement;
pub use method::{slot_name, Method, METHOD_SLOTS};
pub use policy::{LinkStats, TransportStats};

/// Page-level codecs, exposed for benchmarks and the `mecom` tool.
pub mod codecs {
    pub use crate::codec::dedup;
    pub use crate::codec::delta;
    pub use crate::codec::lz::{lz4_decode, lz4_encode, lz4_max_len, lzo_decode, lzo_encode};
    pub use crate::codec::sparse;

    /// WKdm (see the engine module's documentation for the layout).
    pub mod wkdm {
        /// Worst-case encoded length of a page of `page_len` bytes.
        pub fn max_encoded_len(page_len: usize) -> usize {
            crate::codec::wkdm::max_encoded_len(page_len)
        }
        /// Encodes `page` into `out` if the result fits `limit` bytes.
        pub fn encode(page: &[u8], out: &mut [u8], limit: usize) -> Option<usize> {
            crate::codec::wkdm::encode(page, out, limit)
        }
        /// Decodes `src` into `page`.
        pub fn decode(src: &[u8], page: &mut [u8]) -> Result<(), &'static str> {
            crate::codec::wkdm::decode(src, page)
        }
    }
}
