//! Deltas against the destination's copy, through the public API: a source
//! with a shared page cache, a destination that holds what was sent.

mod common;

use common::{page, Kind, Rng};
use mecom::{Config, Decoder, Encoder, Error, LinkStats, Method, Mode, PageCache, Placement};
use std::sync::Arc;

const PS: usize = 4096;

fn fixed() -> Config {
    Config {
        mode: Mode::Fixed,
        ..Config::default()
    }
}

/// A guest of `n` pages and one encoder/decoder pair sharing `cache`.
struct Migration {
    ram: Vec<u8>,
    dst: Vec<u8>,
    enc: Encoder,
    dec: Decoder,
    round: u64,
    /// The link's rate QEMU reports (`max-bandwidth`), bytes/s; 0 = none.
    link: u64,
}

impl Migration {
    fn new(n: usize, cache: Option<Arc<PageCache>>) -> Migration {
        let mut ram = Vec::with_capacity(n * PS);
        for i in 0..n {
            let kind = [Kind::Text, Kind::Pointers, Kind::SmallInts, Kind::Mixed][i % 4];
            ram.extend_from_slice(&page(kind, PS, i as u64 + 1));
        }
        let mut enc = Encoder::new(fixed()).unwrap();
        enc.set_cache(cache).unwrap();
        Migration {
            dst: vec![0; ram.len()],
            ram,
            enc,
            dec: Decoder::new(fixed()).unwrap(),
            round: 0,
            link: 0,
        }
    }

    fn next_round(&mut self) {
        self.round += 1;
        self.stats();
    }

    /// A link of `bandwidth` bytes/s shared by 2 channels.
    fn set_link(&mut self, bandwidth: u64) {
        self.link = bandwidth;
        self.stats();
    }

    fn stats(&mut self) {
        self.enc.update_stats(LinkStats {
            dirty_sync_count: self.round,
            bandwidth: self.link,
            channels: 2,
            ..LinkStats::default()
        });
    }

    /// Sends the pages at `indices` (one frame) and decodes them onto the
    /// destination's RAM; returns the frame's length and the methods.
    fn send(&mut self, indices: &[usize], zeros: &[u64]) -> Result<(usize, Vec<Method>), Error> {
        let offsets: Vec<u64> = indices.iter().map(|&i| (i * PS) as u64).collect();
        let placement = Placement {
            block: b"pc.ram",
            offsets: &offsets,
            zero_offsets: zeros,
        };
        let pages: Vec<&[u8]> = indices
            .iter()
            .map(|&i| &self.ram[i * PS..(i + 1) * PS])
            .collect();
        let mut frame = vec![0u8; self.enc.max_frame_len(pages.len())];
        let len = self.enc.encode_placed(&pages, &placement, &mut frame)?;
        frame.truncate(len);
        let methods = methods_of(&frame, indices.len());
        for &z in zeros {
            self.dst[z as usize..z as usize + PS].fill(0);
        }
        let mut slots: Vec<&mut [u8]> = Vec::new();
        let mut rest: &mut [u8] = &mut self.dst;
        let mut at = 0;
        // Disjoint, ascending page slices of the destination.
        let mut sorted = indices.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, indices, "the test sends ascending pages");
        for &i in indices {
            let (_, tail) = std::mem::take(&mut rest).split_at_mut((i - at) * PS);
            let (p, tail) = tail.split_at_mut(PS);
            slots.push(p);
            rest = tail;
            at = i + 1;
        }
        self.dec.decode_placed(&frame, &placement, &mut slots)?;
        Ok((len, methods))
    }
}

fn methods_of(frame: &[u8], n: usize) -> Vec<Method> {
    (0..n)
        .map(|i| {
            let e = &frame[32 + 4 * i..36 + 4 * i];
            Method::from_tag(e[3]).unwrap()
        })
        .collect()
}

#[test]
fn a_re_sent_page_goes_as_a_small_delta_and_arrives_exact() {
    let cache = Arc::new(PageCache::new(4096, 64 * 4096).unwrap());
    let mut m = Migration::new(32, Some(cache.clone()));
    let all: Vec<usize> = (0..32).collect();
    m.next_round();
    let (first, methods) = m.send(&all, &[]).unwrap();
    assert!(methods.iter().all(|m| !m.is_delta()), "{methods:?}");
    assert_eq!(m.dst, m.ram);

    // Round 2: a few words of every page change.
    let mut rng = Rng(7);
    for i in 0..32 {
        for _ in 0..3 {
            let at = i * PS + rng.below(PS as u64 / 4) as usize * 4;
            m.ram[at..at + 4].copy_from_slice(&(rng.next() as u32).to_le_bytes());
        }
    }
    m.next_round();
    let (second, methods) = m.send(&all, &[]).unwrap();
    assert_eq!(m.dst, m.ram);
    assert!(
        methods.iter().all(|&x| x == Method::DeltaSparse),
        "{methods:?}"
    );
    assert!(second * 20 < first, "{second} vs {first}");
    let c = cache.counters();
    assert_eq!((c.hits, c.hot), (32, 32), "{c:?}");
}

#[test]
fn without_a_cache_nothing_is_a_delta() {
    let mut m = Migration::new(8, None);
    let all: Vec<usize> = (0..8).collect();
    m.send(&all, &[]).unwrap();
    m.ram[5] ^= 1;
    let (_, methods) = m.send(&all, &[]).unwrap();
    assert!(methods.iter().all(|m| !m.is_delta()), "{methods:?}");
    assert_eq!(m.dst, m.ram);
}

#[test]
fn a_page_the_destination_changed_fails_with_base_mismatch() {
    let cache = Arc::new(PageCache::new(4096, 64 * 4096).unwrap());
    let mut m = Migration::new(4, Some(cache));
    m.send(&[0, 1, 2, 3], &[]).unwrap();
    m.ram[PS + 9] ^= 0x10;
    // The destination's copy of page 1 differs from what was sent.
    m.dst[PS + 100] ^= 1;
    let got = m.send(&[0, 1, 2, 3], &[]);
    assert!(
        matches!(got, Err(Error::BaseMismatch { page: 1, .. })),
        "{got:?}"
    );
}

#[test]
fn a_zero_page_sent_outside_the_codec_leaves_the_cache() {
    let cache = Arc::new(PageCache::new(4096, 64 * 4096).unwrap());
    let mut m = Migration::new(4, Some(cache.clone()));
    m.send(&[0, 1, 2, 3], &[]).unwrap();
    // Page 2 becomes zero and goes in the packet's zero list (the
    // transport's own zero-page detection); then it gets content again.
    m.ram[2 * PS..3 * PS].fill(0);
    m.send(&[0, 1, 3], &[2 * PS as u64]).unwrap();
    assert_eq!(cache.counters().invalidations, 1);
    m.ram[2 * PS + 5] = 1;
    let (_, methods) = m.send(&[2], &[]).unwrap();
    assert!(!methods[0].is_delta(), "{methods:?}");
    assert_eq!(m.dst, m.ram);
}

#[test]
fn a_frame_of_only_zero_pages_also_invalidates() {
    let cache = Arc::new(PageCache::new(4096, 64 * 4096).unwrap());
    let mut m = Migration::new(2, Some(cache.clone()));
    m.send(&[0, 1], &[]).unwrap();
    m.ram[..PS].fill(0);
    m.send(&[], &[0]).unwrap();
    assert_eq!(cache.counters().invalidations, 1);
    m.ram[3] = 3;
    let (_, methods) = m.send(&[0], &[]).unwrap();
    assert!(!methods[0].is_delta());
    assert_eq!(m.dst, m.ram);
}

#[test]
fn a_rewritten_page_takes_its_own_codec_when_smaller() {
    let cache = Arc::new(PageCache::new(4096, 64 * 4096).unwrap());
    let mut m = Migration::new(2, Some(cache));
    m.ram[..PS].copy_from_slice(&page(Kind::Random, PS, 99));
    m.send(&[0, 1], &[]).unwrap();
    // Page 0 becomes text: its XOR with the random base is random, the
    // text itself compresses.
    m.ram[..PS].copy_from_slice(&page(Kind::Text, PS, 5));
    let (_, methods) = m.send(&[0], &[]).unwrap();
    assert!(!methods[0].is_delta(), "{methods:?}");
    assert_eq!(m.dst, m.ram);
}

#[test]
fn a_decoder_refuses_delta_pages_in_a_frame_without_the_feature() {
    let cache = Arc::new(PageCache::new(4096, 64 * 4096).unwrap());
    let mut m = Migration::new(2, Some(cache));
    m.send(&[0, 1], &[]).unwrap();
    m.ram[7] ^= 1;
    let offsets = [0u64];
    let placement = Placement {
        block: b"pc.ram",
        offsets: &offsets,
        zero_offsets: &[],
    };
    let mut frame = vec![0u8; m.enc.max_frame_len(1)];
    let len = m
        .enc
        .encode_placed(&[&m.ram[..PS]], &placement, &mut frame)
        .unwrap();
    frame.truncate(len);
    assert!(methods_of(&frame, 1)[0].is_delta());
    let features = u32::from_le_bytes(frame[12..16].try_into().unwrap());
    assert_eq!(
        features,
        mecom::format::FEATURE_PLACEMENT | mecom::format::FEATURE_DELTA
    );

    // The delta bit alone, without a placement: refused by the header.
    let mut unbound = frame.clone();
    unbound[12..16].copy_from_slice(&mecom::format::FEATURE_DELTA.to_le_bytes());
    assert!(matches!(
        mecom::format::Header::parse(&unbound),
        Err(Error::InvalidArgument { .. })
    ));
    // A delta page in a frame that does not declare deltas (sequence 0
    // for a fresh decoder; the sequence is not under the checksum).
    let mut undeclared = frame.clone();
    undeclared[12..16].copy_from_slice(&mecom::format::FEATURE_PLACEMENT.to_le_bytes());
    undeclared[8..12].copy_from_slice(&0u32.to_le_bytes());
    let mut dst = m.dst.clone();
    let got = Decoder::new(fixed()).unwrap().decode_placed(
        &undeclared,
        &placement,
        &mut [&mut dst[..PS]],
    );
    assert!(
        matches!(
            got,
            Err(Error::CorruptPage {
                page: 0,
                method: Method::DeltaSparse,
                ..
            })
        ),
        "{got:?}"
    );
}

#[test]
fn a_delta_frame_reads_in_parts_like_any_other() {
    let cache = Arc::new(PageCache::new(4096, 64 * 4096).unwrap());
    let mut m = Migration::new(4, Some(cache));
    m.ram[2 * PS..3 * PS].copy_from_slice(&page(Kind::Random, PS, 3));
    m.send(&[0, 1, 2, 3], &[]).unwrap();
    m.ram[9] ^= 0x55;
    m.ram[3 * PS + 77] ^= 0x55;
    m.ram[2 * PS..3 * PS].copy_from_slice(&page(Kind::Random, PS, 4));
    let offsets: Vec<u64> = (0..4).map(|i| (i * PS) as u64).collect();
    let placement = Placement {
        block: b"pc.ram",
        offsets: &offsets,
        zero_offsets: &[],
    };
    let pages: Vec<&[u8]> = m.ram.chunks_exact(PS).collect();
    let mut frame = vec![0u8; m.enc.max_frame_len(4)];
    let len = m.enc.encode_placed(&pages, &placement, &mut frame).unwrap();
    frame.truncate(len);
    let methods = methods_of(&frame, 4);
    assert_eq!(methods[0], Method::DeltaSparse);
    assert_eq!(methods[2], Method::Raw);
    let mut out = m.dst.clone();
    common::read_in_parts(
        &mut m.dec,
        &frame,
        4,
        PS,
        &mut out,
        Some(&placement),
        |_, _| {},
    )
    .unwrap();
    assert_eq!(out, m.ram);
}

#[test]
fn pages_sent_in_an_all_raw_batch_leave_the_cache() {
    let cache = Arc::new(PageCache::new(4096, 64 * 4096).unwrap());
    let mut m = Migration::new(4, Some(cache.clone()));
    let all = [0, 1, 2, 3];
    m.send(&all, &[]).unwrap();
    // A link faster than any codec (10 Gbit/s): every page raw, none
    // copied, no delta tried.
    m.set_link(1_250_000_000);
    m.enc.pin_codecs(Some(
        [mecom::policy::Codec::Raw; mecom::classify::PageClass::COUNT],
    ));
    m.ram[10] ^= 1;
    m.ram[3 * PS + 10] ^= 1;
    let (_, methods) = m.send(&all, &[]).unwrap();
    assert!(methods.iter().all(|&x| x == Method::Raw), "{methods:?}");
    assert_eq!(cache.counters().invalidations, 4);
    // Back to compression: the pages are no longer in the cache, so they
    // go whole, and arrive exact.
    m.enc.pin_codecs(None);
    m.ram[20] ^= 1;
    let (_, methods) = m.send(&all, &[]).unwrap();
    assert!(methods.iter().all(|m| !m.is_delta()), "{methods:?}");
    assert_eq!(m.dst, m.ram);
}

#[test]
fn an_all_raw_batch_on_a_slow_link_sends_the_pages_the_cache_holds_as_deltas() {
    // Every class raw (pages that do not compress, or a plan that found raw
    // best) on a 1 Gbit/s link: a page the guest changed in place is still
    // a few bytes as a delta, and a raw page costs 65 µs of the link.
    let cache = Arc::new(PageCache::new(4096, 64 * 4096).unwrap());
    let mut m = Migration::new(4, Some(cache.clone()));
    m.set_link(125_000_000);
    m.enc.pin_codecs(Some(
        [mecom::policy::Codec::Raw; mecom::classify::PageClass::COUNT],
    ));
    let all = [0, 1, 2, 3];
    let (_, methods) = m.send(&all, &[]).unwrap();
    assert!(methods.iter().all(|&x| x == Method::Raw), "{methods:?}");
    assert_eq!(cache.counters().inserts, 4, "raw pages enter the cache");
    m.next_round();
    m.ram[10] ^= 1;
    m.ram[3 * PS + 10] ^= 1;
    let (len, methods) = m.send(&all, &[]).unwrap();
    assert!(methods.iter().all(|x| x.is_delta()), "{methods:?}");
    assert!(len < PS / 8, "four deltas of one bit each: {len} bytes");
    assert_eq!(m.dst, m.ram);
}

#[test]
fn a_re_sent_page_with_new_content_stays_in_the_zstd_group() {
    let cache = Arc::new(PageCache::new(4096, 64 * 4096).unwrap());
    let mut m = Migration::new(32, Some(cache.clone()));
    let all: Vec<usize> = (0..32).collect();
    m.next_round();
    m.send(&all, &[]).unwrap();
    // Round 2: even pages change a word, odd pages get unrelated content
    // (a compile's re-dirtied pages).
    for i in 0..32 {
        if i % 2 == 0 {
            m.ram[i * PS + 40] ^= 0x5a;
        } else {
            let kind = [Kind::Text, Kind::Pointers][i % 4 / 2];
            m.ram[i * PS..(i + 1) * PS].copy_from_slice(&page(kind, PS, 1000 + i as u64));
        }
    }
    m.next_round();
    let (_, methods) = m.send(&all, &[]).unwrap();
    assert_eq!(m.dst, m.ram);
    for (i, method) in methods.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(*method, Method::DeltaSparse, "page {i}: {methods:?}");
        } else {
            assert!(
                matches!(method, Method::Zstd | Method::ZstdMember),
                "page {i}: {methods:?}"
            );
        }
    }
}
