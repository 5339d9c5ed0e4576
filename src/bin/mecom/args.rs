//! Command-line parsing (hand-rolled, std only) and the help texts.

use crate::bench::{Baseline, Setting, BASELINES, SETTINGS};
use std::path::PathBuf;

/// Default pages per frame and per read batch.
pub const DEFAULT_BATCH: usize = 128;

/// Options every command takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// Page size in bytes.
    pub page_size: usize,
    /// No progress on standard error.
    pub quiet: bool,
    /// JSON instead of Markdown tables on standard output.
    pub json: bool,
    /// Read at most this many pages of each image.
    pub limit: Option<u64>,
    /// The images, in the order given.
    pub images: Vec<PathBuf>,
}

/// `mecom stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatOpts {
    /// Shared options.
    pub common: Common,
    /// Count duplicate pages (costs a hash set of the image's distinct pages).
    pub dup: bool,
}

/// `mecom bench`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOpts {
    /// Shared options.
    pub common: Common,
    /// CBC settings to run, in table order.
    pub settings: Vec<&'static Setting>,
    /// Baselines to run, in table order.
    pub baselines: Vec<&'static Baseline>,
    /// Runs over each image; timings are the median.
    pub repeat: usize,
    /// Non-zero pages per frame.
    pub batch: usize,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// General help, or help on one command.
    Help(Option<String>),
    /// The version.
    Version,
    /// Page statistics.
    Stat(StatOpts),
    /// Compression benchmark.
    Bench(BenchOpts),
}

/// Top-level help.
pub fn usage() -> String {
    format!(
        "mecom {} - characteristic-based compression of guest RAM pages (MECOM)

Usage:
  mecom stat  [OPTIONS] IMAGE...   page statistics (MECOM Table I)
  mecom bench [OPTIONS] IMAGE...   compress, decompress and verify with every setting
  mecom help [COMMAND]             help on a command
  mecom --version

IMAGE is a raw memory image (consecutive pages) or the same compressed with
zstd (.zst suffix or zstd magic); images are streamed, never loaded whole.

Exit status: 0 ok, 1 a page did not round-trip (bench), 2 usage or input error.
Run `mecom help stat` or `mecom help bench` for the options.
",
        env!("CARGO_PKG_VERSION")
    )
}

/// Help on one command, or `None` if there is no such command.
pub fn command_help(cmd: &str) -> Option<String> {
    /// Options shared by every command.
    const COMMON: &str = "  --page-size N    page size in bytes, a power of two 4096..65536
                   (default 4096; 4k, 64K accepted)
  --limit N        read at most N pages of each image
  --json           one JSON array on stdout, one object per image,
                   instead of Markdown tables
  -q, --quiet      no progress on stderr
  -h, --help       this help
";
    match cmd {
        "stat" => Some(format!(
            "mecom stat [OPTIONS] IMAGE...

Per image: pages, all-zero pages, word-similarity zones of the non-zero pages
(similar = zero, exact or same upper 22 bits against a 16-entry dictionary,
over every word of the page), sparse pages (>= 90 % zero bytes), same-fill
pages, duplicate pages (xxh3-64 seen earlier in the image), and the bytes the
sparse pages take as (u16 offset, u32 value) pairs against mecom's runs.

Options:
{COMMON}  --no-dup         skip the duplicate count (it keeps 8 bytes per distinct
                   non-zero page in a hash set: about 16 bytes/page with table overhead)
"
        )),
        "bench" => {
            let mut settings = String::new();
            for s in SETTINGS {
                settings.push_str(&format!("  {:<14} {}\n", s.name, s.about));
            }
            let mut baselines = String::new();
            for b in BASELINES {
                baselines.push_str(&format!("  {:<14} {}\n", b.name, b.about));
            }
            Some(format!(
                "mecom bench [OPTIONS] IMAGE...

For each image, takes its non-zero pages (QEMU drops all-zero pages before the
compressor sees them) in image order, batches them into frames, and for every
CBC setting and baseline compresses, decompresses and verifies every page
bit-exactly.  Reports ratio (compressed/original bytes, CBC frame headers and
tables included), compress and decompress MB/s (1 MB = 1e6 bytes of
uncompressed data, one thread, codec calls only, no I/O) as the median of
--repeat runs, and the pages and bytes per method CBC chose.

Options:
{COMMON}  --settings LIST  comma-separated CBC settings, `all` (default) or `none`
  --baselines LIST comma-separated baselines, `all` (default) or `none`
  --repeat N       runs over each image; timings are the median (default 3)
  --batch N        non-zero pages per frame, 1..=1024 (default {DEFAULT_BATCH})

CBC settings:
{settings}
Baselines (each page or batch compressed on its own, same pages, same run):
{baselines}"
            ))
        }
        _ => None,
    }
}

/// Parses a count such as `4096`, `4k` or `64K` (k = 1024).
fn parse_count(opt: &str, value: &str) -> Result<u64, String> {
    let (digits, mult) = match value.strip_suffix(['k', 'K']) {
        Some(d) => (d, 1024),
        None => (value, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{opt}: `{value}` is not a number"))
}

/// Looks up a comma-separated list of names in `table`.
fn parse_list<T>(
    opt: &str,
    value: &str,
    table: &'static [T],
    name: fn(&T) -> &str,
) -> Result<Vec<&'static T>, String> {
    match value {
        "all" => return Ok(table.iter().collect()),
        "none" => return Ok(Vec::new()),
        _ => {}
    }
    let mut picked = vec![false; table.len()];
    for want in value.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let i = table.iter().position(|t| name(t) == want).ok_or_else(|| {
            let known: Vec<&str> = table.iter().map(name).collect();
            format!("{opt}: unknown name `{want}` (known: {})", known.join(", "))
        })?;
        picked[i] = true;
    }
    Ok(table
        .iter()
        .zip(picked)
        .filter_map(|(t, p)| p.then_some(t))
        .collect())
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let Some((cmd, rest)) = args.split_first() else {
        return Ok(Command::Help(None));
    };
    let cmd = cmd.as_str();
    match cmd {
        "-h" | "--help" => return Ok(Command::Help(None)),
        "-V" | "--version" => return Ok(Command::Version),
        "help" => {
            return match rest {
                [] => Ok(Command::Help(None)),
                [c] if command_help(c).is_some() => Ok(Command::Help(Some(c.clone()))),
                [c] => Err(format!("help: unknown command `{c}`")),
                _ => Err("help takes at most one command".to_string()),
            }
        }
        "stat" | "bench" => {}
        c if c.starts_with('-') => return Err(format!("unknown option `{c}` before the command")),
        c => return Err(format!("unknown command `{c}`")),
    }

    let mut common = Common {
        page_size: 4096,
        quiet: false,
        json: false,
        limit: None,
        images: Vec::new(),
    };
    let mut dup = true;
    let mut settings: Vec<&'static Setting> = SETTINGS.iter().collect();
    let mut baselines: Vec<&'static Baseline> = BASELINES.iter().collect();
    let mut repeat = 3usize;
    let mut batch = DEFAULT_BATCH;

    let mut it = rest.iter();
    let mut only_images = false;
    while let Some(arg) = it.next() {
        if only_images || !arg.starts_with('-') || arg == "-" {
            common.images.push(PathBuf::from(arg));
            continue;
        }
        if arg == "--" {
            only_images = true;
            continue;
        }
        let (opt, inline) = match arg.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let bench_only = |o: &str| -> Result<(), String> {
            if cmd == "bench" {
                Ok(())
            } else {
                Err(format!("{o} is a bench option"))
            }
        };
        let takes_value = matches!(
            opt,
            "--page-size" | "--limit" | "--settings" | "--baselines" | "--repeat" | "--batch"
        );
        let value = if takes_value {
            match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{opt} needs a value"))?,
            }
        } else {
            if inline.is_some() {
                return Err(format!("{opt} takes no value"));
            }
            String::new()
        };
        match opt {
            "-h" | "--help" => return Ok(Command::Help(Some(cmd.to_string()))),
            "-q" | "--quiet" => common.quiet = true,
            "--json" => common.json = true,
            "--no-dup" if cmd == "stat" => dup = false,
            "--page-size" => {
                let ps = parse_count(opt, &value)?;
                if !ps.is_power_of_two() || !(4096..=65536).contains(&ps) {
                    return Err(format!(
                        "--page-size: {ps} is not a power of two from 4096 to 65536"
                    ));
                }
                common.page_size = ps as usize;
            }
            "--limit" => {
                let n = parse_count(opt, &value)?;
                if n == 0 {
                    return Err("--limit: must be at least 1".to_string());
                }
                common.limit = Some(n);
            }
            "--settings" => {
                bench_only(opt)?;
                settings = parse_list(opt, &value, SETTINGS, |s| s.name)?;
            }
            "--baselines" => {
                bench_only(opt)?;
                baselines = parse_list(opt, &value, BASELINES, |b| b.name)?;
            }
            "--repeat" => {
                bench_only(opt)?;
                repeat = parse_count(opt, &value)?
                    .try_into()
                    .ok()
                    .filter(|&r: &usize| (1..=1000).contains(&r))
                    .ok_or("--repeat: must be 1..=1000")?;
            }
            "--batch" => {
                bench_only(opt)?;
                batch = parse_count(opt, &value)?
                    .try_into()
                    .ok()
                    .filter(|&b: &usize| (1..=1024).contains(&b))
                    .ok_or("--batch: must be 1..=1024")?;
            }
            o => return Err(format!("{cmd}: unknown option `{o}`")),
        }
    }
    if common.images.is_empty() {
        return Err(format!("{cmd}: no IMAGE given"));
    }
    if common.images.iter().any(|p| p.as_os_str() == "-") {
        return Err(format!(
            "{cmd}: reading an image from stdin is not supported"
        ));
    }
    Ok(match cmd {
        "stat" => Command::Stat(StatOpts { common, dup }),
        _ => {
            if settings.is_empty() && baselines.is_empty() {
                return Err(
                    "bench: --settings none and --baselines none leave nothing to run".into(),
                );
            }
            Command::Bench(BenchOpts {
                common,
                settings,
                baselines,
                repeat,
                batch,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a command line split on spaces.
    fn p(args: &str) -> Result<Command, String> {
        let v: Vec<String> = args.split_whitespace().map(String::from).collect();
        parse(&v)
    }

    /// Help and version forms parse.
    #[test]
    fn help_and_version() {
        assert_eq!(p(""), Ok(Command::Help(None)));
        assert_eq!(p("--help"), Ok(Command::Help(None)));
        assert_eq!(p("help bench"), Ok(Command::Help(Some("bench".into()))));
        assert_eq!(p("stat -h"), Ok(Command::Help(Some("stat".into()))));
        assert_eq!(p("-V"), Ok(Command::Version));
        assert!(p("help nope").is_err());
        assert!(command_help("bench").unwrap().contains("adaptive-10g"));
    }

    /// Every stat option, `=` values, `k` suffixes and `--`.
    #[test]
    fn stat_options() {
        let Ok(Command::Stat(s)) = p("stat --page-size=64k -q a.raw --no-dup --json -- -b.raw")
        else {
            panic!()
        };
        assert_eq!(s.common.page_size, 65536);
        assert!(s.common.quiet && s.common.json && !s.dup);
        assert_eq!(
            s.common.images,
            vec![PathBuf::from("a.raw"), PathBuf::from("-b.raw")]
        );
    }

    /// Bench lists keep table order; defaults are as documented.
    #[test]
    fn bench_options() {
        let Ok(Command::Bench(b)) =
            p("bench x --settings ratio,fast --baselines none --repeat 5 --batch 64 --limit 1000")
        else {
            panic!()
        };
        // Table order, not command-line order.
        let names: Vec<&str> = b.settings.iter().map(|s| s.name).collect();
        assert_eq!(names, ["fast", "ratio"]);
        assert!(b.baselines.is_empty());
        assert_eq!((b.repeat, b.batch, b.common.limit), (5, 64, Some(1000)));
        let Ok(Command::Bench(b)) = p("bench x") else {
            panic!()
        };
        assert_eq!(b.settings.len(), SETTINGS.len());
        assert_eq!(b.baselines.len(), BASELINES.len());
        assert_eq!((b.repeat, b.batch), (3, DEFAULT_BATCH));
    }

    /// Malformed command lines are refused with a message.
    #[test]
    fn usage_errors() {
        for bad in [
            "frobnicate x",
            "--json stat x",
            "stat",
            "stat x --page-size 4097",
            "stat x --page-size 2048",
            "stat x --page-size",
            "stat x --settings fast",
            "stat x --bogus",
            "stat x --json=1",
            "bench x --settings nope",
            "bench x --repeat 0",
            "bench x --batch 1025",
            "bench x --settings none --baselines none",
            "bench -",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
        let err = p("bench x --settings fast,nope").unwrap_err();
        assert!(err.contains("nope") && err.contains("adaptive-1g"), "{err}");
    }
}
