//! `WhisperFile`: one open whisper database with its header cached, so that repeated updates
//! from the persister cost only the point I/O.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::Series;
use super::archive::{Archives, to_u32};
use super::format::{AggregationMethod, Header, METADATA_SIZE, Retention};
use crate::error::{Error, Result};
use crate::points::Point;

/// How `create` allocates the file. The bytes are zeros either way; this only decides whether
/// the blocks are reserved up front.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// Seek to the end and write one byte instead of zero-filling (whisper `sparse=True`).
    pub sparse: bool,
    /// Use posix_fallocate when available (whisper `useFallocate=True`). Without unsafe code
    /// this zero-fills, which reserves the same blocks and yields identical bytes.
    pub fallocate: bool,
}

/// An open whisper file. Not `Sync`-shared by itself: wrap it in a mutex (see `FilePool`) so
/// that one writer at a time touches the file.
#[derive(Debug)]
pub struct WhisperFile {
    path: PathBuf,
    file: File,
    header: Header,
    writable: bool,
    /// Non-zero archive bases seen so far (0 = not yet known); see `archive::Archives`.
    bases: Vec<u32>,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn open_error(path: &Path, e: std::io::Error) -> Error {
    if e.kind() == ErrorKind::NotFound {
        Error::NotFound(path.display().to_string())
    } else {
        Error::io(path, e)
    }
}

impl WhisperFile {
    /// whisper.py `create`: validates the archive list and xff, refuses an existing file, and
    /// writes header + zeroed archives. The file is built under a temporary name in the same
    /// directory and linked into place, so a crash never leaves a half-written database behind
    /// and a concurrent creator cannot be overwritten.
    pub fn create(
        path: &Path,
        retentions: &[Retention],
        aggregation: AggregationMethod,
        x_files_factor: f32,
        opts: CreateOptions,
    ) -> Result<WhisperFile> {
        let header = Header::new(retentions, aggregation, x_files_factor)?;
        if path.symlink_metadata().is_ok() {
            return Err(Error::AlreadyExists(path.to_path_buf()));
        }
        let name = path
            .file_name()
            .ok_or_else(|| Error::invalid(format!("{} has no file name", path.display())))?;
        let tmp = path.with_file_name(format!(
            ".{}.tmp.{}.{}",
            name.to_string_lossy(),
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| open_error(&tmp, e))?;
        let result =
            Self::fill(&file, &tmp, &header, opts).and_then(|()| Self::link_into_place(&tmp, path));
        // The temporary name goes away in every case; on success `path` holds the inode.
        let _ = std::fs::remove_file(&tmp);
        result?;
        let bases = vec![0; header.archives.len()];
        Ok(WhisperFile {
            path: path.to_path_buf(),
            file,
            header,
            writable: true,
            bases,
        })
    }

    fn fill(file: &File, tmp: &Path, header: &Header, opts: CreateOptions) -> Result<()> {
        let io = |e| Error::io(tmp, e);
        file.write_all_at(&header.encode(), 0).map_err(io)?;
        let total = header.file_size();
        if opts.sparse && !opts.fallocate {
            file.set_len(total).map_err(io)?;
        } else {
            const CHUNK: usize = 64 * 1024;
            let zeros = vec![0u8; CHUNK];
            let mut at = header.header_size();
            while at < total {
                let n = (total - at).min(CHUNK as u64) as usize;
                file.write_all_at(&zeros[..n], at).map_err(io)?;
                at += n as u64;
            }
        }
        Ok(())
    }

    fn link_into_place(tmp: &Path, path: &Path) -> Result<()> {
        match std::fs::hard_link(tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                Err(Error::AlreadyExists(path.to_path_buf()))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::io(path, e)),
            // Filesystems without hard links: fall back to rename after a last existence check.
            Err(_) => {
                if path.symlink_metadata().is_ok() {
                    return Err(Error::AlreadyExists(path.to_path_buf()));
                }
                std::fs::rename(tmp, path).map_err(|e| Error::io(path, e))
            }
        }
    }

    /// Opens an existing file for reading and writing; the header is read and validated once.
    pub fn open(path: &Path) -> Result<WhisperFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| open_error(path, e))?;
        Self::from_file(path, file, true)
    }

    /// Opens an existing file for reading only (fetch, info, dump).
    pub fn open_read_only(path: &Path) -> Result<WhisperFile> {
        let file = File::open(path).map_err(|e| open_error(path, e))?;
        Self::from_file(path, file, false)
    }

    fn from_file(path: &Path, file: File, writable: bool) -> Result<WhisperFile> {
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut meta = [0u8; METADATA_SIZE];
        let read = |buf: &mut [u8], at: u64| {
            file.read_exact_at(buf, at).map_err(|e| {
                if e.kind() == ErrorKind::UnexpectedEof {
                    Error::corrupt(path, "unable to read header: file truncated")
                } else {
                    Error::io(path, e)
                }
            })
        };
        if len < METADATA_SIZE as u64 {
            return Err(Error::corrupt(
                path,
                format!("unable to read header: file is {len} bytes"),
            ));
        }
        read(&mut meta, 0)?;
        let count = Header::archive_count(&meta, len, path)?;
        let mut bytes = vec![0u8; METADATA_SIZE + 12 * count as usize];
        read(&mut bytes, 0)?;
        let header = Header::decode(&bytes, len, path)?;
        let bases = vec![0; header.archives.len()];
        Ok(WhisperFile {
            path: path.to_path_buf(),
            file,
            header,
            writable,
            bases,
        })
    }

    /// The path the file was opened or created at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached, validated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    fn archives(&mut self) -> Archives<'_> {
        Archives {
            file: &self.file,
            path: &self.path,
            header: &self.header,
            bases: &mut self.bases,
        }
    }

    fn check_writable(&self) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "{} was opened read-only",
                self.path.display()
            )))
        }
    }

    /// whisper.py `file_update`: stores one value in the most precise archive that covers
    /// `now - timestamp` and propagates it down while propagation succeeds.
    pub fn update(&mut self, value: f64, timestamp: i64, now: i64) -> Result<()> {
        self.check_writable()?;
        let diff = now.saturating_sub(timestamp);
        if !(0..i64::from(self.header.max_retention)).contains(&diff) {
            return Err(Error::TimestampNotCovered(format!(
                "timestamp {timestamp} not covered by any archive of {} at now={now}",
                self.path.display()
            )));
        }
        let index = self
            .header
            .archives
            .iter()
            .position(|a| i64::from(a.retention()) >= diff)
            .unwrap_or(self.header.archives.len() - 1);
        let step = i64::from(self.header.archives[index].seconds_per_point);
        let interval = timestamp - timestamp.rem_euclid(step);
        to_u32(interval)?;
        self.archives().update_one(index, interval, value)
    }

    /// whisper.py `update_many` / `file_update_many`: sorts newest first (stable), hands each
    /// point to the most precise archive whose retention covers its age (future points to
    /// archive 0, points older than every archive are dropped), and commits archive by archive.
    /// For identical timestamps the first received value is kept, as in whisper.py.
    pub fn update_many(&mut self, points: &[Point], now: i64) -> Result<()> {
        self.check_writable()?;
        if points.is_empty() {
            return Ok(());
        }
        let mut sorted: Vec<(i64, f64)> = points.iter().map(|p| (p.timestamp, p.value)).collect();
        sorted.sort_by_key(|p| std::cmp::Reverse(p.0));

        // Split into per-archive batches first, so that a timestamp that cannot be stored fails
        // the call before anything is written.
        let mut batches: Vec<(usize, Vec<(i64, f64)>)> = Vec::new();
        let mut index = 0;
        let count = self.header.archives.len();
        let mut current: Vec<(i64, f64)> = Vec::new();
        'points: for &(t, v) in &sorted {
            let age = now.saturating_sub(t);
            while i64::from(self.header.archives[index].retention()) < age {
                if !current.is_empty() {
                    batches.push((index, std::mem::take(&mut current)));
                }
                index += 1;
                if index == count {
                    break 'points;
                }
            }
            current.push((t, v));
        }
        if index < count && !current.is_empty() {
            batches.push((index, current));
        }
        for (index, batch) in &mut batches {
            batch.reverse();
            let step = i64::from(self.header.archives[*index].seconds_per_point);
            for &(t, _) in batch.iter() {
                to_u32(t - t.rem_euclid(step))?;
            }
        }
        let mut archives = self.archives();
        for (index, batch) in &batches {
            archives.update_many(*index, batch)?;
        }
        Ok(())
    }

    /// whisper.py `file_fetch`: None when the range is wholly in the future or beyond the
    /// maximum retention; otherwise clamps and reads the first archive whose retention covers
    /// `now - from`. `until` defaults to `now`.
    pub fn fetch(&mut self, from: i64, until: Option<i64>, now: i64) -> Result<Option<Series>> {
        self.fetch_inner(from, until, now, None)
    }

    /// `fetch` from archive `archive` (index, highest precision first): whisper.py's
    /// `archiveToSelect`, with the same clamping to the maximum retention.
    pub fn fetch_archive(
        &mut self,
        from: i64,
        until: Option<i64>,
        now: i64,
        archive: usize,
    ) -> Result<Option<Series>> {
        if archive >= self.header.archives.len() {
            return Err(Error::invalid(format!(
                "archive {archive} does not exist ({} has {})",
                self.path.display(),
                self.header.archives.len()
            )));
        }
        self.fetch_inner(from, until, now, Some(archive))
    }

    fn fetch_inner(
        &mut self,
        from: i64,
        until: Option<i64>,
        now: i64,
        archive: Option<usize>,
    ) -> Result<Option<Series>> {
        let mut until = until.unwrap_or(now);
        let mut from = from;
        if from > until {
            return Err(Error::InvalidTimeInterval(format!(
                "from time {from} is after until time {until}"
            )));
        }
        let oldest = now.saturating_sub(i64::from(self.header.max_retention));
        if from > now || until < oldest {
            return Ok(None);
        }
        from = from.max(oldest);
        until = until.min(now);
        let diff = now - from;
        let index = archive.unwrap_or_else(|| {
            self.header
                .archives
                .iter()
                .position(|a| i64::from(a.retention()) >= diff)
                .unwrap_or(self.header.archives.len() - 1)
        });
        self.archives().fetch(index, from, until).map(Some)
    }

    /// whisper.py `setAggregationMethod`: rewrites the metadata block with `m` and, if given,
    /// a new xFilesFactor; returns the previous method.
    pub fn set_aggregation_method(
        &mut self,
        m: AggregationMethod,
        x_files_factor: Option<f32>,
    ) -> Result<AggregationMethod> {
        self.check_writable()?;
        let xff = x_files_factor.unwrap_or(self.header.x_files_factor);
        if !(0.0..=1.0).contains(&xff) {
            return Err(Error::invalid(format!(
                "invalid xFilesFactor {xff}, not between 0 and 1"
            )));
        }
        let mut header = self.header.clone();
        header.aggregation = m;
        header.x_files_factor = xff;
        self.file
            .write_all_at(&header.encode_metadata(), 0)
            .map_err(|e| Error::io(&self.path, e))?;
        let old = std::mem::replace(&mut self.header, header);
        Ok(old.aggregation)
    }

    /// Every slot of archive `index` as stored, in file order (whisper-dump).
    pub fn read_archive(&mut self, index: usize) -> Result<Vec<(u32, f64)>> {
        if index >= self.header.archives.len() {
            return Err(Error::invalid(format!("archive {index} does not exist")));
        }
        self.archives().read_all(index)
    }
}
