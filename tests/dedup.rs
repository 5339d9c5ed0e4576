//! Dedup through the public API: a source whose channel sends a page equal
//! to one it sent since its last sync point as a reference, and a
//! destination that copies the source page out of its block.

mod common;

use common::{page, Kind};
use mecom::format::{FEATURE_DEDUP, FEATURE_PLACEMENT};
use mecom::{Config, Decoder, Encoder, Error, LinkStats, Method, Mode, PageCache, Placement};
use proptest::prelude::*;
use std::sync::Arc;

const PS: usize = 4096;

fn fixed() -> Config {
    Config {
        mode: Mode::Fixed,
        ..Config::default()
    }
}

/// One channel of a migration of `n` pages of block `pc.ram`, with a page
/// cache and dedup on; the destination's block is `dst`.
struct Channel {
    ram: Vec<u8>,
    dst: Vec<u8>,
    enc: Encoder,
    dec: Decoder,
}

impl Channel {
    fn new(n: usize) -> Channel {
        let mut ram = Vec::with_capacity(n * PS);
        for i in 0..n {
            let kind = [Kind::Text, Kind::Pointers, Kind::Random, Kind::Mixed][i % 4];
            ram.extend_from_slice(&page(kind, PS, i as u64 + 1));
        }
        let mut enc = Encoder::new(fixed()).unwrap();
        let cache = PageCache::new(PS as u32, (n * PS) as u64).unwrap();
        enc.set_cache(Some(Arc::new(cache))).unwrap();
        enc.set_dedup(true).unwrap();
        Channel {
            dst: vec![0; ram.len()],
            ram,
            enc,
            dec: Decoder::new(fixed()).unwrap(),
        }
    }

    /// Makes page `to` a copy of page `from` on the source.
    fn copy(&mut self, from: usize, to: usize) {
        self.ram.copy_within(from * PS..(from + 1) * PS, to * PS);
    }

    /// Encodes the pages at `indices` of `block` into one frame.
    fn encode(&mut self, block: &[u8], indices: &[usize]) -> (Vec<u8>, Vec<u64>) {
        let offsets: Vec<u64> = indices.iter().map(|&i| (i * PS) as u64).collect();
        let placement = Placement {
            block,
            offsets: &offsets,
            zero_offsets: &[],
        };
        let pages: Vec<&[u8]> = indices
            .iter()
            .map(|&i| &self.ram[i * PS..(i + 1) * PS])
            .collect();
        let mut frame = vec![0u8; self.enc.max_frame_len(pages.len())];
        let len = self
            .enc
            .encode_placed(&pages, &placement, &mut frame)
            .unwrap();
        frame.truncate(len);
        (frame, offsets)
    }

    /// Sends the pages at `indices` (one frame of block `pc.ram`) and
    /// decodes them into the destination's block; returns the methods.
    fn send(&mut self, indices: &[usize]) -> Result<Vec<Method>, Error> {
        let (frame, offsets) = self.encode(b"pc.ram", indices);
        let placement = Placement {
            block: b"pc.ram",
            offsets: &offsets,
            zero_offsets: &[],
        };
        self.dec
            .decode_in_block(&frame, &placement, &mut self.dst)?;
        Ok(methods_of(&frame, indices.len()))
    }

    fn same_on_both_sides(&self, indices: &[usize]) -> bool {
        indices
            .iter()
            .all(|&i| self.ram[i * PS..(i + 1) * PS] == self.dst[i * PS..(i + 1) * PS])
    }
}

fn methods_of(frame: &[u8], n: usize) -> Vec<Method> {
    (0..n)
        .map(|i| Method::from_tag(frame[35 + 4 * i]).unwrap())
        .collect()
}

fn features_of(frame: &[u8]) -> u32 {
    u32::from_le_bytes(frame[12..16].try_into().unwrap())
}

#[test]
fn a_page_equal_to_one_the_channel_sent_is_a_reference() {
    let mut c = Channel::new(8);
    c.copy(1, 5);
    c.copy(2, 6); // a random page: the best case, 4 KiB for 16 bytes
    assert!(!c.send(&[0, 1, 2]).unwrap().contains(&Method::Dedup));
    let (frame, _) = c.encode(b"pc.ram", &[4, 5, 6]);
    let both = FEATURE_PLACEMENT | FEATURE_DEDUP;
    assert_eq!(features_of(&frame) & both, both);
    let methods = methods_of(&frame, 3);
    assert_eq!(methods[1..], [Method::Dedup, Method::Dedup], "{methods:?}");
    let dedup_slot = Method::Dedup.counter_slot();
    assert_eq!(c.enc.counters().method_pages[dedup_slot], 2);
    assert_eq!(c.enc.counters().method_bytes[dedup_slot], 32);

    let offsets: Vec<u64> = [4u64, 5, 6].iter().map(|i| i * PS as u64).collect();
    let placement = Placement {
        block: b"pc.ram",
        offsets: &offsets,
        zero_offsets: &[],
    };
    c.dec
        .decode_in_block(&frame, &placement, &mut c.dst)
        .unwrap();
    assert!(c.same_on_both_sides(&[0, 1, 2, 4, 5, 6]));
    assert_eq!(c.dec.counters().method_pages[dedup_slot], 2);
}

#[test]
fn no_reference_crosses_a_sync_point_a_block_or_its_own_frame() {
    let mut c = Channel::new(16);
    c.copy(1, 5);
    c.copy(1, 6);
    c.send(&[1]).unwrap();
    c.enc.synced();
    // After the sync point another channel may have re-sent page 1.
    assert_ne!(c.send(&[5]).unwrap(), [Method::Dedup]);
    // Page 5 went in this epoch: page 6 may name it.
    assert_eq!(c.send(&[6]).unwrap(), [Method::Dedup]);

    // The destination writes a frame's pages only after the whole frame
    // decoded: a page of the same frame is no source.
    c.copy(3, 9);
    assert!(!c.send(&[3, 9]).unwrap().contains(&Method::Dedup));

    // Another block: its page 1 is another page.
    c.copy(0, 12);
    c.encode(b"other", &[0]);
    let (frame, _) = c.encode(b"pc.ram", &[12]);
    assert_ne!(methods_of(&frame, 1), [Method::Dedup]);
    assert!(c.same_on_both_sides(&[1, 3, 5, 6, 9]));
}

#[test]
fn dedup_needs_a_cache_that_holds_the_source() {
    let mut enc = Encoder::new(fixed()).unwrap();
    assert!(matches!(
        enc.set_dedup(true),
        Err(Error::InvalidArgument { .. })
    ));

    // Off unless asked for: a cache alone gives deltas, not references.
    let mut c = Channel::new(8);
    c.enc.set_dedup(false).unwrap();
    c.copy(1, 5);
    c.send(&[1]).unwrap();
    assert_ne!(c.send(&[5]).unwrap(), [Method::Dedup]);

    // The source compares a page with the cache's copy of its source: a
    // source the cache no longer holds (a cache of one page, whose slot
    // page 3 took in a later round) is not named.
    let mut c = Channel::new(8);
    let tiny = PageCache::new(PS as u32, PS as u64).unwrap();
    c.enc.set_cache(Some(Arc::new(tiny))).unwrap();
    c.copy(1, 5);
    c.send(&[1]).unwrap();
    c.enc.update_stats(LinkStats {
        dirty_sync_count: 1,
        ..LinkStats::default()
    });
    c.send(&[3]).unwrap();
    assert_ne!(c.send(&[5]).unwrap(), [Method::Dedup]);
    assert!(c.same_on_both_sides(&[1, 3, 5]));
}

/// A frame with one dedup page (page 5, a copy of page 1), the placement
/// it is bound to, and the destination after page 1 arrived.
fn reference_frame() -> (Vec<u8>, Vec<u64>, Channel) {
    let mut c = Channel::new(8);
    c.copy(1, 5);
    c.send(&[1]).unwrap();
    let (frame, offsets) = c.encode(b"pc.ram", &[5]);
    assert_eq!(methods_of(&frame, 1), [Method::Dedup]);
    (frame, offsets, c)
}

fn decode_fresh(frame: &[u8], offsets: &[u64], block: &mut [u8]) -> Result<(), Error> {
    let placement = Placement {
        block: b"pc.ram",
        offsets,
        zero_offsets: &[],
    };
    // The frame is the channel's second: a fresh decoder expects sequence 0.
    let mut frame = frame.to_vec();
    frame[8..12].copy_from_slice(&0u32.to_le_bytes());
    let mut dec = Decoder::new(fixed()).unwrap();
    dec.decode_in_block(&frame, &placement, block).map(|_| ())
}

#[test]
fn a_decoder_refuses_references_it_cannot_resolve() {
    let (frame, offsets, c) = reference_frame();
    let untouched = c.dst.clone();

    // The destination's source page differs from what the source compared.
    let mut dst = c.dst.clone();
    dst[PS + 100] ^= 1;
    let got = decode_fresh(&frame, &offsets, &mut dst);
    assert!(
        matches!(got, Err(Error::BaseMismatch { page: 0, .. })),
        "{got:?}"
    );
    dst[PS + 100] ^= 1;
    assert_eq!(dst, untouched, "nothing written");

    // A source outside the block, or not page aligned (the checksum does
    // not cover the payload: the decoder reads these before it).
    for (offset, reason) in [
        (8 * PS as u64, "dedup source outside the block"),
        (u64::MAX - 4095, "dedup source outside the block"),
        (PS as u64 + 8, "dedup source offset not page aligned"),
        (5 * PS as u64, "dedup source is a page of its own frame"),
    ] {
        let mut bad = frame.clone();
        let at = 32 + 4;
        bad[at..at + 8].copy_from_slice(&offset.to_le_bytes());
        let mut dst = c.dst.clone();
        let got = decode_fresh(&bad, &offsets, &mut dst);
        assert!(
            matches!(got, Err(Error::CorruptPage { page: 0, method: Method::Dedup, reason: r }) if r == reason),
            "{offset}: {got:?}"
        );
        assert_eq!(dst, untouched);
    }

    // Only a decoder given the block resolves references.
    let placement = Placement {
        block: b"pc.ram",
        offsets: &offsets,
        zero_offsets: &[],
    };
    let mut page5 = vec![0u8; PS];
    let mut zeroed = frame.clone();
    zeroed[8..12].copy_from_slice(&0u32.to_le_bytes());
    let got =
        Decoder::new(fixed())
            .unwrap()
            .decode_placed(&zeroed, &placement, &mut [&mut page5[..]]);
    assert!(matches!(got, Err(Error::CorruptPage { .. })), "{got:?}");

    // The tag in a frame that does not declare dedup pages, and the bit
    // in a frame without a placement.
    let mut undeclared = zeroed.clone();
    undeclared[12..16].copy_from_slice(&FEATURE_PLACEMENT.to_le_bytes());
    let mut dst = c.dst.clone();
    let got = Decoder::new(fixed())
        .unwrap()
        .decode_in_block(&undeclared, &placement, &mut dst);
    assert!(
        matches!(got, Err(Error::CorruptPage { reason, .. }) if reason.contains("dedup feature")),
        "{got:?}"
    );
    let mut unbound = zeroed;
    unbound[12..16].copy_from_slice(&FEATURE_DEDUP.to_le_bytes());
    assert!(matches!(
        mecom::format::Header::parse(&unbound),
        Err(Error::InvalidArgument { .. })
    ));

    // A page offset outside the block is the caller's error.
    let far = [64 * PS as u64];
    let placement = Placement {
        block: b"pc.ram",
        offsets: &far,
        zero_offsets: &[],
    };
    let mut dst = c.dst.clone();
    let got = Decoder::new(fixed())
        .unwrap()
        .decode_in_block(&frame, &placement, &mut dst);
    assert!(matches!(got, Err(Error::InvalidArgument { .. })), "{got:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Rounds of frames over a RAM with many equal pages, sync points at
    /// random: after every frame the destination holds what was sent, and
    /// the decoder took as many references as the encoder made.  Each case
    /// starts with a copy sent after its original, which must go as a
    /// reference (the random frames alone may make none).
    #[test]
    fn references_resolve_round_after_round(
        copies in prop::collection::vec((0usize..32, 0usize..32), 1..40),
        frames in prop::collection::vec((0usize..32, 1usize..6, any::<bool>()), 1..30),
    ) {
        let mut c = Channel::new(32);
        let mut sent_in_epoch = [false; 32];
        c.copy(0, 1);
        c.send(&[0]).unwrap();
        prop_assert_eq!(c.send(&[1]).unwrap(), vec![Method::Dedup]);
        prop_assert!(c.same_on_both_sides(&[0, 1]));
        c.enc.synced();
        let mut references = 1;
        for (from, to) in copies {
            c.copy(from, to);
        }
        for (first, len, sync) in frames {
            if sync {
                c.enc.synced();
                sent_in_epoch.fill(false);
            }
            // A page at most once between sync points, as QEMU sends.
            let indices: Vec<usize> =
                (first..(first + len).min(32)).filter(|&i| !sent_in_epoch[i]).collect();
            if indices.is_empty() {
                continue;
            }
            for &i in &indices {
                sent_in_epoch[i] = true;
            }
            let methods = c.send(&indices).unwrap();
            references += methods.iter().filter(|&&m| m == Method::Dedup).count();
            prop_assert!(c.same_on_both_sides(&indices));
        }
        let slot = Method::Dedup.counter_slot();
        prop_assert_eq!(c.dec.counters().method_pages[slot], references as u64);
    }
}
