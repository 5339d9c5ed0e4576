//! Frame format v1: header and page table.  `docs/FORMAT.md` is the
//! normative description; this module is its code.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "MCBC"
//!      4     1  version (1)
//!      5     1  page_shift (12..=16: page size 4 KiB..64 KiB)
//!      6     2  page_count (1..=1024; 0 only with feature bit 1)
//!      8     4  sequence (per-channel frame counter, from 0, wrapping)
//!     12     4  features (bit 1: the checksum is bound to the packet's
//!                 placement; bit 0 is retired; other bits are rejected)
//!     16     4  payload_len (bytes of page payloads after the table)
//!     20     4  reserved (0)
//!     24     8  checksum: xxh3-64 of the decoded pages, in order, seeded
//!                 with 0 (or, with bit 1, the placement's hash)
//!     32  4*n   page table: per page u32 = tag << 24 | payload length
//!      …        payloads, in table order
//! ```
//! All integers are little-endian.

#![forbid(unsafe_code)]

use crate::error::{Error, Result};

/// The four bytes every frame starts with.
pub const MAGIC: [u8; 4] = *b"MCBC";
/// Format version written and read by this library.
pub const VERSION: u8 = 1;
/// Bytes in the fixed header.
pub const HEADER_LEN: usize = 32;
/// Bytes per page table entry.
pub const ENTRY_LEN: usize = 4;
/// Most pages one frame may carry.
pub const MAX_PAGES: usize = 1024;
/// Smallest supported page size.
pub const MIN_PAGE_SIZE: u32 = 4096;
/// Largest supported page size.
pub const MAX_PAGE_SIZE: u32 = 65536;
/// Feature bit: the checksum is seeded with the hash of the frame's
/// [`Placement`] (where the transport's packet header says the pages go),
/// so a corrupted block name, page offset or zero-page list fails the
/// frame like a corrupted page does.
pub const FEATURE_PLACEMENT: u32 = 1 << 1;
/// Feature bit: some pages are deltas ([`Method::is_delta`]) against the
/// version of the page the destination already holds, so the frame
/// decodes only onto that version.  Only bound frames may set it: a delta
/// needs to know which page it applies to.
///
/// [`Method::is_delta`]: crate::Method::is_delta
pub const FEATURE_DELTA: u32 = 1 << 2;
/// Feature bit: the frame holds a zstd group ([`Method::Zstd`]), the next
/// piece of the channel's zstd stream, so it decodes only after the
/// channel's earlier frames, on the decoder that decoded them.
///
/// [`Method::Zstd`]: crate::Method::Zstd
pub const FEATURE_STREAM: u32 = 1 << 3;
/// Feature bit: some pages are dedup references ([`Method::Dedup`]) to
/// another page of the frame's block that the destination already holds,
/// so the frame decodes only after the channel's earlier frames.  Only
/// bound frames may set it: the placement names the block.
///
/// [`Method::Dedup`]: crate::Method::Dedup
pub const FEATURE_DEDUP: u32 = 1 << 4;
/// Feature bits this decoder understands.
pub const KNOWN_FEATURES: u32 = FEATURE_PLACEMENT | FEATURE_DELTA | FEATURE_STREAM | FEATURE_DEDUP;
/// Feature bits that once had a meaning and never get another: bit 0 was
/// `RAW_UNCHECKED` (raw pages outside the checksum), retired because a
/// flipped raw page then decoded without error.  A frame that sets one is
/// refused with [`Error::RetiredFeature`], whatever else it holds.
pub const RETIRED_FEATURES: u32 = 1;
/// Largest payload length one table entry can express.
const MAX_ENTRY_LEN: usize = (1 << 24) - 1;

/// Where a frame's pages go, as the transport's packet header says: the
/// memory block's name, the offset of each page of the frame in it, and
/// the offsets of the block's pages the same packet declares all-zero
/// (which never reach the codec).  A frame bound to a placement
/// ([`FEATURE_PLACEMENT`]) decodes only against the same placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement<'a> {
    /// The block's name (QEMU: the RAMBlock's `idstr`, without its NUL).
    pub block: &'a [u8],
    /// Offset in the block of each page of the frame, in frame order.
    pub offsets: &'a [u64],
    /// Offsets in the block of the packet's all-zero pages.
    pub zero_offsets: &'a [u64],
}

impl Placement<'_> {
    /// The checksum seed: xxh3-64 (seed 0) of the block name's length
    /// (u32), the name, the page count (u32), the offsets (u64 each), the
    /// zero-page count (u32) and the zero-page offsets (u64 each), all
    /// little-endian (`docs/FORMAT.md` §1.1).
    pub fn seed(&self) -> u64 {
        let mut h = crate::hash::Xxh3::with_seed(0);
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
        h.update(&count(self.block.len()));
        h.update(self.block);
        h.update(&count(self.offsets.len()));
        for o in self.offsets {
            h.update(&o.to_le_bytes());
        }
        h.update(&count(self.zero_offsets.len()));
        for o in self.zero_offsets {
            h.update(&o.to_le_bytes());
        }
        h.digest()
    }
}

/// Returns log2 of `page_size` if it is supported.
pub fn page_shift(page_size: u32) -> Result<u8> {
    if page_size.is_power_of_two() && (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
        // trailing_zeros of a u32 is at most 31, so it fits a u8.
        Ok(page_size.trailing_zeros() as u8)
    } else {
        Err(Error::UnsupportedPageSize { page_size })
    }
}

/// The largest frame `n_pages` pages of `page_size` bytes can produce, or
/// `None` when either is unsupported.  The encoder never writes more, because
/// a page that would not shrink is sent raw.
pub fn max_frame_len(n_pages: usize, page_size: u32) -> Option<usize> {
    page_shift(page_size).ok()?;
    if n_pages == 0 || n_pages > MAX_PAGES {
        return None;
    }
    Some(HEADER_LEN + n_pages * (ENTRY_LEN + page_size as usize))
}

/// The fixed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// log2 of the page size.
    pub page_shift: u8,
    /// Pages in the frame.
    pub page_count: u16,
    /// Per-channel frame counter.
    pub sequence: u32,
    /// Feature bits.
    pub features: u32,
    /// Bytes of payload after the table.
    pub payload_len: u32,
    /// xxh3-64 of the decoded pages.
    pub checksum: u64,
}

impl Header {
    /// Serialises the header into the first [`HEADER_LEN`] bytes of `out`.
    pub fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[5] = self.page_shift;
        out[6..8].copy_from_slice(&self.page_count.to_le_bytes());
        out[8..12].copy_from_slice(&self.sequence.to_le_bytes());
        out[12..16].copy_from_slice(&self.features.to_le_bytes());
        out[16..20].copy_from_slice(&self.payload_len.to_le_bytes());
        out[20..24].copy_from_slice(&0u32.to_le_bytes());
        out[24..32].copy_from_slice(&self.checksum.to_le_bytes());
    }

    /// Parses and checks the structure of a header: magic, version, feature
    /// bits, page size, page count range and the reserved field.
    pub fn parse(frame: &[u8]) -> Result<Header> {
        let Some(bytes) = frame.first_chunk::<HEADER_LEN>() else {
            return Err(short_header(frame));
        };
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if magic != MAGIC {
            return Err(Error::BadMagic { found: magic });
        }
        if bytes[4] != VERSION {
            return Err(Error::UnsupportedVersion { version: bytes[4] });
        }
        let features = u32_at(12);
        check_features(features)?;
        let page_shift = bytes[5];
        if !(12..=16).contains(&page_shift) {
            return Err(Error::UnsupportedPageSize {
                page_size: 1u32.checked_shl(u32::from(page_shift)).unwrap_or(0),
            });
        }
        let page_count = u16::from_le_bytes([bytes[6], bytes[7]]);
        // A frame without pages exists only to bind a placement (a packet
        // whose pages are all zero); unbound, it would vouch for nothing.
        let empty_unbound = page_count == 0 && features & FEATURE_PLACEMENT == 0;
        if empty_unbound || usize::from(page_count) > MAX_PAGES {
            return Err(Error::TooManyPages {
                pages: usize::from(page_count),
                max: MAX_PAGES,
            });
        }
        if u32_at(20) != 0 {
            return Err(Error::InvalidArgument {
                reason: "reserved header field is not zero",
            });
        }
        if features & FEATURE_DELTA != 0 && features & FEATURE_PLACEMENT == 0 {
            return Err(Error::InvalidArgument {
                reason: "a delta frame must be bound to a placement",
            });
        }
        if features & FEATURE_DEDUP != 0 && features & FEATURE_PLACEMENT == 0 {
            return Err(Error::InvalidArgument {
                reason: "a dedup frame must be bound to a placement",
            });
        }
        let mut checksum = [0u8; 8];
        checksum.copy_from_slice(&bytes[24..32]);
        Ok(Header {
            page_shift,
            page_count,
            sequence: u32_at(8),
            features,
            payload_len: u32_at(16),
            checksum: u64::from_le_bytes(checksum),
        })
    }
}

/// The error for a frame shorter than a header: a bad magic if what is
/// there already differs from it, else truncated.
fn short_header(frame: &[u8]) -> Error {
    let mut found = [0u8; 4];
    let n = frame.len().min(4);
    found[..n].copy_from_slice(&frame[..n]);
    if found[..n] != MAGIC[..n] {
        return Error::BadMagic { found };
    }
    Error::Truncated {
        needed: HEADER_LEN,
        available: frame.len(),
    }
}

/// Refuses retired feature bits first (by name), then unknown ones.
fn check_features(features: u32) -> Result<()> {
    if features & RETIRED_FEATURES != 0 {
        return Err(Error::RetiredFeature {
            features: features & RETIRED_FEATURES,
        });
    }
    if features & !KNOWN_FEATURES != 0 {
        return Err(Error::UnsupportedFeature {
            features: features & !KNOWN_FEATURES,
        });
    }
    Ok(())
}

/// Packs one page table entry.
pub fn pack_entry(tag: u8, len: usize) -> [u8; ENTRY_LEN] {
    debug_assert!(len <= MAX_ENTRY_LEN);
    ((u32::from(tag) << 24) | (len as u32 & 0x00ff_ffff)).to_le_bytes()
}

/// Bytes of the head of a frame of `n_pages` pages: its header and page
/// table, everything a receiver reads before the payloads.
pub fn head_len(n_pages: usize) -> usize {
    HEADER_LEN + n_pages * ENTRY_LEN
}

/// The total length of the frame whose header starts `header`, from the
/// header alone: header, page table and payload.
///
/// The header is checked as [`Header::parse`] does.  A receiver that reads
/// frames from a stream uses this to check a length it was told (QEMU's
/// `next_packet_size`) against the length the frame declares before it
/// reads the rest, so a corrupted length is an error at once instead of a
/// read that waits for bytes that belong to the next packet.
pub fn frame_len(header: &[u8]) -> Result<usize> {
    let h = Header::parse(header)?;
    Ok(head_len(usize::from(h.page_count)) + h.payload_len as usize)
}

/// Unpacks one page table entry into (tag, payload length).
pub fn unpack_entry(bytes: [u8; ENTRY_LEN]) -> (u8, usize) {
    let v = u32::from_le_bytes(bytes);
    ((v >> 24) as u8, (v & 0x00ff_ffff) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            page_shift: 12,
            page_count: 128,
            sequence: 7,
            features: 0,
            payload_len: 1234,
            checksum: 0x0123_4567_89ab_cdef,
        }
    }

    #[test]
    fn header_round_trips_little_endian() {
        let mut buf = [0u8; HEADER_LEN];
        sample().write(&mut buf);
        assert_eq!(&buf[0..4], b"MCBC");
        assert_eq!(buf[6..8], [128, 0]);
        assert_eq!(buf[16..20], 1234u32.to_le_bytes());
        assert_eq!(Header::parse(&buf), Ok(sample()));
    }

    #[test]
    fn header_rejects_what_it_does_not_know() {
        let mut buf = [0u8; HEADER_LEN];
        sample().write(&mut buf);
        let mut b = buf;
        b[4] = 2;
        assert_eq!(
            Header::parse(&b),
            Err(Error::UnsupportedVersion { version: 2 })
        );
        let mut b = buf;
        b[12] = 32;
        assert_eq!(
            Header::parse(&b),
            Err(Error::UnsupportedFeature { features: 32 })
        );
        // A retired bit is named as such, even next to unknown ones.
        let mut b = buf;
        b[12] = 3;
        assert_eq!(
            Header::parse(&b),
            Err(Error::RetiredFeature { features: 1 })
        );
        let mut b = buf;
        b[5] = 11;
        assert_eq!(
            Header::parse(&b),
            Err(Error::UnsupportedPageSize { page_size: 2048 })
        );
        let mut b = buf;
        b[6] = 0;
        b[7] = 0;
        assert!(matches!(
            Header::parse(&b),
            Err(Error::TooManyPages { pages: 0, .. })
        ));
        let mut b = buf;
        b[0] = b'X';
        assert!(matches!(Header::parse(&b), Err(Error::BadMagic { .. })));
        assert_eq!(
            Header::parse(&buf[..10]),
            Err(Error::Truncated {
                needed: HEADER_LEN,
                available: 10
            })
        );
        assert!(matches!(Header::parse(b"XY"), Err(Error::BadMagic { .. })));
    }

    #[test]
    fn frame_len_is_header_table_and_payload() {
        let mut bytes = [0u8; HEADER_LEN];
        let h = Header {
            page_count: 3,
            payload_len: 100,
            ..sample()
        };
        h.write(&mut bytes);
        assert_eq!(frame_len(&bytes).unwrap(), HEADER_LEN + 3 * ENTRY_LEN + 100);
        assert!(matches!(
            frame_len(&bytes[..HEADER_LEN - 1]),
            Err(Error::Truncated { .. })
        ));
        bytes[0] ^= 1;
        assert!(matches!(frame_len(&bytes), Err(Error::BadMagic { .. })));
    }

    #[test]
    fn entries_pack_tag_and_length() {
        assert_eq!(unpack_entry(pack_entry(5, 4000)), (5, 4000));
        assert_eq!(
            unpack_entry(pack_entry(255, MAX_ENTRY_LEN)),
            (255, MAX_ENTRY_LEN)
        );
    }

    #[test]
    fn max_frame_len_bounds() {
        assert_eq!(max_frame_len(128, 4096), Some(32 + 128 * 4100));
        assert_eq!(max_frame_len(0, 4096), None);
        assert_eq!(max_frame_len(1025, 4096), None);
        assert_eq!(max_frame_len(1, 1000), None);
        assert_eq!(page_shift(65536), Ok(16));
    }
}
