//! Support for mecom's fuzz targets: the properties (shared with
//! `tests/fuzz_regressions.rs`) and the `arbitrary` side of the generators.

pub mod props;

use arbitrary::Unstructured;
use props::Source;
use std::sync::OnceLock;

/// [`Source`] over libFuzzer's input, through `arbitrary`.  Once the input
/// is used up every choice is 0 (the smallest case).
pub struct Arb<'a, 'b>(pub &'a mut Unstructured<'b>);

impl Source for Arb<'_, '_> {
    fn byte(&mut self) -> u8 {
        self.0.arbitrary::<u8>().unwrap_or(0)
    }
    fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        self.0.int_in_range(0..=n - 1).unwrap_or(0)
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1).min(self.0.len());
        self.0.bytes(len).map(<[u8]>::to_vec).unwrap_or_default()
    }
}

/// When `MECOM_FUZZ_CASE_OUT` names a file, a structured target writes the
/// case its input generated there before checking it (scripts/fuzz.sh uses
/// this to keep a crash as a replayable case file).
pub fn save_case(case: impl FnOnce() -> Vec<u8>) {
    static OUT: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    if let Some(path) = OUT.get_or_init(|| std::env::var_os("MECOM_FUZZ_CASE_OUT").map(Into::into))
    {
        std::fs::write(path, case()).expect("write MECOM_FUZZ_CASE_OUT");
    }
}
