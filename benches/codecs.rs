//! Criterion benchmarks of mecom's page codecs, the batch encoder and
//! decoder, and the baseline codecs, on generated page sets (no files).
//!
//! Page sets, 128 pages of 4 KiB each (one frame):
//! - `sparse`: 95 % zero bytes, a few clusters of non-zero words;
//! - `similar`: small integers and kernel-style pointers (WKdm's target);
//! - `text`: English-like text with varied words;
//! - `random`: uniformly random bytes (nothing shrinks it);
//! - `mixed`: the above in turn, plus same-fill pages.
//!
//! Per set, every benchmark reports throughput in MB/s (1e6 bytes) of
//! uncompressed pages: page codecs (`enc/*`, `dec/*`: sparse, WKdm, LZ4 and LZO through
//! `mecom::codecs`, zstd level 1 per page), the whole batch through
//! `Encoder::encode` and `Decoder::decode_into` for the `fast` and `ratio`
//! settings (`cbc-enc/*`, `cbc-dec/*`), and the baselines `lz4_flex`,
//! `lzo1x` level 1 per page and zstd level 1 per batch (`base-enc/*`,
//! `base-dec/*`).  The `checksum` group times the frame checksum's xxh3-64
//! as the library computes it (`twox-hash`, vector unit picked at run time)
//! against `xxhash-rust` (SSE2 on the x86-64 baseline) over one frame's
//! pages, per page and in one pass.  A codec that gives up on a page (returns `None`) is
//! timed for the attempt; its decode benchmark covers only the pages it
//! encoded, and is skipped when there are none.
//!
//! Kept short (20 samples in 0.7 s after 0.2 s of warm-up) so `cargo bench`
//! takes a few minutes on two cores; pass criterion's own options (e.g.
//! `--measurement-time 5`) for longer runs.

use criterion::{Criterion, Throughput};
use mecom::codecs::{self, sparse, wkdm};
use mecom::{Config, Decoder, Encoder, LinkStats, LzCodec, Mode};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Page size of every set.
const PS: usize = 4096;
/// Pages per set (one frame).
const PAGES: usize = 128;

/// A small deterministic generator (xorshift64).
struct Rng(u64);

impl Rng {
    /// The next 64 random bits.
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A page with ~5 % non-zero bytes in a few clusters of words.
fn sparse_page(r: &mut Rng) -> Vec<u8> {
    let mut p = vec![0u8; PS];
    let mut budget = PS / 20;
    while budget >= 4 {
        let words = (1 + r.below(12) as usize).min(budget / 4);
        let at = r.below((PS / 4 - words) as u64) as usize * 4;
        for w in p[at..at + words * 4].chunks_exact_mut(4) {
            w.copy_from_slice(&(1 + r.below(1 << 20) as u32).to_le_bytes());
        }
        budget -= words * 4;
    }
    p
}

/// Small integers, zeros and 64-bit kernel pointers, as in heap pages.
fn similar_page(r: &mut Rng) -> Vec<u8> {
    let mut p = Vec::with_capacity(PS);
    let base = 0xffff_8880_0000_0000u64 + r.below(1 << 20) * 4096;
    while p.len() < PS {
        match r.below(4) {
            0 => p.extend_from_slice(&(r.below(300) as u32).to_le_bytes()),
            1 => p.extend_from_slice(&0u32.to_le_bytes()),
            _ => p.extend_from_slice(&(base + r.below(1 << 14) * 8).to_le_bytes()),
        }
    }
    p.truncate(PS);
    p
}

/// English-like text.
fn text_page(r: &mut Rng) -> Vec<u8> {
    /// The vocabulary.
    const WORDS: &[&str] = &[
        "the",
        "page",
        "memory",
        "guest",
        "migration",
        "of",
        "and",
        "to",
        "compress",
        "a",
        "dirty",
        "bandwidth",
        "channel",
        "kernel",
        "buffer",
        "is",
        "in",
        "with",
        "zero",
        "similar",
        "word",
        "dictionary",
        "frame",
        "header",
        "for",
        "qemu",
        "multifd",
    ];
    let mut p = Vec::with_capacity(PS + 16);
    while p.len() < PS {
        p.extend_from_slice(WORDS[r.below(WORDS.len() as u64) as usize].as_bytes());
        p.push(if r.below(12) == 0 { b'\n' } else { b' ' });
    }
    p.truncate(PS);
    p
}

/// Uniformly random bytes.
fn random_page(r: &mut Rng) -> Vec<u8> {
    (0..PS / 8).flat_map(|_| r.next().to_le_bytes()).collect()
}

/// One 32-bit word repeated.
fn fill_page(r: &mut Rng) -> Vec<u8> {
    (r.next() as u32 | 1).to_le_bytes().repeat(PS / 4)
}

/// The page sets: (name, PAGES pages back to back).
fn sets() -> Vec<(&'static str, Vec<u8>)> {
    /// A page generator.
    type Gen = fn(&mut Rng) -> Vec<u8>;
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut make = |g: Gen| -> Vec<u8> { (0..PAGES).flat_map(|_| g(&mut r)).collect() };
    let sets = vec![
        ("sparse", make(sparse_page)),
        ("similar", make(similar_page)),
        ("text", make(text_page)),
        ("random", make(random_page)),
    ];
    let mixed_gens: [Gen; 5] = [sparse_page, similar_page, text_page, random_page, fill_page];
    let mixed = (0..PAGES)
        .flat_map(|i| mixed_gens[i % mixed_gens.len()](&mut r))
        .collect();
    let mut sets = sets;
    sets.push(("mixed", mixed));
    sets
}

/// A page encoder under `enc/`: page, output, limit -> length.
type PageEnc = fn(&[u8], &mut [u8], usize) -> Option<usize>;
/// The matching decoder.
type PageDec = fn(&[u8], &mut [u8]) -> Result<(), &'static str>;

/// zstd level 1 over one page (a reused context per thread).
fn zstd_page_enc(page: &[u8], out: &mut [u8], limit: usize) -> Option<usize> {
    thread_local! {
        /// The compression context.
        static CCTX: std::cell::RefCell<zstd::bulk::Compressor<'static>> =
            std::cell::RefCell::new(zstd::bulk::Compressor::new(1).expect("zstd context"));
    }
    let n = CCTX.with(|c| c.borrow_mut().compress_to_buffer(page, &mut *out).ok())?;
    (n <= limit).then_some(n)
}

/// Decodes one page compressed by [`zstd_page_enc`].
fn zstd_page_dec(src: &[u8], page: &mut [u8]) -> Result<(), &'static str> {
    thread_local! {
        /// The decompression context.
        static DCTX: std::cell::RefCell<zstd::bulk::Decompressor<'static>> =
            std::cell::RefCell::new(zstd::bulk::Decompressor::new().expect("zstd context"));
    }
    match DCTX.with(|d| d.borrow_mut().decompress_to_buffer(src, page)) {
        Ok(n) if n == page.len() => Ok(()),
        _ => Err("zstd"),
    }
}

/// The page codecs: name, encode, decode.
const PAGE_CODECS: &[(&str, PageEnc, PageDec)] = &[
    ("sparse", sparse::encode, sparse::decode),
    ("wkdm", wkdm::encode, wkdm::decode),
    ("lz4", codecs::lz4_encode, codecs::lz4_decode),
    ("lzo", codecs::lzo_encode, codecs::lzo_decode),
    ("zstd1-page", zstd_page_enc, zstd_page_dec),
];

/// Output room for any page codec above.
fn page_out_len() -> usize {
    [
        PS,
        sparse::max_encoded_len(PS),
        wkdm::max_encoded_len(PS),
        codecs::lz4_max_len(PS),
        zstd::zstd_safe::compress_bound(PS),
    ]
    .into_iter()
    .max()
    .unwrap_or(2 * PS)
}

/// `enc/*` and `dec/*`: the page codecs, page by page over `set`.
fn bench_page_codecs(c: &mut Criterion, name: &str, set: &[u8]) {
    let mut g = c.benchmark_group(name);
    let out_len = page_out_len();
    let mut out = vec![0u8; out_len];
    // Same "must save 1/32" limit as the encoder.
    let limit = PS - PS / 32;
    g.throughput(Throughput::BytesDecimal(set.len() as u64));
    for &(codec, enc, _) in PAGE_CODECS {
        g.bench_function(format!("enc/{codec}"), |b| {
            b.iter(|| {
                let mut total = 0usize;
                for page in set.chunks_exact(PS) {
                    total += enc(black_box(page), &mut out, limit).unwrap_or(0);
                }
                total
            })
        });
    }
    for &(codec, enc, dec) in PAGE_CODECS {
        let encoded: Vec<Vec<u8>> = set
            .chunks_exact(PS)
            .filter_map(|page| enc(page, &mut out, limit).map(|n| out[..n].to_vec()))
            .collect();
        if encoded.is_empty() {
            continue;
        }
        let mut page = vec![0u8; PS];
        g.throughput(Throughput::BytesDecimal((encoded.len() * PS) as u64));
        g.bench_function(format!("dec/{codec}"), |b| {
            b.iter(|| {
                for src in &encoded {
                    dec(black_box(src), &mut page).expect("decodes");
                }
            })
        });
    }
    g.finish();
}

/// The CBC settings measured here, with the link bandwidth (bytes/s, 0 =
/// none) their encoders are told: MECOM's fixed routing with each fast
/// codec and with the zstd tier, and the controller under each objective.
/// `adaptive-1g` and `adaptive-10g` show the cost model's choices for a
/// known link.  Plain `adaptive` gets no link, so it probes: back to back
/// in a benchmark loop raw batches are the fastest, and it settles on the
/// all-raw path (a copy and a hash), which is what it measures.
fn cbc_settings() -> [(&'static str, Config, u64); 8] {
    let with = |mode, zstd_level, lz| Config {
        mode,
        zstd_level,
        lz,
        max_pages: PAGES,
        ..Config::default()
    };
    [
        ("fast", with(Mode::Fixed, 0, LzCodec::Lz4), 0),
        ("fast-lzo", with(Mode::Fixed, 0, LzCodec::Lzo), 0),
        ("ratio", with(Mode::Fixed, 1, LzCodec::Lz4), 0),
        ("adaptive", with(Mode::Adaptive, 1, LzCodec::Lz4), 0),
        (
            "adaptive-1g",
            with(Mode::Adaptive, 1, LzCodec::Lz4),
            125_000_000,
        ),
        (
            "adaptive-10g",
            with(Mode::Adaptive, 1, LzCodec::Lz4),
            1_250_000_000,
        ),
        ("bytes", with(Mode::Bytes, 1, LzCodec::Lz4), 0),
        ("cpu", with(Mode::Cpu, 1, LzCodec::Lz4), 0),
    ]
}

/// An encoder for `config`, told a link of `bandwidth` bytes/s (if any)
/// shared by two channels.
fn encoder(config: &Config, bandwidth: u64) -> Encoder {
    let mut enc = Encoder::new(config.clone()).expect("encoder");
    if bandwidth > 0 {
        enc.update_stats(LinkStats {
            bandwidth,
            channels: 2,
            ..LinkStats::default()
        });
    }
    enc
}

/// `cbc-enc/*` and `cbc-dec/*`: the whole set as one frame.
fn bench_cbc(c: &mut Criterion, name: &str, set: &[u8]) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::BytesDecimal(set.len() as u64));
    let pages: Vec<&[u8]> = set.chunks_exact(PS).collect();
    for (setting, config, bandwidth) in cbc_settings() {
        let mut enc = encoder(&config, bandwidth);
        let mut frame = vec![0u8; enc.max_frame_len(PAGES)];
        g.bench_function(format!("cbc-enc/{setting}"), |b| {
            b.iter(|| enc.encode(black_box(&pages), &mut frame).expect("encodes"))
        });

        // A decoder only takes frames in sequence: encode a run of frames
        // and time each fresh decoder over all but its first (warm-up) frame.
        /// Frames per decoder.
        const RUN: usize = 32;
        let mut enc = encoder(&config, bandwidth);
        let frames: Vec<Vec<u8>> = (0..RUN)
            .map(|_| {
                let n = enc.encode(&pages, &mut frame).expect("encodes");
                frame[..n].to_vec()
            })
            .collect();
        // Every frame must decode to the set, whether or not a filter
        // skips the timed decode below.
        let mut out = vec![0u8; set.len()];
        let mut dec = Decoder::new(config.clone()).expect("decoder");
        for f in &frames {
            out.fill(0);
            dec.decode_into(f, &mut out).expect("decodes");
            assert_eq!(out, set, "{setting} must round-trip");
        }
        g.bench_function(format!("cbc-dec/{setting}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let mut dec = Decoder::new(config.clone()).expect("decoder");
                    dec.decode_into(&frames[0], &mut out).expect("decodes");
                    let n = left.min(RUN - 1);
                    let t = Instant::now();
                    for f in &frames[1..=n] {
                        dec.decode_into(black_box(f), &mut out).expect("decodes");
                    }
                    total += t.elapsed();
                    left -= n;
                }
                total
            })
        });
    }
    g.finish();
}

/// `base-enc/*` and `base-dec/*`: the baseline codecs.
fn bench_baselines(c: &mut Criterion, name: &str, set: &[u8]) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::BytesDecimal(set.len() as u64));
    let max = lz4_flex::block::get_maximum_output_size(PS);
    let mut comp = vec![0u8; PAGES * max];
    let mut out = vec![0u8; set.len()];

    g.bench_function("base-enc/lz4_flex", |b| {
        b.iter(|| {
            for (page, dst) in set.chunks_exact(PS).zip(comp.chunks_exact_mut(max)) {
                lz4_flex::block::compress_into(black_box(page), dst).expect("fits");
            }
        })
    });
    let lz4: Vec<Vec<u8>> = set
        .chunks_exact(PS)
        .map(lz4_flex::block::compress)
        .collect();
    g.bench_function("base-dec/lz4_flex", |b| {
        b.iter(|| {
            for (src, dst) in lz4.iter().zip(out.chunks_exact_mut(PS)) {
                lz4_flex::block::decompress_into(black_box(src), dst).expect("decodes");
            }
        })
    });

    g.bench_function("base-enc/lzo1x-1", |b| {
        b.iter(|| {
            set.chunks_exact(PS)
                .map(|page| lzo1x::compress(black_box(page), lzo1x::CompressLevel::new(1)).len())
                .sum::<usize>()
        })
    });
    let lzo: Vec<Vec<u8>> = set
        .chunks_exact(PS)
        .map(|page| lzo1x::compress(page, lzo1x::CompressLevel::new(1)))
        .collect();
    g.bench_function("base-dec/lzo1x-1", |b| {
        b.iter(|| {
            for (src, dst) in lzo.iter().zip(out.chunks_exact_mut(PS)) {
                lzo1x::decompress(black_box(src), dst).expect("decodes");
            }
        })
    });

    let mut cctx = zstd::bulk::Compressor::new(1).expect("zstd context");
    let mut zbuf = vec![0u8; zstd::zstd_safe::compress_bound(set.len())];
    g.bench_function("base-enc/zstd1-batch", |b| {
        b.iter(|| {
            cctx.compress_to_buffer(black_box(set), &mut zbuf)
                .expect("fits")
        })
    });
    let n = cctx.compress_to_buffer(set, &mut zbuf).expect("fits");
    let mut dctx = zstd::bulk::Decompressor::new().expect("zstd context");
    // Checked untimed, so a filter that skips the decode cannot fail it.
    out.fill(0);
    dctx.decompress_to_buffer(&zbuf[..n], &mut out)
        .expect("decodes");
    assert_eq!(out, set, "zstd must round-trip");
    g.bench_function("base-dec/zstd1-batch", |b| {
        b.iter(|| {
            dctx.decompress_to_buffer(black_box(&zbuf[..n]), &mut out)
                .expect("decodes")
        })
    });
    g.finish();
}

/// The checksum's xxh3-64, the library's implementation against
/// `xxhash-rust`, per page (as delta bases and dedup hashes) and over the
/// whole frame (as the frame checksum).
fn bench_checksum(c: &mut Criterion, set: &[u8]) {
    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Bytes(set.len() as u64));
    g.bench_function("twox-hash/page", |b| {
        b.iter(|| {
            set.chunks_exact(PS).fold(0, |acc, p| {
                acc ^ twox_hash::XxHash3_64::oneshot(black_box(p))
            })
        })
    });
    g.bench_function("xxhash-rust/page", |b| {
        b.iter(|| {
            set.chunks_exact(PS)
                .fold(0, |acc, p| acc ^ xxhash_rust::xxh3::xxh3_64(black_box(p)))
        })
    });
    g.bench_function("twox-hash/frame", |b| {
        b.iter(|| twox_hash::XxHash3_64::oneshot_with_seed(7, black_box(set)))
    });
    g.bench_function("xxhash-rust/frame", |b| {
        b.iter(|| xxhash_rust::xxh3::xxh3_64_with_seed(black_box(set), 7))
    });
    g.finish();
}

/// Every benchmark on every page set.
fn benches(c: &mut Criterion) {
    if let Some((_, set)) = sets().into_iter().find(|(name, _)| *name == "random") {
        bench_checksum(c, &set);
    }
    for (name, set) in sets() {
        bench_page_codecs(c, name, &set);
        bench_cbc(c, name, &set);
        bench_baselines(c, name, &set);
    }
}

/// Runs every benchmark (criterion's `criterion_main!`, written out so the
/// entry point carries documentation).
fn main() {
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(700))
        .configure_from_args();
    benches(&mut c);
    c.final_summary();
}
