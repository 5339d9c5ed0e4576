//! Round trips through the public API: every page class, every setting, many
//! batch shapes; the decoded pages must equal the originals bit for bit.

mod common;

use common::{page, Kind, KINDS};
use mecom::{Config, Decoder, Encoder, LinkStats, LzCodec, Method, Mode};
use proptest::prelude::*;

fn settings() -> Vec<Config> {
    let base = Config::default();
    vec![
        Config {
            mode: Mode::Fixed,
            zstd_level: 0,
            ..base.clone()
        },
        Config {
            mode: Mode::Fixed,
            zstd_level: 0,
            lz: LzCodec::Lzo,
            ..base.clone()
        },
        Config {
            mode: Mode::Fixed,
            zstd_level: 1,
            ..base.clone()
        },
        Config {
            mode: Mode::Fixed,
            zstd_level: 3,
            zstd_group_pages: 1,
            ..base.clone()
        },
        Config {
            mode: Mode::Fixed,
            zstd_level: 1,
            zstd_group_pages: 5,
            ..base.clone()
        },
        Config {
            mode: Mode::Fixed,
            sparse_threshold: 0,
            similarity_threshold: 0,
            ..base.clone()
        },
        Config {
            mode: Mode::Fixed,
            sparse_threshold: 100,
            similarity_threshold: 100,
            zstd_level: 0,
            ..base.clone()
        },
        Config {
            mode: Mode::Adaptive,
            ..base.clone()
        },
        Config {
            page_size: 8192,
            max_pages: 64,
            ..base.clone()
        },
        Config {
            page_size: 65536,
            max_pages: 8,
            mode: Mode::Fixed,
            ..base
        },
    ]
}

/// Reads `frame` in parts, raw pages straight into place, and checks that
/// it gives `pages`.
fn decode_in_parts(config: &Config, pages: &[Vec<u8>], frame: &[u8]) {
    let ps = config.page_size as usize;
    let n = pages.len();
    let mut dec = Decoder::new(config.clone()).unwrap();
    let mut out = vec![0x5Au8; n * ps];
    common::read_in_parts(&mut dec, frame, n, ps, &mut out, None, |_, _| {}).unwrap();
    assert!(
        out == pages.concat(),
        "parts decode differs with {config:?}"
    );
}

/// Encodes `pages` and decodes them back with a fresh pair, asserting
/// identity, whole and in parts; returns the frame length and the
/// encoder's counters.
fn round_trip(config: &Config, pages: &[Vec<u8>]) -> (usize, mecom::Counters) {
    let mut enc = Encoder::new(config.clone()).unwrap();
    let mut dec = Decoder::new(config.clone()).unwrap();
    let refs: Vec<&[u8]> = pages.iter().map(Vec::as_slice).collect();
    let mut frame = vec![0u8; enc.max_frame_len(refs.len())];
    let len = enc.encode(&refs, &mut frame).unwrap();
    assert!(len <= frame.len());
    let mut out = vec![0x5Au8; pages.len() * config.page_size as usize];
    let info = dec.decode_into(&frame[..len], &mut out).unwrap();
    assert_eq!(info.pages, pages.len());
    for (i, p) in pages.iter().enumerate() {
        let ps = config.page_size as usize;
        assert!(
            out[i * ps..(i + 1) * ps] == p[..],
            "page {i} differs with {config:?}"
        );
    }
    decode_in_parts(config, pages, &frame[..len]);
    (len, enc.counters().clone())
}

#[test]
fn every_class_round_trips_under_every_setting() {
    for config in settings() {
        let ps = config.page_size as usize;
        let pages: Vec<Vec<u8>> = (0..config.max_pages.min(64))
            .map(|i| page(KINDS[i % KINDS.len()], ps, i as u64 * 7919 + 1))
            .collect();
        let (len, counters) = round_trip(&config, &pages);
        assert!(
            len < pages.len() * ps,
            "{config:?} did not compress a mixed batch"
        );
        assert_eq!(counters.pages, pages.len() as u64);
    }
}

#[test]
fn classes_take_the_expected_methods() {
    let config = Config {
        mode: Mode::Fixed,
        zstd_level: 0,
        ..Config::default()
    };
    let expect = [
        (Kind::Zero, Method::Zero),
        (Kind::Fill, Method::Fill),
        (Kind::Sparse, Method::Sparse),
        (Kind::Text, Method::Lz4),
        (Kind::Random, Method::Raw),
    ];
    for (kind, method) in expect {
        let pages: Vec<Vec<u8>> = (0..8).map(|s| page(kind, 4096, s + 1)).collect();
        let (_, c) = round_trip(&config, &pages);
        assert_eq!(c.method_pages[method.counter_slot()], 8, "{kind:?}: {c:?}");
    }
    let ratio = Config {
        mode: Mode::Fixed,
        zstd_level: 1,
        ..Config::default()
    };
    let pages: Vec<Vec<u8>> = (0..8).map(|s| page(Kind::Text, 4096, s + 1)).collect();
    let (_, c) = round_trip(&ratio, &pages);
    assert_eq!(c.method_pages[Method::Zstd.counter_slot()], 8, "{c:?}");
}

/// zstd groups whose members follow their head without a gap (decoded in
/// place) and with zero, fill and raw pages between them (scattered).
#[test]
fn zstd_groups_with_and_without_gaps_round_trip() {
    use Kind::{Fill, Random, Text, Zero};
    for group in [0, 2, 3] {
        let config = Config {
            mode: Mode::Fixed,
            zstd_level: 1,
            zstd_group_pages: group,
            max_pages: 16,
            ..Config::default()
        };
        for kinds in [
            &[Text, Text, Text, Text, Text][..],
            &[Text, Zero, Text, Random, Text, Fill, Text, Text],
            &[Random, Text, Text, Zero, Text, Text, Random],
        ] {
            let pages: Vec<Vec<u8>> = kinds
                .iter()
                .enumerate()
                .map(|(i, &k)| page(k, 4096, i as u64 + 1))
                .collect();
            let (_, c) = round_trip(&config, &pages);
            assert!(c.method_pages[Method::Zstd.counter_slot()] > 0, "{c:?}");
        }
    }
}

/// Classes that alternate page by page make one zstd group per class (one
/// flush each), whose members name their head past the other class's head.
#[test]
fn interleaved_classes_make_one_zstd_group_per_class() {
    use mecom::format::{unpack_entry, ENTRY_LEN, HEADER_LEN};
    let config = Config {
        mode: Mode::Fixed,
        zstd_level: 1,
        max_pages: 16,
        ..Config::default()
    };
    let kinds = [Kind::Text, Kind::SmallInts, Kind::Zero, Kind::Sparse];
    let pages: Vec<Vec<u8>> = (0..12)
        .map(|i| page(kinds[i % kinds.len()], 4096, i as u64 + 1))
        .collect();
    let mut enc = Encoder::new(config.clone()).unwrap();
    let refs: Vec<&[u8]> = pages.iter().map(Vec::as_slice).collect();
    let mut frame = vec![0u8; enc.max_frame_len(refs.len())];
    let len = enc.encode(&refs, &mut frame).unwrap();
    let entries: Vec<(u8, usize)> = frame[HEADER_LEN..HEADER_LEN + 12 * ENTRY_LEN]
        .chunks_exact(ENTRY_LEN)
        .map(|e| unpack_entry([e[0], e[1], e[2], e[3]]))
        .collect();
    let heads: Vec<usize> = (0..12)
        .filter(|&i| entries[i].0 == Method::Zstd.tag())
        .collect();
    assert_eq!(heads, [0, 1, 3], "{entries:?}");
    for (i, &(tag, field)) in entries.iter().enumerate() {
        if tag == Method::ZstdMember.tag() {
            assert_eq!(field, heads[[0, 1, 2, 2][i % 4]], "page {i}: {entries:?}");
        }
    }
    let mut dec = Decoder::new(config).unwrap();
    let mut out = vec![0u8; 12 * 4096];
    dec.decode_into(&frame[..len], &mut out).unwrap();
    assert_eq!(out, pages.concat());
}

#[test]
fn similar_pages_take_wkdm_when_it_is_implemented() {
    let config = Config {
        mode: Mode::Fixed,
        zstd_level: 0,
        ..Config::default()
    };
    let pages: Vec<Vec<u8>> = (0..8).map(|s| page(Kind::SmallInts, 4096, s + 1)).collect();
    let (len, c) = round_trip(&config, &pages);
    // Small integers are similar words: WKdm, or LZ4 as its fallback.
    let wkdm = c.method_pages[Method::Wkdm.counter_slot()];
    let lz4 = c.method_pages[Method::Lz4.counter_slot()];
    assert_eq!(wkdm + lz4, 8, "{c:?}");
    assert!(len < 8 * 4096 * 3 / 4);
}

#[test]
fn a_stream_of_frames_decodes_in_order() {
    let config = Config::default();
    let mut enc = Encoder::new(config.clone()).unwrap();
    let mut dec = Decoder::new(config).unwrap();
    enc.update_stats(LinkStats {
        bandwidth: 125_000_000,
        channels: 2,
        ..LinkStats::default()
    });
    for f in 0..20u64 {
        let pages: Vec<Vec<u8>> = (0..128)
            .map(|i| page(KINDS[(i + f as usize) % 8], 4096, f * 1000 + i as u64))
            .collect();
        let refs: Vec<&[u8]> = pages.iter().map(Vec::as_slice).collect();
        let mut frame = vec![0u8; enc.max_frame_len(128)];
        let len = enc.encode(&refs, &mut frame).unwrap();
        let mut out = vec![0u8; 128 * 4096];
        let info = dec.decode_into(&frame[..len], &mut out).unwrap();
        assert_eq!(info.sequence, f as u32);
        assert_eq!(out, pages.concat());
    }
    assert_eq!(enc.counters().frames, 20);
    assert_eq!(dec.counters().frames, 20);
    assert_eq!(enc.counters().method_pages, dec.counters().method_pages);
}

fn kind_strategy() -> impl Strategy<Value = Kind> {
    (0usize..KINDS.len()).prop_map(|i| KINDS[i])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_batches_round_trip(
        kinds in proptest::collection::vec((kind_strategy(), any::<u64>()), 1..=128),
        setting in 0usize..8,
    ) {
        let config = settings()[setting].clone();
        let pages: Vec<Vec<u8>> = kinds.iter().map(|&(k, s)| page(k, 4096, s)).collect();
        round_trip(&config, &pages);
    }

    #[test]
    fn arbitrary_page_bytes_round_trip(
        bytes in proptest::collection::vec(any::<u8>(), 4096 * 3),
        setting in 0usize..8,
    ) {
        let config = settings()[setting].clone();
        let pages: Vec<Vec<u8>> = bytes.chunks(4096).map(<[u8]>::to_vec).collect();
        round_trip(&config, &pages);
    }
}
