//! End-to-end tests of the `mecom` binary on small generated images written
//! to a temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Page size of the generated images.
const PS: usize = 4096;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    /// Creates `mecom-cli-TAG-PID` in the temp dir.
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("mecom-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// A path inside the directory.
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 300 pages: every tenth all zero, the rest cycling through fill, sparse,
/// small integers, pointers, text and random pages (so 270 non-zero pages,
/// three frames of 128 and one short frame).
fn image() -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let text = b"QEMU multifd sends pages in packets; MECOM compresses each by its kind. ";
    let mut img = Vec::with_capacity(300 * PS);
    for i in 0..300usize {
        let mut page = vec![0u8; PS];
        if i % 10 != 0 {
            match i % 6 {
                0 => page.copy_from_slice(&(i as u32 | 0x100).to_le_bytes().repeat(PS / 4)),
                1 => {
                    for k in 0..12 {
                        let at = (rnd() as usize % (PS / 4)) * 4;
                        page[at..at + 4].copy_from_slice(&(k + 1u32).to_le_bytes());
                    }
                }
                2 => {
                    for (w, c) in page.chunks_exact_mut(4).enumerate() {
                        c.copy_from_slice(&((w as u32 * 7 + i as u32) % 500).to_le_bytes());
                    }
                }
                3 => {
                    for c in page.chunks_exact_mut(8) {
                        let p = 0xffff_8880_0000_0000u64 + (rnd() % 0x10_0000) * 64;
                        c.copy_from_slice(&p.to_le_bytes());
                    }
                }
                4 => {
                    for (b, t) in page.iter_mut().zip(text.iter().cycle().skip(i)) {
                        *b = *t;
                    }
                }
                _ => {
                    for c in page.chunks_exact_mut(8) {
                        c.copy_from_slice(&rnd().to_le_bytes());
                    }
                }
            }
        }
        img.extend_from_slice(&page);
    }
    img
}

/// Runs the built `mecom` binary.
fn mecom(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mecom"))
        .args(args)
        .output()
        .expect("run mecom")
}

/// Lossy UTF-8.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A path as an argument.
fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `bench` on raw and zstd images verifies every page, in text and JSON.
#[test]
fn bench_verifies_every_page_of_raw_and_zstd_images() {
    let dir = TempDir::new("bench");
    let raw = dir.path("gen.raw");
    let zst = dir.path("gen.pages.zst");
    let img = image();
    std::fs::write(&raw, &img).unwrap();
    std::fs::write(&zst, zstd::stream::encode_all(img.as_slice(), 3).unwrap()).unwrap();

    let out = mecom(&["bench", "-q", "--repeat", "1", arg(&raw), arg(&zst)]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("every page verified"), "{stdout}");
    assert!(
        stdout.contains("All 540 non-zero pages round-tripped"),
        "{stdout}"
    );
    assert!(stdout.contains("30 all-zero"), "{stdout}");
    assert!(
        stdout.contains("in 3 frames of up to 128 pages"),
        "{stdout}"
    );
    for name in [
        "cbc fast ",
        "cbc adaptive-10g",
        "lz4_flex",
        "lzo1x-1",
        "zstd-1/page",
        "zstd-1/batch",
        "zstd-1/stream",
    ] {
        assert!(stdout.contains(name), "{name} missing:\n{stdout}");
    }
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert!(
        out.stderr.is_empty(),
        "-q must keep stderr quiet: {}",
        text(&out.stderr)
    );

    let out = mecom(&[
        "bench",
        "-q",
        "--json",
        "--repeat",
        "2",
        "--settings",
        "ratio",
        "--baselines",
        "lz4_flex",
        arg(&zst),
    ]);
    let json = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert!(json.starts_with("[{\"image\":"), "{json}");
    assert!(
        json.trim_end().ends_with('}') || json.trim_end().ends_with("}\n]"),
        "{json}"
    );
    assert!(json.contains("\"nonzero_pages\":270"), "{json}");
    assert!(
        json.contains("\"checked_pages\":540,\"bad_pages\":0"),
        "{json}"
    );
    assert!(json.contains("\"compress_ns_runs\":["), "{json}");
}

/// `stat` counts a generated image, in JSON and Markdown.
#[test]
fn stat_reports_table_one() {
    let dir = TempDir::new("stat");
    let raw = dir.path("gen.raw");
    std::fs::write(&raw, image()).unwrap();
    let out = mecom(&["stat", "-q", "--json", arg(&raw)]);
    let json = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert!(json.contains("\"pages\":300,\"zero_pages\":30,"), "{json}");
    assert!(json.contains("\"fill_pages\":40,"), "{json}");
    let out = mecom(&["stat", "-q", arg(&raw)]);
    let md = text(&out.stdout);
    assert!(md.contains("| sim 0-25 %"), "{md}");
    assert!(md.contains("gen.raw"), "{md}");
}

/// Missing, truncated and mislabelled images and bad options exit with 2 and say why.
#[test]
fn bad_input_fails_clearly() {
    let out = mecom(&["bench", "-q", "/nonexistent/mecom/no-such-image.raw"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("no-such-image.raw: cannot open"), "{err}");

    let dir = TempDir::new("bad");
    let short = dir.path("short.raw");
    std::fs::write(&short, vec![1u8; PS + 100]).unwrap();
    let out = mecom(&["stat", "-q", arg(&short)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("ends inside a page"),
        "{}",
        text(&out.stderr)
    );

    let fake = dir.path("fake.zst");
    std::fs::write(&fake, vec![1u8; PS]).unwrap();
    let out = mecom(&["stat", "-q", arg(&fake)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("zstd magic"),
        "{}",
        text(&out.stderr)
    );

    let out = mecom(&["bench", "--frobnicate", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown option `--frobnicate`"));

    let out = mecom(&["help", "bench"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("--settings LIST"));
}

/// A round dump (docs/ROUNDS.md) of 64 RAM pages: round 2 with 130 pages
/// would not fit, so 40 pages (words changed), round 3 final with 2 pages.
fn round_dump() -> Vec<u8> {
    let mut d = b"MECOMRDS".to_vec();
    for w in [1u32, PS as u32] {
        d.extend(w.to_le_bytes());
    }
    d.extend(64u64.to_le_bytes());
    d.extend(0u64.to_le_bytes());
    let img = image();
    let round = |d: &mut Vec<u8>, r: u32, from: u32, flags: u32, pages: &[u64]| {
        d.extend(b"RND\0");
        for w in [r, from, r, flags, 0] {
            d.extend(w.to_le_bytes());
        }
        for w in [pages.len() as u64, 5000, 0] {
            d.extend(w.to_le_bytes());
        }
        for &i in pages {
            let old = &img[i as usize * PS..(i as usize + 1) * PS];
            let mut new = old.to_vec();
            for k in (0..PS).step_by(64 + i as usize) {
                new[k] = new[k].wrapping_add(1);
            }
            d.extend(i.to_le_bytes());
            d.extend(old);
            d.extend(&new);
        }
    };
    round(&mut d, 2, 1, 0, &(0..40).collect::<Vec<u64>>());
    round(&mut d, 3, 2, 1, &[5, 63]);
    d.extend(b"END\0");
    d.extend(2u32.to_le_bytes());
    d.extend([0u8; 40]);
    d
}

/// `rounds` reads raw and zstd dumps, verifies every codec, and names a
/// cut dump's error.
#[test]
fn rounds_reads_dumps() {
    let dir = TempDir::new("rounds");
    let raw = dir.path("t.rd");
    let zst = dir.path("t.rd.zst");
    let dump = round_dump();
    std::fs::write(&raw, &dump).unwrap();
    std::fs::write(&zst, zstd::stream::encode_all(dump.as_slice(), 3).unwrap()).unwrap();

    let out = mecom(&["rounds", "-q", "--repeat", "1", arg(&raw), arg(&zst)]);
    let md = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{md}\n{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    for want in [
        "64 RAM pages of 4096 B, 2 rounds after the first; 42 re-sent pages",
        "| 3F ",
        "| xbzrle ",
        "| xor+lz4 ",
        "| zstd-1/page ",
        "| cbc fast ",
        "| cbc delta ",
        "| total ",
        "every page verified (420 page checks",
    ] {
        assert!(md.contains(want), "{want} missing:\n{md}");
    }
    assert!(!md.contains("FAILED"), "{md}");

    let out = mecom(&["rounds", "-q", "--json", "--repeat", "2", arg(&zst)]);
    let json = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert!(json.starts_with("[{\"file\":"), "{json}");
    assert!(
        json.contains("\"round\":3,\"sync_from\":2,\"sync_to\":3,\"final\":true"),
        "{json}"
    );
    assert!(json.contains("\"pages\":40,"), "{json}");
    assert!(json.contains("\"name\":\"xbzrle\""), "{json}");
    assert!(!json.contains("\"bad_pages\":1"), "{json}");

    let cut = dir.path("cut.rd");
    std::fs::write(&cut, &dump[..dump.len() - 48]).unwrap();
    let out = mecom(&["rounds", "-q", arg(&cut)]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("truncated: ends inside the round header"),
        "{err}"
    );
}
