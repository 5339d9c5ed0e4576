//! The high-ratio tier: one zstd stream per channel.
//!
//! Why a stream: zstd's ratio on one 4 KiB page is held back by its tiny
//! window, and even a frame of 128 pages starts cold.  QEMU's multifd-zstd
//! keeps one stream per channel, so every packet compresses against the
//! ones before it; so does this tier.  The pages of a frame routed to zstd
//! form a group; the group is the stream's next piece, flushed, so the
//! destination, which decodes a channel's frames in sequence order, can
//! decode each group as it arrives.
//!
//! A group's payload is one flags byte, then the zstd bytes.  Flag
//! [`RESTART`]: the group opens a new stream (a new zstd frame); the decoder
//! drops what it held.  The encoder restarts when a group does not fit in
//! its pages' room (those pages then take another codec): the stream then
//! holds bytes the destination never sees.  The decoder refuses a group
//! that continues a stream it does not hold ([`StreamError::Lost`]): its
//! first group, or any group after a frame that failed.

#![forbid(unsafe_code)]

use std::io;
use zstd::zstd_safe::{
    zstd_sys::ZSTD_EndDirective, CCtx, CParameter, DCtx, DParameter, InBuffer, OutBuffer,
    ResetDirective,
};

/// log2 of the stream window, both ways: the decoder refuses a larger one,
/// so a hostile stream cannot make it allocate more.  512 KiB, as QEMU's
/// zstd at level 1 uses: the packet before the current one of a 128-page
/// channel.  (1 MiB gave the same ratio on the corpus, 5 % slower.)
pub(crate) const WINDOW_LOG: u32 = 19;
/// Flags bit: this group opens a new stream.
pub(crate) const RESTART: u8 = 1;
/// Payload bytes before the zstd bytes.
pub(crate) const FLAGS_LEN: usize = 1;

/// The compressing end of a channel's stream.
pub struct StreamEncoder {
    cctx: CCtx<'static>,
    level: i32,
    /// Whether the next group opens a new stream.
    restart: bool,
}

impl StreamEncoder {
    /// A stream compressing at `level`.
    pub fn new(level: i32) -> io::Result<Self> {
        let fail = |_| io::Error::other("zstd context");
        let mut cctx = CCtx::try_create().ok_or_else(|| io::Error::other("zstd context"))?;
        cctx.set_parameter(CParameter::CompressionLevel(level))
            .map_err(fail)?;
        cctx.set_parameter(CParameter::WindowLog(WINDOW_LOG))
            .map_err(fail)?;
        Ok(StreamEncoder {
            cctx,
            level,
            restart: true,
        })
    }

    /// Compresses the next groups at `level`: a new level opens a new
    /// stream (zstd applies a level to a whole frame).
    pub fn set_level(&mut self, level: i32) {
        if level == self.level {
            return;
        }
        self.lose();
        // A level that cannot be set leaves the context poisoned; its
        // groups then fail to compress and take another codec.
        let _ = self.cctx.set_parameter(CParameter::CompressionLevel(level));
        self.level = level;
    }

    /// Compresses `parts`, in order, as the stream's next group into
    /// `dst`, flags byte included; `None` when it does not fit, and the
    /// next group then restarts the stream.  A group that was written must
    /// be sent: the stream's next group depends on it.  (zstd copies its
    /// input into the stream's window anyway, so pages scattered over a
    /// batch are handed over where they are, not gathered first.)
    pub fn compress<'a>(
        &mut self,
        parts: impl IntoIterator<Item = &'a [u8]>,
        dst: &mut [u8],
    ) -> Option<usize> {
        let (flags, body) = dst.split_first_mut()?;
        *flags = if self.restart { RESTART } else { 0 };
        let mut out = OutBuffer::around(body);
        let fed = parts
            .into_iter()
            .all(|part| self.feed(part, &mut out, ZSTD_EndDirective::ZSTD_e_continue));
        if fed && self.feed(&[], &mut out, ZSTD_EndDirective::ZSTD_e_flush) {
            self.restart = false;
            return Some(FLAGS_LEN + out.pos());
        }
        self.lose();
        None
    }

    /// Hands `src` to the stream with `directive`: whether all of it was
    /// taken (and, for a flush, flushed) before `out` filled up.
    fn feed(
        &mut self,
        src: &[u8],
        out: &mut OutBuffer<'_, [u8]>,
        directive: ZSTD_EndDirective,
    ) -> bool {
        let mut input = InBuffer::around(src);
        // Single-threaded, a call returns once the input is consumed (and
        // for a flush, flushed) or the output is full; the loop only guards
        // against a library that returns early.
        for _ in 0..4 {
            match self.cctx.compress_stream2(out, &mut input, directive) {
                Ok(0) if input.pos() == src.len() => return true,
                Ok(_)
                    if directive == ZSTD_EndDirective::ZSTD_e_continue
                        && input.pos() == src.len() =>
                {
                    return true
                }
                Ok(_) if out.pos() < out.capacity() => continue,
                _ => return false,
            }
        }
        false
    }

    /// Drops the stream: the next group opens a new one.
    fn lose(&mut self) {
        self.restart = true;
        // A reset that fails leaves the context poisoned; the next group
        // then fails to compress and its pages take another codec.
        let _ = self.cctx.reset(ResetDirective::SessionOnly);
    }
}

/// Why a group did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    /// The group continues a stream this decoder does not hold.
    Lost,
    /// The payload is not a group of exactly its pages.
    Corrupt(&'static str),
}

/// The decompressing end of a channel's stream.
pub struct StreamDecoder {
    dctx: DCtx<'static>,
    /// Whether the stream so far was decoded, so a group may continue it.
    held: bool,
}

impl StreamDecoder {
    /// A decoder that holds no stream yet.
    pub fn new() -> io::Result<Self> {
        let mut dctx = DCtx::try_create().ok_or_else(|| io::Error::other("zstd context"))?;
        dctx.set_parameter(DParameter::WindowLogMax(WINDOW_LOG))
            .map_err(|_| io::Error::other("zstd context"))?;
        Ok(StreamDecoder { dctx, held: false })
    }

    /// Forgets the stream: only a restarting group decodes next.  The
    /// caller says so when a frame failed after its group was decoded.
    pub fn lose(&mut self) {
        self.held = false;
    }

    /// Decodes the group payload `src`, which must fill `dst` exactly.
    pub fn decompress(&mut self, src: &[u8], dst: &mut [u8]) -> Result<(), StreamError> {
        let Some((&flags, body)) = src.split_first() else {
            return Err(StreamError::Corrupt("zstd group without its flags"));
        };
        if flags & !RESTART != 0 {
            return Err(StreamError::Corrupt("zstd group with unknown flags"));
        }
        if flags & RESTART != 0 {
            self.dctx
                .reset(ResetDirective::SessionOnly)
                .map_err(|_| StreamError::Corrupt("zstd stream could not restart"))?;
        } else if !self.held {
            return Err(StreamError::Lost);
        }
        // Whatever happens below, a failed group leaves the stream
        // somewhere the encoder's is not.
        self.held = false;
        decode_exactly(&mut self.dctx, body, dst)?;
        self.held = true;
        Ok(())
    }
}

/// Feeds all of `body` to `dctx`, which must produce exactly `dst` and
/// hold nothing more.
fn decode_exactly(dctx: &mut DCtx, body: &[u8], dst: &mut [u8]) -> Result<(), StreamError> {
    let want = dst.len();
    let mut out = OutBuffer::around(dst);
    let mut input = InBuffer::around(body);
    loop {
        let before = (input.pos(), out.pos());
        dctx.decompress_stream(&mut out, &mut input)
            .map_err(|_| StreamError::Corrupt("zstd group is malformed"))?;
        match (input.pos() == body.len(), out.pos() == want) {
            (true, true) => break,
            (false, true) => {
                return Err(StreamError::Corrupt("zstd group is longer than its pages"))
            }
            _ if (input.pos(), out.pos()) == before => {
                return Err(StreamError::Corrupt("zstd group is shorter than its pages"))
            }
            _ => {}
        }
    }
    // Input consumed and pages full: the decoder may still hold decoded
    // bytes it had no room for.
    let mut spare = [0u8; 1];
    let mut more = OutBuffer::around(&mut spare[..]);
    let mut none = InBuffer::around(&[]);
    match dctx.decompress_stream(&mut more, &mut none) {
        Ok(_) if more.pos() == 0 => Ok(()),
        Ok(_) => Err(StreamError::Corrupt("zstd group is longer than its pages")),
        Err(_) => Err(StreamError::Corrupt("zstd group is malformed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(seed: u32, n: usize) -> Vec<u8> {
        (0..n as u32 * 4096)
            .map(|i| ((i % 251) ^ (i / 4096 * seed)) as u8)
            .collect()
    }

    #[test]
    fn groups_continue_the_stream_and_must_fill_exactly() {
        let (a, b) = (pages(7, 3), pages(7, 3));
        let mut enc = StreamEncoder::new(1).unwrap();
        let mut za = vec![0u8; a.len()];
        let na = enc.compress([&a[..]], &mut za).unwrap();
        assert_eq!(za[0], RESTART);
        let mut zb = vec![0u8; b.len()];
        let nb = enc.compress([&b[..]], &mut zb).unwrap();
        assert_eq!(zb[0], 0);
        // The second group repeats the first: the stream makes it tiny.
        assert!(nb < na / 4, "{nb} vs {na}");

        let mut dec = StreamDecoder::new().unwrap();
        let mut back = vec![0u8; a.len()];
        assert_eq!(
            dec.decompress(&zb[..nb], &mut back),
            Err(StreamError::Lost),
            "a continuation first"
        );
        dec.decompress(&za[..na], &mut back).unwrap();
        assert_eq!(back, a);
        dec.decompress(&zb[..nb], &mut back).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn a_wrong_size_loses_the_stream() {
        let a = pages(3, 2);
        let mut enc = StreamEncoder::new(1).unwrap();
        let mut z = vec![0u8; a.len()];
        let n = enc.compress([&a[..]], &mut z).unwrap();
        for len in [a.len() - 4096, a.len() + 4096] {
            let mut dec = StreamDecoder::new().unwrap();
            let mut back = vec![0u8; len];
            assert!(matches!(
                dec.decompress(&z[..n], &mut back),
                Err(StreamError::Corrupt(_))
            ));
            let mut exact = vec![0u8; a.len()];
            let cont = [0u8, 1, 2];
            assert_eq!(dec.decompress(&cont, &mut exact), Err(StreamError::Lost));
        }
        let mut dec = StreamDecoder::new().unwrap();
        let mut back = vec![0u8; a.len()];
        assert!(dec.decompress(&z[..n / 2], &mut back).is_err());
        let mut bad_flags = z[..n].to_vec();
        bad_flags[0] |= 2;
        assert!(dec.decompress(&bad_flags, &mut back).is_err());
    }

    #[test]
    fn a_window_above_the_bound_is_refused() {
        let a = pages(9, 2);
        for (log, ok) in [(WINDOW_LOG, true), (WINDOW_LOG + 1, false)] {
            let mut cctx = CCtx::create();
            cctx.set_parameter(CParameter::WindowLog(log)).unwrap();
            let mut z = vec![0u8; a.len() + 64];
            z[0] = RESTART;
            let mut out = OutBuffer::around(&mut z[1..]);
            let mut input = InBuffer::around(&a);
            let left = cctx
                .compress_stream2(&mut out, &mut input, ZSTD_EndDirective::ZSTD_e_flush)
                .unwrap();
            assert_eq!(left, 0);
            let n = 1 + out.pos();
            let mut dec = StreamDecoder::new().unwrap();
            let mut back = vec![0u8; a.len()];
            assert_eq!(dec.decompress(&z[..n], &mut back).is_ok(), ok, "log {log}");
        }
    }

    #[test]
    fn a_new_level_restarts_the_stream() {
        let a = pages(11, 2);
        let mut enc = StreamEncoder::new(1).unwrap();
        let mut dec = StreamDecoder::new().unwrap();
        let mut back = vec![0u8; a.len()];
        for (level, flags) in [(1, RESTART), (1, 0), (6, RESTART), (6, 0)] {
            enc.set_level(level);
            let mut z = vec![0u8; a.len()];
            let n = enc.compress([&a[..]], &mut z).unwrap();
            assert_eq!(z[0], flags, "level {level}");
            dec.decompress(&z[..n], &mut back).unwrap();
            assert_eq!(back, a);
        }
    }

    #[test]
    fn a_group_that_does_not_fit_restarts_the_stream() {
        let a = pages(5, 2);
        let mut enc = StreamEncoder::new(1).unwrap();
        let mut z = vec![0u8; a.len()];
        enc.compress([&a[..]], &mut z).unwrap();
        assert!(enc.compress([&a[..]], &mut z[..2]).is_none());
        let n = enc.compress([&a[..]], &mut z).unwrap();
        assert_eq!(z[0], RESTART);
        let mut dec = StreamDecoder::new().unwrap();
        let mut back = vec![0u8; a.len()];
        dec.decompress(&z[..n], &mut back).unwrap();
        assert_eq!(back, a);
    }
}
