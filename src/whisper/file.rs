//! `WhisperFile`: one open whisper database with its header cached, so that repeated updates
//! from the persister cost only the point I/O.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::Series;
use super::archive::{Archives, Scratch, to_u32, with_scratch};
use super::format::{AggregationMethod, ArchiveInfo, Header, METADATA_SIZE, Retention};
use super::map::{FileMap, Staged, View};
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
    /// Serves reads; writes go through `file`. Maps the header-validated extent.
    map: FileMap,
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
    /// writes header + zeroed archives. The file is built unnamed (Linux `O_TMPFILE`) or under
    /// a temporary name in the same directory, and linked into place, so a crash never leaves a
    /// half-written database behind and a concurrent creator cannot be overwritten.
    pub fn create(
        path: &Path,
        retentions: &[Retention],
        aggregation: AggregationMethod,
        x_files_factor: f32,
        opts: CreateOptions,
    ) -> Result<WhisperFile> {
        Self::create_with(path, retentions, aggregation, x_files_factor, opts, &[], 0)
    }

    /// `create` followed by `update_many(first, now)`, with the same bytes as a result, but
    /// the update is applied to the new file's image in memory and written with the header,
    /// before the file gets its name. The persister creates a file for a metric's first points:
    /// this way the file appears with them, in two or three writes, and nothing reads its
    /// holes. An update that fails its checks fails the call, and no file is created.
    pub fn create_with(
        path: &Path,
        retentions: &[Retention],
        aggregation: AggregationMethod,
        x_files_factor: f32,
        opts: CreateOptions,
        first: &[Point],
        now: i64,
    ) -> Result<WhisperFile> {
        let header = Header::new(retentions, aggregation, x_files_factor)?;
        let name = path
            .file_name()
            .ok_or_else(|| Error::invalid(format!("{} has no file name", path.display())))?;
        let image = RefCell::new(Staged::starting_with(header.encode()));
        let mut bases = vec![0; header.archives.len()];
        let io = View::staged(&image, header.file_size(), path);
        with_scratch(|scratch| update_with(&header, &mut bases, scratch, first, now, || Ok(io)))?;
        let image = image.into_inner();
        let file = match Self::create_anonymous(path, &header, &image, opts)? {
            Some(file) => file,
            None => {
                if path.symlink_metadata().is_ok() {
                    return Err(Error::AlreadyExists(path.to_path_buf()));
                }
                Self::create_named_temp(path, name, &header, &image, opts)?
            }
        };
        let map = FileMap::later(header.file_size());
        Ok(Self::with_header(path, file, header, true, map, bases))
    }

    /// Linux: builds the file as an unnamed inode in the target directory (`O_TMPFILE`) and
    /// gives it its name with one `linkat`, which fails if the name exists. One name operation
    /// instead of the three of [`Self::create_named_temp`] (create the temporary name, link,
    /// unlink), and a crash at any point leaves no name at all. `None` when the file system or
    /// kernel has no `O_TMPFILE`, or no way to link it works here (see [`link_unnamed`]): then
    /// the caller uses the named temporary file.
    ///
    /// No existence check up front: `linkat` refuses an existing name anyway, and a lookup per
    /// create is measurable when creating thousands of files (callers like the persister have
    /// just seen the open fail). An existing name thus costs a wasted unnamed file, and a
    /// failed fill reports `AlreadyExists` if the name exists, as the check would have.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn create_anonymous(
        path: &Path,
        header: &Header,
        image: &Staged,
        opts: CreateOptions,
    ) -> Result<Option<File>> {
        use rustix::fs::{CWD, Mode, OFlags};
        use std::sync::atomic::Ordering::Relaxed;
        if LINK.load(Relaxed) == link::OFF {
            return Ok(None);
        }
        let dir = match path.parent() {
            Some(d) if d.as_os_str().is_empty() => Path::new("."),
            Some(d) => d,
            None => return Ok(None),
        };
        let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(CWD, dir, flags, Mode::from_raw_mode(0o666)) {
            Ok(fd) => fd,
            // No O_TMPFILE here: old kernels see a directory open (EISDIR), file systems
            // without it say EOPNOTSUPP, and EINVAL covers unknown flag combinations.
            Err(e)
                if e == rustix::io::Errno::OPNOTSUPP
                    || e == rustix::io::Errno::ISDIR
                    || e == rustix::io::Errno::INVAL =>
            {
                return Ok(None);
            }
            Err(e) => return Err(open_error(dir, e.into())),
        };
        let file = File::from(fd);
        if let Err(e) = Self::fill(&file, path, header, image, opts) {
            if path.symlink_metadata().is_ok() {
                return Err(Error::AlreadyExists(path.to_path_buf()));
            }
            return Err(e);
        }
        Ok(link_unnamed(&file, dir, path)?.then_some(file))
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn create_anonymous(
        _: &Path,
        _: &Header,
        _: &Staged,
        _: CreateOptions,
    ) -> Result<Option<File>> {
        Ok(None)
    }

    /// The portable way: build the file under a temporary name beside `path`, hard-link it
    /// into place (which refuses an existing name), remove the temporary name.
    fn create_named_temp(
        path: &Path,
        name: &std::ffi::OsStr,
        header: &Header,
        image: &Staged,
        opts: CreateOptions,
    ) -> Result<File> {
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
        let result = Self::fill(&file, &tmp, header, image, opts)
            .and_then(|()| Self::link_into_place(&tmp, path));
        // The temporary name goes away in every case; on success `path` holds the inode.
        let _ = std::fs::remove_file(&tmp);
        result?;
        Ok(file)
    }

    /// Sizes the new file (sparse, fallocated or zero-filled), then writes `image`: the header
    /// and any first points.
    fn fill(
        file: &File,
        tmp: &Path,
        header: &Header,
        image: &Staged,
        opts: CreateOptions,
    ) -> Result<()> {
        let io = |e| Error::io(tmp, e);
        let total = header.file_size();
        if opts.sparse && !opts.fallocate {
            file.set_len(total).map_err(io)?;
        } else {
            Self::allocate(file, tmp, header, opts)?;
        }
        for (at, bytes) in image.regions() {
            file.write_all_at(bytes, at).map_err(io)?;
        }
        Ok(())
    }

    /// Full creation: the archives' blocks reserved, or written as zeros.
    fn allocate(file: &File, tmp: &Path, header: &Header, opts: CreateOptions) -> Result<()> {
        let io = |e| Error::io(tmp, e);
        let total = header.file_size();
        let data_len = total - header.header_size();
        // whisper.py's `useFallocate`: the blocks are reserved (so a full disk shows here, not
        // at a later write) without writing 600 KB of zeros per file; the bytes read back as
        // zeros, identical to a zero-filled file.
        let allocated = opts.fallocate
            && match rustix::fs::fallocate(
                file,
                rustix::fs::FallocateFlags::empty(),
                header.header_size(),
                data_len,
            ) {
                Ok(()) => true,
                Err(e) if e == rustix::io::Errno::NOSPC || e == rustix::io::Errno::DQUOT => {
                    return Err(io(std::io::Error::from(e)));
                }
                // Filesystems without fallocate: zero-fill instead, as whisper.py does.
                Err(_) => false,
            };
        if !allocated {
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
        let map = FileMap::new(&file, header.file_size());
        let bases = vec![0; header.archives.len()];
        Ok(Self::with_header(path, file, header, writable, map, bases))
    }

    /// An open file whose header has been built or validated, with its map (made now or at
    /// the first operation) and the archive bases known so far (zeros for none).
    fn with_header(
        path: &Path,
        file: File,
        header: Header,
        writable: bool,
        map: FileMap,
        bases: Vec<u32>,
    ) -> WhisperFile {
        WhisperFile {
            path: path.to_path_buf(),
            file,
            map,
            header,
            writable,
            bases,
        }
    }

    /// The path the file was opened or created at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether no name leads to this open file any more: it was deleted, or another file was
    /// renamed over it (whisper-resize.py, an operator restoring a copy). Writes to it would
    /// be lost with it, so holders of long-lived handles (the pool) check this and reopen.
    pub fn is_unlinked(&self) -> Result<bool> {
        let st = rustix::fs::fstat(&self.file).map_err(|e| Error::io(&self.path, e.into()))?;
        Ok(st.st_nlink == 0)
    }

    /// The cached, validated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Runs `op` on the archives, with this thread's buffers; fails with `Error::Corrupt`,
    /// before any I/O, if the file is now shorter than its header says (see `map`).
    fn with_archives<R>(&mut self, op: impl FnOnce(&mut Archives<'_>) -> Result<R>) -> Result<R> {
        let io = self.map.view(&self.file, &self.path)?;
        with_scratch(|scratch| {
            op(&mut Archives {
                io,
                header: &self.header,
                bases: &mut self.bases,
                scratch,
            })
        })
    }

    /// Whether reads are served from a memory map (false: the pread fallback).
    #[cfg(test)]
    pub(crate) fn is_mapped(&self) -> bool {
        self.map.is_mapped()
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
        self.with_archives(|a| a.update_one(index, interval, value))
    }

    /// whisper.py `update_many` / `file_update_many`: sorts newest first (stable), hands each
    /// point to the most precise archive whose retention covers its age (future points to
    /// archive 0, points older than every archive are dropped), and commits archive by archive.
    /// For identical timestamps the first received value is kept, as in whisper.py.
    pub fn update_many(&mut self, points: &[Point], now: i64) -> Result<()> {
        self.check_writable()?;
        let Self {
            path,
            file,
            map,
            header,
            bases,
            ..
        } = self;
        with_scratch(|scratch| {
            update_with(header, bases, scratch, points, now, || map.view(file, path))
        })
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
        self.with_archives(|a| a.fetch(index, from, until))
            .map(Some)
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
        self.with_archives(|a| a.read_all(index))
    }
}

/// How this process gives an unnamed (`O_TMPFILE`) file its name, learnt at the first create.
#[cfg(any(target_os = "linux", target_os = "android"))]
mod link {
    pub const UNKNOWN: u8 = 0;
    /// `linkat(fd, "", AT_EMPTY_PATH)`: Linux 6.10+ allows it for a descriptor the caller
    /// opened, older kernels only with `CAP_DAC_READ_SEARCH`.
    pub const EMPTY_PATH: u8 = 1;
    /// Through `/proc/self/fd/N` (`AT_SYMLINK_FOLLOW`): needs `/proc`.
    pub const PROC: u8 = 2;
    /// Neither works: named temporary files.
    pub const OFF: u8 = 3;
}

#[cfg(any(target_os = "linux", target_os = "android"))]
static LINK: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(link::UNKNOWN);

/// Links the unnamed `file` (in `dir`) at `path`: true when linked, false when no way works in
/// this process (the caller builds the file the named way; decided once). `AlreadyExists` if
/// the name is taken. `AT_EMPTY_PATH` is tried first: it spares the `/proc` lookup, a few
/// microseconds per created file, and works without `/proc`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn link_unnamed(file: &File, dir: &Path, path: &Path) -> Result<bool> {
    use rustix::fs::{AtFlags, CWD};
    use rustix::io::Errno;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::Ordering::Relaxed;
    // The directory is there (the O_TMPFILE open just worked), so a missing or refused
    // source means this way does not work here: an old kernel without the capability, no
    // /proc or another namespace's, a security module.
    let refused = |e: Errno| {
        (e == Errno::NOENT && dir.is_dir())
            || [Errno::PERM, Errno::ACCESS, Errno::XDEV, Errno::INVAL].contains(&e)
    };
    let exists = || Error::AlreadyExists(path.to_path_buf());
    let state = LINK.load(Relaxed);
    if state == link::UNKNOWN || state == link::EMPTY_PATH {
        match rustix::fs::linkat(file, "", CWD, path, AtFlags::EMPTY_PATH) {
            Ok(()) => {
                LINK.store(link::EMPTY_PATH, Relaxed);
                return Ok(true);
            }
            Err(Errno::EXIST) => return Err(exists()),
            Err(e) if state == link::UNKNOWN && refused(e) => LINK.store(link::PROC, Relaxed),
            Err(e) => return Err(Error::io(path, e.into())),
        }
    }
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    match rustix::fs::linkat(CWD, proc_path.as_str(), CWD, path, AtFlags::SYMLINK_FOLLOW) {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => Err(exists()),
        Err(e) if refused(e) => {
            LINK.store(link::OFF, Relaxed);
            Ok(false)
        }
        Err(e) => Err(Error::io(path, e.into())),
    }
}

/// `update_many` on any I/O: orders the points, checks every timestamp, and only then takes
/// the view from `io` and commits archive by archive, as `file_update_many` does: each
/// archive's share by age (newest to archive 0, future points too; older than every archive
/// dropped), newest archive first.
fn update_with<'a>(
    header: &'a Header,
    bases: &'a mut [u32],
    scratch: &'a mut Scratch,
    points: &[Point],
    now: i64,
    io: impl FnOnce() -> Result<View<'a>>,
) -> Result<()> {
    if points.is_empty() {
        return Ok(());
    }
    // Chronological order as whisper.py leaves it: stable sort newest first, then reversed
    // per archive, i.e. ascending with equal timestamps in reverse arrival order. Input that
    // is already strictly ascending (the persister's usual batch) is taken as is.
    let mut chrono = std::mem::take(&mut scratch.points);
    chrono.clear();
    chrono.extend(points.iter().map(|p| (p.timestamp, p.value)));
    if !chrono.windows(2).all(|w| w[0].0 < w[1].0) {
        chrono.sort_by_key(|p| std::cmp::Reverse(p.0));
        chrono.reverse();
    }
    // Two passes over the (cheap) split instead of collecting it: check, then commit.
    let checked = for_each_batch(header, &chrono, now, |_, range| {
        // Ascending, so checking both ends checks every aligned timestamp.
        let step = i64::from(range.0.seconds_per_point);
        for (t, _) in [range.1[0], range.1[range.1.len() - 1]] {
            to_u32(t - t.rem_euclid(step))?;
        }
        Ok(())
    });
    let result = checked.and_then(|()| {
        let mut archives = Archives {
            io: io()?,
            header,
            bases,
            scratch: &mut *scratch,
        };
        for_each_batch(header, &chrono, now, |index, (_, points)| {
            archives.update_many(index, points)
        })
    });
    scratch.points = chrono;
    result
}

/// Calls `f(index, (archive, points))` for each archive's non-empty share of `chrono`
/// (ascending), newest archive first: the newest remaining points whose age is within the
/// archive's retention (future points go to archive 0; points older than every archive to none).
fn for_each_batch<'p>(
    header: &Header,
    chrono: &'p [(i64, f64)],
    now: i64,
    mut f: impl FnMut(usize, (&ArchiveInfo, &'p [(i64, f64)])) -> Result<()>,
) -> Result<()> {
    let mut end = chrono.len();
    for (index, archive) in header.archives.iter().enumerate() {
        if end == 0 {
            break;
        }
        let retention = i64::from(archive.retention());
        let start = chrono[..end].partition_point(|p| now.saturating_sub(p.0) > retention);
        if start < end {
            f(index, (archive, &chrono[start..end]))?;
        }
        end = start;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whisper::format::{POINT_SIZE, decode_point};

    const NOW: i64 = 1_700_000_000;

    fn r(spp: u32, points: u32) -> Retention {
        Retention::new(spp, points)
    }

    fn create(
        dir: &Path,
        name: &str,
        rets: &[Retention],
        m: AggregationMethod,
        xff: f32,
    ) -> WhisperFile {
        WhisperFile::create(&dir.join(name), rets, m, xff, CreateOptions::default()).unwrap()
    }

    fn pts(v: &[(i64, f64)]) -> Vec<Point> {
        v.iter().map(|&(t, x)| Point::new(t, x)).collect()
    }

    #[test]
    fn create_writes_header_and_zeros_and_refuses_existing() {
        let dir = tempfile::tempdir().unwrap();
        let rets = [r(10, 2160), r(60, 10080)];
        for (name, opts) in [
            ("a.wsp", CreateOptions::default()),
            (
                "b.wsp",
                CreateOptions {
                    sparse: true,
                    fallocate: false,
                },
            ),
            (
                "c.wsp",
                CreateOptions {
                    sparse: false,
                    fallocate: true,
                },
            ),
        ] {
            let path = dir.path().join(name);
            let f =
                WhisperFile::create(&path, &rets, AggregationMethod::Average, 0.5, opts).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(bytes.len(), 146_920);
            assert_eq!(bytes[..40], f.header().encode()[..]);
            assert!(bytes[40..].iter().all(|&b| b == 0));
            let again = WhisperFile::create(&path, &rets, AggregationMethod::Sum, 0.5, opts);
            assert!(matches!(again, Err(Error::AlreadyExists(_))));
        }
        // Only the three databases: no temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
        let bad = WhisperFile::create(
            &dir.path().join("d.wsp"),
            &[r(10, 5), r(15, 100)],
            AggregationMethod::Sum,
            0.5,
            CreateOptions::default(),
        );
        assert!(matches!(bad, Err(Error::InvalidArgument(_))));
        assert!(!dir.path().join("d.wsp").exists());
        let missing_dir = WhisperFile::create(
            &dir.path().join("no/e.wsp"),
            &rets,
            AggregationMethod::Sum,
            0.5,
            CreateOptions::default(),
        );
        assert!(missing_dir.is_err());
        assert!(matches!(
            WhisperFile::open(&dir.path().join("zz.wsp")),
            Err(Error::NotFound(_))
        ));
    }

    /// Both ways of building a file (unnamed + linkat, named temporary + link) give the same
    /// bytes, refuse an existing name and leave nothing else in the directory.
    #[test]
    fn anonymous_and_named_temp_creation_agree() {
        let dir = tempfile::tempdir().unwrap();
        let header = Header::new(&[r(10, 60), r(60, 30)], AggregationMethod::Max, 0.3).unwrap();
        let image = Staged::starting_with(header.encode());
        let mut bytes = Vec::new();
        for sparse in [false, true] {
            let opts = CreateOptions {
                sparse,
                fallocate: !sparse,
            };
            let named = dir.path().join(format!("named{sparse}.wsp"));
            drop(
                WhisperFile::create_named_temp(
                    &named,
                    named.file_name().unwrap(),
                    &header,
                    &image,
                    opts,
                )
                .unwrap(),
            );
            bytes.push(std::fs::read(&named).unwrap());
            let again = WhisperFile::create_named_temp(
                &named,
                named.file_name().unwrap(),
                &header,
                &image,
                opts,
            );
            assert!(matches!(again, Err(Error::AlreadyExists(_))));
            // Both ways of linking: through /proc, and whichever the first create picks
            // (AT_EMPTY_PATH where the kernel allows it). Other tests meanwhile may link
            // either way; both are correct.
            for way in [link::PROC, link::UNKNOWN] {
                LINK.store(way, std::sync::atomic::Ordering::Relaxed);
                let anon = dir.path().join(format!("anon{sparse}{way}.wsp"));
                // None where the file system has no O_TMPFILE: then `create` takes the named
                // way.
                if WhisperFile::create_anonymous(&anon, &header, &image, opts)
                    .unwrap()
                    .is_some()
                {
                    bytes.push(std::fs::read(&anon).unwrap());
                    let again = WhisperFile::create_anonymous(&anon, &header, &image, opts);
                    assert!(matches!(again, Err(Error::AlreadyExists(_))));
                }
            }
        }
        assert!(
            bytes
                .iter()
                .all(|b| *b == bytes[0] && b.len() as u64 == header.file_size())
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| n.ends_with(".wsp") && !n.starts_with('.')),
            "{names:?}"
        );
        assert_eq!(names.len(), bytes.len());
        // A missing directory is an error, not a fallback.
        let missing = dir.path().join("no/such.wsp");
        assert!(
            WhisperFile::create_anonymous(&missing, &header, &image, CreateOptions::default())
                .is_err()
        );
    }

    proptest::proptest! {
        /// `create_with(first)` gives the bytes of `create` + `update_many(first)`, for every
        /// way of creating, and both handles then go on alike (bases carried over, map made
        /// later). Points cover future, wrapping, duplicate, unordered and too-old cases.
        #[test]
        fn create_with_points_matches_create_then_update(
            specs in proptest::collection::vec((1u32..4, 4u32..40), 1..4),
            method in 0usize..AggregationMethod::ALL.len(),
            xff in 0.0f32..=1.0,
            first in proptest::collection::vec((-5000i64..200, -1e3f64..1e3), 0..80),
            then in proptest::collection::vec((-5000i64..200, -1e3f64..1e3), 0..20),
            mode in 0usize..3,
        ) {
            // Each archive coarser by a whole factor and longer than the one before.
            let mut rets = Vec::new();
            let (mut spp, mut span) = (10u32, 0u32);
            for (factor, points) in specs {
                spp *= factor.max(1) + u32::from(!rets.is_empty());
                let points = points.max(span / spp + 1);
                span = spp * points;
                rets.push(r(spp, points));
            }
            let opts = [
                CreateOptions::default(),
                CreateOptions { sparse: true, fallocate: false },
                CreateOptions { sparse: false, fallocate: true },
            ][mode];
            let m = AggregationMethod::ALL[method];
            let dir = tempfile::tempdir().unwrap();
            let now = NOW + 7;
            let first = pts(&first.iter().map(|&(d, v)| (now + d, v)).collect::<Vec<_>>());
            let then = pts(&then.iter().map(|&(d, v)| (now + 300 + d, v)).collect::<Vec<_>>());
            let (a, b) = (dir.path().join("a.wsp"), dir.path().join("b.wsp"));
            let mut fa = WhisperFile::create(&a, &rets, m, xff, opts).unwrap();
            fa.update_many(&first, now).unwrap();
            let mut fb = WhisperFile::create_with(&b, &rets, m, xff, opts, &first, now).unwrap();
            proptest::prop_assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
            fa.update_many(&then, now + 300).unwrap();
            fb.update_many(&then, now + 300).unwrap();
            proptest::prop_assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
            let (sa, sb) = (fa.fetch(now - 9000, None, now + 300), fb.fetch(now - 9000, None, now + 300));
            proptest::prop_assert_eq!(format!("{sa:?}"), format!("{sb:?}"));
        }
    }

    #[test]
    fn create_with_points_refuses_an_existing_name_and_bad_points() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.wsp");
        let rets = [r(10, 60), r(60, 30)];
        let first = pts(&[(NOW - 20, 1.0), (NOW - 10, 2.0)]);
        let opts = CreateOptions::default();
        let avg = AggregationMethod::Average;
        drop(WhisperFile::create_with(&path, &rets, avg, 0.5, opts, &first, NOW).unwrap());
        let before = std::fs::read(&path).unwrap();
        let again =
            WhisperFile::create_with(&path, &rets, avg, 0.5, opts, &pts(&[(NOW, 9.0)]), NOW);
        assert!(matches!(again, Err(Error::AlreadyExists(_))));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the existing file is untouched"
        );
        // A timestamp past whisper's u32 range fails the update's checks: no file at all.
        let other = dir.path().join("n.wsp");
        let bad = pts(&[(i64::from(u32::MAX) + 100, 1.0)]);
        let r = WhisperFile::create_with(&other, &rets, avg, 0.5, opts, &bad, i64::from(u32::MAX));
        assert!(r.is_err());
        assert!(!other.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn update_fetch_and_propagation_with_xff() {
        let dir = tempfile::tempdir().unwrap();
        // 10 s x 12, 60 s x 10: propagation averages six 10 s slots.
        let mut f = create(
            dir.path(),
            "x.wsp",
            &[r(10, 12), r(60, 10)],
            AggregationMethod::Average,
            0.5,
        );
        let now = NOW - NOW % 60 + 59;
        let minute = now - now % 60 - 60;
        // Two of six known: 33% < 50%, nothing propagates.
        f.update_many(&pts(&[(minute, 1.0), (minute + 10, 2.0)]), now)
            .unwrap();
        let low = f
            .fetch_archive(minute - 1, Some(minute), now, 1)
            .unwrap()
            .unwrap();
        assert_eq!(low.from, minute);
        assert!(low.values[0].is_nan());
        // Third point: 50% >= 50%, the average of the known values propagates.
        f.update(6.0, minute + 25, now).unwrap();
        let low = f
            .fetch_archive(minute - 1, Some(minute), now, 1)
            .unwrap()
            .unwrap();
        assert_eq!(low.values, vec![3.0]);
        let high = f
            .fetch(minute - 1, Some(minute + 50), now)
            .unwrap()
            .unwrap();
        assert_eq!(
            (high.from, high.until, high.step),
            (minute, minute + 60, 10)
        );
        assert_eq!(high.values[..3], [1.0, 2.0, 6.0]);
        assert!(high.values[3..].iter().all(|v| v.is_nan()));
        // Errors and None cases.
        assert!(matches!(
            f.update(1.0, now + 1, now),
            Err(Error::TimestampNotCovered(_))
        ));
        assert!(matches!(
            f.update(1.0, now - 600, now),
            Err(Error::TimestampNotCovered(_))
        ));
        assert!(matches!(
            f.fetch(now, Some(now - 1), now),
            Err(Error::InvalidTimeInterval(_))
        ));
        assert_eq!(f.fetch(now + 1, Some(now + 100), now).unwrap(), None);
        // `until` defaults to now, so a future `from` alone is an invalid interval, as in whisper.py.
        assert!(matches!(
            f.fetch(now + 1, None, now),
            Err(Error::InvalidTimeInterval(_))
        ));
        assert_eq!(f.fetch(now - 2000, Some(now - 700), now).unwrap(), None);
        assert!(f.fetch_archive(now - 10, None, now, 2).is_err());
    }

    #[test]
    fn each_method_aggregates_like_whisper_py() {
        let dir = tempfile::tempdir().unwrap();
        let minute = NOW - NOW % 60;
        let now = minute + 60;
        let values = [(0, -4.0), (10, 1.0), (20, 4.0), (40, -1.0)]; // slot 30 and 50 unknown
        let expected = [
            (AggregationMethod::Average, 0.0),
            (AggregationMethod::Sum, 0.0),
            (AggregationMethod::Last, -1.0),
            (AggregationMethod::Max, 4.0),
            (AggregationMethod::Min, -4.0),
            (AggregationMethod::AvgZero, 0.0),
            (AggregationMethod::AbsMax, -4.0),
            (AggregationMethod::AbsMin, 1.0),
        ];
        for (m, want) in expected {
            let mut f = create(
                dir.path(),
                &format!("{m}.wsp"),
                &[r(10, 12), r(60, 10)],
                m,
                0.0,
            );
            let p: Vec<(i64, f64)> = values.iter().map(|&(o, v)| (minute + o, v + 0.0)).collect();
            f.update_many(&pts(&p), now).unwrap();
            let low = f
                .fetch_archive(minute - 1, Some(minute), now, 1)
                .unwrap()
                .unwrap();
            assert_eq!(low.values, vec![want], "{m}");
        }
    }

    #[test]
    fn duplicates_keep_first_received_and_interval_last() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = create(
            dir.path(),
            "d.wsp",
            &[r(10, 12)],
            AggregationMethod::Average,
            0.5,
        );
        let t = NOW - NOW % 10 - 30;
        // Identical timestamps: first wins. Same interval, later timestamp: later wins.
        f.update_many(
            &pts(&[
                (t, 1.0),
                (t, 2.0),
                (t + 10, 5.0),
                (t + 13, 6.0),
                (t + 11, 7.0),
            ]),
            NOW,
        )
        .unwrap();
        let s = f.fetch(t - 1, Some(t + 10), NOW).unwrap().unwrap();
        assert_eq!(s.values, vec![1.0, 6.0]);
    }

    #[test]
    fn ring_wraps_and_stale_slots_read_as_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = create(
            dir.path(),
            "w.wsp",
            &[r(10, 6)],
            AggregationMethod::Average,
            0.5,
        );
        let t0 = NOW - NOW % 10;
        f.update_many(&pts(&[(t0, 1.0), (t0 + 10, 2.0)]), t0 + 10)
            .unwrap();
        // Write a run crossing the end of the ring: slots 4, 5, 0, 1.
        let now = t0 + 70;
        f.update_many(
            &pts(&[
                (t0 + 40, 4.0),
                (t0 + 50, 5.0),
                (t0 + 60, 6.0),
                (t0 + 70, 7.0),
            ]),
            now,
        )
        .unwrap();
        let raw = f.read_archive(0).unwrap();
        let ts: Vec<i64> = raw.iter().map(|p| i64::from(p.0)).collect();
        assert_eq!(ts, vec![t0 + 60, t0 + 70, 0, 0, t0 + 40, t0 + 50]);
        let s = f.fetch(now - 60, None, now).unwrap().unwrap();
        assert_eq!(s.values.len(), 6);
        assert!(s.values[0].is_nan() && s.values[1].is_nan());
        assert_eq!(s.values[2..], [4.0, 5.0, 6.0, 7.0]);
    }

    #[test]
    fn overlong_future_run_stays_inside_its_archive() {
        // whisper.py would write the tail of this 10-point run into archive 1; carbonlite wraps.
        let dir = tempfile::tempdir().unwrap();
        let mut f = create(
            dir.path(),
            "o.wsp",
            &[r(10, 4), r(20, 10)],
            AggregationMethod::Sum,
            0.0,
        );
        let t = NOW - NOW % 10;
        let run: Vec<(i64, f64)> = (0..10).map(|i| (t + 10 * i, i as f64)).collect();
        f.update_many(&pts(&run), t).unwrap();
        let raw = f.read_archive(0).unwrap();
        assert_eq!(
            raw.iter().map(|p| p.1).collect::<Vec<_>>(),
            vec![8.0, 9.0, 6.0, 7.0]
        );
        let bytes = std::fs::read(f.path()).unwrap();
        let a1 = f.header().archives[1];
        for slot in bytes[a1.offset as usize..].chunks(POINT_SIZE) {
            let (ts, _) = decode_point(slot);
            assert!(
                ts == 0 || ts.is_multiple_of(20),
                "archive 1 got a 10 s point: {ts}"
            );
        }
        assert_eq!(bytes.len() as u64, f.header().file_size());
    }

    #[test]
    fn set_aggregation_method_rewrites_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = create(
            dir.path(),
            "s.wsp",
            &[r(10, 12)],
            AggregationMethod::Average,
            0.5,
        );
        assert_eq!(
            f.set_aggregation_method(AggregationMethod::Max, None)
                .unwrap(),
            AggregationMethod::Average
        );
        assert_eq!(
            f.set_aggregation_method(AggregationMethod::Sum, Some(0.25))
                .unwrap(),
            AggregationMethod::Max
        );
        assert!(
            f.set_aggregation_method(AggregationMethod::Sum, Some(1.5))
                .is_err()
        );
        let g = WhisperFile::open_read_only(f.path()).unwrap();
        assert_eq!(g.header().aggregation, AggregationMethod::Sum);
        assert_eq!(g.header().x_files_factor, 0.25);
        let mut g = g;
        assert!(
            g.update(1.0, NOW, NOW).is_err(),
            "read-only handles refuse writes"
        );
    }

    #[test]
    fn truncated_and_corrupt_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let f = create(
            dir.path(),
            "t.wsp",
            &[r(10, 12), r(60, 10)],
            AggregationMethod::Average,
            0.5,
        );
        let path = f.path().to_path_buf();
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0usize, 5, 16, 30, 40, 100, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(
                matches!(WhisperFile::open(&path), Err(Error::Corrupt { .. })),
                "cut at {cut}"
            );
        }
        // Truncated behind an open handle: reads fail cleanly, writes never extend the file.
        std::fs::write(&path, &bytes).unwrap();
        let mut f = WhisperFile::open(&path).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(50)
            .unwrap();
        assert!(matches!(
            f.fetch(NOW - 100, None, NOW),
            Err(Error::Corrupt { .. })
        ));
        assert!(f.update_many(&pts(&[(NOW - 5, 1.0)]), NOW).is_err());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 50);
    }

    /// Runs the same operations on a mapped handle and on a pread-fallback handle: identical
    /// files and results.
    #[test]
    fn mmap_failure_falls_back_to_pread_with_identical_results() {
        let dir = tempfile::tempdir().unwrap();
        let rets = [r(10, 30), r(60, 20), r(300, 12)];
        let mut files = Vec::new();
        for (name, fail) in [("m.wsp", false), ("p.wsp", true)] {
            let path = dir.path().join(name);
            drop(create(dir.path(), name, &rets, AggregationMethod::Max, 0.3));
            crate::whisper::map::FAIL_NEXT_MAP.with(|f| f.set(fail));
            let f = WhisperFile::open(&path).unwrap();
            assert_eq!(f.is_mapped(), !fail);
            files.push(f);
        }
        let t0 = NOW - NOW % 300;
        let mut results = Vec::new();
        for f in &mut files {
            let mut out = Vec::new();
            for step in 0..40i64 {
                let now = t0 + step * 70;
                let batch: Vec<(i64, f64)> = (0..7)
                    .map(|i| (now - 65 + i * 10, (step * 7 + i) as f64 * 0.5))
                    .collect();
                f.update_many(&pts(&batch), now).unwrap();
                f.update(-1.0, now - 200, now).unwrap();
                out.push(f.fetch(now - 250, None, now).unwrap());
                out.push(f.fetch(now - 3000, None, now).unwrap());
            }
            results.push((out, f.read_archive(2).unwrap()));
        }
        let eq = |a: &Option<Series>, b: &Option<Series>| format!("{a:?}") == format!("{b:?}");
        assert!(
            results[0]
                .0
                .iter()
                .zip(&results[1].0)
                .all(|(a, b)| eq(a, b))
        );
        assert_eq!(results[0].1, results[1].1);
        assert_eq!(
            std::fs::read(files[0].path()).unwrap(),
            std::fs::read(files[1].path()).unwrap()
        );
    }

    /// Reads come from the map and must see every pwrite: ours at once, and another handle's.
    #[test]
    fn mapped_reads_see_writes_from_any_handle() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = create(
            dir.path(),
            "c.wsp",
            &[r(10, 60), r(60, 30)],
            AggregationMethod::Sum,
            0.0,
        );
        let mut b = WhisperFile::open(a.path()).unwrap();
        assert!(b.is_mapped());
        assert!(
            !a.is_mapped(),
            "a new file is mapped by its first operation"
        );
        let t = NOW - NOW % 60;
        // b maps its pages before a writes, so a stale private copy would show.
        assert!(b.fetch(t - 300, None, t).unwrap().unwrap().values[0].is_nan());
        for i in 0..3 {
            let f = if i == 1 { &mut b } else { &mut a };
            let at = t - 300 + 10 * i;
            f.update_many(&pts(&[(at, 1.0 + i as f64)]), t).unwrap();
        }
        assert!(a.is_mapped());
        for f in [&mut a, &mut b] {
            let s = f.fetch(t - 301, Some(t - 271), t).unwrap().unwrap();
            assert_eq!(s.values, vec![1.0, 2.0, 3.0]);
            // Propagation read the other handle's point from the map: 1 + 2 + 3.
            let low = f
                .fetch_archive(t - 301, Some(t - 300), t, 1)
                .unwrap()
                .unwrap();
            assert_eq!(low.values, vec![6.0]);
        }
    }

    /// In-place truncation of an open file (bases cached, pages mapped): every operation is
    /// `Error::Corrupt`, nothing crashes and nothing writes, with and without the map.
    #[test]
    fn truncated_while_open_is_an_error_in_both_modes() {
        let dir = tempfile::tempdir().unwrap();
        for fail in [false, true] {
            let name = format!("t{fail}.wsp");
            let path = dir.path().join(&name);
            drop(create(
                dir.path(),
                &name,
                &[r(10, 600), r(60, 700)],
                AggregationMethod::Average,
                0.5,
            ));
            crate::whisper::map::FAIL_NEXT_MAP.with(|f| f.set(fail));
            let mut f = WhisperFile::open(&path).unwrap();
            assert_eq!(f.is_mapped(), !fail);
            let t = NOW - NOW % 60;
            f.update_many(&pts(&[(t - 60, 1.0), (t - 50, 2.0)]), t)
                .unwrap();
            assert!(f.fetch(t - 3000, None, t).unwrap().is_some());
            let size = f.header().file_size();
            // Cut inside archive 0 (whose pages are mapped), and right at the end of the header.
            for cut in [size - 1, 4096, 40] {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_len(cut)
                    .unwrap();
                let corrupt = |r: Result<()>| matches!(r, Err(Error::Corrupt { .. }));
                assert!(
                    corrupt(f.fetch(t - 600, None, t).map(drop)),
                    "fetch at {cut}"
                );
                assert!(corrupt(f.fetch(t - 30_000, None, t).map(drop)));
                assert!(corrupt(f.update_many(&pts(&[(t - 40, 3.0)]), t)));
                assert!(corrupt(f.update(4.0, t - 30, t)));
                assert!(corrupt(f.read_archive(1).map(drop)));
                assert_eq!(
                    std::fs::metadata(&path).unwrap().len(),
                    cut,
                    "no write at {cut}"
                );
            }
        }
    }
}
