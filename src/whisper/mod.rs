//! The whisper engine: Graphite's round-robin file format, byte-compatible with
//! `whisper` 1.1.x (graphite-project/whisper `whisper.py`).
//!
//! `format` holds the byte layout and header validation, `archive` the read/write/propagate
//! logic, `file` the `WhisperFile` handle, `pool` the LRU of open files, `map` the read-only
//! memory map that serves reads (the only `unsafe` here; see its docs).

pub mod archive;
pub mod file;
pub mod format;
#[allow(unsafe_code)]
mod map;
pub mod pool;

pub use file::{CreateOptions, WhisperFile};
pub use format::{AggregationMethod, ArchiveInfo, Header, Retention, validate_archive_list};
pub use pool::{FilePool, NAME_CHECK_INTERVAL};

/// A fetched window, whisper.py's `((fromInterval, untilInterval, step), values)` with NaN
/// where whisper.py returns None. The default (all zero, no values) is what a fetch of a
/// window outside every archive gives, where whisper.py returns None.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    /// First interval (inclusive).
    pub from: i64,
    /// End interval (exclusive).
    pub until: i64,
    /// Seconds per value.
    pub step: i64,
    /// `(until - from) / step` values, NaN for gaps. Exception kept from whisper.py: a range
    /// longer than the archive (only with `fetch_archive`) yields that length modulo the
    /// archive's point count (1..=points) values.
    pub values: Vec<f64>,
}
