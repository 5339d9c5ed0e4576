//! Arbitrary bytes into every page codec's decoder (4 KiB and 8 KiB pages):
//! never panics.  See props::codec_decoders.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mecom_fuzz::props;

fuzz_target!(|data: &[u8]| {
    props::codec_decoders(data);
});
