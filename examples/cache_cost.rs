//! What the page cache and dedup cost on a first round.
//!
//! Encodes every non-zero page of a raw image once, in address order and
//! batches of 128, as multifd's first round hands them out (its zero pages
//! never reach the method), with the fixed zstd-1 tier (`mecom bench`'s
//! `ratio`): without a page cache, with the default 64 MiB one, and with
//! the cache and dedup.  A first round has nothing to send a delta against,
//! so what the cache adds is pure cost: a lookup per page, the copy of each
//! page into the cache until it is full, and (dedup) a hash per page while
//! the index is awake.  Prints wall ns per page of each variant and checks
//! that the cache made frames of the same size (no delta) and dedup none
//! larger.
//! Under callgrind, `--toggle-collect='*cache_cost::pass'` counts the
//! instructions of the three passes (`--dump-after='*cache_cost::pass'`
//! gives one count each).
//!
//! Usage: `cargo run --release --example cache_cost -- IMAGE.raw`

use mecom::{Config, Encoder, PageCache, Placement};
use std::sync::Arc;
use std::time::Instant;

const BATCH: usize = 128;
const CACHE_BYTES: u64 = 64 << 20;

/// One first round of `pages` (non-zero, at `offsets`) through `enc`;
/// returns the frame bytes.
#[inline(never)]
fn pass(enc: &mut Encoder, pages: &[&[u8]], offsets: &[u64], out: &mut [u8]) -> usize {
    let mut bytes = 0;
    for (batch, offs) in pages.chunks(BATCH).zip(offsets.chunks(BATCH)) {
        let placement = Placement {
            block: b"pc.ram",
            offsets: offs,
            zero_offsets: &[],
        };
        bytes += enc.encode_placed(batch, &placement, out).expect("encode");
    }
    bytes
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: cache_cost IMAGE.raw");
    let data = std::fs::read(path).expect("read image");
    let ps = 4096;
    let (pages, offsets): (Vec<&[u8]>, Vec<u64>) = data
        .chunks_exact(ps)
        .enumerate()
        .filter(|(_, p)| p.iter().any(|&b| b != 0))
        .map(|(i, p)| (p, (i * ps) as u64))
        .unzip();
    let config = Config {
        mode: mecom::Mode::Fixed,
        zstd_level: 1,
        zstd_group_pages: 0,
        ..Config::default()
    };
    let mut sizes = Vec::new();
    for variant in ["no cache", "cache", "cache + dedup"] {
        let mut enc = Encoder::new(config.clone()).expect("encoder");
        if variant != "no cache" {
            let cache = PageCache::new(ps as u32, CACHE_BYTES).expect("cache");
            enc.set_cache(Some(Arc::new(cache))).expect("set_cache");
        }
        if variant == "cache + dedup" {
            enc.set_dedup(true).expect("set_dedup");
        }
        let mut out = vec![0u8; enc.max_frame_len(BATCH)];
        let start = Instant::now();
        let bytes = pass(&mut enc, &pages, &offsets, &mut out);
        let ns = start.elapsed().as_nanos() as f64 / pages.len() as f64;
        println!(
            "{variant:>14}: {} pages, {bytes} bytes, {ns:.0} ns/page",
            pages.len()
        );
        sizes.push(bytes);
    }
    // A first round has no deltas; dedup may find pages equal to one sent
    // before.
    assert_eq!(sizes[0], sizes[1], "a first round made a delta");
    assert!(sizes[2] <= sizes[1], "dedup made frames larger: {sizes:?}");
}
