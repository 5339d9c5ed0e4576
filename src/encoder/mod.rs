//! Batch encoder: pages in, one frame out.
//!
//! The encoder writes frames; the controller ([`crate::policy`]) decides
//! and measures.  For each batch the encoder asks the controller for a
//! [`Plan`], has [`batch::Batch`] write the payloads under it while a
//! [`Meter`] records what each (class, codec) pair cost, writes the header,
//! and hands the meter back ([`Policy::observe`]).  `docs/ARCHITECTURE.md`
//! follows one page through it.

#![forbid(unsafe_code)]

mod batch;
mod dedup;

use crate::cache::{block_hash, PageCache, PageKey};
use crate::classify::PageClass;
use crate::config::Config;
use crate::counters::Counters;
use crate::error::{Error, Result};
use crate::format::{
    self, Header, Placement, FEATURE_DEDUP, FEATURE_DELTA, FEATURE_PLACEMENT, FEATURE_STREAM,
    HEADER_LEN,
};
use crate::policy::{Clock, Codec, LinkStats, Meter, Plan, Policy, TransportStats, WallClock};
pub(crate) use batch::PageSource;
use batch::{Batch, CacheUse, Metering};
use dedup::DedupIndex;
use std::sync::Arc;

/// Encodes batches of pages into frames.  One per channel; not `Sync`.
pub struct Encoder {
    config: Config,
    shift: u8,
    page_size: usize,
    batch: Batch,
    policy: Policy,
    meter: Meter,
    clock: Box<dyn Clock>,
    sequence: u32,
    counters: Counters,
    /// The migration's page cache, shared with the other channels.
    cache: Option<Arc<PageCache>>,
    /// The keys of the current frame's pages.
    cache_keys: Vec<PageKey>,
    /// The dirty-sync round, from the latest [`LinkStats`].
    round: u64,
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
        Ok(Encoder {
            shift,
            page_size: config.page_size as usize,
            batch: Batch::new(&config)?,
            policy: Policy::new(&config),
            meter: Meter::default(),
            clock,
            sequence: 0,
            counters: Counters::default(),
            cache: None,
            cache_keys: Vec::with_capacity(config.max_pages),
            round: 0,
            config,
        })
    }

    /// Shares `cache` (one per migration, with every channel's encoder):
    /// a page it holds is then sent as a delta against the version the
    /// destination has, when that is smaller.  Only frames bound to a
    /// placement use it, since the placement names the pages.  `None`
    /// stops using a cache.
    pub fn set_cache(&mut self, cache: Option<Arc<PageCache>>) -> Result<()> {
        if cache
            .as_ref()
            .is_some_and(|c| c.page_size() != self.page_size)
        {
            return Err(Error::InvalidArgument {
                reason: "the page cache's page size differs from the encoder's",
            });
        }
        self.policy.set_deltas(cache.is_some());
        self.cache = cache;
        Ok(())
    }

    /// Turns dedup on or off: with a cache ([`Encoder::set_cache`]), a
    /// page equal to one this channel sent since its last sync point, in
    /// the same block, is sent as a reference to it
    /// ([`crate::Method::Dedup`]).  The caller must then report every
    /// sync point ([`Encoder::synced`]); between two of them a page must
    /// be sent at most once, on any channel, and the destination must
    /// decode a channel's frames in order (QEMU's multifd guarantees both;
    /// `docs/DESIGN.md` §7).  The index has four slots per page of
    /// the cache; it is allocated here.
    pub fn set_dedup(&mut self, on: bool) -> Result<()> {
        let entries = match (&self.cache, on) {
            // Four slots per cached page keep hash collisions in the
            // direct-mapped index rare (at one per page, tests/ffi.rs lost
            // 2 of 24 sources to them).
            (Some(cache), true) => cache.slots().saturating_mul(4),
            (None, true) => {
                return Err(Error::InvalidArgument {
                    reason: "dedup needs a page cache (set_cache first)",
                })
            }
            (_, false) => 0,
        };
        self.batch.set_dedup(DedupIndex::new(entries)?);
        Ok(())
    }

    /// The channel passed a sync point: every frame encoded before it is
    /// decoded before any frame after it, on every channel.  Pages sent
    /// before it stop being dedup sources, since another channel may send
    /// them again after it.
    pub fn synced(&mut self) {
        self.batch.synced();
    }

    /// The configuration the encoder was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Takes the migration's latest statistics (see [`crate::policy`]).
    pub fn update_stats(&mut self, stats: LinkStats) {
        self.round = stats.dirty_sync_count;
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
        self.encode_from(pages, None, out)
    }

    /// Encodes `pages` like [`Encoder::encode`], bound to `placement`
    /// (its `offsets` one per page): the frame decodes only against the
    /// same placement ([`crate::Decoder::decode_placed`]).  With no pages
    /// the frame is a header alone that binds the placement's block and
    /// zero-page list: the frame of a packet whose pages are all zero.
    pub fn encode_placed(
        &mut self,
        pages: &[&[u8]],
        placement: &Placement,
        out: &mut [u8],
    ) -> Result<usize> {
        if pages.iter().any(|p| p.len() != self.page_size) {
            return Err(Error::InvalidArgument {
                reason: "every page must be exactly page_size bytes",
            });
        }
        self.encode_from(pages, Some(placement), out)
    }

    /// Encodes from any page source, bound to `placement` if given; see
    /// [`Encoder::encode`].
    pub(crate) fn encode_from<S: PageSource + ?Sized>(
        &mut self,
        source: &S,
        placement: Option<&Placement>,
        out: &mut [u8],
    ) -> Result<usize> {
        let start = self.clock.now_ns();
        let n = source.len();
        if let (0, Some(placement)) = (n, placement) {
            return self.encode_placement_only(placement, out);
        }
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
        if placement.is_some_and(|p| p.offsets.len() != n) {
            return Err(Error::InvalidArgument {
                reason: "a placement names one offset per page",
            });
        }
        let seed = placement.map_or(0, Placement::seed);
        let plan = self.policy.next_plan();
        let all_raw = plan.all_raw();
        // An all-raw batch on a link that is not fast still sends the
        // pages the cache holds as deltas, without classifying any page.
        let raw_deltas = plan.raw_deltas && placement.is_some();
        let classified = !all_raw && plan.uniform().is_none();
        self.meter.start(&plan, classified);
        let cache = match (&self.cache, placement) {
            (Some(cache), Some(p)) => {
                self.cache_keys.clear();
                let block = block_hash(p.block);
                let shift = self.shift;
                self.cache_keys
                    .extend(p.offsets.iter().map(|&o| PageKey::new(block, o, shift)));
                forget_zero_pages(cache, p, shift);
                Some(CacheUse {
                    cache,
                    keys: &self.cache_keys,
                    round: self.round,
                })
            }
            _ => None,
        };
        let written = if !all_raw || raw_deltas {
            self.batch.write(
                source,
                seed,
                &plan,
                Metering {
                    meter: &mut self.meter,
                    clock: self.clock.as_mut(),
                },
                out,
                &mut self.counters,
                cache.as_ref(),
            )
        } else {
            // A fast link (or a raw probe, or the link being measured):
            // no copy into the cache either; the pages sent raw just leave
            // it.
            if let Some(c) = cache.as_ref().filter(|c| !c.cache.never_filled()) {
                for &key in c.keys {
                    c.cache.invalidate(key);
                }
            }
            self.batch.write_raw(source, seed, out, &mut self.counters)
        };
        let mut features = 0;
        if placement.is_some() {
            features |= FEATURE_PLACEMENT;
        }
        if self.batch.wrote_delta() {
            features |= FEATURE_DELTA;
        }
        if self.batch.wrote_stream() {
            features |= FEATURE_STREAM;
        }
        if self.batch.wrote_dedup() {
            features |= FEATURE_DEDUP;
        }
        let header = Header {
            page_shift: self.shift,
            page_count: n as u16,
            sequence: self.sequence,
            features,
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
        self.policy.observe(&self.meter);
        self.counters
            .count_frame(n, self.page_size, frame_len, total_ns);
        Ok(frame_len)
    }

    /// The frame of a packet whose pages are all zero: a header without
    /// pages whose checksum binds `placement` (the block and the zero-page
    /// offsets), so a corrupted zero-page list fails like any other header
    /// field.  It takes a sequence number, so it also counts in the
    /// channel's order; it does not feed the controller, having no pages.
    fn encode_placement_only(&mut self, placement: &Placement, out: &mut [u8]) -> Result<usize> {
        if !placement.offsets.is_empty() {
            return Err(Error::InvalidArgument {
                reason: "a placement names one offset per page",
            });
        }
        let Some(head) = out.first_chunk_mut::<HEADER_LEN>() else {
            return Err(Error::BufferTooSmall {
                needed: HEADER_LEN,
                given: out.len(),
            });
        };
        if let Some(cache) = &self.cache {
            forget_zero_pages(cache, placement, self.shift);
        }
        Header {
            page_shift: self.shift,
            page_count: 0,
            sequence: self.sequence,
            features: FEATURE_PLACEMENT,
            payload_len: 0,
            checksum: crate::hash::xxh3_64_seeded(&[], placement.seed()),
        }
        .write(head);
        self.sequence = self.sequence.wrapping_add(1);
        self.counters.count_frame(0, self.page_size, HEADER_LEN, 0);
        Ok(HEADER_LEN)
    }
}

/// The packet's all-zero pages reach the destination without the codec
/// (QEMU's multifd zero-page detection): their cached versions are stale.
fn forget_zero_pages(cache: &PageCache, placement: &Placement, shift: u8) {
    let block = block_hash(placement.block);
    for &o in placement.zero_offsets {
        cache.invalidate(PageKey::new(block, o, shift));
    }
}
