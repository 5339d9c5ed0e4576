//! Batch decoder: one frame in, pages out.
//!
//! Every byte of a frame is hostile.  The decoder
//! 1. checks the header and the whole page table (known tags, lengths each
//!    method allows, lengths that add up to exactly the frame) before it
//!    decodes anything;
//! 2. decodes every page into its own scratch buffer, sized at construction
//!    for `max_pages`, so no size read from the wire is ever allocated;
//! 3. verifies the checksum over the decoded pages;
//! 4. only then hands the pages to the caller.
//!
//! So a frame that fails in any way leaves the caller's pages untouched.

#![forbid(unsafe_code)]

use crate::codec::{lz, sparse, wkdm, zstd_group::GroupDecoder, DecodeResult};
use crate::config::Config;
use crate::counters::Counters;
use crate::error::{Error, Result};
use crate::format::{self, Header, ENTRY_LEN, HEADER_LEN};
use crate::method::Method;
use std::time::Instant;

/// One checked page table entry.
#[derive(Debug, Clone, Copy)]
struct Entry {
    method: Method,
    /// Payload offset from the start of the frame.
    offset: usize,
    len: usize,
}

/// What a successful decode found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// Pages in the frame.
    pub pages: usize,
    /// The frame's sequence number.
    pub sequence: u32,
}

/// Decodes frames into pages.  One per channel; not `Sync`.
pub struct Decoder {
    config: Config,
    shift: u8,
    page_size: usize,
    scratch: Vec<u8>,
    group: Vec<u8>,
    entries: Vec<Entry>,
    zstd: GroupDecoder,
    sequence: u32,
    counters: Counters,
}

impl Decoder {
    /// Creates a decoder; `page_size` and `max_pages` of `config` bound what
    /// it accepts.
    pub fn new(config: Config) -> Result<Decoder> {
        let shift = config.validate()?;
        let page_size = config.page_size as usize;
        let cap = config.max_pages * page_size;
        let zstd = GroupDecoder::new(cap).map_err(|_| Error::InvalidConfig {
            reason: "zstd context could not be created",
        })?;
        Ok(Decoder {
            shift,
            page_size,
            scratch: vec![0; cap],
            group: vec![0; cap],
            entries: Vec::with_capacity(config.max_pages),
            zstd,
            sequence: 0,
            counters: Counters::default(),
            config,
        })
    }

    /// The configuration the decoder was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Running totals.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Decodes `frame` into `pages` (each exactly one page long; as many as
    /// the frame holds).  On error no page is written.
    pub fn decode(&mut self, frame: &[u8], pages: &mut [&mut [u8]]) -> Result<FrameInfo> {
        if pages.iter().any(|p| p.len() != self.page_size) {
            return Err(Error::InvalidArgument {
                reason: "every page must be exactly page_size bytes",
            });
        }
        self.decode_with(frame, pages.len(), |i, page| {
            pages[i].copy_from_slice(page);
        })
    }

    /// Decodes `frame` into `out`, pages back to back; returns how many.
    /// `out` must hold at least the frame's pages.  On error `out` is not
    /// written.
    pub fn decode_into(&mut self, frame: &[u8], out: &mut [u8]) -> Result<FrameInfo> {
        let ps = self.page_size;
        let count = Header::parse(frame)?.page_count as usize;
        if out.len() < count * ps {
            return Err(Error::BufferTooSmall {
                needed: count * ps,
                given: out.len(),
            });
        }
        self.decode_with(frame, count, |i, page| {
            out[i * ps..(i + 1) * ps].copy_from_slice(page);
        })
    }

    /// Decodes and verifies `frame`, which must hold `expected_pages` pages,
    /// then calls `sink(i, page)` for every page in order.
    pub(crate) fn decode_with(
        &mut self,
        frame: &[u8],
        expected_pages: usize,
        mut sink: impl FnMut(usize, &[u8]),
    ) -> Result<FrameInfo> {
        let start = Instant::now();
        let header = self.check(frame, expected_pages)?;
        let n = usize::from(header.page_count);
        let ps = self.page_size;
        self.decode_pages(frame, n)?;
        let computed = xxhash_rust::xxh3::xxh3_64(&self.scratch[..n * ps]);
        if computed != header.checksum {
            return Err(Error::ChecksumMismatch {
                expected: header.checksum,
                computed,
            });
        }
        for (i, page) in self.scratch[..n * ps].chunks_exact(ps).enumerate() {
            sink(i, page);
        }
        self.sequence = self.sequence.wrapping_add(1);
        let c = &mut self.counters;
        for e in &self.entries {
            let slot = e.method.counter_slot();
            c.method_pages[slot] += 1;
            c.method_bytes[slot] += e.len as u64;
        }
        c.frames += 1;
        c.pages += n as u64;
        c.bytes_in += (n * ps) as u64;
        c.bytes_out += frame.len() as u64;
        c.ns += start.elapsed().as_nanos() as u64;
        Ok(FrameInfo {
            pages: n,
            sequence: header.sequence,
        })
    }

    /// Checks the header and the page table; fills `self.entries`.
    fn check(&mut self, frame: &[u8], expected_pages: usize) -> Result<Header> {
        let header = Header::parse(frame)?;
        if header.page_shift != self.shift {
            return Err(Error::PageSizeMismatch {
                frame: 1 << header.page_shift,
                expected: self.config.page_size,
            });
        }
        let n = usize::from(header.page_count);
        if n > self.config.max_pages {
            return Err(Error::TooManyPages {
                pages: n,
                max: self.config.max_pages,
            });
        }
        if n != expected_pages {
            return Err(Error::PageCountMismatch {
                frame: n,
                expected: expected_pages,
            });
        }
        if header.sequence != self.sequence {
            return Err(Error::SequenceMismatch {
                frame: header.sequence,
                expected: self.sequence,
            });
        }
        let table_end = HEADER_LEN + n * ENTRY_LEN;
        let table = frame.get(HEADER_LEN..table_end).ok_or(Error::Truncated {
            needed: table_end,
            available: frame.len(),
        })?;
        let payload = frame.len() - table_end;
        if header.payload_len as usize != payload {
            return Err(Error::LengthMismatch {
                declared: header.payload_len as usize,
                actual: payload,
            });
        }
        let ps = self.page_size;
        self.entries.clear();
        let mut offset = table_end;
        let mut in_group = false;
        for (page, raw) in table.chunks_exact(ENTRY_LEN).enumerate() {
            let (tag, len) = format::unpack_entry([raw[0], raw[1], raw[2], raw[3]]);
            let method = Method::from_tag(tag).map_err(|tag| Error::UnknownMethod { page, tag })?;
            let valid = match method {
                Method::Raw => len == ps,
                Method::Zero => len == 0,
                Method::Fill => len == 4,
                Method::ZstdMember => len == 0 && in_group,
                Method::Sparse | Method::Wkdm | Method::Lzo | Method::Lz4 => (1..ps).contains(&len),
                // A group holds at most the frame's pages; the exact size
                // is checked when it is decompressed.
                Method::Zstd => len >= 1 && len <= n * ps,
            };
            if !valid {
                return Err(Error::CorruptPage {
                    page,
                    method,
                    reason: if method == Method::ZstdMember && len == 0 {
                        "zstd member without a group head"
                    } else {
                        "payload length not valid for this method"
                    },
                });
            }
            in_group |= method == Method::Zstd;
            self.entries.push(Entry {
                method,
                offset,
                len,
            });
            offset += len;
        }
        if offset != frame.len() {
            return Err(Error::LengthMismatch {
                declared: offset - table_end,
                actual: payload,
            });
        }
        Ok(header)
    }

    /// Decodes every page of a checked frame into `self.scratch`.
    fn decode_pages(&mut self, frame: &[u8], n: usize) -> Result<()> {
        let ps = self.page_size;
        for i in 0..n {
            let e = self.entries[i];
            // `check` proved offset + len <= frame.len() for every entry.
            let src = &frame[e.offset..e.offset + e.len];
            let page = &mut self.scratch[i * ps..(i + 1) * ps];
            let result: DecodeResult = match e.method {
                Method::Raw => {
                    page.copy_from_slice(src);
                    Ok(())
                }
                Method::Zero => {
                    page.fill(0);
                    Ok(())
                }
                Method::Fill => {
                    for w in page.chunks_exact_mut(4) {
                        w.copy_from_slice(src);
                    }
                    Ok(())
                }
                Method::Sparse => sparse::decode(src, page),
                Method::Wkdm => wkdm::decode(src, page),
                Method::Lzo => lz::lzo_decode(src, page),
                Method::Lz4 => lz::lz4_decode(src, page),
                Method::Zstd => self.decode_group(i, src),
                // Written by its group's head.
                Method::ZstdMember => Ok(()),
            };
            result.map_err(|reason| Error::CorruptPage {
                page: i,
                method: e.method,
                reason,
            })?;
        }
        Ok(())
    }

    /// Decompresses the group headed by page `head` and scatters it to the
    /// head and its members (every member up to the next head).
    fn decode_group(&mut self, head: usize, src: &[u8]) -> DecodeResult {
        let ps = self.page_size;
        let members = self.entries[head + 1..]
            .iter()
            .take_while(|e| e.method != Method::Zstd)
            .filter(|e| e.method == Method::ZstdMember)
            .count();
        let len = (members + 1) * ps;
        self.zstd.decompress(src, &mut self.group[..len])?;
        let mut chunks = self.group[..len].chunks_exact(ps);
        let mut targets = std::iter::once(head).chain(
            (head + 1..self.entries.len())
                .take_while(|&j| self.entries[j].method != Method::Zstd)
                .filter(|&j| self.entries[j].method == Method::ZstdMember),
        );
        for (chunk, j) in (&mut chunks).zip(&mut targets) {
            self.scratch[j * ps..(j + 1) * ps].copy_from_slice(chunk);
        }
        Ok(())
    }
}
