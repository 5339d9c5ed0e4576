//! Is WKdm worth keeping for a class, or is LZ as small and as fast there?
//!
//! For the non-zero pages of each image, classified as the encoder does
//! (`classify::profile`, the default thresholds), this encodes every page
//! of the sparse, similar and generic classes with WKdm, LZ4 and LZO1X-1,
//! each page on its own, decodes it back and checks it.  It prints, per
//! image, class and codec, the bytes over the pages' bytes (a page that
//! does not shrink by 1/32 counts a whole page, as the encoder then sends
//! it raw)
//! and the nanoseconds per page to encode and to decode (the best of
//! `REPEAT` passes: the machine is shared, the minimum is the least
//! disturbed).
//!
//! With `--count CLASS CODEC IMAGE` it runs only that codec's encode and
//! decode of that class's pages, once, inside the functions
//! `measured_encode` and `measured_decode`, for callgrind:
//!
//! ```text
//! cargo run --release --example class_codecs -- IMAGE.raw...
//! valgrind --tool=callgrind --toggle-collect='*class_codecs::measured_encode*' \
//!     --toggle-collect='*class_codecs::measured_decode*' \
//!     target/release/examples/class_codecs --count similar wkdm IMAGE.raw
//! ```
//!
//! (`docs/DESIGN.md` §5 has the results.)

use mecom::classify::{profile, PageClass};
use mecom::codecs::{lz4_decode, lz4_encode, lz4_max_len, lzo_decode, lzo_encode, wkdm};
use mecom::policy::Policy;
use mecom::Config;
use std::hint::black_box;
use std::time::Instant;

const PS: usize = 4096;
const REPEAT: usize = 5;

#[derive(Clone, Copy)]
enum Codec {
    Wkdm,
    Lz4,
    Lzo,
}

impl Codec {
    const ALL: [Codec; 3] = [Codec::Wkdm, Codec::Lz4, Codec::Lzo];

    fn name(self) -> &'static str {
        match self {
            Codec::Wkdm => "wkdm",
            Codec::Lz4 => "lz4",
            Codec::Lzo => "lzo",
        }
    }

    /// The encoded length, or `None` when the page does not fit `limit`.
    fn encode(self, page: &[u8], out: &mut [u8], limit: usize) -> Option<usize> {
        match self {
            Codec::Wkdm => wkdm::encode(page, out, limit),
            Codec::Lz4 => lz4_encode(page, out, limit),
            Codec::Lzo => lzo_encode(page, out, limit),
        }
    }

    fn decode(self, src: &[u8], page: &mut [u8]) -> bool {
        match self {
            Codec::Wkdm => wkdm::decode(src, page).is_ok(),
            Codec::Lz4 => lz4_decode(src, page).is_ok(),
            Codec::Lzo => lzo_decode(src, page).is_ok(),
        }
    }
}

fn class_name(class: PageClass) -> &'static str {
    match class {
        PageClass::Fill => "fill",
        PageClass::Sparse => "sparse",
        PageClass::Similar => "similar",
        PageClass::Generic => "generic",
        PageClass::Random => "random",
    }
}

/// Encodes every page into its own slot of `out` (`slot()` bytes); `lens`
/// gets each encoded length (`None`: the page goes raw).
#[inline(never)]
fn measured_encode(codec: Codec, pages: &[&[u8]], out: &mut [u8], lens: &mut [Option<usize>]) {
    // The encoder keeps a page only if it saves 1/32 of it.
    let limit = PS - PS / 32;
    for ((p, o), len) in pages.iter().zip(out.chunks_exact_mut(slot())).zip(lens) {
        *len = codec.encode(black_box(p), o, limit);
    }
}

/// Decodes every encoded page.
#[inline(never)]
fn measured_decode(codec: Codec, out: &[u8], lens: &[Option<usize>], pages: &mut [u8]) {
    for ((o, len), page) in out
        .chunks_exact(slot())
        .zip(lens)
        .zip(pages.chunks_exact_mut(PS))
    {
        if let Some(len) = len {
            assert!(
                codec.decode(black_box(&o[..*len]), page),
                "{} decode",
                codec.name()
            );
        }
    }
}

/// Room for any codec's output of one page (LZ4 wants its worst case).
fn slot() -> usize {
    lz4_max_len(PS).max(wkdm::max_encoded_len(PS)).max(PS)
}

/// Encodes and decodes every page once; checks the round trip.
fn run(codec: Codec, pages: &[&[u8]]) -> (Vec<Option<usize>>, u128, u128) {
    let mut out = vec![0u8; pages.len() * slot()];
    let mut back = vec![0u8; pages.len() * PS];
    let mut lens = vec![None; pages.len()];
    let t = Instant::now();
    measured_encode(codec, pages, &mut out, &mut lens);
    let enc = t.elapsed().as_nanos();
    let t = Instant::now();
    measured_decode(codec, &out, &lens, &mut back);
    let dec = t.elapsed().as_nanos();
    for ((p, b), len) in pages.iter().zip(back.chunks_exact(PS)).zip(&lens) {
        assert!(len.is_none() || *p == b, "{} round trip", codec.name());
    }
    (lens, enc, dec)
}

fn classify(data: &[u8]) -> Vec<(PageClass, &[u8])> {
    // The encoder's own thresholds, as its plans carry them.
    let thresholds = Policy::new(&Config::default()).plan().thresholds;
    data.chunks_exact(PS)
        .filter(|p| p.iter().any(|&b| b != 0))
        .map(|p| (thresholds.class(&profile(p), PS), p))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--count") {
        let [_, class, codec, path] = &args[..] else {
            panic!("usage: --count CLASS CODEC IMAGE");
        };
        let codec = *Codec::ALL
            .iter()
            .find(|c| c.name() == codec)
            .expect("a codec: wkdm, lz4 or lzo");
        let data = std::fs::read(path).expect("read image");
        let pages: Vec<&[u8]> = classify(&data)
            .into_iter()
            .filter(|(c, _)| class_name(*c) == class)
            .map(|(_, p)| p)
            .collect();
        let (lens, _, _) = run(codec, &pages);
        println!(
            "{} pages, {} encoded",
            pages.len(),
            lens.iter().flatten().count()
        );
        return;
    }
    println!(
        "| image | class | pages | codec | bytes / page bytes | encode ns/page | decode ns/page |"
    );
    println!("|---|---|---:|---|---:|---:|---:|");
    for path in &args {
        let data = std::fs::read(path).expect("read image");
        let classified = classify(&data);
        let name = path.rsplit('/').next().unwrap_or(path);
        for class in [PageClass::Sparse, PageClass::Similar, PageClass::Generic] {
            let pages: Vec<&[u8]> = classified
                .iter()
                .filter(|(c, _)| *c == class)
                .map(|&(_, p)| p)
                .collect();
            if pages.is_empty() {
                continue;
            }
            for codec in Codec::ALL {
                let (mut enc_ns, mut dec_ns) = (u128::MAX, u128::MAX);
                let mut lens = Vec::new();
                for _ in 0..REPEAT {
                    let (l, enc, dec) = run(codec, &pages);
                    (lens, enc_ns, dec_ns) = (l, enc_ns.min(enc), dec_ns.min(dec));
                }
                let bytes: usize = lens.iter().map(|l| l.unwrap_or(PS)).sum();
                let n = pages.len();
                println!(
                    "| {name} | {} | {n} | {} | {:.3} | {} | {} |",
                    class_name(class),
                    codec.name(),
                    bytes as f64 / (n * PS) as f64,
                    enc_ns / n as u128,
                    dec_ns / n as u128
                );
            }
        }
    }
}
