//! The C ABI: the only module that turns C pointers into Rust values.
//!
//! Conventions (modelled on rustls-ffi):
//! - opaque handles made by `_new` and released by `_free` (NULL is fine);
//! - every fallible call returns [`mecom_status`], 0 on success, and writes
//!   its outputs only on success;
//! - a buffer pointer is always followed by its length; outputs come last;
//! - no panic crosses the boundary: each call runs under `catch_unwind`, a
//!   panic returns [`mecom_status::Panic`] and poisons the handle, which then
//!   answers [`mecom_status::Poisoned`];
//! - a handle belongs to one thread at a time (one per multifd channel).
//!
//! Guest memory is never turned into a Rust slice: the encoder copies each
//! page with one `memcpy` into its own buffer (the guest may be writing it
//! concurrently, as QEMU's multifd-zlib also assumes), and the decoder writes
//! each verified page with one `memcpy` into the destination.

#![allow(non_camel_case_types)]

mod status;

pub use status::mecom_status;

use crate::cache::{CacheCounters, PageCache};
use crate::codec::DecodeResult;
use crate::config::{Config, LzCodec, Mode};
use crate::counters::Counters;
use crate::decoder::{self, Decoder, PageSink, Part};
use crate::encoder::{Encoder, PageSource};
use crate::error::Error;
use crate::format::{self, Placement};
use crate::method::{self, METHOD_SLOTS};
use crate::policy::{LinkStats, TransportStats};
use std::ffi::{c_char, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;

/// Slots in the per-method counter arrays.
pub const MECOM_METHOD_SLOTS: usize = 16;
// The C constant is spelled out for cbindgen; it must equal the crate's.
const _: () = assert!(MECOM_METHOD_SLOTS == METHOD_SLOTS);

/// Configuration of an encoder or decoder.  Fill it with mecom_config_init()
/// and then change what you need.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct mecom_config {
    /// Page size in bytes: a power of two from 4096 to 65536 (default 4096).
    pub page_size: u32,
    /// Most pages in one frame, 1..1024 (default 128).
    pub max_pages: u32,
    /// A `mecom_mode` value (default MECOM_MODE_ADAPTIVE).
    pub mode: u32,
    /// Percentage of zero bytes at or above which sparse coding is tried,
    /// 0..100 (default 75).
    pub sparse_threshold: u32,
    /// Percentage of similar 32-bit words at or above which a page is in
    /// the similar class (WKdm's), 0..100 (default 75).
    pub similarity_threshold: u32,
    /// zstd level of the high-ratio tier, 0 (off) ..19 (default 1).
    pub zstd_level: u32,
    /// Most pages per zstd group, 0 = no limit (default 0); a group holds
    /// one class's zstd pages of a frame.
    pub zstd_group_pages: u32,
    /// A `mecom_lz_codec` value (default MECOM_LZ_CODEC_LZ4).
    pub lz_codec: u32,
}

/// Migration statistics for the adaptive policy; 0 means unknown.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct mecom_link_stats {
    /// Monotonic timestamp in nanoseconds.
    pub timestamp_ns: u64,
    /// Guest pages dirtied per second.
    pub dirty_pages_rate: u64,
    /// Link bandwidth in bytes per second (0 = unknown or unlimited).
    pub bandwidth: u64,
    /// Dirty bitmap syncs so far.
    pub dirty_sync_count: u64,
    /// Dirty bytes still to send.
    pub remaining_bytes: u64,
    /// Bytes sent on all multifd channels so far.
    pub wire_bytes: u64,
    /// Number of multifd channels.
    pub channels: u32,
    /// Downtime limit in milliseconds.
    pub downtime_limit_ms: u32,
}

/// Cumulative statistics of one channel's connection (see
/// mecom_encoder_update_transport()); counters only grow while the
/// connection lives.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct mecom_transport_stats {
    /// Monotonic timestamp of the sample, nanoseconds.
    pub timestamp_ns: u64,
    /// Microseconds the connection had data queued or in flight.
    pub busy_us: u64,
    /// Of those, microseconds stalled by the receiver's window.
    pub receiver_limited_us: u64,
    /// Of those, microseconds stalled by the send buffer.
    pub sndbuf_limited_us: u64,
    /// The latest delivery rate estimate, bytes per second.
    pub delivery_rate: u64,
    /// 1 when that estimate was taken while the sender had too little to
    /// send to fill the link, else 0.
    pub delivery_rate_app_limited: u32,
    /// Bytes the peer acknowledged.
    pub bytes_acked: u64,
}

/// Running totals of one handle.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct mecom_counters {
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
    /// Pages per method, indexed by `mecom_method`.
    pub method_pages: [u64; MECOM_METHOD_SLOTS],
    /// Payload bytes per method, indexed by `mecom_method`.
    pub method_bytes: [u64; MECOM_METHOD_SLOTS],
}

/// Running totals of a page cache (all channels together); see
/// mecom_cache_counters().
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct mecom_cache_stats {
    /// Size of the cache in bytes.
    pub size: u64,
    /// Lookups that found the page's previous version.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Pages inserted.
    pub inserts: u64,
    /// Inserts that replaced another page sent in an earlier round.
    pub evictions: u64,
    /// Inserts left out because both slots of the page's set held pages
    /// sent this round, or hot pages (sent in consecutive rounds) sent the
    /// round before.
    pub overflows: u64,
    /// Entries dropped because the page was sent without the cache (an
    /// all-zero page, or a raw batch on a fast link).
    pub invalidations: u64,
    /// Inserts of a page also sent in the round before (hot pages).
    pub hot: u64,
}

impl From<CacheCounters> for mecom_cache_stats {
    fn from(c: CacheCounters) -> Self {
        mecom_cache_stats {
            size: c.size,
            hits: c.hits,
            misses: c.misses,
            inserts: c.inserts,
            evictions: c.evictions,
            overflows: c.overflows,
            invalidations: c.invalidations,
            hot: c.hot,
        }
    }
}

/// One piece of a frame to read, laid out like POSIX `struct iovec`, so
/// an array of them can be handed to readv() (see
/// mecom_decoder_begin_parts()).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct mecom_iovec {
    /// Where the bytes go.
    pub iov_base: *mut c_void,
    /// How many bytes.
    pub iov_len: usize,
}

/// The packet header a frame is bound to (see mecom_encoder_encode()):
/// the memory block's name and the offsets of the packet's all-zero pages;
/// the offsets of the frame's own pages are the call's `offsets`.  All of
/// it goes into the frame's checksum, so a corrupted block name, page
/// offset or zero-page list fails the frame.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct mecom_placement {
    /// The block's name (QEMU: the RAMBlock's idstr), `block_len` bytes,
    /// no NUL needed.  May be NULL when `block_len` is 0.
    pub block: *const u8,
    /// Bytes of `block`.
    pub block_len: usize,
    /// Offsets of the packet's all-zero pages in the block.  May be NULL
    /// when `n_zero` is 0.
    pub zero_offsets: *const u64,
    /// Number of `zero_offsets`.
    pub n_zero: u32,
}

/// Reads a placement pointer (NULL: none) into a [`Placement`] over
/// `offsets`.
///
/// # Safety
/// `p` is NULL or points to a readable `mecom_placement` whose `block`
/// points to `block_len` readable bytes and `zero_offsets` to `n_zero`
/// readable values, all unchanged during the call that holds the result.
unsafe fn read_placement<'a>(
    p: *const mecom_placement,
    offsets: &'a [u64],
) -> Result<Option<Placement<'a>>, mecom_status> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and readable by contract; pointers and integers.
    let p = unsafe { p.read() };
    if (p.block.is_null() && p.block_len > 0) || (p.zero_offsets.is_null() && p.n_zero > 0) {
        return Err(mecom_status::NullParameter);
    }
    let block: &[u8] = if p.block_len == 0 {
        &[]
    } else {
        // SAFETY: `block_len` readable bytes by contract, not guest memory.
        unsafe { std::slice::from_raw_parts(p.block, p.block_len) }
    };
    let zero_offsets: &[u64] = if p.n_zero == 0 {
        &[]
    } else {
        // SAFETY: `n_zero` readable values by contract, not guest memory.
        unsafe { std::slice::from_raw_parts(p.zero_offsets, p.n_zero as usize) }
    };
    Ok(Some(Placement {
        block,
        offsets,
        zero_offsets,
    }))
}

impl From<&Counters> for mecom_counters {
    fn from(c: &Counters) -> Self {
        mecom_counters {
            frames: c.frames,
            pages: c.pages,
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
            ns: c.ns,
            method_pages: c.method_pages,
            method_bytes: c.method_bytes,
        }
    }
}

impl From<&Config> for mecom_config {
    fn from(c: &Config) -> Self {
        mecom_config {
            page_size: c.page_size,
            max_pages: c.max_pages as u32,
            mode: c.mode as u32,
            sparse_threshold: u32::from(c.sparse_threshold),
            similarity_threshold: u32::from(c.similarity_threshold),
            zstd_level: u32::from(c.zstd_level),
            zstd_group_pages: c.zstd_group_pages as u32,
            lz_codec: c.lz as u32,
        }
    }
}

impl TryFrom<&mecom_config> for Config {
    type Error = Error;
    fn try_from(c: &mecom_config) -> Result<Config, Error> {
        let percent = |v: u32, reason| u8::try_from(v).map_err(|_| Error::InvalidConfig { reason });
        let config = Config {
            page_size: c.page_size,
            max_pages: c.max_pages as usize,
            mode: Mode::from_value(c.mode).ok_or(Error::InvalidConfig {
                reason: "mode must be a mecom_mode value (0..=3)",
            })?,
            sparse_threshold: percent(c.sparse_threshold, "sparse_threshold must be 0..=100")?,
            similarity_threshold: percent(
                c.similarity_threshold,
                "similarity_threshold must be 0..=100",
            )?,
            zstd_level: percent(c.zstd_level, "zstd_level must be 0..=19")?,
            zstd_group_pages: c.zstd_group_pages as usize,
            lz: LzCodec::from_value(c.lz_codec).ok_or(Error::InvalidConfig {
                reason: "lz_codec must be MECOM_LZ_CODEC_LZ4 or MECOM_LZ_CODEC_LZO",
            })?,
        };
        config.validate()?;
        Ok(config)
    }
}

/// The state behind a handle: the engine, the poison flag and the text of
/// the last error (kept so C gets a pointer that stays valid).
struct Handle<T> {
    engine: T,
    poisoned: bool,
    last_error: CString,
}

impl<T> Handle<T> {
    fn new(engine: T) -> Self {
        Handle {
            engine,
            poisoned: false,
            last_error: CString::default(),
        }
    }

    /// Runs `body` on the engine under the panic boundary, recording the
    /// error text on failure.
    fn call(&mut self, body: impl FnOnce(&mut T) -> Result<(), Error>) -> mecom_status {
        if self.poisoned {
            return mecom_status::Poisoned;
        }
        match catch_unwind(AssertUnwindSafe(|| body(&mut self.engine))) {
            Ok(Ok(())) => {
                self.last_error = CString::default();
                mecom_status::Ok
            }
            Ok(Err(e)) => {
                self.set_error(&e.to_string());
                mecom_status::from(&e)
            }
            Err(_) => {
                self.poisoned = true;
                self.set_error("internal panic; this handle is poisoned");
                mecom_status::Panic
            }
        }
    }

    fn set_error(&mut self, text: &str) {
        // Display output never contains NUL; fall back to empty if it did.
        self.last_error = CString::new(text).unwrap_or_default();
    }
}

/// An encoder for one multifd channel.  Opaque.
pub struct mecom_encoder(Handle<Encoder>);

/// A decoder for one multifd channel.  Opaque.
pub struct mecom_decoder(Handle<Decoder>);

/// The source's page cache of one migration, shared by every channel's
/// encoder (see mecom_cache_new()).  Opaque; safe to use from several
/// threads at once.
pub struct mecom_cache(Arc<PageCache>);

/// Runs a handle-less call under the panic boundary.
fn boundary(body: impl FnOnce() -> mecom_status) -> mecom_status {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(mecom_status::Panic)
}

/// Guest pages at `host + offsets[i]`, read with one copy each.
struct GuestPages<'a> {
    host: *const u8,
    offsets: &'a [u64],
}

impl PageSource for GuestPages<'_> {
    fn len(&self) -> usize {
        self.offsets.len()
    }

    fn copy_page(&self, index: usize, dst: &mut [u8]) {
        let offset = self.offsets[index] as usize;
        // SAFETY: the caller of mecom_encoder_encode() guarantees that
        // `host + offsets[i]` points to `page_size` readable bytes for every
        // i (QEMU: `block->host + offset[i]` inside the RAMBlock), and
        // `dst` is one page of the encoder's own buffer, so the two do not
        // overlap.  The guest may write the source concurrently; the copy is
        // the only read of guest memory and its result is treated as opaque
        // bytes (docs/UNSAFE.md).
        unsafe {
            ptr::copy_nonoverlapping(self.host.wrapping_add(offset), dst.as_mut_ptr(), dst.len())
        };
    }
}

/// Fills `cfg` with the defaults.  Does nothing when `cfg` is NULL.
///
/// # Safety
/// `cfg` is NULL or points to a writable `mecom_config`.
#[no_mangle]
pub unsafe extern "C" fn mecom_config_init(cfg: *mut mecom_config) {
    if !cfg.is_null() {
        // SAFETY: non-NULL and writable by the caller's contract.
        unsafe { cfg.write(mecom_config::from(&Config::default())) };
    }
}

/// The largest frame `n_pages` pages of `page_size` bytes can produce; 0 when
/// either is unsupported.  An output buffer of this size always suffices.
#[no_mangle]
pub extern "C" fn mecom_max_frame_len(n_pages: u32, page_size: u32) -> usize {
    format::max_frame_len(n_pages as usize, page_size).unwrap_or(0)
}

/// Bytes of the fixed frame header, the prefix mecom_frame_len() reads.
pub const MECOM_FRAME_HEADER_LEN: usize = 32;
const _: () = assert!(MECOM_FRAME_HEADER_LEN == format::HEADER_LEN);

/// Bytes of the head (header and page table) of a frame of `n_pages`
/// pages: what a receiver reads before it asks mecom_decoder_begin_parts()
/// where the rest goes.  A frame of 0 pages is its header alone: the frame
/// of a packet whose pages are all zero, bound to its placement.  0 when
/// `n_pages` is over 1024.
#[no_mangle]
pub extern "C" fn mecom_frame_head_len(n_pages: u32) -> usize {
    match n_pages as usize {
        n @ 0..=format::MAX_PAGES => format::head_len(n),
        _ => 0,
    }
}

/// The most iovecs mecom_decoder_begin_parts() writes for a frame of
/// `n_pages` pages (buffered payloads and raw pages alternate at worst).
/// 0 when `n_pages` is 0 or over 1024.
#[no_mangle]
pub extern "C" fn mecom_frame_max_iov(n_pages: u32) -> usize {
    match n_pages as usize {
        n @ 1..=format::MAX_PAGES => decoder::max_parts(n),
        _ => 0,
    }
}

/// Reads the total length a frame declares (header, page table and payload)
/// from its first `header_len` bytes, of which MECOM_FRAME_HEADER_LEN are
/// needed, into `*out_len`.
///
/// A receiver reading frames from a stream calls it after the header and
/// compares the result with the length it was told, so that a corrupted
/// length fails at once instead of a read waiting for bytes of the next
/// packet.  The header is checked as mecom_decoder_decode() checks it.
///
/// # Safety
/// `header` points to `header_len` readable bytes; `out_len` is writable.
#[no_mangle]
pub unsafe extern "C" fn mecom_frame_len(
    header: *const u8,
    header_len: usize,
    out_len: *mut usize,
) -> mecom_status {
    if header.is_null() || out_len.is_null() {
        return mecom_status::NullParameter;
    }
    // SAFETY: `header` is `header_len` readable bytes by contract.
    let header = unsafe { std::slice::from_raw_parts(header, header_len) };
    boundary(|| match format::frame_len(header) {
        Ok(len) => {
            // SAFETY: non-NULL and writable by contract.
            unsafe { out_len.write(len) };
            mecom_status::Ok
        }
        Err(e) => mecom_status::from(&e),
    })
}

/// A static, NUL-terminated description of `status` (never NULL).
#[no_mangle]
pub extern "C" fn mecom_status_str(status: u32) -> *const c_char {
    status::describe(status).as_ptr()
}

/// The name of a counter slot, an index into `method_pages` and
/// `method_bytes` ("raw", "zero", "fill", "sparse", "wkdm", "lzo", "lz4",
/// "zstd", "delta-sparse", "delta-lz4"), or "unknown" (zstd members are
/// counted under MECOM_METHOD_ZSTD).  Never NULL.
#[no_mangle]
pub extern "C" fn mecom_method_name(method: u32) -> *const c_char {
    method::slot_c_name(method as usize).as_ptr()
}

/// The counter slot (index into `method_pages` and `method_bytes`) that
/// pages of `method` (a `mecom_method` value) are counted under, or
/// MECOM_METHOD_SLOTS for a value that is no method.  The stateless
/// methods count under their own value; the delta methods, whose values
/// are 0x40 and up, under the slots after them.
#[no_mangle]
pub extern "C" fn mecom_method_slot(method: u32) -> u32 {
    u8::try_from(method)
        .ok()
        .and_then(|tag| method::Method::from_tag(tag).ok())
        .map_or(MECOM_METHOD_SLOTS as u32, |m| m.counter_slot() as u32)
}

/// The library version, e.g. "0.1.0".  Never NULL.
#[no_mangle]
pub extern "C" fn mecom_version() -> *const c_char {
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

/// Reads a config pointer into a validated [`Config`].
///
/// # Safety
/// `cfg` is NULL or points to a readable `mecom_config`.
unsafe fn read_config(cfg: *const mecom_config) -> Result<Config, mecom_status> {
    if cfg.is_null() {
        return Err(mecom_status::NullParameter);
    }
    // SAFETY: non-NULL and readable by the caller's contract; the struct is
    // plain integers, so any bit pattern is a valid value.
    let raw = unsafe { cfg.read() };
    Config::try_from(&raw).map_err(|e| mecom_status::from(&e))
}

/// Makes a handle from a config: the shared body of the `_new` calls.
///
/// # Safety
/// `cfg` is NULL or points to a readable `mecom_config`; `out` is NULL or
/// points to a writable pointer.
unsafe fn create<T, H>(
    cfg: *const mecom_config,
    out: *mut *mut H,
    make: fn(Config) -> Result<T, Error>,
    wrap: fn(Handle<T>) -> H,
) -> mecom_status {
    boundary(|| {
        if out.is_null() {
            return mecom_status::NullParameter;
        }
        // SAFETY: forwarded contract of this function.
        let config = match unsafe { read_config(cfg) } {
            Ok(c) => c,
            Err(s) => return s,
        };
        match make(config) {
            Ok(engine) => {
                let handle = Box::into_raw(Box::new(wrap(Handle::new(engine))));
                // SAFETY: `out` is non-NULL and writable by contract.
                unsafe { out.write(handle) };
                mecom_status::Ok
            }
            Err(e) => mecom_status::from(&e),
        }
    })
}

/// Writes `counters` to `out`: the shared body of the `_counters` calls.
///
/// # Safety
/// `out` is NULL or points to a writable `mecom_counters`.
unsafe fn write_counters(counters: &Counters, out: *mut mecom_counters) -> mecom_status {
    if out.is_null() {
        return mecom_status::NullParameter;
    }
    // SAFETY: non-NULL and writable by contract.
    unsafe { out.write(mecom_counters::from(counters)) };
    mecom_status::Ok
}

/// Creates an encoder.  On success `*out` receives the handle, to be released
/// with mecom_encoder_free().
///
/// # Safety
/// `cfg` points to a readable `mecom_config`; `out` to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn mecom_encoder_new(
    cfg: *const mecom_config,
    out: *mut *mut mecom_encoder,
) -> mecom_status {
    // SAFETY: forwarded contract of this function.
    unsafe { create(cfg, out, Encoder::new, mecom_encoder) }
}

/// Releases an encoder.  NULL is fine; must not be called twice on one handle.
///
/// # Safety
/// `enc` is NULL or a handle from mecom_encoder_new() not yet freed.
#[no_mangle]
pub unsafe extern "C" fn mecom_encoder_free(enc: *mut mecom_encoder) {
    if !enc.is_null() {
        // SAFETY: the handle came from Box::into_raw in mecom_encoder_new
        // and, by contract, is freed once.  Dropping only frees memory.
        drop(unsafe { Box::from_raw(enc) });
    }
}

/// Encodes `n_pages` pages, page i at `host + offsets[i]`, into one frame in
/// `out[0..out_cap)`; on success `*out_len` is the frame length.
/// `out_cap >= mecom_max_frame_len(n_pages, page_size)` always suffices.
/// With `placement` (NULL: none) the frame is bound to the packet header
/// that will carry it: the block name, `offsets` and the zero-page list go
/// into its checksum, and the decoder must be given the same.
///
/// # Safety
/// `enc` is a live encoder used by no other thread during the call; for every
/// i `host + offsets[i]` points to `page_size` readable bytes; `offsets` to
/// `n_pages` readable values; `placement` is NULL or valid as described at
/// `mecom_placement`; `out` to `out_cap` writable bytes; `out_len` to a
/// writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn mecom_encoder_encode(
    enc: *mut mecom_encoder,
    host: *const u8,
    offsets: *const u64,
    n_pages: u32,
    placement: *const mecom_placement,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> mecom_status {
    if enc.is_null() || host.is_null() || offsets.is_null() || out.is_null() || out_len.is_null() {
        return mecom_status::NullParameter;
    }
    // SAFETY: non-NULL, live and exclusively ours for the call by contract.
    let handle = unsafe { &mut (*enc).0 };
    // SAFETY: `offsets` holds `n_pages` readable values owned by the caller
    // (not guest memory), unchanged during the call.
    let offsets = unsafe { std::slice::from_raw_parts(offsets, n_pages as usize) };
    // SAFETY: `out` is `out_cap` writable bytes owned by the caller and not
    // aliased by the pages (QEMU's channel buffer).
    let out = unsafe { std::slice::from_raw_parts_mut(out, out_cap) };
    // SAFETY: forwarded contract of this function.
    let placement = match unsafe { read_placement(placement, offsets) } {
        Ok(p) => p,
        Err(s) => return s,
    };
    let mut written = 0;
    let status = handle.call(|e| {
        written = e.encode_from(&GuestPages { host, offsets }, placement.as_ref(), out)?;
        Ok(())
    });
    if status == mecom_status::Ok {
        // SAFETY: non-NULL and writable by contract.
        unsafe { out_len.write(written) };
    }
    status
}

/// Creates a page cache of `size` bytes for pages of `page_size` bytes:
/// the exact bytes last sent of up to `size / page_size` pages, so that a
/// page sent again goes as a delta against the version the destination
/// holds.  Make one per migration, give it to every channel's encoder
/// with mecom_encoder_set_cache(), and release it with mecom_cache_free()
/// (the encoders keep it alive as long as they use it).  The memory is
/// allocated here, zeroed.
///
/// # Safety
/// `out` points to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn mecom_cache_new(
    page_size: u32,
    size: u64,
    out: *mut *mut mecom_cache,
) -> mecom_status {
    if out.is_null() {
        return mecom_status::NullParameter;
    }
    boundary(|| match PageCache::new(page_size, size) {
        Ok(cache) => {
            let handle = Box::into_raw(Box::new(mecom_cache(Arc::new(cache))));
            // SAFETY: non-NULL and writable by contract.
            unsafe { out.write(handle) };
            mecom_status::Ok
        }
        Err(e) => mecom_status::from(&e),
    })
}

/// Releases the caller's reference to a cache.  NULL is fine; must not be
/// called twice on one handle.
///
/// # Safety
/// `cache` is NULL or a handle from mecom_cache_new() not yet freed.
#[no_mangle]
pub unsafe extern "C" fn mecom_cache_free(cache: *mut mecom_cache) {
    if !cache.is_null() {
        // SAFETY: the handle came from Box::into_raw in mecom_cache_new
        // and, by contract, is freed once.  Encoders hold their own
        // references; dropping only frees memory.
        drop(unsafe { Box::from_raw(cache) });
    }
}

/// Copies the cache's running totals into `*out`.
///
/// # Safety
/// `cache` is a live cache; `out` points to a writable
/// `mecom_cache_stats`.
#[no_mangle]
pub unsafe extern "C" fn mecom_cache_counters(
    cache: *const mecom_cache,
    out: *mut mecom_cache_stats,
) -> mecom_status {
    if cache.is_null() || out.is_null() {
        return mecom_status::NullParameter;
    }
    boundary(|| {
        // SAFETY: non-NULL and live by contract; the counters are atomics.
        let counters = unsafe { (*cache).0.counters() };
        // SAFETY: non-NULL and writable by contract.
        unsafe { out.write(counters.into()) };
        mecom_status::Ok
    })
}

/// Makes the encoder send pages that `cache` holds as deltas when that is
/// smaller (NULL: stop).  Only frames encoded with a placement use it.
/// Returns MECOM_STATUS_INVALID_ARGUMENT when the page sizes differ.
///
/// # Safety
/// `enc` is a live encoder used by no other thread during the call;
/// `cache` is NULL or a live cache.
#[no_mangle]
pub unsafe extern "C" fn mecom_encoder_set_cache(
    enc: *mut mecom_encoder,
    cache: *const mecom_cache,
) -> mecom_status {
    if enc.is_null() {
        return mecom_status::NullParameter;
    }
    // SAFETY: NULL or live by contract; the Arc is cloned, not moved.
    let shared = (!cache.is_null()).then(|| unsafe { Arc::clone(&(*cache).0) });
    // SAFETY: non-NULL, live and exclusively ours for the call by contract.
    let handle = unsafe { &mut (*enc).0 };
    handle.call(|e| e.set_cache(shared))
}

/// Turns dedup on (`on` true) or off: with a cache set, a page equal to one
/// this channel sent since its last sync point, in the same block, goes as
/// a reference to it (MECOM_METHOD_DEDUP).  The caller must then call
/// mecom_encoder_synced() at every sync point of the channel, send a page
/// at most once between two sync points (on any channel), and have the
/// destination decode each channel's frames in order; QEMU's multifd does
/// the last two.  MECOM_STATUS_INVALID_ARGUMENT when `on` and no cache is
/// set.
///
/// # Safety
/// `enc` is a live encoder used by no other thread during the call.
#[no_mangle]
pub unsafe extern "C" fn mecom_encoder_set_dedup(
    enc: *mut mecom_encoder,
    on: bool,
) -> mecom_status {
    if enc.is_null() {
        return mecom_status::NullParameter;
    }
    // SAFETY: non-NULL, live and exclusively ours for the call by contract.
    let handle = unsafe { &mut (*enc).0 };
    handle.call(|e| e.set_dedup(on))
}

/// Tells the encoder that its channel passed a sync point (QEMU: the
/// channel sent a SYNC packet): every frame encoded before it is decoded
/// before any frame after it, on every channel.  Pages sent before it stop
/// being dedup sources.
///
/// # Safety
/// `enc` is a live encoder used by no other thread during the call.
#[no_mangle]
pub unsafe extern "C" fn mecom_encoder_synced(enc: *mut mecom_encoder) -> mecom_status {
    if enc.is_null() {
        return mecom_status::NullParameter;
    }
    // SAFETY: non-NULL, live and exclusively ours for the call by contract.
    let handle = unsafe { &mut (*enc).0 };
    handle.call(|e| {
        e.synced();
        Ok(())
    })
}

/// Gives the encoder the migration's latest statistics.
///
/// # Safety
/// `enc` is a live encoder used by no other thread during the call; `stats`
/// points to a readable `mecom_link_stats`.
#[no_mangle]
pub unsafe extern "C" fn mecom_encoder_update_stats(
    enc: *mut mecom_encoder,
    stats: *const mecom_link_stats,
) -> mecom_status {
    if enc.is_null() || stats.is_null() {
        return mecom_status::NullParameter;
    }
    // SAFETY: non-NULL and readable by contract; plain integers.
    let s = unsafe { stats.read() };
    // SAFETY: non-NULL, live and exclusively ours for the call by contract.
    let handle = unsafe { &mut (*enc).0 };
    handle.call(|e| {
        e.update_stats(LinkStats {
            timestamp_ns: s.timestamp_ns,
            dirty_pages_rate: s.dirty_pages_rate,
            bandwidth: s.bandwidth,
            dirty_sync_count: s.dirty_sync_count,
            remaining_bytes: s.remaining_bytes,
            wire_bytes: s.wire_bytes,
            channels: s.channels,
            downtime_limit_ms: s.downtime_limit_ms,
        });
        Ok(())
    })
}

/// Gives the encoder a sample of its channel's connection: what limits it
/// (the network, the receiver or the sender) decides whether compressing
/// can pay.  Call it before mecom_encoder_encode(), as often as once per
/// batch.  See mecom_encoder_update_tcp_info() for Linux TCP sockets.
///
/// # Safety
/// `enc` is a live encoder used by no other thread during the call; `stats`
/// points to a readable `mecom_transport_stats`.
#[no_mangle]
pub unsafe extern "C" fn mecom_encoder_update_transport(
    enc: *mut mecom_encoder,
    stats: *const mecom_transport_stats,
) -> mecom_status {
    if enc.is_null() || stats.is_null() {
        return mecom_status::NullParameter;
    }
    // SAFETY: non-NULL and readable by contract; plain integers.
    let s = unsafe { stats.read() };
    // SAFETY: non-NULL, live and exclusively ours for the call by contract.
    let handle = unsafe { &mut (*enc).0 };
    handle.call(|e| {
        e.update_transport(TransportStats {
            timestamp_ns: s.timestamp_ns,
            busy_us: s.busy_us,
            receiver_limited_us: s.receiver_limited_us,
            sndbuf_limited_us: s.sndbuf_limited_us,
            delivery_rate: s.delivery_rate,
            delivery_rate_app_limited: s.delivery_rate_app_limited != 0,
            bytes_acked: s.bytes_acked,
        });
        Ok(())
    })
}

/// Like mecom_encoder_update_transport(), from the bytes of a Linux
/// `struct tcp_info` as `getsockopt(fd, IPPROTO_TCP, TCP_INFO, info,
/// &info_len)` returned them, sampled at `timestamp_ns` (monotonic).  The
/// library reads the fields it needs at their UAPI offsets, so the caller
/// needs no `<linux/tcp.h>` (whose `struct tcp_info` clashes with glibc's).
/// Returns MECOM_STATUS_INVALID_ARGUMENT, and changes nothing, when
/// `info_len` is under 192 bytes (kernels before 4.10).
///
/// # Safety
/// `enc` is a live encoder used by no other thread during the call; `info`
/// points to `info_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn mecom_encoder_update_tcp_info(
    enc: *mut mecom_encoder,
    timestamp_ns: u64,
    info: *const u8,
    info_len: usize,
) -> mecom_status {
    if enc.is_null() || info.is_null() {
        return mecom_status::NullParameter;
    }
    // SAFETY: `info` holds `info_len` readable bytes owned by the caller
    // (a local buffer getsockopt() filled), unchanged during the call.
    let info = unsafe { std::slice::from_raw_parts(info, info_len) };
    // SAFETY: non-NULL, live and exclusively ours for the call by contract.
    let handle = unsafe { &mut (*enc).0 };
    handle.call(|e| {
        let stats = TransportStats::from_linux_tcp_info(info, timestamp_ns).ok_or(
            Error::InvalidArgument {
                reason: "tcp_info is shorter than Linux 4.10's 192 bytes",
            },
        )?;
        e.update_transport(stats);
        Ok(())
    })
}

/// Copies the encoder's running totals into `*out`.
///
/// # Safety
/// `enc` is a live encoder not being mutated during the call; `out` points to
/// a writable `mecom_counters`.
#[no_mangle]
pub unsafe extern "C" fn mecom_encoder_counters(
    enc: *const mecom_encoder,
    out: *mut mecom_counters,
) -> mecom_status {
    if enc.is_null() {
        return mecom_status::NullParameter;
    }
    // SAFETY: non-NULL and live by contract, only read; `out` per contract.
    unsafe { write_counters((*enc).0.engine.counters(), out) }
}

/// Text of the encoder's last failure, "" if the last call succeeded.  Valid
/// until the next call on `enc`.  Never NULL (a NULL handle gives "").
///
/// # Safety
/// `enc` is NULL or a live encoder.
#[no_mangle]
pub unsafe extern "C" fn mecom_encoder_last_error(enc: *const mecom_encoder) -> *const c_char {
    if enc.is_null() {
        return c"".as_ptr();
    }
    // SAFETY: non-NULL and live by contract; only read.
    unsafe { (*enc).0.last_error.as_ptr() }
}

/// Creates a decoder; `page_size` and `max_pages` of `cfg` bound what it
/// accepts.  On success `*out` receives the handle, to be released with
/// mecom_decoder_free().
///
/// # Safety
/// `cfg` points to a readable `mecom_config`; `out` to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn mecom_decoder_new(
    cfg: *const mecom_config,
    out: *mut *mut mecom_decoder,
) -> mecom_status {
    // SAFETY: forwarded contract of this function.
    unsafe { create(cfg, out, Decoder::new, mecom_decoder) }
}

/// Releases a decoder.  NULL is fine; must not be called twice on one handle.
///
/// # Safety
/// `dec` is NULL or a handle from mecom_decoder_new() not yet freed.
#[no_mangle]
pub unsafe extern "C" fn mecom_decoder_free(dec: *mut mecom_decoder) {
    if !dec.is_null() {
        // SAFETY: the handle came from Box::into_raw in mecom_decoder_new
        // and, by contract, is freed once.
        drop(unsafe { Box::from_raw(dec) });
    }
}

/// Decodes one frame of exactly `frame_len` bytes into `n_pages` pages, page
/// i at `host + offsets[i]`, inside the block of `host_len` bytes at `host`
/// (a page offset past it is MECOM_STATUS_INVALID_ARGUMENT; a dedup page
/// copies its source from the block).  `n_pages` must equal the frame's page count,
/// and frames of one channel must be decoded in the order they were encoded.
/// Everything in the frame is checked; destination pages are written only
/// after the whole frame decoded and its checksum matched, so on any error
/// no page is touched.  With `placement` (the packet header that carried
/// the frame), the frame must be bound to the same one
/// (MECOM_STATUS_UNBOUND otherwise), and a placement that differs from
/// the encoder's fails the checksum; a bound frame decoded without one is
/// MECOM_STATUS_INVALID_ARGUMENT.
///
/// # Safety
/// `dec` is a live decoder used by no other thread during the call; `frame`
/// points to `frame_len` readable bytes; `offsets` to `n_pages` readable
/// values; `placement` is NULL or valid as described at
/// `mecom_placement`; `host` points to `host_len` readable and writable
/// bytes that do not overlap `frame`.
#[no_mangle]
pub unsafe extern "C" fn mecom_decoder_decode(
    dec: *mut mecom_decoder,
    frame: *const u8,
    frame_len: usize,
    host: *mut u8,
    host_len: usize,
    offsets: *const u64,
    n_pages: u32,
    placement: *const mecom_placement,
) -> mecom_status {
    // SAFETY: forwarded contract of this function.
    unsafe {
        decode_guest(
            dec,
            frame,
            frame_len,
            Block {
                host,
                len: host_len,
            },
            offsets,
            n_pages,
            DecodeCall::Whole(placement),
        )
    }
}

/// Which decode call [`decode_guest`] serves.
enum DecodeCall {
    /// mecom_decoder_decode(), with its placement pointer.
    Whole(*const mecom_placement),
    /// mecom_decoder_finish_parts(), whose placement begin_parts took.
    FinishParts,
}

/// A memory block of the destination: `len` bytes at `host` (QEMU: a
/// RAMBlock's host memory and used length).
#[derive(Clone, Copy)]
struct Block {
    host: *mut u8,
    len: usize,
}

impl Block {
    /// Whether a whole page of `page_size` bytes at `offset` lies inside.
    fn holds(self, offset: u64, page_size: usize) -> bool {
        usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(page_size))
            .is_some_and(|end| end <= self.len)
    }
}

/// Guest pages at `host + offsets[i]` of one block, written and read with
/// one copy each, never through a slice over guest memory.  Every offset
/// leaves a whole page inside the block (checked when the sink is made).
struct GuestPagesMut<'a> {
    block: Block,
    offsets: &'a [u64],
}

impl PageSink for GuestPagesMut<'_> {
    fn len(&self) -> usize {
        self.offsets.len()
    }

    fn put_page(&mut self, index: usize, page: &[u8]) {
        let offset = self.offsets[index] as usize;
        // SAFETY: the block is `len` writable bytes at `host` not
        // overlapping the frame (contract of the mecom_decoder_* call that
        // made this sink), and `offsets[i] + page_size <= len` was checked
        // then; `page` is one page of the decoder's own scratch buffer.
        // Raw copies (no `&mut` slices) keep even a repeated offset free
        // of aliasing.
        unsafe {
            ptr::copy_nonoverlapping(
                page.as_ptr(),
                self.block.host.wrapping_add(offset),
                page.len(),
            )
        };
    }

    fn get_page(&self, index: usize, dst: &mut [u8]) {
        let offset = self.offsets[index] as usize;
        // SAFETY: as in put_page, `host + offsets[i]` is `page_size`
        // readable bytes inside the block, not overlapping `dst`, one page
        // of the decoder's own scratch buffer.  The destination guest does
        // not run during the load.
        unsafe {
            ptr::copy_nonoverlapping(
                self.block.host.wrapping_add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            )
        };
    }

    fn get_block_page(&self, offset: u64, dst: &mut [u8]) -> DecodeResult {
        decoder::dedup_source(offset, self.offsets, dst.len())?;
        if !self.block.holds(offset, dst.len()) {
            return Err("dedup source outside the block");
        }
        // SAFETY: the page at `offset` lies inside the block's `len`
        // readable bytes (checked just above), and `dst` is one page of
        // the decoder's own scratch buffer, not guest memory.
        unsafe {
            ptr::copy_nonoverlapping(
                self.block.host.wrapping_add(offset as usize),
                dst.as_mut_ptr(),
                dst.len(),
            )
        };
        Ok(())
    }
}

/// The shared body of mecom_decoder_decode() and
/// mecom_decoder_finish_parts().
///
/// # Safety
/// The contract of mecom_decoder_decode().
unsafe fn decode_guest(
    dec: *mut mecom_decoder,
    frame: *const u8,
    frame_len: usize,
    block: Block,
    offsets: *const u64,
    n_pages: u32,
    call: DecodeCall,
) -> mecom_status {
    if dec.is_null() || frame.is_null() || block.host.is_null() || offsets.is_null() {
        return mecom_status::NullParameter;
    }
    // SAFETY: non-NULL, live and exclusively ours for the call by contract.
    let handle = unsafe { &mut (*dec).0 };
    // SAFETY: `frame` is `frame_len` readable bytes (QEMU's receive buffer)
    // that nobody writes during the call.
    let frame = unsafe { std::slice::from_raw_parts(frame, frame_len) };
    // SAFETY: `offsets` holds `n_pages` readable values owned by the caller.
    let offsets = unsafe { std::slice::from_raw_parts(offsets, n_pages as usize) };
    let placement = match call {
        // SAFETY: forwarded contract of this function.
        DecodeCall::Whole(p) => match unsafe { read_placement(p, offsets) } {
            Ok(p) => p,
            Err(s) => return s,
        },
        DecodeCall::FinishParts => None,
    };
    let mut sink = GuestPagesMut { block, offsets };
    handle.call(|d| {
        pages_in_block(block, offsets, d.config().page_size as usize)?;
        match call {
            DecodeCall::Whole(_) => d.decode_to(frame, &mut sink, placement.as_ref()),
            DecodeCall::FinishParts => d.finish_parts_to(frame, &mut sink),
        }
        .map(|_| ())
    })
}

/// Refuses page offsets that leave no whole page inside `block`.
fn pages_in_block(block: Block, offsets: &[u64], page_size: usize) -> crate::Result<()> {
    if offsets.iter().all(|&o| block.holds(o, page_size)) {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            reason: "a page offset lies outside the block (host_len)",
        })
    }
}

/// Writes one iovec per part: buffered runs at `buf + offset`, raw pages
/// at `host + offsets[i]`.  Addresses only, computed with `wrapping_add`:
/// nothing is read or written through them here.  `iov` holds at least
/// `parts.len()` entries, and every page index is below `offsets.len()`
/// (the decoder checked the frame's page count against it).
fn fill_iovecs(
    iov: &mut [mecom_iovec],
    parts: &[Part],
    buf: *mut u8,
    host: *mut u8,
    offsets: &[u64],
    page_size: usize,
) {
    for (slot, part) in iov.iter_mut().zip(parts) {
        *slot = match *part {
            Part::Buffer { offset, len } => mecom_iovec {
                iov_base: buf.wrapping_add(offset).cast(),
                iov_len: len,
            },
            Part::Page { index } => mecom_iovec {
                iov_base: host.wrapping_add(offsets[index] as usize).cast(),
                iov_len: page_size,
            },
        };
    }
}

/// Starts reading a frame in parts, for a transport that reads raw pages
/// straight into guest memory (where mecom_decoder_finish_parts() verifies
/// them).  `buf[0..head_len)` holds the frame's head, its first
/// mecom_frame_head_len(n_pages) bytes (`head_len` may be more), which is
/// checked as mecom_decoder_decode() checks it.  On success `iov[0..*niov)`
/// tells where the rest of the frame goes, in wire order: a raw page
/// straight into `host + offsets[i]` (one page, inside the block of
/// `host_len` bytes at `host`, as for mecom_decoder_decode()), the other payloads into
/// `buf` right after the head, consecutive ones in one iovec; read them
/// with one readv().  `*buffered_len` receives the bytes of `buf` then in
/// use: pass it to mecom_decoder_finish_parts().  `placement` is as for
/// mecom_decoder_decode(); finish_parts checks the frame against it.
/// `iov_cap >=
/// mecom_frame_max_iov(n_pages)` always suffices; `buf_len` must hold the
/// buffered part (mecom_max_frame_len() always does), else
/// MECOM_STATUS_BUFFER_TOO_SMALL.  No byte is read from or written to
/// `host` here.
///
/// # Safety
/// `dec` is a live decoder used by no other thread during the call; `buf`
/// points to `buf_len` bytes of which the first `head_len` are readable;
/// `offsets` to `n_pages` readable values; `placement` is NULL or valid
/// as described at `mecom_placement`; `iov` to `iov_cap` writable
/// `mecom_iovec`s; `niov` and `buffered_len` to writable `size_t`s.
#[no_mangle]
pub unsafe extern "C" fn mecom_decoder_begin_parts(
    dec: *mut mecom_decoder,
    buf: *mut u8,
    buf_len: usize,
    head_len: usize,
    host: *mut u8,
    host_len: usize,
    offsets: *const u64,
    n_pages: u32,
    placement: *const mecom_placement,
    iov: *mut mecom_iovec,
    iov_cap: usize,
    niov: *mut usize,
    buffered_len: *mut usize,
) -> mecom_status {
    if dec.is_null()
        || buf.is_null()
        || host.is_null()
        || offsets.is_null()
        || iov.is_null()
        || niov.is_null()
        || buffered_len.is_null()
    {
        return mecom_status::NullParameter;
    }
    if head_len > buf_len {
        return mecom_status::InvalidArgument;
    }
    // SAFETY: non-NULL, live and exclusively ours for the call by contract.
    let handle = unsafe { &mut (*dec).0 };
    // SAFETY: the first `head_len` bytes of `buf` are readable by contract
    // (QEMU's receive buffer), and nobody writes them during the call.
    let head = unsafe { std::slice::from_raw_parts(buf, head_len) };
    // SAFETY: `offsets` holds `n_pages` readable values owned by the caller.
    let offsets = unsafe { std::slice::from_raw_parts(offsets, n_pages as usize) };
    // SAFETY: `iov` is `iov_cap` writable iovecs owned by the caller, not
    // aliasing `buf` or `offsets`.
    let iov = unsafe { std::slice::from_raw_parts_mut(iov, iov_cap) };
    // SAFETY: forwarded contract of this function.
    let placement = match unsafe { read_placement(placement, offsets) } {
        Ok(p) => p,
        Err(s) => return s,
    };
    let (mut end, mut count) = (0, 0);
    let status = handle.call(|d| {
        let block = Block {
            host,
            len: host_len,
        };
        pages_in_block(block, offsets, d.config().page_size as usize)?;
        end = d.begin_parts(head, offsets.len(), placement.as_ref())?;
        let parts = d.parts();
        if end > buf_len {
            return Err(Error::BufferTooSmall {
                needed: end,
                given: buf_len,
            });
        }
        if parts.len() > iov.len() {
            return Err(Error::InvalidArgument {
                reason: "fewer iovecs than the frame has parts (see mecom_frame_max_iov())",
            });
        }
        let page_size = d.config().page_size as usize;
        fill_iovecs(iov, parts, buf, host, offsets, page_size);
        count = parts.len();
        Ok(())
    });
    if status == mecom_status::Ok {
        // SAFETY: both non-NULL and writable by contract.
        unsafe {
            niov.write(count);
            buffered_len.write(end);
        }
    }
    status
}

/// Finishes the frame mecom_decoder_begin_parts() started, once its
/// payloads were read: `buf` holds the head and the buffered payloads
/// (`buf_len` must be the `*buffered_len` it gave), and the raw pages are
/// at `host + offsets[i]`.  The other pages are decoded, the checksum is
/// verified over all of them (raw pages read where they are), then the
/// decoded pages are written to `host + offsets[i]`; on any error none of
/// them is written (the raw pages in place hold what arrived, and the
/// caller must fail the migration).  Must follow a successful begin_parts
/// on `dec`.
///
/// # Safety
/// As mecom_decoder_decode(), with `buf` and `buf_len` for the frame.
#[no_mangle]
pub unsafe extern "C" fn mecom_decoder_finish_parts(
    dec: *mut mecom_decoder,
    buf: *const u8,
    buf_len: usize,
    host: *mut u8,
    host_len: usize,
    offsets: *const u64,
    n_pages: u32,
) -> mecom_status {
    // SAFETY: forwarded contract of this function.
    unsafe {
        decode_guest(
            dec,
            buf,
            buf_len,
            Block {
                host,
                len: host_len,
            },
            offsets,
            n_pages,
            DecodeCall::FinishParts,
        )
    }
}

/// Copies the decoder's running totals into `*out`.
///
/// # Safety
/// `dec` is a live decoder not being mutated during the call; `out` points to
/// a writable `mecom_counters`.
#[no_mangle]
pub unsafe extern "C" fn mecom_decoder_counters(
    dec: *const mecom_decoder,
    out: *mut mecom_counters,
) -> mecom_status {
    if dec.is_null() {
        return mecom_status::NullParameter;
    }
    // SAFETY: non-NULL and live by contract, only read; `out` per contract.
    unsafe { write_counters((*dec).0.engine.counters(), out) }
}

/// Text of the decoder's last failure, "" if the last call succeeded.  Valid
/// until the next call on `dec`.  Never NULL (a NULL handle gives "").
///
/// # Safety
/// `dec` is NULL or a live decoder.
#[no_mangle]
pub unsafe extern "C" fn mecom_decoder_last_error(dec: *const mecom_decoder) -> *const c_char {
    if dec.is_null() {
        return c"".as_ptr();
    }
    // SAFETY: non-NULL and live by contract; only read.
    unsafe { (*dec).0.last_error.as_ptr() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic inside a call becomes a status, poisons the handle, and
    /// every later call on it answers POISONED without running; the text
    /// of the last error says so.
    #[test]
    fn a_panic_becomes_a_status_and_poisons_the_handle() {
        let mut handle = Handle::new(0u32);
        assert_eq!(handle.call(|_| Ok(())), mecom_status::Ok);
        // The test runner prints the panic's message; it is expected.
        let status = handle.call(|_| panic!("a bug"));
        assert_eq!(status, mecom_status::Panic);
        assert!(handle.poisoned);
        assert_eq!(
            handle.last_error.to_str(),
            Ok("internal panic; this handle is poisoned")
        );
        let mut ran = false;
        let status = handle.call(|_| {
            ran = true;
            Ok(())
        });
        assert_eq!(status, mecom_status::Poisoned);
        assert!(!ran, "a poisoned handle ran the call");
        let status = boundary(|| panic!("a bug without a handle"));
        assert_eq!(status, mecom_status::Panic);
    }
}
