//! The source's page cache: for each page it holds, the exact bytes last
//! sent for it, which is what the destination holds.  Encoders that share
//! one cache ([`crate::Encoder::set_cache`]) send a page that hits as a
//! delta against that version.
//!
//! One cache serves every channel of a migration, because a page may be
//! sent on one channel and re-sent on another.  It is two-way set
//! associative: a page can only live in one set of [`WAYS`] adjacent
//! slots (set `(block hash + page index) mod sets`), so a page never has
//! two entries, and an insert that finds both slots held by pages sent in
//! the same round, or by hot pages (sent in consecutive rounds) sent the
//! round before, leaves the page with none (an overflow).  Direct-mapped
//! (one slot per page, as XBZRLE's cache), a working set of half the
//! cache's size lost a quarter of its pages to collisions with each other
//! every round, and those went whole: DESIGN.md §6.  Slots come in stripes of
//! [`STRIPE`] under one lock, held for one page copy: consecutive pages (a
//! batch) share a stripe, and two channels work on different batches, so
//! they rarely wait for each other; one lock per slot would cost a lock
//! per page.  Within a sync round a page is in at most one batch
//! (`docs/qemu.md`), so two channels meet on a slot only for two different
//! pages.
//!
//! The pages of all slots are one zeroed allocation, so the system backs
//! it only as slots fill: a cache of tens of MiB costs no time and no
//! resident memory when it is made, and none at all on a link where every
//! page goes raw.  (Written page by page, as separate allocations per
//! stripe, it cost 24-55 ms and its whole size at the start of every
//! migration: the allocator hands out recycled memory below 32 MiB, which
//! calloc must clear.)  The page words are atomics, read and written only
//! under their stripe's lock, which is what lets the stripes share one
//! allocation without `unsafe`.
//!
//! What keeps an entry equal to the destination's page:
//! - every page an encoder sends under a placement replaces its entry
//!   (or, when the slots are taken by pages sent in the current round or
//!   hot ones sent the round before, is left out of the cache: an
//!   overflow);
//! - every page a placement lists as all-zero (sent without the codec)
//!   loses its entry;
//! - a cache lives as long as one migration: QEMU makes a new one each
//!   time.
//!
//! A stale entry can only cost a failed migration, never a wrong page:
//! each delta carries the hash of the base it was made against, and the
//! decoder refuses it when the destination's page differs
//! ([`crate::Error::BaseMismatch`]); the frame checksum then still covers
//! the result.

#![forbid(unsafe_code)]

use crate::error::{Error, Result};
use crate::format;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// A page's identity: its block (hash of the name) and its index in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageKey {
    /// xxh3-64 of the block's name.
    pub block: u64,
    /// Offset in the block / page size.
    pub index: u64,
}

impl PageKey {
    /// The key of the page at `offset` of the block whose name hashes to
    /// `block`.
    pub(crate) fn new(block: u64, offset: u64, shift: u8) -> PageKey {
        PageKey {
            block,
            index: offset >> shift,
        }
    }
}

/// The hash that names a block in [`PageKey`].
pub(crate) fn block_hash(name: &[u8]) -> u64 {
    crate::hash::xxh3_64(name)
}

/// Slots per stripe (one lock); a multiple of [`WAYS`].
const STRIPE: usize = 64;

/// Slots a page may live in (adjacent slots of one stripe): a page that
/// collides with another one sent this round takes the other slot instead
/// of going without a base (see the module doc).
const WAYS: usize = 2;

/// Bytes of a page word in the cache's memory.
const WORD: usize = 8;

#[derive(Clone, Copy, Default)]
struct Slot {
    /// The page held, if any.
    key: Option<PageKey>,
    /// The sync round it was inserted in.
    round: u64,
    /// Consecutive rounds before `round` that the page was also sent in:
    /// its hotness.
    streak: u32,
}

impl Slot {
    /// Whether the page is hot and was sent the round before `round`:
    /// likely to be sent again in `round`, so kept against a page new to
    /// the cache (see [`PageCache::insert`]).
    fn protected(&self, round: u64) -> bool {
        self.streak > 0 && self.round + 1 == round
    }
}

/// Running totals of a cache (all channels together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounters {
    /// Size of the cache in bytes (slots × page size).
    pub size: u64,
    /// Lookups that found the page's previous version.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Pages inserted (a new version of a page already held included).
    pub inserts: u64,
    /// Inserts that replaced another page sent in an earlier round.
    pub evictions: u64,
    /// Inserts that found both slots of the page's set taken by other
    /// pages sent in the current round, or hot ones sent the round before,
    /// and left the page out.
    pub overflows: u64,
    /// Entries dropped because the page was sent another way (all-zero,
    /// or raw without the cache).
    pub invalidations: u64,
    /// Inserts of a page that was also sent in the round before: the page
    /// is hot (re-dirtied round after round).
    pub hot: u64,
}

#[derive(Default)]
struct AtomicCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
    evictions: AtomicU64,
    overflows: AtomicU64,
    invalidations: AtomicU64,
    hot: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The pages the destination holds, as last sent; shared by all channels
/// of one migration (it is `Sync`).
pub struct PageCache {
    page_size: usize,
    slots: usize,
    /// The slots of each stripe of [`STRIPE`] (the last may hold fewer).
    stripes: Box<[Mutex<Box<[Slot]>>]>,
    /// The pages of all slots, slot `i` at words `i * page_size / WORD`..;
    /// a slot's words are only touched under its stripe's lock.
    words: Box<[AtomicU64]>,
    counters: AtomicCounters,
}

/// One set of a [`PageCache`], its stripe locked: the slots of the set
/// are `slots[ways]`, their pages `words` (to be touched only while the
/// lock is held).  A set is [`WAYS`] adjacent slots (the last may have
/// fewer), so it never spans two stripes.
struct Set<'a> {
    slots: MutexGuard<'a, Box<[Slot]>>,
    ways: Range<usize>,
    words: &'a [AtomicU64],
    /// Words per page.
    page_words: usize,
}

impl Set<'_> {
    /// The way that holds `key`, from 0.
    fn way_of(&self, key: PageKey) -> Option<usize> {
        self.slots[self.ways.clone()]
            .iter()
            .position(|s| s.key == Some(key))
    }

    /// The page words of way `way`.
    fn page(&self, way: usize) -> &[AtomicU64] {
        &self.words[way * self.page_words..(way + 1) * self.page_words]
    }
}

impl PageCache {
    /// A cache of `size` bytes of pages of `page_size` bytes: `size /
    /// page_size` slots, at least one.  The memory is allocated here, once,
    /// zeroed by the system (see the module doc).
    pub fn new(page_size: u32, size: u64) -> Result<PageCache> {
        format::page_shift(page_size)?;
        let ps = page_size as usize;
        let slots = usize::try_from(size / u64::from(page_size)).unwrap_or(usize::MAX);
        if slots == 0 {
            return Err(Error::InvalidConfig {
                reason: "a page cache holds at least one page",
            });
        }
        let too_large = || Error::InvalidConfig {
            reason: "page cache too large for this host",
        };
        let words = slots.checked_mul(ps / WORD).ok_or_else(too_large)?;
        let words = bytemuck::allocation::try_zeroed_slice_box::<AtomicU64>(words)
            .map_err(|()| too_large())?;
        let mut stripes = Vec::new();
        stripes
            .try_reserve_exact(slots.div_ceil(STRIPE))
            .map_err(|_| too_large())?;
        for first in (0..slots).step_by(STRIPE) {
            let n = STRIPE.min(slots - first);
            stripes.push(Mutex::new(vec![Slot::default(); n].into_boxed_slice()));
        }
        Ok(PageCache {
            page_size: ps,
            slots,
            stripes: stripes.into_boxed_slice(),
            words,
            counters: AtomicCounters::default(),
        })
    }

    /// Number of pages the cache holds at most.
    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    /// Page size of the cached pages.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Running totals.
    pub fn counters(&self) -> CacheCounters {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheCounters {
            size: (self.slots * self.page_size) as u64,
            hits: get(&c.hits),
            misses: get(&c.misses),
            inserts: get(&c.inserts),
            evictions: get(&c.evictions),
            overflows: get(&c.overflows),
            invalidations: get(&c.invalidations),
            hot: get(&c.hot),
        }
    }

    /// `key`'s set, locked.
    fn set(&self, key: PageKey) -> Set<'_> {
        let sets = self.slots.div_ceil(WAYS) as u64;
        let first = (key.block.wrapping_add(key.index) % sets) as usize * WAYS;
        let end = (first + WAYS).min(self.slots);
        let stripe = &self.stripes[first / STRIPE];
        // A panic while a stripe was locked may have left a page half
        // copied: such a stripe forgets its pages.
        let slots = stripe.lock().unwrap_or_else(|poisoned| {
            stripe.clear_poison();
            let mut guard = poisoned.into_inner();
            guard.fill(Slot::default());
            guard
        });
        let n = self.page_size / WORD;
        Set {
            slots,
            ways: first % STRIPE..end - first + first % STRIPE,
            words: &self.words[first * n..end * n],
            page_words: n,
        }
    }

    /// Copies the last version sent of `key` into `base` (one page);
    /// false when the cache does not hold it.
    pub(crate) fn lookup(&self, key: PageKey, base: &mut [u8]) -> bool {
        let set = self.set(key);
        let Some(way) = set.way_of(key) else {
            drop(set);
            bump(&self.counters.misses);
            return false;
        };
        for (out, word) in base.chunks_exact_mut(WORD).zip(set.page(way)) {
            out.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
        }
        drop(set);
        bump(&self.counters.hits);
        true
    }

    /// Whether the cache holds `key` with exactly the bytes of `page` (a
    /// dedup source checked before use; not counted as a lookup).
    pub(crate) fn holds(&self, key: PageKey, page: &[u8]) -> bool {
        let set = self.set(key);
        set.way_of(key).is_some_and(|way| {
            set.page(way)
                .iter()
                .zip(page.chunks_exact(WORD))
                .all(|(word, bytes)| word.load(Ordering::Relaxed).to_ne_bytes() == bytes)
        })
    }

    /// Records `page` as the version of `key` sent in sync round `round`:
    /// in the way that holds `key`, else an empty way, else the way whose
    /// page was sent longest ago, unless that was this round, or the round
    /// before with the page hot then (sent in consecutive rounds): the
    /// page is then left out (an overflow).  Evicting the oldest alone, a
    /// working set larger than the cache evicts its own pages before they
    /// come round again: with one of 1.5 times the cache, 0.18-0.38 of the
    /// lookups hit, against 0.48-0.53 with this rule (DESIGN.md §6,
    /// *Hotness*).
    pub(crate) fn insert(&self, key: PageKey, round: u64, page: &[u8]) {
        let mut set = self.set(key);
        let ways = set.ways.clone();
        let slots = &mut set.slots[ways];
        let (way, streak) = match slots.iter().position(|s| s.key == Some(key)) {
            Some(way) => {
                // The same page again: hot if it was sent the round before.
                let s = slots[way];
                if s.round + 1 == round {
                    bump(&self.counters.hot);
                    (way, s.streak.saturating_add(1))
                } else if s.round == round {
                    (way, s.streak)
                } else {
                    (way, 0)
                }
            }
            None => match slots.iter().position(|s| s.key.is_none()) {
                Some(way) => (way, 0),
                None => {
                    let victim = (0..slots.len())
                        .filter(|&w| slots[w].round < round && !slots[w].protected(round))
                        .min_by_key(|&w| slots[w].round);
                    let Some(victim) = victim else {
                        drop(set);
                        bump(&self.counters.overflows);
                        return;
                    };
                    bump(&self.counters.evictions);
                    (victim, 0)
                }
            },
        };
        slots[way] = Slot {
            key: Some(key),
            round,
            streak,
        };
        for (word, bytes) in set.page(way).iter().zip(page.chunks_exact(WORD)) {
            let mut w = [0u8; WORD];
            w.copy_from_slice(bytes);
            word.store(u64::from_ne_bytes(w), Ordering::Relaxed);
        }
        drop(set);
        bump(&self.counters.inserts);
    }

    /// Whether no page was ever inserted, so there is nothing to forget: a
    /// migration that sends everything raw (a fast link) then skips the
    /// per-page invalidation.
    pub(crate) fn never_filled(&self) -> bool {
        self.counters.inserts.load(Ordering::Relaxed) == 0
    }

    /// Forgets `key`: the destination's page changed without this cache
    /// seeing the bytes.
    pub(crate) fn invalidate(&self, key: PageKey) {
        let mut set = self.set(key);
        if let Some(way) = set.way_of(key) {
            let at = set.ways.start + way;
            set.slots[at].key = None;
            drop(set);
            bump(&self.counters.invalidations);
        }
    }
}

impl std::fmt::Debug for PageCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageCache")
            .field("page_size", &self.page_size)
            .field("slots", &self.slots)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: usize = 4096;

    fn key(index: u64) -> PageKey {
        PageKey { block: 7, index }
    }

    #[test]
    fn a_page_reads_back_as_last_inserted() {
        let cache = PageCache::new(4096, 4 * 4096).unwrap();
        let mut base = vec![0u8; PS];
        assert!(!cache.lookup(key(1), &mut base));
        cache.insert(key(1), 1, &[1; PS]);
        cache.insert(key(1), 2, &[2; PS]);
        assert!(cache.lookup(key(1), &mut base));
        assert_eq!(base, [2; PS]);
        let c = cache.counters();
        assert_eq!((c.hits, c.misses, c.inserts, c.hot), (1, 1, 2, 1));
        assert_eq!(c.size, 4 * 4096);
    }

    #[test]
    fn a_page_sent_this_round_is_not_evicted() {
        // One slot: every page maps to it.
        let cache = PageCache::new(4096, 4096).unwrap();
        let mut base = vec![0u8; PS];
        cache.insert(key(1), 3, &[1; PS]);
        cache.insert(key(2), 3, &[2; PS]);
        assert_eq!(cache.counters().overflows, 1);
        assert!(!cache.lookup(key(2), &mut base));
        assert!(cache.lookup(key(1), &mut base));
        // Next round the older page gives way.
        cache.insert(key(2), 4, &[2; PS]);
        assert_eq!(cache.counters().evictions, 1);
        assert!(!cache.lookup(key(1), &mut base));
        assert!(cache.lookup(key(2), &mut base));
        assert_eq!(base, [2; PS]);
    }

    #[test]
    fn an_invalidated_page_is_gone() {
        let cache = PageCache::new(4096, 8 * 4096).unwrap();
        let mut base = vec![0u8; PS];
        cache.insert(key(5), 1, &[5; PS]);
        cache.invalidate(key(6));
        assert!(cache.lookup(key(5), &mut base));
        cache.invalidate(key(5));
        assert!(!cache.lookup(key(5), &mut base));
        assert_eq!(cache.counters().invalidations, 1);
    }

    #[test]
    fn a_partial_last_stripe_holds_its_pages() {
        // 67 slots: 34 sets, the last stripe holds set 32 (slots 64 and 65)
        // and set 33 (slot 66 alone).  Block hash 7: index i is in set
        // (7 + i) % 34.
        let slots = STRIPE as u64 + 3;
        let cache = PageCache::new(4096, slots * 4096).unwrap();
        assert_eq!(cache.counters().size, slots * 4096);
        let mut base = vec![0u8; PS];
        for index in [25, 59, 26, 60] {
            cache.insert(key(index), 1, &[index as u8; PS]);
        }
        for index in [25, 59, 26] {
            assert!(cache.lookup(key(index), &mut base), "{index}");
            assert_eq!(base, [index as u8; PS]);
        }
        // The one-slot set had room for one of its two pages.
        assert!(!cache.lookup(key(60), &mut base));
        assert_eq!(cache.counters().overflows, 1);
    }

    #[test]
    fn two_pages_of_one_set_sent_in_one_round_both_stay() {
        // Two slots, one set: the second page takes the other way; a
        // third sent in the same round overflows, and next round the page
        // sent longest ago gives way.
        let cache = PageCache::new(4096, 2 * 4096).unwrap();
        let mut base = vec![0u8; PS];
        // Odd indices: one slot each in a direct-mapped cache of two.
        cache.insert(key(1), 3, &[1; PS]);
        cache.insert(key(3), 4, &[3; PS]);
        cache.insert(key(5), 4, &[5; PS]);
        assert_eq!(cache.counters().overflows, 0);
        assert!(!cache.lookup(key(1), &mut base), "round 3's page made room");
        assert_eq!(cache.counters().evictions, 1);
        cache.insert(key(7), 4, &[7; PS]);
        assert_eq!(cache.counters().overflows, 1);
        for index in [3, 5] {
            assert!(cache.lookup(key(index), &mut base), "{index}");
            assert_eq!(base, [index as u8; PS]);
        }
        cache.invalidate(key(3));
        assert!(!cache.holds(key(3), &[3; PS]));
        assert!(cache.holds(key(5), &[5; PS]));
    }

    #[test]
    fn a_hot_page_keeps_its_slot_against_a_page_new_to_the_cache() {
        // One set of two slots.  Pages 1 and 3 are sent in rounds 1 and 2:
        // hot.  In round 3 page 5, new to the cache, comes before them and
        // finds both hot pages sent the round before: it is left out, and
        // they still hit.  Page 3 is not sent in round 3, so in round 4 it
        // is no longer protected and gives way to page 5.
        let cache = PageCache::new(4096, 2 * 4096).unwrap();
        let mut base = vec![0u8; PS];
        for round in 1..=2 {
            for index in [1, 3] {
                cache.insert(key(index), round, &[index as u8; PS]);
            }
        }
        assert_eq!(cache.counters().hot, 2);
        cache.insert(key(5), 3, &[5; PS]);
        assert_eq!(cache.counters().overflows, 1);
        for index in [1, 3] {
            assert!(cache.lookup(key(index), &mut base), "{index}");
        }
        cache.insert(key(1), 3, &[1; PS]);
        cache.insert(key(5), 4, &[5; PS]);
        assert_eq!(cache.counters().evictions, 1);
        assert!(!cache.lookup(key(3), &mut base));
        assert!(cache.lookup(key(1), &mut base));
        // A page sent in one round only is not hot: the next round a new
        // page takes its slot, although it was sent the round before, and
        // the hot one stays.
        cache.insert(key(1), 4, &[1; PS]);
        cache.insert(key(7), 5, &[7; PS]);
        assert!(cache.lookup(key(1), &mut base));
        assert!(cache.lookup(key(7), &mut base));
        assert!(!cache.lookup(key(5), &mut base));
    }

    #[test]
    fn channels_share_one_cache() {
        let cache = std::sync::Arc::new(PageCache::new(4096, 1024 * 4096).unwrap());
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    let mut base = vec![0u8; PS];
                    for round in 1..=3u64 {
                        for index in (t * 256)..(t * 256 + 256) {
                            let byte = (index as u8) ^ (round as u8);
                            if round > 1 {
                                assert!(cache.lookup(key(index), &mut base));
                                assert_eq!(base[0], (index as u8) ^ (round as u8 - 1));
                            }
                            cache.insert(key(index), round, &[byte; PS]);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let c = cache.counters();
        assert_eq!((c.inserts, c.hits, c.hot), (3072, 2048, 2048));
    }

    #[test]
    fn sizes_are_checked() {
        assert!(PageCache::new(4096, 4095).is_err());
        assert!(PageCache::new(1000, 1 << 20).is_err());
        assert!(PageCache::new(65536, 65536).is_ok());
        // Memory the host cannot give is an error, not an abort.
        assert!(matches!(
            PageCache::new(4096, u64::MAX),
            Err(Error::InvalidConfig { .. })
        ));
    }
}
