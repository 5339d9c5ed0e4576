//! What the all-raw path costs against its floor.
//!
//! Encodes `WARM + MEASURED` batches of 128 non-zero pages of a raw image
//! (cycling through it) with `Config::default()`: the adaptive encoder,
//! told no link, probes and settles on sending every page raw, except its
//! exploring and probe batches.  Then runs the floor over the same
//! measured batches: a copy of each page into a frame-sized buffer and one
//! xxh3-64 over it, which is what a raw page costs at the least.  Prints,
//! per page, the time of both, the share of pages that went raw, the probe
//! batches, and how much of the encode time went to batches that took over
//! twice the median batch.  Under callgrind, `--toggle-collect='*raw_path::measured_encode'`
//! and `'*raw_path::floor'` count the instructions of the two.
//!
//! `VARIANT` chooses the encoder: `adaptive` (the default, as above);
//! `pinned`, every class pinned raw, so no batch explores or probes: what
//! a raw batch itself costs over the floor (timing, counters, header);
//! `placed`, the adaptive encoder as QEMU drives it on a 10 Gbit/s link
//! (`max-bandwidth`, 2 channels), with the default 64 MiB page cache,
//! dedup on, and each batch bound to its placement (the pages' offsets in
//! the image), so a raw batch also hashes its placement and drops its
//! pages from the cache (on a compressible image the model may compress:
//! use randwrite).
//!
//! Usage: `cargo run --release --example raw_path -- IMAGE.raw [WARM] [MEASURED] [VARIANT]`
//! (defaults 64, 256 and `adaptive`).

use mecom::classify::PageClass;
use mecom::policy::Codec;
use mecom::{Config, Encoder, LinkStats, Method, PageCache, Placement};
use std::sync::Arc;
use std::time::Instant;

const BATCH: usize = 128;

/// A measured encoder batch (bound to `offsets` when given).
#[inline(never)]
fn measured_encode(
    enc: &mut Encoder,
    batch: &[&[u8]],
    offsets: Option<&[u64]>,
    out: &mut [u8],
) -> usize {
    encode(enc, batch, offsets, out)
}

fn encode(enc: &mut Encoder, batch: &[&[u8]], offsets: Option<&[u64]>, out: &mut [u8]) -> usize {
    match offsets {
        Some(offsets) => {
            let placement = Placement {
                block: b"pc.ram",
                offsets,
                zero_offsets: &[],
            };
            enc.encode_placed(batch, &placement, out)
        }
        None => enc.encode(batch, out),
    }
    .expect("encode")
}

/// The floor: every page copied once, the copies hashed once.
#[inline(never)]
fn floor(batch: &[&[u8]], out: &mut [u8]) -> u64 {
    let ps = batch[0].len();
    for (slot, page) in out.chunks_exact_mut(ps).zip(batch) {
        slot.copy_from_slice(page);
    }
    twox_hash::XxHash3_64::oneshot(&out[..batch.len() * ps])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: raw_path IMAGE.raw [WARM] [MEASURED]");
    let warm: usize = args.get(2).map_or(64, |s| s.parse().expect("WARM"));
    let measured: usize = args.get(3).map_or(256, |s| s.parse().expect("MEASURED"));
    let variant = args.get(4).map_or("adaptive", String::as_str);
    let data = std::fs::read(path).expect("read image");
    let ps = 4096;
    let (pages, offsets): (Vec<&[u8]>, Vec<u64>) = data
        .chunks_exact(ps)
        .enumerate()
        .filter(|(_, p)| p.iter().any(|&b| b != 0))
        .map(|(i, p)| (p, (i * ps) as u64))
        .unzip();
    assert!(pages.len() >= BATCH, "fewer than {BATCH} non-zero pages");
    let mut enc = Encoder::new(Config::default()).expect("encoder");
    let placed = match variant {
        "adaptive" => false,
        "pinned" => {
            enc.pin_codecs(Some([Codec::Raw; PageClass::COUNT]));
            false
        }
        "placed" => {
            let cache = PageCache::new(ps as u32, 64 << 20).expect("cache");
            enc.set_cache(Some(Arc::new(cache))).expect("set_cache");
            enc.set_dedup(true).expect("set_dedup");
            enc.update_stats(LinkStats {
                timestamp_ns: 1,
                bandwidth: 1_250_000_000,
                channels: 2,
                ..LinkStats::default()
            });
            true
        }
        other => panic!("unknown variant {other}: adaptive, pinned or placed"),
    };
    let mut out = vec![0u8; enc.max_frame_len(BATCH)];
    let mut copy = vec![0u8; BATCH * ps];
    let start_at = |b: usize| (b * BATCH) % (pages.len() - BATCH + 1);
    let batch_at = |b: usize| &pages[start_at(b)..start_at(b) + BATCH];
    let offsets_at = |b: usize| placed.then(|| &offsets[start_at(b)..start_at(b) + BATCH]);
    for b in 0..warm {
        // Not through `measured_encode`, which callgrind counts.
        encode(&mut enc, batch_at(b), offsets_at(b), &mut out);
    }
    let raw = Method::Raw.counter_slot();
    let raw_before = enc.counters().method_pages[raw];
    let probes_before = enc.policy().probe_batches();
    let switches_before = enc.policy().arm_switches();
    let (mut enc_ns, mut floor_ns, mut sink) = (0u128, 0u128, 0u64);
    let mut batch_ns = Vec::with_capacity(measured);
    // Two passes over the same batches, so that each reads its pages as
    // cold as the other (one after the other on the same batch, the
    // second would find the pages in the cache).
    for b in warm..warm + measured {
        let batch = batch_at(b);
        let t = Instant::now();
        sink ^= measured_encode(&mut enc, batch, offsets_at(b), &mut out) as u64;
        let ns = t.elapsed().as_nanos();
        enc_ns += ns;
        batch_ns.push(ns);
    }
    for b in warm..warm + measured {
        let t = Instant::now();
        sink ^= floor(batch_at(b), &mut copy);
        floor_ns += t.elapsed().as_nanos();
    }
    let n = (measured * BATCH) as f64;
    batch_ns.sort_unstable();
    let median = batch_ns[measured / 2];
    let slow: Vec<u128> = batch_ns
        .iter()
        .copied()
        .filter(|&t| t > 2 * median)
        .collect();
    println!(
        "encoder batches: median {median} ns; {} batches over twice the median take {:.1} % of the encode time",
        slow.len(),
        100.0 * slow.iter().sum::<u128>() as f64 / enc_ns as f64,
    );
    let raw_pages = enc.counters().method_pages[raw] - raw_before;
    println!(
        "batches {measured} (probe batches {}, arm switches {}, raw arm at the end: {}) pages {n} raw {:.1} % \
         encode {:.1} ns/page floor {:.1} ns/page overhead {:.1} ns/page (checksum xor {sink:x})",
        enc.policy().probe_batches() - probes_before,
        enc.policy().arm_switches() - switches_before,
        enc.policy().raw_arm(),
        100.0 * raw_pages as f64 / n,
        enc_ns as f64 / n,
        floor_ns as f64 / n,
        (enc_ns as f64 - floor_ns as f64) / n,
    );
}
