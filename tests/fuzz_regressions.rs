//! The fuzz targets' properties on the stable test harness (no libFuzzer):
//!
//! - every file in `tests/data/fuzz/` — a crash a fuzz run found, kept by
//!   `scripts/fuzz.sh` as `<target>-<hash>` (the raw libFuzzer input) and,
//!   for the structured targets, `<target>-<hash>.case` (the frames and pages
//!   the input generated) — goes through its target's property, so a fixed
//!   crash stays fixed;
//! - the checked-in seeds of the raw-input targets (`fuzz/seeds/`), which are
//!   real frames and payloads: each must decode, and be checked as decoded;
//! - structured and round-trip cases from the shared generator with a fixed
//!   seed, so those properties run on every `cargo test` too.
//!
//! The properties live in `fuzz/src/props.rs`, shared with the fuzz targets;
//! see docs/FUZZING.md.

#[path = "../fuzz/src/props.rs"]
mod props;

use props::{Outcome, Rng};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("read dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `target`'s property on `path`; the panic text on failure.
fn run(target: &str, path: &Path) -> Result<Outcome, String> {
    let data = std::fs::read(path).expect("read input");
    catch_unwind(AssertUnwindSafe(|| props::run_file(target, &data))).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

/// The target a regression file belongs to: its name is `<target>-...`.
fn target_of(name: &str) -> Option<&'static str> {
    props::TARGETS.into_iter().find(|t| {
        name.strip_prefix(t)
            .is_some_and(|rest| rest.starts_with('-'))
    })
}

#[test]
fn fuzz_findings_stay_fixed() {
    let dir = root().join("tests/data/fuzz");
    let mut failures = Vec::new();
    let mut replayed = 0;
    for path in files_in(&dir) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("README") || name.starts_with('.') {
            continue;
        }
        let target = target_of(&name)
            .unwrap_or_else(|| panic!("{name}: not named <target>-<hash> after a fuzz target"));
        if props::CASE_TARGETS.contains(&target) && !name.ends_with(".case") {
            // The raw input only reproduces with the fuzz build's generator;
            // its case file is what this test replays.
            let case = path.with_file_name(format!("{name}.case"));
            assert!(case.is_file(), "{name}: no {name}.case beside it");
            continue;
        }
        replayed += 1;
        if let Err(why) = run(target, &path) {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {replayed} fuzz regressions fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn checked_in_seeds_decode_and_hold_the_decode_properties() {
    for target in ["decode_frame", "ffi_decode", "codec_decoders"] {
        let seeds = files_in(&root().join("fuzz/seeds").join(target));
        assert!(!seeds.is_empty(), "no seeds for {target}");
        for path in seeds {
            // Seeds are real frames (and codec payloads) of real pages: each
            // decodes, and the decoded result passed the property's checks.
            assert_eq!(
                run(target, &path),
                Ok(Outcome::Decoded),
                "{target}: seed {}",
                path.display()
            );
        }
    }
}

#[test]
fn corrupted_seed_frames_are_rejected_without_writing() {
    // Every single-byte change of the header and table of a seed frame,
    // through the same property: rejected or identical, never written on
    // failure.  A cheap, deterministic slice of what the fuzzer does.
    let seeds = files_in(&root().join("fuzz/seeds/decode_frame"));
    let mut rejected = 0;
    for path in seeds.iter().take(4) {
        let seed = std::fs::read(path).unwrap();
        let table_end =
            (1 + 32 + 4 * usize::from(u16::from_le_bytes([seed[7], seed[8]]))).min(seed.len());
        for at in 1..table_end {
            for delta in [1u8, 0x80] {
                let mut input = seed.clone();
                input[at] = input[at].wrapping_add(delta);
                if props::decode_frame(&input) == Outcome::Rejected {
                    rejected += 1;
                }
            }
        }
    }
    assert!(rejected > 100, "only {rejected} corruptions rejected");
}

#[test]
fn generated_structured_cases_hold() {
    let (mut decoded, mut must) = (0, 0);
    for seed in 0..150 {
        let case = props::gen_structured(&mut Rng::new(seed));
        let bytes = case.to_bytes();
        assert_eq!(
            props::StructuredCase::from_bytes(&bytes).as_ref(),
            Some(&case),
            "case file round trip"
        );
        if props::check_structured(&case) == Outcome::Decoded {
            decoded += 1;
        }
        must += usize::from(case.must_succeed);
    }
    // Some cases are unmutated (and were required to decode fully), and
    // some mutated ones still decode (to their original pages).
    assert!(
        must > 10 && decoded > must,
        "{must} unmutated, {decoded} decoded"
    );
}

#[test]
fn generated_roundtrip_cases_hold() {
    for seed in 0..60 {
        let case = props::gen_roundtrip(&mut Rng::new(seed));
        assert_eq!(
            props::RoundtripCase::from_bytes(&case.to_bytes()).as_ref(),
            Some(&case),
            "case file round trip"
        );
        assert_eq!(props::check_roundtrip(&case), Outcome::Decoded);
    }
}

#[test]
fn sparse_payloads_are_canonical() {
    // One page, two spellings: the fuzzer found a run with a zero word
    // inside, which the encoder would write as two runs.  The decoder must
    // reject it, so every accepted sparse payload is the encoder's own.
    let payload =
        std::fs::read(root().join("tests/data/fuzz/codec_decoders-sparse-zero-inside-run"))
            .expect("reproducer");
    let mut page = vec![0u8; 4096];
    assert_eq!(
        mecom::codecs::sparse::decode(&payload, &mut page),
        Err("zero word inside a run")
    );
}
