//! Encoder-level tests of the cost-model controller: whatever codec each
//! class is forced onto, frames decode bit-exact; exploration really
//! encodes pages with the explored codec.

mod common;

use common::{page, KINDS};
use mecom::classify::PageClass;
use mecom::policy::{
    Codec, StepClock, EXPLORE_EVERY, EXPLORE_EVERY_RAW, RAW_SAMPLE_STRIDE, TIMED_EVERY,
};
use mecom::{Config, Decoder, Encoder, LinkStats, Method, Mode};

fn batch(seed: u64) -> Vec<Vec<u8>> {
    (0..64)
        .map(|i| {
            page(
                KINDS[(i + seed as usize) % KINDS.len()],
                4096,
                seed * 100 + i as u64,
            )
        })
        .collect()
}

/// Encodes `pages`, decodes the frame, checks the pages come back bit-exact;
/// returns the frame.
fn frame_of(enc: &mut Encoder, dec: &mut Decoder, pages: &[Vec<u8>]) -> Vec<u8> {
    let refs: Vec<&[u8]> = pages.iter().map(Vec::as_slice).collect();
    let mut frame = vec![0u8; enc.max_frame_len(refs.len())];
    let len = enc.encode(&refs, &mut frame).unwrap();
    let mut out = vec![0u8; refs.len() * 4096];
    dec.decode_into(&frame[..len], &mut out).unwrap();
    assert_eq!(out, pages.concat());
    frame.truncate(len);
    frame
}

/// [`frame_of`]'s length.
fn round_trip(enc: &mut Encoder, dec: &mut Decoder, pages: &[Vec<u8>]) -> usize {
    frame_of(enc, dec, pages).len()
}

#[test]
fn every_forced_choice_round_trips_bit_exact() {
    let mut plans: Vec<[Codec; PageClass::COUNT]> =
        Codec::ALL.iter().map(|&c| [c; PageClass::COUNT]).collect();
    // Mixed: each class on a different codec, rotated.
    for r in 0..Codec::COUNT {
        plans.push(std::array::from_fn(|k| Codec::ALL[(k + r) % Codec::COUNT]));
    }
    for zstd_level in [0, 1] {
        for group in [0, 3] {
            let config = Config {
                zstd_level,
                zstd_group_pages: group,
                ..Config::default()
            };
            let mut enc = Encoder::new(config.clone()).unwrap();
            let mut dec = Decoder::new(config).unwrap();
            for (k, &codecs) in plans.iter().enumerate() {
                enc.pin_codecs(Some(codecs));
                round_trip(&mut enc, &mut dec, &batch(k as u64));
            }
        }
    }
}

#[test]
fn the_controller_round_trips_under_changing_links() {
    let config = Config::default();
    let mut enc = Encoder::with_clock(config.clone(), Box::new(StepClock::new(700))).unwrap();
    let mut dec = Decoder::new(config).unwrap();
    let links = [0, 12_500_000, 125_000_000, 1_250_000_000, 12_500_000_000];
    for k in 0..40u64 {
        enc.update_stats(LinkStats {
            bandwidth: links[(k / 4) as usize % links.len()],
            dirty_pages_rate: if k % 3 == 0 { 1_000_000 } else { 100 },
            channels: 2,
            ..LinkStats::default()
        });
        round_trip(&mut enc, &mut dec, &batch(k));
    }
}

#[test]
fn exploration_encodes_pages_with_the_unused_codec() {
    // A fast link: generic pages go LZ, never zstd, except when explored.
    let config = Config {
        mode: Mode::Adaptive,
        ..Config::default()
    };
    let mut enc = Encoder::with_clock(config.clone(), Box::new(StepClock::new(500))).unwrap();
    let mut dec = Decoder::new(config).unwrap();
    enc.update_stats(LinkStats {
        bandwidth: 1_250_000_000,
        channels: 2,
        ..LinkStats::default()
    });
    let zstd = Method::Zstd.counter_slot();
    for k in 0..4 * EXPLORE_EVERY {
        let before = enc.counters().method_pages[zstd];
        let plan = enc.plan();
        round_trip(&mut enc, &mut dec, &batch(k));
        let zstd_pages = enc.counters().method_pages[zstd] - before;
        let exploring = plan.explore.contains(&Some(Codec::Zstd));
        if !plan.uses(Codec::Zstd) && !exploring {
            assert_eq!(zstd_pages, 0, "batch {k}");
        }
        if exploring {
            assert!(zstd_pages > 0, "batch {k}: {plan:?}");
        }
    }
    // The explored estimates moved off their priors.
    let fresh = mecom::policy::Policy::new(&Config::default());
    let explored = PageClass::ALL
        .iter()
        .filter(|&&c| enc.policy().class_cost(c, Codec::Zstd) != fresh.class_cost(c, Codec::Zstd))
        .count();
    assert!(explored > 0);
}

#[test]
fn probe_batches_send_every_page_raw_and_round_trip() {
    // A step clock advances only inside the encoder, so every batch looks
    // CPU-bound, and with no bandwidth configured the controller probes
    // the link with all-raw batches.
    let config = Config::default();
    let mut enc = Encoder::with_clock(config.clone(), Box::new(StepClock::new(900))).unwrap();
    let mut dec = Decoder::new(config).unwrap();
    let raw = Method::Raw.counter_slot();
    let mut probes = 0;
    for k in 0..40u64 {
        enc.update_stats(LinkStats {
            channels: 2,
            ..LinkStats::default()
        });
        let pages = batch(k);
        let (before, raw_before) = (
            enc.policy().probe_batches(),
            enc.counters().method_pages[raw],
        );
        let len = round_trip(&mut enc, &mut dec, &pages);
        if enc.policy().probe_batches() > before {
            probes += 1;
            assert_eq!(
                enc.counters().method_pages[raw] - raw_before,
                pages.len() as u64,
                "probe batch {k}: every page raw"
            );
            assert_eq!(
                len,
                mecom::format::HEADER_LEN + pages.len() * (mecom::format::ENTRY_LEN + 4096)
            );
        }
    }
    assert!(
        probes >= mecom::policy::PROBE_BATCHES,
        "{probes} probe batches"
    );
}

/// Frame lengths of 140 batches of 64 pages on a configured link of
/// `bandwidth` bytes/s: 63 random pages and one fill page each for 80
/// batches, then text.
fn rare_compressible_lens(bandwidth: u64) -> Vec<usize> {
    rare_compressible_frames(bandwidth, 80)
        .iter()
        .map(Vec::len)
        .collect()
}

/// The frames of [`rare_compressible_lens`], whose random phase lasts
/// `random` batches (text follows for 60).
fn rare_compressible_frames(bandwidth: u64, random: u64) -> Vec<Vec<u8>> {
    let config = Config::default();
    let mut enc = Encoder::with_clock(config.clone(), Box::new(StepClock::new(900))).unwrap();
    let mut dec = Decoder::new(config).unwrap();
    let mut frames = Vec::new();
    for k in 0..random + 60 {
        enc.update_stats(LinkStats {
            channels: 2,
            bandwidth,
            ..LinkStats::default()
        });
        let pages: Vec<Vec<u8>> = (0..64u64)
            .map(|i| match (k < random, i) {
                (true, 0) => page(common::Kind::Fill, 4096, k),
                (true, _) => page(common::Kind::Random, 4096, k * 100 + i),
                (false, _) => page(common::Kind::Text, 4096, k * 100 + i),
            })
            .collect();
        frames.push(frame_of(&mut enc, &mut dec, &pages));
    }
    frames
}

#[test]
fn rare_compressible_pages_go_raw_in_one_pass_until_the_mix_changes() {
    // A configured link turns probing off, so only the class mix decides.
    // At 10 Gbit/s, once the mix shows the fill class under RAW_ENOUGH,
    // batches skip classification and even the fill page goes raw: the
    // 4 KiB it would save, 64 bytes a page on average, take 0.05 us of
    // link per page, classifying every page 0.5 us of each channel.  Then the guest turns to text:
    // the next exploring batch classifies, and compression comes back.
    let full = mecom::format::HEADER_LEN + 64 * (mecom::format::ENTRY_LEN + 4096);
    let lens = rare_compressible_lens(1_250_000_000);
    assert!(lens[0] < full, "first batch classifies: {}", lens[0]);
    assert!(
        lens[60..80].iter().filter(|&&l| l == full).count() >= 18,
        "random phase ends all raw in one pass: {:?}",
        &lens[60..80]
    );
    assert!(
        lens[130..].iter().all(|&l| l < full / 2),
        "text compresses again: {:?}",
        &lens[130..]
    );
    // At 100 Mbit/s the same 4 KiB take 5 us of link per page: every
    // batch classifies, and the fill page is a tag.
    let lens = rare_compressible_lens(12_500_000);
    assert!(lens[..80].iter().all(|&l| l < full), "{:?}", &lens[..80]);
}

#[test]
fn an_all_raw_exploring_batch_classifies_one_page_in_four() {
    // The random phase of the test above, made longer: once all raw, an
    // exploring batch (one in 32) classifies one page in four, a different
    // one of each four from one exploring batch to the next, and sends the
    // rest raw unclassified.  So the batch's fill page 0 is a tag in one
    // exploring batch of four; classifying every page, it was in each.
    let frames = rare_compressible_frames(1_250_000_000, 400);
    let fill = Method::Fill as u8;
    let tagged: Vec<usize> = (64..400).filter(|&k| tags(&frames[k])[0] == fill).collect();
    // Frame k is the encoder's batch k + 1.
    let exploring = (64..400)
        .filter(|k| (k + 1) % EXPLORE_EVERY_RAW as usize == 0)
        .count();
    assert_eq!(exploring, 10);
    let stride = RAW_SAMPLE_STRIDE as usize;
    assert!(
        (exploring / stride..=exploring.div_ceil(stride)).contains(&tagged.len()),
        "fill page tagged in batches {tagged:?}"
    );
}

/// The page table's tags of a frame.
fn tags(frame: &[u8]) -> Vec<u8> {
    let n = usize::from(u16::from_le_bytes([frame[6], frame[7]]));
    frame[32..32 + 4 * n]
        .chunks_exact(4)
        .map(|e| e[3])
        .collect()
}

#[test]
fn a_batch_whose_classes_all_take_zstd_is_one_group_unless_timed() {
    // The random class on zstd too, then on raw: its pages are still
    // found without classifying the others.
    let mut random_raw = [Codec::Zstd; PageClass::COUNT];
    random_raw[PageClass::Random.index()] = Codec::Raw;
    let mut sparse_own = random_raw;
    sparse_own[PageClass::Sparse.index()] = Codec::Sparse;
    for codecs in [[Codec::Zstd; PageClass::COUNT], random_raw, sparse_own] {
        let config = Config::default();
        let mut enc = Encoder::with_clock(config.clone(), Box::new(StepClock::new(700))).unwrap();
        let mut dec = Decoder::new(config).unwrap();
        enc.pin_codecs(Some(codecs));
        for k in 0..2 * TIMED_EVERY {
            let frame = frame_of(&mut enc, &mut dec, &batch(k));
            // Timed batches (the first of every TIMED_EVERY) classify, and
            // their pages of several classes make a group each; the others
            // skip classifying and send one group.
            let tags = tags(&frame);
            let heads = tags.iter().filter(|&&t| t == 0x42).count();
            if k % TIMED_EVERY == 0 {
                assert!(heads > 1, "batch {k}: {heads} groups");
            } else {
                assert_eq!(heads, 1, "batch {k}");
            }
            // Untimed, raw pages (tag 0) only where the random class goes
            // raw: with it on zstd they join the one group.  (A timed batch
            // gives them a group of their own, which does not shrink, so
            // they go raw either way.)
            let raw = tags.iter().filter(|&&t| t == Method::Raw as u8).count();
            if k % TIMED_EVERY != 0 {
                assert_eq!(
                    raw > 0,
                    codecs != [Codec::Zstd; PageClass::COUNT],
                    "batch {k}: {tags:?}"
                );
                // Sparse pages (tag 3) only where their class takes it.
                let sparse = tags.iter().filter(|&&t| t == Method::Sparse as u8).count();
                assert_eq!(sparse > 0, codecs == sparse_own, "batch {k}: {tags:?}");
            }
        }
    }
}
