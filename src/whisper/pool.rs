//! A bounded LRU of open `WhisperFile`s so the persister can reuse descriptors and cached
//! headers without keeping one descriptor per metric (a million metrics would exhaust them).
//! Each open file also holds one read-only memory map (see `map`), so the capacity bounds the
//! process's maps too: keep it well below `vm.max_map_count` (65530 by default on Linux); past
//! that limit new files fall back to pread rather than fail.
//!
//! The pool's own lock guards only the map and is never held during I/O (an evicted file is
//! closed and unmapped after the lock is released); callers lock the
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
        if let Some(f) = self.cached(path) {
            return Ok(f);
        }
        let file = WhisperFile::open(path)?;
        let mut files = self.files.lock();
        if let Some(f) = files.get(path) {
            return Ok(Arc::clone(f));
        }
        let f = Arc::new(Mutex::new(file));
        let evicted = files.push(path.to_path_buf(), Arc::clone(&f));
        drop(files);
        drop(evicted);
        Ok(f)
    }

    /// The open file for `path` if the pool holds it; never touches the disk.
    pub fn cached(&self, path: &Path) -> Option<Arc<Mutex<WhisperFile>>> {
        self.files.lock().get(path).map(Arc::clone)
    }

    /// Adds a file just created (or opened) by the caller, replacing any entry for its path.
    pub fn insert(&self, file: WhisperFile) -> Arc<Mutex<WhisperFile>> {
        let path = file.path().to_path_buf();
        let f = Arc::new(Mutex::new(file));
        let evicted = self.files.lock().push(path, Arc::clone(&f));
        drop(evicted);
        f
    }

    /// Forgets `path` (after it was deleted or replaced on disk).
    pub fn remove(&self, path: &Path) {
        let closed = self.files.lock().pop(path);
        drop(closed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::whisper::{AggregationMethod, CreateOptions, Retention};

    fn make(dir: &Path, name: &str) -> WhisperFile {
        let path = dir.join(name);
        WhisperFile::create(
            &path,
            &[Retention::new(10, 6)],
            AggregationMethod::Average,
            0.5,
            CreateOptions::default(),
        )
        .unwrap()
    }

    #[test]
    fn get_reuses_handles_and_evicts_least_recent() {
        let dir = tempfile::tempdir().unwrap();
        let pool = FilePool::new(2);
        let names = ["a.wsp", "b.wsp", "c.wsp"];
        for n in names {
            drop(make(dir.path(), n));
        }
        let a1 = pool.get(&dir.path().join("a.wsp")).unwrap();
        let a2 = pool.get(&dir.path().join("a.wsp")).unwrap();
        assert!(Arc::ptr_eq(&a1, &a2));
        pool.get(&dir.path().join("b.wsp")).unwrap();
        pool.get(&dir.path().join("a.wsp")).unwrap(); // a is now most recent
        pool.get(&dir.path().join("c.wsp")).unwrap(); // evicts b
        assert_eq!(pool.len(), 2);
        let a3 = pool.get(&dir.path().join("a.wsp")).unwrap();
        assert!(Arc::ptr_eq(&a1, &a3), "a survived eviction");
        // The evicted handle stays usable by whoever holds it.
        let now = 1_700_000_000;
        a1.lock().update(1.0, now, now).unwrap();
        pool.remove(&dir.path().join("a.wsp"));
        assert_eq!(pool.len(), 1);
        assert!(matches!(
            pool.get(&dir.path().join("missing.wsp")),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn insert_replaces_and_capacity_zero_is_one() {
        let dir = tempfile::tempdir().unwrap();
        let pool = FilePool::new(0);
        let f = pool.insert(make(dir.path(), "x.wsp"));
        assert!(Arc::ptr_eq(&f, &pool.get(f.lock().path()).unwrap()));
        pool.insert(make(dir.path(), "y.wsp"));
        assert_eq!(pool.len(), 1);
        assert!(!pool.is_empty());
    }
}
