//! Deltas: a page as the XOR with the version the destination holds.
//!
//! ```text
//! u64 base_hash   xxh3-64 (seed 0) of the version the delta applies to
//! body            delta-sparse: the XOR as sparse runs (see `sparse`)
//!                 delta-lz4:    the XOR as one LZ4 block
//! ```
//!
//! Why the XOR: a re-dirtied page usually differs from its previous
//! version in a few words or one slice, so the XOR is mostly zero words,
//! which the sparse coder writes as a handful of runs at memory speed; when
//! more changed, LZ4 still finds the zero stretches.  Why the base hash: a
//! destination whose page is not the version the source remembers (a
//! transport that reordered pages, a source cache gone stale) fails with
//! a named error before anything is written, instead of a bare checksum
//! mismatch.

#![forbid(unsafe_code)]

use super::{lz, sparse};
use crate::method::Method;

/// Bytes of the base hash before the body.
pub const BASE_HASH_LEN: usize = 8;

/// The sparse body is kept up to 1/`SPARSE_MAX_FRACTION` of a page; past
/// that LZ4 of the XOR is smaller, since its zero runs cost almost nothing.
const SPARSE_MAX_FRACTION: usize = 8;

/// Why a delta did not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaError {
    /// The destination's page is not the version the delta was made from.
    BaseMismatch {
        /// The hash the delta carries.
        expected: u64,
        /// The hash of the destination's page.
        found: u64,
    },
    /// The payload is malformed.
    Corrupt(&'static str),
}

/// `dst[i] = a[i] ^ b[i]`, a word at a time.
fn xor_into(dst: &mut [u8], a: &[u8], b: &[u8]) {
    for ((d, x), y) in dst
        .chunks_exact_mut(8)
        .zip(a.chunks_exact(8))
        .zip(b.chunks_exact(8))
    {
        let w = u64::from_ne_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]])
            ^ u64::from_ne_bytes([y[0], y[1], y[2], y[3], y[4], y[5], y[6], y[7]]);
        d.copy_from_slice(&w.to_ne_bytes());
    }
}

/// `page[i] ^= x[i]`.
fn xor_assign(page: &mut [u8], x: &[u8]) {
    for (d, y) in page.chunks_exact_mut(8).zip(x.chunks_exact(8)) {
        let w = u64::from_ne_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
            ^ u64::from_ne_bytes([y[0], y[1], y[2], y[3], y[4], y[5], y[6], y[7]]);
        d.copy_from_slice(&w.to_ne_bytes());
    }
}

/// Buffers a delta encoder reuses between pages.
pub struct DeltaScratch {
    xor: Vec<u8>,
    lz: Vec<u8>,
    table: lz::Lz4Table,
}

impl DeltaScratch {
    /// Buffers for pages of `page_size` bytes.
    pub fn new(page_size: usize) -> DeltaScratch {
        DeltaScratch {
            xor: vec![0; page_size],
            lz: vec![0; lz::lz4_max_len(page_size)],
            table: lz::Lz4Table::default(),
        }
    }
}

/// Encodes `page` as a delta against `base` into `out` if the payload fits
/// `limit` bytes; returns the method and the payload length.
pub fn encode(
    page: &[u8],
    base: &[u8],
    out: &mut [u8],
    limit: usize,
    scratch: &mut DeltaScratch,
) -> Option<(Method, usize)> {
    let ps = page.len();
    let body_limit = limit.min(out.len()).checked_sub(BASE_HASH_LEN)?;
    let xor = &mut scratch.xor[..ps];
    xor_into(xor, page, base);
    let (head, body) = out.split_at_mut(BASE_HASH_LEN);
    head.copy_from_slice(&crate::hash::xxh3_64(base).to_le_bytes());
    if let Some(n) = sparse::encode(xor, body, body_limit.min(ps / SPARSE_MAX_FRACTION)) {
        return Some((Method::DeltaSparse, BASE_HASH_LEN + n));
    }
    let n = lz::lz4_encode_with(&mut scratch.table, xor, &mut scratch.lz, body_limit)?;
    body[..n].copy_from_slice(&scratch.lz[..n]);
    Some((Method::DeltaLz4, BASE_HASH_LEN + n))
}

/// Applies the delta `src` of `method` to `page`, which holds the base on
/// entry and the new version on success (on error its content is
/// unspecified).  `xor` is one page of scratch.
pub fn decode(
    method: Method,
    src: &[u8],
    page: &mut [u8],
    xor: &mut [u8],
) -> Result<(), DeltaError> {
    let (hash, body) = src
        .split_first_chunk::<BASE_HASH_LEN>()
        .ok_or(DeltaError::Corrupt("shorter than its base hash"))?;
    let expected = u64::from_le_bytes(*hash);
    let found = crate::hash::xxh3_64(page);
    if found != expected {
        return Err(DeltaError::BaseMismatch { expected, found });
    }
    let xor = &mut xor[..page.len()];
    match method {
        Method::DeltaSparse => sparse::decode(body, xor),
        Method::DeltaLz4 => lz::lz4_decode(body, xor),
        _ => Err("not a delta method"),
    }
    .map_err(DeltaError::Corrupt)?;
    xor_assign(page, xor);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PS: usize = 4096;

    fn round_trip(page: &[u8], base: &[u8]) -> Option<(Method, usize)> {
        let mut scratch = DeltaScratch::new(PS);
        let mut out = vec![0u8; PS];
        let (method, n) = encode(page, base, &mut out, PS - 1, &mut scratch)?;
        let mut back = base.to_vec();
        let mut xor = vec![0u8; PS];
        decode(method, &out[..n], &mut back, &mut xor).unwrap();
        assert_eq!(back, page);
        Some((method, n))
    }

    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn a_few_changed_words_cost_a_few_bytes() {
        let base = noise(1, PS);
        let mut page = base.clone();
        page[100..108].copy_from_slice(&[9; 8]);
        page[2000] ^= 0xff;
        let (method, n) = round_trip(&page, &base).unwrap();
        assert_eq!(method, Method::DeltaSparse);
        assert!(n <= BASE_HASH_LEN + 2 + 2 * 4 + 3 * 4, "{n}");
        // An unchanged page is its base hash and an empty run list.
        assert_eq!(round_trip(&base, &base), Some((Method::DeltaSparse, 10)));
    }

    #[test]
    fn a_rewritten_half_page_goes_lz4() {
        let base = noise(2, PS);
        let mut page = base.clone();
        page[..PS / 2].fill(0x41);
        let (method, n) = round_trip(&page, &base).unwrap();
        assert_eq!(method, Method::DeltaLz4);
        assert!(n < PS / 2 + 64, "{n}");
    }

    #[test]
    fn an_unrelated_page_gives_up() {
        assert_eq!(round_trip(&noise(3, PS), &noise(4, PS)), None);
    }

    #[test]
    fn a_delta_refuses_another_base() {
        let base = noise(5, PS);
        let mut page = base.clone();
        page[7] ^= 1;
        let mut scratch = DeltaScratch::new(PS);
        let mut out = vec![0u8; PS];
        let (method, n) = encode(&page, &base, &mut out, PS - 1, &mut scratch).unwrap();
        let mut other = base.clone();
        other[4095] ^= 0x80;
        let mut xor = vec![0u8; PS];
        let got = decode(method, &out[..n], &mut other, &mut xor);
        assert!(
            matches!(got, Err(DeltaError::BaseMismatch { .. })),
            "{got:?}"
        );
    }

    proptest! {
        #[test]
        fn base_plus_delta_is_the_page(
            seed in any::<u64>(),
            edits in prop::collection::vec((0usize..PS, 1usize..300, any::<u8>()), 0..12),
        ) {
            let base = noise(seed, PS);
            let mut page = base.clone();
            for (at, len, byte) in edits {
                let end = (at + len).min(PS);
                page[at..end].fill(byte);
            }
            if let Some((m, n)) = round_trip(&page, &base) {
                prop_assert!(m.is_delta());
                prop_assert!(n < PS);
            }
        }

        #[test]
        fn corrupt_deltas_never_panic(
            body in prop::collection::vec(any::<u8>(), 0..600),
            lz in any::<bool>(),
        ) {
            let mut page = vec![0u8; PS];
            let mut src = crate::hash::xxh3_64(&page).to_le_bytes().to_vec();
            src.extend_from_slice(&body);
            let method = if lz { Method::DeltaLz4 } else { Method::DeltaSparse };
            let mut xor = vec![0u8; PS];
            let _ = decode(method, &src, &mut page, &mut xor);
        }
    }
}
