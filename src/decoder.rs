//! Batch decoder: one frame in, pages out.
//!
//! Every byte of a frame is hostile.  The decoder
//! 1. checks the header and the whole page table (known tags, lengths each
//!    method allows, lengths that add up to exactly the frame) before it
//!    decodes anything;
//! 2. decodes every page into its own scratch buffer, sized at construction
//!    for `max_pages`, so no size read from the wire is ever allocated;
//! 3. verifies the checksum over all decoded pages;
//! 4. only then hands the pages to the caller's [`PageSink`].
//!
//! So a frame that fails in any way leaves the caller's pages untouched.
//!
//! A frame can also be read in parts, which is how QEMU receives: the
//! header and table first ([`Decoder::begin_parts`]), checked as above;
//! then [`Decoder::parts`] says where each payload goes, in wire order: a
//! raw page straight into its place, the other payloads into the caller's
//! buffer after the head.  The frame layout lives here only; a transport
//! turns the parts into its own scatter list.  [`Decoder::finish_parts`]
//! decodes the buffered pages, verifies the checksum over every page (raw
//! pages copied from where they were put) and hands the decoded pages
//! over.  If the frame then fails, the raw pages in place hold what
//! arrived, and the caller (QEMU) fails the migration.

#![forbid(unsafe_code)]

use crate::codec::dedup;
use crate::codec::delta::{self, DeltaError, BASE_HASH_LEN};
use crate::codec::zstd_stream::{StreamDecoder, StreamError, FLAGS_LEN};
use crate::codec::{lz, sparse, wkdm, DecodeResult};
use crate::config::Config;
use crate::counters::Counters;
use crate::error::{Error, Result};
use crate::format::{
    self, Header, Placement, ENTRY_LEN, FEATURE_DEDUP, FEATURE_DELTA, FEATURE_PLACEMENT,
    FEATURE_STREAM, HEADER_LEN,
};
use crate::method::Method;
use std::time::Instant;

/// Where decoded pages go, the mirror of the encoder's page source.  The
/// FFI implements it over guest memory with one copy per page; the safe
/// API over slices.
pub(crate) trait PageSink {
    /// Number of pages the sink can take.
    fn len(&self) -> usize;
    /// Writes decoded page `index` (exactly one page long).
    fn put_page(&mut self, index: usize, page: &[u8]);
    /// Copies page `index` as it stands in its place into `dst`: a raw page
    /// the caller read there, to be verified, or the version a delta
    /// applies to.
    fn get_page(&self, index: usize, dst: &mut [u8]);
    /// Copies the page at `offset` of the frame's block as it stands into
    /// `dst` (a dedup page's source), or says why there is none: the sink
    /// knows no block, the page is not inside it, or it overlaps a page of
    /// the frame (which the destination may hold old or new, depending on
    /// how the frame is read, so [`dedup_source`] refuses it).
    fn get_block_page(&self, offset: u64, dst: &mut [u8]) -> DecodeResult;
}

/// Checks a dedup source at `offset` against the frame's page `offsets`
/// (pages of `len` bytes) before it is read: a page of the frame itself is
/// refused.  Raw pages read in place are already new when the others are
/// decoded, so a source among them would decode differently whole and in
/// parts; the encoder never names one.
pub(crate) fn dedup_source(offset: u64, offsets: &[u64], len: usize) -> DecodeResult {
    if offsets.iter().any(|&o| o.abs_diff(offset) < len as u64) {
        return Err("dedup source is a page of its own frame");
    }
    Ok(())
}

impl PageSink for [&mut [u8]] {
    fn len(&self) -> usize {
        <[&mut [u8]]>::len(self)
    }
    fn put_page(&mut self, index: usize, page: &[u8]) {
        self[index].copy_from_slice(page);
    }
    fn get_page(&self, index: usize, dst: &mut [u8]) {
        dst.copy_from_slice(self[index]);
    }
    fn get_block_page(&self, _offset: u64, _dst: &mut [u8]) -> DecodeResult {
        Err("dedup page without its block (see Decoder::decode_in_block)")
    }
}

/// The pages of a frame in their places in one memory block, which dedup
/// pages read their sources from.
struct InBlock<'a> {
    block: &'a mut [u8],
    offsets: &'a [u64],
}

impl InBlock<'_> {
    /// The range of the page at `offset`, if it lies inside the block.
    fn range(&self, offset: u64, len: usize) -> Option<std::ops::Range<usize>> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(len)?;
        (end <= self.block.len()).then_some(start..end)
    }
}

impl PageSink for InBlock<'_> {
    fn len(&self) -> usize {
        self.offsets.len()
    }
    // `decode_in_block` checked every offset against the block.
    fn put_page(&mut self, index: usize, page: &[u8]) {
        if let Some(r) = self.range(self.offsets[index], page.len()) {
            self.block[r].copy_from_slice(page);
        }
    }
    fn get_page(&self, index: usize, dst: &mut [u8]) {
        if let Some(r) = self.range(self.offsets[index], dst.len()) {
            dst.copy_from_slice(&self.block[r]);
        }
    }
    fn get_block_page(&self, offset: u64, dst: &mut [u8]) -> DecodeResult {
        dedup_source(offset, self.offsets, dst.len())?;
        let r = self
            .range(offset, dst.len())
            .ok_or("dedup source outside the block")?;
        dst.copy_from_slice(&self.block[r]);
        Ok(())
    }
}

/// Pages back to back in one buffer.
struct Contiguous<'a> {
    out: &'a mut [u8],
    page_size: usize,
}

impl PageSink for Contiguous<'_> {
    fn len(&self) -> usize {
        self.out.len() / self.page_size
    }
    fn put_page(&mut self, index: usize, page: &[u8]) {
        let ps = self.page_size;
        self.out[index * ps..(index + 1) * ps].copy_from_slice(page);
    }
    fn get_page(&self, index: usize, dst: &mut [u8]) {
        let ps = self.page_size;
        dst.copy_from_slice(&self.out[index * ps..(index + 1) * ps]);
    }
    fn get_block_page(&self, _offset: u64, _dst: &mut [u8]) -> DecodeResult {
        Err("dedup page without its block (see Decoder::decode_in_block)")
    }
}

/// One checked page table entry.
#[derive(Debug, Clone, Copy)]
struct Entry {
    method: Method,
    /// Payload offset in the buffer being decoded (for a frame read in
    /// parts, the caller's buffer, which lacks the payloads read in place).
    offset: usize,
    len: usize,
    /// The head of the zstd group of a member; the page itself otherwise.
    head: usize,
    /// The caller reads this raw page straight into its place.
    in_place: bool,
}

/// A frame whose head [`Decoder::begin_parts`] checked.
#[derive(Debug, Clone, Copy)]
struct Pending {
    header: Header,
    /// The checksum seed (the placement's, for a bound frame).
    seed: u64,
    /// Bytes the caller's buffer must hold: head and buffered payloads.
    buffered_end: usize,
}

/// Where one piece of a frame's payloads goes, in wire order (see
/// [`Decoder::parts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// `len` bytes into the caller's buffer at `offset`: the payloads of
    /// one or more consecutive pages that are not raw.
    Buffer {
        /// Offset in the caller's buffer (at or after the head).
        offset: usize,
        /// Bytes.
        len: usize,
    },
    /// One raw page, read straight into the place of page `index`.
    Page {
        /// Index of the page in the frame.
        index: usize,
    },
}

/// The most [`Part`]s a frame of `n_pages` pages has: buffered runs and raw
/// pages alternate at worst.
pub fn max_parts(n_pages: usize) -> usize {
    2 * n_pages + 1
}

/// The checksum seed of a checked frame: its placement's when it is bound
/// to one, which the caller must then give, 0 otherwise.  A caller that
/// gives a placement gets only bound frames: an unbound one would leave
/// the placement unverified.
fn seed_of(header: &Header, placement: Option<&Placement>) -> Result<u64> {
    let bound = header.features & FEATURE_PLACEMENT != 0;
    match (bound, placement) {
        (false, None) => Ok(0),
        (true, Some(p)) => Ok(p.seed()),
        (false, Some(_)) => Err(Error::Unbound),
        (true, None) => Err(Error::InvalidArgument {
            reason: "the frame is bound to a packet header; pass its placement",
        }),
    }
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
    /// One page: the XOR of a delta page.
    xor: Vec<u8>,
    entries: Vec<Entry>,
    /// The parts of the pending frame (see [`Decoder::parts`]).
    parts: Vec<Part>,
    /// The channel's zstd stream.
    zstd: StreamDecoder,
    sequence: u32,
    counters: Counters,
    pending: Option<Pending>,
}

impl Decoder {
    /// Creates a decoder; `page_size` and `max_pages` of `config` bound what
    /// it accepts.
    pub fn new(config: Config) -> Result<Decoder> {
        let shift = config.validate()?;
        let page_size = config.page_size as usize;
        let cap = config.max_pages * page_size;
        let zstd = StreamDecoder::new().map_err(|_| Error::InvalidConfig {
            reason: "zstd context could not be created",
        })?;
        Ok(Decoder {
            shift,
            page_size,
            scratch: vec![0; cap],
            group: vec![0; cap],
            xor: vec![0; page_size],
            entries: Vec::with_capacity(config.max_pages),
            parts: Vec::with_capacity(max_parts(config.max_pages)),
            zstd,
            sequence: 0,
            counters: Counters::default(),
            pending: None,
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
        self.check_page_lens(pages)?;
        self.decode_to(frame, pages, None)
    }

    /// Decodes `frame` like [`Decoder::decode`], against `placement`: the
    /// frame must be bound to it ([`crate::Encoder::encode_placed`]), so a
    /// placement that differs from the encoder's fails the checksum, and an
    /// unbound frame is [`Error::Unbound`].
    pub fn decode_placed(
        &mut self,
        frame: &[u8],
        placement: &Placement,
        pages: &mut [&mut [u8]],
    ) -> Result<FrameInfo> {
        self.check_page_lens(pages)?;
        self.decode_to(frame, pages, Some(placement))
    }

    /// Decodes `frame` like [`Decoder::decode_placed`] into the pages of
    /// `block` (the memory block the placement names) at the placement's
    /// offsets.  Only this call decodes dedup pages
    /// ([`crate::Method::Dedup`]), which copy another page of the block.
    /// Every offset must leave a whole page inside `block`.  On error
    /// `block` is not written.
    pub fn decode_in_block(
        &mut self,
        frame: &[u8],
        placement: &Placement,
        block: &mut [u8],
    ) -> Result<FrameInfo> {
        let ps = self.page_size as u64;
        let fits = |&o: &u64| {
            o.checked_add(ps)
                .is_some_and(|end| end <= block.len() as u64)
        };
        if !placement.offsets.iter().all(fits) {
            return Err(Error::InvalidArgument {
                reason: "a page offset lies outside the block",
            });
        }
        let mut sink = InBlock {
            block,
            offsets: placement.offsets,
        };
        self.decode_to(frame, &mut sink, Some(placement))
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
        let out = &mut out[..count * ps];
        self.decode_to(frame, &mut Contiguous { out, page_size: ps }, None)
    }

    /// Decodes and verifies `frame`, which must hold as many pages as
    /// `sink` takes (and be bound to `placement`, when given), then writes
    /// every page to `sink`.
    pub(crate) fn decode_to<S: PageSink + ?Sized>(
        &mut self,
        frame: &[u8],
        sink: &mut S,
        placement: Option<&Placement>,
    ) -> Result<FrameInfo> {
        let start = Instant::now();
        self.pending = None;
        let expected_pages = sink.len();
        let table_end = HEADER_LEN.saturating_add(expected_pages.saturating_mul(ENTRY_LEN));
        let available = frame.len().saturating_sub(table_end);
        let header = self.check(frame, expected_pages, Some(available), false)?;
        let seed = seed_of(&header, placement)?;
        self.finish(frame, header, seed, start, sink)
    }

    /// Starts decoding a frame in parts: `head` holds at least its header
    /// and page table ([`format::head_len`] of `expected_pages`), which are
    /// checked as by [`Decoder::decode`] (or, with `placement`, by
    /// [`Decoder::decode_placed`]).  Returns the length the caller's
    /// buffer must then have: the head and the buffered payloads.  Where
    /// each payload goes is then told by [`Decoder::parts`].
    pub fn begin_parts(
        &mut self,
        head: &[u8],
        expected_pages: usize,
        placement: Option<&Placement>,
    ) -> Result<usize> {
        self.pending = None;
        let header = self.check(head, expected_pages, None, true)?;
        let seed = seed_of(&header, placement)?;
        let buffered_end = self.plan_parts(usize::from(header.page_count));
        self.pending = Some(Pending {
            header,
            seed,
            buffered_end,
        });
        Ok(buffered_end)
    }

    /// The payloads of the frame [`Decoder::begin_parts`] checked, in wire
    /// order: consecutive buffered payloads as one [`Part::Buffer`], each
    /// raw page as a [`Part::Page`].  At most [`max_parts`] of them; none
    /// without a pending frame.
    pub fn parts(&self) -> &[Part] {
        if self.pending.is_some() {
            &self.parts
        } else {
            &[]
        }
    }

    /// Lays out the parts of the frame whose entries were just checked
    /// in place; returns the end of the buffered part.
    fn plan_parts(&mut self, n: usize) -> usize {
        self.parts.clear();
        let head = format::head_len(n);
        let (mut run_start, mut end) = (head, head);
        for (index, e) in self.entries[..n].iter().enumerate() {
            if !e.in_place {
                end += e.len;
                continue;
            }
            if end > run_start {
                self.parts.push(Part::Buffer {
                    offset: run_start,
                    len: end - run_start,
                });
            }
            self.parts.push(Part::Page { index });
            run_start = end;
        }
        if end > run_start {
            self.parts.push(Part::Buffer {
                offset: run_start,
                len: end - run_start,
            });
        }
        end
    }

    /// Finishes the frame [`Decoder::begin_parts`] started: `frame` holds
    /// its head and buffered payloads (the length `begin_parts` returned),
    /// and `pages` (one page each, as many as the frame holds) the raw
    /// pages read in place.  Decodes the other pages, verifies the
    /// checksum over all of them, then writes the decoded ones to `pages`.
    /// On error no page is written (the raw pages in place stay as read).
    pub fn finish_parts(&mut self, frame: &[u8], pages: &mut [&mut [u8]]) -> Result<FrameInfo> {
        if let Err(e) = self.check_page_lens(pages) {
            self.pending = None;
            return Err(e);
        }
        self.finish_parts_to(frame, pages)
    }

    /// [`Decoder::finish_parts`] with any sink.
    pub(crate) fn finish_parts_to<S: PageSink + ?Sized>(
        &mut self,
        frame: &[u8],
        sink: &mut S,
    ) -> Result<FrameInfo> {
        let start = Instant::now();
        let pending = self.pending.take().ok_or(Error::InvalidArgument {
            reason: "finish_parts without a successful begin_parts",
        })?;
        if frame.len() != pending.buffered_end {
            return Err(Error::LengthMismatch {
                declared: pending.buffered_end,
                actual: frame.len(),
            });
        }
        let n = usize::from(pending.header.page_count);
        if sink.len() < n {
            return Err(Error::PageCountMismatch {
                frame: n,
                expected: sink.len(),
            });
        }
        let ps = self.page_size;
        for (i, e) in self.entries[..n].iter().enumerate() {
            if e.in_place {
                sink.get_page(i, &mut self.scratch[i * ps..(i + 1) * ps]);
            }
        }
        self.finish(frame, pending.header, pending.seed, start, sink)
    }

    fn check_page_lens(&self, pages: &[&mut [u8]]) -> Result<()> {
        if pages.iter().any(|p| p.len() != self.page_size) {
            return Err(Error::InvalidArgument {
                reason: "every page must be exactly page_size bytes",
            });
        }
        Ok(())
    }

    /// Decodes the checked frame's pages that are in `frame`, verifies the
    /// checksum over all pages, hands the decoded ones to `sink` and counts
    /// the frame.  A frame that fails here may have taken the channel's
    /// zstd stream past its group: the stream is then lost.
    fn finish<S: PageSink + ?Sized>(
        &mut self,
        frame: &[u8],
        header: Header,
        seed: u64,
        start: Instant,
        sink: &mut S,
    ) -> Result<FrameInfo> {
        let n = usize::from(header.page_count);
        let ps = self.page_size;
        if let Err(e) = self.verify(frame, n, header.checksum, seed, &*sink) {
            self.zstd.lose();
            return Err(e);
        }
        for (i, (page, e)) in self.scratch[..n * ps]
            .chunks_exact(ps)
            .zip(&self.entries)
            .enumerate()
        {
            if !e.in_place {
                sink.put_page(i, page);
            }
        }
        self.sequence = self.sequence.wrapping_add(1);
        let c = &mut self.counters;
        for e in &self.entries {
            let slot = e.method.counter_slot();
            c.method_pages[slot] += 1;
            c.method_bytes[slot] += e.len as u64;
        }
        let frame_len = format::head_len(n) + header.payload_len as usize;
        c.count_frame(n, ps, frame_len, start.elapsed().as_nanos() as u64);
        Ok(FrameInfo {
            pages: n,
            sequence: header.sequence,
        })
    }

    /// Decodes the pages of a checked frame into `self.scratch` and checks
    /// them against `checksum`.
    fn verify<S: PageSink + ?Sized>(
        &mut self,
        frame: &[u8],
        n: usize,
        checksum: u64,
        seed: u64,
        sink: &S,
    ) -> Result<()> {
        self.decode_pages(frame, n, sink)?;
        let computed = crate::hash::xxh3_64_seeded(&self.scratch[..n * self.page_size], seed);
        if computed != checksum {
            return Err(Error::ChecksumMismatch {
                expected: checksum,
                computed,
            });
        }
        Ok(())
    }

    /// Checks the header and the page table at the start of `frame`; fills
    /// `self.entries`.  `available` is the payload bytes after the table
    /// when `frame` is the whole frame (`None`: only its head).  With
    /// `in_place`, raw pages are marked to be read in place, and the other
    /// payloads' offsets follow the table back to back.
    fn check(
        &mut self,
        frame: &[u8],
        expected_pages: usize,
        available: Option<usize>,
        in_place: bool,
    ) -> Result<Header> {
        let header = self.check_header(frame, expected_pages)?;
        let n = usize::from(header.page_count);
        let table_end = format::head_len(n);
        let table = frame.get(HEADER_LEN..table_end).ok_or(Error::Truncated {
            needed: table_end,
            available: frame.len(),
        })?;
        let declared = header.payload_len as usize;
        if let Some(payload) = available {
            if declared != payload {
                return Err(Error::LengthMismatch {
                    declared,
                    actual: payload,
                });
            }
        }
        let total = self.check_table(table, in_place, header.features)?;
        if total != declared {
            return Err(Error::LengthMismatch {
                declared: total,
                actual: available.unwrap_or(declared),
            });
        }
        Ok(header)
    }

    /// Parses the header and checks it against this decoder and channel:
    /// page size, page count, sequence.
    fn check_header(&self, frame: &[u8], expected_pages: usize) -> Result<Header> {
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
        Ok(header)
    }

    /// Checks every entry of `table` (known tag, a length its method
    /// allows, zstd members naming a head before them, delta pages and
    /// zstd heads only in a frame whose `features` announce them) into
    /// `self.entries`,
    /// with the payload offsets (raw pages read in place take no room when
    /// `in_place`); returns the sum of the payload lengths.
    fn check_table(&mut self, table: &[u8], in_place: bool, features: u32) -> Result<usize> {
        let delta = features & FEATURE_DELTA != 0;
        let stream = features & FEATURE_STREAM != 0;
        let dedup_on = features & FEATURE_DEDUP != 0;
        let ps = self.page_size;
        let n = table.len() / ENTRY_LEN;
        self.entries.clear();
        let mut offset = format::head_len(n);
        let mut total = 0usize;
        for (page, raw) in table.chunks_exact(ENTRY_LEN).enumerate() {
            let (tag, field) = format::unpack_entry([raw[0], raw[1], raw[2], raw[3]]);
            let method = Method::from_tag(tag).map_err(|tag| Error::UnknownMethod { page, tag })?;
            // A member's field names its head; its payload is empty.
            let len = if method == Method::ZstdMember {
                0
            } else {
                field
            };
            let valid = match method {
                Method::Raw => len == ps,
                Method::Zero => len == 0,
                Method::Fill => len == 4,
                Method::ZstdMember => self
                    .entries
                    .get(field)
                    .is_some_and(|head| head.method == Method::Zstd),
                Method::Sparse | Method::Wkdm | Method::Lzo | Method::Lz4 => (1..ps).contains(&len),
                // Flags and at least one byte; a group holds at most the
                // frame's pages, and the exact size is checked when it is
                // decompressed.
                Method::Zstd => stream && len > FLAGS_LEN && len <= n * ps,
                // The base hash, then at least a run count (sparse) or
                // one byte (LZ4); never a whole page.
                Method::DeltaSparse => delta && (BASE_HASH_LEN + 2..ps).contains(&len),
                Method::DeltaLz4 => delta && (BASE_HASH_LEN + 1..ps).contains(&len),
                Method::Dedup => dedup_on && len == dedup::LEN,
            };
            if !valid {
                return Err(Error::CorruptPage {
                    page,
                    method,
                    reason: if method == Method::ZstdMember {
                        "zstd member does not name a group head before it"
                    } else if method.is_delta() && !delta {
                        "delta page in a frame without the delta feature"
                    } else if method == Method::Zstd && !stream {
                        "zstd group in a frame without the stream feature"
                    } else if method == Method::Dedup && !dedup_on {
                        "dedup page in a frame without the dedup feature"
                    } else {
                        "payload length not valid for this method"
                    },
                });
            }
            let page_in_place = in_place && method == Method::Raw;
            self.entries.push(Entry {
                method,
                offset,
                len,
                head: if method == Method::ZstdMember {
                    field
                } else {
                    page
                },
                in_place: page_in_place,
            });
            total += len;
            if !page_in_place {
                offset += len;
            }
        }
        Ok(total)
    }

    /// Decodes every page of a checked frame into `self.scratch`; a delta
    /// page onto its current version, read from `sink`.
    fn decode_pages<S: PageSink + ?Sized>(
        &mut self,
        frame: &[u8],
        n: usize,
        sink: &S,
    ) -> Result<()> {
        let ps = self.page_size;
        for i in 0..n {
            let e = self.entries[i];
            if e.in_place {
                continue;
            }
            // `check` proved offset + len <= frame.len() for every entry
            // of a whole frame; `finish_parts_with` proved the buffer is
            // as long as the entries that are in it.
            let src = frame
                .get(e.offset..e.offset + e.len)
                .ok_or(Error::Truncated {
                    needed: e.offset + e.len,
                    available: frame.len(),
                })?;
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
                Method::Zstd => match self.decode_group(i, src) {
                    Ok(()) => Ok(()),
                    Err(StreamError::Corrupt(reason)) => Err(reason),
                    Err(StreamError::Lost) => return Err(Error::StreamLost { page: i }),
                },
                // Written by its group's head.
                Method::ZstdMember => Ok(()),
                Method::Dedup => match dedup::decode(src, ps)
                    .and_then(|(offset, hash)| sink.get_block_page(offset, page).map(|()| hash))
                {
                    Err(reason) => Err(reason),
                    Ok(expected) => {
                        let found = crate::hash::xxh3_64(page);
                        if found != expected {
                            return Err(Error::BaseMismatch {
                                page: i,
                                expected,
                                found,
                            });
                        }
                        Ok(())
                    }
                },
                Method::DeltaSparse | Method::DeltaLz4 => {
                    sink.get_page(i, page);
                    match delta::decode(e.method, src, page, &mut self.xor) {
                        Ok(()) => Ok(()),
                        Err(DeltaError::Corrupt(reason)) => Err(reason),
                        Err(DeltaError::BaseMismatch { expected, found }) => {
                            return Err(Error::BaseMismatch {
                                page: i,
                                expected,
                                found,
                            })
                        }
                    }
                }
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
    /// head and its members (the members that name it, in table order).  A
    /// group whose members follow its head without a gap is decompressed
    /// straight into its pages' scratch.
    fn decode_group(&mut self, head: usize, src: &[u8]) -> std::result::Result<(), StreamError> {
        let ps = self.page_size;
        let is_member = |e: &Entry| e.method == Method::ZstdMember && e.head == head;
        let (mut members, mut last) = (0, head);
        for (j, e) in self.entries.iter().enumerate().skip(head + 1) {
            if is_member(e) {
                (members, last) = (members + 1, j);
            }
        }
        let len = (members + 1) * ps;
        if last == head + members {
            return self
                .zstd
                .decompress(src, &mut self.scratch[head * ps..head * ps + len]);
        }
        self.zstd.decompress(src, &mut self.group[..len])?;
        let targets = std::iter::once(head)
            .chain((head + 1..self.entries.len()).filter(|&j| is_member(&self.entries[j])));
        for (chunk, j) in self.group[..len].chunks_exact(ps).zip(targets) {
            self.scratch[j * ps..(j + 1) * ps].copy_from_slice(chunk);
        }
        Ok(())
    }
}
