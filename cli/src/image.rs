//! Reading guest memory images: a raw file of consecutive pages, or the same
//! compressed with zstd (`.zst` suffix or the zstd magic number), streamed
//! batch by batch so an image of any size needs only one batch of memory.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The first four bytes of every zstd frame.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Counts the bytes read through it, for progress on compressed images.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// An open image, read as a stream of whole pages.
pub struct Image {
    name: String,
    reader: Box<dyn Read>,
    page_size: usize,
    /// Bytes of the file consumed so far (compressed bytes for `.zst`).
    consumed: Rc<Cell<u64>>,
    /// File size, when known.
    file_len: Option<u64>,
    compressed: bool,
    pages_read: u64,
    limit: Option<u64>,
}

/// `buffered` (the start of file `path`) as it is, or through a zstd
/// decoder when it starts with the zstd magic number; a `.zst` name
/// without the magic is an error.  Returns the reader and whether it
/// decompresses.  Errors start with `name`.
pub fn raw_or_zstd<R: BufRead + 'static>(
    name: &str,
    path: &Path,
    mut buffered: R,
) -> Result<(Box<dyn Read>, bool), String> {
    let head = buffered
        .fill_buf()
        .map_err(|e| format!("{name}: cannot read: {e}"))?;
    if head.starts_with(&ZSTD_MAGIC) {
        let mut dec = zstd::stream::read::Decoder::with_buffer(buffered)
            .map_err(|e| format!("{name}: cannot start zstd decoder: {e}"))?;
        // Accept frames written with `zstd --long` (windows up to 2 GiB).
        dec.window_log_max(31)
            .map_err(|e| format!("{name}: zstd window: {e}"))?;
        Ok((Box::new(dec), true))
    } else if path.extension().is_some_and(|e| e == "zst") {
        Err(format!(
            "{name}: named .zst but does not start with the zstd magic number"
        ))
    } else {
        Ok((Box::new(buffered), false))
    }
}

impl Image {
    /// Opens `path`, detecting zstd by magic number; a `.zst` file without
    /// the magic is an error rather than a raw image.
    pub fn open(path: &Path, page_size: usize, limit: Option<u64>) -> Result<Image, String> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| format!("{name}: cannot open: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("{name}: cannot stat: {e}"))?;
        if meta.is_dir() {
            return Err(format!("{name}: is a directory, not an image"));
        }
        let consumed = Rc::new(Cell::new(0));
        let buffered = BufReader::with_capacity(
            1 << 20,
            Counting {
                inner: file,
                count: Rc::clone(&consumed),
            },
        );
        let (reader, is_zstd) = raw_or_zstd(&name, path, buffered)?;
        let mut image = Image::from_reader(name, reader, page_size, limit);
        image.consumed = consumed;
        image.file_len = Some(meta.len());
        image.compressed = is_zstd;
        Ok(image)
    }

    /// An image over any reader of raw pages (tests, standard input).
    pub fn from_reader(
        name: String,
        reader: Box<dyn Read>,
        page_size: usize,
        limit: Option<u64>,
    ) -> Image {
        Image {
            name,
            reader,
            page_size,
            consumed: Rc::new(Cell::new(0)),
            file_len: None,
            compressed: false,
            pages_read: 0,
            limit,
        }
    }

    /// The name the image was opened under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the image is zstd-compressed.
    pub fn compressed(&self) -> bool {
        self.compressed
    }

    /// Pages read so far.
    pub fn pages_read(&self) -> u64 {
        self.pages_read
    }

    /// Fraction of the input consumed, when the file size is known.
    pub fn fraction(&self) -> Option<f64> {
        let frac = match (self.limit, self.file_len) {
            (Some(limit), _) if limit > 0 => self.pages_read as f64 / limit as f64,
            (_, Some(len)) if len > 0 => self.consumed.get() as f64 / len as f64,
            _ => return None,
        };
        Some(frac.min(1.0))
    }

    /// Fills `buf` (a whole number of pages) with the next pages; returns
    /// how many were read, 0 at the end of the image.  An image that ends
    /// inside a page is an error.
    pub fn read_pages(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        let ps = self.page_size;
        let mut want = buf.len() / ps;
        if let Some(limit) = self.limit {
            want = want.min(limit.saturating_sub(self.pages_read) as usize);
        }
        let want_bytes = want * ps;
        let mut filled = 0;
        while filled < want_bytes {
            match self.reader.read(&mut buf[filled..want_bytes]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(format!(
                        "{}: read error after {} pages: {e}",
                        self.name, self.pages_read
                    ))
                }
            }
        }
        if filled % ps != 0 {
            return Err(format!(
                "{}: image ends inside a page: {} bytes after page {} (page size {ps}; \
                 see --page-size)",
                self.name,
                filled % ps,
                self.pages_read + (filled / ps) as u64
            ));
        }
        let pages = filled / ps;
        self.pages_read += pages as u64;
        Ok(pages)
    }
}

/// Whether a page is all zero bytes.
pub fn is_zero_page(page: &[u8]) -> bool {
    let mut chunks = page.chunks_exact(64);
    let body = chunks.by_ref().all(|c| {
        c.chunks_exact(8).fold(0u64, |acc, w| {
            acc | u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]])
        }) == 0
    });
    body && chunks.remainder().iter().all(|&b| b == 0)
}

/// Progress messages on standard error: at most one every five seconds,
/// or one per tenth of the image when the image takes longer than a second.
pub struct Progress {
    quiet: bool,
    label: String,
    start: Instant,
    last: Instant,
    last_decile: u32,
}

impl Progress {
    /// Starts reporting on `label`.
    pub fn new(quiet: bool, label: String) -> Progress {
        let now = Instant::now();
        Progress {
            quiet,
            label,
            start: now,
            last: now,
            last_decile: 0,
        }
    }

    /// Reports the position of `image` when it is time to.
    pub fn update(&mut self, image: &Image) {
        if self.quiet {
            return;
        }
        let now = Instant::now();
        let since = now.duration_since(self.last);
        let decile = image.fraction().map_or(0, |f| (f * 10.0) as u32);
        let due = since >= Duration::from_secs(5)
            || (decile > self.last_decile
                && now.duration_since(self.start) >= Duration::from_secs(1));
        if !due {
            return;
        }
        self.last = now;
        self.last_decile = decile;
        let pct = image
            .fraction()
            .map(|f| format!(" ({:.0} %)", f * 100.0))
            .unwrap_or_default();
        eprintln!(
            "mecom: {}: {} pages{pct}, {:.1} s",
            self.label,
            image.pages_read(),
            now.duration_since(self.start).as_secs_f64()
        );
    }

    /// Reports the end of the image.
    pub fn finish(&self, image: &Image) {
        if !self.quiet {
            eprintln!(
                "mecom: {}: done, {} pages in {:.1} s",
                self.label,
                image.pages_read(),
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whole pages stream; an image ending inside a page is an error.
    #[test]
    fn pages_stream_and_partial_pages_are_rejected() {
        let data = vec![1u8; 3 * 4096];
        let mut img = Image::from_reader("t".into(), Box::new(io::Cursor::new(data)), 4096, None);
        let mut buf = vec![0u8; 2 * 4096];
        assert_eq!(img.read_pages(&mut buf), Ok(2));
        assert_eq!(img.read_pages(&mut buf), Ok(1));
        assert_eq!(img.read_pages(&mut buf), Ok(0));
        let data = vec![1u8; 4096 + 10];
        let mut img = Image::from_reader("t".into(), Box::new(io::Cursor::new(data)), 4096, None);
        let err = img.read_pages(&mut buf).unwrap_err();
        assert!(err.contains("ends inside a page"), "{err}");
    }

    /// `--limit` stops reading and reports full progress.
    #[test]
    fn limit_stops_early() {
        let data = vec![0u8; 10 * 4096];
        let mut img =
            Image::from_reader("t".into(), Box::new(io::Cursor::new(data)), 4096, Some(3));
        let mut buf = vec![0u8; 2 * 4096];
        assert_eq!(img.read_pages(&mut buf), Ok(2));
        assert_eq!(img.read_pages(&mut buf), Ok(1));
        assert_eq!(img.read_pages(&mut buf), Ok(0));
        assert_eq!(img.fraction(), Some(1.0));
    }

    /// A single non-zero byte anywhere makes a page non-zero.
    #[test]
    fn zero_pages_are_recognised() {
        let mut page = vec![0u8; 4096];
        assert!(is_zero_page(&page));
        page[4095] = 1;
        assert!(!is_zero_page(&page));
        page[4095] = 0;
        page[0] = 1;
        assert!(!is_zero_page(&page));
    }
}
