//! `mecom bench`: every CBC setting and baseline codec over the non-zero
//! pages of each image, with bit-exact verification of every page.
//!
//! Each run streams the image once: pages are read a batch at a time, all-zero
//! pages are dropped (QEMU never hands them to the compressor), and every
//! full batch of non-zero pages goes through every setting and baseline in
//! turn, each compressing, decompressing, and then being checked page by
//! page.  Every run starts from fresh encoders and decoders, so a run is the
//! same as one pass of a migration over the image; `--repeat` runs give the
//! median timings.

use crate::args::BenchOpts;
use crate::image::{is_zero_page, Image, Progress};
use crate::lib_api::{slot_name, Config, Counters, Decoder, Encoder, LzCodec, Mode, METHOD_SLOTS};
use crate::settings::{Baseline, BaselineKind, Setting, ADAPTIVE_CHANNELS};
use crate::stat::{pct, Fixed};
use crate::table::{Align, Table};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// Nanoseconds since `t`.
fn ns_since(t: Instant) -> u64 {
    t.elapsed().as_nanos() as u64
}

/// What one batch cost a codec: (compressed bytes, compress ns, decompress ns).
type BatchCost = (u64, u64, u64);

/// A codec under test.
trait Runner {
    /// Compresses `input` (whole pages) and decompresses it into `out` (as
    /// long as `input`).  Only the codec calls are timed.
    fn run(&mut self, input: &[u8], out: &mut [u8]) -> Result<BatchCost, String>;

    /// Per-method totals, for CBC.
    fn counters(&self) -> Option<Counters> {
        None
    }
}

/// A CBC encoder/decoder pair.
struct Cbc {
    setting: &'static Setting,
    config: Config,
    ps: usize,
    enc: Encoder,
    dec: Decoder,
    frame: Vec<u8>,
    /// Totals of pairs replaced after an error.
    retired: Counters,
}

impl Cbc {
    /// A fresh encoder (told the setting's link, if any) and decoder.
    fn pair(setting: &Setting, config: &Config) -> Result<(Encoder, Decoder), String> {
        let mut enc = Encoder::new(config.clone()).map_err(|e| format!("{}: {e}", setting.name))?;
        if let Some(link) = setting.link() {
            enc.update_stats(link);
        }
        let dec = Decoder::new(config.clone()).map_err(|e| format!("{}: {e}", setting.name))?;
        Ok((enc, dec))
    }

    /// A runner for `setting` on frames of up to `batch` pages.
    fn new(setting: &'static Setting, ps: usize, batch: usize) -> Result<Cbc, String> {
        let config = setting.config(ps, batch);
        let (enc, dec) = Cbc::pair(setting, &config)?;
        let frame = vec![0; enc.max_frame_len(batch)];
        Ok(Cbc {
            setting,
            config,
            ps,
            enc,
            dec,
            frame,
            retired: Counters::default(),
        })
    }

    /// One batch; the caller replaces the pair on error.
    fn run_inner(&mut self, input: &[u8], out: &mut [u8]) -> Result<BatchCost, String> {
        let refs: Vec<&[u8]> = input.chunks_exact(self.ps).collect();
        let t = Instant::now();
        let len = self
            .enc
            .encode(&refs, &mut self.frame)
            .map_err(|e| format!("encode: {e}"))?;
        let c = ns_since(t);
        let t = Instant::now();
        let info = self
            .dec
            .decode_into(&self.frame[..len], out)
            .map_err(|e| format!("decode: {e}"))?;
        let d = ns_since(t);
        if info.pages != refs.len() {
            return Err(format!(
                "decode: {} pages, expected {}",
                info.pages,
                refs.len()
            ));
        }
        Ok((len as u64, c, d))
    }
}

impl Runner for Cbc {
    fn run(&mut self, input: &[u8], out: &mut [u8]) -> Result<BatchCost, String> {
        let result = self.run_inner(input, out);
        if result.is_err() {
            // Encoder and decoder sequence numbers may now disagree: start
            // a new pair so one bad frame does not fail every later one.
            self.retired.add(self.enc.counters());
            if let Ok((enc, dec)) = Cbc::pair(self.setting, &self.config) {
                self.enc = enc;
                self.dec = dec;
            }
        }
        result
    }

    fn counters(&self) -> Option<Counters> {
        let mut c = self.retired.clone();
        c.add(self.enc.counters());
        Some(c)
    }
}

/// Per-page LZ4 (lz4_flex).
struct Lz4Page {
    ps: usize,
    max: usize,
    comp: Vec<u8>,
    lens: Vec<usize>,
}

impl Runner for Lz4Page {
    fn run(&mut self, input: &[u8], out: &mut [u8]) -> Result<BatchCost, String> {
        let (ps, max) = (self.ps, self.max);
        self.lens.clear();
        let t = Instant::now();
        for (page, dst) in input.chunks_exact(ps).zip(self.comp.chunks_exact_mut(max)) {
            let len =
                lz4_flex::block::compress_into(page, dst).map_err(|e| format!("compress: {e}"))?;
            self.lens.push(len);
        }
        let c = ns_since(t);
        let t = Instant::now();
        for ((src, &len), dst) in self
            .comp
            .chunks_exact(max)
            .zip(&self.lens)
            .zip(out.chunks_exact_mut(ps))
        {
            let got = lz4_flex::block::decompress_into(&src[..len], dst)
                .map_err(|e| format!("decompress: {e}"))?;
            if got != ps {
                return Err(format!("decompress: {got} bytes, expected {ps}"));
            }
        }
        let d = ns_since(t);
        Ok((self.lens.iter().sum::<usize>() as u64, c, d))
    }
}

/// Per-page LZO1X-1 (the lzo1x crate, which allocates each output).
struct LzoPage {
    ps: usize,
    comp: Vec<Vec<u8>>,
}

impl Runner for LzoPage {
    fn run(&mut self, input: &[u8], out: &mut [u8]) -> Result<BatchCost, String> {
        let ps = self.ps;
        self.comp.clear();
        let t = Instant::now();
        for page in input.chunks_exact(ps) {
            self.comp
                .push(lzo1x::compress(page, lzo1x::CompressLevel::new(1)));
        }
        let c = ns_since(t);
        let t = Instant::now();
        for (src, dst) in self.comp.iter().zip(out.chunks_exact_mut(ps)) {
            lzo1x::decompress(src, dst).map_err(|e| format!("decompress: {e}"))?;
        }
        let d = ns_since(t);
        Ok((self.comp.iter().map(Vec::len).sum::<usize>() as u64, c, d))
    }
}

/// zstd level 1 over units of `unit` bytes (a page, or a whole batch).
/// `mecom rounds` measures zstd-1 of each new page with it too.
pub struct Zstd {
    unit: usize,
    max: usize,
    cctx: zstd::bulk::Compressor<'static>,
    dctx: zstd::bulk::Decompressor<'static>,
    comp: Vec<u8>,
    lens: Vec<usize>,
}

impl Zstd {
    /// A runner compressing each `unit` bytes of batches of up to
    /// `batch_bytes` bytes as one zstd frame.
    pub fn new(unit: usize, batch_bytes: usize) -> Result<Zstd, String> {
        let max = zstd::zstd_safe::compress_bound(unit);
        let units = batch_bytes.div_ceil(unit);
        Ok(Zstd {
            unit,
            max,
            cctx: zstd::bulk::Compressor::new(1).map_err(|e| format!("zstd: {e}"))?,
            dctx: zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?,
            comp: vec![0; units * max],
            lens: Vec::with_capacity(units),
        })
    }
}

impl Runner for Zstd {
    fn run(&mut self, input: &[u8], out: &mut [u8]) -> Result<BatchCost, String> {
        self.round_trip(input, out)
    }
}

impl Zstd {
    /// Compresses each unit of `input` and decompresses it into `out` (as
    /// long as `input`); only the codec calls are timed.
    pub fn round_trip(&mut self, input: &[u8], out: &mut [u8]) -> Result<BatchCost, String> {
        let (unit, max) = (self.unit, self.max);
        self.lens.clear();
        let t = Instant::now();
        for (src, dst) in input.chunks(unit).zip(self.comp.chunks_exact_mut(max)) {
            let len = self
                .cctx
                .compress_to_buffer(src, dst)
                .map_err(|e| format!("compress: {e}"))?;
            self.lens.push(len);
        }
        let c = ns_since(t);
        let t = Instant::now();
        for ((src, &len), dst) in self
            .comp
            .chunks_exact(max)
            .zip(&self.lens)
            .zip(out.chunks_mut(unit))
        {
            let got = self
                .dctx
                .decompress_to_buffer(&src[..len], dst)
                .map_err(|e| format!("decompress: {e}"))?;
            if got != dst.len() {
                return Err(format!("decompress: {got} bytes, expected {}", dst.len()));
            }
        }
        let d = ns_since(t);
        Ok((self.lens.iter().sum::<usize>() as u64, c, d))
    }
}

/// zstd level 1 as QEMU's multifd-zstd runs it on one channel: one
/// stream, flushed at the end of every batch, so each batch compresses
/// against the ones before it; the destination decodes the stream as it
/// comes.
pub struct ZstdStream {
    cctx: zstd::zstd_safe::CCtx<'static>,
    dctx: zstd::zstd_safe::DCtx<'static>,
    comp: Vec<u8>,
}

impl ZstdStream {
    /// A stream for batches of up to `batch_bytes` bytes.
    pub fn new(batch_bytes: usize) -> Result<ZstdStream, String> {
        use zstd::zstd_safe::{CCtx, CParameter, DCtx};
        let mut cctx = CCtx::try_create().ok_or("zstd: no context")?;
        cctx.set_parameter(CParameter::CompressionLevel(1))
            .map_err(|e| format!("zstd: {}", zstd::zstd_safe::get_error_name(e)))?;
        Ok(ZstdStream {
            cctx,
            dctx: DCtx::try_create().ok_or("zstd: no context")?,
            comp: vec![0; zstd::zstd_safe::compress_bound(batch_bytes) + 64],
        })
    }
}

impl Runner for ZstdStream {
    fn run(&mut self, input: &[u8], out: &mut [u8]) -> Result<BatchCost, String> {
        use zstd::zstd_safe::{zstd_sys::ZSTD_EndDirective, InBuffer, OutBuffer};
        let t = Instant::now();
        let mut dst = OutBuffer::around(&mut self.comp[..]);
        let mut src = InBuffer::around(input);
        let left = self
            .cctx
            .compress_stream2(&mut dst, &mut src, ZSTD_EndDirective::ZSTD_e_flush)
            .map_err(|e| format!("compress: {}", zstd::zstd_safe::get_error_name(e)))?;
        if left != 0 || src.pos() != input.len() {
            return Err("compress: the flush did not complete".into());
        }
        let len = dst.pos();
        let c = ns_since(t);
        let t = Instant::now();
        let out = &mut out[..input.len()];
        let mut back = OutBuffer::around(out);
        let mut comp = InBuffer::around(&self.comp[..len]);
        while comp.pos() < len {
            let before = (comp.pos(), back.pos());
            self.dctx
                .decompress_stream(&mut back, &mut comp)
                .map_err(|e| format!("decompress: {}", zstd::zstd_safe::get_error_name(e)))?;
            if (comp.pos(), back.pos()) == before {
                return Err("decompress: no progress".into());
            }
        }
        if back.pos() != input.len() {
            return Err(format!(
                "decompress: {} bytes, expected {}",
                back.pos(),
                input.len()
            ));
        }
        let d = ns_since(t);
        Ok((len as u64, c, d))
    }
}

/// What is measured: a CBC setting or a baseline.
#[derive(Debug, Clone, Copy)]
pub enum Subject {
    /// A CBC setting.
    Cbc(&'static Setting),
    /// A baseline codec.
    Baseline(&'static Baseline),
}

impl Subject {
    /// The name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Subject::Cbc(s) => s.name,
            Subject::Baseline(b) => b.name,
        }
    }

    /// A fresh runner.
    fn runner(&self, ps: usize, batch: usize) -> Result<Box<dyn Runner>, String> {
        Ok(match self {
            Subject::Cbc(s) => Box::new(Cbc::new(s, ps, batch)?),
            Subject::Baseline(b) => match b.kind {
                BaselineKind::Lz4Page => {
                    let max = lz4_flex::block::get_maximum_output_size(ps);
                    Box::new(Lz4Page {
                        ps,
                        max,
                        comp: vec![0; batch * max],
                        lens: Vec::with_capacity(batch),
                    })
                }
                BaselineKind::LzoPage => Box::new(LzoPage {
                    ps,
                    comp: Vec::with_capacity(batch),
                }),
                BaselineKind::ZstdPage => Box::new(Zstd::new(ps, batch * ps)?),
                BaselineKind::ZstdBatch => Box::new(Zstd::new(batch * ps, batch * ps)?),
                BaselineKind::ZstdStream => Box::new(ZstdStream::new(batch * ps)?),
            },
        })
    }
}

/// One run of one subject over one image.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Compressed bytes (CBC: whole frames).
    pub compressed: u64,
    /// Time in compress calls.
    pub compress_ns: u64,
    /// Time in decompress calls.
    pub decompress_ns: u64,
    /// Pages decoded and compared.
    pub checked: u64,
    /// Pages that did not come back bit-exact (or whose batch failed).
    pub bad: u64,
    /// Batches that failed with an error.
    pub errors: u64,
    /// The first error.
    pub first_error: Option<String>,
    /// CBC per-method totals.
    pub counters: Option<Counters>,
}

/// All runs of one subject over one image.
#[derive(Debug, Clone)]
pub struct SubjectReport {
    /// What was measured.
    pub subject: Subject,
    /// One entry per run.
    pub runs: Vec<Run>,
}

/// Median of `values` (mean of the middle two for an even count).
pub fn median(values: &[u64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2] as f64,
        n => (v[n / 2 - 1] as f64 + v[n / 2] as f64) / 2.0,
    }
}

/// MB/s (1 MB = 1e6 bytes) for `bytes` in `ns` nanoseconds.
pub fn mb_per_s(bytes: u64, ns: f64) -> f64 {
    if ns <= 0.0 {
        f64::NAN
    } else {
        bytes as f64 * 1e3 / ns
    }
}

impl SubjectReport {
    /// Compressed bytes of the first run (the same in every run, except
    /// for adaptive settings, whose choices follow measured timings).
    pub fn compressed(&self) -> u64 {
        self.runs.first().map_or(0, |r| r.compressed)
    }

    /// Whether the compressed size differed between runs.
    pub fn size_varies(&self) -> bool {
        self.runs.iter().any(|r| r.compressed != self.compressed())
    }

    /// Median compress time of the runs.
    pub fn compress_ns(&self) -> f64 {
        median(&self.runs.iter().map(|r| r.compress_ns).collect::<Vec<_>>())
    }

    /// Median decompress time of the runs.
    pub fn decompress_ns(&self) -> f64 {
        median(
            &self
                .runs
                .iter()
                .map(|r| r.decompress_ns)
                .collect::<Vec<_>>(),
        )
    }

    /// Bad pages over all runs.
    pub fn bad(&self) -> u64 {
        self.runs.iter().map(|r| r.bad).sum()
    }

    /// Checked pages over all runs.
    pub fn checked(&self) -> u64 {
        self.runs.iter().map(|r| r.checked).sum()
    }
}

/// The bench results of one image.
#[derive(Debug, Clone)]
pub struct ImageReport {
    /// Image name.
    pub image: String,
    /// Whether the image was zstd-compressed.
    pub zstd_image: bool,
    /// Page size.
    pub page_size: usize,
    /// Pages per frame.
    pub batch: usize,
    /// Pages in the image.
    pub pages: u64,
    /// All-zero pages, dropped before compression.
    pub zero: u64,
    /// Frames (batches) per run.
    pub frames: u64,
    /// Seconds for all runs, I/O and verification included.
    pub seconds: f64,
    /// Share of those seconds this thread was on a CPU, when the system
    /// tells (Linux `/proc/thread-self/schedstat`): well under 1 means other
    /// processes competed for the core and the timings are pessimistic.
    pub cpu_share: Option<f64>,
    /// One entry per setting and baseline, settings first.
    pub subjects: Vec<SubjectReport>,
}

impl ImageReport {
    /// Non-zero pages, the ones compressed.
    pub fn nonzero(&self) -> u64 {
        self.pages - self.zero
    }

    /// Uncompressed bytes compressed per run.
    pub fn input_bytes(&self) -> u64 {
        self.nonzero() * self.page_size as u64
    }

    /// Bad pages over every subject and run.
    pub fn bad(&self) -> u64 {
        self.subjects.iter().map(SubjectReport::bad).sum()
    }
}

/// Nanoseconds this thread has spent on a CPU (Linux only).
pub fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Runs every subject on one batch and verifies the result.
fn run_batch(
    runners: &mut [Box<dyn Runner>],
    runs: &mut [Run],
    input: &[u8],
    out: &mut [u8],
    ps: usize,
) {
    let n = (input.len() / ps) as u64;
    let out = &mut out[..input.len()];
    for (runner, run) in runners.iter_mut().zip(runs.iter_mut()) {
        // Every output byte starts different from the page it must become,
        // so a decoder that leaves a page untouched cannot pass.
        for (o, i) in out.iter_mut().zip(input) {
            *o = !*i;
        }
        run.checked += n;
        match runner.run(input, out) {
            Ok((bytes, c, d)) => {
                run.compressed += bytes;
                run.compress_ns += c;
                run.decompress_ns += d;
                run.bad += input
                    .chunks_exact(ps)
                    .zip(out.chunks_exact(ps))
                    .filter(|(a, b)| a != b)
                    .count() as u64;
            }
            Err(e) => {
                run.bad += n;
                run.errors += 1;
                run.first_error.get_or_insert(e);
            }
        }
    }
}

/// Benchmarks one image: `opts.repeat` runs, each streaming the image once.
pub fn bench_image(
    path: &Path,
    subjects: &[Subject],
    opts: &BenchOpts,
) -> Result<ImageReport, String> {
    let ps = opts.common.page_size;
    let batch = opts.batch;
    let start = Instant::now();
    let cpu_start = thread_cpu_ns();
    let mut report: Option<ImageReport> = None;
    let mut reports: Vec<SubjectReport> = subjects
        .iter()
        .map(|&subject| SubjectReport {
            subject,
            runs: Vec::new(),
        })
        .collect();
    let mut read = vec![0u8; batch * ps];
    let mut pending = vec![0u8; batch * ps];
    let mut out = vec![0u8; batch * ps];
    for r in 0..opts.repeat {
        let mut image = Image::open(path, ps, opts.common.limit)?;
        let mut progress = Progress::new(
            opts.common.quiet,
            format!("bench {} run {}/{}", image.name(), r + 1, opts.repeat),
        );
        let mut runners = subjects
            .iter()
            .map(|s| s.runner(ps, batch))
            .collect::<Result<Vec<_>, _>>()?;
        let mut runs = vec![Run::default(); subjects.len()];
        let (mut pages, mut zero, mut frames, mut held) = (0u64, 0u64, 0u64, 0usize);
        loop {
            let n = image.read_pages(&mut read)?;
            if n == 0 {
                break;
            }
            for page in read[..n * ps].chunks_exact(ps) {
                pages += 1;
                if is_zero_page(page) {
                    zero += 1;
                    continue;
                }
                pending[held * ps..(held + 1) * ps].copy_from_slice(page);
                held += 1;
                if held == batch {
                    run_batch(&mut runners, &mut runs, &pending, &mut out, ps);
                    frames += 1;
                    held = 0;
                }
            }
            progress.update(&image);
        }
        if held > 0 {
            run_batch(&mut runners, &mut runs, &pending[..held * ps], &mut out, ps);
            frames += 1;
        }
        progress.finish(&image);
        for ((run, runner), rep) in runs.iter_mut().zip(&runners).zip(&mut reports) {
            run.counters = runner.counters();
            rep.runs.push(std::mem::take(run));
        }
        match &report {
            None => {
                report = Some(ImageReport {
                    image: image.name().to_string(),
                    zstd_image: image.compressed(),
                    page_size: ps,
                    batch,
                    pages,
                    zero,
                    frames,
                    seconds: 0.0,
                    cpu_share: None,
                    subjects: Vec::new(),
                })
            }
            Some(first) if first.pages != pages || first.zero != zero => {
                return Err(format!(
                    "{}: image changed between runs ({} then {pages} pages)",
                    image.name(),
                    first.pages
                ));
            }
            Some(_) => {}
        }
    }
    let mut report = report.ok_or("no runs")?;
    report.subjects = reports;
    report.seconds = start.elapsed().as_secs_f64();
    report.cpu_share = cpu_start
        .zip(thread_cpu_ns())
        .map(|(a, b)| (b.saturating_sub(a) as f64 / 1e9 / report.seconds).min(1.0));
    Ok(report)
}

/// The counter slots any CBC subject of `report` used.
fn used_slots(report: &ImageReport) -> Vec<usize> {
    (0..METHOD_SLOTS)
        .filter(|&slot| {
            report.subjects.iter().any(|s| {
                s.runs
                    .first()
                    .and_then(|r| r.counters.as_ref())
                    .is_some_and(|c| c.method_pages[slot] > 0)
            })
        })
        .collect()
}

/// "median of N runs", or "one run".
pub fn runs_phrase(runs: usize) -> String {
    if runs == 1 {
        "one run".to_string()
    } else {
        format!("median of {runs} runs")
    }
}

/// The Markdown report of one image.
pub fn render(report: &ImageReport) -> String {
    let mut out = String::new();
    let ps = report.page_size as u64;
    let nz = report.nonzero();
    let input = report.input_bytes();
    let runs = report.subjects.first().map_or(0, |s| s.runs.len());
    out.push_str(&format!(
        "### {}

",
        report.image
    ));
    out.push_str(&format!(
        "{} pages of {ps} B; {} all-zero ({:.1} %) dropped before compression, as QEMU does; \
         {nz} non-zero pages ({:.1} MB) compressed in {} frames of up to {} pages, in image order. \
         Timings: {}, one thread, codec calls only.\n\n",
        report.pages,
        report.zero,
        pct(report.zero, report.pages),
        input as f64 / 1e6,
        report.frames,
        report.batch,
        runs_phrase(runs),
    ));
    let mut t = Table::new(&[
        ("codec", Align::Left),
        ("ratio", Align::Right),
        ("compress MB/s", Align::Right),
        ("decompress MB/s", Align::Right),
        ("verified", Align::Left),
    ]);
    let mut varies = false;
    for s in &report.subjects {
        let label = match s.subject {
            Subject::Cbc(set) => format!("cbc {}", set.name),
            Subject::Baseline(b) => b.name.to_string(),
        };
        let mark = if s.size_varies() {
            varies = true;
            "*"
        } else {
            ""
        };
        let verified = if s.bad() == 0 {
            "ok".to_string()
        } else {
            format!("FAILED {} of {}", s.bad(), s.checked())
        };
        t.row(vec![
            label,
            format!("{:.3}{mark}", s.compressed() as f64 / input.max(1) as f64),
            format!("{:.0}", mb_per_s(input, s.compress_ns())),
            format!("{:.0}", mb_per_s(input, s.decompress_ns())),
            verified,
        ]);
    }
    out.push_str(&t.render());
    if let Some(share) = report.cpu_share.filter(|&s| s < 0.9) {
        out.push_str(&format!(
            "\n**Loaded machine:** this thread was on a CPU only {:.0} % of the {:.1} s \
             the image took; other processes competed for the core, so every MB/s above is \
             pessimistic (all codecs run batch by batch in turn, so they share the \
             slowdown).\n",
            share * 100.0,
            report.seconds
        ));
    }
    if varies {
        out.push_str(
            "\n\\* size differed between runs (adaptive choices follow measured timings); \
             first run shown, every run in --json.\n",
        );
    }

    let slots = used_slots(report);
    if !slots.is_empty() {
        out.push_str(
            "\nMethods CBC chose (first run): share of non-zero pages, and (in brackets) \
             the payload bytes of those pages over their size; `frame` is headers and page \
             tables over all input.\n\n",
        );
        let mut cols: Vec<(String, Align)> = vec![("setting".into(), Align::Left)];
        cols.extend(
            slots
                .iter()
                .map(|&s| (slot_name(s).to_string(), Align::Right)),
        );
        cols.push(("frame".into(), Align::Right));
        let col_refs: Vec<(&str, Align)> = cols.iter().map(|(h, a)| (h.as_str(), *a)).collect();
        let mut t = Table::new(&col_refs);
        for s in &report.subjects {
            let Some(c) = s.runs.first().and_then(|r| r.counters.as_ref()) else {
                continue;
            };
            let mut row = vec![s.subject.name().to_string()];
            for &slot in &slots {
                let pages = c.method_pages[slot];
                row.push(if pages == 0 {
                    "-".into()
                } else {
                    format!(
                        "{:.1} % ({:.3})",
                        pct(pages, c.pages),
                        c.method_bytes[slot] as f64 / (pages * ps) as f64
                    )
                });
            }
            let payload: u64 = c.method_bytes.iter().sum();
            row.push(format!(
                "{:.4}",
                c.bytes_out.saturating_sub(payload) as f64 / c.bytes_in.max(1) as f64
            ));
            t.row(row);
        }
        out.push_str(&t.render());
    }
    for s in &report.subjects {
        if let Some(e) = s.runs.iter().find_map(|r| r.first_error.as_ref()) {
            out.push_str(&format!("\n{}: error: {e}\n", s.subject.name()));
        }
    }
    out.push('\n');
    out
}

/// The JSON object of one image (docs/CLI.md lists the fields).
#[derive(Serialize)]
pub struct Json<'a> {
    image: &'a str,
    zstd_image: bool,
    page_size: usize,
    batch_pages: usize,
    repeat: usize,
    pages: u64,
    zero_pages: u64,
    nonzero_pages: u64,
    input_bytes: u64,
    frames: u64,
    note: &'static str,
    bad_pages: u64,
    seconds: Fixed<2>,
    cpu_share: Option<Fixed<3>>,
    results: Vec<SubjectJson<'a>>,
}

/// One setting or baseline in [`Json`].
#[derive(Serialize)]
struct SubjectJson<'a> {
    name: &'static str,
    kind: &'static str,
    #[serde(flatten)]
    setting: Option<SettingJson>,
    compressed_bytes: u64,
    ratio: Fixed<5>,
    compress_mb_s: Fixed<1>,
    decompress_mb_s: Fixed<1>,
    compressed_bytes_runs: Vec<u64>,
    compress_ns_runs: Vec<u64>,
    decompress_ns_runs: Vec<u64>,
    checked_pages: u64,
    bad_pages: u64,
    failed_batches: u64,
    error: Option<&'a str>,
    #[serde(flatten)]
    methods: Option<MethodsJson>,
}

/// The configuration of a CBC setting in [`SubjectJson`].
#[derive(Serialize)]
struct SettingJson {
    mode: &'static str,
    zstd_level: u8,
    zstd_group_pages: usize,
    lz: &'static str,
    link_bandwidth: u64,
    link_channels: u32,
}

/// What a CBC setting's encoder chose (first run), in [`SubjectJson`].
#[derive(Serialize)]
struct MethodsJson {
    frames: u64,
    payload_bytes: u64,
    frame_overhead_bytes: u64,
    methods: Vec<MethodJson>,
}

/// One method in [`MethodsJson`].
#[derive(Serialize)]
struct MethodJson {
    method: &'static str,
    pages: u64,
    page_pct: Fixed<2>,
    bytes: u64,
}

impl<'a> Json<'a> {
    /// The JSON view of `report`.
    pub fn new(report: &'a ImageReport) -> Json<'a> {
        let input = report.input_bytes();
        Json {
            image: &report.image,
            zstd_image: report.zstd_image,
            page_size: report.page_size,
            batch_pages: report.batch,
            repeat: report.subjects.first().map_or(0, |s| s.runs.len()),
            pages: report.pages,
            zero_pages: report.zero,
            nonzero_pages: report.nonzero(),
            input_bytes: input,
            frames: report.frames,
            note: "all-zero pages are dropped before compression, as QEMU does; ratios and MB/s \
                   are over the non-zero pages; MB = 1e6 bytes of uncompressed data",
            bad_pages: report.bad(),
            seconds: Fixed(report.seconds),
            cpu_share: report.cpu_share.map(Fixed),
            results: report
                .subjects
                .iter()
                .map(|s| SubjectJson::new(s, input))
                .collect(),
        }
    }
}

impl<'a> SubjectJson<'a> {
    /// The JSON view of `s`, over `input` bytes of non-zero pages.
    fn new(s: &'a SubjectReport, input: u64) -> SubjectJson<'a> {
        let runs = |f: fn(&Run) -> u64| s.runs.iter().map(f).collect();
        SubjectJson {
            name: s.subject.name(),
            kind: match s.subject {
                Subject::Cbc(_) => "cbc",
                Subject::Baseline(_) => "baseline",
            },
            setting: match s.subject {
                Subject::Cbc(set) => Some(SettingJson {
                    mode: if set.mode == Mode::Fixed {
                        "fixed"
                    } else {
                        "adaptive"
                    },
                    zstd_level: set.zstd_level,
                    zstd_group_pages: set.group,
                    lz: if set.lz == LzCodec::Lz4 { "lz4" } else { "lzo" },
                    link_bandwidth: set.bandwidth,
                    link_channels: if set.bandwidth > 0 {
                        ADAPTIVE_CHANNELS
                    } else {
                        0
                    },
                }),
                Subject::Baseline(_) => None,
            },
            compressed_bytes: s.compressed(),
            ratio: Fixed(s.compressed() as f64 / input.max(1) as f64),
            compress_mb_s: Fixed(mb_per_s(input, s.compress_ns())),
            decompress_mb_s: Fixed(mb_per_s(input, s.decompress_ns())),
            compressed_bytes_runs: runs(|r| r.compressed),
            compress_ns_runs: runs(|r| r.compress_ns),
            decompress_ns_runs: runs(|r| r.decompress_ns),
            checked_pages: s.checked(),
            bad_pages: s.bad(),
            failed_batches: s.runs.iter().map(|r| r.errors).sum(),
            error: s.runs.iter().find_map(|r| r.first_error.as_deref()),
            methods: s.runs.first().and_then(|r| r.counters.as_ref()).map(|c| {
                let payload: u64 = c.method_bytes.iter().sum();
                MethodsJson {
                    frames: c.frames,
                    payload_bytes: payload,
                    frame_overhead_bytes: c.bytes_out.saturating_sub(payload),
                    methods: (0..METHOD_SLOTS)
                        .filter(|&k| c.method_pages[k] > 0)
                        .map(|k| MethodJson {
                            method: slot_name(k),
                            pages: c.method_pages[k],
                            page_pct: Fixed(pct(c.method_pages[k], c.pages)),
                            bytes: c.method_bytes[k],
                        })
                        .collect(),
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{BASELINES, SETTINGS};

    /// Every setting is a valid configuration, and names are unique.
    #[test]
    fn every_setting_makes_a_valid_config() {
        for s in SETTINGS {
            s.config(4096, 128).validate().unwrap();
            assert!(s.link().is_none() || s.mode == Mode::Adaptive, "{}", s.name);
        }
        let mut names: Vec<&str> = SETTINGS
            .iter()
            .map(|s| s.name)
            .chain(BASELINES.iter().map(|b| b.name))
            .collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SETTINGS.len() + BASELINES.len());
    }

    /// Odd, even and empty medians.
    #[test]
    fn medians() {
        assert_eq!(median(&[5, 1, 3]), 3.0);
        assert_eq!(median(&[4, 1, 3, 2]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    /// Every setting and baseline round-trips full and short batches.
    #[test]
    fn every_runner_round_trips_mixed_pages() {
        let ps = 4096;
        let mut input = Vec::new();
        for k in 0..5u32 {
            input.extend((0..1024u32).flat_map(|i| (i * k % 97).to_le_bytes()));
        }
        let mut x = 7u32;
        input.extend((0..ps).map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 24) as u8
        }));
        let subjects: Vec<Subject> = SETTINGS
            .iter()
            .map(Subject::Cbc)
            .chain(BASELINES.iter().map(Subject::Baseline))
            .collect();
        let mut runners: Vec<Box<dyn Runner>> =
            subjects.iter().map(|s| s.runner(ps, 8).unwrap()).collect();
        let mut runs = vec![Run::default(); subjects.len()];
        let mut out = vec![0u8; 8 * ps];
        run_batch(&mut runners, &mut runs, &input, &mut out, ps);
        run_batch(&mut runners, &mut runs, &input[..ps], &mut out, ps);
        for (s, r) in subjects.iter().zip(&runs) {
            assert_eq!(
                (r.bad, r.checked),
                (0, 7),
                "{}: {:?}",
                s.name(),
                r.first_error
            );
            assert!(
                r.compressed > 0 && r.compressed < 7 * ps as u64,
                "{}",
                s.name()
            );
        }
    }
}
