//! The C ABI, called the way QEMU calls it: guest pages at host + offsets,
//! statuses instead of panics, outputs only on success.

mod common;

use common::{page, KINDS};
use mecom::ffi::*;
use mecom::{Method, Mode};
use std::ffi::CStr;
use std::ptr;

fn config() -> mecom_config {
    let mut cfg = std::mem::MaybeUninit::<mecom_config>::uninit();
    // SAFETY: a valid pointer to writable storage.
    unsafe { mecom_config_init(cfg.as_mut_ptr()) };
    // SAFETY: mecom_config_init wrote every field.
    unsafe { cfg.assume_init() }
}

fn dec_error(dec: *const mecom_decoder) -> String {
    // SAFETY: a live decoder handle.
    text(unsafe { mecom_decoder_last_error(dec) })
}

fn stats(enc: *mut mecom_encoder, s: *const mecom_link_stats) -> mecom_status {
    // SAFETY: a live encoder; `s` is NULL or valid.
    unsafe { mecom_encoder_update_stats(enc, s) }
}

fn counters(enc: *const mecom_encoder) -> mecom_counters {
    let mut c = std::mem::MaybeUninit::<mecom_counters>::uninit();
    // SAFETY: a live encoder and a writable out pointer.
    let status = unsafe { mecom_encoder_counters(enc, c.as_mut_ptr()) };
    assert_eq!(status, mecom_status::Ok);
    // SAFETY: written on success.
    unsafe { c.assume_init() }
}

fn text(p: *const std::ffi::c_char) -> String {
    assert!(!p.is_null());
    // SAFETY: the library returns NUL-terminated static or handle-owned strings.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

struct Pair {
    enc: *mut mecom_encoder,
    dec: *mut mecom_decoder,
}

impl Pair {
    fn new(cfg: &mecom_config) -> Pair {
        let mut enc = ptr::null_mut();
        let mut dec = ptr::null_mut();
        // SAFETY: valid config and out pointers.
        unsafe {
            assert_eq!(mecom_encoder_new(cfg, &mut enc), mecom_status::Ok);
            assert_eq!(mecom_decoder_new(cfg, &mut dec), mecom_status::Ok);
        }
        Pair { enc, dec }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // SAFETY: handles from _new, freed once.
        unsafe {
            mecom_encoder_free(self.enc);
            mecom_decoder_free(self.dec);
        }
    }
}

/// A fake RAM block with pages of every class at scattered offsets.
fn ram_block(pages: usize) -> (Vec<u8>, Vec<u64>) {
    let mut ram = vec![0u8; (pages * 3 + 1) * 4096];
    let offsets: Vec<u64> = (0..pages).map(|i| ((i * 3 + 1) * 4096) as u64).collect();
    for (i, &off) in offsets.iter().enumerate() {
        let p = page(KINDS[i % KINDS.len()], 4096, i as u64 + 11);
        ram[off as usize..off as usize + 4096].copy_from_slice(&p);
    }
    (ram, offsets)
}

/// Encodes the pages of `ram` at `offsets` into one frame through the C ABI.
fn encode_frame(enc: *mut mecom_encoder, ram: &[u8], offsets: &[u64]) -> Vec<u8> {
    encode_frame_placed(enc, ram, offsets, ptr::null())
}

/// The placement of a frame of block `pc.ram` without zero pages.
fn pc_ram() -> mecom_placement {
    let block: &'static [u8] = b"pc.ram";
    mecom_placement {
        block: block.as_ptr(),
        block_len: block.len(),
        zero_offsets: ptr::null(),
        n_zero: 0,
    }
}

/// [`encode_frame`] bound to `placement` (NULL: none).
fn encode_frame_placed(
    enc: *mut mecom_encoder,
    ram: &[u8],
    offsets: &[u64],
    placement: *const mecom_placement,
) -> Vec<u8> {
    let n = offsets.len() as u32;
    let mut frame = vec![0u8; mecom_max_frame_len(n, 4096)];
    let mut len = 0usize;
    // SAFETY: `ram` holds every page at `offsets`; `frame` is its own
    // length; `placement` is NULL or a valid placement.
    let st = unsafe {
        mecom_encoder_encode(
            enc,
            ram.as_ptr(),
            offsets.as_ptr(),
            n,
            placement,
            frame.as_mut_ptr(),
            frame.len(),
            &mut len,
        )
    };
    assert_eq!(st, mecom_status::Ok);
    frame.truncate(len);
    frame
}

#[test]
fn encode_decode_through_host_and_offsets() {
    let cfg = config();
    assert_eq!(cfg.page_size, 4096);
    assert_eq!(cfg.max_pages, 128);
    let pair = Pair::new(&cfg);
    let (src, offsets) = ram_block(128);
    let cap = mecom_max_frame_len(128, 4096);
    let mut frame = vec![0u8; cap];
    let mut len = 0usize;
    let mut dst = vec![0u8; src.len()];
    for _round in 0..3 {
        // SAFETY: every pointer covers what the contract asks.
        let st = unsafe {
            mecom_encoder_encode(
                pair.enc,
                src.as_ptr(),
                offsets.as_ptr(),
                128,
                ptr::null(),
                frame.as_mut_ptr(),
                cap,
                &mut len,
            )
        };
        assert_eq!(st, mecom_status::Ok);
        assert!(len > 0 && len < 128 * 4096);
        // The header alone tells the frame's length (what QEMU checks
        // next_packet_size against before reading the rest).
        let mut declared = 0usize;
        // SAFETY: `frame` holds at least the header; `declared` is writable.
        let st = unsafe { mecom_frame_len(frame.as_ptr(), MECOM_FRAME_HEADER_LEN, &mut declared) };
        assert_eq!(st, mecom_status::Ok);
        assert_eq!(declared, len);
        // SAFETY: as above.
        let st = unsafe {
            mecom_decoder_decode(
                pair.dec,
                frame.as_ptr(),
                len,
                dst.as_mut_ptr(),
                dst.len(),
                offsets.as_ptr(),
                128,
                ptr::null(),
            )
        };
        assert_eq!(st, mecom_status::Ok, "{}", dec_error(pair.dec));
        assert_eq!(dst, src);
    }
    let c = counters(pair.enc);
    assert_eq!(c.frames, 3);
    assert_eq!(c.pages, 384);
    assert_eq!(c.method_pages.iter().sum::<u64>(), 384);
    assert_eq!(c.bytes_in, 384 * 4096);
}

#[test]
fn a_bad_frame_fails_with_a_named_status_and_writes_nothing() {
    let cfg = config();
    let pair = Pair::new(&cfg);
    let (src, offsets) = ram_block(16);
    let cap = mecom_max_frame_len(16, 4096);
    let mut frame = vec![0u8; cap];
    let mut len = 0usize;
    // SAFETY: every pointer covers what the contract asks.
    unsafe {
        assert_eq!(
            mecom_encoder_encode(
                pair.enc,
                src.as_ptr(),
                offsets.as_ptr(),
                16,
                ptr::null(),
                frame.as_mut_ptr(),
                cap,
                &mut len
            ),
            mecom_status::Ok
        );
    }
    frame[len - 1] ^= 0xff;
    let mut dst = vec![0xAAu8; src.len()];
    // SAFETY: as above.
    let st = unsafe {
        mecom_decoder_decode(
            pair.dec,
            frame.as_ptr(),
            len,
            dst.as_mut_ptr(),
            dst.len(),
            offsets.as_ptr(),
            16,
            ptr::null(),
        )
    };
    assert!(
        matches!(
            st,
            mecom_status::CorruptPage | mecom_status::ChecksumMismatch
        ),
        "{st:?}"
    );
    assert!(dst.iter().all(|&b| b == 0xAA));
    // SAFETY: live handle.
    let msg = dec_error(pair.dec);
    assert!(msg.contains("page") || msg.contains("checksum"), "{msg}");
    assert!(!text(mecom_status_str(st as u32)).is_empty());
    // Too few pages announced by the packet.
    frame[len - 1] ^= 0xff;
    // SAFETY: as above.
    let st = unsafe {
        mecom_decoder_decode(
            pair.dec,
            frame.as_ptr(),
            len,
            dst.as_mut_ptr(),
            dst.len(),
            offsets.as_ptr(),
            15,
            ptr::null(),
        )
    };
    assert_eq!(st, mecom_status::PageCountMismatch);
    assert_eq!(
        dec_error(pair.dec),
        "frame holds 16 pages, the packet announced 15"
    );
}

#[test]
fn frame_len_names_a_bad_or_short_header_and_writes_nothing() {
    let pair = Pair::new(&config());
    let (src, offsets) = ram_block(4);
    let frame = encode_frame(pair.enc, &src, &offsets);
    let mut len = 0usize;
    // (bytes available, bit flips at a header offset, expected status)
    type Case = (usize, Option<(usize, u8)>, mecom_status);
    let cases: [Case; 5] = [
        (MECOM_FRAME_HEADER_LEN - 1, None, mecom_status::Truncated),
        (0, None, mecom_status::Truncated),
        (
            MECOM_FRAME_HEADER_LEN,
            Some((0, 0x01)),
            mecom_status::BadMagic,
        ),
        (
            MECOM_FRAME_HEADER_LEN,
            Some((4, 0x80)),
            mecom_status::UnsupportedVersion,
        ),
        (
            MECOM_FRAME_HEADER_LEN,
            Some((7, 0xff)),
            mecom_status::TooManyPages,
        ),
    ];
    for (avail, flip, want) in cases {
        let mut header = frame[..MECOM_FRAME_HEADER_LEN].to_vec();
        if let Some((at, bits)) = flip {
            header[at] ^= bits;
        }
        let mut out = 12345usize;
        // SAFETY: `header` has at least `avail` readable bytes.
        let st = unsafe { mecom_frame_len(header.as_ptr(), avail, &mut out) };
        assert_eq!(st, want, "avail {avail} flip {flip:?}");
        assert_eq!(out, 12345, "output written on failure");
    }
    // SAFETY: NULL pointers are answered with a status, nothing is read.
    let st = unsafe { mecom_frame_len(ptr::null(), 32, &mut len) };
    assert_eq!(st, mecom_status::NullParameter);
    // SAFETY: as above.
    let st = unsafe { mecom_frame_len(frame.as_ptr(), 32, ptr::null_mut()) };
    assert_eq!(st, mecom_status::NullParameter);
}

#[test]
fn null_and_invalid_arguments_are_statuses() {
    let cfg = config();
    let mut enc = ptr::null_mut();
    // SAFETY: NULLs are allowed inputs that must be rejected.
    unsafe {
        assert_eq!(
            mecom_encoder_new(ptr::null(), &mut enc),
            mecom_status::NullParameter
        );
        assert_eq!(
            mecom_encoder_new(&cfg, ptr::null_mut()),
            mecom_status::NullParameter
        );
        let mut dec = ptr::null_mut();
        assert_eq!(
            mecom_decoder_new(ptr::null(), &mut dec),
            mecom_status::NullParameter
        );
        mecom_encoder_free(ptr::null_mut());
        mecom_decoder_free(ptr::null_mut());
        mecom_config_init(ptr::null_mut());
        let mut len = 0;
        assert_eq!(
            mecom_encoder_encode(
                ptr::null_mut(),
                ptr::null(),
                ptr::null(),
                0,
                ptr::null(),
                ptr::null_mut(),
                0,
                &mut len
            ),
            mecom_status::NullParameter
        );
        assert_eq!(
            mecom_decoder_decode(
                ptr::null_mut(),
                ptr::null(),
                0,
                ptr::null_mut(),
                0,
                ptr::null(),
                0,
                ptr::null(),
            ),
            mecom_status::NullParameter
        );
        assert_eq!(text(mecom_encoder_last_error(ptr::null())), "");
    }
    let bad = [
        (
            mecom_config {
                page_size: 4000,
                ..cfg
            },
            mecom_status::UnsupportedPageSize,
        ),
        (
            mecom_config {
                max_pages: 0,
                ..cfg
            },
            mecom_status::InvalidConfig,
        ),
        (mecom_config { mode: 4, ..cfg }, mecom_status::InvalidConfig),
        (
            mecom_config {
                similarity_threshold: 101,
                ..cfg
            },
            mecom_status::InvalidConfig,
        ),
        (
            mecom_config {
                sparse_threshold: 1000,
                ..cfg
            },
            mecom_status::InvalidConfig,
        ),
        (
            mecom_config {
                zstd_level: 20,
                ..cfg
            },
            mecom_status::InvalidConfig,
        ),
        (
            mecom_config { lz_codec: 2, ..cfg },
            mecom_status::InvalidConfig,
        ),
    ];
    for (c, want) in bad {
        let mut h = ptr::null_mut();
        // SAFETY: valid pointers.
        assert_eq!(unsafe { mecom_encoder_new(&c, &mut h) }, want, "{c:?}");
        assert!(h.is_null(), "output written on failure");
    }
    let pair = Pair::new(&cfg);
    let (src, offsets) = ram_block(4);
    let mut small = vec![0u8; 100];
    let mut len = 12345usize;
    // SAFETY: valid pointers; the buffer is too small on purpose.
    let st = unsafe {
        mecom_encoder_encode(
            pair.enc,
            src.as_ptr(),
            offsets.as_ptr(),
            4,
            ptr::null(),
            small.as_mut_ptr(),
            small.len(),
            &mut len,
        )
    };
    assert_eq!(st, mecom_status::BufferTooSmall);
    assert_eq!(len, 12345, "out_len written on failure");
    // SAFETY: valid pointers.
    let st = unsafe {
        mecom_encoder_encode(
            pair.enc,
            src.as_ptr(),
            offsets.as_ptr(),
            0,
            ptr::null(),
            small.as_mut_ptr(),
            small.len(),
            &mut len,
        )
    };
    assert_eq!(st, mecom_status::TooManyPages);
    assert_eq!(mecom_max_frame_len(129 * 8, 4096), 0);
    assert_eq!(mecom_max_frame_len(1, 4095), 0);
}

#[test]
fn names_and_versions() {
    let names: Vec<String> = (0..9).map(|m| text(mecom_method_name(m))).collect();
    assert_eq!(
        names,
        ["raw", "zero", "fill", "sparse", "wkdm", "lzo", "lz4", "zstd", "unknown"]
    );
    assert_eq!(text(mecom_version()), env!("CARGO_PKG_VERSION"));
    assert_eq!(text(mecom_status_str(0)), "ok");
    assert_eq!(text(mecom_status_str(9999)), "unknown status");
    for s in 1..=19 {
        assert_ne!(text(mecom_status_str(s)), "unknown status", "status {s}");
    }
}

#[test]
fn stats_updates_move_the_plan() {
    let cfg = config();
    let pair = Pair::new(&cfg);
    let link = mecom_link_stats {
        bandwidth: 125_000_000,
        channels: 2,
        dirty_pages_rate: 100,
        ..Default::default()
    };
    assert_eq!(stats(pair.enc, &link), mecom_status::Ok);
    assert_eq!(stats(pair.enc, ptr::null()), mecom_status::NullParameter);
    // A slow link moves text pages into the zstd tier.
    let text_pages: Vec<u8> = (0..8)
        .flat_map(|s| page(common::Kind::Text, 4096, s + 1))
        .collect();
    let offsets: Vec<u64> = (0..8).map(|i| i * 4096).collect();
    let cap = mecom_max_frame_len(8, 4096);
    let mut frame = vec![0u8; cap];
    let mut len = 0;
    // SAFETY: valid pointers.
    unsafe {
        assert_eq!(
            mecom_encoder_encode(
                pair.enc,
                text_pages.as_ptr(),
                offsets.as_ptr(),
                8,
                ptr::null(),
                frame.as_mut_ptr(),
                cap,
                &mut len
            ),
            mecom_status::Ok
        );
    }
    let c = counters(pair.enc);
    assert_eq!(c.method_pages[Method::Zstd.counter_slot()], 8, "{c:?}");
}

#[test]
fn transport_samples_are_statuses_and_never_fail_a_batch() {
    let cfg = config();
    let pair = Pair::new(&cfg);
    let info = [0u8; 232];
    // SAFETY: a live encoder; `info` is its own length or shorter.
    unsafe {
        assert_eq!(
            mecom_encoder_update_tcp_info(pair.enc, 1, info.as_ptr(), info.len()),
            mecom_status::Ok
        );
        assert_eq!(
            mecom_encoder_update_tcp_info(pair.enc, 2, info.as_ptr(), 191),
            mecom_status::InvalidArgument
        );
        assert_eq!(
            mecom_encoder_update_tcp_info(pair.enc, 2, ptr::null(), 0),
            mecom_status::NullParameter
        );
        assert_eq!(
            mecom_encoder_update_tcp_info(ptr::null_mut(), 2, info.as_ptr(), info.len()),
            mecom_status::NullParameter
        );
        assert_eq!(
            mecom_encoder_update_transport(pair.enc, ptr::null()),
            mecom_status::NullParameter
        );
    }
    let error = text(
        // SAFETY: a live encoder.
        unsafe { mecom_encoder_last_error(pair.enc) },
    );
    assert!(error.contains("tcp_info"), "{error}");
    // Samples from a receiver-limited connection, between batches that
    // still encode and decode.
    let (ram, offsets) = ram_block(16);
    let mut out = vec![0u8; ram.len()];
    for k in 0..40u64 {
        let s = mecom_transport_stats {
            timestamp_ns: k * 2_000_000,
            busy_us: k * 2_000,
            receiver_limited_us: k * 2_000,
            ..Default::default()
        };
        // SAFETY: a live encoder and a valid sample.
        let st = unsafe { mecom_encoder_update_transport(pair.enc, &s) };
        assert_eq!(st, mecom_status::Ok);
        let frame = encode_frame(pair.enc, &ram, &offsets);
        // SAFETY: `out` holds every page at `offsets`.
        let st = unsafe {
            mecom_decoder_decode(
                pair.dec,
                frame.as_ptr(),
                frame.len(),
                out.as_mut_ptr(),
                out.len(),
                offsets.as_ptr(),
                offsets.len() as u32,
                ptr::null(),
            )
        };
        assert_eq!(st, mecom_status::Ok, "{}", dec_error(pair.dec));
    }
    for &off in &offsets {
        let r = off as usize..off as usize + 4096;
        assert_eq!(out[r.clone()], ram[r]);
    }
}

#[test]
fn every_mode_is_accepted_and_round_trips() {
    for mode in Mode::ALL {
        let cfg = mecom_config {
            mode: mode as u32,
            ..config()
        };
        let pair = Pair::new(&cfg);
        let (src, offsets) = ram_block(16);
        let frame = encode_frame(pair.enc, &src, &offsets);
        let mut dst = vec![0u8; src.len()];
        // SAFETY: `dst` holds every page at `offsets`; `frame` is readable.
        unsafe {
            assert_eq!(
                mecom_decoder_decode(
                    pair.dec,
                    frame.as_ptr(),
                    frame.len(),
                    dst.as_mut_ptr(),
                    dst.len(),
                    offsets.as_ptr(),
                    16,
                    ptr::null(),
                ),
                mecom_status::Ok,
                "{mode:?}: {}",
                dec_error(pair.dec)
            );
        }
        assert_eq!(dst, src, "{mode:?}");
    }
}

/// Reads `frame` through the C ABI the way QEMU's receive glue does: the
/// head into `buf`, then the iovecs mecom_decoder_begin_parts() lays out,
/// filled from the frame in order (`tamper` sees each raw page once it is
/// in place), then mecom_decoder_finish_parts().  Returns the first status
/// that is not OK, and how many iovecs went straight into `dst`.
fn read_in_parts_c(
    dec: *mut mecom_decoder,
    frame: &[u8],
    dst: &mut [u8],
    offsets: &[u64],
    tamper: impl FnMut(&mut [u8]),
) -> (mecom_status, usize) {
    read_in_parts_placed(dec, frame, dst, offsets, ptr::null(), tamper)
}

/// [`read_in_parts_c`] against `placement` (NULL: none).
fn read_in_parts_placed(
    dec: *mut mecom_decoder,
    frame: &[u8],
    dst: &mut [u8],
    offsets: &[u64],
    placement: *const mecom_placement,
    mut tamper: impl FnMut(&mut [u8]),
) -> (mecom_status, usize) {
    let n = offsets.len() as u32;
    let head = mecom_frame_head_len(n);
    let mut buf = vec![0u8; mecom_max_frame_len(n, 4096)];
    buf[..head].copy_from_slice(&frame[..head]);
    let empty = mecom_iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    };
    let mut iov = vec![empty; mecom_frame_max_iov(n)];
    let (mut niov, mut buffered) = (0usize, 0usize);
    // SAFETY: every pointer covers what the contract asks.
    let st = unsafe {
        mecom_decoder_begin_parts(
            dec,
            buf.as_mut_ptr(),
            buf.len(),
            head,
            dst.as_mut_ptr(),
            dst.len(),
            offsets.as_ptr(),
            n,
            placement,
            iov.as_mut_ptr(),
            iov.len(),
            &mut niov,
            &mut buffered,
        )
    };
    if st != mecom_status::Ok {
        return (st, 0);
    }
    let dst_range = dst.as_ptr_range();
    let mut at = head;
    let mut in_place = 0;
    for v in &iov[..niov] {
        let base = v.iov_base.cast::<u8>();
        // SAFETY: the library laid out this iovec within `buf` or over one
        // page of `dst` (asserted right after); `frame` overlaps neither.
        let place = unsafe { std::slice::from_raw_parts_mut(base, v.iov_len) };
        place.copy_from_slice(&frame[at..at + v.iov_len]);
        at += v.iov_len;
        if dst_range.contains(&base.cast_const()) {
            assert_eq!(v.iov_len, 4096, "a raw page is one page");
            tamper(place);
            in_place += 1;
        } else {
            assert!(buf.as_ptr_range().contains(&base.cast_const()));
        }
    }
    assert_eq!(at, frame.len(), "the iovecs cover the frame");
    // SAFETY: as above; `buf` holds `buffered` bytes.
    let st = unsafe {
        mecom_decoder_finish_parts(
            dec,
            buf.as_ptr(),
            buffered,
            dst.as_mut_ptr(),
            dst.len(),
            offsets.as_ptr(),
            n,
        )
    };
    (st, in_place)
}

/// QEMU's receive path: raw pages are read straight into guest memory and
/// verified there; a flipped bit in one fails the frame with a checksum
/// mismatch, and none of the decoded pages is written.
#[test]
fn the_receive_path_qemu_uses_reads_raw_pages_in_place_and_verifies_them() {
    let cfg = config();
    let pair = Pair::new(&cfg);
    let (src, offsets) = ram_block(128);
    let mut dst = vec![0u8; src.len()];
    for round in 0..3 {
        let frame = encode_frame(pair.enc, &src, &offsets);
        let (st, in_place) = read_in_parts_c(pair.dec, &frame, &mut dst, &offsets, |_| {});
        assert_eq!(
            st,
            mecom_status::Ok,
            "round {round}: {}",
            dec_error(pair.dec)
        );
        assert!(
            in_place > 0,
            "round {round}: the random pages go raw, in place"
        );
        assert_eq!(dst, src, "round {round}");
    }
    let frame = encode_frame(pair.enc, &src, &offsets);
    let mut dst = vec![0xEEu8; src.len()];
    let (st, in_place) = read_in_parts_c(pair.dec, &frame, &mut dst, &offsets, |p| p[7] ^= 1);
    assert!(in_place > 0);
    assert_eq!(
        st,
        mecom_status::ChecksumMismatch,
        "{}",
        dec_error(pair.dec)
    );
    let decoded_written = offsets
        .iter()
        .filter(|&&o| dst[o as usize..o as usize + 4096] != src[o as usize..o as usize + 4096])
        .filter(|&&o| {
            dst[o as usize..o as usize + 4096]
                .iter()
                .any(|&b| b != 0xEE)
        })
        .count();
    assert_eq!(
        decoded_written, in_place,
        "only the raw pages read in place changed"
    );
}

/// A frame with the retired feature bit (raw pages outside the checksum)
/// is refused with its own status on every receive path, and no code
/// writes one.
#[test]
fn a_frame_with_the_retired_feature_bit_is_refused() {
    let cfg = config();
    let pair = Pair::new(&cfg);
    let (src, offsets) = ram_block(16);
    let mut frame = encode_frame(pair.enc, &src, &offsets);
    assert_eq!(
        frame[12..16],
        [0, 0, 0, 0],
        "the encoder sets no feature bit"
    );
    frame[12] = 1;
    let mut dst = vec![0xEEu8; src.len()];
    let (st, _) = read_in_parts_c(pair.dec, &frame, &mut dst, &offsets, |_| {});
    assert_eq!(st, mecom_status::RetiredFeature);
    assert!(
        dec_error(pair.dec).contains("retired"),
        "{}",
        dec_error(pair.dec)
    );
    // SAFETY: every pointer covers what the contract asks.
    let st = unsafe {
        mecom_decoder_decode(
            pair.dec,
            frame.as_ptr(),
            frame.len(),
            dst.as_mut_ptr(),
            dst.len(),
            offsets.as_ptr(),
            16,
            ptr::null(),
        )
    };
    assert_eq!(st, mecom_status::RetiredFeature);
    let mut declared = 0usize;
    // SAFETY: `frame` holds its header; `declared` is writable.
    let st = unsafe { mecom_frame_len(frame.as_ptr(), frame.len(), &mut declared) };
    assert_eq!(st, mecom_status::RetiredFeature);
    assert!(
        dst.iter().all(|&b| b == 0xEE),
        "a refused frame wrote guest RAM"
    );
    assert_eq!(
        text(mecom_status_str(mecom_status::RetiredFeature as u32)),
        "frame uses a retired feature (raw pages outside the checksum)"
    );
}

/// begin_parts writes its outputs only on success: too few iovecs and a
/// buffer too short for the buffered payloads are named statuses.
#[test]
fn begin_parts_checks_its_buffers() {
    let cfg = config();
    let pair = Pair::new(&cfg);
    let (src, offsets) = ram_block(8);
    let frame = encode_frame(pair.enc, &src, &offsets);
    let head = mecom_frame_head_len(8);
    assert_eq!(mecom_frame_head_len(0), MECOM_FRAME_HEADER_LEN);
    assert_eq!(mecom_frame_head_len(1025), 0);
    assert_eq!(mecom_frame_max_iov(8), 17);
    assert_eq!(mecom_frame_max_iov(1025), 0);
    let mut dst = vec![0u8; src.len()];
    let mut buf = frame.clone();
    let empty = mecom_iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    };
    let mut iov = [empty; 17];
    for (buf_len, iov_cap, want) in [
        (buf.len(), 0, mecom_status::InvalidArgument),
        (head, 17, mecom_status::BufferTooSmall),
        (head - 1, 17, mecom_status::InvalidArgument),
    ] {
        let (mut niov, mut buffered) = (usize::MAX, usize::MAX);
        // SAFETY: every pointer covers what the contract asks.
        let st = unsafe {
            mecom_decoder_begin_parts(
                pair.dec,
                buf.as_mut_ptr(),
                buf_len,
                head,
                dst.as_mut_ptr(),
                dst.len(),
                offsets.as_ptr(),
                8,
                ptr::null(),
                iov.as_mut_ptr(),
                iov_cap,
                &mut niov,
                &mut buffered,
            )
        };
        assert_eq!(st, want, "buf_len {buf_len}, iov_cap {iov_cap}");
        assert_eq!((niov, buffered), (usize::MAX, usize::MAX));
        assert!(iov.iter().all(|v| *v == empty), "iovecs written on failure");
    }
}

/// The C ABI binds a frame to its packet header as QEMU's glue does: the
/// block name, the pages' offsets and the zero-page list.  Any of them
/// changed on the way is a checksum mismatch with guest RAM untouched; a
/// bound frame needs its placement, an unbound one is refused when a
/// placement is given, and a placement with a NULL array is a status.
#[test]
fn a_placement_binds_the_packet_header_into_the_checksum() {
    let cfg = config();
    let pair = Pair::new(&cfg);
    let (src, offsets) = ram_block(16);
    let zeros = [0u64, 2 * 4096];
    let block = b"pc.ram";
    let placement = mecom_placement {
        block: block.as_ptr(),
        block_len: block.len(),
        zero_offsets: zeros.as_ptr(),
        n_zero: 2,
    };
    let mut frame = vec![0u8; mecom_max_frame_len(16, 4096)];
    let mut len = 0usize;
    // SAFETY: every pointer covers what the contract asks.
    let st = unsafe {
        mecom_encoder_encode(
            pair.enc,
            src.as_ptr(),
            offsets.as_ptr(),
            16,
            &placement,
            frame.as_mut_ptr(),
            frame.len(),
            &mut len,
        )
    };
    assert_eq!(st, mecom_status::Ok);
    frame.truncate(len);
    let decode = |frame: &[u8], p: *const mecom_placement, offs: &[u64]| {
        let mut dst = vec![0xEEu8; src.len()];
        let mut dec = ptr::null_mut();
        // SAFETY: valid config and out pointer; the handle is freed below.
        let st = unsafe { mecom_decoder_new(&cfg, &mut dec) };
        assert_eq!(st, mecom_status::Ok);
        // SAFETY: every pointer covers what the contract asks.
        let st = unsafe {
            mecom_decoder_decode(
                dec,
                frame.as_ptr(),
                frame.len(),
                dst.as_mut_ptr(),
                dst.len(),
                offs.as_ptr(),
                16,
                p,
            )
        };
        // SAFETY: a handle from mecom_decoder_new, freed once.
        unsafe { mecom_decoder_free(dec) };
        (st, dst)
    };
    let (st, dst) = decode(&frame, &placement, &offsets);
    assert_eq!(st, mecom_status::Ok);
    for &o in &offsets {
        let r = o as usize..o as usize + 4096;
        assert!(dst[r.clone()] == src[r], "page at {o:#x} differs");
    }

    let mut moved = offsets.clone();
    moved.swap(3, 4);
    let one_zero = mecom_placement {
        n_zero: 1,
        ..placement
    };
    let other_block = mecom_placement {
        block_len: 5,
        ..placement
    };
    for (what, p, offs) in [
        ("page offsets", &placement, &moved),
        ("zero-page list", &one_zero, &offsets),
        ("block name", &other_block, &offsets),
    ] {
        let (st, dst) = decode(&frame, p, offs);
        assert_eq!(st, mecom_status::ChecksumMismatch, "{what}");
        assert!(dst.iter().all(|&b| b == 0xEE), "{what}: guest RAM written");
    }
    let (st, _) = decode(&frame, ptr::null(), &offsets);
    assert_eq!(st, mecom_status::InvalidArgument);
    let null_zeros = mecom_placement {
        zero_offsets: ptr::null(),
        ..placement
    };
    let (st, _) = decode(&frame, &null_zeros, &offsets);
    assert_eq!(st, mecom_status::NullParameter);

    // A fresh decoder expects sequence 0: an unbound frame from a fresh
    // encoder.
    let fresh = Pair::new(&cfg);
    let unbound = encode_frame(fresh.enc, &src, &offsets);
    let (st, _) = decode(&unbound, &placement, &offsets);
    assert_eq!(st, mecom_status::Unbound);
}

/// A packet of zero pages only gets a frame of its header alone, bound to
/// the block and the zero-page list, and QEMU's glue reads it like any
/// other: head (mecom_frame_head_len(0) bytes), begin_parts (no iovecs),
/// finish_parts.  A changed zero-page list is a checksum mismatch; a frame
/// of no pages without a placement cannot be made.
#[test]
fn a_zero_page_packet_is_bound_by_a_frame_without_pages() {
    let cfg = config();
    let pair = Pair::new(&cfg);
    let host = [0u8; 1];
    let no_offsets: [u64; 0] = [];
    let zeros = [0u64, 5 * 4096, 9 * 4096];
    let block = b"pc.ram";
    let placement = mecom_placement {
        block: block.as_ptr(),
        block_len: block.len(),
        zero_offsets: zeros.as_ptr(),
        n_zero: 3,
    };
    let mut frame = vec![0u8; mecom_max_frame_len(1, 4096)];
    let mut len = 0usize;
    let encode = |p: *const mecom_placement, frame: &mut [u8], len: &mut usize| {
        // SAFETY: every pointer covers what the contract asks (no pages).
        unsafe {
            mecom_encoder_encode(
                pair.enc,
                host.as_ptr(),
                no_offsets.as_ptr(),
                0,
                p,
                frame.as_mut_ptr(),
                frame.len(),
                len,
            )
        }
    };
    assert_eq!(
        encode(ptr::null(), &mut frame, &mut len),
        mecom_status::TooManyPages
    );
    assert_eq!(encode(&placement, &mut frame, &mut len), mecom_status::Ok);
    assert_eq!(len, mecom_frame_head_len(0));
    frame.truncate(len);

    let read = |p: &mecom_placement| {
        let mut buf = frame.clone();
        let mut dst = [0xEEu8; 1];
        let empty = mecom_iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        };
        let mut iov = [empty; 1];
        let (mut niov, mut buffered) = (usize::MAX, 0usize);
        // SAFETY: every pointer covers what the contract asks (no pages).
        let st = unsafe {
            mecom_decoder_begin_parts(
                pair.dec,
                buf.as_mut_ptr(),
                buf.len(),
                buf.len(),
                dst.as_mut_ptr(),
                dst.len(),
                no_offsets.as_ptr(),
                0,
                p,
                iov.as_mut_ptr(),
                iov.len(),
                &mut niov,
                &mut buffered,
            )
        };
        if st != mecom_status::Ok {
            return st;
        }
        assert_eq!((niov, buffered), (0, frame.len()), "nothing more to read");
        // SAFETY: as above; `buf` holds `buffered` bytes.
        unsafe {
            mecom_decoder_finish_parts(
                pair.dec,
                buf.as_ptr(),
                buffered,
                dst.as_mut_ptr(),
                dst.len(),
                no_offsets.as_ptr(),
                0,
            )
        }
    };
    let two_zeros = mecom_placement {
        n_zero: 2,
        ..placement
    };
    assert_eq!(read(&two_zeros), mecom_status::ChecksumMismatch);
    assert_eq!(read(&placement), mecom_status::Ok);
}

/// QEMU's path with a page cache: every channel's encoder shares one
/// cache, a page re-sent with a few changed words goes as a delta and is
/// applied onto the page as it stands in the destination's memory, and a
/// destination page that is not the version the source remembers fails
/// with its own status.
#[test]
fn a_shared_cache_sends_re_sent_pages_as_deltas_through_the_c_abi() {
    let cfg = config();
    let (a, b) = (Pair::new(&cfg), Pair::new(&cfg));
    let mut cache = ptr::null_mut();
    assert_eq!(
        // SAFETY: a valid out pointer.
        unsafe { mecom_cache_new(4096, 1 << 20, &mut cache) },
        mecom_status::Ok
    );
    // SAFETY: live handles; the encoders keep their own references.
    unsafe {
        assert_eq!(mecom_encoder_set_cache(a.enc, cache), mecom_status::Ok);
        assert_eq!(mecom_encoder_set_cache(b.enc, cache), mecom_status::Ok);
    }
    let (mut src, offsets) = ram_block(64);
    let placement = pc_ram();
    let encode =
        |enc: *mut mecom_encoder, src: &[u8]| encode_frame_placed(enc, src, &offsets, &placement);
    let mut dst = vec![0u8; src.len()];
    // Round 1 on channel a, round 2 on channel b.
    let first = encode(a.enc, &src);
    let (st, _) = read_in_parts_placed(a.dec, &first, &mut dst, &offsets, &placement, |_| {});
    assert_eq!(st, mecom_status::Ok, "{}", dec_error(a.dec));
    for &o in &offsets {
        src[o as usize + 40] ^= 0x5a;
    }
    let second = encode(b.enc, &src);
    assert!(
        second.len() * 8 < first.len(),
        "{} vs {}",
        second.len(),
        first.len()
    );
    let deltas = counters(b.enc).method_pages[Method::DeltaSparse.counter_slot()];
    assert!(deltas >= 48, "{deltas} delta pages");
    let mut wrong = dst.clone();
    wrong[offsets[0] as usize + 1] ^= 1;
    let (st, _) = read_in_parts_placed(b.dec, &second, &mut dst, &offsets, &placement, |_| {});
    assert_eq!(st, mecom_status::Ok, "{}", dec_error(b.dec));
    assert_eq!(dst, src);

    // The same frame (channel b's first) onto a destination whose page 0
    // differs.
    let other = Pair::new(&cfg);
    let (st, _) =
        read_in_parts_placed(other.dec, &second, &mut wrong, &offsets, &placement, |_| {});
    assert_eq!(st, mecom_status::BaseMismatch, "{}", dec_error(other.dec));
    assert!(
        dec_error(other.dec).contains("page 0"),
        "{}",
        dec_error(other.dec)
    );

    let mut c = mecom_cache_stats::default();
    assert_eq!(
        // SAFETY: a live cache and a writable out pointer.
        unsafe { mecom_cache_counters(cache, &mut c) },
        mecom_status::Ok
    );
    assert_eq!((c.size, c.inserts, c.hits), (1 << 20, 128, 64), "{c:?}");
    assert_eq!(
        mecom_method_slot(Method::DeltaLz4.tag().into()),
        Method::DeltaLz4.counter_slot() as u32
    );
    assert_eq!(mecom_method_slot(0x44), 11);
    assert_eq!(mecom_method_slot(0x45), MECOM_METHOD_SLOTS as u32);
    // The retired stateless zstd group and member are unknown; the
    // stream's head and member count in the zstd slot.
    assert_eq!(mecom_method_slot(0x07), MECOM_METHOD_SLOTS as u32);
    assert_eq!(mecom_method_slot(0x08), MECOM_METHOD_SLOTS as u32);
    assert_eq!(mecom_method_slot(0x42), 7);
    assert_eq!(mecom_method_slot(0x43), 7);
    assert_eq!(mecom_method_slot(Method::Wkdm.tag().into()), 4);
    // SAFETY: freed once; the encoders still hold the cache.
    unsafe { mecom_cache_free(cache) };
    let third = encode(a.enc, &src);
    assert!(!third.is_empty());
    // SAFETY: NULL arguments are statuses.
    unsafe {
        assert_eq!(
            mecom_cache_new(4096, 100, &mut ptr::null_mut()),
            mecom_status::InvalidConfig
        );
        assert_eq!(
            mecom_cache_new(4096, 1 << 20, ptr::null_mut()),
            mecom_status::NullParameter
        );
        assert_eq!(
            mecom_encoder_set_cache(a.enc, ptr::null()),
            mecom_status::Ok
        );
    }
}

/// QEMU's path with dedup: a page equal to one the channel sent since its
/// last SYNC goes as a 16-byte reference, which the destination resolves
/// in the block `host_len` bounds; after mecom_encoder_synced() it does
/// not.
#[test]
fn duplicate_pages_go_as_references_through_the_c_abi() {
    let cfg = config();
    let pair = Pair::new(&cfg);
    let mut cache = ptr::null_mut();
    // SAFETY: valid out pointer, then live handles; NULL is a status.
    unsafe {
        assert_eq!(mecom_cache_new(4096, 1 << 20, &mut cache), mecom_status::Ok);
        assert_eq!(
            mecom_encoder_set_dedup(pair.enc, true),
            mecom_status::InvalidArgument
        );
        assert_eq!(mecom_encoder_set_cache(pair.enc, cache), mecom_status::Ok);
        assert_eq!(mecom_encoder_set_dedup(pair.enc, true), mecom_status::Ok);
        assert_eq!(
            mecom_encoder_set_dedup(ptr::null_mut(), true),
            mecom_status::NullParameter
        );
        assert_eq!(
            mecom_encoder_synced(ptr::null_mut()),
            mecom_status::NullParameter
        );
        mecom_cache_free(cache);
    }
    // Pages 0..32 of the block, then 32..64 equal to them.
    let mut src = Vec::new();
    for i in 0..64 {
        src.extend_from_slice(&page(KINDS[i % KINDS.len()], 4096, i as u64 % 32 + 11));
    }
    let placement = pc_ram();
    let encode = |offsets: &[u64]| encode_frame_placed(pair.enc, &src, offsets, &placement);
    let dedup = |enc| counters(enc).method_pages[Method::Dedup.counter_slot()];
    let first: Vec<u64> = (0..32).map(|i| i * 4096).collect();
    let second: Vec<u64> = (32..64).map(|i| i * 4096).collect();
    let mut dst = vec![0u8; src.len()];
    let frame = encode(&first);
    let first_len = frame.len();
    let (st, _) = read_in_parts_placed(pair.dec, &frame, &mut dst, &first, &placement, |_| {});
    assert_eq!(st, mecom_status::Ok, "{}", dec_error(pair.dec));
    let frame = encode(&second);
    // The 24 that are neither zero nor fill (cheaper as they are), but for
    // a rare collision in the index.
    assert!(dedup(pair.enc) >= 22, "{}", dedup(pair.enc));
    assert!(
        frame.len() * 4 < first_len,
        "{} vs {first_len}",
        frame.len()
    );

    // A block too short for the pages is refused before anything is read.
    let mut head = frame.clone();
    let mut short = vec![0u8; 40 * 4096];
    let mut niov = 0usize;
    let mut buffered = 0usize;
    let mut iov = vec![
        mecom_iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0
        };
        mecom_frame_max_iov(32)
    ];
    // SAFETY: `head` holds the whole frame; `short` is its own length.
    let st = unsafe {
        mecom_decoder_begin_parts(
            pair.dec,
            head.as_mut_ptr(),
            head.len(),
            head.len(),
            short.as_mut_ptr(),
            short.len(),
            second.as_ptr(),
            32,
            &placement,
            iov.as_mut_ptr(),
            iov.len(),
            &mut niov,
            &mut buffered,
        )
    };
    assert_eq!(st, mecom_status::InvalidArgument);
    assert!(
        dec_error(pair.dec).contains("host_len"),
        "{}",
        dec_error(pair.dec)
    );

    let (st, _) = read_in_parts_placed(pair.dec, &frame, &mut dst, &second, &placement, |_| {});
    assert_eq!(st, mecom_status::Ok, "{}", dec_error(pair.dec));
    assert_eq!(dst, src);
    let mut c = std::mem::MaybeUninit::<mecom_counters>::uninit();
    // SAFETY: a live decoder and a writable out pointer.
    let st = unsafe { mecom_decoder_counters(pair.dec, c.as_mut_ptr()) };
    assert_eq!(st, mecom_status::Ok);
    // SAFETY: written on success.
    let c = unsafe { c.assume_init() };
    assert_eq!(
        c.method_pages[Method::Dedup.counter_slot()],
        dedup(pair.enc)
    );

    // After a sync point the same pages are no sources.
    let before = dedup(pair.enc);
    // SAFETY: a live encoder.
    assert_eq!(unsafe { mecom_encoder_synced(pair.enc) }, mecom_status::Ok);
    let third: Vec<u64> = (0..32).map(|i| i * 4096).collect();
    encode(&third);
    assert_eq!(dedup(pair.enc), before);
}
