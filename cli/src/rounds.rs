//! Reading round dumps (docs/ROUNDS.md, version 1): per dirty-sync round,
//! the pages a migration re-sends, each with its previous and new version.
//!
//! The reader streams: one page entry at a time into buffers the caller
//! owns, so no allocation is sized from a field of the file.  Every field is
//! checked, and a malformed or cut file gives an [`Error`] naming what is
//! wrong, never a panic.  When the length of the data is known (a raw file),
//! a round's page count is checked against the bytes left before any page
//! is read.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

/// The file magic.
pub const MAGIC: &[u8; 8] = b"MECOMRDS";
/// The format version this reader knows.
pub const VERSION: u32 = 1;
/// File header length.
pub const FILE_HEADER_LEN: usize = 32;
/// Round header length.
pub const ROUND_HEADER_LEN: usize = 48;
/// Tag of a round record.
pub const TAG_ROUND: &[u8; 4] = b"RND\0";
/// Tag of the end record.
pub const TAG_END: &[u8; 4] = b"END\0";
/// Round flag: the round after completion (source stopped; exact).
pub const FLAG_FINAL: u32 = 1;
/// Smallest and largest page size accepted.
pub const PAGE_SIZES: std::ops::RangeInclusive<u32> = 4096..=65536;

/// What is wrong with a round dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Reading failed.
    Io(String),
    /// The data ends inside the named part, at this byte offset
    /// (uncompressed); a dump without its `END` record also ends here.
    Truncated { what: &'static str, offset: u64 },
    /// The first 8 bytes are not `MECOMRDS`.
    BadMagic,
    /// A version other than 1.
    BadVersion(u32),
    /// A page size that is not a power of two in 4096..=65536.
    BadPageSize(u32),
    /// A record tag that is neither `RND\0` nor `END\0`.
    BadTag { tag: [u8; 4], offset: u64 },
    /// Flag bits other than `FINAL`.
    BadFlags { round: u32, flags: u32 },
    /// A reserved field that is not 0.
    Reserved { offset: u64 },
    /// More pages than the RAM has, or than the bytes left can hold.
    TooManyPages { round: u32, pages: u64, limit: u64 },
    /// A page index not above the previous one of its round.
    PageOrder {
        round: u32,
        index: u64,
        previous: u64,
    },
    /// A page index beyond the RAM.
    PageOutOfRange {
        round: u32,
        index: u64,
        ram_pages: u64,
    },
    /// The `END` record counts other rounds than the file holds.
    RoundCount { end_says: u32, read: u32 },
    /// Bytes after the `END` record.
    TrailingData { offset: u64 },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "read error: {e}"),
            Error::Truncated { what, offset } => {
                write!(f, "truncated: ends inside the {what} at byte {offset}")
            }
            Error::BadMagic => write!(f, "not a round dump (no MECOMRDS magic)"),
            Error::BadVersion(v) => write!(f, "round dump version {v}, only 1 is known"),
            Error::BadPageSize(p) => {
                write!(f, "page size {p} is not a power of two in 4096..65536")
            }
            Error::BadTag { tag, offset } => {
                write!(f, "bad record tag {tag:?} at byte {offset}")
            }
            Error::BadFlags { round, flags } => {
                write!(f, "round {round}: unknown flags {flags:#x}")
            }
            Error::Reserved { offset } => {
                write!(f, "reserved field at byte {offset} is not 0")
            }
            Error::TooManyPages {
                round,
                pages,
                limit,
            } => write!(
                f,
                "round {round}: {pages} pages, more than the {limit} the RAM or the file can hold"
            ),
            Error::PageOrder {
                round,
                index,
                previous,
            } => write!(
                f,
                "round {round}: page {index} after page {previous} (not ascending)"
            ),
            Error::PageOutOfRange {
                round,
                index,
                ram_pages,
            } => write!(
                f,
                "round {round}: page {index} beyond the {ram_pages} RAM pages"
            ),
            Error::RoundCount { end_says, read } => {
                write!(
                    f,
                    "END record counts {end_says} rounds, the file has {read}"
                )
            }
            Error::TrailingData { offset } => {
                write!(f, "data after the END record at byte {offset}")
            }
        }
    }
}

/// The file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Page size in bytes.
    pub page_size: usize,
    /// Pages of the RAM block.
    pub ram_pages: u64,
    /// Creation time, Unix seconds.
    pub created: u64,
}

/// A round record's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// The sync after which these pages are sent.
    pub round: u32,
    /// Dirty-sync count of the previous snapshot.
    pub sync_from: u32,
    /// Dirty-sync count of this snapshot.
    pub sync_to: u32,
    /// The round after completion (exact last versions).
    pub is_final: bool,
    /// Pages in the round.
    pub pages: u64,
    /// Microseconds from the first snapshot.
    pub t_us: u64,
}

/// Little-endian fields of a header.
fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

/// Little-endian fields of a header.
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Where the reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a round header.
    Between,
    /// Inside a round: pages left, previous index.
    InRound { left: u64, previous: Option<u64> },
    /// After the END record.
    Done,
}

/// A round dump being read.
pub struct Reader<R> {
    r: R,
    header: Header,
    /// Uncompressed bytes consumed.
    offset: u64,
    /// Total uncompressed length, when known.
    len: Option<u64>,
    state: State,
    round: Option<Round>,
    rounds: u32,
}

impl<R: Read> Reader<R> {
    /// Reads and checks the file header; `len` is the total length of the
    /// data when known (raw files).
    pub fn new(mut r: R, len: Option<u64>) -> Result<Reader<R>, Error> {
        let mut h = [0u8; FILE_HEADER_LEN];
        read_exact(&mut r, &mut h, "file header", 0)?;
        if &h[..8] != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = u32_at(&h, 8);
        if version != VERSION {
            return Err(Error::BadVersion(version));
        }
        let ps = u32_at(&h, 12);
        if !ps.is_power_of_two() || !PAGE_SIZES.contains(&ps) {
            return Err(Error::BadPageSize(ps));
        }
        Ok(Reader {
            r,
            header: Header {
                page_size: ps as usize,
                ram_pages: u64_at(&h, 16),
                created: u64_at(&h, 24),
            },
            offset: FILE_HEADER_LEN as u64,
            len,
            state: State::Between,
            round: None,
            rounds: 0,
        })
    }

    /// The file header.
    pub fn header(&self) -> Header {
        self.header
    }

    /// Bytes of one page entry.
    fn entry_len(&self) -> u64 {
        8 + 2 * self.header.page_size as u64
    }

    /// Reads exactly `buf.len()` bytes of `what`.
    fn read(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), Error> {
        read_exact(&mut self.r, buf, what, self.offset)?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// The next round's header (skipping unread pages of the current one),
    /// or `None` after the END record, which is checked (round count, no
    /// trailing data).
    pub fn next_round(&mut self) -> Result<Option<Round>, Error> {
        let ps = self.header.page_size;
        if matches!(self.state, State::InRound { .. }) {
            let mut old = vec![0u8; ps];
            let mut new = vec![0u8; ps];
            while self.next_page(&mut old, &mut new)?.is_some() {}
        }
        if self.state == State::Done {
            return Ok(None);
        }
        let at = self.offset;
        let mut h = [0u8; ROUND_HEADER_LEN];
        self.read(&mut h, "round header")?;
        let tag: [u8; 4] = [h[0], h[1], h[2], h[3]];
        let round = u32_at(&h, 4);
        for (field, width) in [(20usize, 4usize), (40, 8)] {
            if h[field..field + width].iter().any(|&b| b != 0) {
                return Err(Error::Reserved {
                    offset: at + field as u64,
                });
            }
        }
        if &tag == TAG_END {
            if h[8..40].iter().any(|&b| b != 0) {
                return Err(Error::Reserved { offset: at + 8 });
            }
            if round != self.rounds {
                return Err(Error::RoundCount {
                    end_says: round,
                    read: self.rounds,
                });
            }
            let mut extra = [0u8; 1];
            loop {
                match self.r.read(&mut extra) {
                    Ok(0) => break,
                    Ok(_) => {
                        return Err(Error::TrailingData {
                            offset: self.offset,
                        })
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Error::Io(e.to_string())),
                }
            }
            self.state = State::Done;
            self.round = None;
            return Ok(None);
        }
        if &tag != TAG_ROUND {
            return Err(Error::BadTag { tag, offset: at });
        }
        let flags = u32_at(&h, 16);
        if flags & !FLAG_FINAL != 0 {
            return Err(Error::BadFlags { round, flags });
        }
        let pages = u64_at(&h, 24);
        // No more pages than the RAM has, nor (when the length is known)
        // than the bytes left can hold.
        let mut limit = self.header.ram_pages;
        if let Some(len) = self.len {
            let left = len.saturating_sub(self.offset);
            limit = limit.min(left / self.entry_len());
        }
        if pages > limit {
            return Err(Error::TooManyPages {
                round,
                pages,
                limit,
            });
        }
        let r = Round {
            round,
            sync_from: u32_at(&h, 8),
            sync_to: u32_at(&h, 12),
            is_final: flags & FLAG_FINAL != 0,
            pages,
            t_us: u64_at(&h, 32),
        };
        self.rounds = self.rounds.saturating_add(1);
        self.state = State::InRound {
            left: pages,
            previous: None,
        };
        self.round = Some(r);
        Ok(Some(r))
    }

    /// The next page of the current round into `old` and `new` (each of the
    /// page size); its index, or `None` at the end of the round.
    pub fn next_page(&mut self, old: &mut [u8], new: &mut [u8]) -> Result<Option<u64>, Error> {
        let State::InRound { left, previous } = self.state else {
            return Ok(None);
        };
        if left == 0 {
            self.state = State::Between;
            return Ok(None);
        }
        let ps = self.header.page_size;
        if old.len() != ps || new.len() != ps {
            return Err(Error::Io(format!(
                "page buffers of {} and {} bytes, page size {ps}",
                old.len(),
                new.len()
            )));
        }
        let round = self.round.map_or(0, |r| r.round);
        let mut ix = [0u8; 8];
        self.read(&mut ix, "page index")?;
        let index = u64::from_le_bytes(ix);
        if let Some(previous) = previous.filter(|&p| index <= p) {
            return Err(Error::PageOrder {
                round,
                index,
                previous,
            });
        }
        if index >= self.header.ram_pages {
            return Err(Error::PageOutOfRange {
                round,
                index,
                ram_pages: self.header.ram_pages,
            });
        }
        self.read(old, "old page")?;
        self.read(new, "new page")?;
        self.state = State::InRound {
            left: left - 1,
            previous: Some(index),
        };
        Ok(Some(index))
    }
}

/// `read_exact` with a named error for a short read.
fn read_exact<R: Read>(
    r: &mut R,
    buf: &mut [u8],
    what: &'static str,
    offset: u64,
) -> Result<(), Error> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(Error::Truncated {
                    what,
                    offset: offset + got as u64,
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e.to_string())),
        }
    }
    Ok(())
}

/// Opens a dump file, raw or zstd-compressed (detected by magic number; a
/// `.zst` name without it is an error).  Errors carry the file name.
pub fn open(path: &Path) -> Result<(Reader<Box<dyn Read>>, bool), String> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| format!("{name}: cannot open: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{name}: cannot stat: {e}"))?;
    if meta.is_dir() {
        return Err(format!("{name}: is a directory, not a round dump"));
    }
    let buffered = BufReader::with_capacity(1 << 20, file);
    let (reader, is_zstd) = crate::image::raw_or_zstd(&name, path, buffered)?;
    // A raw file's length bounds what its fields may claim.
    let len = (!is_zstd).then_some(meta.len());
    let reader = Reader::new(reader, len).map_err(|e| format!("{name}: {e}"))?;
    Ok((reader, is_zstd))
}

/// Writing dumps, for tests (the recorder is `harness/rounds.py`).
#[cfg(test)]
pub mod write {
    use super::*;

    /// A file header.
    pub fn header(ps: u32, ram_pages: u64) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend(VERSION.to_le_bytes());
        v.extend(ps.to_le_bytes());
        v.extend(ram_pages.to_le_bytes());
        v.extend(1_700_000_000u64.to_le_bytes());
        v
    }

    /// A round record with its pages `(index, old, new)`.
    pub fn round(
        out: &mut Vec<u8>,
        r: u32,
        from: u32,
        flags: u32,
        pages: &[(u64, Vec<u8>, Vec<u8>)],
    ) {
        out.extend(TAG_ROUND);
        for w in [r, from, r, flags, 0] {
            out.extend(w.to_le_bytes());
        }
        for w in [pages.len() as u64, 1000 * u64::from(r), 0] {
            out.extend(w.to_le_bytes());
        }
        for (i, old, new) in pages {
            out.extend(i.to_le_bytes());
            out.extend(old);
            out.extend(new);
        }
    }

    /// The END record.
    pub fn end(out: &mut Vec<u8>, rounds: u32) {
        out.extend(TAG_END);
        out.extend(rounds.to_le_bytes());
        out.extend([0u8; 40]);
    }
}

#[cfg(test)]
mod tests {
    use super::write::*;
    use super::*;

    /// Page size of the test dumps.
    const PS: usize = 4096;

    /// A page filled with `b`.
    fn page(b: u8) -> Vec<u8> {
        vec![b; PS]
    }

    /// Three rounds: two pages, none, one (final).
    fn dump() -> Vec<u8> {
        let mut d = header(PS as u32, 16);
        round(
            &mut d,
            2,
            1,
            0,
            &[(3, page(1), page(2)), (9, page(0), page(7))],
        );
        round(&mut d, 3, 2, 0, &[]);
        round(&mut d, 3, 3, FLAG_FINAL, &[(15, page(4), page(5))]);
        end(&mut d, 3);
        d
    }

    /// A round read back: its header and per page (index, old[0], new[0]).
    type Read = (Round, Vec<(u64, u8, u8)>);

    /// Reads a whole dump.
    fn read_all(data: &[u8], known_len: bool) -> Result<Vec<Read>, Error> {
        let len = known_len.then_some(data.len() as u64);
        let mut r = Reader::new(data, len)?;
        assert_eq!(r.header().page_size, PS);
        let (mut old, mut new) = (page(0), page(0));
        let mut out = Vec::new();
        while let Some(round) = r.next_round()? {
            let mut pages = Vec::new();
            while let Some(i) = r.next_page(&mut old, &mut new)? {
                pages.push((i, old[0], new[0]));
            }
            out.push((round, pages));
        }
        Ok(out)
    }

    /// A well-formed dump reads back, with and without a known length.
    #[test]
    fn reads_a_dump() {
        for known in [true, false] {
            let rounds = read_all(&dump(), known).unwrap();
            assert_eq!(rounds.len(), 3);
            let (r, p) = &rounds[0];
            assert_eq!((r.round, r.sync_from, r.sync_to, r.pages), (2, 1, 2, 2));
            assert!(!r.is_final);
            assert_eq!(r.t_us, 2000);
            assert_eq!(p, &[(3, 1, 2), (9, 0, 7)]);
            assert!(rounds[1].1.is_empty() && !rounds[1].0.is_final);
            let (r, p) = &rounds[2];
            assert!(r.is_final);
            assert_eq!((r.sync_from, r.sync_to), (3, 3));
            assert_eq!(p, &[(15, 4, 5)]);
        }
        // Unread pages are skipped by next_round.
        let d = dump();
        let mut r = Reader::new(d.as_slice(), None).unwrap();
        let mut n = 0;
        while r.next_round().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
        assert_eq!(r.next_round().unwrap(), None);
    }

    /// Every cut of the dump is a `Truncated` error, never a panic.
    #[test]
    fn every_truncation_is_named() {
        let d = dump();
        for cut in (0..d.len()).step_by(97).chain([d.len() - 1, d.len() - 48]) {
            for known in [true, false] {
                match read_all(&d[..cut], known) {
                    Err(Error::Truncated { .. }) => {}
                    // A known length catches a cut round before its pages.
                    Err(Error::TooManyPages { .. }) if known => {}
                    other => panic!("cut at {cut}: {other:?}"),
                }
            }
        }
    }

    /// Corrupt fields give their named errors.
    #[test]
    fn corrupt_fields_are_named() {
        let d = dump();
        let r1 = FILE_HEADER_LEN; // first round header
        let e1 = r1 + ROUND_HEADER_LEN; // its first entry
        let patch = |at: usize, bytes: &[u8]| {
            let mut c = d.clone();
            c[at..at + bytes.len()].copy_from_slice(bytes);
            read_all(&c, true).unwrap_err()
        };
        assert_eq!(patch(0, b"X"), Error::BadMagic);
        assert_eq!(patch(8, &2u32.to_le_bytes()), Error::BadVersion(2));
        assert_eq!(patch(12, &4097u32.to_le_bytes()), Error::BadPageSize(4097));
        assert_eq!(patch(12, &2048u32.to_le_bytes()), Error::BadPageSize(2048));
        assert_eq!(
            patch(12, &131_072u32.to_le_bytes()),
            Error::BadPageSize(131_072)
        );
        assert!(matches!(patch(r1, b"RNX"), Error::BadTag { .. }));
        assert_eq!(
            patch(r1 + 16, &2u32.to_le_bytes()),
            Error::BadFlags { round: 2, flags: 2 }
        );
        assert_eq!(
            patch(r1 + 20, &[1]),
            Error::Reserved {
                offset: (r1 + 20) as u64
            }
        );
        // A huge page count is refused before anything is read.
        assert!(matches!(
            patch(r1 + 24, &u64::MAX.to_le_bytes()),
            Error::TooManyPages {
                pages: u64::MAX,
                ..
            }
        ));
        // Within the RAM but beyond the bytes left.
        assert!(matches!(
            patch(r1 + 24, &12u64.to_le_bytes()),
            Error::TooManyPages { pages: 12, .. }
        ));
        assert_eq!(
            patch(e1 + 8 + 2 * PS, &2u64.to_le_bytes()),
            Error::PageOrder {
                round: 2,
                index: 2,
                previous: 3
            }
        );
        assert_eq!(
            patch(e1, &16u64.to_le_bytes()),
            Error::PageOutOfRange {
                round: 2,
                index: 16,
                ram_pages: 16
            }
        );
        let end_at = d.len() - ROUND_HEADER_LEN;
        assert_eq!(
            patch(end_at + 4, &2u32.to_le_bytes()),
            Error::RoundCount {
                end_says: 2,
                read: 3
            }
        );
        let mut c = d.clone();
        c.push(0);
        assert_eq!(
            read_all(&c, false).unwrap_err(),
            Error::TrailingData {
                offset: d.len() as u64
            }
        );
        // Without END: cut short.
        assert!(matches!(
            read_all(&d[..end_at], false).unwrap_err(),
            Error::Truncated {
                what: "round header",
                ..
            }
        ));
    }
}
