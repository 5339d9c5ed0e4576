//! The high-ratio tier: one zstd frame over a group of pages.
//!
//! Why groups and not single pages: zstd's ratio on one 4 KiB page is held
//! back by its tiny window; over a group it finds the repeats between pages
//! that QEMU's own multifd-zstd exploits across a whole packet.  The group
//! size is a policy choice; the wire format allows any size from 1 page to a
//! whole frame.

#![forbid(unsafe_code)]

use super::DecodeResult;
use std::io;

/// A reusable zstd compression context.
pub struct GroupEncoder {
    cctx: zstd::bulk::Compressor<'static>,
}

impl GroupEncoder {
    /// A context compressing at `level`.
    pub fn new(level: i32) -> io::Result<Self> {
        Ok(GroupEncoder {
            cctx: zstd::bulk::Compressor::new(level)?,
        })
    }

    /// Compresses `src` into `dst`; `None` when it does not fit.
    pub fn compress(&mut self, src: &[u8], dst: &mut [u8]) -> Option<usize> {
        self.cctx.compress_to_buffer(src, dst).ok()
    }
}

/// A reusable zstd decompression context with a bounded window.
pub struct GroupDecoder {
    dctx: zstd::bulk::Decompressor<'static>,
}

impl GroupDecoder {
    /// A context that refuses frames whose window exceeds `max_bytes`
    /// (rounded up to a power of two), so a hostile frame cannot make it
    /// allocate more than a group can legitimately need.
    pub fn new(max_bytes: usize) -> io::Result<Self> {
        let mut dctx = zstd::bulk::Decompressor::new()?;
        let log = max_bytes.next_power_of_two().trailing_zeros().clamp(10, 31);
        dctx.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(log))?;
        Ok(GroupDecoder { dctx })
    }

    /// Decompresses `src`, which must fill `dst` exactly.
    pub fn decompress(&mut self, src: &[u8], dst: &mut [u8]) -> DecodeResult {
        match self.dctx.decompress_to_buffer(src, dst) {
            Ok(n) if n == dst.len() => Ok(()),
            Ok(_) => Err("zstd group is shorter than its pages"),
            Err(_) => Err("zstd group is malformed or longer than its pages"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_round_trip_and_must_fill_exactly() {
        let src: Vec<u8> = (0..3 * 4096u32).map(|i| (i % 251) as u8).collect();
        let mut enc = GroupEncoder::new(1).unwrap();
        let mut z = vec![0u8; 20000];
        let n = enc.compress(&src, &mut z).unwrap();
        assert!(n < 2000);
        let mut dec = GroupDecoder::new(3 * 4096).unwrap();
        let mut back = vec![0u8; src.len()];
        dec.decompress(&z[..n], &mut back).unwrap();
        assert_eq!(back, src);
        let mut big = vec![0u8; src.len() + 4096];
        assert!(dec.decompress(&z[..n], &mut big).is_err());
        let mut small = vec![0u8; 4096];
        assert!(dec.decompress(&z[..n], &mut small).is_err());
        assert!(dec.decompress(&z[..n / 2], &mut back).is_err());
        assert!(enc.compress(&src, &mut z[..4]).is_none());
    }
}
