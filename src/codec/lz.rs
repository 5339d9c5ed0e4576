//! The LZ codecs for low-similarity pages: LZ4 (the default fast path) and
//! LZO1X-1 (MECOM's original choice), both from crates under
//! `forbid(unsafe_code)`.
//!
//! Why both: on guest pages LZO1X-1 gives a few percent fewer bytes, LZ4
//! decodes two to three times faster and compresses faster.  The policy
//! picks one per encoder; the decoder reads either.

#![forbid(unsafe_code)]

use super::DecodeResult;

/// Worst-case LZ4 block size for `page_len` bytes.
pub fn lz4_max_len(page_len: usize) -> usize {
    lz4_flex::block::get_maximum_output_size(page_len)
}

/// The LZ4 compressor's hash table, kept between pages: `compress_into`
/// allocates and frees a fresh one on every call.
pub struct Lz4Table(lz4_flex::block::CompressTable);

impl Default for Lz4Table {
    fn default() -> Self {
        Lz4Table(lz4_flex::block::CompressTable::small())
    }
}

/// LZ4-compresses `page` into `scratch` (at least [`lz4_max_len`] bytes) and
/// returns the length when it is at most `limit`.  Allocates a hash table
/// per call; the encoder uses `lz4_encode_with`, which keeps the table.
pub fn lz4_encode(page: &[u8], scratch: &mut [u8], limit: usize) -> Option<usize> {
    lz4_encode_with(&mut Lz4Table::default(), page, scratch, limit)
}

/// [`lz4_encode`] with a reused hash table (cleared by the crate on every
/// call, so the output is the same).
pub fn lz4_encode_with(
    table: &mut Lz4Table,
    page: &[u8],
    scratch: &mut [u8],
    limit: usize,
) -> Option<usize> {
    let n = lz4_flex::block::compress_into_with_table(page, scratch, &mut table.0).ok()?;
    (n <= limit).then_some(n)
}

/// Decodes an LZ4 block that must fill `page` exactly.
pub fn lz4_decode(src: &[u8], page: &mut [u8]) -> DecodeResult {
    match lz4_flex::block::decompress_into(src, page) {
        Ok(n) if n == page.len() => Ok(()),
        Ok(_) => Err("lz4 block is shorter than a page"),
        Err(_) => Err("lz4 block is malformed or longer than a page"),
    }
}

/// LZO1X-1 compresses `page`; the crate allocates its output, which is then
/// copied into `out` when it fits `limit`.
pub fn lzo_encode(page: &[u8], out: &mut [u8], limit: usize) -> Option<usize> {
    let v = lzo1x::compress(page, lzo1x::CompressLevel::new(1));
    if v.len() > limit || v.len() > out.len() {
        return None;
    }
    out[..v.len()].copy_from_slice(&v);
    Some(v.len())
}

/// Decodes an LZO1X stream that must fill `page` exactly.
pub fn lzo_decode(src: &[u8], page: &mut [u8]) -> DecodeResult {
    lzo1x::decompress(src, page).map_err(|e| match e {
        lzo1x::DecompressError::OutputLength => "lzo stream does not fill exactly one page",
        _ => "lzo stream is malformed",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text_page() -> Vec<u8> {
        b"static int multifd_send_setup(MultiFDSendParams *p, Error **errp) { return 0; }\n"
            .iter()
            .copied()
            .cycle()
            .take(4096)
            .collect()
    }

    #[test]
    fn both_round_trip_text() {
        let page = text_page();
        let mut out = vec![0u8; lz4_max_len(4096)];
        let mut back = vec![0u8; 4096];
        let n = lz4_encode(&page, &mut out, 4095).unwrap();
        lz4_decode(&out[..n], &mut back).unwrap();
        assert_eq!(back, page);
        let n = lzo_encode(&page, &mut out, 4095).unwrap();
        back.fill(0);
        lzo_decode(&out[..n], &mut back).unwrap();
        assert_eq!(back, page);
    }

    #[test]
    fn short_streams_are_rejected() {
        let half = vec![7u8; 2048];
        let mut out = vec![0u8; lz4_max_len(4096)];
        let mut page = vec![0u8; 4096];
        let n = lz4_encode(&half, &mut out, 4096).unwrap();
        assert_eq!(
            lz4_decode(&out[..n], &mut page),
            Err("lz4 block is shorter than a page")
        );
        let n = lzo_encode(&half, &mut out, 4096).unwrap();
        assert_eq!(
            lzo_decode(&out[..n], &mut page),
            Err("lzo stream does not fill exactly one page")
        );
        assert!(lzo_decode(&[], &mut page).is_err());
    }

    /// A reused table gives the bytes a fresh one gives, page after page.
    #[test]
    fn reused_table_gives_the_same_blocks() {
        let mut table = Lz4Table::default();
        let (mut a, mut b) = (vec![0u8; lz4_max_len(4096)], vec![0u8; lz4_max_len(4096)]);
        let mut x = 1u32;
        for k in 0..20u32 {
            let page: Vec<u8> = (0..4096u32)
                .map(|i| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    if i % (k + 2) == 0 {
                        (x >> 24) as u8
                    } else {
                        (i % 7) as u8
                    }
                })
                .collect();
            let n = lz4_encode_with(&mut table, &page, &mut a, usize::MAX).unwrap();
            let m = lz4_encode(&page, &mut b, usize::MAX).unwrap();
            assert_eq!(a[..n], b[..m]);
        }
    }

    proptest! {
        #[test]
        fn decoders_never_panic(src in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let mut page = vec![0u8; 4096];
            let _ = lz4_decode(&src, &mut page);
            let _ = lzo_decode(&src, &mut page);
        }
    }
}
