//! Mostly-zero pages: runs of non-zero 32-bit words with their positions.
//!
//! ```text
//! u16 run_count
//! run_count × { u16 first_word, u16 word_count, word_count × 4 bytes }
//! ```
//! Runs are in ascending order, do not overlap or touch (a run ends before the
//! next one's first word, with at least one zero word in between), each has
//! at least one word, and no word of a run is zero: runs are maximal, so the
//! encoding of a page is unique.
//! Words not covered by a run are zero.
//!
//! Why runs rather than MECOM's (offset, value) pairs: non-zero data in
//! sparse guest pages clusters (a few live structures in an otherwise free
//! page), so a run header of 4 bytes is amortised over several words, where a
//! pair costs 6 bytes per word.  An isolated word costs 8 bytes as a run
//! against 6 as a pair; `mecom stat` prints both sizes so the choice stays
//! measured (see docs/DESIGN.md).

#![forbid(unsafe_code)]

use super::DecodeResult;

/// Worst case: every other word non-zero.  Only used to bound the scratch a
/// caller may want; the encoder itself honours `limit`.
pub const fn max_encoded_len(page_len: usize) -> usize {
    let words = page_len / 4;
    2 + words.div_ceil(2) * 8
}

fn word_at(page: &[u8], i: usize) -> u32 {
    let b = &page[i * 4..i * 4 + 4];
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Encodes `page` into `out`; `None` if the result would exceed `limit` or
/// `out`, or the page has more runs than a u16 counts.
pub fn encode(page: &[u8], out: &mut [u8], limit: usize) -> Option<usize> {
    let limit = limit.min(out.len());
    let words = page.len() / 4;
    let mut pos = 2usize;
    let mut runs = 0u16;
    let mut i = 0usize;
    while i < words {
        if word_at(page, i) == 0 {
            i += 1;
            continue;
        }
        let start = i;
        while i < words && word_at(page, i) != 0 {
            i += 1;
        }
        let count = i - start;
        let end = pos + 4 + count * 4;
        if end > limit {
            return None;
        }
        out[pos..pos + 2].copy_from_slice(&u16::try_from(start).ok()?.to_le_bytes());
        out[pos + 2..pos + 4].copy_from_slice(&u16::try_from(count).ok()?.to_le_bytes());
        out[pos + 4..end].copy_from_slice(&page[start * 4..i * 4]);
        pos = end;
        runs = runs.checked_add(1)?;
    }
    if limit < 2 {
        return None;
    }
    out[..2].copy_from_slice(&runs.to_le_bytes());
    Some(pos)
}

/// Decodes `src` into `page`.
pub fn decode(src: &[u8], page: &mut [u8]) -> DecodeResult {
    let words = page.len() / 4;
    let (count, mut rest) = src.split_first_chunk::<2>().ok_or("missing run count")?;
    let runs = u16::from_le_bytes(*count);
    page.fill(0);
    // First word the next run may start at: runs must be separated by zeros.
    let mut next_free = 0usize;
    for _ in 0..runs {
        let (hdr, tail) = rest
            .split_first_chunk::<4>()
            .ok_or("run header truncated")?;
        let start = usize::from(u16::from_le_bytes([hdr[0], hdr[1]]));
        let count = usize::from(u16::from_le_bytes([hdr[2], hdr[3]]));
        if count == 0 {
            return Err("empty run");
        }
        if start < next_free {
            return Err("runs overlap or are out of order");
        }
        let end = start
            .checked_add(count)
            .filter(|&e| e <= words)
            .ok_or("run beyond page")?;
        let bytes = count * 4;
        let data = tail.get(..bytes).ok_or("run data truncated")?;
        // Runs are maximal: a zero word inside one would give a second
        // spelling of the same page (two runs), so it is rejected.
        if data.chunks_exact(4).any(|w| w == [0; 4]) {
            return Err("zero word inside a run");
        }
        page[start * 4..end * 4].copy_from_slice(data);
        rest = &tail[bytes..];
        next_free = end + 1;
    }
    if !rest.is_empty() {
        return Err("trailing bytes after the last run");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(page: &[u8]) -> Option<usize> {
        let mut out = vec![0u8; max_encoded_len(page.len())];
        let cap = out.len();
        let n = encode(page, &mut out, cap)?;
        let mut back = vec![0xAAu8; page.len()];
        decode(&out[..n], &mut back).unwrap();
        assert_eq!(back, page);
        Some(n)
    }

    #[test]
    fn clustered_words_encode_compactly() {
        let mut page = vec![0u8; 4096];
        page[100..140].fill(0x11);
        page[4000..4004].copy_from_slice(&[1, 2, 3, 4]);
        // 2 + (4 + 40 + 4 bytes of the partial word rounding) ...
        let n = round_trip(&page).unwrap();
        assert!(n < 64, "{n}");
        assert_eq!(round_trip(&[0u8; 4096]), Some(2));
    }

    #[test]
    fn limit_aborts() {
        let page = vec![1u8; 4096];
        let mut out = vec![0u8; 8192];
        assert_eq!(encode(&page, &mut out, 100), None);
        assert_eq!(encode(&page, &mut out[..10], 4096), None);
    }

    #[test]
    fn malformed_inputs_are_rejected() {
        let mut page = vec![0u8; 4096];
        let cases: &[(&[u8], &str)] = &[
            (&[], "missing run count"),
            (&[1, 0], "run header truncated"),
            (&[1, 0, 0, 0, 0, 0], "empty run"),
            (&[1, 0, 0, 0, 1, 0, 9, 9], "run data truncated"),
            (
                &[1, 0, 0xff, 3, 2, 0, 1, 1, 1, 1, 1, 1, 1, 1],
                "run beyond page",
            ),
            (&[1, 0, 0, 0, 1, 0, 0, 0, 0, 0], "zero word inside a run"),
            (&[0, 0, 5], "trailing bytes after the last run"),
            (
                &[2, 0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1],
                "runs overlap or are out of order",
            ),
        ];
        for (src, why) in cases {
            assert_eq!(decode(src, &mut page), Err(*why), "{src:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trips_sparse_pages(cells in proptest::collection::vec((0usize..1024, any::<u32>()), 0..200)) {
            let mut page = vec![0u8; 4096];
            for (i, w) in cells {
                page[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
            }
            prop_assert!(round_trip(&page).is_some());
        }

        #[test]
        fn decoder_never_panics(src in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut page = vec![0u8; 4096];
            let _ = decode(&src, &mut page);
        }
    }
}
