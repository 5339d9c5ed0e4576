//! Dedup references: a page sent as the offset of an equal page of the
//! same block that the destination already holds.
//!
//! ```text
//! u64 offset   of the source page in the frame's block (a page multiple)
//! u64 hash     xxh3-64 (seed 0) of the source page's bytes
//! ```
//!
//! Why the hash: the encoder names a source only where the transport's
//! ordering guarantees that the destination holds the version it compared
//! against (`docs/FORMAT.md` §3.5); a destination whose page differs fails
//! with a named error ([`crate::Error::BaseMismatch`]) before anything is
//! written, not with a bare checksum mismatch.

#![forbid(unsafe_code)]

/// Bytes of a dedup payload.
pub const LEN: usize = 16;

/// The payload naming the page at `offset` whose bytes hash to `hash`.
pub fn encode(offset: u64, hash: u64) -> [u8; LEN] {
    let mut out = [0u8; LEN];
    out[..8].copy_from_slice(&offset.to_le_bytes());
    out[8..].copy_from_slice(&hash.to_le_bytes());
    out
}

/// The source offset and hash of a payload, for pages of `page_size`
/// bytes: exactly [`LEN`] bytes and a page-aligned offset.
pub fn decode(src: &[u8], page_size: usize) -> Result<(u64, u64), &'static str> {
    let (offset, hash) = src
        .split_first_chunk::<8>()
        .ok_or("shorter than a dedup reference")?;
    let hash: &[u8; 8] = hash
        .try_into()
        .map_err(|_| "not a dedup reference's length")?;
    let offset = u64::from_le_bytes(*offset);
    if offset % page_size as u64 != 0 {
        return Err("dedup source offset not page aligned");
    }
    Ok((offset, u64::from_le_bytes(*hash)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_round_trips_and_bad_ones_are_refused() {
        let r = encode(3 << 12, 0xfeed);
        assert_eq!(decode(&r, 4096), Ok((3 << 12, 0xfeed)));
        assert!(decode(&encode(3 << 12 | 8, 1), 4096).is_err());
        assert!(decode(&r[..15], 4096).is_err());
        let mut long = r.to_vec();
        long.push(0);
        assert!(decode(&long, 4096).is_err());
    }
}
