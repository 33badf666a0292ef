//! Segment files: naming, the 16-byte file header, and the pure scan that splits a segment's
//! bytes into intact records, damaged spans and a torn tail.
//!
//! The scan never trusts the file: every length is checked against what is left before use,
//! so arbitrary bytes (a fuzzer's, a disk's) yield a report, never a panic.

use std::ops::Range;

use super::record::{self, Frame, HEADER_LEN, RECORD_MAGIC};

/// First eight bytes of every segment file (format version in the last two).
pub const SEGMENT_MAGIC: [u8; 8] = *b"CLJRNL01";
/// Bytes of the segment header: magic, then the segment id (u64 LE) as a cross-check of the
/// file name.
pub const SEGMENT_HEADER_LEN: u64 = 16;
/// File name suffix of segments; anything else in the journal directory is ignored.
pub const SUFFIX: &str = ".journal";

/// The file name of segment `id`: zero-padded so names sort like ids.
pub fn file_name(id: u64) -> String {
    format!("{id:020}{SUFFIX}")
}

/// The id in a segment file name, or None for files that are not segments.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The header written at the start of segment `id`.
pub fn header(id: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..].copy_from_slice(&id.to_le_bytes());
    h
}

/// What [`scan`] found in one segment's bytes. Offsets are from the start of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// The id in the header, if the header is intact.
    pub id: Option<u64>,
    /// Intact records (header included), in file order.
    pub records: Vec<Range<usize>>,
    /// Entries in those records.
    pub entries: u64,
    /// Damaged spans followed by an intact record: skipped, the rest still replays.
    pub corrupt: Vec<Range<usize>>,
    /// Where the torn (or damaged) tail starts: nothing intact follows it, so the journal
    /// truncates the file here.
    pub torn_tail: Option<usize>,
}

/// Splits `bytes` (a whole segment file) into intact records and damage.
///
/// A record counts as intact only if its framing (magic, length, CRC) holds and its payload
/// decodes completely. After a bad spot the scan resynchronises on the next offset holding an
/// intact record; if there is none, the bad spot starts the torn tail.
pub fn scan(bytes: &[u8]) -> Scan {
    let mut s = Scan::default();
    let hl = SEGMENT_HEADER_LEN as usize;
    if bytes.len() < hl {
        // A header cut short: torn at creation if what is there is a header prefix.
        if !bytes.is_empty() {
            if bytes.len() <= 8 && bytes == &SEGMENT_MAGIC[..bytes.len()]
                || bytes.len() > 8 && bytes[..8] == SEGMENT_MAGIC
            {
                s.torn_tail = Some(0);
            } else {
                s.corrupt.push(0..bytes.len());
            }
        }
        return s;
    }
    if bytes[..8] == SEGMENT_MAGIC {
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[8..16]);
        s.id = Some(u64::from_le_bytes(id));
    } else {
        // The records carry their own framing, so a damaged file header costs nothing else.
        s.corrupt.push(0..hl);
    }
    let mut pos = hl;
    while pos < bytes.len() {
        if let Some((total, entries)) = intact_at(bytes, pos) {
            s.records.push(pos..pos + total);
            s.entries += entries as u64;
            pos += total;
            continue;
        }
        match resync(bytes, pos + 1) {
            Some(next) => {
                s.corrupt.push(pos..next);
                pos = next;
            }
            None => {
                s.torn_tail = Some(pos);
                break;
            }
        }
    }
    s
}

/// The total length and entry count of the intact record at `pos`, if there is one.
fn intact_at(bytes: &[u8], pos: usize) -> Option<(usize, usize)> {
    match record::frame(&bytes[pos..]) {
        Frame::Intact { total } => record::validate(&bytes[pos + HEADER_LEN..pos + total])
            .ok()
            .map(|n| (total, n)),
        Frame::Truncated | Frame::Invalid => None,
    }
}

/// The first offset at or after `from` where an intact record starts.
fn resync(bytes: &[u8], from: usize) -> Option<usize> {
    let magic = RECORD_MAGIC.to_le_bytes();
    let mut pos = from;
    while pos + HEADER_LEN <= bytes.len() {
        let window = &bytes[pos..];
        let hit = window.windows(4).position(|w| w == magic)?;
        pos += hit;
        if intact_at(bytes, pos).is_some() {
            return Some(pos);
        }
        pos += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::points::Point;

    fn segment(id: u64, batches: &[&[(&str, Point)]]) -> (Vec<u8>, Vec<Range<usize>>) {
        let mut b = header(id).to_vec();
        let mut ranges = Vec::new();
        for batch in batches {
            let start = b.len();
            record::encode(batch, &mut b).unwrap();
            ranges.push(start..b.len());
        }
        (b, ranges)
    }

    #[test]
    fn names_sort_like_ids() {
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert!(file_name(9) < file_name(10));
        for bad in [
            "42.journal",
            "0000000000000000004x.journal",
            "00000000000000000042.tmp",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn clean_segment_scans_whole() {
        let p = Point::new(5, 1.0);
        let (b, ranges) = segment(7, &[&[("a", p)], &[("b", p), ("c", p)]]);
        let s = scan(&b);
        assert_eq!(s.id, Some(7));
        assert_eq!(s.records, ranges);
        assert_eq!(s.entries, 3);
        assert!(s.corrupt.is_empty() && s.torn_tail.is_none());
    }

    #[test]
    fn damage_in_the_middle_resyncs() {
        let p = Point::new(5, 1.0);
        let (mut b, ranges) = segment(1, &[&[("a", p)], &[("b", p)], &[("c", p)]]);
        b[ranges[1].start + 13] ^= 0xff;
        let s = scan(&b);
        assert_eq!(s.records, vec![ranges[0].clone(), ranges[2].clone()]);
        assert_eq!(s.corrupt, vec![ranges[1].clone()]);
        assert_eq!(s.torn_tail, None);
    }

    #[test]
    fn torn_header_and_empty_files() {
        assert_eq!(scan(&[]), Scan::default());
        assert_eq!(scan(&SEGMENT_MAGIC[..5]).torn_tail, Some(0));
        assert_eq!(scan(&header(3)[..12]).torn_tail, Some(0));
        assert_eq!(scan(b"garbage").corrupt, vec![0..7]);
        let s = scan(&header(3));
        assert_eq!((s.id, s.records.len(), s.torn_tail), (Some(3), 0, None));
    }

    #[test]
    fn bad_file_header_keeps_records() {
        let p = Point::new(5, 1.0);
        let (mut b, ranges) = segment(1, &[&[("a", p)]]);
        b[0] = b'X';
        let s = scan(&b);
        assert_eq!(s.id, None);
        assert_eq!(s.records, ranges);
        assert_eq!(s.corrupt, vec![0..16]);
    }
}
