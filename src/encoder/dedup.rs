//! The dedup sources of one channel: pages it sent since its last sync
//! point, by the hash of their bytes.
//!
//! A dedup page names another page of its block for the destination to
//! copy, so the destination must hold, when it decodes the reference,
//! exactly the version the source compared against.  Pages sent by this
//! channel since its last sync point are the ones that is certain for
//! (`docs/DESIGN.md` §7): the channel's frames are decoded in
//! order, and a page is sent at most once between two sync points, so no
//! other channel can send a newer version of it before the reference is
//! decoded.  A page of another channel, or one sent before the sync
//! point, could be overwritten by a frame the destination decodes first.
//! So the index is per channel and forgets everything at a sync point.
//!
//! It is direct-mapped by hash, like the page cache: a newer page takes
//! an older page's slot.  It holds keys only; the bytes to compare are the
//! page cache's, which holds what was sent.
//!
//! Looking a page up means hashing it: about 2,800 instructions per 4 KiB
//! page (callgrind, xxh3-64), 2-4 % of the 76-127 k that encoding a page
//! costs (`docs/results/decode-profile.md`), while in migrations of the
//! benchmark guest 0.3-0.4 % of pages had a source.  A page with a source
//! saves its whole encode, so hashing pays for itself in CPU from about 1
//! page in 36.  The index judges itself over windows of [`WINDOW_PAGES`]
//! hashed pages: a window in which fewer than 1/[`HIT_SHARE`] of them had
//! a source is followed by [`REST_BATCHES`] batches that hash nothing,
//! then another window.  On a guest without duplicates that bounds the
//! cost to an eighth of the hashing.

#![forbid(unsafe_code)]

use crate::cache::PageKey;
use crate::error::{Error, Result};

/// Most entries of one channel's index (32 bytes each: 8 MiB).
const MAX_ENTRIES: usize = 1 << 18;

/// Hashed pages per judgment of whether dedup pays.
const WINDOW_PAGES: u32 = 4096;

/// Dedup pays while at least 1/`HIT_SHARE` of the hashed pages have a
/// source.
const HIT_SHARE: u32 = 32;

/// Batches that hash nothing after a window in which dedup did not pay.
const REST_BATCHES: u32 = 256;

/// One slot: 32 bytes.  An empty slot has epoch 0, which no index has.
#[derive(Debug, Clone, Copy)]
struct Source {
    /// xxh3-64 of the page's bytes as sent.
    hash: u64,
    key: PageKey,
    /// The sync epoch the page was sent in.
    epoch: u64,
}

const EMPTY: Source = Source {
    hash: 0,
    key: PageKey { block: 0, index: 0 },
    epoch: 0,
};

/// Hash -> page sent since the channel's last sync point.
#[derive(Debug, Default)]
pub(crate) struct DedupIndex {
    slots: Vec<Source>,
    /// Bumped at every sync point: entries of older epochs are dead.
    epoch: u64,
    /// Pages hashed, and pages that had a source, in the current window.
    hashed: u32,
    found: u32,
    /// Batches still to go without hashing.
    resting: u32,
}

impl DedupIndex {
    /// An index of about `entries` slots (a power of two, at most
    /// [`MAX_ENTRIES`]); 0 makes an index that finds nothing.
    pub(crate) fn new(entries: usize) -> Result<DedupIndex> {
        let n = match entries {
            0 => 0,
            e => e.min(MAX_ENTRIES).next_power_of_two(),
        };
        let mut slots = Vec::new();
        slots
            .try_reserve_exact(n)
            .map_err(|_| Error::InvalidConfig {
                reason: "dedup index too large for this host",
            })?;
        slots.resize(n, EMPTY);
        Ok(DedupIndex {
            slots,
            epoch: 1,
            ..DedupIndex::default()
        })
    }

    /// Whether to look up the pages of the next batch (counts a resting
    /// batch).
    pub(crate) fn wants_batch(&mut self) -> bool {
        if !self.is_on() {
            return false;
        }
        if self.resting > 0 {
            self.resting -= 1;
            return false;
        }
        true
    }

    /// Books a batch: `hashed` pages looked up, `found` with a source.
    pub(crate) fn account(&mut self, hashed: u32, found: u32) {
        self.hashed += hashed;
        self.found += found;
        if self.hashed >= WINDOW_PAGES {
            if self.found.saturating_mul(HIT_SHARE) < self.hashed {
                self.resting = REST_BATCHES;
            }
            (self.hashed, self.found) = (0, 0);
        }
    }

    /// Whether the index can find anything.
    pub(crate) fn is_on(&self) -> bool {
        !self.slots.is_empty()
    }

    fn slot(&self, hash: u64) -> usize {
        (hash as usize) & (self.slots.len() - 1)
    }

    /// The channel passed a sync point: forget every page.
    pub(crate) fn synced(&mut self) {
        self.epoch += 1;
    }

    /// A page of `block` sent since the last sync point whose bytes hashed
    /// to `hash` (to be compared before use: hashes collide).
    pub(crate) fn find(&self, hash: u64, block: u64) -> Option<PageKey> {
        if !self.is_on() {
            return None;
        }
        let s = self.slots[self.slot(hash)];
        (s.epoch == self.epoch && s.hash == hash && s.key.block == block).then_some(s.key)
    }

    /// Records that `key` was just sent with bytes hashing to `hash`.
    pub(crate) fn record(&mut self, hash: u64, key: PageKey) {
        if !self.is_on() {
            return;
        }
        let i = self.slot(hash);
        self.slots[i] = Source {
            hash,
            key,
            epoch: self.epoch,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(block: u64, index: u64) -> PageKey {
        PageKey { block, index }
    }

    #[test]
    fn a_page_is_found_until_the_next_sync_point() {
        let mut ix = DedupIndex::new(100).unwrap();
        ix.record(7, key(1, 3));
        assert_eq!(ix.find(7, 1), Some(key(1, 3)));
        assert_eq!(ix.find(7, 2), None, "another block");
        assert_eq!(ix.find(8, 1), None, "another hash");
        ix.synced();
        assert_eq!(ix.find(7, 1), None);
        ix.record(7, key(1, 4));
        assert_eq!(ix.find(7, 1), Some(key(1, 4)));
    }

    #[test]
    fn a_window_with_few_sources_rests_the_index() {
        let mut ix = DedupIndex::new(100).unwrap();
        // A window where 1 in 32 pages has a source: still on.
        for _ in 0..32 {
            assert!(ix.wants_batch());
            ix.account(128, 4);
        }
        assert!(ix.wants_batch());
        // One where fewer do: REST_BATCHES batches hash nothing.
        for _ in 0..32 {
            assert!(ix.wants_batch());
            ix.account(128, 3);
        }
        let rested = (0..2 * REST_BATCHES)
            .take_while(|_| !ix.wants_batch())
            .count();
        assert_eq!(rested, REST_BATCHES as usize);
    }

    #[test]
    fn a_slot_is_32_bytes_and_an_empty_one_matches_nothing() {
        assert_eq!(std::mem::size_of::<Source>(), 32);
        let ix = DedupIndex::new(4).unwrap();
        assert_eq!(ix.find(0, 0), None);
    }

    #[test]
    fn an_empty_index_finds_nothing() {
        let mut ix = DedupIndex::new(0).unwrap();
        ix.record(7, key(1, 3));
        assert_eq!(ix.find(7, 1), None);
        assert!(!ix.is_on());
    }
}
