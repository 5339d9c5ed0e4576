//! Page characteristics (MECOM Fig. 2): one cheap look at a page that tells
//! which codec is worth trying.
//!
//! What is measured, and why each measure is cheap enough to run on every page:
//! - zero bytes over the whole page, eight bytes at a time (SWAR), because the
//!   sparse decision needs the exact share;
//! - whether the page is one repeated 32-bit word, with an early exit at the
//!   first difference, so ordinary pages pay a few compares;
//! - word similarity against a 16-entry direct-mapped dictionary of recent
//!   words (similar = zero, exact, or same upper 22 bits: exactly what WKdm
//!   can encode in under 32 bits) over a sample of four runs of 64 words, so
//!   the cost is a quarter of a full WKdm pass on 4 KiB pages;
//! - how many distinct byte values a 256-byte strided sample holds: random
//!   data shows ~160, text and program data far fewer, so a high count marks
//!   a page no LZ codec will shrink.
//!
//! A [`Profile`] and the [`Thresholds`] of the current plan give the page's
//! [`PageClass`]; which codec a class takes is the controller's business
//! (`crate::policy`).

#![forbid(unsafe_code)]

use crate::codec::wkdm::dict_index;

/// Words per similarity sample run.
const RUN_WORDS: usize = 64;
/// Sample runs per page.
const RUNS: usize = 4;
/// Bytes in the distinct-byte sample.
const BYTE_SAMPLES: usize = 256;

/// Zero-byte share below which a high-entropy page counts as random.
const RANDOM_MAX_ZERO_PERCENT: u32 = 5;

/// What the classifier says a page is (MECOM Fig. 2, plus fill and random).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageClass {
    /// All zero or one repeated 32-bit word: always a `zero`/`fill` tag.
    Fill,
    /// Zero bytes at or above the sparse threshold.
    Sparse,
    /// Similar 32-bit words at or above the similarity threshold.
    Similar,
    /// Everything else that looks compressible.
    Generic,
    /// Many distinct bytes, almost no zeros, not similar: looks random.
    Random,
}

impl PageClass {
    /// Number of classes.
    ///
    /// cbindgen:ignore
    pub const COUNT: usize = 5;
    /// Every class, in index order.
    pub const ALL: [PageClass; PageClass::COUNT] = [
        PageClass::Fill,
        PageClass::Sparse,
        PageClass::Similar,
        PageClass::Generic,
        PageClass::Random,
    ];

    /// Index into per-class arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Where one class ends and the next begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Zero-byte percentage at or above which a page is in the sparse class.
    pub sparse: u8,
    /// Similar-word percentage at or above which a page is in the similar
    /// class.
    pub similarity: u8,
    /// Distinct sampled bytes at or above which a page may be random.
    pub random_distinct_bytes: u32,
}

impl Thresholds {
    /// The class of a page with profile `p`.  The order is the routing
    /// order of `docs/DESIGN.md` §2.
    pub fn class(&self, p: &Profile, page_size: usize) -> PageClass {
        if p.fill.is_some() {
            return PageClass::Fill;
        }
        let zero_percent = p.zero_percent(page_size);
        let similar = p.similar_percent() >= u32::from(self.similarity);
        if !similar
            && zero_percent < RANDOM_MAX_ZERO_PERCENT
            && p.distinct_bytes >= self.random_distinct_bytes
        {
            PageClass::Random
        } else if zero_percent >= u32::from(self.sparse) {
            PageClass::Sparse
        } else if similar {
            PageClass::Similar
        } else {
            PageClass::Generic
        }
    }
}

impl Thresholds {
    /// Whether a page that is not a fill is in the random class, as
    /// [`Thresholds::class`] says, looking at what that needs: the byte
    /// sample first, which clears most pages, the whole profile only for
    /// pages with many distinct bytes.
    fn is_random(&self, page: &[u8]) -> bool {
        distinct_sampled_bytes(page) >= self.random_distinct_bytes
            && self.class(&profile(page), page.len()) == PageClass::Random
    }

    /// The class [`Thresholds::class`] gives a page, where the similar
    /// and generic classes need not be told apart (both come out as
    /// generic), and the random and sparse classes only when `random` and
    /// `sparse` say so (else they come out as generic too); with the
    /// repeated word of a fill page.  It looks at no more than that needs:
    /// a repeated word (a few compares for most pages), the zero bytes
    /// (one vectorised pass) only for `sparse`, the byte sample only for
    /// `random`, never the word similarity of the other pages.
    pub fn coarse(&self, page: &[u8], random: bool, sparse: bool) -> (PageClass, Option<u32>) {
        let zeros = sparse.then(|| count_zero_bytes(page));
        let fill = match zeros {
            Some(z) => fill_given_zeros(page, z),
            None => fill_word(page),
        };
        if fill.is_some() {
            return (PageClass::Fill, fill);
        }
        // The order of `class`: random before sparse, so a page with the
        // zeros of a sparse one is still random when its other bytes are
        // (a sparse threshold below `RANDOM_MAX_ZERO_PERCENT`), and then
        // generic when its class is not looked for.
        let zero_percent = zeros.map(|z| percent(z, page.len()));
        let sparse_zeros = zero_percent.is_some_and(|z| z >= u32::from(self.sparse));
        let may_be_random =
            random || sparse_zeros && zero_percent.is_some_and(|z| z < RANDOM_MAX_ZERO_PERCENT);
        if may_be_random && self.is_random(page) {
            let class = if random {
                PageClass::Random
            } else {
                PageClass::Generic
            };
            return (class, None);
        }
        if sparse_zeros {
            (PageClass::Sparse, None)
        } else {
            (PageClass::Generic, None)
        }
    }
}

/// What one page looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// Zero bytes in the page.
    pub zero_bytes: u32,
    /// `Some(word)` when the page is one 32-bit word repeated (all-zero pages
    /// give `Some(0)`).
    pub fill: Option<u32>,
    /// Similar words in the sample.
    pub similar_words: u32,
    /// Words in the sample.
    pub sampled_words: u32,
    /// Distinct byte values among 256 evenly strided sampled bytes.
    pub distinct_bytes: u32,
}

impl Profile {
    /// Zero bytes as a percentage of the page.
    pub fn zero_percent(&self, page_len: usize) -> u32 {
        percent(self.zero_bytes, page_len)
    }

    /// Similar words as a percentage of the sampled words.
    pub fn similar_percent(&self) -> u32 {
        (self.similar_words * 100)
            .checked_div(self.sampled_words)
            .unwrap_or(0)
    }
}

/// The word `page` repeats, if any, knowing it holds `zeros` zero bytes:
/// all zero is word 0, and only a count a fill word can make needs the
/// word compare.
fn fill_given_zeros(page: &[u8], zeros: u32) -> Option<u32> {
    if zeros as usize == page.len() {
        Some(0)
    } else if (zeros as usize).is_multiple_of(page.len() / 4) {
        // A fill word with k zero bytes makes exactly k * words zero bytes.
        fill_word(page)
    } else {
        None
    }
}

/// `part` as a whole percentage of `whole` (rounded down).
fn percent(part: u32, whole: usize) -> u32 {
    (u64::from(part) * 100 / whole as u64) as u32
}

/// Profiles a page (length a multiple of 64 bytes, at least 4096).
pub fn profile(page: &[u8]) -> Profile {
    let zero_bytes = count_zero_bytes(page);
    let fill = fill_given_zeros(page, zero_bytes);
    let (similar_words, sampled_words) = sampled_similarity(page);
    Profile {
        zero_bytes,
        fill,
        similar_words,
        sampled_words,
        distinct_bytes: distinct_sampled_bytes(page),
    }
}

/// Counts zero bytes, eight at a time.  Each byte lane of an accumulator
/// counts the zero bytes in its lane over a block of up to 255 words, and
/// the lanes are summed once per block: no population count per word
/// (baseline x86-64 has no instruction for it), and a loop the compiler
/// vectorises.
pub fn count_zero_bytes(page: &[u8]) -> u32 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const PAIRS: u64 = 0x00ff_00ff_00ff_00ff;
    let mut zeros = 0u32;
    for block in page.chunks(255 * 8) {
        let words = block.chunks_exact(8);
        let tail = words.remainder();
        let mut lanes = 0u64;
        for c in words {
            let x = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            // High bit of each byte of `y` is set iff that byte of `x` is zero.
            let y = !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7);
            lanes += y >> 7;
        }
        zeros += lane_sum(lanes, PAIRS) + tail.iter().filter(|&&b| b == 0).count() as u32;
    }
    zeros
}

/// The sum of the eight byte lanes of `lanes` (each at most 255).
fn lane_sum(lanes: u64, pairs: u64) -> u32 {
    // Pairs of lanes into 16-bit lanes (at most 510 each), then their sum
    // (at most 2040) into the top 16 bits.
    let halves = (lanes & pairs) + ((lanes >> 8) & pairs);
    (halves.wrapping_mul(0x0001_0001_0001_0001) >> 48) as u32
}

/// Returns the word the page repeats, if it is one word repeated.
pub fn fill_word(page: &[u8]) -> Option<u32> {
    let first = page.first_chunk::<4>()?;
    let mut chunks = page.chunks_exact(4);
    if chunks.all(|c| c == first) && chunks.remainder().is_empty() {
        Some(u32::from_le_bytes(*first))
    } else {
        None
    }
}

/// WKdm's test of words against a 16-entry dictionary, one dictionary
/// throughout.
#[derive(Default)]
struct Similarity {
    dict: [u32; 16],
    similar: u32,
    total: u32,
}

impl Similarity {
    /// Feeds one word.
    #[inline]
    fn word(&mut self, word: u32) {
        let slot = &mut self.dict[dict_index(word)];
        if word == 0 || (*slot >> 10) == (word >> 10) {
            self.similar += 1;
        }
        if word != 0 {
            *slot = word;
        }
        self.total += 1;
    }
}

/// Counts words WKdm could code in under 32 bits, feeding `words` through a
/// fresh 16-entry dictionary.  Returns (similar, total).
pub fn word_similarity<'a>(words: impl Iterator<Item = &'a [u8]>) -> (u32, u32) {
    let mut s = Similarity::default();
    for w in words {
        if let Some(&bytes) = w.first_chunk::<4>() {
            s.word(u32::from_le_bytes(bytes));
        }
    }
    (s.similar, s.total)
}

/// Word similarity over the whole page (what `mecom stat` reports).
pub fn full_similarity(page: &[u8]) -> (u32, u32) {
    word_similarity(page.chunks_exact(4))
}

/// Word similarity over [`RUNS`] evenly spaced runs of [`RUN_WORDS`] words,
/// through one dictionary (plain loops: the iterator chain of
/// [`word_similarity`] cost more than the test).
fn sampled_similarity(page: &[u8]) -> (u32, u32) {
    let run_bytes = RUN_WORDS * 4;
    let stride = page.len() / RUNS;
    let mut s = Similarity::default();
    for r in 0..RUNS {
        if let Some(run) = page.get(r * stride..r * stride + run_bytes) {
            for c in run.chunks_exact(4) {
                s.word(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            }
        }
    }
    (s.similar, s.total)
}

/// Distinct values among [`BYTE_SAMPLES`] evenly strided bytes.
fn distinct_sampled_bytes(page: &[u8]) -> u32 {
    let stride = (page.len() / BYTE_SAMPLES).max(1);
    let mut seen = [0u64; 4];
    // The first byte of each stride: indexed, not `step_by().take()`,
    // whose iterator costs more than the sampling.
    for i in 0..page.len().div_ceil(stride).min(BYTE_SAMPLES) {
        let b = page[i * stride];
        seen[usize::from(b >> 6)] |= 1u64 << (b & 63);
    }
    seen.iter().map(|s| s.count_ones()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(ws: impl IntoIterator<Item = u32>) -> Vec<u8> {
        ws.into_iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn zero_bytes_are_counted_exactly() {
        let mut page = vec![0u8; 4096];
        assert_eq!(count_zero_bytes(&page), 4096);
        for (i, b) in page.iter_mut().enumerate() {
            *b = if i % 3 == 0 { 0 } else { 0x80 | i as u8 };
        }
        let expect = page.iter().filter(|&&b| b == 0).count() as u32;
        assert_eq!(count_zero_bytes(&page), expect);
        assert_eq!(count_zero_bytes(&[0, 1, 0]), 2);
        // Blocks of 255 words and their lane sums: every length up to
        // past two blocks, all zero and with every 7th byte set.
        for len in (0..4200).chain([65536]) {
            let mut page = vec![0u8; len];
            assert_eq!(count_zero_bytes(&page), len as u32, "{len}");
            for (i, b) in page.iter_mut().enumerate().step_by(7) {
                *b = i as u8 | 1;
            }
            let expect = page.iter().filter(|&&b| b == 0).count() as u32;
            assert_eq!(count_zero_bytes(&page), expect, "{len}");
        }
    }

    #[test]
    fn distinct_bytes_sample_the_first_byte_of_each_stride() {
        for len in [1, 100, 255, 256, 257, 4096, 4097, 8192] {
            let page: Vec<u8> = (0..len).map(|i| (i * 7 / 3) as u8).collect();
            let stride = (len / BYTE_SAMPLES).max(1);
            let mut seen = [false; 256];
            for &b in page.iter().step_by(stride).take(BYTE_SAMPLES) {
                seen[usize::from(b)] = true;
            }
            let expect = seen.iter().filter(|&&s| s).count() as u32;
            assert_eq!(distinct_sampled_bytes(&page), expect, "{len}");
        }
    }

    #[test]
    fn sampled_similarity_is_word_similarity_over_the_runs() {
        for len in [4096, 8192, 65536] {
            let page: Vec<u8> = (0..len as u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> (i % 29)) as u8)
                .collect();
            let stride = len / RUNS;
            let runs = (0..RUNS).map(|r| &page[r * stride..r * stride + RUN_WORDS * 4]);
            let expect = word_similarity(runs.flat_map(|run| run.chunks_exact(4)));
            assert_eq!(sampled_similarity(&page), expect, "{len}");
        }
    }

    #[test]
    fn fill_pages_are_found() {
        let page = words(std::iter::repeat_n(0xdead_beef, 1024));
        assert_eq!(profile(&page).fill, Some(0xdead_beef));
        let page = words(std::iter::repeat_n(0x0000_00ff, 1024));
        assert_eq!(profile(&page).fill, Some(0xff));
        let mut page = words(std::iter::repeat_n(7, 1024));
        page[4095] = 1;
        assert_eq!(profile(&page).fill, None);
        assert_eq!(profile(&[0u8; 4096]).fill, Some(0));
    }

    #[test]
    fn similarity_separates_small_integers_from_random_words() {
        let ints = words((0..1024u32).map(|i| i % 300));
        let p = profile(&ints);
        assert_eq!(p.similar_percent(), 100);
        let mut x = 0x1234_5678u32;
        let random = words((0..1024).map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        }));
        let p = profile(&random);
        assert!(p.similar_percent() < 25, "{p:?}");
        assert!(p.distinct_bytes > 120, "{p:?}");
        let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog. "
            .iter()
            .copied()
            .cycle()
            .take(4096)
            .collect();
        assert!(profile(&text).distinct_bytes < 40);
    }

    proptest::proptest! {
        #[test]
        fn coarse_agrees_with_the_whole_classifier(
            kind in 0u8..6,
            seed in proptest::prelude::any::<u32>(),
            zeros in 0usize..4097,
            sparse_threshold in 0u8..101,
            random in proptest::prelude::any::<bool>(),
            sparse in proptest::prelude::any::<bool>(),
        ) {
            // Random words, small integers, text, a fill word, all zero;
            // then the first `zeros` bytes cleared (sparse pages, and
            // pages on both sides of every threshold).
            let mut x = seed | 1;
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x
            };
            let mut page = match kind {
                0 => words((0..1024).map(|_| next())),
                1 => words((0..1024).map(|_| next() % 300)),
                2 => (0..4096).map(|_| b"etaoin shrdlu"[(next() % 13) as usize]).collect(),
                3 => words(std::iter::repeat_n(seed, 1024)),
                4 => vec![0u8; 4096],
                _ => words((0..1024).map(|i| if i % 7 == 0 { next() } else { 0 })),
            };
            page[..zeros].fill(0);
            let t = Thresholds {
                sparse: sparse_threshold,
                similarity: 75,
                random_distinct_bytes: 120,
            };
            let p = profile(&page);
            let want = match t.class(&p, page.len()) {
                PageClass::Fill => (PageClass::Fill, p.fill),
                PageClass::Random if random => (PageClass::Random, None),
                PageClass::Sparse if sparse => (PageClass::Sparse, None),
                _ => (PageClass::Generic, None),
            };
            proptest::prop_assert_eq!(t.coarse(&page, random, sparse), want);
        }
    }
}
