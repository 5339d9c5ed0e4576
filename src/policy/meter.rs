//! What one batch cost, per page class and codec.
//!
//! The encoder fills a [`Meter`] while it writes a frame; the controller
//! reads it afterwards ([`super::Policy::observe`]).  The meter is a plain
//! value with no reference to the controller, so the encoder depends on the
//! controller's types, never on its state, and the controller never sees
//! the encoder.
//!
//! Time is read only where the (class, codec) key changes between
//! consecutive pages and once per zstd group, and only on timed batches
//! ([`super::Plan::timed`]): never per page on average.

#![forbid(unsafe_code)]

use super::cost::Codec;
use super::Plan;
use crate::classify::PageClass;
use crate::format::ENTRY_LEN;

/// Pages, output bytes (payload and table entry) and nanoseconds of one
/// (class, codec) pair in one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Pages.
    pub pages: u64,
    /// Output bytes, table entries included.
    pub bytes: u64,
    /// Nanoseconds (only on timed batches).
    pub ns: u64,
}

/// A (class, codec) pair: what a page's cost is booked to.
pub type Key = (PageClass, Codec);

/// The measurements of one batch.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    /// Whether this batch's costs are timed.
    timed: bool,
    /// Whether the batch classified its pages (an all-raw batch does not).
    classified: bool,
    /// Pages per class.
    mix: [u64; PageClass::COUNT],
    tallies: [[Tally; Codec::COUNT]; PageClass::COUNT],
    /// The key of the current run of pages and when it started.
    run: Option<(Key, u64)>,
}

impl Meter {
    /// Starts measuring a batch under `plan`.
    pub(crate) fn start(&mut self, plan: &Plan, classified: bool) {
        *self = Meter {
            timed: plan.timed && classified,
            classified,
            ..Meter::default()
        };
    }

    /// Whether this batch is timed: the caller reads its clock only then.
    pub(crate) fn timed(&self) -> bool {
        self.timed
    }

    /// Counts a page of `class`; returns how many came before it in the
    /// batch (what [`Plan::codec`] needs for exploration).
    pub(crate) fn classify(&mut self, class: PageClass) -> u32 {
        let seen = &mut self.mix[class.index()];
        *seen += 1;
        u32::try_from(*seen - 1).unwrap_or(u32::MAX)
    }

    /// Whether a page of `key` starts a new run (the caller then reads its
    /// clock and calls [`Meter::switch`]).
    pub(crate) fn starts_run(&self, key: Key) -> bool {
        self.timed && self.run.is_none_or(|(k, _)| k != key)
    }

    /// Closes the current run at `now` and starts one of `key`.
    pub(crate) fn switch(&mut self, key: Key, now: u64) {
        self.end_run(now);
        self.run = Some((key, now));
    }

    /// Closes the current run at `now`.
    pub(crate) fn end_run(&mut self, now: u64) {
        if let Some((k, since)) = self.run.take() {
            self.tally(k).ns += now.saturating_sub(since);
        }
    }

    /// Books one page of `key` that became `payload` bytes.
    pub(crate) fn page(&mut self, key: Key, payload: usize) {
        let t = self.tally(key);
        t.pages += 1;
        t.bytes += (payload + ENTRY_LEN) as u64;
    }

    /// Books a zstd group of `pages` pages of `class` that took `ns`
    /// (timed batches) and, when it was kept, became `kept` bytes.  A
    /// group holds one class's pages, so this is exact.
    pub(crate) fn group(&mut self, class: PageClass, pages: u64, ns: u64, kept: Option<usize>) {
        if pages == 0 || !self.timed {
            return;
        }
        let t = self.tally((class, Codec::Zstd));
        t.ns += ns;
        if let Some(len) = kept {
            t.pages += pages;
            t.bytes += len as u64 + pages * ENTRY_LEN as u64;
        }
    }

    /// Pages per class, if the batch classified its pages.
    pub fn mix(&self) -> Option<&[u64; PageClass::COUNT]> {
        self.classified.then_some(&self.mix)
    }

    /// The measurement of `codec` on `class`, if the batch was timed.
    pub fn get(&self, class: PageClass, codec: Codec) -> Option<Tally> {
        self.timed
            .then(|| self.tallies[class.index()][codec.index()])
    }

    fn tally(&mut self, (class, codec): Key) -> &mut Tally {
        &mut self.tallies[class.index()][codec.index()]
    }
}
