//! Per-page method tags: how one page of a frame is encoded.
//!
//! Tag values are wire format and never change meaning.  The tag space is
//! split so that later methods can be added without breaking old decoders in
//! silent ways:
//!
//! | range       | use                                                            |
//! |-------------|----------------------------------------------------------------|
//! | `0x00-0x08` | v1 stateless methods (below); `0x07` and `0x08` are retired   |
//! | `0x09-0x3f` | reserved for further stateless methods                         |
//! | `0x40-0x41` | delta against the page the destination holds (below); a frame |
//! |             | using them sets the header's delta feature bit                 |
//! | `0x42-0x43` | head and member of a zstd group in the channel's stream        |
//! |             | (below); a frame holding a group sets the stream feature bit   |
//! | `0x44`      | dedup: a reference to another page of the frame's block that  |
//! |             | the destination holds; a frame using it sets the dedup bit     |
//! | `0x45-0x7f` | reserved for further stateful methods                          |
//! | `0x80-0xff` | reserved                                                       |
//!
//! A decoder rejects any tag it does not know with
//! [`Error::UnknownMethod`](crate::Error::UnknownMethod), the retired
//! [`RETIRED_TAGS`] included.

#![forbid(unsafe_code)]

use std::ffi::CStr;

/// How one page is encoded.  The discriminant is the wire tag; the
/// per-method counters index by [`Method::counter_slot`].  Exported to C
/// as `mecom_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Method {
    /// The page verbatim.
    Raw = 0,
    /// An all-zero page; empty payload.
    Zero = 1,
    /// One 32-bit word repeated over the whole page; 4-byte payload.
    Fill = 2,
    /// Mostly zero: runs of non-zero words with their positions.
    Sparse = 3,
    /// WKdm: 16-entry dictionary of recent words, zero/exact/partial/miss tags.
    Wkdm = 4,
    /// LZO1X-1.
    Lzo = 5,
    /// LZ4 block.
    Lz4 = 6,
    /// The XOR of the page with the version the destination holds, as
    /// sparse runs, after the hash of that version.
    DeltaSparse = 0x40,
    /// The XOR of the page with the version the destination holds, as one
    /// LZ4 block, after the hash of that version.
    DeltaLz4 = 0x41,
    /// Head of a zstd group: the payload is the next piece of the channel's
    /// zstd stream, which decodes to this page followed by the group's
    /// members in table order.
    Zstd = 0x42,
    /// A page whose bytes live in an earlier zstd group: empty payload, the
    /// entry's length field holds the page index of the group's head.
    ZstdMember = 0x43,
    /// A page equal to another page of the same block that the destination
    /// already holds: the payload is that page's offset in the block and
    /// the hash of its bytes.
    Dedup = 0x44,
}

/// Tags that once had a meaning and never get another; refused as unknown
/// methods.  `0x07` was the stateless zstd group (one zstd frame per
/// group), which the stream ([`Method::Zstd`]) replaced; `0x08` the zstd
/// member that belonged to the nearest head before it, which kept a group
/// to the pages up to the next head: every run of a class was a group of
/// its own, flushed on its own ([`Method::ZstdMember`] names its head).
pub const RETIRED_TAGS: [u8; 2] = [0x07, 0x08];

/// Number of slots in per-method counters (room for methods to come).
pub const METHOD_SLOTS: usize = 16;

impl Method {
    /// Every method, in tag order.
    ///
    /// cbindgen:ignore
    pub const ALL: [Method; 12] = [
        Method::Raw,
        Method::Zero,
        Method::Fill,
        Method::Sparse,
        Method::Wkdm,
        Method::Lzo,
        Method::Lz4,
        Method::DeltaSparse,
        Method::DeltaLz4,
        Method::Zstd,
        Method::ZstdMember,
        Method::Dedup,
    ];

    /// Parses a wire tag; returns the tag back when it is unknown.
    pub fn from_tag(tag: u8) -> Result<Method, u8> {
        Method::ALL
            .iter()
            .copied()
            .find(|m| m.tag() == tag)
            .ok_or(tag)
    }

    /// Whether the page decodes against the destination's current version
    /// of it (the frame must set [`crate::format::FEATURE_DELTA`]).
    pub fn is_delta(self) -> bool {
        matches!(self, Method::DeltaSparse | Method::DeltaLz4)
    }

    /// The wire tag.
    pub fn tag(self) -> u8 {
        self as u8
    }

    /// The counter slot pages of this method are counted under: the slot
    /// of its tag for the stateless ones, zstd heads and members in slot 7
    /// (the zstd tier's slot since version 1), the delta methods in the
    /// slots after the stateless ones, then dedup references.
    pub fn counter_slot(self) -> usize {
        match self {
            Method::Zstd | Method::ZstdMember => 7,
            Method::DeltaSparse => 9,
            Method::DeltaLz4 => 10,
            Method::Dedup => 11,
            m => m as usize,
        }
    }

    /// Short lower-case name, as shown in statistics; NUL-terminated for C.
    pub fn c_name(self) -> &'static CStr {
        match self {
            Method::Raw => c"raw",
            Method::Zero => c"zero",
            Method::Fill => c"fill",
            Method::Sparse => c"sparse",
            Method::Wkdm => c"wkdm",
            Method::Lzo => c"lzo",
            Method::Lz4 => c"lz4",
            Method::Zstd | Method::ZstdMember => c"zstd",
            Method::DeltaSparse => c"delta-sparse",
            Method::DeltaLz4 => c"delta-lz4",
            Method::Dedup => c"dedup",
        }
    }

    /// Short lower-case name, as shown in statistics.
    pub fn name(self) -> &'static str {
        // Every name above is ASCII.
        self.c_name().to_str().unwrap_or("unknown")
    }
}

/// Name of a counter slot, NUL-terminated, or `"unknown"`.
pub fn slot_c_name(slot: usize) -> &'static CStr {
    match Method::ALL.iter().find(|m| m.counter_slot() == slot) {
        Some(m) => m.c_name(),
        None => c"unknown",
    }
}

/// Name of a counter slot, or `"unknown"`.
pub fn slot_name(slot: usize) -> &'static str {
    slot_c_name(slot).to_str().unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_unknown_tags_are_rejected() {
        for m in Method::ALL {
            assert_eq!(Method::from_tag(m.tag()), Ok(m));
        }
        for tag in RETIRED_TAGS.into_iter().chain(9..=0x3f).chain(0x45..=255) {
            assert_eq!(Method::from_tag(tag), Err(tag));
        }
    }

    #[test]
    fn slots_name_methods() {
        assert_eq!(slot_name(4), "wkdm");
        assert_eq!(slot_name(8), "unknown");
        assert_eq!(slot_name(9), "delta-sparse");
        assert_eq!(slot_name(10), "delta-lz4");
        assert_eq!(slot_name(11), "dedup");
        assert_eq!(slot_name(12), "unknown");
        assert_eq!(slot_name(7), "zstd");
        assert_eq!(Method::ZstdMember.counter_slot(), 7);
        assert_eq!(Method::Zstd.counter_slot(), 7);
    }
}
