//! Byte layout of a whisper file: 16-byte metadata, 12-byte archive infos, 12-byte points,
//! all big-endian (whisper.py's `!2LfL`, `!3L`, `!Ld`).
//!
//! Decoding validates every field before any arithmetic uses it, so a truncated or corrupt
//! file becomes `Error::Corrupt` instead of a panic or an out-of-bounds access later.

use std::path::Path;

use crate::error::{Error, Result};

/// Bytes of the metadata block (`!2LfL`).
pub const METADATA_SIZE: usize = 16;
/// Bytes of one archive info (`!3L`).
pub const ARCHIVE_INFO_SIZE: usize = 12;
/// Bytes of one point (`!Ld`).
pub const POINT_SIZE: usize = 12;
/// Most archives a header may declare; real files have a handful, so a larger count means a
/// corrupt header, and refusing it bounds the header read.
pub const MAX_ARCHIVES: u32 = 1024;

/// Aggregation method ids as whisper.py numbers them (1–8); go-whisper's 6–8 differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum AggregationMethod {
    /// Mean of known values.
    Average = 1,
    /// Sum of known values.
    Sum = 2,
    /// Last known value.
    Last = 3,
    /// Maximum.
    Max = 4,
    /// Minimum.
    Min = 5,
    /// Mean over all slots with unknown counted as 0.
    AvgZero = 6,
    /// Value with the largest absolute value (first wins on ties).
    AbsMax = 7,
    /// Value with the smallest absolute value (first wins on ties).
    AbsMin = 8,
}

/// One `precision:points` pair of a retention definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Retention {
    /// Seconds per point.
    pub seconds_per_point: u32,
    /// Number of points.
    pub points: u32,
}

/// One archive as stored in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// Absolute byte offset of the archive's first point.
    pub offset: u32,
    /// Seconds per point.
    pub seconds_per_point: u32,
    /// Number of points.
    pub points: u32,
}

/// The decoded file header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Aggregation used when propagating to lower-precision archives.
    pub aggregation: AggregationMethod,
    /// max(seconds_per_point * points) over the archives.
    pub max_retention: u32,
    /// Fraction of known higher-precision points needed to propagate.
    pub x_files_factor: f32,
    /// Archives sorted by precision, highest first.
    pub archives: Vec<ArchiveInfo>,
}

impl AggregationMethod {
    /// Every method, in id order.
    pub const ALL: [AggregationMethod; 8] = [
        AggregationMethod::Average,
        AggregationMethod::Sum,
        AggregationMethod::Last,
        AggregationMethod::Max,
        AggregationMethod::Min,
        AggregationMethod::AvgZero,
        AggregationMethod::AbsMax,
        AggregationMethod::AbsMin,
    ];

    /// The method stored as `id` in a header, if whisper.py knows it.
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.get((id as usize).wrapping_sub(1)).copied()
    }

    /// The id stored in the header.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// whisper.py's name (`aggregationTypeToMethod`), as the CLI tools print it.
    pub fn name(self) -> &'static str {
        match self {
            AggregationMethod::Average => "average",
            AggregationMethod::Sum => "sum",
            AggregationMethod::Last => "last",
            AggregationMethod::Max => "max",
            AggregationMethod::Min => "min",
            AggregationMethod::AvgZero => "avg_zero",
            AggregationMethod::AbsMax => "absmax",
            AggregationMethod::AbsMin => "absmin",
        }
    }

    /// Parses whisper.py's name; exact and case-sensitive like `aggregationMethodToType`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl std::fmt::Display for AggregationMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Retention {
    /// A `seconds_per_point:points` pair.
    pub fn new(seconds_per_point: u32, points: u32) -> Self {
        Retention {
            seconds_per_point,
            points,
        }
    }

    /// Seconds covered (`spp * points`), widened so that unvalidated input cannot overflow.
    pub fn retention(&self) -> u64 {
        u64::from(self.seconds_per_point) * u64::from(self.points)
    }
}

impl ArchiveInfo {
    /// Seconds covered by the archive. Headers are validated so this fits in a u32.
    pub fn retention(&self) -> u32 {
        self.seconds_per_point.saturating_mul(self.points)
    }

    /// Bytes of point data. Headers are validated so this fits in a u32.
    pub fn size(&self) -> u32 {
        self.points.saturating_mul(POINT_SIZE as u32)
    }

    /// Absolute offset one past the archive's last byte.
    pub fn end(&self) -> u64 {
        u64::from(self.offset) + u64::from(self.points) * POINT_SIZE as u64
    }
}

/// whisper.py's `validateArchiveList`: sorts by precision and applies its rules, plus the
/// limits the on-disk u32 fields impose (which whisper.py only hits as a `struct.error`).
pub fn validate_archive_list(retentions: &[Retention]) -> Result<Vec<Retention>> {
    if retentions.is_empty() {
        return Err(Error::invalid(
            "you must specify at least one archive configuration",
        ));
    }
    if retentions.len() > MAX_ARCHIVES as usize {
        return Err(Error::invalid(format!(
            "too many archives ({})",
            retentions.len()
        )));
    }
    let mut list = retentions.to_vec();
    list.sort_by_key(|r| r.seconds_per_point);
    for (i, r) in list.iter().enumerate() {
        if r.seconds_per_point == 0 || r.points == 0 {
            return Err(Error::invalid(format!(
                "archive{i} ({}:{}) must have a positive precision and point count",
                r.seconds_per_point, r.points
            )));
        }
        if r.retention() > u64::from(u32::MAX) {
            return Err(Error::invalid(format!(
                "archive{i} ({}:{}) covers more seconds than whisper can store",
                r.seconds_per_point, r.points
            )));
        }
    }
    for (i, pair) in list.windows(2).enumerate() {
        let (a, b) = (pair[0], pair[1]);
        if a.seconds_per_point >= b.seconds_per_point {
            return Err(Error::invalid(format!(
                "a whisper database may not have two archives with the same precision \
                 (archive{i}: {}:{}, archive{}: {}:{})",
                a.seconds_per_point,
                a.points,
                i + 1,
                b.seconds_per_point,
                b.points
            )));
        }
        if !b.seconds_per_point.is_multiple_of(a.seconds_per_point) {
            return Err(Error::invalid(format!(
                "higher precision archives' precision must evenly divide all lower precision \
                 archives' precision (archive{i}: {}, archive{}: {})",
                a.seconds_per_point,
                i + 1,
                b.seconds_per_point
            )));
        }
        if b.retention() <= a.retention() {
            return Err(Error::invalid(format!(
                "lower precision archives must cover larger time intervals than higher \
                 precision archives (archive{i}: {} seconds, archive{}: {} seconds)",
                a.retention(),
                i + 1,
                b.retention()
            )));
        }
        let per_consolidation = b.seconds_per_point / a.seconds_per_point;
        if a.points < per_consolidation {
            return Err(Error::invalid(format!(
                "each archive must have at least enough points to consolidate to the next \
                 archive (archive{} consolidates {per_consolidation} of archive{i}'s points \
                 but it has only {} total points)",
                i + 1,
                a.points
            )));
        }
    }
    let header_size = METADATA_SIZE as u64 + ARCHIVE_INFO_SIZE as u64 * list.len() as u64;
    let last_offset = header_size
        + list[..list.len() - 1]
            .iter()
            .map(|r| u64::from(r.points) * POINT_SIZE as u64)
            .sum::<u64>();
    let last_size = u64::from(list[list.len() - 1].points) * POINT_SIZE as u64;
    if last_offset > u64::from(u32::MAX) || last_size > u64::from(u32::MAX) {
        return Err(Error::invalid(
            "archives too large: offsets would overflow the u32 header fields",
        ));
    }
    Ok(list)
}

/// Encodes one point as `!Ld`.
#[inline(always)]
pub fn encode_point(out: &mut [u8], timestamp: u32, value: f64) {
    out[..4].copy_from_slice(&timestamp.to_be_bytes());
    out[4..12].copy_from_slice(&value.to_bits().to_be_bytes());
}

/// Decodes one `!Ld` point from the first 12 bytes of `b`.
#[inline(always)]
pub fn decode_point(b: &[u8]) -> (u32, f64) {
    // One bounds check for the whole point instead of one per byte.
    let b = &b[..POINT_SIZE];
    let ts = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let bits = u64::from_be_bytes([b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11]]);
    (ts, f64::from_bits(bits))
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Header {
    /// The header whisper.py's `create` writes for an already validated, sorted list.
    pub fn new(
        retentions: &[Retention],
        aggregation: AggregationMethod,
        x_files_factor: f32,
    ) -> Result<Header> {
        let list = validate_archive_list(retentions)?;
        if !(0.0..=1.0).contains(&x_files_factor) {
            return Err(Error::invalid(format!(
                "invalid xFilesFactor {x_files_factor}, not between 0 and 1"
            )));
        }
        let mut offset = (METADATA_SIZE + ARCHIVE_INFO_SIZE * list.len()) as u32;
        let mut archives = Vec::with_capacity(list.len());
        for r in &list {
            archives.push(ArchiveInfo {
                offset,
                seconds_per_point: r.seconds_per_point,
                points: r.points,
            });
            // Cannot overflow past the last archive: validate_archive_list bounded every offset.
            offset = offset.wrapping_add(r.points.wrapping_mul(POINT_SIZE as u32));
        }
        let max_retention = archives
            .iter()
            .map(ArchiveInfo::retention)
            .max()
            .unwrap_or(0);
        Ok(Header {
            aggregation,
            max_retention,
            x_files_factor,
            archives,
        })
    }

    /// Bytes before archive 0's data.
    pub fn header_size(&self) -> u64 {
        (METADATA_SIZE + ARCHIVE_INFO_SIZE * self.archives.len()) as u64
    }

    /// Total file size the header describes (what `create` allocates).
    pub fn file_size(&self) -> u64 {
        self.archives
            .last()
            .map_or(self.header_size(), ArchiveInfo::end)
    }

    /// The 16-byte metadata block.
    pub fn encode_metadata(&self) -> [u8; METADATA_SIZE] {
        let mut out = [0u8; METADATA_SIZE];
        out[0..4].copy_from_slice(&self.aggregation.id().to_be_bytes());
        out[4..8].copy_from_slice(&self.max_retention.to_be_bytes());
        out[8..12].copy_from_slice(&self.x_files_factor.to_bits().to_be_bytes());
        out[12..16].copy_from_slice(&(self.archives.len() as u32).to_be_bytes());
        out
    }

    /// Metadata plus archive infos, exactly as whisper.py writes them.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.header_size() as usize);
        out.extend_from_slice(&self.encode_metadata());
        for a in &self.archives {
            out.extend_from_slice(&a.offset.to_be_bytes());
            out.extend_from_slice(&a.seconds_per_point.to_be_bytes());
            out.extend_from_slice(&a.points.to_be_bytes());
        }
        out
    }

    /// How many archive infos the metadata declares, validated against `MAX_ARCHIVES` and the
    /// file length so the caller knows how many header bytes to read.
    pub fn archive_count(metadata: &[u8], file_len: u64, path: &Path) -> Result<u32> {
        if metadata.len() < METADATA_SIZE || file_len < METADATA_SIZE as u64 {
            return Err(Error::corrupt(
                path,
                "unable to read header: file shorter than 16 bytes",
            ));
        }
        let count = be_u32(metadata, 12);
        if count == 0 {
            return Err(Error::corrupt(path, "header declares zero archives"));
        }
        if count > MAX_ARCHIVES {
            return Err(Error::corrupt(
                path,
                format!("header declares {count} archives"),
            ));
        }
        let header_size = METADATA_SIZE as u64 + ARCHIVE_INFO_SIZE as u64 * u64::from(count);
        if header_size > file_len {
            return Err(Error::corrupt(
                path,
                format!(
                    "header of {count} archives needs {header_size} bytes, file has {file_len}"
                ),
            ));
        }
        Ok(count)
    }

    /// Decodes and validates a full header (`bytes` = metadata + every archive info) of a file
    /// that is `file_len` bytes long. Stricter than whisper.py's `__readHeader`: anything that
    /// would make later offset arithmetic leave an archive is refused here.
    pub fn decode(bytes: &[u8], file_len: u64, path: &Path) -> Result<Header> {
        let count = Self::archive_count(bytes, file_len, path)? as usize;
        let header_size = METADATA_SIZE + ARCHIVE_INFO_SIZE * count;
        if bytes.len() < header_size {
            return Err(Error::corrupt(
                path,
                "unable to read archive metadata: header truncated",
            ));
        }
        let agg_id = be_u32(bytes, 0);
        let aggregation = AggregationMethod::from_id(agg_id)
            .ok_or_else(|| Error::corrupt(path, format!("unknown aggregation type {agg_id}")))?;
        let max_retention = be_u32(bytes, 4);
        let x_files_factor = f32::from_bits(be_u32(bytes, 8));
        if !(0.0..=1.0).contains(&x_files_factor) {
            return Err(Error::corrupt(
                path,
                format!("xFilesFactor {x_files_factor} not in [0, 1]"),
            ));
        }
        let mut archives = Vec::with_capacity(count);
        let mut expected_offset = header_size as u64;
        for i in 0..count {
            let at = METADATA_SIZE + ARCHIVE_INFO_SIZE * i;
            let a = ArchiveInfo {
                offset: be_u32(bytes, at),
                seconds_per_point: be_u32(bytes, at + 4),
                points: be_u32(bytes, at + 8),
            };
            let bad = |why: String| Error::corrupt(path, format!("archive{i}: {why}"));
            if a.seconds_per_point == 0 || a.points == 0 {
                return Err(bad(format!(
                    "{}:{} has a zero field",
                    a.seconds_per_point, a.points
                )));
            }
            if u64::from(a.offset) != expected_offset {
                return Err(bad(format!(
                    "offset {} where {expected_offset} was expected",
                    a.offset
                )));
            }
            if u64::from(a.points) * POINT_SIZE as u64 > u64::from(u32::MAX)
                || u64::from(a.seconds_per_point) * u64::from(a.points) > u64::from(u32::MAX)
            {
                return Err(bad(format!(
                    "{}:{} overflows",
                    a.seconds_per_point, a.points
                )));
            }
            if a.end() > file_len {
                return Err(bad(format!(
                    "ends at byte {} past the end of the {file_len}-byte file",
                    a.end()
                )));
            }
            if let Some(prev) = archives.last() {
                let prev: &ArchiveInfo = prev;
                if a.seconds_per_point <= prev.seconds_per_point
                    || !a.seconds_per_point.is_multiple_of(prev.seconds_per_point)
                {
                    return Err(bad(format!(
                        "precision {} does not follow {} (must be a larger multiple)",
                        a.seconds_per_point, prev.seconds_per_point
                    )));
                }
                if prev.points < a.seconds_per_point / prev.seconds_per_point {
                    return Err(bad(
                        "previous archive has too few points to consolidate into it".into(),
                    ));
                }
            }
            expected_offset = a.end();
            archives.push(a);
        }
        let real_max = archives
            .iter()
            .map(ArchiveInfo::retention)
            .max()
            .unwrap_or(0);
        if real_max != max_retention {
            return Err(Error::corrupt(
                path,
                format!("maxRetention {max_retention} but the archives cover {real_max} seconds"),
            ));
        }
        Ok(Header {
            aggregation,
            max_retention,
            x_files_factor,
            archives,
        })
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregation_ids_follow_whisper_py() {
        for (i, m) in AggregationMethod::ALL.iter().enumerate() {
            assert_eq!(m.id() as usize, i + 1);
            assert_eq!(AggregationMethod::from_id(m.id()), Some(*m));
            assert_eq!(AggregationMethod::from_name(m.name()), Some(*m));
        }
        assert_eq!(AggregationMethod::from_id(0), None);
        assert_eq!(AggregationMethod::from_id(9), None);
        assert_eq!(AggregationMethod::from_name("first"), None);
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Bytes written by python whisper 1.1.10 for `create(p, [(10, 2160), (60, 10080)])`.
    const EXAMPLE: &str =
        "0000000100093a803f00000000000002000000280000000a00000870000065680000003c00002760";

    fn example() -> Header {
        let r = [Retention::new(60, 10080), Retention::new(10, 2160)];
        Header::new(&r, AggregationMethod::Average, 0.5).unwrap()
    }

    #[test]
    fn worked_example_golden_bytes() {
        let h = example();
        assert_eq!(h.encode(), hex(EXAMPLE));
        assert_eq!(h.header_size(), 40);
        assert_eq!(h.file_size(), 146_920);
        assert_eq!(h.max_retention, 604_800);
        assert_eq!(h.archives[1].offset, 25_960);
        assert_eq!(h.archives[0].retention(), 21_600);
        assert_eq!(h.archives[1].size(), 120_960);
        let decoded = Header::decode(&hex(EXAMPLE), 146_920, Path::new("x")).unwrap();
        assert_eq!(decoded, h);
    }

    #[test]
    fn validate_archive_list_applies_whisper_rules() {
        let r = Retention::new;
        let ok = validate_archive_list(&[r(60, 1440), r(10, 360)]).unwrap();
        assert_eq!(ok, vec![r(10, 360), r(60, 1440)]);
        for bad in [
            vec![],
            vec![r(10, 100), r(10, 200)],  // same precision
            vec![r(10, 100), r(15, 1000)], // not a multiple
            vec![r(10, 100), r(60, 10)],   // lower covers less
            vec![r(10, 100), r(60, 16)],   // 960 s is not more than 1000 s
            vec![r(10, 5), r(60, 100)],    // 5 points cannot consolidate 6
            vec![r(0, 10)],
            vec![r(10, 0)],
            vec![r(u32::MAX, 2)],
        ] {
            assert!(
                matches!(validate_archive_list(&bad), Err(Error::InvalidArgument(_))),
                "{bad:?} accepted"
            );
        }
        assert!(Header::new(&[r(10, 10)], AggregationMethod::Sum, f32::NAN).is_err());
        assert!(Header::new(&[r(10, 10)], AggregationMethod::Sum, 1.5).is_err());
    }

    fn corrupt(bytes: &[u8], len: u64) -> String {
        match Header::decode(bytes, len, Path::new("/x.wsp")) {
            Err(Error::Corrupt { path, reason }) => {
                assert_eq!(path, Path::new("/x.wsp"));
                reason
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn corrupt_headers_are_errors() {
        let good = hex(EXAMPLE);
        let set = |at: usize, v: u32| {
            let mut b = good.clone();
            b[at..at + 4].copy_from_slice(&v.to_be_bytes());
            b
        };
        corrupt(&good[..10], 10); // truncated metadata
        corrupt(&good[..30], 30); // truncated archive infos
        corrupt(&good, 146_919); // last archive past EOF
        corrupt(&set(0, 0), 146_920); // aggregation id 0
        corrupt(&set(0, 9), 146_920); // aggregation id 9
        corrupt(&set(8, f32::NAN.to_bits()), 146_920);
        corrupt(&set(8, 2.0f32.to_bits()), 146_920);
        corrupt(&set(8, (-0.5f32).to_bits()), 146_920);
        corrupt(&set(12, 0), 146_920); // zero archives
        corrupt(&set(12, u32::MAX), 146_920); // huge count
        corrupt(&set(12, 3), 146_920); // count beyond the infos present
        corrupt(&set(16, 41), 146_920); // archive0 offset not right after the header
        corrupt(&set(28, 25_961), 146_920); // archives not contiguous
        corrupt(&set(28, u32::MAX), 146_920); // offset past EOF
        corrupt(&set(20, 0), 146_920); // spp 0
        corrupt(&set(24, 0), 146_920); // points 0
        corrupt(&set(32, 10), 146_920); // same precision twice
        corrupt(&set(32, 25), 146_920); // not a multiple
        corrupt(&set(24, u32::MAX), u64::MAX); // size overflows u32
        corrupt(&set(4, 1), 146_920); // maxRetention inconsistent
        let mut ok = set(8, 1.0f32.to_bits());
        assert!(Header::decode(&ok, 146_920, Path::new("x")).is_ok());
        ok = set(8, 0.0f32.to_bits());
        assert!(
            Header::decode(&ok, 200_000, Path::new("x")).is_ok(),
            "longer files are fine"
        );
    }

    #[test]
    fn points_round_trip() {
        let mut b = [0u8; POINT_SIZE];
        encode_point(&mut b, 0x0102_0304, -1.5);
        assert_eq!(b, [1, 2, 3, 4, 0xbf, 0xf8, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode_point(&b), (0x0102_0304, -1.5));
    }
}
