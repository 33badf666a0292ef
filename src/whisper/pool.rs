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
use std::time::{Duration, Instant};

use lru::LruCache;
use parking_lot::Mutex;

use super::file::WhisperFile;
use crate::error::Result;

/// How often a pooled file is checked for still having its name (see [`FilePool::cached`]).
pub const NAME_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The pool.
pub struct FilePool {
    files: Mutex<LruCache<PathBuf, Entry>>,
}

/// A pooled file and when its name was last checked.
struct Entry {
    file: Arc<Mutex<WhisperFile>>,
    checked: Instant,
}

impl Entry {
    fn new(file: Arc<Mutex<WhisperFile>>) -> Entry {
        Entry {
            file,
            checked: Instant::now(),
        }
    }
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
        match self.cached(path) {
            Some(f) => Ok(f),
            None => self.open(path),
        }
    }

    /// `get` for a caller that has just seen [`FilePool::cached`] miss: opens `path` and adds
    /// it, unless another thread added it meanwhile.
    pub fn open(&self, path: &Path) -> Result<Arc<Mutex<WhisperFile>>> {
        let file = WhisperFile::open(path)?;
        let mut files = self.files.lock();
        if let Some(e) = files.get(path) {
            return Ok(Arc::clone(&e.file));
        }
        let f = Arc::new(Mutex::new(file));
        let evicted = files.push(path.to_path_buf(), Entry::new(Arc::clone(&f)));
        drop(files);
        drop(evicted);
        Ok(f)
    }

    /// The open file for `path` if the pool holds it and it still has that name; None
    /// otherwise. An open file outlives its name: deleted (an operator resetting a metric
    /// whose schema changed) or replaced by a rename (whisper-resize.py), it would swallow
    /// every later point. carbon and go-carbon open the path for each write; a pooled file
    /// is checked instead, with one `fstat` at most every [`NAME_CHECK_INTERVAL`], and
    /// dropped when its name is gone, so the caller opens or creates the file anew.
    pub fn cached(&self, path: &Path) -> Option<Arc<Mutex<WhisperFile>>> {
        let (file, check) = {
            let mut files = self.files.lock();
            let e = files.get_mut(path)?;
            let now = Instant::now();
            let check = now.saturating_duration_since(e.checked) >= NAME_CHECK_INTERVAL;
            if check {
                e.checked = now;
            }
            (Arc::clone(&e.file), check)
        };
        // A failed fstat says nothing about the name: keep the file, its next I/O reports.
        if check && file.lock().is_unlinked().unwrap_or(false) {
            let mut files = self.files.lock();
            let stale = files
                .peek(path)
                .is_some_and(|e| Arc::ptr_eq(&e.file, &file))
                .then(|| files.pop(path));
            drop(files);
            drop(stale);
            return None;
        }
        Some(file)
    }

    /// Adds a file just created (or opened) by the caller, replacing any entry for its path.
    pub fn insert(&self, file: WhisperFile) -> Arc<Mutex<WhisperFile>> {
        let path = file.path().to_path_buf();
        let f = Arc::new(Mutex::new(file));
        let evicted = self.files.lock().push(path, Entry::new(Arc::clone(&f)));
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

    /// Makes the pool's entry for `path` due for its name check.
    fn age(pool: &FilePool, path: &Path) {
        let mut files = pool.files.lock();
        let e = files.get_mut(path).unwrap();
        e.checked = Instant::now().checked_sub(NAME_CHECK_INTERVAL).unwrap();
    }

    #[test]
    fn a_file_deleted_or_renamed_over_is_dropped_at_its_next_check() {
        let dir = tempfile::tempdir().unwrap();
        let pool = FilePool::new(8);
        let a = dir.path().join("a.wsp");
        drop(make(dir.path(), "a.wsp"));
        let first = pool.get(&a).unwrap();
        // Still linked: the check keeps the handle.
        age(&pool, &a);
        assert!(Arc::ptr_eq(&first, &pool.cached(&a).unwrap()));
        // Replaced the way whisper-resize.py does it: a new file renamed over the name.
        let b = WhisperFile::create(
            &dir.path().join("b.wsp"),
            &[Retention::new(60, 10)],
            AggregationMethod::Max,
            0.0,
            CreateOptions::default(),
        )
        .unwrap();
        std::fs::rename(b.path(), &a).unwrap();
        // Between two checks the old handle is served (at most NAME_CHECK_INTERVAL).
        assert!(Arc::ptr_eq(&first, &pool.cached(&a).unwrap()));
        age(&pool, &a);
        assert!(
            pool.cached(&a).is_none(),
            "the renamed-over file is dropped"
        );
        let second = pool.get(&a).unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(second.lock().header().archives[0].seconds_per_point, 60);
        // Deleted: dropped, and the path reads as missing.
        std::fs::remove_file(&a).unwrap();
        age(&pool, &a);
        assert!(pool.cached(&a).is_none());
        assert_eq!(pool.len(), 0);
        assert!(matches!(pool.get(&a), Err(Error::NotFound(_))));
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
