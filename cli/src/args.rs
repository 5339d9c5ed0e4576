//! The command line (clap derive), its value parsers and help texts.

use crate::settings::{Baseline, Setting, BASELINES, SETTINGS};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::ops::Deref;
use std::path::PathBuf;

/// Default pages per frame and per read batch.
pub const DEFAULT_BATCH: usize = 128;

/// Printed after the top-level help.
const ABOUT_IMAGES: &str = "\
IMAGE is a raw memory image (consecutive pages) or the same compressed with
zstd (.zst suffix or zstd magic); images are streamed, never loaded whole.

FILE (mecom rounds) is a round dump (docs/ROUNDS.md), raw or zstd-compressed.

Exit status: 0 ok, 1 a page did not round-trip (bench, rounds), 2 usage or
input error.
Run `mecom help stat`, `mecom help bench` or `mecom help rounds` for the options.";

/// mecom - characteristic-based compression of guest RAM pages (MECOM)
#[derive(Debug, Parser)]
#[command(
    name = "mecom",
    bin_name = "mecom",
    version,
    long_about = None,
    after_help = ABOUT_IMAGES,
    args_override_self = true,
    subcommand_value_name = "COMMAND"
)]
pub struct Cli {
    /// The command; none prints the help.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Page statistics (MECOM Table I)
    ///
    /// Per image: pages, all-zero pages, word-similarity zones of the non-zero
    /// pages (similar = zero, exact or same upper 22 bits against a 16-entry
    /// dictionary, over every word of the page), sparse pages (>= 90 % zero
    /// bytes), same-fill pages, duplicate pages (xxh3-64 seen earlier in the
    /// image), and the bytes the sparse pages take as (u16 offset, u32 value)
    /// pairs against mecom's runs.
    #[command(args_override_self = true)]
    Stat(StatOpts),
    /// Compress, decompress and verify with every setting
    ///
    /// For each image, takes its non-zero pages (QEMU drops all-zero pages
    /// before the compressor sees them) in image order, batches them into
    /// frames, and for every CBC setting and baseline compresses, decompresses
    /// and verifies every page bit-exactly.  Reports ratio (compressed/original
    /// bytes, CBC frame headers and tables included), compress and decompress
    /// MB/s (1 MB = 1e6 bytes of uncompressed data, one thread, codec calls
    /// only, no I/O) as the median of --repeat runs, and the pages and bytes
    /// per method CBC chose.
    #[command(args_override_self = true, after_help = bench_names())]
    Bench(BenchOpts),
    /// Delta and page codecs on the re-sent pages of round dumps
    ///
    /// Reads round dumps (docs/ROUNDS.md; raw or zstd-compressed): per
    /// dirty-sync round, the pages a migration re-sent with their previous
    /// and new versions.  Reports per round and in total the pages, the bytes
    /// in which new and previous versions differ (median, p90, mean), and for
    /// QEMU's XBZRLE (new against previous), LZ4 of new XOR previous, zstd-1
    /// of the new page alone and CBC `fast` on the new pages in frames of 128:
    /// encoded bytes per page and encode/decode MB/s (one thread, median of
    /// --repeat runs), every page decoded and verified bit-exactly.
    #[command(args_override_self = true)]
    Rounds(RoundsOpts),
}

/// `mecom rounds`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct RoundsOpts {
    /// No progress on stderr
    #[arg(short, long)]
    pub quiet: bool,
    /// One JSON array on stdout, one object per dump, instead of Markdown tables
    #[arg(long)]
    pub json: bool,
    /// Runs of every codec over each batch; timings are the median
    #[arg(long, value_name = "N", default_value = "3", value_parser = parse_repeat)]
    pub repeat: usize,
    /// The round dumps, in the order given.
    #[arg(value_name = "FILE", required = true, value_parser = parse_image)]
    pub files: Vec<PathBuf>,
}

/// Options every command takes.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct Common {
    /// Page size in bytes, a power of two 4096..65536 (4k, 64K accepted)
    #[arg(long, value_name = "N", default_value = "4096", value_parser = parse_page_size)]
    pub page_size: usize,
    /// No progress on stderr
    #[arg(short, long)]
    pub quiet: bool,
    /// One JSON array on stdout, one object per image, instead of Markdown tables
    #[arg(long)]
    pub json: bool,
    /// Read at most N pages of each image
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub limit: Option<u64>,
    /// The images, in the order given.
    #[arg(value_name = "IMAGE", required = true, value_parser = parse_image)]
    pub images: Vec<PathBuf>,
}

/// `mecom stat`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct StatOpts {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Skip the duplicate count (it keeps 8 bytes per distinct non-zero page
    /// in a hash set: about 16 bytes/page with table overhead)
    #[arg(long = "no-dup", action = clap::ArgAction::SetFalse)]
    pub dup: bool,
}

/// `mecom bench`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct BenchOpts {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Comma-separated CBC settings, `all` or `none`
    #[arg(long, value_name = "LIST", default_value = "all", value_parser = parse_settings)]
    pub settings: Picked<Setting>,
    /// Comma-separated baselines, `all` or `none`
    #[arg(long, value_name = "LIST", default_value = "all", value_parser = parse_baselines)]
    pub baselines: Picked<Baseline>,
    /// Runs over each image; timings are the median
    #[arg(long, value_name = "N", default_value = "3", value_parser = parse_repeat)]
    pub repeat: usize,
    /// Non-zero pages per frame, 1..=1024
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH, value_parser = parse_batch)]
    pub batch: usize,
}

/// Entries picked from one of the static tables, in table order.
#[derive(Debug, PartialEq, Eq)]
pub struct Picked<T: 'static>(pub Vec<&'static T>);

// Derived `Clone` would require `T: Clone`; the references are enough.
impl<T> Clone for Picked<T> {
    fn clone(&self) -> Self {
        Picked(self.0.clone())
    }
}

impl<T> Deref for Picked<T> {
    type Target = [&'static T];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// The names `--settings` and `--baselines` take, after the bench help.
fn bench_names() -> String {
    let mut out = String::from("Names for --settings LIST (CBC settings, in report order):\n");
    for s in SETTINGS {
        out.push_str(&format!("  {:<14} {}\n", s.name, s.about));
    }
    out.push_str(
        "\nNames for --baselines LIST (each page or batch compressed on its own, \
         same pages, same run):\n",
    );
    for b in BASELINES {
        out.push_str(&format!("  {:<14} {}\n", b.name, b.about));
    }
    out
}

/// Parses a count such as `4096`, `4k` or `64K` (k = 1024).
fn parse_count(value: &str) -> Result<u64, String> {
    let (digits, mult) = match value.strip_suffix(['k', 'K']) {
        Some(d) => (d, 1024),
        None => (value, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("`{value}` is not a number"))
}

/// `--page-size`: a power of two from 4096 to 65536.
fn parse_page_size(value: &str) -> Result<usize, String> {
    let ps = parse_count(value)?;
    if !ps.is_power_of_two() || !(4096..=65536).contains(&ps) {
        return Err(format!("{ps} is not a power of two from 4096 to 65536"));
    }
    Ok(ps as usize)
}

/// `--limit`: at least one page.
fn parse_limit(value: &str) -> Result<u64, String> {
    match parse_count(value)? {
        0 => Err("must be at least 1".to_string()),
        n => Ok(n),
    }
}

/// A count in `range`.
fn parse_in(value: &str, range: std::ops::RangeInclusive<usize>) -> Result<usize, String> {
    parse_count(value)?
        .try_into()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| format!("must be {}..={}", range.start(), range.end()))
}

/// `--repeat`: 1..=1000.
fn parse_repeat(value: &str) -> Result<usize, String> {
    parse_in(value, 1..=1000)
}

/// `--batch`: 1..=1024.
fn parse_batch(value: &str) -> Result<usize, String> {
    parse_in(value, 1..=1024)
}

/// An image name; `-` (standard input) is refused.
fn parse_image(value: &str) -> Result<PathBuf, String> {
    if value == "-" {
        return Err("reading an image from stdin is not supported".to_string());
    }
    Ok(PathBuf::from(value))
}

/// Looks up a comma-separated list of names in `table`.
fn parse_list<T>(
    value: &str,
    table: &'static [T],
    name: fn(&T) -> &str,
) -> Result<Picked<T>, String> {
    match value {
        "all" => return Ok(Picked(table.iter().collect())),
        "none" => return Ok(Picked(Vec::new())),
        _ => {}
    }
    let mut picked = vec![false; table.len()];
    for want in value.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let i = table.iter().position(|t| name(t) == want).ok_or_else(|| {
            let known: Vec<&str> = table.iter().map(name).collect();
            format!("unknown name `{want}` (known: {})", known.join(", "))
        })?;
        picked[i] = true;
    }
    Ok(Picked(
        table
            .iter()
            .zip(picked)
            .filter_map(|(t, p)| p.then_some(t))
            .collect(),
    ))
}

/// `--settings`.
fn parse_settings(value: &str) -> Result<Picked<Setting>, String> {
    parse_list(value, SETTINGS, |s| s.name)
}

/// `--baselines`.
fn parse_baselines(value: &str) -> Result<Picked<Baseline>, String> {
    parse_list(value, BASELINES, |b| b.name)
}

/// The outcome of parsing a command line.
#[derive(Debug)]
pub enum Parsed {
    /// A command to run.
    Run(Command),
    /// Help or version text for standard output (status 0).
    Print(String),
    /// A usage error, as one line (status 2).
    Error(String),
}

/// Parses the arguments after the program name.
pub fn parse(argv: &[String]) -> Parsed {
    let cli = match Cli::try_parse_from(
        std::iter::once("mecom").chain(argv.iter().map(String::as_str)),
    ) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => return Parsed::Print(e.render().to_string()),
        Err(e) => return Parsed::Error(one_line(&e, argv)),
    };
    match cli.command {
        None => Parsed::Print(Cli::command().render_help().to_string()),
        Some(Command::Bench(b)) if b.settings.is_empty() && b.baselines.is_empty() => {
            Parsed::Error("bench: --settings none and --baselines none leave nothing to run".into())
        }
        Some(command) => Parsed::Run(command),
    }
}

/// A clap error as one line, the way every other error of the tool reads.
fn one_line(e: &clap::Error, argv: &[String]) -> String {
    let command = argv
        .first()
        .filter(|c| matches!(c.as_str(), "stat" | "bench" | "rounds"))
        .map_or(String::new(), |c| format!("{c}: "));
    if e.kind() == ErrorKind::UnknownArgument {
        if let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) {
            let hint = match e.get(ContextKind::SuggestedArg) {
                Some(ContextValue::String(s)) => format!(" (did you mean `{s}`?)"),
                _ => String::new(),
            };
            return format!("{command}unknown option `{arg}`{hint}");
        }
    }
    // clap's first paragraph, without its `error: ` prefix and its usage and
    // tips (the caller points to `--help`).
    let text = e.render().to_string();
    let first: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let first = first.join(" ");
    format!(
        "{command}{}",
        first.strip_prefix("error: ").unwrap_or(&first)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a command line split on spaces.
    fn p(args: &str) -> Parsed {
        let v: Vec<String> = args.split_whitespace().map(String::from).collect();
        parse(&v)
    }

    /// The command of a valid command line.
    fn cmd(args: &str) -> Command {
        match p(args) {
            Parsed::Run(c) => c,
            other => panic!("{args}: {other:?}"),
        }
    }

    /// The help or version text a command line prints.
    fn printed(args: &str) -> String {
        match p(args) {
            Parsed::Print(s) => s,
            other => panic!("{args}: {other:?}"),
        }
    }

    /// The clap definition is consistent.
    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    /// Help and version forms parse.
    #[test]
    fn help_and_version() {
        assert!(printed("").contains("mecom help stat"));
        assert!(printed("--help").contains("Exit status"));
        assert!(printed("help bench").contains("--settings <LIST>"));
        assert!(printed("stat -h").contains("--no-dup"));
        assert_eq!(
            printed("-V").trim(),
            format!("mecom {}", env!("CARGO_PKG_VERSION"))
        );
        assert!(matches!(p("help nope"), Parsed::Error(_)));
        assert!(printed("help bench").contains("adaptive-10g"));
        assert!(printed("help rounds").contains("XBZRLE"));
    }

    /// `rounds` options and defaults.
    #[test]
    fn rounds_options() {
        let Command::Rounds(r) = cmd("rounds a.rd.zst b.rd -q --json --repeat 5") else {
            panic!()
        };
        assert!(r.quiet && r.json);
        assert_eq!(r.repeat, 5);
        assert_eq!(r.files.len(), 2);
        let Command::Rounds(r) = cmd("rounds a.rd") else {
            panic!()
        };
        assert!(!r.quiet && !r.json);
        assert_eq!(r.repeat, 3);
        for bad in [
            "rounds",
            "rounds -",
            "rounds x --repeat 0",
            "rounds x --batch 4",
        ] {
            assert!(matches!(p(bad), Parsed::Error(_)), "{bad}");
        }
    }

    /// Every stat option, `=` values, `k` suffixes and `--`.
    #[test]
    fn stat_options() {
        let Command::Stat(s) = cmd("stat --page-size=64k -q a.raw --no-dup --json -- -b.raw")
        else {
            panic!()
        };
        assert_eq!(s.common.page_size, 65536);
        assert!(s.common.quiet && s.common.json && !s.dup);
        assert_eq!(
            s.common.images,
            vec![PathBuf::from("a.raw"), PathBuf::from("-b.raw")]
        );
        let Command::Stat(s) = cmd("stat x") else {
            panic!()
        };
        assert!(s.dup && !s.common.quiet && !s.common.json);
        assert_eq!((s.common.page_size, s.common.limit), (4096, None));
    }

    /// Bench lists keep table order; defaults are as documented.
    #[test]
    fn bench_options() {
        let Command::Bench(b) = cmd(
            "bench x --settings ratio,fast --baselines none --repeat 5 --batch 64 --limit 1000",
        ) else {
            panic!()
        };
        // Table order, not command-line order.
        let names: Vec<&str> = b.settings.iter().map(|s| s.name).collect();
        assert_eq!(names, ["fast", "ratio"]);
        assert!(b.baselines.is_empty());
        assert_eq!((b.repeat, b.batch, b.common.limit), (5, 64, Some(1000)));
        let Command::Bench(b) = cmd("bench x") else {
            panic!()
        };
        assert_eq!(b.settings.len(), SETTINGS.len());
        assert_eq!(b.baselines.len(), BASELINES.len());
        assert_eq!((b.repeat, b.batch), (3, DEFAULT_BATCH));
        // The last of a repeated option wins.
        let Command::Bench(b) = cmd("bench x --repeat 2 --repeat 4 --json --json") else {
            panic!()
        };
        assert_eq!(b.repeat, 4);
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
            "stat x --limit 0",
            "bench x --settings nope",
            "bench x --repeat 0",
            "bench x --batch 1025",
            "bench x --settings none --baselines none",
            "bench -",
        ] {
            match p(bad) {
                Parsed::Error(e) => assert_eq!(e.lines().count(), 1, "{bad}: {e}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let Parsed::Error(err) = p("bench x --settings fast,nope") else {
            panic!()
        };
        assert!(err.contains("nope") && err.contains("adaptive-1g"), "{err}");
        let Parsed::Error(err) = p("bench x --frobnicate") else {
            panic!()
        };
        assert_eq!(err, "bench: unknown option `--frobnicate`");
    }
}
