//! The whisper engine: Graphite's round-robin file format, byte-compatible with
//! `whisper` 1.1.x (graphite-project/whisper `whisper.py`).
//!
//! CONTRACT (skeleton, to be implemented): the public names below are what the rest of the
//! crate builds on. `format` holds the byte layout, `archive` the read/write/propagate logic,
//! `file` the `WhisperFile` handle, `pool` the LRU of open files.

pub mod archive;
pub mod file;
pub mod format;
pub mod pool;

pub use file::{CreateOptions, WhisperFile};
pub use format::{AggregationMethod, ArchiveInfo, Header, Retention};
pub use pool::FilePool;

/// A fetched window, whisper.py's `((fromInterval, untilInterval, step), values)` with NaN
/// where whisper.py returns None.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// First interval (inclusive).
    pub from: i64,
    /// End interval (exclusive).
    pub until: i64,
    /// Seconds per value.
    pub step: i64,
    /// `(until - from) / step` values; NaN for gaps.
    pub values: Vec<f64>,
}
