//! Nearly valid frames: real frames of generated pages, then a few
//! mutations; whatever still decodes must decode to the original pages.
//! See props::gen_structured and props::check_structured.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use mecom_fuzz::{props, save_case, Arb};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let case = props::gen_structured(&mut Arb(&mut u));
    save_case(|| case.to_bytes());
    props::check_structured(&case);
});
