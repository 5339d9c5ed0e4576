//! The C ABI decode with arbitrary frames and page counts into a fake RAM
//! block: never PANIC, nothing written unless OK.  See props::ffi_decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mecom_fuzz::props;

fuzz_target!(|data: &[u8]| {
    props::ffi_decode(data);
});
