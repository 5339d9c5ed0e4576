//! A reference XBZRLE coder: the delta encoding of QEMU's
//! `migration/xbzrle.c` (`xbzrle_encode_buffer` / `xbzrle_decode_buffer`),
//! reimplemented byte by byte as a baseline for `mecom rounds`.
//!
//! The encoding compares the previous version of a page with the new one
//! and writes, until the end of the page, pairs of
//!
//! * a ULEB128 length of a run of unchanged bytes (0 only for the first
//!   pair, when the page starts with a changed byte), then
//! * a ULEB128 length (never 0) of the following run of changed bytes and
//!   those bytes of the new page.
//!
//! A trailing run of unchanged bytes is not written; an unchanged page
//! encodes to nothing.  Like QEMU, the encoder gives up (returns `None`)
//! when the output would not fit `dlen` bytes; QEMU then sends the page
//! whole.  QEMU's `uleb128_encode_small` stops at 2^14; this coder writes
//! full ULEB128 so that page sizes to 64 KiB work.

/// Appends the ULEB128 encoding of `v` at `dst[*d..]`; false if it does
/// not fit.
fn put_uleb(dst: &mut [u8], d: &mut usize, mut v: usize) -> bool {
    loop {
        let Some(slot) = dst.get_mut(*d) else {
            return false;
        };
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        *d += 1;
        if v == 0 {
            *slot = byte;
            return true;
        }
        *slot = byte | 0x80;
    }
}

/// Reads a ULEB128 value (at most 4 bytes) at `src[*i..]`.
fn get_uleb(src: &[u8], i: &mut usize) -> Option<usize> {
    let mut v = 0usize;
    for shift in (0..28).step_by(7) {
        let b = *src.get(*i)?;
        *i += 1;
        v |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Encodes `new` against `old` (same length) into `dst`; the encoded length,
/// or `None` if it would exceed `dst.len()` (QEMU: -1, send the page whole).
pub fn encode(old: &[u8], new: &[u8], dst: &mut [u8]) -> Option<usize> {
    debug_assert_eq!(old.len(), new.len());
    let n = old.len().min(new.len());
    let (mut i, mut d) = (0usize, 0usize);
    while i < n {
        // Unchanged run: eight bytes at a time, then byte by byte.
        let start = i;
        while i + 8 <= n && old[i..i + 8] == new[i..i + 8] {
            i += 8;
        }
        while i < n && old[i] == new[i] {
            i += 1;
        }
        if i == n {
            // The trailing unchanged run is not written.
            break;
        }
        if !put_uleb(dst, &mut d, i - start) {
            return None;
        }
        // Changed run.
        let start = i;
        while i < n && old[i] != new[i] {
            i += 1;
        }
        if !put_uleb(dst, &mut d, i - start) {
            return None;
        }
        let out = dst.get_mut(d..d + (i - start))?;
        out.copy_from_slice(&new[start..i]);
        d += i - start;
    }
    Some(d)
}

/// Applies an encoding to `page`, which holds the previous version; the
/// number of bytes reached, or `None` for a malformed encoding (a zero-length
/// changed run, an unchanged run of 0 after the first, a run past the page).
pub fn decode(src: &[u8], page: &mut [u8]) -> Option<usize> {
    let (mut i, mut d) = (0usize, 0usize);
    while i < src.len() {
        let zrun = get_uleb(src, &mut i)?;
        if d > 0 && zrun == 0 {
            return None;
        }
        d = d.checked_add(zrun).filter(|&d| d <= page.len())?;
        let nzrun = get_uleb(src, &mut i)?;
        if nzrun == 0 {
            return None;
        }
        let end = d.checked_add(nzrun).filter(|&e| e <= page.len())?;
        let bytes = src.get(i..i + nzrun)?;
        page[d..end].copy_from_slice(bytes);
        i += nzrun;
        d = end;
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes `new` against `old`, checks the decode restores `new`, and
    /// returns the encoding.
    fn round_trip(old: &[u8], new: &[u8]) -> Vec<u8> {
        let mut dst = vec![0u8; old.len() * 2 + 16];
        let len = encode(old, new, &mut dst).expect("fits");
        let mut page = old.to_vec();
        let reached = decode(&dst[..len], &mut page).expect("decodes");
        assert!(reached <= old.len());
        assert_eq!(page, new);
        dst.truncate(len);
        dst
    }

    /// A small deterministic generator.
    fn rnd(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// All equal, all different, alternating, and edge runs.
    #[test]
    fn hand_cases() {
        let old = vec![0u8; 4096];
        // All equal: nothing.
        assert!(round_trip(&old, &old).is_empty());
        // All different: zrun 0, nzrun 4096 (ULEB 0x80 0x20), the page.
        let new = vec![0xffu8; 4096];
        let enc = round_trip(&old, &new);
        assert_eq!(&enc[..3], &[0, 0x80, 0x20]);
        assert_eq!(enc.len(), 3 + 4096);
        // Alternating bytes: (1, 1, b) pairs after a first (0, 1, b).
        let new: Vec<u8> = (0..4096).map(|i| (i % 2 == 0) as u8).collect();
        let enc = round_trip(&old, &new);
        assert_eq!(&enc[..6], &[0, 1, 1, 1, 1, 1]);
        assert_eq!(enc.len(), 2048 * 3);
        // One changed byte at the end, one at the start.
        let mut new = old.clone();
        new[4095] = 7;
        assert_eq!(round_trip(&old, &new), vec![0xff, 0x1f, 1, 7]);
        let mut new = old.clone();
        new[0] = 9;
        assert_eq!(round_trip(&old, &new), vec![0, 1, 9]);
        // Unaligned runs across word boundaries.
        let mut new = old.clone();
        new[5..13].fill(1);
        new[100..101].fill(2);
        assert_eq!(round_trip(&old, &new)[..2], [5, 8]);
    }

    /// Random sparse and dense changes round-trip; a too-small buffer
    /// overflows instead of writing past it.
    #[test]
    fn random_round_trips_and_overflow() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for case in 0..200 {
            let ps = [4096, 8192, 65536][case % 3];
            let old: Vec<u8> = (0..ps).map(|_| rnd(&mut seed) as u8).collect();
            let mut new = old.clone();
            let changes = (rnd(&mut seed) % 64) as usize * (case % 7 + 1);
            for _ in 0..changes {
                let at = (rnd(&mut seed) as usize) % ps;
                let len = 1 + (rnd(&mut seed) as usize) % 40;
                for b in &mut new[at..(at + len).min(ps)] {
                    *b = b.wrapping_add(1 + (rnd(&mut seed) % 255) as u8);
                }
            }
            round_trip(&old, &new);
        }
        let old = vec![0u8; 4096];
        let new = vec![1u8; 4096];
        let mut dst = vec![0u8; 4096];
        assert_eq!(encode(&old, &new, &mut dst), None);
    }

    /// Malformed encodings are refused, not applied past the page.
    #[test]
    fn malformed_encodings() {
        let mut page = vec![0u8; 16];
        assert_eq!(decode(&[0, 0], &mut page), None); // empty changed run
        assert_eq!(decode(&[17, 1, 1], &mut page), None); // past the end
        assert_eq!(decode(&[15, 2, 1, 1], &mut page), None);
        assert_eq!(decode(&[0, 4, 1], &mut page), None); // short bytes
        assert_eq!(decode(&[0x80], &mut page), None); // cut ULEB
        assert_eq!(decode(&[0, 1, 1, 0, 1, 1], &mut page), None); // zrun 0 again
        assert_eq!(decode(&[2, 1, 5], &mut page), Some(3));
        assert_eq!(page[2], 5);
    }
}
