//! The fuzz properties, shared by the cargo-fuzz targets (`fuzz/fuzz_targets/`)
//! and the stable regression test (`tests/fuzz_regressions.rs`, which includes
//! this file with `#[path]`).  It depends on std and mecom only (and on
//! `xxhash_rust`, which mecom itself depends on), so the test needs neither
//! libFuzzer nor `arbitrary`.
//!
//! Every property panics when it is violated; a panic is what libFuzzer
//! reports as a crash and what fails the regression test.  The properties:
//!
//! - decoders never panic and never write outside their output;
//! - a failed decode leaves the caller's output exactly as it was;
//! - a successful decode is the frame's checksummed content, nothing past it
//!   is written, and the same frame replayed on the channel is refused;
//! - a frame that decodes after any mutation decodes to the pages it was
//!   encoded from (no silent corruption);
//! - encode then decode gives back the pages.
//!
//! Inputs that need a generator (the structured targets) are built through
//! [`Source`], which the fuzz crate implements over `arbitrary::Unstructured`
//! and this file over a seeded xorshift ([`Rng`]).  The case a structured
//! input generates is concrete data ([`StructuredCase`], [`RoundtripCase`])
//! and serialises to a small file, so a crash is kept as that file and stays
//! replayable even when `arbitrary` or the generator changes.

#![allow(dead_code)]

use mecom::codecs;
use mecom::ffi;
use mecom::format::Header;
use mecom::{Config, Decoder, Encoder, LinkStats, LzCodec, Method, Mode};
use std::hint::black_box;

/// Every fuzz target, by the name of its binary (and of its corpus, seed and
/// regression-file prefix).
pub const TARGETS: [&str; 5] = [
    "decode_frame",
    "decode_frame_structured",
    "roundtrip",
    "codec_decoders",
    "ffi_decode",
];

/// Targets whose regression files are serialised cases, not raw inputs.
pub const CASE_TARGETS: [&str; 2] = ["decode_frame_structured", "roundtrip"];

/// What output buffers are filled with before a decode, to see what it wrote.
pub const SENTINEL: u8 = 0xA5;

/// What a property run saw (for the regression test's own bookkeeping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// At least one decode succeeded (and was checked).
    Decoded,
    /// Every decode failed (and left its output untouched).
    Rejected,
}

/// True when `buf` holds nothing but [`SENTINEL`].  Compares whole blocks
/// (one `memcmp` each), which matters under ASan.
fn untouched(buf: &[u8]) -> bool {
    static BLOCK: [u8; 4096] = [SENTINEL; 4096];
    buf.chunks(BLOCK.len()).all(|c| c == &BLOCK[..c.len()])
}

thread_local! {
    /// Decoders that never decoded a frame (so still expect sequence 0),
    /// kept between runs: making one costs more than a decode under ASan.
    static POOL: std::cell::RefCell<Vec<(Config, Decoder)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A decoder of `config` in its initial state (sequence 0).
fn fresh_decoder(config: &Config) -> Decoder {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        let i = pool.iter().position(|(c, _)| c == config);
        i.map(|i| pool.swap_remove(i).1)
    })
    .unwrap_or_else(|| Decoder::new(config.clone()).expect("valid decoder config"))
}

/// Gives back a decoder from [`fresh_decoder`] that has decoded nothing:
/// a failed decode changes no state a later decode can see.
fn recycle(config: &Config, dec: Decoder) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < 4 {
            pool.push((config.clone(), dec));
        }
    });
}

fn frame_checksum(frame: &[u8]) -> u64 {
    let mut c = [0u8; 8];
    c.copy_from_slice(&frame[24..32]);
    u64::from_le_bytes(c)
}

/// The checksum `n` decoded pages in `out` give: every page is covered.
fn pages_checksum(out: &[u8], n: usize, ps: usize) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&out[..n * ps])
}

/// Decodes `frame` in parts on a fresh decoder, the way QEMU's glue reads
/// a packet: the head, then each part [`Decoder::parts`] names, raw pages
/// straight into their place, the rest into the buffer after the head.
/// `None` when the frame is refused, or is not exactly as long as it
/// declares (the glue checks that before reading on).
fn decode_in_parts(config: &Config, frame: &[u8], pages: usize) -> Option<Vec<u8>> {
    let ps = config.page_size as usize;
    let header = Header::parse(frame).ok()?;
    let head = mecom::format::head_len(pages);
    if frame.len() != head + header.payload_len as usize {
        return None;
    }
    let mut dec = Decoder::new(config.clone()).expect("valid decoder config");
    let buffered = dec.begin_parts(&frame[..head], pages, None).ok()?;
    let mut out = vec![SENTINEL; pages * ps];
    let mut buf = frame[..head].to_vec();
    let mut at = head;
    assert!(
        dec.parts().len() <= mecom::max_parts(pages),
        "too many parts"
    );
    for part in dec.parts().to_vec() {
        match part {
            mecom::Part::Buffer { offset, len } => {
                assert_eq!(offset, buf.len(), "buffered parts are not back to back");
                buf.extend_from_slice(frame.get(at..at + len)?);
                at += len;
            }
            mecom::Part::Page { index } => {
                out[index * ps..(index + 1) * ps].copy_from_slice(frame.get(at..at + ps)?);
                at += ps;
            }
        }
    }
    assert_eq!(buf.len(), buffered, "begin_parts announced another length");
    assert_eq!(at, frame.len(), "parts do not add up to the frame");
    let mut slices: Vec<&mut [u8]> = out.chunks_exact_mut(ps).collect();
    dec.finish_parts(&buf, &mut slices).ok()?;
    Some(out)
}

// ---------------------------------------------------------------------------
// decode_frame: arbitrary bytes into Decoder::decode_into / Decoder::decode
// ---------------------------------------------------------------------------

/// The second decoder configuration the raw targets use.
pub fn big_page_config() -> Config {
    Config {
        page_size: 8192,
        max_pages: 16,
        ..Config::default()
    }
}

/// `data[0]` chooses how, `data[1..]` is the frame:
/// - bit 0: default config (4 KiB, 128 pages) or 8 KiB pages, 16 at most;
/// - bit 1: `decode_into` or `decode` with one slice per page;
/// - bit 2: half a page of slack after the output;
/// - bit 3: an output of `data[0] >> 4` pages instead of the frame's count.
pub fn decode_frame(data: &[u8]) -> Outcome {
    let Some((&sel, frame)) = data.split_first() else {
        return Outcome::Rejected;
    };
    let config = if sel & 1 == 0 {
        Config::default()
    } else {
        big_page_config()
    };
    let ps = config.page_size as usize;
    let max = config.max_pages;
    let mut dec = fresh_decoder(&config);
    let announced = Header::parse(frame)
        .map(|h| usize::from(h.page_count))
        .unwrap_or(1);
    let out_pages = if sel & 8 != 0 {
        usize::from(sel >> 4)
    } else {
        announced.min(max)
    };
    let slack = if sel & 4 != 0 { ps / 2 } else { 0 };
    let mut out = vec![SENTINEL; out_pages * ps + slack];

    let result = if sel & 2 == 0 {
        dec.decode_into(frame, &mut out)
    } else {
        let mut pages: Vec<&mut [u8]> = out.chunks_exact_mut(ps).collect();
        dec.decode(frame, &mut pages)
    };
    match result {
        Err(e) => {
            assert!(untouched(&out), "failed decode ({e}) wrote its output");
            recycle(&config, dec);
            Outcome::Rejected
        }
        Ok(info) => {
            let n = info.pages;
            assert!(n >= 1 && n <= max, "decoded {n} pages");
            assert!(n * ps <= out.len(), "decoded more pages than fit");
            assert_eq!(
                pages_checksum(&out, n, ps),
                frame_checksum(frame),
                "decoded pages do not match the frame's checksum"
            );
            // Read in parts, the frame gives the same pages.
            let parts = decode_in_parts(&config, frame, n).expect("a whole frame decodes in parts");
            assert!(parts == out[..n * ps], "decoded in parts to other pages");
            assert!(untouched(&out[n * ps..]), "decode wrote past its pages");
            for b in &out[..n * ps] {
                black_box(*b);
            }
            // The same frame again is a replay: the sequence check refuses it
            // and nothing is written.
            let before = out.clone();
            let again = if sel & 2 == 0 {
                dec.decode_into(frame, &mut out)
            } else {
                let mut pages: Vec<&mut [u8]> = out.chunks_exact_mut(ps).collect();
                dec.decode(frame, &mut pages)
            };
            assert!(again.is_err(), "a replayed frame decoded");
            assert!(out == before, "a refused replay wrote its output");
            Outcome::Decoded
        }
    }
}

// ---------------------------------------------------------------------------
// codec_decoders: arbitrary bytes into every page codec's decoder
// ---------------------------------------------------------------------------

type CodecDecode = fn(&[u8], &mut [u8]) -> Result<(), &'static str>;

/// The page codecs' decoders, by method name.
pub const CODECS: [(&str, CodecDecode); 4] = [
    ("sparse", codecs::sparse::decode),
    ("wkdm", codecs::wkdm::decode),
    ("lz4", codecs::lz4_decode),
    ("lzo", codecs::lzo_decode),
];

/// Encodes `page` with codec `name`, with no size limit.
fn codec_encode(name: &str, page: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; 2 * page.len() + 1024];
    let n = match name {
        "sparse" => codecs::sparse::encode(page, &mut out, usize::MAX)?,
        "wkdm" => codecs::wkdm::encode(page, &mut out, usize::MAX)?,
        "lz4" => codecs::lz4_encode(page, &mut out, usize::MAX)?,
        "lzo" => codecs::lzo_encode(page, &mut out, usize::MAX)?,
        _ => return None,
    };
    out.truncate(n);
    Some(out)
}

/// The delta decoders over `data` as the body, after the right base hash
/// (random bytes would almost never carry it) of a base page made from
/// the first byte: never panics; a page that decodes re-encodes as a delta
/// against the same base and decodes back to itself.  Returns whether one
/// decoded.
fn delta_decoders(data: &[u8], ps: usize) -> bool {
    use codecs::delta;
    let fill = data.first().copied().unwrap_or(0);
    let base: Vec<u8> = (0..ps).map(|i| fill.wrapping_add((i / 64) as u8)).collect();
    let mut src = xxhash_rust::xxh3::xxh3_64(&base).to_le_bytes().to_vec();
    src.extend_from_slice(data);
    let mut xor = vec![0u8; ps];
    let mut decoded = false;
    for method in [Method::DeltaSparse, Method::DeltaLz4] {
        let mut page = base.clone();
        if delta::decode(method, &src, &mut page, &mut xor).is_err() {
            continue;
        }
        decoded = true;
        let mut scratch = delta::DeltaScratch::new(ps);
        let mut out = vec![0u8; ps];
        if let Some((m, n)) = delta::encode(&page, &base, &mut out, ps - 1, &mut scratch) {
            let mut back = base.clone();
            let r = delta::decode(m, &out[..n], &mut back, &mut xor);
            assert!(r.is_ok(), "{m:?}: re-encoded delta does not apply: {r:?}");
            assert!(back == page, "{m:?}: re-encoded delta applies differently");
        }
    }
    decoded
}

/// Every codec decoder over `data`, into a 4 KiB and an 8 KiB page.  Never
/// panics; a page that decodes re-encodes and decodes back to itself.
pub fn codec_decoders(data: &[u8]) -> Outcome {
    let mut outcome = Outcome::Rejected;
    for ps in [4096usize, 8192] {
        for (name, decode) in CODECS {
            let mut page = vec![SENTINEL; ps];
            if decode(data, &mut page).is_err() {
                continue;
            }
            outcome = Outcome::Decoded;
            for b in &page {
                black_box(*b);
            }
            if let Some(enc) = codec_encode(name, &page) {
                let mut back = vec![SENTINEL; ps];
                let r = decode(&enc, &mut back);
                assert!(
                    r.is_ok(),
                    "{name}: re-encoding of a decoded page does not decode: {r:?}"
                );
                assert!(back == page, "{name}: re-encoded page decodes differently");
            }
        }
        if delta_decoders(data, ps) {
            outcome = Outcome::Decoded;
        }
        // A dedup reference: exactly its length, a page-aligned source;
        // one that parses is the encoding of what it parsed to.
        if let Ok((offset, hash)) = codecs::dedup::decode(data, ps) {
            assert_eq!(offset % ps as u64, 0, "dedup source not aligned");
            assert!(
                codecs::dedup::encode(offset, hash)[..] == data[..],
                "dedup reference re-encodes differently"
            );
            outcome = Outcome::Decoded;
        }
    }
    outcome
}

// ---------------------------------------------------------------------------
// ffi_decode: the C ABI decode into a fake RAM block
// ---------------------------------------------------------------------------

fn ffi_config() -> ffi::mecom_config {
    let mut cfg = std::mem::MaybeUninit::<ffi::mecom_config>::uninit();
    // SAFETY: a valid pointer to writable storage.
    unsafe { ffi::mecom_config_init(cfg.as_mut_ptr()) };
    // SAFETY: mecom_config_init wrote every field.
    unsafe { cfg.assume_init() }
}

/// Page offsets into a block of `slots + 1` pages for `n` pages, laid out
/// as `layout` says: contiguous, reversed, spread, or scattered with
/// repeats; bit 2 also shifts them off page alignment.
fn ffi_offsets(layout: u8, n: usize, slots: usize, ps: usize, salt: u64) -> Vec<u64> {
    let mut rng = Rng::new(u64::from(layout) ^ salt.rotate_left(17));
    let misalign = if layout & 4 != 0 {
        1 + rng.below(ps - 1)
    } else {
        0
    };
    (0..n)
        .map(|i| {
            let slot = match layout & 3 {
                0 => i,
                1 => n - 1 - i,
                2 => 2 * i + 1,
                _ => rng.below(slots),
            };
            (slot * ps + misalign) as u64
        })
        .collect()
}

/// `data[0]` gives the page count (1..=128), `data[1]` the layout of the
/// pages in the fake RAM block, `data[2..]` is the frame.  The FFI must
/// agree with the Rust decoder on success and on the status, never report a
/// panic, write exactly the decoded pages at their offsets on success and
/// nothing at all otherwise, and refuse the same frame a second time.
pub fn ffi_decode(data: &[u8]) -> Outcome {
    let [count, layout, frame @ ..] = data else {
        return Outcome::Rejected;
    };
    let n = 1 + usize::from(*count) % 128;
    let ps = ffi_config().page_size as usize;
    let slots = if layout & 2 != 0 { 2 * n } else { n };
    // A guard page, the slots (plus one for misaligned pages), a guard page.
    let mut block = vec![SENTINEL; (slots + 3) * ps];
    let offsets = ffi_offsets(*layout, n, slots, ps, frame.len() as u64);
    // Bit 3: decode against a placement (the packet header QEMU binds
    // every frame to), as QEMU's receive side always does.
    let block_name = b"pc.ram";
    let c_placement = ffi::mecom_placement {
        block: block_name.as_ptr(),
        block_len: block_name.len(),
        zero_offsets: std::ptr::null(),
        n_zero: 0,
    };
    let placement_ptr: *const ffi::mecom_placement = if layout & 8 != 0 {
        &c_placement
    } else {
        std::ptr::null()
    };

    let handle = FfiDecoder::fresh();
    let dec = handle.0;

    let decode = |block: &mut [u8]| {
        // SAFETY: `dec` is live and used by this thread only; `frame` is
        // `frame.len()` readable bytes; `offsets` holds `n` values; every
        // `host + offsets[i]` is at most `(slots - 1) * ps + ps - 1` bytes
        // into the `(slots + 1) * ps` bytes after the first guard page, so
        // each page is `ps` writable bytes of `block`, which does not
        // overlap `frame`; `placement_ptr` is NULL or points to
        // `c_placement`, whose name is `block_name` and which has no
        // zero pages.
        unsafe {
            ffi::mecom_decoder_decode(
                dec,
                frame.as_ptr(),
                frame.len(),
                block.as_mut_ptr().add(ps),
                block.len() - 2 * ps,
                offsets.as_ptr(),
                n as u32,
                placement_ptr,
            )
        }
    };
    let status = decode(&mut block);
    assert!(
        status != ffi::mecom_status::Panic && status != ffi::mecom_status::Poisoned,
        "the C ABI reported {status:?}"
    );
    // The path QEMU receives with: read in parts through the C ABI, it
    // decodes exactly when the whole frame does, to the same guest RAM.
    let mut parts_block = Vec::new();
    let parts_status = ffi_decode_in_parts(
        frame,
        n,
        &mut parts_block,
        block.len(),
        &offsets,
        ps,
        placement_ptr,
    );
    assert_eq!(
        parts_status == ffi::mecom_status::Ok,
        status == ffi::mecom_status::Ok,
        "in parts {parts_status:?}, whole {status:?}"
    );
    if status == ffi::mecom_status::Ok {
        assert!(parts_block == block, "read in parts, guest RAM differs");
    }
    // The header-only length check QEMU runs before reading a frame: never
    // a panic, and for a frame that decodes it is the frame's length.
    let mut declared = usize::MAX;
    // SAFETY: `frame` is `frame.len()` readable bytes; `declared` is ours.
    let len_status = unsafe { ffi::mecom_frame_len(frame.as_ptr(), frame.len(), &mut declared) };
    assert_ne!(
        len_status,
        ffi::mecom_status::Panic,
        "mecom_frame_len panicked"
    );
    if status == ffi::mecom_status::Ok {
        assert_eq!(len_status, ffi::mecom_status::Ok);
        assert_eq!(
            declared,
            frame.len(),
            "a decodable frame declares another length"
        );
    } else if len_status != ffi::mecom_status::Ok {
        assert_eq!(
            declared,
            usize::MAX,
            "mecom_frame_len wrote its output on failure"
        );
    }

    // The Rust API on the same frame is the reference.
    let config = Config::default();
    let mut reference = fresh_decoder(&config);
    let mut pages = vec![0u8; n * ps];
    // Bound, the reference decodes into a copy of the block between the
    // guard pages, where dedup pages find their sources as the C ABI's do.
    let mut ref_block = vec![SENTINEL; block.len() - 2 * ps];
    let expected = if placement_ptr.is_null() {
        let mut slices: Vec<&mut [u8]> = pages.chunks_exact_mut(ps).collect();
        reference.decode(frame, &mut slices)
    } else {
        let placement = mecom::Placement {
            block: block_name,
            offsets: &offsets,
            zero_offsets: &[],
        };
        reference.decode_in_block(frame, &placement, &mut ref_block)
    };
    // SAFETY: a live handle; the text is read before the next call on it.
    let text = unsafe { std::ffi::CStr::from_ptr(ffi::mecom_decoder_last_error(dec)) };
    black_box(text);
    match expected {
        Err(e) => {
            assert_eq!(status, ffi::mecom_status::from(&e), "status for {e}");
            assert!(
                untouched(&block),
                "failed decode ({status:?}) wrote guest RAM"
            );
            // Neither decoder advanced: both can serve the next input.
            recycle(&config, reference);
            handle.recycle();
            Outcome::Rejected
        }
        Ok(_) => {
            assert_eq!(status, ffi::mecom_status::Ok, "the Rust decoder accepted");
            let mut want = vec![SENTINEL; block.len()];
            if placement_ptr.is_null() {
                for (i, page) in pages.chunks_exact(ps).enumerate() {
                    let at = ps + offsets[i] as usize;
                    want[at..at + ps].copy_from_slice(page);
                }
            } else {
                want[ps..ps + ref_block.len()].copy_from_slice(&ref_block);
            }
            assert!(block == want, "guest RAM differs from the decoded pages");
            let again = decode(&mut block);
            assert!(
                again != ffi::mecom_status::Ok && again != ffi::mecom_status::Panic,
                "replayed frame: {again:?}"
            );
            assert!(block == want, "a refused replay wrote guest RAM");
            // Both decoders advanced; they are dropped, not kept.
            Outcome::Decoded
        }
    }
}

/// Reads `frame` (of `n` pages) through the C ABI the way QEMU's receive
/// glue does: the declared length against the packet's, the head, the
/// iovecs mecom_decoder_begin_parts() lays out (each checked to lie within
/// the buffer or one page of `block`, after its guard page), filled from
/// the frame in order, then mecom_decoder_finish_parts().  `block` is
/// made `block_len` bytes of [`SENTINEL`] once the frame's declared length
/// is its length (before that nothing can be written).  Returns the
/// first status that is not OK (a frame too short for its parts is
/// `Truncated`, as the glue's read would fail), or OK.
fn ffi_decode_in_parts(
    frame: &[u8],
    n: usize,
    block: &mut Vec<u8>,
    block_len: usize,
    offsets: &[u64],
    ps: usize,
    placement: *const ffi::mecom_placement,
) -> ffi::mecom_status {
    let mut declared = 0;
    // SAFETY: `frame` is `frame.len()` readable bytes; `declared` is ours.
    let st = unsafe { ffi::mecom_frame_len(frame.as_ptr(), frame.len(), &mut declared) };
    if st != ffi::mecom_status::Ok {
        return st;
    }
    let head = ffi::mecom_frame_head_len(n as u32);
    if declared != frame.len() || frame.len() < head {
        return ffi::mecom_status::LengthMismatch;
    }
    block.clear();
    block.resize(block_len, SENTINEL);
    let handle = FfiDecoder::fresh();
    let st = ffi_parts(&handle, frame, n, block, offsets, ps, head, placement);
    if st != ffi::mecom_status::Ok {
        // Nothing decoded: the sequence did not advance, and the next
        // begin_parts drops whatever a failed one left pending.
        handle.recycle();
    }
    st
}

/// The rest of [`ffi_decode_in_parts`], on `handle`, for a frame of
/// `head` bytes of head and the length it declares.
#[allow(clippy::too_many_arguments)]
fn ffi_parts(
    handle: &FfiDecoder,
    frame: &[u8],
    n: usize,
    block: &mut [u8],
    offsets: &[u64],
    ps: usize,
    head: usize,
    placement: *const ffi::mecom_placement,
) -> ffi::mecom_status {
    let mut buf = vec![0u8; ffi::mecom_max_frame_len(n as u32, ps as u32)];
    buf[..head].copy_from_slice(&frame[..head]);
    let empty = ffi::mecom_iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut iov = vec![empty; ffi::mecom_frame_max_iov(n as u32)];
    let (mut niov, mut buffered) = (usize::MAX, usize::MAX);
    let host = block[ps..].as_mut_ptr();
    // The block QEMU would name: everything between the guard pages.
    let host_len = block.len() - 2 * ps;
    // SAFETY: a live handle used by this thread only; `buf` is `buf.len()`
    // bytes of which `head` are filled; `offsets` holds `n` values, each
    // page within `block` after the guard page (see ffi_offsets); `iov`
    // holds `iov.len()` entries; the outputs are ours; `placement` is
    // NULL or a valid placement (see ffi_decode).
    let st = unsafe {
        ffi::mecom_decoder_begin_parts(
            handle.0,
            buf.as_mut_ptr(),
            buf.len(),
            head,
            host,
            host_len,
            offsets.as_ptr(),
            n as u32,
            placement,
            iov.as_mut_ptr(),
            iov.len(),
            &mut niov,
            &mut buffered,
        )
    };
    if st != ffi::mecom_status::Ok {
        assert_eq!(
            (niov, buffered),
            (usize::MAX, usize::MAX),
            "outputs on failure"
        );
        return st;
    }
    assert!(niov <= iov.len() && buffered <= buf.len() && buffered >= head);
    let (buf_base, block_base) = (buf.as_ptr() as usize, block.as_ptr() as usize);
    let mut at = head;
    for v in &iov[..niov] {
        let base = v.iov_base as usize;
        let in_buf = base >= buf_base + head && base + v.iov_len <= buf_base + buffered;
        let page = base.wrapping_sub(block_base + ps);
        let in_block = v.iov_len == ps
            && offsets.iter().any(|&o| o as usize == page)
            && base + ps <= block_base + block.len();
        assert!(
            in_buf || in_block,
            "an iovec points outside the buffer and the pages"
        );
        let Some(src) = frame.get(at..at + v.iov_len) else {
            return ffi::mecom_status::Truncated;
        };
        // SAFETY: checked just above: the iovec lies within `buf` (after
        // the head) or is one page of `block`; `src` is part of `frame`,
        // which overlaps neither.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), v.iov_base.cast::<u8>(), v.iov_len) };
        at += v.iov_len;
    }
    assert_eq!(at, frame.len(), "the iovecs do not cover the frame");
    // SAFETY: as for begin_parts; `buf` holds `buffered` bytes now.
    unsafe {
        ffi::mecom_decoder_finish_parts(
            handle.0,
            buf.as_ptr(),
            buffered,
            host,
            host_len,
            offsets.as_ptr(),
            n as u32,
        )
    }
}

/// An FFI decoder handle of the default config, freed on drop.
struct FfiDecoder(*mut ffi::mecom_decoder);

impl FfiDecoder {
    fn new() -> FfiDecoder {
        let cfg = ffi_config();
        let mut dec: *mut ffi::mecom_decoder = std::ptr::null_mut();
        // SAFETY: `cfg` is a valid config and `dec` a writable pointer.
        let st = unsafe { ffi::mecom_decoder_new(&cfg, &mut dec) };
        assert_eq!(st, ffi::mecom_status::Ok, "mecom_decoder_new");
        FfiDecoder(dec)
    }

    /// A decoder in its initial state: one that decoded nothing (kept by
    /// [`FfiDecoder::recycle`]), else a new one.
    fn fresh() -> FfiDecoder {
        FFI_POOL
            .with(|p| p.borrow_mut().pop())
            .unwrap_or_else(FfiDecoder::new)
    }

    /// Keeps a decoder that has decoded nothing for a later
    /// [`FfiDecoder::fresh`] (see [`recycle`]).
    fn recycle(self) {
        FFI_POOL.with(|p| {
            let mut pool = p.borrow_mut();
            if pool.len() < 2 {
                pool.push(self);
            }
        });
    }
}

impl Drop for FfiDecoder {
    fn drop(&mut self) {
        // SAFETY: a live handle from mecom_decoder_new, freed once, here.
        unsafe { ffi::mecom_decoder_free(self.0) };
    }
}

thread_local! {
    /// FFI decoders that have decoded nothing yet (see [`fresh_decoder`]):
    /// the one that decodes whole frames and the one that reads in parts.
    static FFI_POOL: std::cell::RefCell<Vec<FfiDecoder>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

/// A stream of choices: `arbitrary::Unstructured` in the fuzz targets, a
/// seeded [`Rng`] in tests and the seed generator.
pub trait Source {
    /// The next byte (0 once the input is used up).
    fn byte(&mut self) -> u8;
    /// A value in `0..n`; `n` must be at least 1.
    fn below(&mut self, n: usize) -> usize;
    /// Up to `max` bytes.
    fn bytes(&mut self, max: usize) -> Vec<u8>;

    /// A little-endian u32 of four bytes.
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    /// A little-endian u64 of eight bytes.
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    /// True with probability `n / 256`.
    fn chance(&mut self, n: u8) -> bool {
        self.byte() < n
    }
}

/// Deterministic xorshift64 generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from any seed (0 included).
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

impl Source for Rng {
    fn byte(&mut self) -> u8 {
        (self.next_u64() >> 32) as u8
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.byte()).collect()
    }
}

const TEXT: &[&str] = &[
    "migration ",
    "page ",
    "dirty ",
    "the ",
    "static ",
    "int ",
    "return ",
    "{\n",
    "}\n",
    "multifd ",
    "0x",
    ";\n",
    "\t",
    "ram_block ",
];

/// Fills `region` with content of a kind `src` chooses: zeros, one repeated
/// word, sparse runs, similar words (WKdm's case), pointers, text, random
/// bytes, a repeated literal, or quarters of different kinds.  Bulk content
/// comes from a seeded [`Rng`], so a page costs the source a few bytes.
pub fn gen_region(src: &mut impl Source, region: &mut [u8], depth: u32) {
    let kinds = if depth < 2 { 9 } else { 8 };
    let mut rng = Rng::new(src.u64());
    let words = region.len() / 4;
    match src.below(kinds) {
        0 => region.fill(0),
        1 => {
            let w = src.u32().to_le_bytes();
            for (i, b) in region.iter_mut().enumerate() {
                *b = w[i % 4];
            }
        }
        2 => {
            region.fill(0);
            for _ in 0..src.below(24) {
                let at = rng.below(words.max(1));
                let len = 1 + rng.below(16);
                for w in at..(at + len).min(words) {
                    let v = if rng.below(8) == 0 {
                        0
                    } else {
                        rng.next_u64() as u32
                    };
                    region[w * 4..w * 4 + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        3 => {
            // Words from a small dictionary, low bits varied: high 22-bit
            // similarity, with zeros and exact repeats.
            let dict: Vec<u32> = (0..1 + src.below(16))
                .map(|_| rng.next_u64() as u32)
                .collect();
            for c in region.chunks_exact_mut(4) {
                let v = match rng.below(8) {
                    0 => 0,
                    1 => rng.next_u64() as u32,
                    2 | 3 => dict[rng.below(dict.len())],
                    _ => dict[rng.below(dict.len())] ^ (rng.below(1024) as u32),
                };
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        4 => {
            let base = 0x0000_7f3a_1200_0000u64 + ((rng.below(1 << 20) as u64) << 12);
            for c in region.chunks_exact_mut(8) {
                let v = if rng.below(4) == 0 {
                    0
                } else {
                    base + rng.below(1 << 16) as u64 * 16
                };
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        5 => {
            let mut i = 0;
            while i < region.len() {
                let w = TEXT[rng.below(TEXT.len())].as_bytes();
                let n = w.len().min(region.len() - i);
                region[i..i + n].copy_from_slice(&w[..n]);
                i += n;
            }
        }
        6 => {
            for c in region.chunks_mut(8) {
                let r = rng.next_u64().to_le_bytes();
                c.copy_from_slice(&r[..c.len()]);
            }
        }
        7 => {
            let lit = src.bytes(64);
            if lit.is_empty() {
                region.fill(0);
            } else {
                for (i, b) in region.iter_mut().enumerate() {
                    *b = lit[i % lit.len()];
                }
            }
        }
        _ => {
            let quarter = (region.len() / 4).max(1);
            for chunk in region.chunks_mut(quarter) {
                gen_region(src, chunk, depth + 1);
            }
        }
    }
}

/// `n` pages of `ps` bytes; a page may also be a lightly edited copy of the
/// one before (what zstd groups find).
pub fn gen_pages(src: &mut impl Source, ps: usize, n: usize) -> Vec<u8> {
    let mut pages = vec![0u8; n * ps];
    for i in 0..n {
        if i > 0 && src.chance(40) {
            let (before, rest) = pages.split_at_mut(i * ps);
            let page = &mut rest[..ps];
            page.copy_from_slice(&before[(i - 1) * ps..]);
            for _ in 0..src.below(8) {
                let at = src.below(ps);
                page[at] = src.byte();
            }
        } else {
            gen_region(src, &mut pages[i * ps..(i + 1) * ps], 0);
        }
    }
    pages
}

/// An encoder configuration: mostly 4 KiB pages, any mode, thresholds,
/// zstd level (mostly low: level 19 is slow), group size and LZ codec.
pub fn gen_config(src: &mut impl Source) -> Config {
    let page_size = match src.below(16) {
        0..=10 => 4096,
        11 | 12 => 8192,
        13 | 14 => 16384,
        _ => 65536,
    };
    let max_pages = if src.chance(8) {
        1024
    } else {
        1 + src.below(32)
    };
    let percent = |src: &mut dyn FnMut() -> u8, default: u8| {
        let b = src();
        if b < 128 {
            default
        } else {
            b % 101
        }
    };
    let mut next = || src.byte();
    let sparse_threshold = percent(&mut next, 75);
    let similarity_threshold = percent(&mut next, 50);
    let zstd_level = match next() {
        0..=63 => 0,
        64..=191 => 1,
        192..=250 => next() % 10,
        _ => 19,
    };
    let mode = if next() < 128 {
        Mode::Adaptive
    } else {
        Mode::Fixed
    };
    let lz = if next() < 128 {
        LzCodec::Lz4
    } else {
        LzCodec::Lzo
    };
    let zstd_group_pages = if src.chance(128) {
        0
    } else {
        1 + src.below(max_pages)
    };
    Config {
        page_size,
        max_pages,
        mode,
        sparse_threshold,
        similarity_threshold,
        zstd_level,
        zstd_group_pages,
        lz,
    }
}

/// Link statistics for the adaptive policy, edge values included.
pub fn gen_stats(src: &mut impl Source) -> LinkStats {
    let mut v = || match src.below(6) {
        0 => 0,
        1 => 1,
        2 => u64::MAX,
        3 => 125_000_000,
        4 => src.below(1 << 20) as u64,
        _ => src.u64(),
    };
    LinkStats {
        timestamp_ns: v(),
        dirty_pages_rate: v(),
        bandwidth: v(),
        dirty_sync_count: v(),
        remaining_bytes: v(),
        wire_bytes: v(),
        channels: v() as u32,
        downtime_limit_ms: v() as u32,
    }
}

/// Pages per frame: at most 16 pages or 64 KiB (the fuzzer wants speed;
/// the decoder's checks do not depend on the page count beyond that).
fn batch_pages(src: &mut impl Source, config: &Config) -> usize {
    let cap = (65_536 / config.page_size as usize)
        .clamp(1, 16)
        .min(config.max_pages);
    1 + src.below(cap)
}

// ---------------------------------------------------------------------------
// roundtrip
// ---------------------------------------------------------------------------

/// One batch of a round trip: statistics given to the encoder first, then
/// the pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Given to `Encoder::update_stats` before this batch, if any.
    pub stats: Option<LinkStats>,
    /// The pages, back to back.
    pub pages: Vec<u8>,
}

/// Encoder configuration and batches: encode then decode must give them back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundtripCase {
    /// The encoder's configuration (the decoder takes its page size and
    /// max_pages only).
    pub config: Config,
    /// Frames to encode, in order, on one channel.
    pub batches: Vec<Batch>,
}

/// A round-trip case: a configuration and one to three batches.
pub fn gen_roundtrip(src: &mut impl Source) -> RoundtripCase {
    let config = gen_config(src);
    let ps = config.page_size as usize;
    let batches = (0..1 + src.below(3))
        .map(|_| {
            let stats = if src.chance(64) {
                Some(gen_stats(src))
            } else {
                None
            };
            let n = batch_pages(src, &config);
            Batch {
                stats,
                pages: gen_pages(src, ps, n),
            }
        })
        .collect();
    RoundtripCase { config, batches }
}

/// Encodes every batch and decodes it on a decoder of the same page size and
/// max_pages: encoding valid pages never fails and decoding gives them back.
pub fn check_roundtrip(case: &RoundtripCase) -> Outcome {
    let mut enc = Encoder::new(case.config.clone()).expect("generated configs are valid");
    let mut dec = Decoder::new(Config {
        page_size: case.config.page_size,
        max_pages: case.config.max_pages,
        ..Config::default()
    })
    .expect("decoder config");
    let ps = case.config.page_size as usize;
    for (k, batch) in case.batches.iter().enumerate() {
        if let Some(stats) = batch.stats {
            enc.update_stats(stats);
        }
        let refs: Vec<&[u8]> = batch.pages.chunks_exact(ps).collect();
        let mut frame = vec![0u8; enc.max_frame_len(refs.len())];
        let len = enc
            .encode(&refs, &mut frame)
            .unwrap_or_else(|e| panic!("batch {k}: encode failed: {e}"));
        assert!(
            len <= frame.len(),
            "batch {k}: frame longer than its buffer"
        );
        let mut out = vec![SENTINEL; batch.pages.len()];
        let info = dec
            .decode_into(&frame[..len], &mut out)
            .unwrap_or_else(|e| panic!("batch {k}: decode of a fresh frame failed: {e}"));
        assert_eq!(info.pages, refs.len(), "batch {k}: page count");
        assert!(
            out == batch.pages,
            "batch {k}: pages differ after a round trip"
        );
    }
    Outcome::Decoded
}

// ---------------------------------------------------------------------------
// decode_frame_structured
// ---------------------------------------------------------------------------

/// Real frames of one channel after mutations, with the pages each came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructuredCase {
    /// Decoder page size.
    pub page_size: u32,
    /// Decoder max_pages.
    pub max_pages: usize,
    /// Pages of the frames as encoded, one entry per encoded frame.
    pub originals: Vec<Vec<u8>>,
    /// The channel's frames after mutation: (index into `originals`, bytes).
    pub frames: Vec<(usize, Vec<u8>)>,
    /// No mutation was applied, so every frame must decode.
    pub must_succeed: bool,
}

/// A frame split into header, table and payloads (when its lengths allow).
struct Parsed {
    header: [u8; 32],
    entries: Vec<(u8, usize)>,
    payloads: Vec<Vec<u8>>,
}

fn parse_frame(frame: &[u8]) -> Option<Parsed> {
    let header: [u8; 32] = frame.get(..32)?.try_into().ok()?;
    let n = usize::from(u16::from_le_bytes([header[6], header[7]]));
    let table = frame.get(32..32 + 4 * n)?;
    let mut at = 32 + 4 * n;
    let mut entries = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    for e in table.chunks_exact(4) {
        let v = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        let (tag, len) = ((v >> 24) as u8, (v & 0x00ff_ffff) as usize);
        payloads.push(frame.get(at..at + len)?.to_vec());
        entries.push((tag, len));
        at += len;
    }
    Some(Parsed {
        header,
        entries,
        payloads,
    })
}

/// Reassembles a parsed frame with `payload_len` matching its payloads.
fn build_frame(p: &Parsed) -> Vec<u8> {
    let mut f = p.header.to_vec();
    let payload: usize = p.payloads.iter().map(Vec::len).sum();
    f[16..20].copy_from_slice(&(payload as u32).to_le_bytes());
    for (&(tag, _), data) in p.entries.iter().zip(&p.payloads) {
        let v = (u32::from(tag) << 24) | (data.len() as u32 & 0x00ff_ffff);
        f.extend_from_slice(&v.to_le_bytes());
    }
    for data in &p.payloads {
        f.extend_from_slice(data);
    }
    f
}

/// A page of `ps` bytes encoded with a method `src` chooses, as (tag,
/// payload): what a forger who knows the format could put in a frame.
fn forge_payload(src: &mut impl Source, ps: usize) -> Option<(u8, Vec<u8>)> {
    let mut page = vec![0u8; ps];
    gen_region(src, &mut page, 0);
    let tag = src.below(7) as u8;
    let payload = match tag {
        0 => page,
        1 => Vec::new(),
        2 => page[..4].to_vec(),
        3 => codec_encode("sparse", &page)?,
        4 => codec_encode("wkdm", &page)?,
        5 => codec_encode("lzo", &page)?,
        _ => codec_encode("lz4", &page)?,
    };
    Some((tag, payload))
}

/// Applies one mutation chosen by `src` to the channel's frames.
fn mutate(src: &mut impl Source, frames: &mut Vec<(usize, Vec<u8>)>, ps: usize) {
    if frames.is_empty() {
        return;
    }
    let k = src.below(frames.len());
    let frame = &mut frames[k].1;
    match src.below(16) {
        0 | 1 => {
            // Flip one bit.
            if !frame.is_empty() {
                let at = near_structure(src, frame);
                frame[at] ^= 1 << src.below(8);
            }
        }
        2 => {
            // Set one byte.
            if !frame.is_empty() {
                let at = near_structure(src, frame);
                frame[at] = src.byte();
            }
        }
        3 => {
            // Truncate.
            let len = src.below(frame.len() + 1);
            frame.truncate(len);
        }
        4 => {
            // Append.
            let extra = src.bytes(64);
            frame.extend_from_slice(&extra);
        }
        5 => {
            // Rewrite a table entry with any tag and length.
            let n = frame.len().saturating_sub(32) / 4;
            if n > 0 {
                let at = 32 + 4 * src.below(n.min(1024));
                let tag = if src.chance(192) {
                    src.below(10) as u8
                } else {
                    src.byte()
                };
                let len = match src.below(4) {
                    0 => 0,
                    1 => 4,
                    2 => ps,
                    _ => src.u32() as usize & 0x00ff_ffff,
                };
                let v = (u32::from(tag) << 24) | len as u32;
                if let Some(e) = frame.get_mut(at..at + 4) {
                    e.copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        6 => {
            // Change a header field.
            if frame.len() >= 32 {
                let (at, width) = [
                    (4, 1),
                    (5, 1),
                    (6, 2),
                    (8, 4),
                    (12, 4),
                    (16, 4),
                    (20, 4),
                    (24, 8),
                ][src.below(8)];
                let v = match src.below(4) {
                    0 => 0,
                    1 => 1,
                    2 => u64::MAX,
                    _ => src.u64(),
                };
                frame[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
            }
        }
        7 => {
            // Make payload_len agree with the frame's length.
            if frame.len() >= 32 {
                let n = usize::from(u16::from_le_bytes([frame[6], frame[7]]));
                let payload = frame.len().saturating_sub(32 + 4 * n) as u32;
                frame[16..20].copy_from_slice(&payload.to_le_bytes());
            }
        }
        8 | 9 => {
            // Replace one page's payload with arbitrary bytes (optionally a
            // new tag), keeping every length consistent.
            if let Some(mut p) = parse_frame(frame) {
                if !p.entries.is_empty() {
                    let i = src.below(p.entries.len());
                    if src.chance(64) {
                        p.entries[i].0 = src.below(9) as u8;
                    }
                    p.payloads[i] = src.bytes(ps + 16);
                    *frame = build_frame(&p);
                }
            }
        }
        10 => {
            // Replace one page with a validly encoded different page.
            if let Some(mut p) = parse_frame(frame) {
                if !p.entries.is_empty() {
                    let i = src.below(p.entries.len());
                    if let Some((tag, payload)) = forge_payload(src, ps) {
                        p.entries[i].0 = tag;
                        p.payloads[i] = payload;
                        *frame = build_frame(&p);
                    }
                }
            }
        }
        11 => {
            // Swap or copy pages (entries with their payloads).
            if let Some(mut p) = parse_frame(frame) {
                if !p.entries.is_empty() {
                    let a = src.below(p.entries.len());
                    let b = src.below(p.entries.len());
                    if src.chance(128) {
                        p.entries.swap(a, b);
                        p.payloads.swap(a, b);
                    } else {
                        p.entries[b] = p.entries[a];
                        p.payloads[b] = p.payloads[a].clone();
                    }
                    *frame = build_frame(&p);
                }
            }
        }
        12 => {
            // Corrupt inside one payload, lengths kept.
            if let Some(mut p) = parse_frame(frame) {
                if let Some(i) = (0..p.payloads.len()).find(|&i| !p.payloads[i].is_empty()) {
                    let i = (i + src.below(p.payloads.len())) % p.payloads.len();
                    let data = &mut p.payloads[i];
                    if !data.is_empty() {
                        let at = src.below(data.len());
                        data[at] = src.byte();
                        *frame = build_frame(&p);
                    }
                }
            }
        }
        13 => {
            // Duplicate a frame on the channel.
            let copy = frames[k].clone();
            let at = src.below(frames.len() + 1);
            frames.insert(at, copy);
        }
        14 => {
            // Reorder two frames.
            let other = src.below(frames.len());
            frames.swap(k, other);
        }
        _ => {
            // Lose a frame.
            if frames.len() > 1 {
                frames.remove(k);
            }
        }
    }
}

/// A position in `frame`, half the time inside the header and table.
fn near_structure(src: &mut impl Source, frame: &[u8]) -> usize {
    let table_end = if frame.len() >= 8 {
        32 + 4 * usize::from(u16::from_le_bytes([frame[6], frame[7]]))
    } else {
        frame.len()
    };
    if src.chance(128) {
        src.below(table_end.min(frame.len()).max(1))
    } else {
        src.below(frame.len())
    }
}

/// Encodes one to three frames of generated pages with a real encoder,
/// then applies zero to four mutations.
pub fn gen_structured(src: &mut impl Source) -> StructuredCase {
    let config = gen_config(src);
    let ps = config.page_size as usize;
    let mut enc = Encoder::new(config.clone()).expect("generated configs are valid");
    let mut originals = Vec::new();
    let mut frames = Vec::new();
    for k in 0..1 + src.below(3) {
        if src.chance(48) {
            enc.update_stats(gen_stats(src));
        }
        let n = batch_pages(src, &config);
        let pages = gen_pages(src, ps, n);
        let refs: Vec<&[u8]> = pages.chunks_exact(ps).collect();
        let mut frame = vec![0u8; enc.max_frame_len(n)];
        let len = enc.encode(&refs, &mut frame).expect("encode valid pages");
        frame.truncate(len);
        originals.push(pages);
        frames.push((k, frame));
    }
    let mutations = src.below(5);
    for _ in 0..mutations {
        mutate(src, &mut frames, ps);
    }
    StructuredCase {
        page_size: config.page_size,
        max_pages: config.max_pages,
        originals,
        frames,
        must_succeed: mutations == 0,
    }
}

fn dec_config(case: &StructuredCase) -> Config {
    Config {
        page_size: case.page_size,
        max_pages: case.max_pages,
        ..Config::default()
    }
}

pub fn check_structured(case: &StructuredCase) -> Outcome {
    let mut dec = Decoder::new(dec_config(case)).expect("case config");
    let ps = case.page_size as usize;
    let mut outcome = Outcome::Rejected;
    for (k, (origin, frame)) in case.frames.iter().enumerate() {
        let expected = &case.originals[*origin];
        let mut out = vec![SENTINEL; expected.len() + ps];
        let mut parts_dec_ok = None;
        if k == 0 {
            // The first frame of the channel, read in parts by a decoder of
            // its own, decodes exactly when the whole frame does.
            let pages = expected.len() / ps;
            parts_dec_ok = Some(decode_in_parts(&dec_config(case), frame, pages));
        }
        match dec.decode_into(frame, &mut out) {
            Err(e) => {
                assert!(untouched(&out), "frame {k}: failed decode ({e}) wrote");
                assert!(!case.must_succeed, "frame {k}: unmutated frame failed: {e}");
                if let Some(Some(_)) = parts_dec_ok {
                    panic!("frame {k}: decoded in parts, but not whole: {e}");
                }
            }
            Ok(info) => {
                assert_eq!(
                    info.pages * ps,
                    expected.len(),
                    "frame {k}: decoded a different number of pages"
                );
                assert!(
                    out[..expected.len()] == expected[..],
                    "frame {k}: SILENT CORRUPTION: decoded pages differ from the encoded ones"
                );
                assert!(
                    untouched(&out[expected.len()..]),
                    "frame {k}: wrote past its pages"
                );
                if let Some(parts) = parts_dec_ok {
                    let parts = parts
                        .unwrap_or_else(|| panic!("frame {k}: decoded whole, but not in parts"));
                    assert!(
                        parts[..] == out[..expected.len()],
                        "frame {k}: decoded in parts to other pages"
                    );
                }
                outcome = Outcome::Decoded;
            }
        }
    }
    outcome
}

// ---------------------------------------------------------------------------
// Case files
// ---------------------------------------------------------------------------

const STRUCTURED_MAGIC: &[u8; 8] = b"MCFZSTR1";
const ROUNDTRIP_MAGIC: &[u8; 8] = b"MCFZRTP1";

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn blob(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn blob(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

impl StructuredCase {
    /// The case as a file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer(STRUCTURED_MAGIC.to_vec());
        w.u32(self.page_size);
        w.u32(self.max_pages as u32);
        w.u8(u8::from(self.must_succeed));
        w.u32(self.originals.len() as u32);
        for o in &self.originals {
            w.blob(o);
        }
        w.u32(self.frames.len() as u32);
        for (origin, f) in &self.frames {
            w.u32(*origin as u32);
            w.blob(f);
        }
        w.0
    }

    /// Reads a case file; `None` if it is not a well-formed one.
    pub fn from_bytes(data: &[u8]) -> Option<StructuredCase> {
        let mut r = Reader(data);
        if r.take(8)? != STRUCTURED_MAGIC {
            return None;
        }
        let page_size = r.u32()?;
        let max_pages = r.u32()? as usize;
        let must_succeed = r.u8()? != 0;
        let originals = (0..r.u32()?)
            .map(|_| r.blob().map(<[u8]>::to_vec))
            .collect::<Option<Vec<_>>>()?;
        let frames = (0..r.u32()?)
            .map(|_| Some((r.u32()? as usize, r.blob()?.to_vec())))
            .collect::<Option<Vec<_>>>()?;
        let case = StructuredCase {
            page_size,
            max_pages,
            originals,
            frames,
            must_succeed,
        };
        let ps = page_size as usize;
        let valid = Config {
            page_size,
            max_pages,
            ..Config::default()
        }
        .validate()
        .is_ok()
            && r.0.is_empty()
            && case
                .originals
                .iter()
                .all(|o| !o.is_empty() && o.len() % ps == 0)
            && case.frames.iter().all(|(o, _)| *o < case.originals.len());
        valid.then_some(case)
    }
}

fn write_stats(w: &mut Writer, s: &LinkStats) {
    for v in [
        s.timestamp_ns,
        s.dirty_pages_rate,
        s.bandwidth,
        s.dirty_sync_count,
        s.remaining_bytes,
        s.wire_bytes,
    ] {
        w.u64(v);
    }
    w.u32(s.channels);
    w.u32(s.downtime_limit_ms);
}

fn read_stats(r: &mut Reader) -> Option<LinkStats> {
    Some(LinkStats {
        timestamp_ns: r.u64()?,
        dirty_pages_rate: r.u64()?,
        bandwidth: r.u64()?,
        dirty_sync_count: r.u64()?,
        remaining_bytes: r.u64()?,
        wire_bytes: r.u64()?,
        channels: r.u32()?,
        downtime_limit_ms: r.u32()?,
    })
}

impl RoundtripCase {
    /// The case as a file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let c = &self.config;
        let mut w = Writer(ROUNDTRIP_MAGIC.to_vec());
        w.u32(c.page_size);
        w.u32(c.max_pages as u32);
        w.u8(u8::from(c.mode == Mode::Fixed));
        w.u8(c.sparse_threshold);
        w.u8(c.similarity_threshold);
        w.u8(c.zstd_level);
        w.u32(c.zstd_group_pages as u32);
        w.u8(u8::from(c.lz == LzCodec::Lzo));
        w.u32(self.batches.len() as u32);
        for b in &self.batches {
            match &b.stats {
                Some(s) => {
                    w.u8(1);
                    write_stats(&mut w, s);
                }
                None => w.u8(0),
            }
            w.blob(&b.pages);
        }
        w.0
    }

    /// Reads a case file; `None` if it is not a well-formed one.
    pub fn from_bytes(data: &[u8]) -> Option<RoundtripCase> {
        let mut r = Reader(data);
        if r.take(8)? != ROUNDTRIP_MAGIC {
            return None;
        }
        let config = Config {
            page_size: r.u32()?,
            max_pages: r.u32()? as usize,
            mode: if r.u8()? != 0 {
                Mode::Fixed
            } else {
                Mode::Adaptive
            },
            sparse_threshold: r.u8()?,
            similarity_threshold: r.u8()?,
            zstd_level: r.u8()?,
            zstd_group_pages: r.u32()? as usize,
            lz: if r.u8()? != 0 {
                LzCodec::Lzo
            } else {
                LzCodec::Lz4
            },
        };
        let batches = (0..r.u32()?)
            .map(|_| {
                let stats = match r.u8()? {
                    0 => None,
                    _ => Some(read_stats(&mut r)?),
                };
                let pages = r.blob()?.to_vec();
                Some(Batch { stats, pages })
            })
            .collect::<Option<Vec<_>>>()?;
        let ps = config.page_size as usize;
        let valid = config.validate().is_ok()
            && r.0.is_empty()
            && batches.iter().all(|b| {
                !b.pages.is_empty()
                    && b.pages.len() % ps == 0
                    && b.pages.len() / ps <= config.max_pages
            });
        valid.then_some(RoundtripCase { config, batches })
    }
}

/// Runs the property of `target` on one input file: a raw input for the raw
/// targets, a case file for [`CASE_TARGETS`].  Panics on a violation or an
/// unreadable case file.
pub fn run_file(target: &str, data: &[u8]) -> Outcome {
    match target {
        "decode_frame" => decode_frame(data),
        "codec_decoders" => codec_decoders(data),
        "ffi_decode" => ffi_decode(data),
        "decode_frame_structured" => check_structured(
            &StructuredCase::from_bytes(data).expect("not a decode_frame_structured case file"),
        ),
        "roundtrip" => {
            check_roundtrip(&RoundtripCase::from_bytes(data).expect("not a roundtrip case file"))
        }
        _ => panic!("unknown fuzz target {target}"),
    }
}

// ---------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------

/// A real frame of `n` generated pages from an encoder of `config`.
fn seed_frame(rng: &mut Rng, config: &Config, n: usize, random_ok: bool) -> (Vec<u8>, Vec<u8>) {
    let ps = config.page_size as usize;
    let mut pages;
    loop {
        pages = gen_pages(rng, ps, n);
        // Keep seeds small: at most one incompressible page.
        let raw = pages
            .chunks_exact(ps)
            .filter(|p| mecom::classify::profile(p).distinct_bytes >= 140)
            .count();
        if raw == 0 || (random_ok && raw == 1) {
            break;
        }
    }
    let refs: Vec<&[u8]> = pages.chunks_exact(ps).collect();
    let mut enc = Encoder::new(config.clone()).expect("seed config");
    let mut frame = vec![0u8; enc.max_frame_len(n)];
    let len = enc.encode(&refs, &mut frame).expect("seed encode");
    frame.truncate(len);
    (frame, pages)
}

/// Encoder configurations the seeds are made with: each routes pages to
/// different methods (fast path with LZ4 or LZO, zstd groups, no zstd).
fn seed_configs(page_size: u32, max_pages: usize) -> Vec<Config> {
    let base = Config {
        page_size,
        max_pages,
        ..Config::default()
    };
    vec![
        base.clone(),
        Config {
            lz: LzCodec::Lzo,
            zstd_level: 0,
            ..base.clone()
        },
        Config {
            mode: Mode::Fixed,
            zstd_level: 3,
            zstd_group_pages: 2,
            ..base.clone()
        },
        Config {
            mode: Mode::Fixed,
            zstd_level: 0,
            similarity_threshold: 0,
            ..base.clone()
        },
        Config {
            mode: Mode::Fixed,
            zstd_level: 0,
            sparse_threshold: 30,
            ..base
        },
    ]
}

/// An `ffi_decode` input whose frame decodes through a dedup page: two
/// pages at offsets 0 and one page, bound, the first a reference to the
/// block's page at offset two pages (all [`SENTINEL`] bytes there, as the
/// whole block is before the decode), the second all-zero.  The encoder
/// never names a fill page, so this frame is made by hand.
pub fn ffi_dedup_seed() -> Vec<u8> {
    use mecom::format::{FEATURE_DEDUP, FEATURE_PLACEMENT, HEADER_LEN};
    let ps = 4096usize;
    let offsets = [0u64, ps as u64];
    let placement = mecom::Placement {
        block: b"pc.ram",
        offsets: &offsets,
        zero_offsets: &[],
    };
    let mut pages = vec![SENTINEL; ps];
    pages.resize(2 * ps, 0);
    let payload = codecs::dedup::encode(2 * ps as u64, xxhash_rust::xxh3::xxh3_64(&pages[..ps]));
    let mut head = [0u8; HEADER_LEN];
    Header {
        page_shift: 12,
        page_count: 2,
        sequence: 0,
        features: FEATURE_PLACEMENT | FEATURE_DEDUP,
        payload_len: payload.len() as u32,
        checksum: xxhash_rust::xxh3::xxh3_64_with_seed(&pages, placement.seed()),
    }
    .write(&mut head);
    let mut frame = head.to_vec();
    frame.extend_from_slice(&mecom::format::pack_entry(
        Method::Dedup.tag(),
        payload.len(),
    ));
    frame.extend_from_slice(&mecom::format::pack_entry(Method::Zero.tag(), 0));
    frame.extend_from_slice(&payload);
    // Two pages, contiguous, bound to their placement (ffi_decode's bytes).
    let mut input = vec![1u8, 8];
    input.extend_from_slice(&frame);
    input
}

/// Seed inputs for every target, `per_target` each, from `seed`: real frames
/// of mixed pages (with the selector bytes the raw targets read), codec
/// payloads of real pages, and random byte strings for the structured
/// targets (whose generator turns any bytes into real frames).
pub fn seed_inputs(seed: u64, per_target: usize) -> Vec<(&'static str, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    let mut seeds = Vec::new();
    let small = seed_configs(4096, 128);
    let big = seed_configs(8192, 16);
    for i in 0..per_target {
        // decode_frame: selector byte, then a frame for that decoder.
        let (sel, configs) = if i % 4 == 3 {
            (1u8, &big)
        } else {
            (0u8, &small)
        };
        let config = &configs[i % configs.len()];
        let n = 1 + rng.below(4);
        let (frame, _) = seed_frame(&mut rng, config, n, i % 3 == 0);
        let mut input = vec![sel];
        input.extend_from_slice(&frame);
        seeds.push(("decode_frame", input));

        // ffi_decode: page count, layout, then a frame of that many pages.
        let config = &small[i % small.len()];
        let n = 1 + rng.below(4);
        let (frame, _) = seed_frame(&mut rng, config, n, false);
        let mut input = vec![(n - 1) as u8, (i % 8) as u8];
        input.extend_from_slice(&frame);
        seeds.push(("ffi_decode", input));

        // codec_decoders: one page encoded with one codec.
        let ps = if i % 4 == 3 { 8192 } else { 4096 };
        let name = ["sparse", "wkdm", "lz4", "lzo"][i % 4];
        let payload = loop {
            let mut page = vec![0u8; ps];
            gen_region(&mut rng, &mut page, 0);
            if let Some(p) = codec_encode(name, &page).filter(|p| (9..ps / 2).contains(&p.len())) {
                break p;
            }
            // The codec may give up on every page (a stub does): fall back
            // to LZ4 rather than loop forever.
            if name == "wkdm" && rng.below(4) == 0 {
                if let Some(p) = codec_encode("lz4", &page) {
                    break p;
                }
            }
        };
        seeds.push(("codec_decoders", payload));

        // Structured targets: any bytes are a valid input.
        for target in CASE_TARGETS {
            let len = 32 + rng.below(480);
            seeds.push((target, (0..len).map(|_| rng.byte()).collect()));
        }
    }
    seeds.push(("ffi_decode", ffi_dedup_seed()));
    seeds
}
