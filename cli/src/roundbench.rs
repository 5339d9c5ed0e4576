//! `mecom rounds`: delta and page codecs on the re-sent pages of round
//! dumps (docs/ROUNDS.md), each page verified bit-exactly.
//!
//! For every round of a dump, the pages are taken in file order, up to
//! [`FRAME`] at a time; each batch goes through every codec `--repeat`
//! times (fresh output buffers holding the previous versions, so a decoder
//! that leaves a page alone fails), and the decoded pages are compared with
//! the new versions.  Codecs (one thread, codec calls only timed):
//!
//! * `xbzrle`: QEMU's XBZRLE encoding of the new page against the previous
//!   one ([`crate::xbzrle`]); an encoding that would exceed the page size
//!   counts as the whole page, as QEMU then sends it as a normal page.
//! * `xor+lz4`: LZ4 (lz4_flex) of new XOR previous.
//! * `zstd-1/page`: zstd level 1 of the new page alone.
//! * `cbc fast`: mecom's encoder, fixed thresholds, zstd off, LZ4, on the
//!   new pages in frames of up to 128 pages (frame headers included).
//! * `cbc delta`: the same with a page cache that holds the previous
//!   versions (sent in an untimed frame first, as the round before
//!   would have), so a page goes as a delta (`delta-sparse`/`delta-lz4`)
//!   when that is smaller than its own codec; decoded onto the previous
//!   versions, as QEMU's destination does.

use crate::bench::{mb_per_s, median, thread_cpu_ns, Zstd};
use crate::lib_api::{Decoder, Encoder, PageCache, Placement};
use crate::rounds::{self, Round};
use crate::settings::SETTINGS;
use crate::stat::Fixed;
use crate::table::{Align, Table};
use crate::xbzrle;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Pages per batch, and per CBC frame.
pub const FRAME: usize = 128;

/// The codecs, in report order.
pub const CODECS: [&str; 5] = ["xbzrle", "xor+lz4", "zstd-1/page", "cbc fast", "cbc delta"];

/// Nanoseconds since `t`.
fn ns_since(t: Instant) -> u64 {
    t.elapsed().as_nanos() as u64
}

/// What one batch cost: (encoded bytes, encode ns, decode ns, pages sent
/// whole because the encoding overflowed).
type Cost = (u64, u64, u64, u64);

/// A codec of previous/new page pairs.
trait Delta {
    /// Encodes the pages of `new` (against `old`) and decodes them into
    /// `out`, which holds `old` on entry.
    fn run(&mut self, old: &[u8], new: &[u8], out: &mut [u8]) -> Result<Cost, String>;
}

/// QEMU's XBZRLE.
struct Xbzrle {
    ps: usize,
    enc: Vec<u8>,
    lens: Vec<Option<usize>>,
}

impl Delta for Xbzrle {
    fn run(&mut self, old: &[u8], new: &[u8], out: &mut [u8]) -> Result<Cost, String> {
        let ps = self.ps;
        self.lens.clear();
        let t = Instant::now();
        for ((o, n), dst) in old
            .chunks_exact(ps)
            .zip(new.chunks_exact(ps))
            .zip(self.enc.chunks_exact_mut(ps))
        {
            self.lens.push(xbzrle::encode(o, n, dst));
        }
        let c = ns_since(t);
        let t = Instant::now();
        for (((src, len), dst), n) in self
            .enc
            .chunks_exact(ps)
            .zip(&self.lens)
            .zip(out.chunks_exact_mut(ps))
            .zip(new.chunks_exact(ps))
        {
            match len {
                Some(len) => {
                    xbzrle::decode(&src[..*len], dst).ok_or("xbzrle: malformed encoding")?;
                }
                // Sent whole, as QEMU does.
                None => dst.copy_from_slice(n),
            }
        }
        let d = ns_since(t);
        let bytes = self.lens.iter().map(|l| l.unwrap_or(ps) as u64).sum();
        let over = self.lens.iter().filter(|l| l.is_none()).count() as u64;
        Ok((bytes, c, d, over))
    }
}

/// LZ4 of new XOR old.
struct XorLz4 {
    ps: usize,
    max: usize,
    xor: Vec<u8>,
    comp: Vec<u8>,
    lens: Vec<usize>,
}

impl Delta for XorLz4 {
    fn run(&mut self, old: &[u8], new: &[u8], out: &mut [u8]) -> Result<Cost, String> {
        let (ps, max) = (self.ps, self.max);
        self.lens.clear();
        let t = Instant::now();
        for (((o, n), x), dst) in old
            .chunks_exact(ps)
            .zip(new.chunks_exact(ps))
            .zip(self.xor.chunks_exact_mut(ps))
            .zip(self.comp.chunks_exact_mut(max))
        {
            for ((x, a), b) in x.iter_mut().zip(o).zip(n) {
                *x = a ^ b;
            }
            let len = lz4_flex::block::compress_into(x, dst).map_err(|e| format!("lz4: {e}"))?;
            self.lens.push(len);
        }
        let c = ns_since(t);
        let t = Instant::now();
        for (((src, &len), dst), o) in self
            .comp
            .chunks_exact(max)
            .zip(&self.lens)
            .zip(out.chunks_exact_mut(ps))
            .zip(old.chunks_exact(ps))
        {
            let got = lz4_flex::block::decompress_into(&src[..len], dst)
                .map_err(|e| format!("lz4: {e}"))?;
            if got != ps {
                return Err(format!("lz4: {got} bytes, expected {ps}"));
            }
            for (d, a) in dst.iter_mut().zip(o) {
                *d ^= a;
            }
        }
        let d = ns_since(t);
        Ok((self.lens.iter().sum::<usize>() as u64, c, d, 0))
    }
}

/// zstd level 1 of each new page (the same runner as `mecom bench`'s
/// `zstd-1/page`).
struct ZstdPage(Zstd);

impl Delta for ZstdPage {
    fn run(&mut self, _old: &[u8], new: &[u8], out: &mut [u8]) -> Result<Cost, String> {
        let (bytes, c, d) = self.0.round_trip(new, out)?;
        Ok((bytes, c, d, 0))
    }
}

/// mecom's encoder, setting `fast`, one frame per batch.
struct CbcFast {
    ps: usize,
    enc: Encoder,
    dec: Decoder,
    frame: Vec<u8>,
}

impl Delta for CbcFast {
    fn run(&mut self, _old: &[u8], new: &[u8], out: &mut [u8]) -> Result<Cost, String> {
        let refs: Vec<&[u8]> = new.chunks_exact(self.ps).collect();
        let t = Instant::now();
        let len = self
            .enc
            .encode(&refs, &mut self.frame)
            .map_err(|e| format!("cbc encode: {e}"))?;
        let c = ns_since(t);
        let t = Instant::now();
        let info = self
            .dec
            .decode_into(&self.frame[..len], out)
            .map_err(|e| format!("cbc decode: {e}"))?;
        let d = ns_since(t);
        if info.pages != refs.len() {
            return Err(format!(
                "cbc decode: {} pages of {}",
                info.pages,
                refs.len()
            ));
        }
        Ok((len as u64, c, d, 0))
    }
}

/// mecom's encoder, setting `fast`, with a page cache that holds the
/// previous versions: one frame of the old pages (untimed) primes the
/// cache and the destination, then the new pages go as one frame.
struct CbcDelta {
    ps: usize,
    enc: Encoder,
    dec: Decoder,
    frame: Vec<u8>,
    offsets: Vec<u64>,
}

impl CbcDelta {
    fn frame(&mut self, pages: &[u8], out: &mut [u8]) -> Result<(usize, u64, u64), String> {
        let refs: Vec<&[u8]> = pages.chunks_exact(self.ps).collect();
        let placement = Placement {
            block: b"rounds",
            offsets: &self.offsets[..refs.len()],
            zero_offsets: &[],
        };
        let t = Instant::now();
        let len = self
            .enc
            .encode_placed(&refs, &placement, &mut self.frame)
            .map_err(|e| format!("cbc delta encode: {e}"))?;
        let c = ns_since(t);
        let mut slots: Vec<&mut [u8]> = out[..refs.len() * self.ps]
            .chunks_exact_mut(self.ps)
            .collect();
        let t = Instant::now();
        self.dec
            .decode_placed(&self.frame[..len], &placement, &mut slots)
            .map_err(|e| format!("cbc delta decode: {e}"))?;
        Ok((len, c, ns_since(t)))
    }
}

impl Delta for CbcDelta {
    fn run(&mut self, old: &[u8], new: &[u8], out: &mut [u8]) -> Result<Cost, String> {
        // `out` holds the old versions, as the destination does; a cache
        // from an earlier run would remember other versions.
        let cache = PageCache::new(self.ps as u32, (FRAME * self.ps) as u64)
            .map_err(|e| format!("cbc: {e}"))?;
        self.enc
            .set_cache(Some(Arc::new(cache)))
            .map_err(|e| format!("cbc: {e}"))?;
        self.frame(old, out)?;
        let (len, c, d) = self.frame(new, out)?;
        Ok((len as u64, c, d, 0))
    }
}

/// The codecs of [`CODECS`], fresh.
fn codecs(ps: usize) -> Result<Vec<Box<dyn Delta>>, String> {
    let fast = SETTINGS
        .iter()
        .find(|s| s.name == "fast")
        .ok_or("no `fast` setting")?;
    let config = fast.config(ps, FRAME);
    let enc = Encoder::new(config.clone()).map_err(|e| format!("cbc: {e}"))?;
    let dec = Decoder::new(config).map_err(|e| format!("cbc: {e}"))?;
    let frame = vec![0; enc.max_frame_len(FRAME)];
    let lz4_max = lz4_flex::block::get_maximum_output_size(ps);
    Ok(vec![
        Box::new(Xbzrle {
            ps,
            enc: vec![0; FRAME * ps],
            lens: Vec::with_capacity(FRAME),
        }),
        Box::new(XorLz4 {
            ps,
            max: lz4_max,
            xor: vec![0; FRAME * ps],
            comp: vec![0; FRAME * lz4_max],
            lens: Vec::with_capacity(FRAME),
        }),
        Box::new(ZstdPage(Zstd::new(ps, FRAME * ps)?)),
        Box::new(CbcFast {
            ps,
            enc,
            dec,
            frame,
        }),
        Box::new(cbc_delta(fast.config(ps, FRAME), ps)?),
    ])
}

/// [`CbcDelta`]; each run gets a cache of one frame of pages.
fn cbc_delta(config: crate::lib_api::Config, ps: usize) -> Result<CbcDelta, String> {
    let enc = Encoder::new(config.clone()).map_err(|e| format!("cbc: {e}"))?;
    let dec = Decoder::new(config).map_err(|e| format!("cbc: {e}"))?;
    Ok(CbcDelta {
        ps,
        frame: vec![0; enc.max_frame_len(FRAME)],
        enc,
        dec,
        offsets: (0..FRAME as u64).map(|i| i * ps as u64).collect(),
    })
}

/// One codec over a round (or a whole file).
#[derive(Debug, Clone, Default)]
pub struct CodecStat {
    /// Encoded bytes (the same in every run; first run).
    pub bytes: u64,
    /// Encode ns, per run.
    pub enc_ns: Vec<u64>,
    /// Decode ns, per run.
    pub dec_ns: Vec<u64>,
    /// Pages decoded and compared, over all runs.
    pub checked: u64,
    /// Pages that did not come back bit-exact, over all runs.
    pub bad: u64,
    /// Pages sent whole (xbzrle overflow), first run.
    pub overflow: u64,
    /// The first error.
    pub error: Option<String>,
}

impl CodecStat {
    /// Adds `other` (another round) to this total.
    fn add(&mut self, other: &CodecStat) {
        self.bytes += other.bytes;
        self.enc_ns
            .resize(other.enc_ns.len().max(self.enc_ns.len()), 0);
        self.dec_ns
            .resize(other.dec_ns.len().max(self.dec_ns.len()), 0);
        for (a, b) in self.enc_ns.iter_mut().zip(&other.enc_ns) {
            *a += b;
        }
        for (a, b) in self.dec_ns.iter_mut().zip(&other.dec_ns) {
            *a += b;
        }
        self.checked += other.checked;
        self.bad += other.bad;
        self.overflow += other.overflow;
        if self.error.is_none() {
            self.error.clone_from(&other.error);
        }
    }
}

/// One round (or the total of a file).
#[derive(Debug, Clone)]
pub struct RoundStat {
    /// The round header; `None` for the total.
    pub round: Option<Round>,
    /// Bytes differing between old and new, per page.
    pub diffs: Vec<u32>,
    /// One entry per codec of [`CODECS`].
    pub codecs: Vec<CodecStat>,
}

impl RoundStat {
    /// Pages.
    pub fn pages(&self) -> u64 {
        self.diffs.len() as u64
    }

    /// Nearest-rank `q`-quantile of the differing bytes (as
    /// `harness/rounds.py`), `None` without pages.
    pub fn diff_quantile(&self, q: f64) -> Option<u32> {
        let mut s = self.diffs.clone();
        s.sort_unstable();
        let k = ((s.len() as f64 * q).ceil() as usize).max(1);
        s.get(k - 1).copied()
    }

    /// Mean differing bytes.
    pub fn diff_mean(&self) -> Option<f64> {
        (!self.diffs.is_empty()).then(|| {
            self.diffs.iter().map(|&d| u64::from(d)).sum::<u64>() as f64 / self.diffs.len() as f64
        })
    }
}

/// The results of one dump.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// The file name.
    pub file: String,
    /// Whether it was zstd-compressed.
    pub zstd: bool,
    /// Page size.
    pub page_size: usize,
    /// RAM pages.
    pub ram_pages: u64,
    /// Runs per batch.
    pub repeat: usize,
    /// The rounds in file order.
    pub rounds: Vec<RoundStat>,
    /// Every round together.
    pub total: RoundStat,
    /// Seconds for the file, reading and verification included.
    pub seconds: f64,
    /// Share of the time this thread was on a CPU.
    pub cpu_share: Option<f64>,
}

impl FileReport {
    /// Bad pages over every codec and run.
    pub fn bad(&self) -> u64 {
        self.total.codecs.iter().map(|c| c.bad).sum()
    }

    /// Page checks over every codec and run.
    pub fn checked(&self) -> u64 {
        self.total.codecs.iter().map(|c| c.checked).sum()
    }
}

/// Runs every codec `repeat` times over one batch, adding to `stat`.
fn run_batch(
    codecs: &mut [Box<dyn Delta>],
    stat: &mut RoundStat,
    old: &[u8],
    new: &[u8],
    out: &mut [u8],
    ps: usize,
    repeat: usize,
) {
    let n = (new.len() / ps) as u64;
    for (o, n) in old.chunks_exact(ps).zip(new.chunks_exact(ps)) {
        let d = o.iter().zip(n).filter(|(a, b)| a != b).count();
        stat.diffs.push(d as u32);
    }
    let out = &mut out[..new.len()];
    for (codec, cs) in codecs.iter_mut().zip(stat.codecs.iter_mut()) {
        cs.enc_ns.resize(repeat, 0);
        cs.dec_ns.resize(repeat, 0);
        for run in 0..repeat {
            out.copy_from_slice(old);
            cs.checked += n;
            match codec.run(old, new, out) {
                Ok((bytes, c, d, over)) => {
                    if run == 0 {
                        cs.bytes += bytes;
                        cs.overflow += over;
                    }
                    cs.enc_ns[run] += c;
                    cs.dec_ns[run] += d;
                    cs.bad += new
                        .chunks_exact(ps)
                        .zip(out.chunks_exact(ps))
                        .filter(|(a, b)| a != b)
                        .count() as u64;
                }
                Err(e) => {
                    cs.bad += n;
                    cs.error.get_or_insert(e);
                }
            }
        }
    }
}

/// An empty [`RoundStat`].
fn empty(round: Option<Round>) -> RoundStat {
    RoundStat {
        round,
        diffs: Vec::new(),
        codecs: vec![CodecStat::default(); CODECS.len()],
    }
}

/// Reads and measures one dump.
pub fn bench_file(path: &Path, repeat: usize, quiet: bool) -> Result<FileReport, String> {
    let name = path.display().to_string();
    let start = Instant::now();
    let cpu_start = thread_cpu_ns();
    let (mut reader, zstd) = rounds::open(path)?;
    let h = reader.header();
    let ps = h.page_size;
    let mut codecs = codecs(ps)?;
    let (mut old, mut new, mut out) = (
        vec![0u8; FRAME * ps],
        vec![0u8; FRAME * ps],
        vec![0u8; FRAME * ps],
    );
    let mut rounds_out = Vec::new();
    let err = |e: rounds::Error| format!("{name}: {e}");
    while let Some(round) = reader.next_round().map_err(err)? {
        let mut stat = empty(Some(round));
        let mut held = 0;
        loop {
            let (o, n) = (
                &mut old[held * ps..(held + 1) * ps],
                &mut new[held * ps..(held + 1) * ps],
            );
            let got = reader.next_page(o, n).map_err(err)?;
            if got.is_some() {
                held += 1;
            }
            if held == FRAME || (got.is_none() && held > 0) {
                let b = held * ps;
                run_batch(
                    &mut codecs,
                    &mut stat,
                    &old[..b],
                    &new[..b],
                    &mut out,
                    ps,
                    repeat,
                );
                held = 0;
            }
            if got.is_none() {
                break;
            }
        }
        if !quiet {
            eprintln!(
                "mecom: {name}: round {}{}: {} pages",
                round.round,
                if round.is_final { "F" } else { "" },
                stat.pages()
            );
        }
        rounds_out.push(stat);
    }
    let mut total = empty(None);
    for r in &rounds_out {
        total.diffs.extend(&r.diffs);
        for (t, c) in total.codecs.iter_mut().zip(&r.codecs) {
            t.add(c);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(FileReport {
        file: name,
        zstd,
        page_size: ps,
        ram_pages: h.ram_pages,
        repeat,
        rounds: rounds_out,
        total,
        seconds,
        cpu_share: cpu_start
            .zip(thread_cpu_ns())
            .map(|(a, b)| (b.saturating_sub(a) as f64 / 1e9 / seconds).min(1.0)),
    })
}

/// "3F" for a final round 3, "total" for the total.
fn round_label(r: &RoundStat) -> String {
    match r.round {
        Some(r) => format!("{}{}", r.round, if r.is_final { "F" } else { "" }),
        None => "total".into(),
    }
}

/// Median MB/s of the runs over `bytes` of new pages.
fn speed(bytes: u64, ns: &[u64]) -> f64 {
    mb_per_s(bytes, median(ns))
}

/// The Markdown report of one dump.
pub fn render(rep: &FileReport) -> String {
    let ps = rep.page_size as u64;
    let mut out = format!(
        "### {}\n\n{} RAM pages of {ps} B, {} rounds after the first; {} re-sent pages \
         (changed since the previous snapshot) in batches of up to {FRAME} per round. \
         B/page = encoded bytes per page (cbc: whole frames); MB/s over the new pages, \
         {}.\n\n",
        rep.file,
        rep.ram_pages,
        rep.rounds.len(),
        rep.total.pages(),
        crate::bench::runs_phrase(rep.repeat),
    );
    let mut t = Table::new(&[
        ("round", Align::Left),
        ("syncs", Align::Right),
        ("pages", Align::Right),
        ("differing B med / p90 / mean", Align::Right),
        ("codec", Align::Left),
        ("B/page", Align::Right),
        ("enc MB/s", Align::Right),
        ("dec MB/s", Align::Right),
        ("verified", Align::Left),
    ]);
    for r in rep.rounds.iter().chain([&rep.total]) {
        let pages = r.pages();
        let fmt = |v: Option<u32>| v.map_or("-".into(), |v| v.to_string());
        let head = vec![
            round_label(r),
            r.round
                .map_or(String::new(), |r| format!("{}-{}", r.sync_from, r.sync_to)),
            pages.to_string(),
            format!(
                "{} / {} / {}",
                fmt(r.diff_quantile(0.5)),
                fmt(r.diff_quantile(0.9)),
                r.diff_mean().map_or("-".into(), |m| format!("{m:.0}"))
            ),
        ];
        if pages == 0 {
            let mut row = head;
            row.push("-".into());
            t.row(row);
            continue;
        }
        for (i, (name, c)) in CODECS.iter().zip(&r.codecs).enumerate() {
            let mut row = if i == 0 {
                head.clone()
            } else {
                vec![String::new(); 4]
            };
            let input = pages * ps;
            row.extend([
                name.to_string(),
                format!("{:.0}", c.bytes as f64 / pages as f64),
                format!("{:.0}", speed(input, &c.enc_ns)),
                format!("{:.0}", speed(input, &c.dec_ns)),
                if c.bad == 0 {
                    "ok".into()
                } else {
                    format!("FAILED {} of {}", c.bad, c.checked)
                },
            ]);
            t.row(row);
        }
    }
    out.push_str(&t.render());
    let over = rep.total.codecs[0].overflow;
    if over > 0 {
        out.push_str(&format!(
            "\nxbzrle: {over} pages encoded to more than the page size, counted as whole \
             pages (QEMU sends them as normal pages).\n"
        ));
    }
    if let Some(share) = rep.cpu_share.filter(|&s| s < 0.9) {
        out.push_str(&format!(
            "\n**Loaded machine:** this thread was on a CPU only {:.0} % of the {:.1} s; \
             every MB/s above is pessimistic.\n",
            share * 100.0,
            rep.seconds
        ));
    }
    for (name, c) in CODECS.iter().zip(&rep.total.codecs) {
        if let Some(e) = &c.error {
            out.push_str(&format!("\n{name}: error: {e}\n"));
        }
    }
    out.push('\n');
    out
}

/// The JSON object of one dump (docs/CLI.md lists the fields).
#[derive(Serialize)]
pub struct Json<'a> {
    file: &'a str,
    zstd_file: bool,
    page_size: usize,
    ram_pages: u64,
    batch_pages: usize,
    repeat: usize,
    bad_pages: u64,
    seconds: Fixed<2>,
    cpu_share: Option<Fixed<3>>,
    rounds: Vec<RoundJson<'a>>,
    total: RoundJson<'a>,
}

/// One round (or the total) in [`Json`].
#[derive(Serialize)]
struct RoundJson<'a> {
    round: Option<u32>,
    sync_from: Option<u32>,
    sync_to: Option<u32>,
    #[serde(rename = "final")]
    is_final: Option<bool>,
    t_s: Option<Fixed<3>>,
    pages: u64,
    diff_median: Option<u32>,
    diff_p90: Option<u32>,
    diff_mean: Option<Fixed<1>>,
    codecs: Vec<CodecJson<'a>>,
}

/// One codec in [`RoundJson`].
#[derive(Serialize)]
struct CodecJson<'a> {
    name: &'static str,
    bytes: u64,
    bytes_per_page: Option<Fixed<1>>,
    encode_mb_s: Fixed<1>,
    decode_mb_s: Fixed<1>,
    encode_ns_runs: &'a [u64],
    decode_ns_runs: &'a [u64],
    checked_pages: u64,
    bad_pages: u64,
    overflow_pages: u64,
    error: Option<&'a str>,
}

impl<'a> RoundJson<'a> {
    /// The JSON view of `r`.
    fn new(r: &'a RoundStat, ps: usize) -> RoundJson<'a> {
        let pages = r.pages();
        RoundJson {
            round: r.round.map(|r| r.round),
            sync_from: r.round.map(|r| r.sync_from),
            sync_to: r.round.map(|r| r.sync_to),
            is_final: r.round.map(|r| r.is_final),
            t_s: r.round.map(|r| Fixed(r.t_us as f64 / 1e6)),
            pages,
            diff_median: r.diff_quantile(0.5),
            diff_p90: r.diff_quantile(0.9),
            diff_mean: r.diff_mean().map(Fixed),
            codecs: CODECS
                .iter()
                .zip(&r.codecs)
                .map(|(name, c)| CodecJson {
                    name,
                    bytes: c.bytes,
                    bytes_per_page: (pages > 0).then(|| Fixed(c.bytes as f64 / pages as f64)),
                    encode_mb_s: Fixed(speed(pages * ps as u64, &c.enc_ns)),
                    decode_mb_s: Fixed(speed(pages * ps as u64, &c.dec_ns)),
                    encode_ns_runs: &c.enc_ns,
                    decode_ns_runs: &c.dec_ns,
                    checked_pages: c.checked,
                    bad_pages: c.bad,
                    overflow_pages: c.overflow,
                    error: c.error.as_deref(),
                })
                .collect(),
        }
    }
}

impl<'a> Json<'a> {
    /// The JSON view of `rep`.
    pub fn new(rep: &'a FileReport) -> Json<'a> {
        Json {
            file: &rep.file,
            zstd_file: rep.zstd,
            page_size: rep.page_size,
            ram_pages: rep.ram_pages,
            batch_pages: FRAME,
            repeat: rep.repeat,
            bad_pages: rep.bad(),
            seconds: Fixed(rep.seconds),
            cpu_share: rep.cpu_share.map(Fixed),
            rounds: rep
                .rounds
                .iter()
                .map(|r| RoundJson::new(r, rep.page_size))
                .collect(),
            total: RoundJson::new(&rep.total, rep.page_size),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every codec round-trips a batch of changed pages, and a short one.
    #[test]
    fn every_codec_round_trips() {
        let ps = 4096;
        let mut old = Vec::new();
        let mut new = Vec::new();
        for k in 0..5u32 {
            let page: Vec<u8> = (0..1024u32)
                .flat_map(|i| (i * k % 97).to_le_bytes())
                .collect();
            let mut changed = page.clone();
            for i in (0..ps).step_by(37 + k as usize * 300) {
                changed[i] = changed[i].wrapping_add(1);
            }
            old.extend(page);
            new.extend(changed);
        }
        // One page changed everywhere (xbzrle overflow).
        old.extend(vec![0u8; ps]);
        new.extend((0..ps).map(|i| (i as u8) | 1));
        let mut codecs = codecs(ps).unwrap();
        let mut stat = empty(None);
        let mut out = vec![0u8; FRAME * ps];
        run_batch(&mut codecs, &mut stat, &old, &new, &mut out, ps, 2);
        run_batch(
            &mut codecs,
            &mut stat,
            &old[..ps],
            &new[..ps],
            &mut out,
            ps,
            2,
        );
        assert_eq!(stat.pages(), 7);
        assert_eq!(stat.diff_quantile(1.0), Some(4096));
        for (name, c) in CODECS.iter().zip(&stat.codecs) {
            assert_eq!((c.bad, c.checked), (0, 14), "{name}: {:?}", c.error);
            assert!(c.bytes > 0 && c.bytes < 7 * ps as u64 + 200, "{name}");
            assert_eq!(c.enc_ns.len(), 2);
        }
        assert_eq!(stat.codecs[0].overflow, 1);
    }

    /// Nearest-rank quantiles as harness/rounds.py.
    #[test]
    fn quantiles() {
        let mut r = empty(None);
        assert_eq!(r.diff_quantile(0.5), None);
        r.diffs = vec![5, 1, 4, 2, 3];
        assert_eq!(r.diff_quantile(0.5), Some(3));
        assert_eq!(r.diff_quantile(0.9), Some(5));
        r.diffs = vec![1, 2, 3, 4];
        assert_eq!(r.diff_quantile(0.5), Some(2));
        assert_eq!(r.diff_mean(), Some(2.5));
    }
}
