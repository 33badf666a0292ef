//! A bounded LRU of open `WhisperFile`s so the persister can reuse descriptors and headers.

/// The pool.
#[derive(Debug)]
pub struct FilePool {}
