//! The format's one hash, xxh3-64 (`docs/FORMAT.md`): frame checksums,
//! delta bases, dedup references, block names and placements all go
//! through here, so every module hashes with the same implementation.
//!
//! The implementation is `twox-hash`'s, because it picks the widest vector
//! unit at run time (AVX2 where the CPU has it, else SSE2), while
//! `xxhash-rust` uses only what the build targets: SSE2 on the x86-64
//! baseline that distribution builds use.  The checksum pass is the one
//! cost a raw page adds to what `none` pays, on both sides, so its speed is
//! the raw path's (issue 17; the measurement is in `docs/results/hash.md`).
//! Both crates compute the same function; a test pins this one to the
//! other on every length class and seed.

#![forbid(unsafe_code)]

use std::hash::Hasher as _;
use twox_hash::XxHash3_64;

/// xxh3-64 of `bytes`, seed 0.
pub(crate) fn xxh3_64(bytes: &[u8]) -> u64 {
    XxHash3_64::oneshot(bytes)
}

/// xxh3-64 of `bytes` with `seed`.
pub(crate) fn xxh3_64_seeded(bytes: &[u8], seed: u64) -> u64 {
    XxHash3_64::oneshot_with_seed(seed, bytes)
}

/// xxh3-64 of bytes given in pieces: the same value as one call over
/// their concatenation.
pub(crate) struct Xxh3(XxHash3_64);

impl Xxh3 {
    /// A hasher with `seed`.
    pub(crate) fn with_seed(seed: u64) -> Xxh3 {
        Xxh3(XxHash3_64::with_seed(seed))
    }

    /// Appends `bytes`.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    /// The hash of everything appended so far.
    pub(crate) fn digest(&self) -> u64 {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Lengths around every size class of xxh3 (0, 1-3, 4-8, 9-16, 17-128,
    /// 129-240, then stripes of 64 in blocks of 1024) and a few pages.
    const LENGTHS: &[usize] = &[
        0, 1, 3, 4, 8, 9, 16, 17, 128, 129, 240, 241, 1023, 1024, 1025, 4095, 4096, 4097, 65536,
        131072,
    ];

    #[test]
    fn every_length_class_hashes_as_the_reference_implementation() {
        let data: Vec<u8> = (0..131072u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for &n in LENGTHS {
            for seed in [0, 1, u64::MAX, 0x9e37_79b9_7f4a_7c15] {
                let bytes = &data[..n];
                let want = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, seed);
                assert_eq!(xxh3_64_seeded(bytes, seed), want, "len {n} seed {seed:#x}");
                if seed == 0 {
                    assert_eq!(xxh3_64(bytes), want, "len {n}");
                }
            }
        }
    }

    proptest! {
        /// Any split of any input, any seed: the pieces hash as the whole,
        /// and as the reference implementation.
        #[test]
        fn pieces_hash_as_the_whole(
            data in proptest::collection::vec(any::<u8>(), 0..9000),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
            seed in any::<u64>(),
        ) {
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
            at.sort_unstable();
            let mut h = Xxh3::with_seed(seed);
            let mut from = 0;
            for &to in &at {
                h.update(&data[from..to]);
                from = to;
            }
            h.update(&data[from..]);
            let want = xxhash_rust::xxh3::xxh3_64_with_seed(&data, seed);
            prop_assert_eq!(h.digest(), want);
            prop_assert_eq!(xxh3_64_seeded(&data, seed), want);
        }
    }
}
