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

#![forbid(unsafe_code)]

use crate::cache::PageKey;
use crate::error::{Error, Result};

/// Most entries of one channel's index (32 bytes each: 8 MiB).
const MAX_ENTRIES: usize = 1 << 18;

#[derive(Debug, Clone, Copy, Default)]
struct Source {
    /// xxh3-64 of the page's bytes as sent.
    hash: u64,
    key: Option<PageKey>,
    /// The sync epoch the page was sent in.
    epoch: u64,
}

/// Hash -> page sent since the channel's last sync point.
#[derive(Debug, Default)]
pub(crate) struct DedupIndex {
    slots: Vec<Source>,
    /// Bumped at every sync point: entries of older epochs are dead.
    epoch: u64,
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
        slots.resize(n, Source::default());
        Ok(DedupIndex { slots, epoch: 1 })
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
        match s.key {
            Some(key) if s.epoch == self.epoch && s.hash == hash && key.block == block => Some(key),
            _ => None,
        }
    }

    /// Records that `key` was just sent with bytes hashing to `hash`.
    pub(crate) fn record(&mut self, hash: u64, key: PageKey) {
        if !self.is_on() {
            return;
        }
        let i = self.slot(hash);
        self.slots[i] = Source {
            hash,
            key: Some(key),
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
    fn an_empty_index_finds_nothing() {
        let mut ix = DedupIndex::new(0).unwrap();
        ix.record(7, key(1, 3));
        assert_eq!(ix.find(7, 1), None);
        assert!(!ix.is_on());
    }
}
