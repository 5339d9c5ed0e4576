//! `mecom`: page statistics and compression benchmarks on guest RAM images.
//!
//! ```text
//! mecom stat  [OPTIONS] IMAGE...   MECOM's Table I for each image
//! mecom bench [OPTIONS] IMAGE...   every CBC setting and baseline, verified
//! mecom rounds [OPTIONS] FILE... codecs on the re-sent pages of round dumps
//! mecom help [COMMAND]
//! ```
//!
//! Images are raw files of consecutive pages, or the same compressed with
//! zstd; both are streamed a batch at a time.  Output is Markdown tables, or
//! JSON with `--json`; progress goes to standard error.  See `docs/CLI.md`.
//!
//! Exit status: 0 success, 1 a page did not round-trip, 2 usage or input
//! error.

#![forbid(unsafe_code)]

mod args;
mod bench;
mod image;
mod lib_api;
mod roundbench;
mod rounds;
mod settings;
mod stat;
mod table;
mod xbzrle;

use args::{BenchOpts, Command, Parsed, RoundsOpts, StatOpts};
use bench::Subject;
use std::io::Write;
use std::process::ExitCode;

/// Exit status when every page round-tripped.
const EXIT_OK: u8 = 0;
/// Exit status when a page did not round-trip bit-exactly.
const EXIT_VERIFY: u8 = 1;
/// Exit status for a usage error or an unreadable or malformed image.
const EXIT_USAGE: u8 = 2;

/// Parses the command line, runs it, and exits with its status.
fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    ExitCode::from(run(&argv))
}

/// Runs the command line `argv` (without the program name); returns the
/// exit status.
fn run(argv: &[String]) -> u8 {
    let command = match args::parse(argv) {
        Parsed::Run(c) => c,
        Parsed::Print(text) => {
            print!("{text}");
            return EXIT_OK;
        }
        Parsed::Error(e) => {
            eprintln!("mecom: {e}\nTry `mecom --help`.");
            return EXIT_USAGE;
        }
    };
    let result = match command {
        Command::Stat(opts) => check_images(&opts.common).and_then(|()| run_stat(&opts)),
        Command::Bench(opts) => check_images(&opts.common).and_then(|()| run_bench(&opts)),
        Command::Rounds(opts) => check_dumps(&opts).and_then(|()| run_rounds(&opts)),
    };
    result.unwrap_or_else(|e| {
        eprintln!("mecom: {e}");
        EXIT_USAGE
    })
}

/// Opens every image once before any work starts, so a mistyped last name
/// fails at once rather than after the first images have run.
fn check_images(c: &args::Common) -> Result<(), String> {
    for path in &c.images {
        image::Image::open(path, c.page_size, c.limit)?;
    }
    Ok(())
}

/// Opens every round dump once (header only) before any work starts.
fn check_dumps(opts: &RoundsOpts) -> Result<(), String> {
    for path in &opts.files {
        rounds::open(path)?;
    }
    Ok(())
}

/// Writes `text` to standard output now (so results of earlier images show
/// while later ones run).
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`mecom ... | head`) is not worth a panic.
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// One image's JSON object, on one line.
fn to_json<T: serde::Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_string(value).map_err(|e| format!("JSON output: {e}"))
}

/// Ends the JSON array after an error, so standard output stays valid JSON
/// (holding the images done before the error).
fn close_json(json: bool) {
    if json {
        emit("]\n");
    }
}

/// `mecom stat`.
fn run_stat(opts: &StatOpts) -> Result<u8, String> {
    let c = &opts.common;
    let mut stats = Vec::new();
    if c.json {
        emit("[");
    }
    for (i, path) in c.images.iter().enumerate() {
        let s = image::Image::open(path, c.page_size, c.limit)
            .and_then(|mut img| stat::stat_image(&mut img, c.page_size, opts.dup, c.quiet))
            .inspect_err(|_| close_json(c.json))?;
        if c.json {
            emit(&format!(
                "{}{}\n",
                if i > 0 { "," } else { "" },
                to_json(&stat::Json::new(&s))?
            ));
        }
        stats.push(s);
    }
    if c.json {
        emit("]\n");
    } else {
        emit(&stat::render(&stats));
    }
    Ok(EXIT_OK)
}

/// Today's date (UTC) as YYYY-MM-DD.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The CPU model and count, as far as the system tells.
fn host() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .map(|l| format!(", load average {l} at start"))
        })
        .unwrap_or_default();
    format!("{model}, {cpus} CPUs{load}")
}

/// `mecom bench`.
fn run_bench(opts: &BenchOpts) -> Result<u8, String> {
    let c = &opts.common;
    let subjects: Vec<Subject> = opts
        .settings
        .iter()
        .map(|&s| Subject::Cbc(s))
        .chain(opts.baselines.iter().map(|&b| Subject::Baseline(b)))
        .collect();
    if c.json {
        emit("[");
    } else {
        let build = if cfg!(debug_assertions) {
            " **debug build: timings are meaningless, use --release**"
        } else {
            ""
        };
        emit(&format!(
            "## mecom bench, {} on {}\n\n\
             mecom {}, libzstd {}; page size {} B, {} pages per frame, {}.{build}\n\
             ratio = compressed / original bytes (CBC: whole frames, headers and tables \
             included); MB/s = 1e6 bytes of uncompressed data per second, one thread, \
             compress or decompress calls only.\n\n",
            today(),
            host(),
            env!("CARGO_PKG_VERSION"),
            zstd::zstd_safe::version_string(),
            c.page_size,
            opts.batch,
            bench::runs_phrase(opts.repeat),
        ));
    }
    let (mut bad, mut checked, mut nonzero) = (0u64, 0u64, 0u64);
    for (i, path) in c.images.iter().enumerate() {
        let report =
            bench::bench_image(path, &subjects, opts).inspect_err(|_| close_json(c.json))?;
        bad += report.bad();
        checked += report.subjects.iter().map(|s| s.checked()).sum::<u64>();
        nonzero += report.nonzero();
        if c.json {
            emit(&format!(
                "{}{}\n",
                if i > 0 { "," } else { "" },
                to_json(&bench::Json::new(&report))?
            ));
        } else {
            emit(&bench::render(&report));
        }
    }
    if c.json {
        emit("]\n");
    } else if bad == 0 {
        emit(&format!(
            "Verification: every page verified. All {nonzero} non-zero pages round-tripped \
             bit-exactly with every codec in every run ({checked} page checks).\n"
        ));
    } else {
        emit(&format!(
            "Verification FAILED: {bad} of {checked} page checks did not round-trip.\n"
        ));
    }
    if bad > 0 {
        eprintln!("mecom: verification failed: {bad} of {checked} page checks did not round-trip");
        return Ok(EXIT_VERIFY);
    }
    Ok(EXIT_OK)
}

/// `mecom rounds`.
fn run_rounds(opts: &RoundsOpts) -> Result<u8, String> {
    if opts.json {
        emit("[");
    } else {
        let build = if cfg!(debug_assertions) {
            " **debug build: timings are meaningless, use --release**"
        } else {
            ""
        };
        emit(&format!(
            "## mecom rounds, {} on {}\n\n\
             mecom {}, libzstd {}; codecs: {}; MB/s = 1e6 bytes of new pages per second, \
             one thread, codec calls only.{build}\n\n",
            today(),
            host(),
            env!("CARGO_PKG_VERSION"),
            zstd::zstd_safe::version_string(),
            roundbench::CODECS.join(", "),
        ));
    }
    let (mut bad, mut checked) = (0u64, 0u64);
    for (i, path) in opts.files.iter().enumerate() {
        let rep = roundbench::bench_file(path, opts.repeat, opts.quiet)
            .inspect_err(|_| close_json(opts.json))?;
        bad += rep.bad();
        checked += rep.checked();
        if opts.json {
            emit(&format!(
                "{}{}\n",
                if i > 0 { "," } else { "" },
                to_json(&roundbench::Json::new(&rep))?
            ));
        } else {
            emit(&roundbench::render(&rep));
        }
    }
    if opts.json {
        emit("]\n");
    } else if bad == 0 {
        emit(&format!(
            "Verification: every page verified ({checked} page checks, bit-exact).\n"
        ));
    } else {
        emit(&format!(
            "Verification FAILED: {bad} of {checked} page checks did not round-trip.\n"
        ));
    }
    if bad > 0 {
        eprintln!("mecom: verification failed: {bad} of {checked} page checks did not round-trip");
        return Ok(EXIT_VERIFY);
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a command line on spaces.
    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    /// Help, usage errors and unreadable images give the documented statuses.
    #[test]
    fn exit_codes() {
        assert_eq!(run(&argv("--help")), EXIT_OK);
        assert_eq!(run(&argv("help stat")), EXIT_OK);
        assert_eq!(run(&argv("bench")), EXIT_USAGE);
        assert_eq!(
            run(&argv("stat -q /nonexistent/mecom-test-image")),
            EXIT_USAGE
        );
    }

    /// The date in the bench header is well-formed.
    #[test]
    fn dates_are_civil() {
        let d = today();
        assert_eq!(d.len(), 10);
        assert!(d.starts_with("20"), "{d}");
    }
}
