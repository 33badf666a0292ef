//! A bounded LRU of open `WhisperFile`s so the persister can reuse descriptors and cached
//! headers without keeping one descriptor per metric (a million metrics would exhaust them).
//!
//! The pool's own lock guards only the map and is never held during I/O; callers lock the
//! per-file mutex for the update. Eviction drops the pool's `Arc` only: a caller still holding
//! the file keeps it open until done. A caller that holds an evicted handle while another
//! thread `get`s the same path will see two handles, so writers that need strict exclusivity
//! across evictions should also serialise by path (the persister's lock stripes).

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use super::file::WhisperFile;
use crate::error::Result;

/// The pool.
pub struct FilePool {
    files: Mutex<LruCache<PathBuf, Arc<Mutex<WhisperFile>>>>,
}

impl std::fmt::Debug for FilePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilePool")
            .field("len", &self.len())
            .finish()
    }
}

impl FilePool {
    /// A pool keeping at most `capacity` files open (at least 1).
    pub fn new(capacity: usize) -> FilePool {
        let cap = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        FilePool {
            files: Mutex::new(LruCache::new(cap)),
        }
    }

    /// The open file for `path`, opening it (read-write) on a miss; `Error::NotFound` if the
    /// file does not exist. The open happens outside the map lock; if two threads race, both
    /// get the handle that reached the map first.
    pub fn get(&self, path: &Path) -> Result<Arc<Mutex<WhisperFile>>> {
        if let Some(f) = self.files.lock().get(path) {
            return Ok(Arc::clone(f));
        }
        let file = WhisperFile::open(path)?;
        let mut files = self.files.lock();
        if let Some(f) = files.get(path) {
            return Ok(Arc::clone(f));
        }
        let f = Arc::new(Mutex::new(file));
        files.put(path.to_path_buf(), Arc::clone(&f));
        Ok(f)
    }

    /// Adds a file just created (or opened) by the caller, replacing any entry for its path.
    pub fn insert(&self, file: WhisperFile) -> Arc<Mutex<WhisperFile>> {
        let path = file.path().to_path_buf();
        let f = Arc::new(Mutex::new(file));
        self.files.lock().put(path, Arc::clone(&f));
        f
    }

    /// Forgets `path` (after it was deleted or replaced on disk).
    pub fn remove(&self, path: &Path) {
        self.files.lock().pop(path);
    }

    /// Files currently held.
    pub fn len(&self) -> usize {
        self.files.lock().len()
    }

    /// Whether no file is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
