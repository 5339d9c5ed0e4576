//! The payloads of one frame: where each page goes, and the bytes.
//!
//! When the plan sends every page raw, one pass copies the pages into their
//! payload slots and hashes them there.  Otherwise three passes over the
//! encoder's private copy of the batch:
//! 1. profile and classify every page and route it to its class's codec
//!    (when the plan routes the similar and generic classes to one codec,
//!    tell only fill, random and sparse pages apart: `Plan::uniform`), or
//!    to a dedup reference when the channel sent an equal page of the
//!    block since its last sync point ([`DedupIndex`]), or, when the
//!    migration's page cache holds the page, to a delta against
//!    that version (made here for a page the zstd tier would take, which
//!    stays in its group unless the delta is small);
//! 2. compress the pages routed to zstd as groups, one per class (of at
//!    most `zstd_group_pages` pages), the next pieces of the channel's zstd
//!    stream, into a side buffer, demoting a group to LZ when it does not
//!    fit in its pages;
//! 3. write the table and the payloads in page order, falling back along
//!    sparse -> LZ -> raw and WKdm -> LZ -> raw when a codec gives up (and
//!    from a delta to the page's own codec when that is smaller), and
//!    hash the pages.
//!
//! Then every page goes into the cache as sent, and into the dedup index.
//!
//! The checksum covers every page, raw ones included.  Every buffer is
//! sized at construction for `max_pages`; encoding allocates nothing
//! (except inside the LZO crate, which allocates its output).  What each
//! page cost goes to the [`Meter`]; what to do with it is the controller's
//! business.

#![forbid(unsafe_code)]

use super::dedup::DedupIndex;
use crate::cache::{PageCache, PageKey};
use crate::classify::{self, PageClass};
use crate::codec::dedup;
use crate::codec::delta::{self, DeltaScratch};
use crate::codec::{lz, sparse, wkdm, zstd_stream::StreamEncoder};
use crate::config::{Config, LzCodec};
use crate::counters::Counters;
use crate::error::{Error, Result};
use crate::format::{self, ENTRY_LEN, HEADER_LEN};
use crate::method::Method;
use crate::policy::{Clock, Codec, Key, Meter, Plan};

/// The sparse coder keeps a page only when it shrinks it to at most
/// 1/`SPARSE_MAX_FRACTION`; a less sparse page compresses better under LZ,
/// whose zero runs cost almost nothing.
const SPARSE_MAX_FRACTION: usize = 8;

/// The cost key of a raw page nobody classified (an all-raw batch, or a
/// page outside a sampled batch's sample): a raw page costs the same in
/// any class, and an unclassified page counts in no class mix.
const UNCLASSIFIED_RAW: Key = (PageClass::Random, Codec::Raw);

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

/// What pass 3 does with one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// An all-zero page: a tag.
    Zero,
    /// One repeated word: a tag and the word.
    Fill(u32),
    /// The page through this codec (zstd: waiting for pass 2).
    Codec(Codec),
    /// Head of zstd group `n` (index into `groups`).
    GroupHead(usize),
    /// Member of the zstd group whose head is this page.
    GroupMember(usize),
    /// A page whose last version the destination holds (in `bases`): a
    /// delta, unless this codec makes it smaller.
    Delta(Codec),
    /// A delta made in pass 1 (for a page the zstd tier would take), of
    /// this method and length, in the page's slot of `bases`.
    DeltaMade(Method, usize),
    /// Equal to this page of the block, which the destination holds: a
    /// reference.
    Dedup(PageKey),
}

/// The page cache as one frame uses it: which pages it names and which
/// sync round they are sent in.
pub(crate) struct CacheUse<'a> {
    /// The migration's cache.
    pub cache: &'a PageCache,
    /// The key of each page of the frame, in order.
    pub keys: &'a [PageKey],
    /// The dirty-sync round the frame is sent in.
    pub round: u64,
}

/// A compressed zstd group in the side buffer.
#[derive(Debug, Clone, Copy)]
struct Group {
    offset: usize,
    len: usize,
}

/// What measures a batch: the controller's meter and the clock it reads.
pub(crate) struct Metering<'a> {
    /// Where the batch's costs go.
    pub meter: &'a mut Meter,
    /// What times them.
    pub clock: &'a mut dyn Clock,
}

/// What writing a frame's payloads produced.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Written {
    /// Payload bytes after the table.
    pub payload: usize,
    /// xxh3-64 of the pages, in order.
    pub checksum: u64,
}

/// The buffers and codecs that turn one batch into payloads.
pub(crate) struct Batch {
    page_size: usize,
    lz: LzCodec,
    zstd_group_pages: usize,
    /// The encoder's own copy of the batch: pages are read from guest memory
    /// exactly once, and everything after that sees a stable snapshot.
    pages: Vec<u8>,
    routes: Vec<Route>,
    /// Each page's (class, first-choice codec): what its cost is booked to.
    keys: Vec<Key>,
    groups: Vec<Group>,
    /// Compressed zstd groups of the current frame.
    group_out: Vec<u8>,
    /// The channel's zstd stream.
    zstd: Option<StreamEncoder>,
    /// LZ4 wants room for its worst case, which exceeds a page.
    lz_scratch: Vec<u8>,
    /// LZ4's hash table, reused for every page.
    lz4_table: lz::Lz4Table,
    /// The last version sent of each page routed to a delta.
    bases: Vec<u8>,
    /// One delta payload, kept while the page's own codec is tried.
    delta_out: Vec<u8>,
    delta: DeltaScratch,
    /// Whether the current frame holds a delta page.
    wrote_delta: bool,
    /// Whether the current frame holds a zstd group.
    wrote_stream: bool,
    /// The channel's dedup sources.
    dedup: DedupIndex,
    /// The hash of each page of the frame looked up in `dedup`, to record
    /// it there once sent.
    hashes: Vec<Option<u64>>,
    /// Whether the current frame holds a dedup page.
    wrote_dedup: bool,
}

impl Batch {
    /// Allocates everything a batch of `config.max_pages` pages needs.
    pub(crate) fn new(config: &Config) -> Result<Batch> {
        let page_size = config.page_size as usize;
        let cap = config.max_pages * page_size;
        let zstd =
            match config.zstd_level {
                0 => None,
                level => Some(StreamEncoder::new(i32::from(level)).map_err(|_| {
                    Error::InvalidConfig {
                        reason: "zstd context could not be created",
                    }
                })?),
            };
        let group_cap = if zstd.is_some() { cap } else { 0 };
        Ok(Batch {
            page_size,
            lz: config.lz,
            zstd_group_pages: config.zstd_group_pages,
            pages: vec![0; cap],
            routes: Vec::with_capacity(config.max_pages),
            keys: Vec::with_capacity(config.max_pages),
            groups: Vec::with_capacity(config.max_pages),
            group_out: vec![0; group_cap],
            zstd,
            lz_scratch: vec![0; lz::lz4_max_len(page_size)],
            lz4_table: lz::Lz4Table::default(),
            bases: vec![0; cap],
            delta_out: vec![0; page_size],
            delta: DeltaScratch::new(page_size),
            wrote_delta: false,
            wrote_stream: false,
            dedup: DedupIndex::default(),
            hashes: Vec::with_capacity(config.max_pages),
            wrote_dedup: false,
        })
    }

    /// Uses `index` for dedup (an index of no slots turns dedup off).
    pub(crate) fn set_dedup(&mut self, index: DedupIndex) {
        self.dedup = index;
    }

    /// The channel passed a sync point (see [`DedupIndex`]).
    pub(crate) fn synced(&mut self) {
        self.dedup.synced();
    }

    /// The payloads when the plan sends every page raw (a link probe, or a
    /// link faster than any codec): the pages are copied once, straight
    /// into their payload slots, where they are hashed (seeded with
    /// `seed`); no page is classified.  `out` holds at least
    /// `max_frame_len(n)` bytes.
    pub(crate) fn write_raw<S: PageSource + ?Sized>(
        &mut self,
        source: &S,
        seed: u64,
        out: &mut [u8],
        counters: &mut Counters,
    ) -> Written {
        let (n, ps) = (source.len(), self.page_size);
        self.wrote_delta = false;
        self.wrote_stream = false;
        self.wrote_dedup = false;
        let table_end = format::head_len(n);
        let payload = &mut out[table_end..table_end + n * ps];
        for (i, slot) in payload.chunks_exact_mut(ps).enumerate() {
            source.copy_page(i, slot);
        }
        let checksum = crate::hash::xxh3_64_seeded(payload, seed);
        let entry = format::pack_entry(Method::Raw.tag(), ps);
        for e in out[HEADER_LEN..table_end].chunks_exact_mut(ENTRY_LEN) {
            e.copy_from_slice(&entry);
        }
        let slot = Method::Raw.counter_slot();
        counters.method_pages[slot] += n as u64;
        counters.method_bytes[slot] += (n * ps) as u64;
        Written {
            payload: n * ps,
            checksum,
        }
    }

    /// The payloads of a batch under `plan`: copy, route, group, write;
    /// the checksum is seeded with `seed`.  With `cache`, pages it holds
    /// may go as deltas, and every page sent replaces its entry.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write<S: PageSource + ?Sized>(
        &mut self,
        source: &S,
        seed: u64,
        plan: &Plan,
        metering: Metering,
        out: &mut [u8],
        counters: &mut Counters,
        cache: Option<&CacheUse>,
    ) -> Written {
        let Metering { meter, clock } = metering;
        let (n, ps) = (source.len(), self.page_size);
        for i in 0..n {
            source.copy_page(i, &mut self.pages[i * ps..(i + 1) * ps]);
        }
        self.route(n, plan, meter, cache);
        if let Some(zstd) = self.zstd.as_mut() {
            zstd.set_level(i32::from(plan.zstd_level));
        }
        self.compress_groups(n, meter, clock);
        let written = self.write_pages(n, seed, meter, clock, out, counters);
        if let Some(c) = cache {
            // The pages as sent are what the destination holds once this
            // frame is decoded.
            for (page, &key) in self.pages[..n * ps].chunks_exact(ps).zip(c.keys) {
                c.cache.insert(key, c.round, page);
            }
            for (hash, &key) in self.hashes.iter().zip(c.keys) {
                if let Some(hash) = *hash {
                    self.dedup.record(hash, key);
                }
            }
        }
        written
    }

    /// Pass 1: a class and a route for every page; a page the cache holds
    /// is routed to a delta (its base copied into `bases`).
    fn route(&mut self, n: usize, plan: &Plan, meter: &mut Meter, cache: Option<&CacheUse>) {
        let ps = self.page_size;
        self.routes.clear();
        self.keys.clear();
        if plan.all_raw() {
            // Only the cache's deltas can beat raw here: nothing to
            // classify (the meter keeps no mix of an unclassified batch).
            self.routes.resize(n, Route::Codec(Codec::Raw));
            self.keys.resize(n, UNCLASSIFIED_RAW);
        } else {
            self.classify_routes(n, plan, meter);
        }
        let Some(c) = cache else {
            return;
        };
        self.find_duplicates(n, c);
        // A delta must beat what the zstd tier makes of a page of the
        // classes it takes (0.23-0.35 of a page on the corpus): it is made
        // here, and a page whose delta is larger stays in the group
        // instead of going to LZ.  (Re-dirtied pages with unrelated new
        // content, as under a compile, then cost one try, not a delta, an
        // LZ pass and the tier's ratio lost.)
        let zstd_delta_limit = ps / DELTA_BEATS_ZSTD;
        for (i, route) in self.routes.iter_mut().enumerate() {
            let Route::Codec(codec) = *route else {
                continue;
            };
            let base = &mut self.bases[i * ps..(i + 1) * ps];
            if !c.cache.lookup(c.keys[i], base) {
                continue;
            }
            *route = if codec != Codec::Zstd {
                Route::Delta(codec)
            } else {
                let page = &self.pages[i * ps..(i + 1) * ps];
                let made = delta::encode(
                    page,
                    base,
                    &mut self.delta_out,
                    zstd_delta_limit,
                    &mut self.delta,
                );
                match made {
                    Some((method, len)) => {
                        base[..len].copy_from_slice(&self.delta_out[..len]);
                        Route::DeltaMade(method, len)
                    }
                    None => Route::Codec(Codec::Zstd),
                }
            };
        }
    }

    /// A class, and the codec the plan gives it, for every page.
    fn classify_routes(&mut self, n: usize, plan: &Plan, meter: &mut Meter) {
        let ps = self.page_size;
        let zstd_on = self.zstd.is_some();
        let uniform = plan.uniform();
        let stride = plan.classify_stride.max(1) as usize;
        let phase = plan.classify_phase as usize % stride;
        for (i, page) in self.pages[..n * ps].chunks_exact(ps).enumerate() {
            if i % stride != phase {
                // Outside the sample: raw, as an all-raw batch sends it.
                self.routes.push(Route::Codec(Codec::Raw));
                self.keys.push(UNCLASSIFIED_RAW);
                continue;
            }
            let (fill, class, codec) = match uniform {
                // Similar and generic take `codec`: only fills, and random
                // and sparse pages whose classes go elsewhere, need telling
                // apart.  The rest are booked to the generic class (an
                // untimed batch keeps no costs), so they form one group.
                Some(codec) => {
                    let elsewhere = |c: PageClass| plan.codecs[c.index()] != codec;
                    let (class, fill) = plan.thresholds.coarse(
                        page,
                        elsewhere(PageClass::Random),
                        elsewhere(PageClass::Sparse),
                    );
                    let codec = match class {
                        PageClass::Random | PageClass::Sparse => plan.codecs[class.index()],
                        _ => codec,
                    };
                    (fill, class, codec)
                }
                None => {
                    let p = classify::profile(page);
                    let class = plan.thresholds.class(&p, ps);
                    (p.fill, class, plan.codec(class, meter.classify(class)))
                }
            };
            let codec = if codec == Codec::Zstd && !zstd_on {
                Codec::Lz
            } else {
                codec
            };
            self.routes.push(match fill {
                Some(0) => Route::Zero,
                Some(word) => Route::Fill(word),
                None => Route::Codec(codec),
            });
            self.keys.push((class, codec));
        }
    }

    /// Routes each page equal to a page the channel sent since its last
    /// sync point (same block, bytes compared in the cache) to a dedup
    /// reference.  Pages already in this frame are not sources: the
    /// destination writes them only after the whole frame decoded.
    fn find_duplicates(&mut self, n: usize, c: &CacheUse) {
        let ps = self.page_size;
        self.hashes.clear();
        self.hashes.resize(n, None);
        if !self.dedup.wants_batch() {
            return;
        }
        let (mut hashed, mut found) = (0, 0);
        for (i, route) in self.routes.iter_mut().enumerate() {
            if !matches!(route, Route::Codec(_)) {
                continue;
            }
            let page = &self.pages[i * ps..(i + 1) * ps];
            let hash = crate::hash::xxh3_64(page);
            self.hashes[i] = Some(hash);
            hashed += 1;
            let key = c.keys[i];
            if let Some(src) = self.dedup.find(hash, key.block) {
                if src != key && c.cache.holds(src, page) {
                    *route = Route::Dedup(src);
                    found += 1;
                }
            }
        }
        self.dedup.account(hashed, found);
    }

    /// Pass 2: zstd groups, timed one by one.
    fn compress_groups(&mut self, n: usize, meter: &mut Meter, clock: &mut dyn Clock) {
        self.groups.clear();
        self.wrote_stream = false;
        let Some(zstd) = self.zstd.as_mut() else {
            return;
        };
        let ps = self.page_size;
        let group_pages = match self.zstd_group_pages {
            0 => n,
            g => g,
        };
        let waiting = Route::Codec(Codec::Zstd);
        let mut used = 0usize;
        let mut next = 0;
        while let Some(first) = (next..n).find(|&k| self.routes[k] == waiting) {
            let start = if meter.timed() { clock.now_ns() } else { 0 };
            // Up to `group_pages` zstd pages of `first`'s class from
            // `first` on, whatever stands between them: a group of one
            // class is metered exactly, and one group per class is one
            // flush per class (a flush ends a zstd block, whose entropy
            // tables cost about as much as compressing a page: groups of
            // class runs took 60 % of zstd-1's speed on the compile image,
            // one per class 80 %).
            let class = self.keys[first].0;
            let is_member = |k: usize| self.routes[k] == waiting && self.keys[k].0 == class;
            let (mut members, mut last) = (0, first);
            for k in (first..n).filter(|&k| is_member(k)) {
                members += 1;
                last = k;
                if members == group_pages {
                    break;
                }
            }
            let input = members * ps;
            let pages = &self.pages;
            let src = (first..=last)
                .filter(|&k| is_member(k))
                .map(|k| &pages[k * ps..(k + 1) * ps]);
            // A group compressed is in the stream and must be sent; one
            // that does not fit in its pages' room restarts the stream and
            // its pages take LZ.  (Whether the tier pays is the
            // controller's call, from the sizes metered here.)  The groups
            // of a frame fit `group_out`: each takes at most its input.
            let dst = &mut self.group_out[used..used + input];
            let kept = zstd.compress(src, dst);
            let member_route = match kept {
                Some(_) => Route::GroupMember(first),
                None => Route::Codec(Codec::Lz),
            };
            for k in first..=last {
                if self.routes[k] == waiting && self.keys[k].0 == class {
                    self.routes[k] = member_route;
                }
            }
            if let Some(len) = kept {
                self.routes[first] = Route::GroupHead(self.groups.len());
                self.groups.push(Group { offset: used, len });
                used += len;
                self.wrote_stream = true;
            }
            if meter.timed() {
                let ns = clock.now_ns().saturating_sub(start);
                meter.group(class, members as u64, ns, kept);
            }
            next = first + 1;
        }
    }

    /// Whether the last frame written holds a delta page.
    pub(crate) fn wrote_delta(&self) -> bool {
        self.wrote_delta
    }

    /// Whether the last frame written holds a zstd group.
    pub(crate) fn wrote_stream(&self) -> bool {
        self.wrote_stream
    }

    /// Whether the last frame written holds a dedup page.
    pub(crate) fn wrote_dedup(&self) -> bool {
        self.wrote_dedup
    }

    /// Pass 3: the page table and payloads, and the checksum of the pages.
    fn write_pages(
        &mut self,
        n: usize,
        seed: u64,
        meter: &mut Meter,
        clock: &mut dyn Clock,
        out: &mut [u8],
        counters: &mut Counters,
    ) -> Written {
        let ps = self.page_size;
        let table_end = format::head_len(n);
        let mut pos = table_end;
        let mut hasher = crate::hash::Xxh3::with_seed(seed);
        self.wrote_delta = false;
        self.wrote_dedup = false;
        for i in 0..n {
            let key = self.keys[i];
            let is_delta = matches!(
                self.routes[i],
                Route::Delta(_) | Route::DeltaMade(..) | Route::Dedup(_)
            );
            if is_delta && meter.timed() {
                // Deltas and references are not the class codec's cost.
                meter.end_run(clock.now_ns());
            } else if meter.starts_run(key) {
                meter.switch(key, clock.now_ns());
            }
            // Room: `out` holds max_frame_len(n) bytes, a page's payload never
            // exceeds a page, and a group's never exceeds its pages, which
            // all come at or after its head.  So before page i is written,
            // at most the other pages' worth of payload is in `out`, and a
            // page-sized window at `pos` is free for pages that are not
            // group members.
            let (method, len) = self.write_page(i, out, pos);
            self.wrote_delta |= method.is_delta();
            self.wrote_dedup |= method == Method::Dedup;
            hasher.update(&self.pages[i * ps..(i + 1) * ps]);
            // A member's length field names its head; its payload is empty.
            let field = match self.routes[i] {
                Route::GroupMember(head) => head,
                _ => len,
            };
            let entry = HEADER_LEN + i * ENTRY_LEN;
            out[entry..entry + ENTRY_LEN].copy_from_slice(&format::pack_entry(method.tag(), field));
            let slot = method.counter_slot();
            counters.method_pages[slot] += 1;
            counters.method_bytes[slot] += len as u64;
            if !matches!(
                self.routes[i],
                Route::GroupHead(_)
                    | Route::GroupMember(_)
                    | Route::Delta(_)
                    | Route::DeltaMade(..)
                    | Route::Dedup(_)
            ) {
                meter.page(key, len);
            }
            pos += len;
        }
        if meter.timed() {
            meter.end_run(clock.now_ns());
        }
        Written {
            payload: pos - table_end,
            checksum: hasher.digest(),
        }
    }

    /// Writes page `i`'s payload at `out[pos..]`; returns its method and
    /// length.
    fn write_page(&mut self, i: usize, out: &mut [u8], pos: usize) -> (Method, usize) {
        let ps = self.page_size;
        // A codec must save at least 1/32 of the page, else the page goes raw.
        let limit = ps - ps / 32;
        let page = &self.pages[i * ps..(i + 1) * ps];
        let lz = self.lz;
        let lz_state = (&mut self.lz_scratch[..], &mut self.lz4_table);
        match self.routes[i] {
            Route::Zero => (Method::Zero, 0),
            Route::GroupMember(_) => (Method::ZstdMember, 0),
            Route::Fill(word) => {
                out[pos..pos + 4].copy_from_slice(&word.to_le_bytes());
                (Method::Fill, 4)
            }
            Route::GroupHead(g) => {
                let Group { offset, len } = self.groups[g];
                out[pos..pos + len].copy_from_slice(&self.group_out[offset..offset + len]);
                (Method::Zstd, len)
            }
            Route::Codec(codec) => encode_with(codec, lz, page, &mut out[pos..pos + ps], lz_state),
            Route::DeltaMade(method, len) => {
                out[pos..pos + len].copy_from_slice(&self.bases[i * ps..i * ps + len]);
                (method, len)
            }
            Route::Dedup(src) => {
                let hash = self.hashes[i].unwrap_or_default();
                let reference = dedup::encode(src.index * ps as u64, hash);
                out[pos..pos + dedup::LEN].copy_from_slice(&reference);
                (Method::Dedup, dedup::LEN)
            }
            Route::Delta(codec) => {
                let base = &self.bases[i * ps..(i + 1) * ps];
                let window = &mut out[pos..pos + ps];
                let Some((method, len)) =
                    delta::encode(page, base, &mut self.delta_out, limit, &mut self.delta)
                else {
                    return encode_with(codec, lz, page, window, lz_state);
                };
                // A small delta is as good as it gets; a larger one must
                // beat the page's own codec.
                if len > ps / DELTA_CLEARLY_SMALL {
                    let own = encode_with(codec, lz, page, window, lz_state);
                    if own.1 <= len {
                        return own;
                    }
                }
                window[..len].copy_from_slice(&self.delta_out[..len]);
                (method, len)
            }
        }
    }
}

/// A page the zstd tier would take goes as a delta only when the delta is
/// at most 1/`DELTA_BEATS_ZSTD` of a page.
const DELTA_BEATS_ZSTD: usize = 4;

/// A delta of at most 1/`DELTA_CLEARLY_SMALL` of a page is sent without
/// trying the page's own codec: a page codec rarely gets a page below 1/16
/// (LZ4 averages 0.35–0.6 of a page on the corpus), and trying costs a
/// second compression.
const DELTA_CLEARLY_SMALL: usize = 16;

/// Writes `page` into `window` with `codec`, falling back along
/// sparse -> LZ -> raw and WKdm -> LZ -> raw.
fn encode_with(
    codec: Codec,
    lz: LzCodec,
    page: &[u8],
    window: &mut [u8],
    lz_state: (&mut [u8], &mut lz::Lz4Table),
) -> (Method, usize) {
    let ps = page.len();
    // A codec must save at least 1/32 of the page, else the page goes raw.
    let limit = ps - ps / 32;
    let first = match codec {
        Codec::Sparse => {
            sparse::encode(page, window, ps / SPARSE_MAX_FRACTION).map(|len| (Method::Sparse, len))
        }
        Codec::Wkdm => wkdm::encode(page, window, limit).map(|len| (Method::Wkdm, len)),
        // A zstd page still here lost its group: LZ, as below.
        Codec::Lz | Codec::Zstd | Codec::Raw => None,
    };
    first
        .or_else(|| match codec {
            Codec::Raw => None,
            _ => lz_encode(lz, page, window, limit, lz_state),
        })
        .unwrap_or_else(|| raw(page, window))
}

fn lz_encode(
    codec: LzCodec,
    page: &[u8],
    window: &mut [u8],
    limit: usize,
    (scratch, table): (&mut [u8], &mut lz::Lz4Table),
) -> Option<(Method, usize)> {
    match codec {
        LzCodec::Lz4 => {
            let n = lz::lz4_encode_with(table, page, scratch, limit)?;
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
