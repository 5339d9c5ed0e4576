//! Page generators shared by the integration tests: structured pages that
//! look like the classes guest RAM holds, from a seed, with no files.

#![allow(dead_code)]

/// Deterministic xorshift generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The page classes the generators know.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Zero,
    Fill,
    Sparse,
    SmallInts,
    Pointers,
    Text,
    Random,
    Mixed,
}

pub const KINDS: [Kind; 8] = [
    Kind::Zero,
    Kind::Fill,
    Kind::Sparse,
    Kind::SmallInts,
    Kind::Pointers,
    Kind::Text,
    Kind::Random,
    Kind::Mixed,
];

/// One page of `kind`, `size` bytes, from `seed`.
pub fn page(kind: Kind, size: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    let mut p = vec![0u8; size];
    match kind {
        Kind::Zero => {}
        Kind::Fill => {
            let w = (r.next() as u32).to_le_bytes();
            for c in p.chunks_exact_mut(4) {
                c.copy_from_slice(&w);
            }
        }
        Kind::Sparse => {
            for _ in 0..r.below(40) {
                let at = r.below(size as u64 - 8) as usize;
                let len = 1 + r.below(8) as usize;
                for b in &mut p[at..at + len] {
                    *b = r.next() as u8;
                }
            }
        }
        Kind::SmallInts => {
            for c in p.chunks_exact_mut(4) {
                c.copy_from_slice(&(r.below(2000) as u32).to_le_bytes());
            }
        }
        Kind::Pointers => {
            let base = 0x0000_7f3a_1200_0000u64 + (r.below(1 << 20) << 12);
            for c in p.chunks_exact_mut(8) {
                let v = if r.below(4) == 0 {
                    0
                } else {
                    base + r.below(1 << 16) * 16
                };
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        Kind::Text => {
            const WORDS: &[&str] = &[
                "migration ",
                "page ",
                "dirty ",
                "the ",
                "of ",
                "qemu ",
                "static ",
                "int ",
                "return ",
                "{\n",
                "}\n",
                "channel ",
                "multifd ",
                "=",
                "0x",
                ";\n",
            ];
            let mut i = 0;
            while i < size {
                let w = WORDS[r.below(WORDS.len() as u64) as usize].as_bytes();
                let n = w.len().min(size - i);
                p[i..i + n].copy_from_slice(&w[..n]);
                i += n;
            }
        }
        Kind::Random => {
            for c in p.chunks_exact_mut(8) {
                c.copy_from_slice(&r.next().to_le_bytes());
            }
        }
        Kind::Mixed => {
            let quarter = size / 4;
            for (q, chunk) in p.chunks_mut(quarter).enumerate() {
                let k = [Kind::SmallInts, Kind::Text, Kind::Random, Kind::Zero]
                    [(q + seed as usize) % 4];
                chunk.copy_from_slice(&page(k, quarter.max(64), seed + q as u64)[..chunk.len()]);
            }
        }
    }
    p
}

/// Reads `frame` (of `n` pages of `ps` bytes) in parts, the way QEMU's
/// receive glue does: the head, then every part [`Decoder::parts`] names,
/// raw pages straight into their place in `out` (after `tamper` saw each
/// one), the other payloads into a buffer that follows the head, against
/// `placement` if given.  Returns what `finish_parts` returned.
#[allow(dead_code)] // each test binary uses its own subset of this module
pub fn read_in_parts(
    dec: &mut mecom::Decoder,
    frame: &[u8],
    n: usize,
    ps: usize,
    out: &mut [u8],
    placement: Option<&mecom::Placement>,
    mut tamper: impl FnMut(usize, &mut [u8]),
) -> mecom::Result<mecom::FrameInfo> {
    let head = mecom::format::head_len(n);
    let buffered = dec.begin_parts(&frame[..head], n, placement)?;
    let mut buf = frame[..head].to_vec();
    let mut at = head;
    for part in dec.parts().to_vec() {
        match part {
            mecom::Part::Buffer { offset, len } => {
                assert_eq!(offset, buf.len(), "buffered parts are back to back");
                buf.extend_from_slice(&frame[at..at + len]);
                at += len;
            }
            mecom::Part::Page { index } => {
                let place = &mut out[index * ps..(index + 1) * ps];
                place.copy_from_slice(&frame[at..at + ps]);
                tamper(index, place);
                at += ps;
            }
        }
    }
    assert_eq!(at, frame.len(), "the parts cover the frame");
    assert_eq!(buf.len(), buffered, "begin_parts announced another length");
    let mut slices: Vec<&mut [u8]> = out.chunks_exact_mut(ps).collect();
    dec.finish_parts(&buf, &mut slices)
}
