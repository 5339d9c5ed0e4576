//! A table of malformed frames, each with the exact error it must produce,
//! and the promise that a failed decode writes nothing.

mod common;

use common::{page, Kind};
use mecom::format::{pack_entry, HEADER_LEN};
use mecom::{Config, Decoder, Encoder, Error, Method, Mode};

/// A valid 4-page frame (zero, text, random, sparse) and its pages.
fn valid_frame(config: &Config) -> (Vec<u8>, Vec<Vec<u8>>) {
    let kinds = [Kind::Zero, Kind::Text, Kind::Random, Kind::Sparse];
    let pages: Vec<Vec<u8>> = kinds
        .iter()
        .enumerate()
        .map(|(i, &k)| page(k, 4096, i as u64 + 3))
        .collect();
    let refs: Vec<&[u8]> = pages.iter().map(Vec::as_slice).collect();
    let mut enc = Encoder::new(config.clone()).unwrap();
    let mut frame = vec![0u8; enc.max_frame_len(4)];
    let len = enc.encode(&refs, &mut frame).unwrap();
    frame.truncate(len);
    (frame, pages)
}

fn fast() -> Config {
    Config {
        mode: Mode::Fixed,
        zstd_level: 0,
        ..Config::default()
    }
}

fn decode(frame: &[u8], expected_pages: usize) -> Result<(), Error> {
    let mut dec = Decoder::new(fast()).unwrap();
    let mut out = vec![0xEEu8; expected_pages.max(4) * 4096];
    let r = dec.decode_with_count(frame, expected_pages, &mut out);
    if r.is_err() {
        assert!(
            out.iter().all(|&b| b == 0xEE),
            "a failed decode wrote pages"
        );
    }
    r
}

/// Offsets into the valid frame's page table.
fn entry_at(i: usize) -> usize {
    HEADER_LEN + 4 * i
}

fn set_u32(frame: &mut [u8], at: usize, v: u32) {
    frame[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

trait DecodeWithCount {
    fn decode_with_count(&mut self, frame: &[u8], n: usize, out: &mut [u8]) -> Result<(), Error>;
}

impl DecodeWithCount for Decoder {
    fn decode_with_count(&mut self, frame: &[u8], n: usize, out: &mut [u8]) -> Result<(), Error> {
        let mut pages: Vec<&mut [u8]> = out.chunks_mut(4096).take(n).collect();
        self.decode(frame, &mut pages).map(|_| ())
    }
}

#[test]
fn the_valid_frame_decodes() {
    let (frame, pages) = valid_frame(&fast());
    let mut dec = Decoder::new(fast()).unwrap();
    let mut out = vec![0u8; 4 * 4096];
    dec.decode_into(&frame, &mut out).unwrap();
    assert_eq!(out, pages.concat());
}

#[test]
fn malformed_frames_give_their_exact_error() {
    let (good, _) = valid_frame(&fast());
    let payload_len = good.len() - HEADER_LEN - 16;
    type Mutate = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Mutate, usize, Error)> = vec![
        (
            "empty",
            Box::new(|f| f.clear()),
            4,
            Error::Truncated {
                needed: HEADER_LEN,
                available: 0,
            },
        ),
        (
            "bad magic",
            Box::new(|f| f[0] = b'X'),
            4,
            Error::BadMagic { found: *b"XCBC" },
        ),
        (
            "version 2",
            Box::new(|f| f[4] = 2),
            4,
            Error::UnsupportedVersion { version: 2 },
        ),
        (
            "feature bit",
            Box::new(|f| set_u32(f, 12, 0x8000_0000)),
            4,
            Error::UnsupportedFeature {
                features: 0x8000_0000,
            },
        ),
        (
            // A frame that is valid in every other way: the bit alone is
            // what refuses it, so an old source's unchecked raw pages can
            // never be decoded as good.
            "retired feature bit 0 (raw pages outside the checksum)",
            Box::new(|f| set_u32(f, 12, 1)),
            4,
            Error::RetiredFeature { features: 1 },
        ),
        (
            "page shift 13",
            Box::new(|f| f[5] = 13),
            4,
            Error::PageSizeMismatch {
                frame: 8192,
                expected: 4096,
            },
        ),
        (
            "page shift 40",
            Box::new(|f| f[5] = 40),
            4,
            Error::UnsupportedPageSize { page_size: 0 },
        ),
        (
            "zero pages",
            Box::new(|f| f[6..8].copy_from_slice(&0u16.to_le_bytes())),
            4,
            Error::TooManyPages {
                pages: 0,
                max: 1024,
            },
        ),
        (
            "more than max_pages",
            Box::new(|f| f[6..8].copy_from_slice(&200u16.to_le_bytes())),
            4,
            Error::TooManyPages {
                pages: 200,
                max: 128,
            },
        ),
        (
            "count differs from packet",
            Box::new(|_| {}),
            3,
            Error::PageCountMismatch {
                frame: 4,
                expected: 3,
            },
        ),
        (
            "sequence 5",
            Box::new(|f| set_u32(f, 8, 5)),
            4,
            Error::SequenceMismatch {
                frame: 5,
                expected: 0,
            },
        ),
        (
            "reserved set",
            Box::new(|f| set_u32(f, 20, 1)),
            4,
            Error::InvalidArgument {
                reason: "reserved header field is not zero",
            },
        ),
        (
            "table truncated",
            Box::new(|f| f.truncate(HEADER_LEN + 6)),
            4,
            Error::Truncated {
                needed: HEADER_LEN + 16,
                available: HEADER_LEN + 6,
            },
        ),
        (
            "payload one short",
            Box::new(|f| {
                f.pop();
            }),
            4,
            Error::LengthMismatch {
                declared: payload_len,
                actual: payload_len - 1,
            },
        ),
        (
            "payload one long",
            Box::new(|f| f.push(0)),
            4,
            Error::LengthMismatch {
                declared: payload_len,
                actual: payload_len + 1,
            },
        ),
        (
            "unknown tag",
            Box::new(|f| f[entry_at(1) + 3] = 0x45),
            4,
            Error::UnknownMethod { page: 1, tag: 0x45 },
        ),
        (
            "retired tag: the stateless zstd group",
            Box::new(|f| f[entry_at(1) + 3] = 0x07),
            4,
            Error::UnknownMethod { page: 1, tag: 0x07 },
        ),
        (
            "retired tag: the zstd member of the nearest head",
            Box::new(|f| f[entry_at(1) + 3] = 0x08),
            4,
            Error::UnknownMethod { page: 1, tag: 0x08 },
        ),
        (
            "zstd group without the stream feature",
            Box::new(|f| f[entry_at(1) + 3] = Method::Zstd.tag()),
            4,
            Error::CorruptPage {
                page: 1,
                method: Method::Zstd,
                reason: "zstd group in a frame without the stream feature",
            },
        ),
        (
            "delta page without the delta feature",
            Box::new(|f| f[entry_at(1) + 3] = Method::DeltaLz4.tag()),
            4,
            Error::CorruptPage {
                page: 1,
                method: Method::DeltaLz4,
                reason: "delta page in a frame without the delta feature",
            },
        ),
        (
            "raw of wrong length",
            Box::new(|f| {
                f[entry_at(2)..entry_at(2) + 4]
                    .copy_from_slice(&pack_entry(Method::Raw.tag(), 4000))
            }),
            4,
            Error::CorruptPage {
                page: 2,
                method: Method::Raw,
                reason: "payload length not valid for this method",
            },
        ),
        (
            "zero page with payload",
            Box::new(|f| {
                f[entry_at(0)..entry_at(0) + 4].copy_from_slice(&pack_entry(Method::Zero.tag(), 1))
            }),
            4,
            Error::CorruptPage {
                page: 0,
                method: Method::Zero,
                reason: "payload length not valid for this method",
            },
        ),
        (
            "member naming itself",
            Box::new(|f| {
                f[entry_at(0)..entry_at(0) + 4]
                    .copy_from_slice(&pack_entry(Method::ZstdMember.tag(), 0))
            }),
            4,
            Error::CorruptPage {
                page: 0,
                method: Method::ZstdMember,
                reason: "zstd member does not name a group head before it",
            },
        ),
        (
            "member naming a page that is not a head",
            Box::new(|f| {
                f[entry_at(2)..entry_at(2) + 4]
                    .copy_from_slice(&pack_entry(Method::ZstdMember.tag(), 0))
            }),
            4,
            Error::CorruptPage {
                page: 2,
                method: Method::ZstdMember,
                reason: "zstd member does not name a group head before it",
            },
        ),
        (
            "member naming a later page",
            Box::new(|f| {
                f[entry_at(1)..entry_at(1) + 4]
                    .copy_from_slice(&pack_entry(Method::ZstdMember.tag(), 3))
            }),
            4,
            Error::CorruptPage {
                page: 1,
                method: Method::ZstdMember,
                reason: "zstd member does not name a group head before it",
            },
        ),
        (
            "table lengths shifted",
            Box::new(move |f| {
                // Page 0 (zero) claims 4 bytes as fill, page 2 (raw) stays: the sum grows by 4.
                f[entry_at(0)..entry_at(0) + 4].copy_from_slice(&pack_entry(Method::Fill.tag(), 4));
            }),
            4,
            Error::LengthMismatch {
                declared: payload_len + 4,
                actual: payload_len,
            },
        ),
    ];
    for (name, mutate, n, expected) in cases {
        let mut f = good.clone();
        mutate(&mut f);
        assert_eq!(decode(&f, n), Err(expected), "case {name}");
    }
}

/// Flipping any bit of any payload either fails the decode (codec or
/// checksum) or, where the codec has two spellings of the same bytes (an LZ
/// match at another offset holding equal text), yields exactly the original
/// pages.  It never yields different pages.
#[test]
fn corrupt_payloads_never_yield_different_pages() {
    let (good, pages) = valid_frame(&fast());
    let table_end = HEADER_LEN + 16;
    let (mut caught, mut same) = (0, 0);
    for at in table_end..good.len() {
        for bit in [0x01u8, 0x80] {
            let mut f = good.clone();
            f[at] ^= bit;
            let mut dec = Decoder::new(fast()).unwrap();
            let mut out = vec![0u8; 4 * 4096];
            match dec.decode_into(&f, &mut out) {
                Err(Error::CorruptPage { .. }) | Err(Error::ChecksumMismatch { .. }) => caught += 1,
                Ok(_) => {
                    assert_eq!(
                        out,
                        pages.concat(),
                        "flip at {at} bit {bit:#x} changed pages"
                    );
                    same += 1;
                }
                Err(other) => panic!("flip at {at} bit {bit:#x}: {other:?}"),
            }
        }
    }
    assert_eq!(caught + same, 2 * (good.len() - table_end));
    assert!(caught > 10 * same, "caught {caught}, equivalent {same}");
}

#[test]
fn a_checksum_flip_is_a_checksum_mismatch() {
    let (mut f, _) = valid_frame(&fast());
    f[24] ^= 1;
    assert!(matches!(decode(&f, 4), Err(Error::ChecksumMismatch { .. })));
}

fn ratio() -> Config {
    Config {
        mode: Mode::Fixed,
        zstd_level: 1,
        ..Config::default()
    }
}

/// Two frames of one channel, both with a zstd group, and their pages.
fn stream_frames() -> (Vec<Vec<u8>>, Vec<u8>) {
    let pages: Vec<Vec<u8>> = (0..4).map(|s| page(Kind::Text, 4096, s + 1)).collect();
    let refs: Vec<&[u8]> = pages.iter().map(Vec::as_slice).collect();
    let mut enc = Encoder::new(ratio()).unwrap();
    let frames = (0..2)
        .map(|_| {
            let mut frame = vec![0u8; enc.max_frame_len(4)];
            let len = enc.encode(&refs, &mut frame).unwrap();
            frame.truncate(len);
            assert_eq!(frame[entry_at(0) + 3], Method::Zstd.tag());
            frame
        })
        .collect();
    (frames, pages.concat())
}

#[test]
fn zstd_group_errors_are_named() {
    let (frames, _) = stream_frames();
    let mut frame = frames[0].clone();
    // Turn the last member into a raw-length-0 zero page: the group now
    // decodes to one page more than its members.
    frame[entry_at(3)..entry_at(3) + 4].copy_from_slice(&pack_entry(Method::Zero.tag(), 0));
    let mut dec = Decoder::new(ratio()).unwrap();
    let mut out = vec![0u8; 4 * 4096];
    assert_eq!(
        dec.decode_into(&frame, &mut out),
        Err(Error::CorruptPage {
            page: 0,
            method: Method::Zstd,
            reason: "zstd group is longer than its pages"
        })
    );
    // A channel's first group that does not open a stream.
    let mut frame = frames[0].clone();
    frame[entry_at(4)] = 0;
    let mut dec = Decoder::new(ratio()).unwrap();
    assert_eq!(
        dec.decode_into(&frame, &mut out),
        Err(Error::StreamLost { page: 0 })
    );
}

#[test]
fn after_a_failed_frame_the_stream_is_lost_not_desynchronised() {
    let (frames, pages) = stream_frames();
    let mut dec = Decoder::new(ratio()).unwrap();
    let mut out = vec![0u8; 4 * 4096];
    dec.decode_into(&frames[0], &mut out).unwrap();
    assert_eq!(out, pages);
    // Frame 1 fails after its group went through the stream...
    let mut broken = frames[1].clone();
    broken[24] ^= 1;
    assert!(matches!(
        dec.decode_into(&broken, &mut out),
        Err(Error::ChecksumMismatch { .. })
    ));
    // ...so the intact frame 1 would continue from the wrong place.
    assert_eq!(
        dec.decode_into(&frames[1], &mut out),
        Err(Error::StreamLost { page: 0 })
    );
    // Decoded in order, both frames give their pages.
    let mut dec = Decoder::new(ratio()).unwrap();
    for f in &frames {
        out.fill(0);
        dec.decode_into(f, &mut out).unwrap();
        assert_eq!(out, pages);
    }
    assert!(frames[1].len() * 4 < frames[0].len());
}

#[test]
fn replayed_and_skipped_frames_are_sequence_errors() {
    let config = fast();
    let pages = [page(Kind::Text, 4096, 9)];
    let refs: Vec<&[u8]> = pages.iter().map(Vec::as_slice).collect();
    let mut enc = Encoder::new(config.clone()).unwrap();
    let frames: Vec<Vec<u8>> = (0..3)
        .map(|_| {
            let mut f = vec![0u8; enc.max_frame_len(1)];
            let n = enc.encode(&refs, &mut f).unwrap();
            f.truncate(n);
            f
        })
        .collect();
    let mut dec = Decoder::new(config).unwrap();
    let mut out = vec![0u8; 4096];
    dec.decode_into(&frames[0], &mut out).unwrap();
    assert_eq!(
        dec.decode_into(&frames[0], &mut out),
        Err(Error::SequenceMismatch {
            frame: 0,
            expected: 1
        })
    );
    assert_eq!(
        dec.decode_into(&frames[2], &mut out),
        Err(Error::SequenceMismatch {
            frame: 2,
            expected: 1
        })
    );
    dec.decode_into(&frames[1], &mut out).unwrap();
}

#[test]
fn unsupported_configurations_are_refused() {
    for page_size in [0u32, 1024, 4095, 6000, 131072] {
        let c = Config {
            page_size,
            ..Config::default()
        };
        assert_eq!(
            Encoder::new(c.clone()).err(),
            Some(Error::UnsupportedPageSize { page_size })
        );
        assert_eq!(
            Decoder::new(c).err(),
            Some(Error::UnsupportedPageSize { page_size })
        );
    }
    let mut enc = Encoder::new(Config {
        max_pages: 2,
        ..Config::default()
    })
    .unwrap();
    let p = vec![0u8; 4096];
    let mut out = vec![0u8; 1 << 20];
    assert_eq!(
        enc.encode(&[&p, &p, &p], &mut out),
        Err(Error::TooManyPages { pages: 3, max: 2 })
    );
    assert_eq!(
        enc.encode(&[], &mut out),
        Err(Error::TooManyPages { pages: 0, max: 2 })
    );
    assert_eq!(
        enc.encode(&[&p[..100]], &mut out),
        Err(Error::InvalidArgument {
            reason: "every page must be exactly page_size bytes"
        })
    );
    assert_eq!(
        enc.encode(&[&p], &mut out[..100]),
        Err(Error::BufferTooSmall {
            needed: 32 + 4 + 4096,
            given: 100
        })
    );
}

/// Read in parts, a raw page goes straight into its place, and is verified
/// there: a flipped bit in it fails the frame with a checksum mismatch,
/// and none of the decoded pages is written.
#[test]
fn a_raw_page_read_in_place_is_still_verified() {
    let (good, pages) = valid_frame(&fast());
    let raw_page = pages
        .iter()
        .position(|p| p == &page(Kind::Random, 4096, 5))
        .expect("the random page");
    let mut dec = Decoder::new(fast()).unwrap();
    let mut out = vec![0xEEu8; 4 * 4096];
    let mut flipped = vec![];
    let r = common::read_in_parts(&mut dec, &good, 4, 4096, &mut out, None, |i, place| {
        place[100] ^= 0x10;
        flipped.push(i);
    });
    assert_eq!(flipped, [raw_page], "only the random page is raw");
    assert!(matches!(r, Err(Error::ChecksumMismatch { .. })), "{r:?}");
    for (i, p) in out.chunks_exact(4096).enumerate() {
        if i != raw_page {
            assert!(p.iter().all(|&b| b == 0xEE), "page {i} written");
        }
    }
}

/// A frame bound to its packet's placement (block name, page offsets,
/// zero-page offsets) decodes only against the same placement: any field
/// changed is a checksum mismatch and nothing is written, whole or in
/// parts; a bound frame without a placement and an unbound frame with one
/// are refused by name.
#[test]
fn a_frame_bound_to_its_placement_fails_when_the_placement_changes() {
    let (_, pages) = valid_frame(&fast());
    let refs: Vec<&[u8]> = pages.iter().map(Vec::as_slice).collect();
    let offsets = [0x1000u64, 0x5000, 0x2000, 0x9000];
    let zeros = [0x3000u64, 0x7000];
    let placement = mecom::Placement {
        block: b"pc.ram",
        offsets: &offsets,
        zero_offsets: &zeros,
    };
    let mut enc = Encoder::new(fast()).unwrap();
    let mut frame = vec![0u8; enc.max_frame_len(4)];
    let len = enc.encode_placed(&refs, &placement, &mut frame).unwrap();
    frame.truncate(len);

    let decode_against = |p: Option<&mecom::Placement>| {
        let mut dec = Decoder::new(fast()).unwrap();
        let mut out = vec![0xEEu8; 4 * 4096];
        let mut slices: Vec<&mut [u8]> = out.chunks_exact_mut(4096).collect();
        let r = match p {
            Some(p) => dec.decode_placed(&frame, p, &mut slices),
            None => dec.decode(&frame, &mut slices),
        };
        (r.map(|_| ()), out)
    };
    let (r, out) = decode_against(Some(&placement));
    assert_eq!(r, Ok(()));
    assert_eq!(out, pages.concat());

    let other_offsets = [0x1000u64, 0x5000, 0x2000, 0xa000];
    let other_zeros = [0x3000u64];
    let changed = [
        mecom::Placement {
            block: b"pc.rom",
            ..placement
        },
        mecom::Placement {
            offsets: &other_offsets,
            ..placement
        },
        mecom::Placement {
            zero_offsets: &other_zeros,
            ..placement
        },
    ];
    for p in &changed {
        let (r, out) = decode_against(Some(p));
        assert!(
            matches!(r, Err(Error::ChecksumMismatch { .. })),
            "{p:?}: {r:?}"
        );
        assert!(
            out.iter().all(|&b| b == 0xEE),
            "{p:?}: a refused frame wrote"
        );
        // Read in parts, the placement given to begin_parts is checked too.
        let mut dec = Decoder::new(fast()).unwrap();
        let mut out = vec![0xEEu8; 4 * 4096];
        let r = common::read_in_parts(&mut dec, &frame, 4, 4096, &mut out, Some(p), |_, _| {});
        assert!(
            matches!(r, Err(Error::ChecksumMismatch { .. })),
            "in parts, {p:?}: {r:?}"
        );
    }
    let (r, _) = decode_against(None);
    assert!(matches!(r, Err(Error::InvalidArgument { .. })), "{r:?}");

    let (unbound, _) = valid_frame(&fast());
    let mut dec = Decoder::new(fast()).unwrap();
    let mut out = vec![0u8; 4 * 4096];
    let mut slices: Vec<&mut [u8]> = out.chunks_exact_mut(4096).collect();
    assert_eq!(
        dec.decode_placed(&unbound, &placement, &mut slices),
        Err(Error::Unbound)
    );
}

/// A packet whose pages are all zero still gets a frame: a header without
/// pages bound to the block and the zero-page list.  It decodes against the
/// same placement only (a changed list is a checksum mismatch), takes its
/// place in the channel's sequence, and a frame without pages that is not
/// bound to a placement is refused: it would vouch for nothing.
#[test]
fn a_frame_without_pages_binds_a_zero_page_list() {
    let zeros = [0x3000u64, 0x7000];
    let placement = mecom::Placement {
        block: b"pc.ram",
        offsets: &[],
        zero_offsets: &zeros,
    };
    let mut enc = Encoder::new(fast()).unwrap();
    let mut frame = vec![0u8; enc.max_frame_len(1)];
    let len = enc.encode_placed(&[], &placement, &mut frame).unwrap();
    frame.truncate(len);
    assert_eq!(len, mecom::format::HEADER_LEN);
    assert_eq!(
        enc.encode(&[], &mut [0u8; 64]),
        Err(Error::TooManyPages { pages: 0, max: 128 }),
        "without a placement there is nothing to bind"
    );

    let mut dec = Decoder::new(fast()).unwrap();
    assert_eq!(
        dec.decode_placed(&frame, &placement, &mut [])
            .map(|i| i.pages),
        Ok(0)
    );
    // The next frame of the channel follows it in sequence.
    let (_, pages) = valid_frame(&fast());
    let refs: Vec<&[u8]> = pages.iter().map(Vec::as_slice).collect();
    let mut next = vec![0u8; enc.max_frame_len(4)];
    let n = enc.encode(&refs, &mut next).unwrap();
    let mut out = vec![0u8; 4 * 4096];
    assert_eq!(
        dec.decode_into(&next[..n], &mut out).map(|i| i.sequence),
        Ok(1)
    );
    assert_eq!(out, pages.concat());

    let one_zero = mecom::Placement {
        zero_offsets: &zeros[..1],
        ..placement
    };
    let mut dec = Decoder::new(fast()).unwrap();
    let r = dec.decode_placed(&frame, &one_zero, &mut []);
    assert!(matches!(r, Err(Error::ChecksumMismatch { .. })), "{r:?}");
    let r = dec.decode(&frame, &mut []);
    assert!(matches!(r, Err(Error::InvalidArgument { .. })), "{r:?}");

    // The same header with the placement bit cleared is refused.
    let mut unbound = frame.clone();
    unbound[12..16].copy_from_slice(&0u32.to_le_bytes());
    let mut dec = Decoder::new(fast()).unwrap();
    assert_eq!(
        dec.decode(&unbound, &mut []),
        Err(Error::TooManyPages {
            pages: 0,
            max: 1024
        })
    );
}

/// A retired tag names what it was; any other unknown tag is just unknown.
#[test]
fn retired_tags_say_what_they_were() {
    let msg = |tag| Error::UnknownMethod { page: 3, tag }.to_string();
    assert_eq!(
        msg(0x07),
        "page 3: method tag 0x07 (stateless zstd group) is retired"
    );
    assert_eq!(
        msg(0x08),
        "page 3: method tag 0x08 (zstd member of the nearest head) is retired"
    );
    assert_eq!(msg(0x45), "page 3: unknown method tag 0x45");
}
