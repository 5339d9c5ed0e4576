//! Generated pages and encoder configuration: encode then decode gives the
//! pages back.  See props::gen_roundtrip and props::check_roundtrip.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use mecom_fuzz::{props, save_case, Arb};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let case = props::gen_roundtrip(&mut Arb(&mut u));
    save_case(|| case.to_bytes());
    props::check_roundtrip(&case);
});
