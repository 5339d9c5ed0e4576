//! WKdm page codec (after Wilson & Kaplan, 1999), with a wire layout of our own.
//!
//! # Algorithm
//!
//! A page is read as a sequence of `n = page_len / 4` little-endian 32-bit words.
//! Encoder and decoder keep the same 16-entry, direct-mapped dictionary of recently
//! seen words. **Every slot starts as `0`.** For each word `w`, with
//! `s = dict_index(w)` (a hash of the upper 22 bits `w >> 10`, see [`dict_index`]):
//!
//! | condition (first that holds)     | tag            | payload                       | dictionary update |
//! |----------------------------------|----------------|-------------------------------|-------------------|
//! | `w == 0`                         | `0` ZERO       | none                          | none              |
//! | `dict[s] == w`                   | `3` EXACT      | 4-bit index `s`               | none              |
//! | `dict[s] >> 10 == w >> 10`       | `1` PARTIAL    | 4-bit index `s`, `w & 0x3ff`  | `dict[s] = w`     |
//! | otherwise                        | `2` MISS       | the full 32-bit word          | `dict[s] = w`     |
//!
//! Because slots start at zero, a nonzero word below `0x400` (upper 22 bits all zero)
//! is a PARTIAL hit against a never-written slot; this is deterministic and both
//! sides agree on it.
//!
//! Decoding a PARTIAL entry with index `i` and low bits `l` yields
//! `(dict[i] & !0x3ff) | l` and stores it in `dict[i]`; EXACT with index `i` yields
//! `dict[i]`; a MISS word `m` is stored in `dict[dict_index(m)]`. The decoder takes
//! the index of EXACT/PARTIAL entries from the stream (it does not re-check that it
//! equals `dict_index` of the result), so it accepts some non-canonical streams that
//! the encoder never produces; they still decode deterministically.
//!
//! # Wire layout
//!
//! All multi-byte integers are little-endian. All packed streams are LSB-first:
//! stream bit `b` is bit `b % 8` (value `1 << (b % 8)`) of byte `b / 8`, and a value
//! of `k` bits stored at stream bit `p` has its bit `j` at stream bit `p + j`.
//! The page length (hence `n`) is not stored: the decoder is given it. Valid page
//! lengths are multiples of 4 in `64..=65536` (so `16 <= n <= 16384`).
//!
//! | offset        | size                     | content |
//! |---------------|--------------------------|---------|
//! | `0`           | 2                        | `n_miss`: number of MISS words (`u16`) |
//! | `2`           | 2                        | `n_index`: number of EXACT + PARTIAL words (`u16`) |
//! | `4`           | 2                        | `n_partial`: number of PARTIAL words (`u16`) |
//! | `6`           | `T = ceil(n / 4)`        | tags: 2 bits per word, word `i` at stream bit `2 i` |
//! | `6 + T`       | `I = ceil(n_index / 2)`  | indices: 4 bits per EXACT/PARTIAL word, in word order; entry `j` at stream bit `4 j` (even `j`: low nibble of byte `j / 2`, odd `j`: high nibble) |
//! | `6 + T + I`   | `L = ceil(10 n_partial / 8)` | low bits: 10 bits per PARTIAL word, in word order; entry `j` at stream bit `10 j`. Equivalently, every group of four entries `a, b, c, d` is the 5-byte integer `a | b << 10 | c << 20 | d << 30`, and a final group of `k < 4` entries is that integer truncated to `ceil(10 k / 8)` bytes |
//! | `6 + T + I + L` | `4 n_miss`             | MISS words, in word order, one `u32` each |
//!
//! The payload is exactly `6 + T + I + L + 4 n_miss` bytes long. Tag `i` of the
//! tags area is for page word `i` (bytes `4 i .. 4 i + 4` of the page), tag values
//! as in the table above. The `j`-th index / low-bits / MISS entry belongs to the
//! `j`-th word (in page order) whose tag has that field.
//!
//! A decoder must reject (this one returns `Err`):
//! - a page length that is not a multiple of 4 in `64..=65536`;
//! - a payload shorter than the 6-byte header;
//! - `n_partial > n_index` or `n_index + n_miss > n`;
//! - a payload length different from `6 + T + I + L + 4 n_miss` (truncated or trailing bytes);
//! - tag counts that disagree with the header: the number of tag-1 words must equal
//!   `n_partial`, tag-2 words `n_miss`, and tag-1 plus tag-3 words `n_index`;
//! - nonzero padding bits: tag bits at or after stream bit `2 n`, the high nibble of
//!   the last index byte when `n_index` is odd, and low-bits stream bits at or after
//!   bit `10 n_partial`.
//!
//! Everything else decodes: every 4-bit index names a valid slot and every 10-bit
//! and 32-bit value is acceptable. The worst case is all MISS:
//! `6 + ceil(n / 4) + 4 n` bytes, see [`max_encoded_len`].
//!
//! # Implementation notes
//!
//! Neither side allocates. The encoder writes tags in place, buffers the index
//! and low-bits areas on the stack (buffers sized by page class: about 2.3 KiB
//! for pages up to 4 KiB, 7.5 KiB up to 16 KiB, 29 KiB up to 64 KiB), writes
//! MISS words provisionally right after the tags, and moves them behind the
//! other areas at the end. It works in 32-word chunks and checks the exact
//! running size after each, so `encode` returns `None` exactly when the
//! encoding does not fit; note that with `limit = page_len - 1` an
//! incompressible page (4.25 bytes per MISS word against 4 raw) only crosses
//! the limit after about 94% of its words, so aborting saves little over a
//! full encode (which is cheapest for MISS words anyway).
//!
//! The decoder validates everything before it writes the page (a page is left
//! untouched on `Err`), then decodes four words per tag byte, dispatching each
//! half byte to code specialised for its two tags. It keeps the dictionary as
//! two arrays, upper 22 bits and low 10 bits, which only ever receive values
//! straight from the payload, so words hitting the same slot form no
//! load-store-load dependency chain.
#![forbid(unsafe_code)]

/// Length of the fixed header (three `u16` counts).
const HEADER_LEN: usize = 6;
/// Smallest page length (bytes) accepted by [`encode`] and [`decode`].
const MIN_PAGE_LEN: usize = 64;
/// Largest page length (bytes) accepted by [`encode`] and [`decode`].
const MAX_PAGE_LEN: usize = 65536;
/// Largest number of 32-bit words in a page.
const MAX_WORDS: usize = MAX_PAGE_LEN / 4;
/// Number of dictionary slots.
const DICT_SLOTS: usize = 16;
/// Mask of the low bits carried by a PARTIAL entry.
const LOW_MASK: u32 = 0x3ff;
/// Tag of a zero word.
const TAG_ZERO: u8 = 0;
/// Tag of a word matching its dictionary slot in the upper 22 bits only.
const TAG_PARTIAL: u8 = 1;
/// Tag of a word sent in full.
const TAG_MISS: u8 = 2;
/// Tag of a word equal to its dictionary slot.
const TAG_EXACT: u8 = 3;
/// Words per encoder chunk: one `u64` of tags; the size check runs once per chunk.
const CHUNK_WORDS: usize = 32;
/// Size of the encoder's pending-entry arrays (a power of two above carry + chunk).
const PEND_LEN: usize = 64;

/// Dictionary slot of `word`: a multiplicative hash of its upper 22 bits into `0..16`.
///
/// Depends only on `word >> 10`, so words that differ only in their low 10 bits
/// share a slot (which is what makes PARTIAL matches possible).
#[inline]
pub(crate) fn dict_index(word: u32) -> usize {
    ((word >> 10).wrapping_mul(0x9E37_79B1) >> 28) as usize
}

/// Worst-case encoded length of a page of `page_len` bytes (a multiple of 4).
///
/// That is the header, the tags, and every word as a MISS: `6 + ceil(n / 4) + 4 n`
/// with `n = page_len / 4`.
pub(crate) const fn max_encoded_len(page_len: usize) -> usize {
    let n = page_len / 4;
    HEADER_LEN + n.div_ceil(4) + 4 * n
}

/// Number of words of a page of `len` bytes, or `None` if `len` is not acceptable.
#[inline]
fn word_count(len: usize) -> Option<usize> {
    if len.is_multiple_of(4) && (MIN_PAGE_LEN..=MAX_PAGE_LEN).contains(&len) {
        Some(len / 4)
    } else {
        None
    }
}

/// Encoded size of a payload for `n_words` words with the given entry counts.
#[inline]
fn payload_len(n_words: usize, n_index: usize, n_partial: usize, n_miss: usize) -> usize {
    HEADER_LEN
        + n_words.div_ceil(4)
        + n_index.div_ceil(2)
        + (10 * n_partial).div_ceil(8)
        + 4 * n_miss
}

/// Encodes `page` (len multiple of 4, 64..=65536) into `out`. Returns `Some(n)` (bytes written to out[..n])
/// when the encoding fits in `limit` bytes, or `None` as soon as it is known it cannot (early abort:
/// check the running output size periodically, e.g. every 64 or 128 words, against `limit`, so
/// incompressible pages cost little). `out.len()` may be smaller than max_encoded_len; never write past
/// out.len() and never panic: return None if out is too small. `limit` is usually `page.len() - 1`.
///
/// The exact running size is checked against `min(limit, out.len())` every 32
/// words, so the result is exact: `Some` if and only if the whole encoding fits.
/// Also returns `None` for an unacceptable page length. After `None`, the
/// contents of `out` are unspecified (but nothing past `out.len()` is touched).
pub(crate) fn encode(page: &[u8], out: &mut [u8], limit: usize) -> Option<usize> {
    let n = word_count(page.len())?;
    // Stack buffers are sized by page class so small pages do not pay for
    // initialising buffers sized for 64 KiB pages.
    if n <= 1024 {
        Encoder::<{ 1024 / 2 + 8 }, { 1024 * 10 / 8 + 8 }>::run(page, n, out, limit)
    } else if n <= 4096 {
        Encoder::<{ 4096 / 2 + 8 }, { 4096 * 10 / 8 + 8 }>::run(page, n, out, limit)
    } else {
        Encoder::<{ MAX_WORDS / 2 + 8 }, { MAX_WORDS * 10 / 8 + 8 }>::run(page, n, out, limit)
    }
}

/// Encoder state. `IDX` and `LOW` are the capacities of the packed index and
/// low-bits buffers: at least `n / 2` and `10 n / 8` bytes plus 8 bytes of slack
/// for the word-sized stores of the packers.
struct Encoder<const IDX: usize, const LOW: usize> {
    /// Dictionary (all slots start at zero).
    dict: [u32; DICT_SLOTS],
    /// Packed index area under construction.
    idx_buf: [u8; IDX],
    /// Packed low-bits area under construction.
    low_buf: [u8; LOW],
    /// Unpacked index entries of the current chunk, after the carried-over one.
    idx_pend: [u8; PEND_LEN],
    /// Unpacked low-bits entries of the current chunk, after the carried-over ones.
    low_pend: [u16; PEND_LEN],
    /// MISS words of the current chunk, as stored.
    miss_pend: [[u8; 4]; CHUNK_WORDS],
    /// Index entries carried over from the previous chunk (0 or 1).
    idx_carry: usize,
    /// Low-bits entries carried over from the previous chunk (0 to 3).
    low_carry: usize,
    /// Complete bytes in `idx_buf`.
    idx_bytes: usize,
    /// Complete 5-byte groups in `low_buf`, in bytes.
    low_bytes: usize,
    /// MISS words so far.
    n_miss: usize,
}

impl<const IDX: usize, const LOW: usize> Encoder<IDX, LOW> {
    /// Encodes a page of `n` words; see [`encode`].
    #[inline(always)]
    fn run(page: &[u8], n: usize, out: &mut [u8], limit: usize) -> Option<usize> {
        let cap = limit.min(out.len());
        let tags_len = n.div_ceil(4);
        if HEADER_LEN + tags_len > cap {
            return None;
        }
        let (header, rest) = out.split_at_mut_checked(HEADER_LEN)?;
        // MISS words are written provisionally right after the tags, then moved
        // behind the index and low-bits areas once their sizes are known.
        let (tag_area, miss_area) = rest.split_at_mut_checked(tags_len)?;
        let mut e = Self {
            dict: [0; DICT_SLOTS],
            idx_buf: [0; IDX],
            low_buf: [0; LOW],
            idx_pend: [0; PEND_LEN],
            low_pend: [0; PEND_LEN],
            miss_pend: [[0; 4]; CHUNK_WORDS],
            idx_carry: 0,
            low_carry: 0,
            idx_bytes: 0,
            low_bytes: 0,
            n_miss: 0,
        };

        let chunks = page.chunks_exact(CHUNK_WORDS * 4);
        let tail = chunks.remainder();
        let mut tag_chunks = tag_area.chunks_exact_mut(CHUNK_WORDS / 4);
        for chunk in chunks {
            let chunk = <&[u8; CHUNK_WORDS * 4]>::try_from(chunk).ok()?;
            let (tags, ip, lp, mp) = e.chunk(chunk);
            tag_chunks.next()?.copy_from_slice(&tags.to_le_bytes());
            e.flush_chunk(ip, lp, mp, n, cap, miss_area)?;
        }
        if !tail.is_empty() {
            // Zero padding words encode as ZERO tags, which add no entries and
            // leave the dictionary alone; their tag bits fall in the padding.
            let mut last = [0u8; CHUNK_WORDS * 4];
            for (d, s) in last.iter_mut().zip(tail) {
                *d = *s;
            }
            let (tags, ip, lp, mp) = e.chunk(&last);
            // 29 to 31 tail words fill a whole 8-byte tag chunk; fewer leave a
            // shorter remainder.
            let dst = match tag_chunks.next() {
                Some(d) => d,
                None => tag_chunks.into_remainder(),
            };
            for (d, s) in dst.iter_mut().zip(tags.to_le_bytes()) {
                *d = s;
            }
            e.flush_chunk(ip, lp, mp, n, cap, miss_area)?;
        }
        e.finish(n, cap, header, miss_area)
    }

    /// Runs the dictionary over one chunk. Returns its packed tags and the
    /// numbers of pending index entries and low-bits entries (carry included)
    /// and MISS words left in the pending arrays.
    #[inline(always)]
    fn chunk(&mut self, chunk: &[u8; CHUNK_WORDS * 4]) -> (u64, usize, usize, usize) {
        let mut tags = 0u64;
        let mut ip = self.idx_carry;
        let mut lp = self.low_carry;
        let mut mp = 0usize;
        // Branchy code: real pages have runs of similar words, so the branches
        // predict well and this beats a branch-free formulation, which has to
        // compute and store every field of every word. Unrolled by four so tag
        // shifts are constants.
        for g in 0..CHUNK_WORDS / 4 {
            let word = |k: usize| {
                let o = 16 * g + 4 * k;
                [chunk[o], chunk[o + 1], chunk[o + 2], chunk[o + 3]]
            };
            let tb = self.step(word(0), &mut ip, &mut lp, &mut mp)
                | (self.step(word(1), &mut ip, &mut lp, &mut mp) << 2)
                | (self.step(word(2), &mut ip, &mut lp, &mut mp) << 4)
                | (self.step(word(3), &mut ip, &mut lp, &mut mp) << 6);
            tags |= tb << ((8 * g) & 63);
        }
        (tags, ip, lp, mp)
    }

    /// Branchy encoding of one word: updates the dictionary, appends its
    /// entries to the pending arrays and returns its tag.
    #[inline(always)]
    fn step(&mut self, wb: [u8; 4], ip: &mut usize, lp: &mut usize, mp: &mut usize) -> u64 {
        let w = u32::from_le_bytes(wb);
        if w == 0 {
            return u64::from(TAG_ZERO);
        }
        let h = dict_index(w);
        let d = self.dict[h];
        if d == w {
            self.idx_pend[*ip & (PEND_LEN - 1)] = h as u8;
            *ip += 1;
            return u64::from(TAG_EXACT);
        }
        self.dict[h] = w;
        if (d ^ w) <= LOW_MASK {
            self.idx_pend[*ip & (PEND_LEN - 1)] = h as u8;
            *ip += 1;
            self.low_pend[*lp & (PEND_LEN - 1)] = (w & LOW_MASK) as u16;
            *lp += 1;
            u64::from(TAG_PARTIAL)
        } else {
            self.miss_pend[*mp & (CHUNK_WORDS - 1)] = wb;
            *mp += 1;
            u64::from(TAG_MISS)
        }
    }

    /// Packs the pending entries of the chunk just run (`ip` index and `lp`
    /// low-bits entries, carry included, and `mp` MISS words), checks the
    /// running size against `cap` and stores the MISS words provisionally.
    #[inline(always)]
    fn flush_chunk(
        &mut self,
        ip: usize,
        lp: usize,
        mp: usize,
        n: usize,
        cap: usize,
        miss_area: &mut [u8],
    ) -> Option<()> {
        self.flush_indices(ip)?;
        self.flush_low_bits(lp)?;
        self.flush_misses(mp, n, cap, miss_area)
    }

    /// Index pairs, four per step: 8 entry bytes (each < 16) become 4 packed
    /// bytes. Bytes past the last complete pair are junk that the next step
    /// overwrites (or that is never copied out).
    #[inline(always)]
    fn flush_indices(&mut self, ip: usize) -> Option<()> {
        let pairs = ip / 2;
        let mut q = 0;
        while q < pairs {
            let s = self.idx_pend.get(2 * q..)?.first_chunk::<8>()?;
            let x = u64::from_le_bytes(*s);
            let y = x | (x >> 4);
            let z = (y & 0xff)
                | ((y >> 8) & 0xff00)
                | ((y >> 16) & 0xff_0000)
                | ((y >> 24) & 0xff00_0000);
            let d = self
                .idx_buf
                .get_mut(self.idx_bytes + q..)?
                .first_chunk_mut::<4>()?;
            *d = (z as u32).to_le_bytes();
            q += 4;
        }
        self.idx_bytes += pairs;
        self.idx_carry = ip & 1;
        self.idx_pend[0] = self.idx_pend[(ip & !1) & (PEND_LEN - 1)];
        Some(())
    }

    /// Low-bits entries, four per 5-byte group (8-byte stores; the 3 extra
    /// bytes are junk that the next group overwrites or is never copied).
    #[inline(always)]
    fn flush_low_bits(&mut self, lp: usize) -> Option<()> {
        let groups = lp / 4;
        for g in 0..groups {
            let s = self.low_pend.get(4 * g..)?.first_chunk::<4>()?;
            let x = u64::from(s[0])
                | (u64::from(s[1]) << 16)
                | (u64::from(s[2]) << 32)
                | (u64::from(s[3]) << 48);
            // Four 16-bit lanes holding 10-bit values -> one 40-bit value.
            let v = (x & 0x3ff)
                | ((x >> 6) & (0x3ff << 10))
                | ((x >> 12) & (0x3ff << 20))
                | ((x >> 18) & (0x3ff << 30));
            let d = self
                .low_buf
                .get_mut(self.low_bytes + 5 * g..)?
                .first_chunk_mut::<8>()?;
            *d = v.to_le_bytes();
        }
        self.low_bytes += 5 * groups;
        self.low_carry = lp & 3;
        for j in 0..self.low_carry {
            self.low_pend[j] = self.low_pend[(4 * groups + j) & (PEND_LEN - 1)];
        }
        Some(())
    }

    /// Miss words, straight into their area; `None` once the output would
    /// exceed `cap`.
    #[inline(always)]
    fn flush_misses(
        &mut self,
        mp: usize,
        n: usize,
        cap: usize,
        miss_area: &mut [u8],
    ) -> Option<()> {
        let miss_start = 4 * self.n_miss;
        self.n_miss += mp;
        if self.size(n) > cap {
            return None;
        }
        // In bounds: miss_start + 4 mp <= size - HEADER_LEN - tags <= miss_area.len().
        let src = self.miss_pend.as_flattened();
        if let Some(d) = miss_area
            .get_mut(miss_start..)
            .and_then(<[u8]>::first_chunk_mut::<{ CHUNK_WORDS * 4 }>)
        {
            // Whole-chunk copy; bytes past the chunk's MISS words are junk that
            // later chunks overwrite (or that is never moved into place).
            d.copy_from_slice(src);
        } else {
            miss_area
                .get_mut(miss_start..miss_start + 4 * mp)?
                .copy_from_slice(src.get(..4 * mp)?);
        }
        Some(())
    }

    /// Entry counts so far: (index, partial).
    #[inline(always)]
    fn counts(&self) -> (usize, usize) {
        (
            2 * self.idx_bytes + self.idx_carry,
            4 * (self.low_bytes / 5) + self.low_carry,
        )
    }

    /// Payload size of everything encoded so far.
    #[inline(always)]
    fn size(&self, n: usize) -> usize {
        let (n_index, n_partial) = self.counts();
        payload_len(n, n_index, n_partial, self.n_miss)
    }

    /// Flushes carried entries, assembles the areas and writes the header.
    #[inline(always)]
    fn finish(mut self, n: usize, cap: usize, header: &mut [u8], body: &mut [u8]) -> Option<usize> {
        let total = self.size(n);
        if total > cap {
            return None;
        }
        let (n_index, n_partial) = self.counts();
        if self.idx_carry == 1 {
            *self.idx_buf.get_mut(self.idx_bytes)? = self.idx_pend[0];
        }
        let idx_len = n_index.div_ceil(2);
        if self.low_carry > 0 {
            let v = u64::from(self.low_pend[0])
                | (u64::from(self.low_pend[1]) << 10)
                | (u64::from(self.low_pend[2]) << 20);
            let v = v & ((1u64 << (10 * self.low_carry)) - 1);
            let dst = self.low_buf.get_mut(self.low_bytes..)?;
            for (db, vb) in dst.iter_mut().zip(v.to_le_bytes()) {
                *db = vb;
            }
        }
        let low_len = (10 * n_partial).div_ceil(8);
        let miss_len = 4 * self.n_miss;
        let miss_dst = idx_len + low_len;
        if miss_dst + miss_len > body.len() {
            return None;
        }
        body.copy_within(0..miss_len, miss_dst);
        body.get_mut(..idx_len)?
            .copy_from_slice(self.idx_buf.get(..idx_len)?);
        body.get_mut(idx_len..miss_dst)?
            .copy_from_slice(self.low_buf.get(..low_len)?);
        for (d, v) in header
            .chunks_exact_mut(2)
            .zip([self.n_miss, n_index, n_partial])
        {
            d.copy_from_slice(&(v as u16).to_le_bytes());
        }
        Some(total)
    }
}

/// Reads the little-endian `u32` at byte `pos` of `s`; bytes past the end read as 0.
#[inline(always)]
fn read_u32(s: &[u8], pos: usize) -> u32 {
    match s.get(pos..).and_then(<[u8]>::first_chunk::<4>) {
        Some(b) => u32::from_le_bytes(*b),
        None => read_tail(s, pos) as u32,
    }
}

/// Reads the little-endian `u64` at byte `pos` of `s`; bytes past the end read as 0.
#[inline(always)]
fn read_u64(s: &[u8], pos: usize) -> u64 {
    match s.get(pos..).and_then(<[u8]>::first_chunk::<8>) {
        Some(b) => u64::from_le_bytes(*b),
        None => read_tail(s, pos),
    }
}

/// Slow path of [`read_u32`] and [`read_u64`]: the (fewer than 8) bytes from `pos`
/// to the end of `s`, zero-extended.
#[cold]
#[inline(never)]
fn read_tail(s: &[u8], pos: usize) -> u64 {
    let mut b = [0u8; 8];
    for (d, x) in b.iter_mut().zip(s.get(pos..).unwrap_or(&[])) {
        *d = *x;
    }
    u64::from_le_bytes(b)
}

/// Decoder state over the areas of a validated payload.
struct Decoder<'a> {
    /// Packed 4-bit indices.
    idx: &'a [u8],
    /// Packed 10-bit low bits.
    low: &'a [u8],
    /// MISS words.
    miss: &'a [u8],
    /// Next index entry (in nibbles).
    ip: usize,
    /// Next low-bits entry.
    lp: usize,
    /// Next MISS word (in bytes).
    mp: usize,
    /// Upper 22 bits of each dictionary slot (low 10 bits zero). Only MISS
    /// words write it, with values taken straight from the payload.
    up: [u32; DICT_SLOTS],
    /// Low 10 bits of each dictionary slot; written by MISS and PARTIAL words,
    /// again with values straight from the payload. Keeping the halves apart
    /// (`dict[s] == up[s] | lo[s]`) means no stored value depends on a loaded
    /// one, so runs of words hitting one slot form no load-store dependency chain.
    lo: [u32; DICT_SLOTS],
}

impl Decoder<'_> {
    /// Decodes the two words whose tags form the nibble `TN` into `out`, taking
    /// index entries from the bit buffer `ib` and low-bits entries from `lb`
    /// (both shifted past what is used). Monomorphised per nibble so every
    /// per-word decision is made at compile time.
    #[inline(always)]
    fn pair<const TN: u8>(&mut self, ib: &mut u32, lb: &mut u64, out: &mut [u8; 8]) {
        let (mut ki, mut kl) = (0u32, 0u32);
        for k in 0..2 {
            let w = match (TN >> (2 * k)) & 3 {
                TAG_ZERO => 0,
                TAG_PARTIAL => {
                    let i = ((*ib >> (4 * ki)) & 0xF) as usize;
                    let low = ((*lb >> (10 * kl)) as u32) & LOW_MASK;
                    ki += 1;
                    kl += 1;
                    self.lo[i] = low;
                    self.up[i] | low
                }
                TAG_MISS => {
                    let m = read_u32(self.miss, self.mp);
                    self.mp += 4;
                    let s = dict_index(m);
                    self.up[s] = m & !LOW_MASK;
                    self.lo[s] = m & LOW_MASK;
                    m
                }
                _ => {
                    // TAG_EXACT
                    let i = ((*ib >> (4 * ki)) & 0xF) as usize;
                    ki += 1;
                    self.up[i] | self.lo[i]
                }
            };
            out[4 * k..4 * k + 4].copy_from_slice(&w.to_le_bytes());
        }
        *ib >>= 4 * ki;
        *lb >>= 10 * kl;
        self.ip += ki as usize;
        self.lp += kl as usize;
    }

    /// Decodes the four words of tag byte `tb` into `out`.
    #[inline(always)]
    fn group(&mut self, tb: u8, out: &mut [u8; 16]) {
        if tb == 0 {
            *out = [0; 16];
            return;
        }
        // At least 7 index nibbles and 57 low bits are fetched: enough for the
        // (at most) 4 entries of each kind in a group.
        let mut ib = read_u32(self.idx, self.ip >> 1) >> ((self.ip & 1) * 4);
        let bit = self.lp * 10;
        let mut lb = read_u64(self.low, bit >> 3) >> (bit & 7);
        let (a, b) = out.split_at_mut(8);
        let (Ok(a), Ok(b)) = (<&mut [u8; 8]>::try_from(a), <&mut [u8; 8]>::try_from(b)) else {
            return;
        };
        self.pair_dyn(tb & 0xF, &mut ib, &mut lb, a);
        self.pair_dyn(tb >> 4, &mut ib, &mut lb, b);
    }

    /// Calls [`Self::pair`] for the runtime tag nibble `tn` (0..16).
    #[inline(always)]
    fn pair_dyn(&mut self, tn: u8, ib: &mut u32, lb: &mut u64, out: &mut [u8; 8]) {
        match tn {
            0 => self.pair::<0>(ib, lb, out),
            1 => self.pair::<1>(ib, lb, out),
            2 => self.pair::<2>(ib, lb, out),
            3 => self.pair::<3>(ib, lb, out),
            4 => self.pair::<4>(ib, lb, out),
            5 => self.pair::<5>(ib, lb, out),
            6 => self.pair::<6>(ib, lb, out),
            7 => self.pair::<7>(ib, lb, out),
            8 => self.pair::<8>(ib, lb, out),
            9 => self.pair::<9>(ib, lb, out),
            10 => self.pair::<10>(ib, lb, out),
            11 => self.pair::<11>(ib, lb, out),
            12 => self.pair::<12>(ib, lb, out),
            13 => self.pair::<13>(ib, lb, out),
            14 => self.pair::<14>(ib, lb, out),
            _ => self.pair::<15>(ib, lb, out),
        }
    }
}

/// Counts of tag values 1, 2 and 3 in a packed tag area (padding must be zero to
/// count as ZERO tags, which the caller checks separately).
fn count_tags(tags: &[u8]) -> (usize, usize, usize) {
    /// Selects the low bit of every 2-bit field.
    const M: u64 = 0x5555_5555_5555_5555;
    let (mut c1, mut c2, mut c3) = (0u32, 0u32, 0u32);
    let mut count = |x: u64| {
        let lo = x & M;
        let hi = (x >> 1) & M;
        c1 += (lo & !hi).count_ones();
        c2 += (hi & !lo).count_ones();
        c3 += (lo & hi).count_ones();
    };
    let chunks = tags.chunks_exact(8);
    let rem = chunks.remainder();
    for c in chunks {
        count(read_u64(c, 0));
    }
    count(read_tail(rem, 0));
    (c1 as usize, c2 as usize, c3 as usize)
}

/// The areas of a checked WKdm payload.
struct Areas<'a> {
    tags: &'a [u8],
    idx: &'a [u8],
    low: &'a [u8],
    miss: &'a [u8],
}

/// Checks a payload for a page of `n` words before anything is decoded:
/// counts consistent with each other and with the tags, areas that fill
/// `src` exactly, padding bits zero.
fn check_payload(src: &[u8], n: usize) -> Result<Areas<'_>, &'static str> {
    let (header, body) = src
        .split_first_chunk::<HEADER_LEN>()
        .ok_or("truncated header")?;
    let n_miss = usize::from(u16::from_le_bytes([header[0], header[1]]));
    let n_index = usize::from(u16::from_le_bytes([header[2], header[3]]));
    let n_partial = usize::from(u16::from_le_bytes([header[4], header[5]]));
    if n_partial > n_index {
        return Err("more partial than index entries");
    }
    if n_index + n_miss > n {
        return Err("counts exceed page words");
    }
    let expected = payload_len(n, n_index, n_partial, n_miss);
    if src.len() < expected {
        return Err("truncated payload");
    }
    if src.len() > expected {
        return Err("trailing bytes");
    }
    let (tags, body) = body
        .split_at_checked(n.div_ceil(4))
        .ok_or("truncated payload")?;
    let (idx, body) = body
        .split_at_checked(n_index.div_ceil(2))
        .ok_or("truncated payload")?;
    let (low, miss) = body
        .split_at_checked((10 * n_partial).div_ceil(8))
        .ok_or("truncated payload")?;

    if !n.is_multiple_of(4) && tags.last().copied().unwrap_or(0) >> (2 * (n % 4)) != 0 {
        return Err("nonzero tag padding");
    }
    if n_index % 2 != 0 && idx.last().copied().unwrap_or(0) >> 4 != 0 {
        return Err("nonzero index padding");
    }
    let low_tail_bits = (10 * n_partial) % 8;
    if low_tail_bits != 0 && low.last().copied().unwrap_or(0) >> low_tail_bits != 0 {
        return Err("nonzero low-bits padding");
    }
    let (c1, c2, c3) = count_tags(tags);
    if c1 != n_partial || c2 != n_miss || c1 + c3 != n_index {
        return Err("counts disagree with tags");
    }

    Ok(Areas {
        tags,
        idx,
        low,
        miss,
    })
}

/// Decodes `src` (the exact payload) into `page` (exact page length, multiple of 4).
/// Must never panic, never index out of bounds, never allocate from sizes in `src`; every count and
/// length read from `src` is validated (counts consistent with the tags, areas exactly fill `src`,
/// no trailing bytes, padding bits zero). Returns Err with a short static reason on any inconsistency.
///
/// All validation happens before `page` is written, so on `Err` the page is untouched.
pub(crate) fn decode(src: &[u8], page: &mut [u8]) -> Result<(), &'static str> {
    let n = word_count(page.len()).ok_or("bad page length")?;
    let Areas {
        tags,
        idx,
        low,
        miss,
    } = check_payload(src, n)?;
    let mut d = Decoder {
        idx,
        low,
        miss,
        ip: 0,
        lp: 0,
        mp: 0,
        up: [0; DICT_SLOTS],
        lo: [0; DICT_SLOTS],
    };
    let mut groups = page.chunks_exact_mut(16);
    for (out, &tb) in (&mut groups).zip(tags) {
        if let Ok(out) = <&mut [u8; 16]>::try_from(out) {
            d.group(tb, out);
        }
    }
    let tail = groups.into_remainder();
    if !tail.is_empty() {
        // The last tag byte covers 1 to 3 words; its padding tags are ZERO.
        let mut last = [0u8; 16];
        d.group(tags.last().copied().unwrap_or(0), &mut last);
        for (o, v) in tail.iter_mut().zip(last) {
            *o = v;
        }
    }
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// LSB-first bit writer used by the reference encoder.
    struct BitWriter {
        /// Bytes written.
        bytes: Vec<u8>,
        /// Bits written.
        bits: usize,
    }

    impl BitWriter {
        /// Empty writer.
        fn new() -> Self {
            Self {
                bytes: Vec::new(),
                bits: 0,
            }
        }

        /// Appends the low `k` bits of `v`, one bit at a time.
        fn put(&mut self, v: u32, k: usize) {
            for j in 0..k {
                if self.bits.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                let bit = ((v >> j) & 1) as u8;
                *self.bytes.last_mut().unwrap() |= bit << (self.bits % 8);
                self.bits += 1;
            }
        }
    }

    /// Obviously-correct encoder written straight from the module documentation.
    fn reference_encode(page: &[u8]) -> Vec<u8> {
        let mut dict = [0u32; 16];
        let (mut tags, mut idx, mut low) = (BitWriter::new(), BitWriter::new(), BitWriter::new());
        let mut miss = Vec::new();
        let (mut n_miss, mut n_index, mut n_partial) = (0u16, 0u16, 0u16);
        for c in page.chunks_exact(4) {
            let w = u32::from_le_bytes(c.try_into().unwrap());
            let s = dict_index(w);
            if w == 0 {
                tags.put(0, 2);
            } else if dict[s] == w {
                tags.put(3, 2);
                idx.put(s as u32, 4);
                n_index += 1;
            } else if dict[s] >> 10 == w >> 10 {
                tags.put(1, 2);
                idx.put(s as u32, 4);
                low.put(w & 0x3ff, 10);
                n_index += 1;
                n_partial += 1;
                dict[s] = w;
            } else {
                tags.put(2, 2);
                miss.extend_from_slice(&w.to_le_bytes());
                n_miss += 1;
                dict[s] = w;
            }
        }
        let mut out = Vec::new();
        out.extend_from_slice(&n_miss.to_le_bytes());
        out.extend_from_slice(&n_index.to_le_bytes());
        out.extend_from_slice(&n_partial.to_le_bytes());
        out.extend_from_slice(&tags.bytes);
        out.extend_from_slice(&idx.bytes);
        out.extend_from_slice(&low.bytes);
        out.extend_from_slice(&miss);
        out
    }

    /// Small deterministic PRNG (xorshift64*).
    struct Rng(u64);

    impl Rng {
        /// Next pseudo-random value.
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    /// Page built from 32-bit words.
    fn page_of_words(words: impl IntoIterator<Item = u32>) -> Vec<u8> {
        words.into_iter().flat_map(u32::to_le_bytes).collect()
    }

    /// Page built from 64-bit words.
    fn page_of_u64(words: impl IntoIterator<Item = u64>) -> Vec<u8> {
        words.into_iter().flat_map(u64::to_le_bytes).collect()
    }

    /// Encodes with an unlimited limit, checks against the reference encoder and
    /// decodes back; returns the encoded length.
    fn round_trip(page: &[u8]) -> usize {
        let max = max_encoded_len(page.len());
        let mut out = vec![0xAAu8; max];
        let n = encode(page, &mut out, max).expect("unlimited encode must succeed");
        assert!(n <= max);
        assert_eq!(
            out[..n],
            reference_encode(page)[..],
            "differs from reference"
        );
        let mut back = vec![0x55u8; page.len()];
        decode(&out[..n], &mut back).expect("decode of own output");
        assert_eq!(back, page);
        n
    }

    /// Named test pages of `len` bytes.
    fn sample_pages(len: usize) -> Vec<(&'static str, Vec<u8>)> {
        let words = len / 4;
        let mut rng = Rng(0x1234_5678_9ABC_DEF1 ^ len as u64);
        let text: Vec<u8> = b"The quick brown fox jumps over the lazy dog. 0123456789\n"
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect();
        vec![
            ("zero", vec![0u8; len]),
            ("repeated", page_of_words((0..words).map(|_| 0xDEAD_BEEF))),
            (
                "small u32",
                page_of_words((0..words).map(|i| (i * 7 % 1000) as u32)),
            ),
            (
                "small u64",
                page_of_u64((0..words / 2).map(|i| (i * 13 % 5000) as u64)),
            ),
            (
                "pointers",
                page_of_u64((0..words / 2).map(|i| 0x0000_7f12_3456_0000 + 16 * i as u64)),
            ),
            (
                "pointers scattered",
                page_of_u64(
                    (0..words / 2).map(|_| 0x0000_7f12_3450_0000 + (rng.next() & 0xF_FFF8)),
                ),
            ),
            ("text", text),
            ("random", page_of_u64((0..words / 2).map(|_| rng.next()))),
        ]
    }

    #[test]
    fn round_trips_sample_pages() {
        for len in [64, 68, 100, 116, 124, 252, 4096, 8192, 65536] {
            for (name, page) in sample_pages(len) {
                let n = round_trip(&page);
                let mut out = vec![0u8; max_encoded_len(len)];
                let fits = encode(&page, &mut out, len - 1);
                if name == "random" {
                    assert_eq!(fits, None, "random page of {len} must not fit in len-1");
                } else if name != "text" {
                    assert_eq!(fits, Some(n), "{name} {len}");
                }
            }
        }
    }

    #[test]
    fn round_trips_every_small_length() {
        // Covers every tail shape of the 32-word chunks and 4-word tag bytes.
        for words in 16..=200usize {
            let mut rng = Rng(words as u64 + 1);
            let page = page_of_words((0..words).map(|i| match rng.next() % 5 {
                0 => 0,
                1 => 7,
                2 => 0x1234_5000 | (i as u32 & 0x3ff),
                3 => 0x0000_7f12,
                _ => rng.next() as u32,
            }));
            round_trip(&page);
        }
    }

    #[test]
    fn compresses_expected_pages_well() {
        let pages = sample_pages(4096);
        for (name, page) in &pages {
            let n = round_trip(page);
            match *name {
                "zero" => assert_eq!(n, HEADER_LEN + 256),
                "repeated" | "small u32" | "small u64" | "pointers" => {
                    assert!(n < 2200, "{name}: {n}")
                }
                _ => {}
            }
        }
    }

    #[test]
    fn max_encoded_len_values() {
        assert_eq!(max_encoded_len(4096), 6 + 256 + 4096);
        assert_eq!(max_encoded_len(68), 6 + 5 + 68);
        // Every nonzero word a MISS: the worst case is reached exactly.
        let page = page_of_words((0..1024u32).map(|i| (i + 1) << 26 | i << 10));
        assert_eq!(round_trip(&page), max_encoded_len(4096));
    }

    #[test]
    fn dict_index_depends_on_upper_bits_only() {
        for w in [0u32, 1, 0x3ff, 0x400, 0xDEAD_BEEF, u32::MAX] {
            assert!(dict_index(w) < 16);
            assert_eq!(dict_index(w), dict_index(w ^ 0x3ff));
        }
        // The hash spreads consecutive upper values over all slots.
        let mut seen = [false; 16];
        for hi in 0..64u32 {
            seen[dict_index(hi << 10)] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn rejects_bad_page_lengths() {
        let mut out = vec![0u8; 100_000];
        for len in [0, 4, 60, 65, 4094, 65540] {
            let page = vec![0u8; len];
            assert_eq!(encode(&page, &mut out, usize::MAX), None, "{len}");
            let mut page = vec![0u8; len];
            assert!(decode(&[0; 6], &mut page).is_err());
        }
    }

    #[test]
    fn early_abort_respects_limits_and_out_len() {
        for (name, page) in sample_pages(4096) {
            let full = round_trip(&page);
            for limit in [0, 5, 6, 261, 262, 263, full / 2, full - 1, full] {
                // Guard bytes after out.len() must stay untouched.
                let mut buf = vec![0xEEu8; max_encoded_len(4096) + 16];
                let r = encode(&page, &mut buf[..max_encoded_len(4096)], limit);
                assert_eq!(r.is_some(), full <= limit, "{name} limit {limit}");
                assert!(buf[max_encoded_len(4096)..].iter().all(|&b| b == 0xEE));
                // Same with the buffer itself as the constraint.
                let out_len = limit.min(buf.len() - 16);
                buf.fill(0xEE);
                let r2 = encode(&page, &mut buf[..out_len], usize::MAX);
                assert_eq!(r2.is_some(), full <= out_len, "{name} out {out_len}");
                assert!(
                    buf[out_len..].iter().all(|&b| b == 0xEE),
                    "{name} {out_len}"
                );
                if let Some(n) = r2 {
                    buf[out_len..].fill(0xEE);
                    assert_eq!(n, full);
                    let mut back = vec![0u8; 4096];
                    decode(&buf[..n], &mut back).unwrap();
                    assert_eq!(back, page);
                }
            }
        }
    }

    /// A valid encoding of a mixed page, used as the base for malformed inputs.
    fn mixed_page_encoding() -> (Vec<u8>, Vec<u8>) {
        // 25 words (100 bytes): n % 4 == 1 so the tag area has padding.
        let mut words = vec![0u32, 5, 5, 0x1234_5678, 0x1234_5679, 0x1234_5679, 7];
        words.extend((0..18).map(|i| 0x0000_7f12 + (i & 1) * 0x3456_0000));
        let page = page_of_words(words);
        let enc = reference_encode(&page);
        let mut back = vec![0u8; page.len()];
        decode(&enc, &mut back).unwrap();
        assert_eq!(back, page);
        (page, enc)
    }

    #[test]
    fn malformed_inputs_are_rejected() {
        let (page, enc) = mixed_page_encoding();
        let n_miss = u16::from_le_bytes([enc[0], enc[1]]) as usize;
        let n_index = u16::from_le_bytes([enc[2], enc[3]]) as usize;
        let n_partial = u16::from_le_bytes([enc[4], enc[5]]) as usize;
        // The sample must exercise every padding rule.
        assert_eq!(n_index % 2, 1, "n_index {n_index}");
        assert_ne!((10 * n_partial) % 8, 0, "n_partial {n_partial}");
        let tags_end = HEADER_LEN + 7;
        let idx_end = tags_end + n_index.div_ceil(2);
        let low_end = idx_end + (10 * n_partial).div_ceil(8);
        assert_eq!(enc.len(), low_end + 4 * n_miss);

        let set = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut e = enc.clone();
            f(&mut e);
            e
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("truncated header", enc[..5].to_vec()),
            ("header only", enc[..6].to_vec()),
            ("truncated", enc[..enc.len() - 1].to_vec()),
            ("trailing byte", set(&|e| e.push(0))),
            ("partial > index", set(&|e| e[4] = e[2] + 1)),
            ("counts > words", set(&|e| e[1] = 0x40)),
            (
                "miss count +1 (len fixed)",
                set(&|e| {
                    e[0] += 1;
                    e.extend_from_slice(&[0; 4]);
                }),
            ),
            (
                "index count +2 (len fixed)",
                set(&|e| {
                    e[2] += 2;
                    e.insert(idx_end, 0);
                }),
            ),
            ("tag changed ZERO->EXACT", set(&|e| e[HEADER_LEN] |= 3)),
            ("tag padding", set(&|e| e[tags_end - 1] |= 0x04)),
            ("index padding", set(&|e| e[idx_end - 1] |= 0x10)),
            ("low padding", set(&|e| e[low_end - 1] |= 0x80)),
        ];
        for (name, bad) in cases {
            let mut out = page.clone();
            let r = decode(&bad, &mut out);
            assert!(r.is_err(), "{name} accepted");
            assert_eq!(out, page, "{name}: page modified on error");
        }
    }

    #[test]
    fn all_tag_patterns_of_one_byte() {
        // Zero-padded, consistent payloads decode for every combination of the
        // first four tags (checks the tag counting).
        for tb in 0..=255u8 {
            let mut tags = vec![0u8; 4];
            tags[0] = tb;
            let t: Vec<u8> = (0..4).map(|k| (tb >> (2 * k)) & 3).collect();
            let c = |v: u8| t.iter().filter(|&&x| x == v).count();
            let (n_p, n_m, n_i) = (c(1), c(2), c(1) + c(3));
            let mut e = Vec::new();
            e.extend_from_slice(&(n_m as u16).to_le_bytes());
            e.extend_from_slice(&(n_i as u16).to_le_bytes());
            e.extend_from_slice(&(n_p as u16).to_le_bytes());
            e.extend_from_slice(&tags);
            e.extend(std::iter::repeat_n(
                0u8,
                n_i.div_ceil(2) + (10 * n_p).div_ceil(8) + 4 * n_m,
            ));
            let mut page = [0u8; 64];
            decode(&e, &mut page).unwrap();
        }
    }

    /// Structured page: each word from (kind, value) relative to the previous word.
    fn structured_page() -> impl Strategy<Value = Vec<u8>> {
        (16usize..=2048)
            .prop_flat_map(|n| prop::collection::vec((0u8..6, any::<u32>()), n))
            .prop_map(|spec| {
                let mut prev = 0u32;
                let mut run = 0u32;
                page_of_words(spec.into_iter().map(|(kind, v)| {
                    let w = match kind {
                        0 => 0,
                        1 => prev,
                        2 => prev ^ (v & 0x3ff),
                        3 => v,
                        4 => v & 0x3ff,
                        _ => {
                            run = run.wrapping_add(1);
                            if run.is_multiple_of(2) {
                                0x0000_7f12
                            } else {
                                0x3456_0000 | (v & 0xffff)
                            }
                        }
                    };
                    prev = w;
                    w
                }))
            })
    }

    /// Consistent payload (header matches tags, zero padding) with arbitrary contents.
    fn consistent_payload() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 256 + 4096).prop_map(|bytes| {
            let (tags, rest) = bytes.split_at(256);
            let mut c = [0usize; 4];
            for tb in tags {
                for k in 0..4 {
                    c[usize::from((tb >> (2 * k)) & 3)] += 1;
                }
            }
            let (n_p, n_m, n_i) = (c[1], c[2], c[1] + c[3]);
            let mut e = Vec::new();
            e.extend_from_slice(&(n_m as u16).to_le_bytes());
            e.extend_from_slice(&(n_i as u16).to_le_bytes());
            e.extend_from_slice(&(n_p as u16).to_le_bytes());
            e.extend_from_slice(tags);
            let rest_len = n_i.div_ceil(2) + (10 * n_p).div_ceil(8) + 4 * n_m;
            e.extend_from_slice(&rest[..rest_len]);
            let idx_end = HEADER_LEN + 256 + n_i.div_ceil(2);
            if n_i % 2 == 1 {
                e[idx_end - 1] &= 0x0F;
            }
            let low_end = idx_end + (10 * n_p).div_ceil(8);
            if (10 * n_p) % 8 != 0 {
                e[low_end - 1] &= (1u8 << ((10 * n_p) % 8)) - 1;
            }
            e
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn prop_round_trip_structured(page in structured_page()) {
            let max = max_encoded_len(page.len());
            let mut out = vec![0u8; max];
            let n = encode(&page, &mut out, max);
            prop_assert!(n.is_some());
            let n = n.unwrap();
            prop_assert!(n <= max);
            prop_assert_eq!(&out[..n], &reference_encode(&page)[..]);
            let mut back = vec![0u8; page.len()];
            prop_assert_eq!(decode(&out[..n], &mut back), Ok(()));
            prop_assert_eq!(back, page);
        }

        #[test]
        fn prop_max_encoded_len_is_bound(words in prop::collection::vec(any::<u32>(), 16..=1024),
                                         mask in any::<u32>()) {
            // Random words, some thinned to zero / partial hits by the mask.
            let page = page_of_words(words.iter().map(|&w| if w & 3 == 0 { w & mask } else { w }));
            let mut out = vec![0u8; max_encoded_len(page.len()) + 64];
            let n = encode(&page, &mut out, usize::MAX);
            prop_assert!(n.is_some());
            prop_assert!(n.unwrap() <= max_encoded_len(page.len()));
        }

        #[test]
        fn prop_limits_exact(page in structured_page(), frac in 0.0f64..1.2) {
            let full = round_trip(&page);
            let limit = (full as f64 * frac) as usize;
            let mut out = vec![0xEEu8; full + 8];
            let r = encode(&page, &mut out[..limit.min(full + 4)], usize::MAX);
            prop_assert_eq!(r.is_some(), full <= limit.min(full + 4));
            prop_assert!(out[limit.min(full + 4)..].iter().all(|&b| b == 0xEE));
            let r = encode(&page, &mut out, limit);
            prop_assert_eq!(r.is_some(), full <= limit);
        }

        #[test]
        fn prop_decode_arbitrary_bytes(src in prop::collection::vec(any::<u8>(), 0..6000)) {
            let mut page = vec![0u8; 4096];
            let _ = decode(&src, &mut page);
        }

        #[test]
        fn prop_decode_consistent_payloads(src in consistent_payload()) {
            let mut page = vec![0u8; 4096];
            prop_assert_eq!(decode(&src, &mut page), Ok(()));
        }

        #[test]
        fn prop_decode_flipped_byte(page in structured_page(), pos in any::<usize>(), x in 1u8..=255) {
            let max = max_encoded_len(page.len());
            let mut out = vec![0u8; max];
            let n = encode(&page, &mut out, max).unwrap();
            let mut bad = out[..n].to_vec();
            bad[pos % n] ^= x;
            let mut back = vec![0u8; page.len()];
            let _ = decode(&bad, &mut back);
        }
    }
}
