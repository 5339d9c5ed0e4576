//! What a handle did: pages and bytes per method, and time spent.

#![forbid(unsafe_code)]

use crate::method::METHOD_SLOTS;

/// Running totals of one encoder or decoder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames encoded or decoded.
    pub frames: u64,
    /// Pages encoded or decoded.
    pub pages: u64,
    /// Uncompressed page bytes.
    pub bytes_in: u64,
    /// Frame bytes, headers and tables included.
    pub bytes_out: u64,
    /// Wall time inside encode or decode calls, in nanoseconds.
    pub ns: u64,
    /// Pages per method counter slot (see [`crate::Method::counter_slot`]).
    pub method_pages: [u64; METHOD_SLOTS],
    /// Payload bytes per method counter slot.
    pub method_bytes: [u64; METHOD_SLOTS],
}

impl Counters {
    /// Counts one frame of `pages` pages of `page_size` bytes that was
    /// `frame_len` bytes on the wire and took `ns`.
    pub(crate) fn count_frame(
        &mut self,
        pages: usize,
        page_size: usize,
        frame_len: usize,
        ns: u64,
    ) {
        self.frames += 1;
        self.pages += pages as u64;
        self.bytes_in += (pages * page_size) as u64;
        self.bytes_out += frame_len as u64;
        self.ns += ns;
    }

    /// Adds another handle's totals to these.
    pub fn add(&mut self, other: &Counters) {
        self.frames += other.frames;
        self.pages += other.pages;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.ns += other.ns;
        for i in 0..METHOD_SLOTS {
            self.method_pages[i] += other.method_pages[i];
            self.method_bytes[i] += other.method_bytes[i];
        }
    }
}
