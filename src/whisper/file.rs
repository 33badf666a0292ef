//! `WhisperFile`: one open whisper database with its header cached.

/// How `create` allocates the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// Seek to the end and write one byte instead of zero-filling (whisper `sparse=True`).
    pub sparse: bool,
    /// Use posix_fallocate when available (whisper `useFallocate=True`).
    pub fallocate: bool,
}

/// An open whisper file.
#[derive(Debug)]
pub struct WhisperFile {}
