//! Persister workers: pop a metric's points from the cache, write them with whisper
//! update_many, confirm (go-carbon `persister/whisper.go`).
//!
//! Nothing is dropped here: a metric whose file may not be created yet (throttled) or cannot
//! be written (I/O error, full disk, corrupt file) goes back into the cache with a retry time
//! and the failure is counted; every other metric goes on.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::cache::Batch;
use crate::engine::Shared;
use crate::error::{Error, Result};
use crate::points::unix_now;
use crate::whisper::{CreateOptions, WhisperFile};

/// Longest wait before a failing file is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// First wait after a failure.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait after a full disk: a retry costs one failed syscall, and space usually comes
/// back all at once (a file deleted, a volume grown), so points should follow within seconds.
const MAX_DISK_FULL_BACKOFF: Duration = Duration::from_secs(2);
/// Lock stripes keyed by file path. The cache keeps one batch per metric in flight, but two
/// names can share a file (`a..b` and `a.b` both live in `a/b.wsp`) and the pool may hand out
/// a second handle after evicting the first: the stripe keeps one writer per file regardless
/// (go-carbon's `storeMutex`).
const STRIPES: usize = 4096;

/// The workers' shared state: throttles and the pipeline.
#[derive(Debug)]
pub(crate) struct Persister {
    shared: Arc<Shared>,
    updates: Option<Mutex<RateLimiter>>,
    creates: Option<Mutex<RateLimiter>>,
    /// Consecutive failures per metric decide its backoff; small, bounded by failing metrics.
    failures: Mutex<std::collections::HashMap<Arc<str>, u32>>,
    /// One writer per file: see [`STRIPES`].
    stripes: Box<[Mutex<()>]>,
    /// Directories known to exist, so that a new file costs as few path walks as possible.
    dirs: KnownDirs,
}

/// Most directories [`KnownDirs`] remembers before it starts over (8 bytes each).
const KNOWN_DIRS_MAX: usize = 1 << 20;

/// The data dir's directories that this process made or found, by a hash of their path.
///
/// A metric's first write needs its directory. Asking the disk each time costs a path walk:
/// carbon and go-carbon look the file up, then make its directories, then create it. Here a
/// known directory is not made again (in a tree of many metrics per directory that saves a
/// failing `mkdir` per new file), and a directory that `make` has just made holds no file, so
/// the failing open before the create is skipped too (W1's tree has a directory per metric).
/// A wrong answer costs a syscall, never a wrong result: a hash collision or a directory
/// removed behind our back makes the create fail with not-found, and the caller makes the
/// directory again; a directory made by someone else reads as existing.
#[derive(Debug, Default)]
struct KnownDirs {
    set: Mutex<std::collections::HashSet<u64>>,
}

impl KnownDirs {
    /// Makes sure `dir` exists; true if this call made it (so it was empty just now).
    fn make(&self, dir: &Path) -> Result<bool> {
        let key = path_hash(dir);
        if self.set.lock().contains(&key) {
            return Ok(false);
        }
        let made = match std::fs::create_dir(dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            // A parent is missing too: make the whole chain. A racing maker of `dir` is
            // possible here, so report it as found, not made.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                false
            }
            Err(e) => return Err(Error::io(dir, e)),
        };
        self.insert(key);
        Ok(made)
    }

    fn forget(&self, dir: &Path) {
        self.set.lock().remove(&path_hash(dir));
    }

    fn insert(&self, key: u64) {
        let mut set = self.set.lock();
        if set.len() >= KNOWN_DIRS_MAX {
            set.clear();
        }
        set.insert(key);
    }
}

/// A token bucket refilled continuously, burst = one second's worth.
#[derive(Debug)]
struct RateLimiter {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    fn new(per_second: u32) -> Self {
        RateLimiter {
            rate: per_second as f64,
            tokens: per_second as f64,
            last: Instant::now(),
        }
    }

    /// Takes a token, or says how long until one is there.
    fn try_take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate)
            .min(self.rate.max(1.0));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

enum Outcome {
    Written(usize),
    Throttled(Duration),
}

impl Persister {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let w = &shared.config.whisper;
        let limiter = |n: u32| (n > 0).then(|| Mutex::new(RateLimiter::new(n)));
        Persister {
            updates: limiter(w.max_updates_per_second),
            creates: limiter(w.max_creates_per_second),
            failures: Mutex::new(Default::default()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            dirs: KnownDirs::default(),
            shared,
        }
    }

    /// One worker's loop; returns when the engine shuts down.
    pub(crate) fn run(&self) {
        while !self.shared.shutdown.load(Relaxed) {
            let Some(batch) = self.shared.cache.pop_wait(Duration::from_millis(100)) else {
                continue;
            };
            if let Some(limiter) = &self.updates {
                loop {
                    let wait = limiter.lock().try_take();
                    match wait {
                        Ok(()) => break,
                        Err(d) => std::thread::sleep(d.min(Duration::from_millis(100))),
                    }
                }
            }
            // A panic in one file's update costs a counter, not the worker.
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| self.write(&batch)))
                .unwrap_or_else(|_| {
                    Err(Error::invalid(format!(
                        "{}: panic while writing",
                        batch.name
                    )))
                });
            match result {
                Ok(Outcome::Written(n)) => {
                    let s = &self.shared.stats;
                    s.update_operations.fetch_add(1, Relaxed);
                    s.committed_points.fetch_add(n as u64, Relaxed);
                    if !self.failures.lock().is_empty() {
                        self.failures.lock().remove(&batch.name);
                    }
                    self.shared.cache.confirm(batch);
                }
                Ok(Outcome::Throttled(wait)) => {
                    self.shared.stats.throttled_creates.fetch_add(1, Relaxed);
                    self.shared
                        .cache
                        .requeue(batch, Some(Instant::now() + wait));
                }
                Err(e) => self.failed(batch, e),
            }
        }
    }

    fn write(&self, batch: &Batch) -> Result<Outcome> {
        let path = self.shared.metric_path(&batch.name)?;
        let _one_writer = self.stripes[stripe_of(&path)].lock();
        let file = match self.shared.pool.cached(&path) {
            Some(f) => f,
            None => {
                // A directory made just now holds no file yet: no need to try opening one.
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
                let made_dir = match dir {
                    Some(d) => self.dirs.make(d)?,
                    None => false,
                };
                let opened = if made_dir {
                    None
                } else {
                    match self.shared.pool.open(&path) {
                        Ok(f) => Some(f),
                        Err(Error::NotFound(_)) => None,
                        Err(e) => return Err(e),
                    }
                };
                match opened {
                    Some(f) => f,
                    None => match self.create(batch, &path, dir)? {
                        Some(outcome) => return Ok(outcome),
                        // Another worker (or process) created it first: use theirs.
                        None => self.shared.pool.open(&path)?,
                    },
                }
            }
        };
        let mut f = file.lock();
        f.update_many(&batch.points, unix_now())?;
        Ok(Outcome::Written(batch.points.len()))
    }

    /// Creates the metric's file in `dir` (which exists, or is believed to) with the batch in
    /// it; None if the file turned out to exist already.
    fn create(&self, batch: &Batch, path: &Path, dir: Option<&Path>) -> Result<Option<Outcome>> {
        if let Some(limiter) = &self.creates {
            let wait = limiter.lock().try_take();
            if let Err(d) = wait {
                return Ok(Some(Outcome::Throttled(d)));
            }
        }
        let rules = self.shared.rules.rules_for(&batch.name);
        // Full creation reserves the blocks with fallocate (carbon's
        // WHISPER_FALLOCATE_CREATE, Debian's default) instead of writing zeros.
        let sparse = self.shared.config.whisper.sparse_create;
        let opts = CreateOptions {
            sparse,
            fallocate: !sparse,
        };
        // The file is written once, with the batch in it (see `create_with`).
        let create = || {
            WhisperFile::create_with(
                path,
                &rules.retentions,
                rules.aggregation,
                rules.x_files_factor,
                opts,
                &batch.points,
                unix_now(),
            )
        };
        let created = match (create(), dir) {
            // The directory was known but is gone (removed behind our back): make it again.
            (Err(Error::NotFound(_)), Some(d)) => {
                self.dirs.forget(d);
                self.dirs.make(d)?;
                create()
            }
            (result, _) => result,
        };
        match created {
            Ok(f) => {
                self.shared.stats.created.fetch_add(1, Relaxed);
                self.shared.pool.insert(f);
                Ok(Some(Outcome::Written(batch.points.len())))
            }
            Err(Error::AlreadyExists(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn failed(&self, batch: Batch, e: Error) {
        let s = &self.shared.stats;
        match &e {
            Error::Corrupt { .. } => s.corrupt_files.fetch_add(1, Relaxed),
            _ if e.is_disk_full() => {
                s.disk_full_errors.fetch_add(1, Relaxed);
                s.write_errors.fetch_add(1, Relaxed)
            }
            _ => s.write_errors.fetch_add(1, Relaxed),
        };
        if let Ok(path) = self.shared.metric_path(&batch.name) {
            // A corrupt or replaced file must be re-read, not served from the pool.
            self.shared.pool.remove(&path);
            if matches!(e, Error::Corrupt { .. }) && self.shared.config.whisper.quarantine_corrupt {
                match self.quarantine(&path) {
                    Ok(to) => {
                        s.quarantined.fetch_add(1, Relaxed);
                        *self.shared.last_write_error.lock() =
                            Some(format!("{e}; moved to {}", to.display()));
                        // The points create a fresh file right away.
                        self.shared.cache.requeue(batch, None);
                        return;
                    }
                    Err(q) => {
                        *self.shared.last_write_error.lock() =
                            Some(format!("{e}; quarantine failed: {q}"));
                        s.write_errors.fetch_add(1, Relaxed);
                    }
                }
            }
        }
        *self.shared.last_write_error.lock() = Some(e.to_string());
        let n = {
            let mut f = self.failures.lock();
            let n = f.entry(batch.name.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let cap = if e.is_disk_full() {
            MAX_DISK_FULL_BACKOFF
        } else {
            MAX_BACKOFF
        };
        let backoff = MIN_BACKOFF.saturating_mul(1 << n.min(8)).min(cap);
        self.shared
            .cache
            .requeue(batch, Some(Instant::now() + backoff));
    }
}

impl Persister {
    /// Moves a corrupt file to `<data-dir>/.corrupt/<relative path>` (a numbered name if one
    /// is already there), under the file's stripe lock so no writer has it open meanwhile.
    fn quarantine(&self, path: &std::path::Path) -> Result<std::path::PathBuf> {
        let _one_writer = self.stripes[stripe_of(path)].lock();
        let root = &self.shared.config.whisper.data_dir;
        let rel = path.strip_prefix(root).unwrap_or(path);
        let mut to = root.join(".corrupt").join(rel);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut n = 0;
        while to.symlink_metadata().is_ok() {
            n += 1;
            to = to.with_file_name(format!(
                "{}.{n}",
                rel.file_name().unwrap_or_default().to_string_lossy()
            ));
        }
        std::fs::rename(path, &to).map_err(|e| Error::io(path, e))?;
        self.shared.pool.remove(path);
        Ok(to)
    }
}

fn stripe_of(path: &Path) -> usize {
    path_hash(path) as usize % STRIPES
}

/// The hash that lock stripes and [`KnownDirs`] key paths by.
fn path_hash(path: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dirs_say_when_a_directory_was_made_just_now() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = KnownDirs::default();
        let a = tmp.path().join("a");
        assert!(dirs.make(&a).unwrap(), "made now");
        assert!(!dirs.make(&a).unwrap(), "known");
        // Found, not made: another process may have put files in it.
        let found = tmp.path().join("found");
        std::fs::create_dir(&found).unwrap();
        assert!(!dirs.make(&found).unwrap());
        // Missing parents are made too, but a racing maker cannot be ruled out there.
        let deep = tmp.path().join("x/y/z");
        assert!(!dirs.make(&deep).unwrap());
        assert!(deep.is_dir());
        // Removed behind our back: known until forgotten, then found missing and made.
        std::fs::remove_dir(&a).unwrap();
        assert!(!dirs.make(&a).unwrap());
        dirs.forget(&a);
        assert!(dirs.make(&a).unwrap());
        // A file where the directory should be is an error naming it.
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = dirs.make(&file.join("sub")).unwrap_err();
        assert!(e.to_string().contains("file"), "{e}");
    }

    #[test]
    fn rate_limiter_spends_then_waits() {
        let mut r = RateLimiter::new(2);
        assert!(r.try_take().is_ok());
        assert!(r.try_take().is_ok());
        let wait = r.try_take().unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
    }
}
