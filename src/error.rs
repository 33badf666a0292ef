//! One error type for the crate; `Error::code` maps it to the C ABI's `carbon_error`.

use std::path::PathBuf;

/// Everything that can go wrong in carbonlite. Bad input is always one of these, never a panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument the caller passed is unusable (bad retention, bad name, NULL pointer …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A metric name that could leave the data dir or is not a valid path.
    #[error("invalid metric name {name:?}: {reason}")]
    InvalidName {
        /// The name as received (possibly truncated for display).
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// A plaintext/pickle line that could not be parsed.
    #[error("malformed line {line:?}: {reason}")]
    Parse {
        /// The offending line (truncated to 400 bytes, as carbon logs it).
        line: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration file or option text that is invalid.
    #[error("{file}:{line}: {message}")]
    Config {
        /// The file (or `<options>` for inline text).
        file: String,
        /// 1-based line number, 0 when unknown.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A whisper file whose bytes do not describe a valid whisper database.
    #[error("corrupt whisper file {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What failed validation.
        reason: String,
    },
    /// `create` on a path that already exists.
    #[error("whisper file {0} already exists")]
    AlreadyExists(PathBuf),
    /// No such metric or file.
    #[error("not found: {0}")]
    NotFound(String),
    /// Timestamp outside what the file can hold (whisper.py's TimestampNotCovered).
    #[error("timestamp not covered: {0}")]
    TimestampNotCovered(String),
    /// `from > until` (whisper.py's InvalidTimeInterval).
    #[error("invalid time interval: {0}")]
    InvalidTimeInterval(String),
    /// The cache is at `max-size` and the overflow policy refused points.
    #[error("cache or journal full (max-size): {accepted} points accepted, {refused} refused")]
    Full {
        /// Points taken before the cache filled.
        accepted: u64,
        /// Points refused.
        refused: u64,
    },
    /// The handle is closed or shutting down.
    #[error("closed")]
    Closed,
    /// An operating-system I/O failure, with the path it concerned.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A corruption error about `path`.
    pub fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// An invalid-argument error.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    /// Whether this is a full disk or quota failure (ENOSPC / EDQUOT), which callers retry.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc::ENOSPC) | Some(libc::EDQUOT)
            ),
            _ => false,
        }
    }
}
