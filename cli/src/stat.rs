//! `mecom stat`: MECOM's Table I (page characteristics) for each image, plus
//! same-fill and duplicate pages and the cost of the sparse encoding.
//!
//! Memory: one read batch, plus, unless `--no-dup`, a hash set of the xxh3-64
//! of every distinct non-zero page (8 bytes of key in a table kept at most
//! 7/8 full, with power-of-two growth: 10 to 20 bytes per distinct page,
//! e.g. at most ~330 MiB for a 64 GiB guest of 4 KiB pages).

use crate::image::{is_zero_page, Image, Progress};
use crate::lib_api::{count_zero_bytes, fill_word, full_similarity, sparse};
use crate::table::{Align, Table};
use serde::Serialize;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

/// Pages read per batch.
const READ_PAGES: usize = 128;

/// The keys are already xxh3 hashes: use them as they are.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Statistics of one image.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stat {
    /// Image name.
    pub image: String,
    /// Page size.
    pub page_size: usize,
    /// Pages read.
    pub pages: u64,
    /// All-zero pages.
    pub zero: u64,
    /// Non-zero pages with < 25 %, 25..75 % and >= 75 % similar words.
    pub zones: [u64; 3],
    /// Non-zero pages with >= 90 % zero bytes.
    pub sparse: u64,
    /// Non-zero pages by share of zero bytes: 0-10 %, 10-20 %, ... 90-100 %.
    pub zero_deciles: [u64; 10],
    /// Non-zero pages that are one 32-bit word repeated.
    pub fill: u64,
    /// Non-zero pages whose hash was seen before in the image (`None` when
    /// not counted).
    pub duplicate: Option<u64>,
    /// Distinct non-zero pages (`None` when not counted).
    pub distinct: Option<u64>,
    /// Non-zero 32-bit words in the sparse pages.
    pub sparse_words: u64,
    /// Bytes of the sparse pages as MECOM's pairs: a u16 count, then
    /// (u16 word offset, u32 value) per non-zero word.
    pub sparse_pairs_bytes: u64,
    /// Bytes of the sparse pages as `mecom::codecs::sparse` runs.
    pub sparse_runs_bytes: u64,
    /// Sparse pages on which pairs would be smaller than runs.
    pub pairs_smaller: u64,
    /// Seconds spent.
    pub seconds: f64,
}

/// Percentage of `part` in `whole` (0 when `whole` is 0).
pub fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

impl Stat {
    /// Non-zero pages.
    pub fn nonzero(&self) -> u64 {
        self.pages - self.zero
    }
}

/// A number printed with `D` digits after the point (`null` when not
/// finite: JSON has no NaN or infinity).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fixed<const D: usize>(pub f64);

impl<const D: usize> Serialize for Fixed<D> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !self.0.is_finite() {
            return s.serialize_none();
        }
        serde_json::value::RawValue::from_string(format!("{:.*}", D, self.0))
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

/// Counts and shares of the three similarity zones.
#[derive(Serialize)]
struct Zones<T> {
    #[serde(rename = "0-25")]
    low: T,
    #[serde(rename = "25-75")]
    mid: T,
    #[serde(rename = "75-100")]
    high: T,
}

/// The JSON object of one image's statistics (docs/CLI.md lists the fields).
#[derive(Serialize)]
pub struct Json<'a> {
    image: &'a str,
    page_size: usize,
    pages: u64,
    zero_pages: u64,
    zero_pct: Fixed<2>,
    nonzero_pages: u64,
    similarity_zones_pages: Zones<u64>,
    similarity_zones_pct_of_nonzero: Zones<Fixed<2>>,
    zero_byte_deciles_pages: [u64; 10],
    sparse_pages: u64,
    sparse_pct: Fixed<2>,
    fill_pages: u64,
    fill_pct: Fixed<2>,
    duplicate_pages: Option<u64>,
    duplicate_pct: Option<Fixed<2>>,
    distinct_nonzero_pages: Option<u64>,
    sparse_raw_bytes: u64,
    sparse_nonzero_words: u64,
    sparse_pairs_bytes: u64,
    sparse_runs_bytes: u64,
    sparse_pages_pairs_smaller: u64,
    seconds: Fixed<3>,
}

impl<'a> Json<'a> {
    /// The JSON view of `s`.
    pub fn new(s: &'a Stat) -> Json<'a> {
        let nz = s.nonzero();
        let share = |n| Fixed(pct(n, nz));
        Json {
            image: &s.image,
            page_size: s.page_size,
            pages: s.pages,
            zero_pages: s.zero,
            zero_pct: Fixed(pct(s.zero, s.pages)),
            nonzero_pages: nz,
            similarity_zones_pages: Zones {
                low: s.zones[0],
                mid: s.zones[1],
                high: s.zones[2],
            },
            similarity_zones_pct_of_nonzero: Zones {
                low: share(s.zones[0]),
                mid: share(s.zones[1]),
                high: share(s.zones[2]),
            },
            zero_byte_deciles_pages: s.zero_deciles,
            sparse_pages: s.sparse,
            sparse_pct: Fixed(pct(s.sparse, s.pages)),
            fill_pages: s.fill,
            fill_pct: Fixed(pct(s.fill, s.pages)),
            duplicate_pages: s.duplicate,
            duplicate_pct: s.duplicate.map(|d| Fixed(pct(d, s.pages))),
            distinct_nonzero_pages: s.distinct,
            sparse_raw_bytes: s.sparse * s.page_size as u64,
            sparse_nonzero_words: s.sparse_words,
            sparse_pairs_bytes: s.sparse_pairs_bytes,
            sparse_runs_bytes: s.sparse_runs_bytes,
            sparse_pages_pairs_smaller: s.pairs_smaller,
            seconds: Fixed(s.seconds),
        }
    }
}

/// Accumulates the statistics of one image, page by page.
pub struct Collector {
    stat: Stat,
    seen: Option<HashSet<u64, BuildHasherDefault<IdentityHasher>>>,
    scratch: Vec<u8>,
}

impl Collector {
    /// A collector for an image of `page_size` pages.
    pub fn new(image: &str, page_size: usize, dup: bool) -> Collector {
        Collector {
            stat: Stat {
                image: image.to_string(),
                page_size,
                duplicate: dup.then_some(0),
                ..Stat::default()
            },
            seen: dup.then(HashSet::default),
            scratch: vec![0; sparse::max_encoded_len(page_size)],
        }
    }

    /// Counts one page.
    pub fn page(&mut self, page: &[u8]) {
        let s = &mut self.stat;
        s.pages += 1;
        if is_zero_page(page) {
            s.zero += 1;
            return;
        }
        let zero_bytes = count_zero_bytes(page) as usize;
        s.zero_deciles[(zero_bytes * 10 / page.len()).min(9)] += 1;
        if fill_word(page).is_some() {
            s.fill += 1;
        }
        let (similar, total) = full_similarity(page);
        let (similar, total) = (u64::from(similar), u64::from(total));
        let zone = if similar * 4 < total {
            0
        } else if similar * 4 < total * 3 {
            1
        } else {
            2
        };
        s.zones[zone] += 1;
        if zero_bytes * 10 >= page.len() * 9 {
            s.sparse += 1;
            let words = page.chunks_exact(4).filter(|w| w != &[0, 0, 0, 0]).count() as u64;
            let pairs = 2 + 6 * words;
            let cap = self.scratch.len();
            let runs = sparse::encode(page, &mut self.scratch, cap).unwrap_or(page.len()) as u64;
            s.sparse_words += words;
            s.sparse_pairs_bytes += pairs;
            s.sparse_runs_bytes += runs;
            s.pairs_smaller += u64::from(pairs < runs);
        }
        if let (Some(seen), Some(dup)) = (self.seen.as_mut(), s.duplicate.as_mut()) {
            if !seen.insert(xxhash_rust::xxh3::xxh3_64(page)) {
                *dup += 1;
            }
        }
    }

    /// The statistics so far.
    pub fn finish(mut self, seconds: f64) -> Stat {
        self.stat.distinct = self.seen.map(|s| s.len() as u64);
        self.stat.seconds = seconds;
        self.stat
    }
}

/// Reads `image` to the end and returns its statistics.
pub fn stat_image(
    image: &mut Image,
    page_size: usize,
    dup: bool,
    quiet: bool,
) -> Result<Stat, String> {
    let start = Instant::now();
    let mut progress = Progress::new(quiet, format!("stat {}", image.name()));
    let mut collector = Collector::new(image.name(), page_size, dup);
    let mut buf = vec![0u8; READ_PAGES * page_size];
    loop {
        let n = image.read_pages(&mut buf)?;
        if n == 0 {
            break;
        }
        for page in buf[..n * page_size].chunks_exact(page_size) {
            collector.page(page);
        }
        progress.update(image);
    }
    progress.finish(image);
    Ok(collector.finish(start.elapsed().as_secs_f64()))
}

/// The Markdown report of several images.
pub fn render(stats: &[Stat]) -> String {
    let mut out = String::new();
    let ps = stats.first().map_or(4096, |s| s.page_size);
    out.push_str(&format!(
        "## mecom stat (page size {ps} B)\n\n\
         zero: all-zero pages, % of all pages. sim: share of words similar to a 16-entry \
         dictionary (zero, exact or same upper 22 bits), zones in % of non-zero pages. \
         sparse (>= 90 % zero bytes, not all zero), fill (one 32-bit word repeated, not zero), \
         dup (non-zero page identical to an earlier one, by xxh3-64): % of all pages.\n\n"
    ));
    let mut t = Table::new(&[
        ("image", Align::Left),
        ("pages", Align::Right),
        ("zero %", Align::Right),
        ("sim 0-25 %", Align::Right),
        ("sim 25-75 %", Align::Right),
        ("sim 75-100 %", Align::Right),
        ("sparse %", Align::Right),
        ("fill %", Align::Right),
        ("dup %", Align::Right),
    ]);
    for s in stats {
        let nz = s.nonzero();
        t.row(vec![
            s.image.clone(),
            s.pages.to_string(),
            format!("{:.1}", pct(s.zero, s.pages)),
            format!("{:.1}", pct(s.zones[0], nz)),
            format!("{:.1}", pct(s.zones[1], nz)),
            format!("{:.1}", pct(s.zones[2], nz)),
            format!("{:.1}", pct(s.sparse, s.pages)),
            format!("{:.1}", pct(s.fill, s.pages)),
            s.duplicate
                .map_or("-".into(), |d| format!("{:.1}", pct(d, s.pages))),
        ]);
    }
    out.push_str(&t.render());
    out.push_str(
        "\nSparse pages: bytes as MECOM's (u16 offset, u32 value) pairs with a u16 count, \
         against mecom's runs (`codecs::sparse`); ratio = encoded / raw page bytes.\n\n",
    );
    let mut t = Table::new(&[
        ("image", Align::Left),
        ("sparse pages", Align::Right),
        ("non-zero words", Align::Right),
        ("pairs bytes", Align::Right),
        ("runs bytes", Align::Right),
        ("pairs ratio", Align::Right),
        ("runs ratio", Align::Right),
        ("runs / pairs", Align::Right),
        ("pages where pairs win", Align::Right),
    ]);
    for s in stats {
        let raw = (s.sparse * s.page_size as u64).max(1) as f64;
        t.row(vec![
            s.image.clone(),
            s.sparse.to_string(),
            s.sparse_words.to_string(),
            s.sparse_pairs_bytes.to_string(),
            s.sparse_runs_bytes.to_string(),
            format!("{:.4}", s.sparse_pairs_bytes as f64 / raw),
            format!("{:.4}", s.sparse_runs_bytes as f64 / raw),
            if s.sparse_pairs_bytes == 0 {
                "-".into()
            } else {
                format!(
                    "{:.3}",
                    s.sparse_runs_bytes as f64 / s.sparse_pairs_bytes as f64
                )
            },
            s.pairs_smaller.to_string(),
        ]);
    }
    out.push_str(&t.render());
    out.push_str(
        "\nNon-zero pages by share of zero bytes (% of non-zero pages; the encoder's \
         `sparse_threshold` picks where the sparse codec starts).\n\n",
    );
    let heads: Vec<String> = (0..10)
        .map(|d| format!("{}-{} %", d * 10, d * 10 + 10))
        .collect();
    let mut cols = vec![("image", Align::Left)];
    cols.extend(heads.iter().map(|h| (h.as_str(), Align::Right)));
    let mut t = Table::new(&cols);
    for s in stats {
        let mut row = vec![s.image.clone()];
        row.extend(
            s.zero_deciles
                .iter()
                .map(|&n| format!("{:.1}", pct(n, s.nonzero()))),
        );
        t.row(row);
    }
    out.push_str(&t.render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A generated image: 10 zero, 5 fill, 4 sparse, 3 copies of a text
    /// page, 2 random pages, 1 page of small integers.
    fn image() -> Vec<u8> {
        let mut pages: Vec<Vec<u8>> = Vec::new();
        pages.extend((0..10).map(|_| vec![0u8; 4096]));
        pages.extend((0..5).map(|_| 0xdead_beefu32.to_le_bytes().repeat(1024)));
        for k in 0..4usize {
            let mut p = vec![0u8; 4096];
            p[k * 64..k * 64 + 40].fill(0x5a);
            p[4000] = k as u8 + 1;
            pages.push(p);
        }
        let text: Vec<u8> = b"MECOM classifies pages by their characteristics. "
            .iter()
            .copied()
            .cycle()
            .take(4096)
            .collect();
        pages.extend((0..3).map(|_| text.clone()));
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2 {
            pages.push(
                (0..512)
                    .flat_map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x.to_le_bytes()
                    })
                    .collect(),
            );
        }
        pages.push(
            (0..1024u32)
                .flat_map(|i| (i % 100 + 1).to_le_bytes())
                .collect(),
        );
        pages.concat()
    }

    /// Every count of a generated in-memory image.
    #[test]
    fn stat_counts_a_generated_image() {
        let mut img = Image::from_reader("gen".into(), Box::new(Cursor::new(image())), 4096, None);
        let s = stat_image(&mut img, 4096, true, true).unwrap();
        assert_eq!(s.pages, 25);
        assert_eq!(s.zero, 10);
        assert_eq!(s.fill, 5);
        assert_eq!(s.sparse, 4);
        // 4 of the 5 fill pages and 2 of the 3 text pages repeat earlier ones.
        assert_eq!(s.duplicate, Some(6));
        assert_eq!(s.distinct, Some(9));
        // Fill, sparse and small-integer pages are highly similar, random
        // pages are not.
        // 5 fill + 4 sparse + 1 small-integer page.
        assert!(s.zones[2] >= 10, "{s:?}");
        assert!(s.zones[0] >= 2, "{s:?}");
        assert_eq!(s.zones.iter().sum::<u64>(), 15);
        // Each sparse page: 10 words in a run + 1 word = 11 non-zero words.
        assert_eq!(s.sparse_words, 4 * 11);
        assert_eq!(s.sparse_pairs_bytes, 4 * (2 + 6 * 11));
        // Runs: count + (4 + 40) + (4 + 4) = 54 bytes per page.
        assert_eq!(s.sparse_runs_bytes, 4 * 54);
        assert_eq!(s.pairs_smaller, 0);
        assert_eq!(s.zero_deciles[9], 4);
        assert_eq!(s.zero_deciles.iter().sum::<u64>(), 15);
        let json = serde_json::to_string(&Json::new(&s)).unwrap();
        assert!(
            json.starts_with(r#"{"image":"gen","page_size":4096,"pages":25,"zero_pages":10,"#),
            "{json}"
        );
        let text = render(&[s]);
        assert!(text.contains("| gen "), "{text}");
    }

    /// Fixed decimals, `null` for what JSON cannot hold, escaped strings.
    #[test]
    fn json_numbers_keep_their_decimals() {
        let v = (
            Fixed::<3>(0.12345),
            Fixed::<2>(f64::NAN),
            Fixed::<1>(f64::INFINITY),
            Fixed::<2>(0.0),
            "a\"b\\c\n\u{1}",
        );
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"[0.123,null,null,0.00,"a\"b\\c\n\u0001"]"#
        );
    }

    /// `--no-dup` leaves the duplicate count out.
    #[test]
    fn duplicates_can_be_skipped() {
        let mut img = Image::from_reader("gen".into(), Box::new(Cursor::new(image())), 4096, None);
        let s = stat_image(&mut img, 4096, false, true).unwrap();
        assert_eq!((s.duplicate, s.distinct), (None, None));
        let json = serde_json::to_string(&Json::new(&s)).unwrap();
        assert!(json.contains(r#""duplicate_pages":null"#), "{json}");
        assert!(json.contains(r#""duplicate_pct":null,"#), "{json}");
    }
}
