//! Arbitrary bytes as a frame: never panics, writes only on success, and a
//! success is the frame's checksummed content.  See props::decode_frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mecom_fuzz::props;

fuzz_target!(|data: &[u8]| {
    props::decode_frame(data);
});
