//! Batch encoder: pages in, one frame out.
//!
//! When the plan sends every page raw, one pass copies the pages into their
//! payload slots.  Otherwise three passes over a
//! batch, all on the encoder's private copy of the pages:
//! 1. profile every page and route it to a first-choice method;
//! 2. compress the pages routed to the high-ratio tier as zstd groups, into a
//!    side buffer, demoting a group to the fast path when it does not shrink;
//! 3. write the table and the payloads in page order, falling back along
//!    sparse -> LZ -> raw and WKdm -> LZ -> raw when a codec gives up, and
//!    hash the pages.
//!
//! The checksum covers every page, raw ones included: the receiver may
//! read raw pages straight into place, but it verifies them there, so a
//! broken stream fails the migration instead of corrupting a page.
//!
//! Every buffer is sized at construction for `max_pages`; encoding allocates
//! nothing (except inside the LZO crate, which allocates its output).
//!
//! The policy's plan gives a first-choice codec per page class; the encoder
//! measures, per class and codec, pages, output bytes and time, and feeds
//! them back once per batch.  Time is read from the encoder's [`Clock`] only
//! where the (class, codec) key changes between consecutive pages, once per
//! zstd group, and only on one batch in [`TIMED_EVERY`] (and on exploring
//! batches): never per page on average.

#![forbid(unsafe_code)]

use crate::classify;
use crate::codec::{lz, sparse, wkdm, zstd_group::GroupEncoder};
use crate::config::{Config, LzCodec};
use crate::counters::Counters;
use crate::error::{Error, Result};
use crate::format::{self, Header, ENTRY_LEN, HEADER_LEN};
use crate::method::Method;
use crate::policy::{Clock, Codec, LinkStats, PageClass, Plan, Policy, TransportStats, WallClock};

/// Costs are timed on one batch in this many (and on exploring batches).
pub const TIMED_EVERY: u32 = 4;
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

/// Measurements of one batch, per class and codec.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    pages: u64,
    bytes: u64,
    ns: u64,
}

type Tallies = [[Tally; Codec::COUNT]; PageClass::COUNT];

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
    /// Each page's (class, first-choice codec): what its cost is booked to.
    keys: Vec<(PageClass, Codec)>,
    tallies: Tallies,
    /// Whether this batch's costs are timed.
    timed: bool,
    clock: Box<dyn Clock>,
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
        Encoder::with_clock(config, Box::new(WallClock::new()))
    }

    /// Creates an encoder that times itself with `clock` (see
    /// [`crate::policy::Clock`]).
    pub fn with_clock(config: Config, clock: Box<dyn Clock>) -> Result<Encoder> {
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
            keys: Vec::with_capacity(config.max_pages),
            tallies: Tallies::default(),
            timed: false,
            clock,
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

    /// Takes a sample of the channel's connection (see
    /// [`crate::policy::TransportStats`]); call it before
    /// [`Encoder::encode`], as often as once per batch.
    pub fn update_transport(&mut self, stats: TransportStats) {
        self.policy.update_transport(stats);
    }

    /// The routing plan the next frame would use.
    pub fn plan(&self) -> Plan {
        self.policy.plan()
    }

    /// The controller, with its cost estimates.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Forces every class onto the given codecs, or gives control back
    /// (`None`); see [`Policy::pin`].
    pub fn pin_codecs(&mut self, codecs: Option<[Codec; PageClass::COUNT]>) {
        self.policy.pin(codecs);
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
        let start = self.clock.now_ns();
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
        let plan = self.policy.next_plan();
        let (written, counts) = if plan.all_raw() {
            (self.write_raw_frame(source, n, out), None)
        } else {
            for i in 0..n {
                source.copy_page(i, &mut self.batch[i * ps..(i + 1) * ps]);
            }
            self.timed = self.sequence.is_multiple_of(TIMED_EVERY)
                || plan.explore.iter().any(Option::is_some);
            self.tallies = Tallies::default();
            let counts = self.route(n, &plan);
            self.compress_groups(n);
            (self.write_frame(n, out), Some(counts))
        };

        let header = Header {
            page_shift: self.shift,
            page_count: n as u16,
            sequence: self.sequence,
            features: 0,
            payload_len: written.payload as u32,
            checksum: written.checksum,
        };
        // `out` holds at least max_frame_len(n) > HEADER_LEN bytes.
        if let Some(head) = out.first_chunk_mut::<HEADER_LEN>() {
            header.write(head);
        }
        self.sequence = self.sequence.wrapping_add(1);

        let total_ns = self.clock.now_ns().saturating_sub(start);
        let frame_len = format::head_len(n) + written.payload;
        self.policy
            .record_batch(start, total_ns, n as u64, frame_len as u64);
        if let Some(counts) = counts {
            self.feed_policy(&counts);
        }
        self.counters.frames += 1;
        self.counters.pages += n as u64;
        self.counters.bytes_in += (n * ps) as u64;
        self.counters.bytes_out += frame_len as u64;
        self.counters.ns += total_ns;
        Ok(frame_len)
    }

    /// Gives the policy this batch's class mix and, on timed batches, the
    /// cost of every (class, codec) pair used.
    fn feed_policy(&mut self, counts: &[u64; PageClass::COUNT]) {
        self.policy.record_mix(counts);
        if !self.timed {
            return;
        }
        for class in PageClass::ALL {
            if class == PageClass::Fill {
                continue;
            }
            for codec in Codec::ALL {
                let t = self.tallies[class.index()][codec.index()];
                self.policy
                    .record_class(class, codec, t.pages, t.bytes, t.ns);
            }
        }
    }

    /// The whole frame when the plan sends every page raw (a link probe,
    /// or a link faster than any codec): the pages are copied once,
    /// straight into their payload slots, where they are hashed; no page
    /// is classified.
    /// The policy learns nothing about classes or codecs from such a batch;
    /// exploring batches, which never take this path, keep it informed.
    fn write_raw_frame<S: PageSource + ?Sized>(
        &mut self,
        source: &S,
        n: usize,
        out: &mut [u8],
    ) -> Written {
        let ps = self.page_size;
        let table_end = format::head_len(n);
        // `out` holds max_frame_len(n) >= table_end + n * ps bytes.
        let payload = &mut out[table_end..table_end + n * ps];
        for (i, slot) in payload.chunks_exact_mut(ps).enumerate() {
            source.copy_page(i, slot);
        }
        let checksum = xxhash_rust::xxh3::xxh3_64(payload);
        let entry = format::pack_entry(Method::Raw.tag(), ps);
        for e in out[HEADER_LEN..table_end].chunks_exact_mut(ENTRY_LEN) {
            e.copy_from_slice(&entry);
        }
        let slot = Method::Raw.counter_slot();
        self.counters.method_pages[slot] += n as u64;
        self.counters.method_bytes[slot] += (n * ps) as u64;
        Written {
            payload: n * ps,
            checksum,
        }
    }

    /// Pass 1: a class and a first-choice method for every page.  Returns
    /// the number of pages per class.
    fn route(&mut self, n: usize, plan: &Plan) -> [u64; PageClass::COUNT] {
        let ps = self.page_size;
        let zstd_on = self.zstd.is_some();
        let mut counts = [0u64; PageClass::COUNT];
        self.routes.clear();
        self.keys.clear();
        for page in self.batch[..n * ps].chunks_exact(ps) {
            let p = classify::profile(page);
            let class = plan.class(&p, ps);
            let seen = &mut counts[class.index()];
            let mut codec = plan.codec(class, u32::try_from(*seen).unwrap_or(u32::MAX));
            *seen += 1;
            if codec == Codec::Zstd && !zstd_on {
                codec = Codec::Lz;
            }
            let route = match (p.fill, codec) {
                (Some(0), _) => Route::Zero,
                (Some(word), _) => Route::Fill(word),
                (None, Codec::Raw) => Route::Raw,
                (None, Codec::Sparse) => Route::Sparse,
                (None, Codec::Wkdm) => Route::Wkdm,
                (None, Codec::Lz) => Route::Lz,
                (None, Codec::Zstd) => Route::HighRatio,
            };
            self.routes.push(route);
            self.keys.push((class, codec));
        }
        counts
    }

    /// Pass 2: zstd groups, timed one by one; a kept group's time and bytes
    /// are booked to its pages' classes.
    fn compress_groups(&mut self, n: usize) {
        self.groups.clear();
        let Some(zstd) = self.zstd.as_mut() else {
            return;
        };
        let ps = self.page_size;
        let group_pages = match self.config.zstd_group_pages {
            0 => n,
            g => g,
        };
        let mut used = 0usize;
        let mut next = 0;
        while let Some(first) = (next..n).find(|&k| self.routes[k] == Route::HighRatio) {
            let start = if self.timed { self.clock.now_ns() } else { 0 };
            // Gather up to `group_pages` high-ratio pages from `first` on.
            let (mut members, mut last) = (0, first);
            let mut per_class = [0u64; PageClass::COUNT];
            for k in first..n {
                if self.routes[k] == Route::HighRatio {
                    per_class[self.keys[k].0.index()] += 1;
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
            }
            if self.timed {
                let ns = self.clock.now_ns().saturating_sub(start);
                book_group(&mut self.tallies, &self.policy, &per_class, ns, kept);
            }
            next = last + 1;
        }
    }

    /// Pass 3: the page table and payloads, and the checksum of the pages.
    fn write_frame(&mut self, n: usize, out: &mut [u8]) -> Written {
        let ps = self.page_size;
        let table_end = format::head_len(n);
        let mut pos = table_end;
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        // A codec must save at least 1/32 of the page, else the page goes raw.
        let limit = ps - ps / 32;
        let mut run: Option<((PageClass, Codec), u64)> = None;
        for i in 0..n {
            let key = self.keys[i];
            if self.timed && run.is_none_or(|(k, _)| k != key) {
                let now = self.clock.now_ns();
                if let Some((k, since)) = run {
                    self.tallies[k.0.index()][k.1.index()].ns += now.saturating_sub(since);
                }
                run = Some((key, now));
            }
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
            hasher.update(page);
            let entry = HEADER_LEN + i * ENTRY_LEN;
            out[entry..entry + ENTRY_LEN].copy_from_slice(&format::pack_entry(method.tag(), len));
            let slot = method.counter_slot();
            self.counters.method_pages[slot] += 1;
            self.counters.method_bytes[slot] += len as u64;
            if !matches!(self.routes[i], Route::GroupHead(_) | Route::GroupMember) {
                let t = &mut self.tallies[key.0.index()][key.1.index()];
                t.pages += 1;
                t.bytes += (len + ENTRY_LEN) as u64;
            }
            pos += len;
        }
        if let Some((k, since)) = run {
            let now = self.clock.now_ns();
            self.tallies[k.0.index()][k.1.index()].ns += now.saturating_sub(since);
        }
        Written {
            payload: pos - table_end,
            checksum: hasher.digest(),
        }
    }
}

/// What writing a frame's payloads produced.
#[derive(Debug, Clone, Copy)]
struct Written {
    /// Payload bytes after the table.
    payload: usize,
    /// xxh3-64 of the pages the checksum covers, in order.
    checksum: u64,
}

/// Books a zstd group's time (and, when it was kept, its pages and bytes)
/// to the classes of its pages: time by page count, bytes in proportion to
/// each class's estimated zstd size (one group cannot tell classes apart;
/// a single-class group is measured exactly).
fn book_group(
    tallies: &mut Tallies,
    policy: &Policy,
    per_class: &[u64; PageClass::COUNT],
    ns: u64,
    kept: Option<usize>,
) {
    let pages: u64 = per_class.iter().sum();
    if pages == 0 {
        return;
    }
    let weight = |c: PageClass| {
        per_class[c.index()] as f64 * policy.class_cost(c, Codec::Zstd).bytes_per_page.max(1.0)
    };
    let total_weight: f64 = PageClass::ALL.iter().map(|&c| weight(c)).sum();
    for class in PageClass::ALL {
        let k = per_class[class.index()];
        if k == 0 {
            continue;
        }
        let t = &mut tallies[class.index()][Codec::Zstd.index()];
        t.ns += ns.saturating_mul(k) / pages;
        if let Some(len) = kept {
            t.pages += k;
            let share = if total_weight > 0.0 {
                weight(class) / total_weight
            } else {
                0.0
            };
            t.bytes += (len as f64 * share) as u64 + k * ENTRY_LEN as u64;
        }
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
