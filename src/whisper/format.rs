//! Byte layout of a whisper file: 16-byte metadata, 12-byte archive infos, 12-byte points,
//! all big-endian (whisper.py's `!2LfL`, `!3L`, `!Ld`).

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
}
