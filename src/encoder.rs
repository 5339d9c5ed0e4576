//! Batch encoder: pages in, one frame out.
//!
//! Three passes over a batch, all on the encoder's private copy of the pages:
//! 1. profile every page and route it to a first-choice method;
//! 2. compress the pages routed to the high-ratio tier as zstd groups, into a
//!    side buffer, demoting a group to the fast path when it does not shrink;
//! 3. write the table and the payloads in page order, falling back along
//!    sparse -> LZ -> raw and WKdm -> LZ -> raw when a codec gives up.
//!
//! Every buffer is sized at construction for `max_pages`; encoding allocates
//! nothing (except inside the LZO crate, which allocates its output).

#![forbid(unsafe_code)]

use crate::classify::{self, Profile};
use crate::codec::{lz, sparse, wkdm, zstd_group::GroupEncoder};
use crate::config::{Config, LzCodec};
use crate::counters::Counters;
use crate::error::{Error, Result};
use crate::format::{self, Header, ENTRY_LEN, HEADER_LEN};
use crate::method::Method;
use crate::policy::{LinkStats, Plan, Policy, Tier};
use std::time::Instant;

/// Zero-byte share below which a high-entropy page is sent raw untried.
const RAW_MAX_ZERO_PERCENT: u32 = 5;
/// The sparse coder keeps a page only when it shrinks it to at most
/// 1/`SPARSE_MAX_FRACTION`; a less sparse page compresses better under LZ,
/// whose zero runs cost almost nothing.
const SPARSE_MAX_FRACTION: usize = 8;

/// Where the encoder's pages come from.  The FFI implements it over guest
/// memory with a copy; the safe API over slices.
pub(crate) trait PageSource {
    /// Number of pages.
    fn len(&self) -> usize;
    /// Copies page `index` into `dst` (exactly one page long).
    fn copy_page(&self, index: usize, dst: &mut [u8]);
}

impl PageSource for [&[u8]] {
    fn len(&self) -> usize {
        <[&[u8]]>::len(self)
    }
    fn copy_page(&self, index: usize, dst: &mut [u8]) {
        dst.copy_from_slice(self[index]);
    }
}

/// A page's first-choice method, decided from its profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Zero,
    Fill(u32),
    Sparse,
    Wkdm,
    Lz,
    HighRatio,
    Raw,
    /// Member of a zstd group whose head is written at the group's first page.
    GroupMember,
    /// Head of zstd group `n` (index into `groups`).
    GroupHead(usize),
}

/// A compressed zstd group in the side buffer.
#[derive(Debug, Clone, Copy)]
struct Group {
    offset: usize,
    len: usize,
}

/// Encodes batches of pages into frames.  One per channel; not `Sync`.
pub struct Encoder {
    config: Config,
    shift: u8,
    page_size: usize,
    /// The encoder's own copy of the batch: pages are read from guest memory
    /// exactly once, and everything after that sees a stable snapshot.
    batch: Vec<u8>,
    routes: Vec<Route>,
    groups: Vec<Group>,
    /// Gathered input of one zstd group.
    group_in: Vec<u8>,
    /// Compressed zstd groups of the current frame.
    group_out: Vec<u8>,
    zstd: Option<GroupEncoder>,
    /// LZ4 wants room for its worst case, which exceeds a page.
    lz_scratch: Vec<u8>,
    policy: Policy,
    sequence: u32,
    counters: Counters,
}

impl Encoder {
    /// Creates an encoder; allocates every buffer it will use.
    pub fn new(config: Config) -> Result<Encoder> {
        let shift = config.validate()?;
        let page_size = config.page_size as usize;
        let cap = config.max_pages * page_size;
        let zstd = if config.zstd_level > 0 {
            Some(
                GroupEncoder::new(i32::from(config.zstd_level)).map_err(|_| {
                    Error::InvalidConfig {
                        reason: "zstd context could not be created",
                    }
                })?,
            )
        } else {
            None
        };
        Ok(Encoder {
            shift,
            page_size,
            batch: vec![0; cap],
            routes: Vec::with_capacity(config.max_pages),
            groups: Vec::with_capacity(config.max_pages),
            group_in: vec![0; if zstd.is_some() { cap } else { 0 }],
            group_out: vec![0; if zstd.is_some() { cap } else { 0 }],
            zstd,
            lz_scratch: vec![0; lz::lz4_max_len(page_size)],
            policy: Policy::new(&config),
            sequence: 0,
            counters: Counters::default(),
            config,
        })
    }

    /// The configuration the encoder was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Takes the migration's latest statistics (see [`crate::policy`]).
    pub fn update_stats(&mut self, stats: LinkStats) {
        self.policy.update_stats(stats);
    }

    /// The routing plan the next frame would use.
    pub fn plan(&self) -> Plan {
        self.policy.plan()
    }

    /// Running totals.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The largest frame `n_pages` pages can produce with this encoder.
    pub fn max_frame_len(&self, n_pages: usize) -> usize {
        format::max_frame_len(n_pages.max(1), self.config.page_size).unwrap_or(0)
    }

    /// Encodes `pages` (each exactly one page long) into `out`, returning the
    /// frame length.  `out` must hold [`Encoder::max_frame_len`] bytes.
    pub fn encode(&mut self, pages: &[&[u8]], out: &mut [u8]) -> Result<usize> {
        if pages.iter().any(|p| p.len() != self.page_size) {
            return Err(Error::InvalidArgument {
                reason: "every page must be exactly page_size bytes",
            });
        }
        self.encode_from(pages, out)
    }

    /// Encodes from any page source; see [`Encoder::encode`].
    pub(crate) fn encode_from<S: PageSource + ?Sized>(
        &mut self,
        source: &S,
        out: &mut [u8],
    ) -> Result<usize> {
        let start = Instant::now();
        let n = source.len();
        if n == 0 || n > self.config.max_pages {
            return Err(Error::TooManyPages {
                pages: n,
                max: self.config.max_pages,
            });
        }
        let needed = self.max_frame_len(n);
        if out.len() < needed {
            return Err(Error::BufferTooSmall {
                needed,
                given: out.len(),
            });
        }
        let ps = self.page_size;
        for i in 0..n {
            source.copy_page(i, &mut self.batch[i * ps..(i + 1) * ps]);
        }
        let checksum = xxhash_rust::xxh3::xxh3_64(&self.batch[..n * ps]);
        let plan = self.policy.plan();

        self.route(n, &plan);
        let zstd_start = Instant::now();
        let (hr_in, hr_out) = self.compress_groups(n);
        let zstd_ns = zstd_start.elapsed().as_nanos() as u64;
        let payload_len = self.write_frame(n, out);

        let header = Header {
            page_shift: self.shift,
            page_count: n as u16,
            sequence: self.sequence,
            features: 0,
            payload_len: payload_len as u32,
            checksum,
        };
        // `out` holds at least max_frame_len(n) > HEADER_LEN bytes.
        if let Some(head) = out.first_chunk_mut::<HEADER_LEN>() {
            header.write(head);
        }
        self.sequence = self.sequence.wrapping_add(1);

        let total_ns = start.elapsed().as_nanos() as u64;
        let frame_len = HEADER_LEN + n * ENTRY_LEN + payload_len;
        if hr_in > 0 {
            self.policy.record(Tier::HighRatio, hr_in, hr_out, zstd_ns);
        }
        let fast_in = (n * ps) as u64 - hr_in;
        self.policy.record(
            Tier::Fast,
            fast_in,
            (frame_len as u64).saturating_sub(hr_out),
            total_ns.saturating_sub(zstd_ns),
        );
        self.counters.frames += 1;
        self.counters.pages += n as u64;
        self.counters.bytes_in += (n * ps) as u64;
        self.counters.bytes_out += frame_len as u64;
        self.counters.ns += total_ns;
        Ok(frame_len)
    }

    /// Pass 1: a first-choice method for every page.
    fn route(&mut self, n: usize, plan: &Plan) {
        let ps = self.page_size;
        let high_ratio = plan.high_ratio && self.zstd.is_some();
        self.routes.clear();
        for page in self.batch[..n * ps].chunks_exact(ps) {
            let p = classify::profile(page);
            self.routes.push(choose(&p, ps, plan, high_ratio));
        }
    }

    /// Pass 2: zstd groups.  Returns (input bytes, output bytes) of the
    /// groups kept.
    fn compress_groups(&mut self, n: usize) -> (u64, u64) {
        self.groups.clear();
        let Some(zstd) = self.zstd.as_mut() else {
            return (0, 0);
        };
        let ps = self.page_size;
        let group_pages = match self.config.zstd_group_pages {
            0 => n,
            g => g,
        };
        let (mut bytes_in, mut used) = (0u64, 0usize);
        let mut next = 0;
        while let Some(first) = (next..n).find(|&k| self.routes[k] == Route::HighRatio) {
            // Gather up to `group_pages` high-ratio pages from `first` on.
            let (mut members, mut last) = (0, first);
            for k in first..n {
                if self.routes[k] == Route::HighRatio {
                    self.group_in[members * ps..(members + 1) * ps]
                        .copy_from_slice(&self.batch[k * ps..(k + 1) * ps]);
                    members += 1;
                    last = k;
                    if members == group_pages {
                        break;
                    }
                }
            }
            // A group must save at least 1/32 of its input to be worth
            // the decoder's time; otherwise its pages take the fast path.
            let input = members * ps;
            let limit = input - input / 32;
            let dst_end = (used + limit).min(self.group_out.len());
            let kept =
                match zstd.compress(&self.group_in[..input], &mut self.group_out[used..dst_end]) {
                    Some(len) if len > 0 && len <= limit => Some(len),
                    _ => None,
                };
            let member_route = if kept.is_some() {
                Route::GroupMember
            } else {
                Route::Lz
            };
            for r in &mut self.routes[first..=last] {
                if *r == Route::HighRatio {
                    *r = member_route;
                }
            }
            if let Some(len) = kept {
                self.routes[first] = Route::GroupHead(self.groups.len());
                self.groups.push(Group { offset: used, len });
                used += len;
                bytes_in += input as u64;
            }
            next = last + 1;
        }
        (bytes_in, used as u64)
    }

    /// Pass 3: the page table and payloads.  Returns the payload length.
    fn write_frame(&mut self, n: usize, out: &mut [u8]) -> usize {
        let ps = self.page_size;
        let table_end = HEADER_LEN + n * ENTRY_LEN;
        let mut pos = table_end;
        // A codec must save at least 1/32 of the page, else the page goes raw.
        let limit = ps - ps / 32;
        for i in 0..n {
            let page = &self.batch[i * ps..(i + 1) * ps];
            // Room: `out` holds max_frame_len(n) bytes, a page's payload never
            // exceeds a page, and a group's never exceeds its pages, which
            // all come at or after its head.  So before page i is written,
            // at most the other pages' worth of payload is in `out`, and a
            // page-sized window at `pos` is free for pages that are not
            // group members.
            let (method, len) = match self.routes[i] {
                Route::Zero => (Method::Zero, 0),
                Route::GroupMember => (Method::ZstdMember, 0),
                Route::Fill(word) => {
                    out[pos..pos + 4].copy_from_slice(&word.to_le_bytes());
                    (Method::Fill, 4)
                }
                Route::GroupHead(g) => {
                    let Group { offset, len } = self.groups[g];
                    out[pos..pos + len].copy_from_slice(&self.group_out[offset..offset + len]);
                    (Method::Zstd, len)
                }
                Route::Sparse => {
                    let window = &mut out[pos..pos + ps];
                    sparse::encode(page, window, ps / SPARSE_MAX_FRACTION)
                        .map(|len| (Method::Sparse, len))
                        .or_else(|| {
                            lz_encode(self.config.lz, page, window, limit, &mut self.lz_scratch)
                        })
                        .unwrap_or_else(|| raw(page, window))
                }
                Route::Wkdm => {
                    let window = &mut out[pos..pos + ps];
                    wkdm::encode(page, window, limit)
                        .map(|len| (Method::Wkdm, len))
                        .or_else(|| {
                            lz_encode(self.config.lz, page, window, limit, &mut self.lz_scratch)
                        })
                        .unwrap_or_else(|| raw(page, window))
                }
                Route::Lz | Route::HighRatio => {
                    let window = &mut out[pos..pos + ps];
                    lz_encode(self.config.lz, page, window, limit, &mut self.lz_scratch)
                        .unwrap_or_else(|| raw(page, window))
                }
                Route::Raw => raw(page, &mut out[pos..pos + ps]),
            };
            let entry = HEADER_LEN + i * ENTRY_LEN;
            out[entry..entry + ENTRY_LEN].copy_from_slice(&format::pack_entry(method.tag(), len));
            let slot = method.counter_slot();
            self.counters.method_pages[slot] += 1;
            self.counters.method_bytes[slot] += len as u64;
            pos += len;
        }
        pos - table_end
    }
}

/// The routing rule (MECOM Fig. 2, extended with fill, raw and high-ratio).
///
/// Order matters: one-word pages and random pages are settled first because
/// no codec helps them; the high-ratio tier then takes everything else,
/// because zstd over a group beats every per-page codec on bytes; on the
/// fast path, mostly-zero pages try the sparse coder, similar pages WKdm, and
/// the rest LZ.
fn choose(p: &Profile, page_size: usize, plan: &Plan, high_ratio: bool) -> Route {
    match p.fill {
        Some(0) => return Route::Zero,
        Some(word) => return Route::Fill(word),
        None => {}
    }
    let zero_percent = p.zero_percent(page_size);
    let similar = p.similar_percent() >= u32::from(plan.similarity_threshold);
    // A page with many distinct byte values and almost no zeros is random
    // or already compressed.  Zeros veto the shortcut: a half-random,
    // half-zero page still halves under LZ.
    if !similar
        && zero_percent < RAW_MAX_ZERO_PERCENT
        && p.distinct_bytes >= plan.raw_distinct_bytes
    {
        return Route::Raw;
    }
    if high_ratio {
        Route::HighRatio
    } else if zero_percent >= u32::from(plan.sparse_threshold) {
        Route::Sparse
    } else if similar {
        Route::Wkdm
    } else {
        Route::Lz
    }
}

fn lz_encode(
    codec: LzCodec,
    page: &[u8],
    window: &mut [u8],
    limit: usize,
    scratch: &mut [u8],
) -> Option<(Method, usize)> {
    match codec {
        LzCodec::Lz4 => {
            let n = lz::lz4_encode(page, scratch, limit)?;
            window[..n].copy_from_slice(&scratch[..n]);
            Some((Method::Lz4, n))
        }
        LzCodec::Lzo => lz::lzo_encode(page, window, limit).map(|n| (Method::Lzo, n)),
    }
}

fn raw(page: &[u8], window: &mut [u8]) -> (Method, usize) {
    window[..page.len()].copy_from_slice(page);
    (Method::Raw, page.len())
}
