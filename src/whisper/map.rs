//! Reads of a whisper file served from a read-only shared memory map; the one place in the
//! whisper engine with `unsafe` code.
//!
//! Why: an `update_many` reads the span of the higher archive that propagation aggregates, and
//! a `pread` for that costs about as much as the user-space work of the whole call. Reading the
//! page cache through a `MAP_SHARED` map costs a `memcpy`. Writes stay `pwrite`: a full disk is
//! then an `ENOSPC` error value, where a store into a map over a sparse file's hole would be a
//! `SIGBUS`. On Linux a shared file map and `pwrite` go through the same page cache, so a read
//! after a write (ours or another process's) sees the new bytes.
//!
//! Truncation: touching a mapped page wholly past the end of the file raises `SIGBUS`. whisper
//! never shrinks a database in place (whisper-resize writes a new file and renames it), but
//! another process could. So every operation first takes a [`View`], which checks with one
//! `lseek(SEEK_END)` that the file still covers the extent the header was validated against,
//! and refuses with `Error::Corrupt` otherwise, before anything is read or written. Not `fstat`:
//! besides costing three times an `lseek`, a stat marks the timestamps as observed, and with
//! Linux 6.13+ multigrain timestamps the next `pwrite` then takes a fine-grained time and
//! dirties the inode (measured on ext4: `statx` + `pwrite` 2.2-2.6 µs, `lseek` + `pwrite` 1 µs).
//! For the same reason nothing on the update path should stat the file. The residual race: a truncation *between* that check and a read
//! of the same operation still raises `SIGBUS`. Closing it would need a `SIGBUS` handler with
//! `sigsetjmp`; the window is a few microseconds and needs a concurrent in-place truncation,
//! which is already data loss for every whisper implementation.
//!
//! Fallback: when `mmap` fails (address space, `vm.max_map_count`, a file system without mmap)
//! the file is read with `pread` as before, with the same results. Maps are per open
//! `WhisperFile`; the persister's `FilePool` bounds how many are open (4096 by default, far
//! below Linux's default `vm.max_map_count` of 65530), and a map costs address space, not
//! memory: its pages are the page cache's.
//!
//! New files: `WhisperFile::create_with` applies a file's first update to a [`Staged`] image
//! in memory (a [`View`] works on either), writes the image, and maps the file only at its
//! next operation (`FileMap::later`). A new file's pages are then never read, which spared
//! W1 (10,000 new files) its page faults on holes and a pwrite per file.

use std::cell::RefCell;
use std::fs::File;
use std::io::{ErrorKind, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use memmap2::{Mmap, MmapOptions};

use crate::error::{Error, Result};

/// The map of one open file's first `extent` bytes (the header-validated size), or nothing
/// when mapping failed and reads use `pread`.
#[derive(Debug)]
pub(crate) struct FileMap {
    map: Option<Mmap>,
    /// Whether mapping was tried yet (`FileMap::later` maps at the first view).
    tried: bool,
    extent: u64,
}

#[cfg(test)]
thread_local! {
    /// Makes this thread's next attempt to map a file behave as if `mmap` had failed.
    pub(crate) static FAIL_NEXT_MAP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl FileMap {
    /// Maps `file`'s first `extent` bytes read-only and shared. Never fails: an `mmap` error
    /// leaves the pread path in place.
    pub fn new(file: &File, extent: u64) -> FileMap {
        FileMap {
            map: Self::map_file(file, extent),
            tried: true,
            extent,
        }
    }

    /// A map made by the first `view`, for a file just created with its first points: most
    /// new files get one update, written before the file had a name, and no map at all spares
    /// them `mmap`, `madvise` and `munmap` (about 5% of the CPU of creating W1's files).
    pub fn later(extent: u64) -> FileMap {
        FileMap {
            map: None,
            tried: false,
            extent,
        }
    }

    fn map_file(file: &File, extent: u64) -> Option<Mmap> {
        #[cfg(test)]
        if FAIL_NEXT_MAP.with(|f| f.replace(false)) {
            return None;
        }
        usize::try_from(extent)
            .ok()
            .filter(|&len| len > 0)
            .and_then(|len| {
                // SAFETY: the map is read-only and private to this module: its bytes are only
                // ever copied out by `View::read_at`, after a bounds check against `extent`,
                // and every value decoded from them is validated like a pread result. The file
                // may change underneath (our own pwrites, other writers): that changes the bytes
                // copied, never their location or length. Accessing a page past the end of a
                // file that was truncated after mapping raises SIGBUS; `FileMap::view` checks
                // the length before each operation (see the module docs for the residual race).
                unsafe { MmapOptions::new().len(len).map(file) }.ok()
            })
            .inspect(|m| {
                // Whisper access is a few scattered slots per call. Without this, every fault
                // reads ahead a window of pages around it, and for a new sparse or fallocated
                // file that means zero-filling hundreds of KB of holes per file (half the CPU
                // of W1's file creation, measured with perf).
                let _ = m.advise(memmap2::Advice::Random);
            })
    }

    /// Whether reads go through the map (false: pread fallback).
    #[cfg(test)]
    pub fn is_mapped(&self) -> bool {
        self.map.is_some()
    }

    /// Access for one operation, after checking that the file still covers the validated
    /// extent; a shorter file is `Error::Corrupt` before anything is read or written.
    pub fn view<'a>(&'a mut self, file: &'a File, path: &'a Path) -> Result<View<'a>> {
        // The cursor this moves is never used: all I/O is positioned (pread/pwrite).
        let len = (&*file)
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io(path, e))?;
        if len < self.extent {
            return Err(Error::corrupt(
                path,
                format!(
                    "file truncated to {len} bytes while open, the header needs {}",
                    self.extent
                ),
            ));
        }
        // Mapped only now that the file is known to cover the extent.
        if !self.tried {
            self.map = Self::map_file(file, self.extent);
            self.tried = true;
        }
        let source = match self.map.as_deref() {
            Some(bytes) => Source::Mapped(bytes, file),
            None => Source::Pread(file),
        };
        Ok(View {
            source,
            extent: self.extent,
            path,
        })
    }
}

/// A new file's bytes before it is written: zeros, with the writes made so far laid over
/// them. `WhisperFile::create_with` runs a file's first update against it, so the file is
/// written once, header and points together, and nothing reads its holes.
#[derive(Debug)]
pub(crate) struct Staged {
    /// (offset, bytes), sorted, with neither overlaps nor adjacent neighbours: a write that
    /// touches a region is merged into it, so a file takes one `pwrite` per separate span.
    regions: Vec<(u64, Vec<u8>)>,
}

impl Staged {
    /// An image whose first bytes are `head` (a header), zeros after.
    pub fn starting_with(head: Vec<u8>) -> Staged {
        Staged {
            regions: vec![(0, head)],
        }
    }

    fn write(&mut self, buf: &[u8], offset: u64) {
        let end = offset + buf.len() as u64;
        // The regions that overlap or touch [offset, end) are consecutive.
        let first = self
            .regions
            .partition_point(|(at, b)| at + (b.len() as u64) < offset);
        let last = self.regions.partition_point(|(at, _)| *at <= end);
        if first == last {
            self.regions.insert(first, (offset, buf.to_vec()));
            return;
        }
        let start = offset.min(self.regions[first].0);
        let (tail_at, tail) = &self.regions[last - 1];
        let stop = end.max(tail_at + tail.len() as u64);
        let mut merged = vec![0u8; (stop - start) as usize];
        for (at, bytes) in self.regions.drain(first..last) {
            let from = (at - start) as usize;
            merged[from..from + bytes.len()].copy_from_slice(&bytes);
        }
        let from = (offset - start) as usize;
        merged[from..from + buf.len()].copy_from_slice(buf);
        self.regions.insert(first, (start, merged));
    }

    fn read(&self, buf: &mut [u8], offset: u64) {
        buf.fill(0);
        let end = offset + buf.len() as u64;
        for (at, bytes) in &self.regions {
            let (lo, hi) = (offset.max(*at), end.min(*at + bytes.len() as u64));
            if lo < hi {
                buf[(lo - offset) as usize..(hi - offset) as usize]
                    .copy_from_slice(&bytes[(lo - at) as usize..(hi - at) as usize]);
            }
        }
    }

    /// The separate spans, in file order: written over a zeroed file, they give its bytes.
    pub fn regions(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.regions.iter().map(|(at, b)| (*at, &b[..]))
    }
}

/// Where a view's bytes come from.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    /// Reads copy from the map; writes are pwrites.
    Mapped(&'a [u8], &'a File),
    /// pread and pwrite.
    Pread(&'a File),
    /// Not on disk yet: reads and writes go to the image.
    Staged(&'a RefCell<Staged>),
}

/// Positioned reads and writes of one file for the duration of one operation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a> {
    source: Source<'a>,
    extent: u64,
    path: &'a Path,
}

impl<'a> View<'a> {
    /// Access to a file image of `extent` bytes that is not written yet.
    pub fn staged(image: &'a RefCell<Staged>, extent: u64, path: &'a Path) -> View<'a> {
        View {
            source: Source::Staged(image),
            extent,
            path,
        }
    }

    /// Fills `buf` from byte `offset`; a range outside the validated extent is
    /// `Error::Corrupt`, in either mode.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.extent) {
            return Err(self.out_of_bounds(buf.len(), offset));
        }
        match self.source {
            Source::Mapped(bytes, _) => {
                // `offset + len <= extent == bytes.len()`, checked above.
                let src = bytes
                    .get(offset as usize..offset as usize + buf.len())
                    .ok_or_else(|| self.out_of_bounds(buf.len(), offset))?;
                buf.copy_from_slice(src);
                Ok(())
            }
            Source::Pread(file) => file.read_exact_at(buf, offset).map_err(|e| {
                if e.kind() == ErrorKind::UnexpectedEof {
                    self.out_of_bounds(buf.len(), offset)
                } else {
                    Error::io(self.path, e)
                }
            }),
            Source::Staged(image) => {
                image.borrow().read(buf, offset);
                Ok(())
            }
        }
    }

    /// Writes all of `buf` at `offset` with pwrite (never through the map), or into the image.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        match self.source {
            Source::Mapped(_, file) | Source::Pread(file) => file
                .write_all_at(buf, offset)
                .map_err(|e| Error::io(self.path, e)),
            Source::Staged(image) => {
                image.borrow_mut().write(buf, offset);
                Ok(())
            }
        }
    }

    fn out_of_bounds(&self, len: usize, offset: u64) -> Error {
        Error::corrupt(
            self.path,
            format!("file truncated: cannot read {len} bytes at {offset}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        std::fs::write(&path, bytes).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        (dir, path, file)
    }

    #[test]
    fn reads_see_pwrites_and_other_writers() {
        let (_dir, path, file) = file_with(&[7u8; 10_000]);
        let mut map = FileMap::new(&file, 10_000);
        assert!(map.is_mapped());
        let view = map.view(&file, &path).unwrap();
        let mut buf = [0u8; 4];
        view.read_at(&mut buf, 9_996).unwrap();
        assert_eq!(buf, [7; 4]);
        view.write_at(&[1, 2, 3, 4], 5_000).unwrap();
        view.read_at(&mut buf, 5_000).unwrap();
        assert_eq!(buf, [1, 2, 3, 4]);
        // A second descriptor (another process, in effect) writes through the page cache too.
        let other = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        other.write_all_at(&[9, 8], 5_001).unwrap();
        view.read_at(&mut buf, 5_000).unwrap();
        assert_eq!(buf, [1, 9, 8, 4]);
    }

    #[test]
    fn reads_outside_the_extent_are_errors_in_both_modes() {
        let (_dir, path, file) = file_with(&[1u8; 5_000]);
        for fail in [false, true] {
            FAIL_NEXT_MAP.with(|f| f.set(fail));
            // The extent is shorter than the file: bytes past it are not the header's.
            let mut map = FileMap::new(&file, 4_000);
            assert_eq!(map.is_mapped(), !fail);
            let view = map.view(&file, &path).unwrap();
            let mut buf = [0u8; 8];
            view.read_at(&mut buf, 3_992).unwrap();
            assert_eq!(buf, [1; 8]);
            for at in [3_993, 4_000, u64::MAX - 2] {
                assert!(
                    matches!(view.read_at(&mut buf, at), Err(Error::Corrupt { .. })),
                    "mapped={} at {at}",
                    !fail
                );
            }
        }
    }

    #[test]
    fn truncation_is_refused_before_any_access() {
        let (_dir, path, file) = file_with(&[3u8; 20_000]);
        let mut map = FileMap::new(&file, 20_000);
        assert!(map.is_mapped());
        file.set_len(100).unwrap();
        assert!(matches!(map.view(&file, &path), Err(Error::Corrupt { .. })));
        // Grown back (holes read as zeros): usable again, no SIGBUS.
        file.set_len(20_000).unwrap();
        let mut buf = [9u8; 4];
        map.view(&file, &path)
            .unwrap()
            .read_at(&mut buf, 19_000)
            .unwrap();
        assert_eq!(buf, [0; 4]);
    }

    #[test]
    fn failed_map_falls_back_to_pread() {
        let (_dir, path, file) = file_with(&[5u8; 1_000]);
        FAIL_NEXT_MAP.with(|f| f.set(true));
        let mut map = FileMap::new(&file, 1_000);
        assert!(!map.is_mapped());
        // The flag is one-shot.
        assert!(FileMap::new(&file, 1_000).is_mapped());
        let view = map.view(&file, &path).unwrap();
        view.write_at(&[6], 10).unwrap();
        let mut buf = [0u8; 3];
        view.read_at(&mut buf, 9).unwrap();
        assert_eq!(buf, [5, 6, 5]);
        // A zero extent cannot be mapped and is not an error either.
        assert!(!FileMap::new(&file, 0).is_mapped());
    }

    #[test]
    fn later_maps_at_the_first_view_once_the_extent_is_checked() {
        let (_dir, path, file) = file_with(&[4u8; 8_000]);
        let mut short = FileMap::later(9_000);
        assert!(matches!(
            short.view(&file, &path),
            Err(Error::Corrupt { .. })
        ));
        assert!(!short.is_mapped(), "not mapped past the end of the file");
        let mut map = FileMap::later(8_000);
        assert!(!map.is_mapped());
        let mut buf = [0u8; 2];
        map.view(&file, &path)
            .unwrap()
            .read_at(&mut buf, 7_998)
            .unwrap();
        assert_eq!(buf, [4, 4]);
        assert!(map.is_mapped());
    }

    #[test]
    fn staged_reads_are_zeros_under_the_writes_in_order() {
        let image = RefCell::new(Staged::starting_with(vec![5]));
        let path = Path::new("new.wsp");
        let view = View::staged(&image, 100, path);
        view.write_at(&[7, 7], 98).unwrap();
        view.write_at(&[4, 5], 13).unwrap();
        view.write_at(&[1, 2, 3], 10).unwrap(); // touches the one after it
        view.write_at(&[9], 11).unwrap(); // overwrites inside it
        view.write_at(&[6, 6], 20).unwrap();
        let mut buf = [0xffu8; 8];
        view.read_at(&mut buf, 8).unwrap();
        assert_eq!(buf, [0, 0, 1, 9, 3, 4, 5, 0]);
        assert!(matches!(
            view.read_at(&mut buf, 95),
            Err(Error::Corrupt { .. })
        ));
        let regions: Vec<(u64, Vec<u8>)> = image
            .borrow()
            .regions()
            .map(|(a, b)| (a, b.to_vec()))
            .collect();
        assert_eq!(
            regions,
            vec![
                (0, vec![5]),
                (10, vec![1, 9, 3, 4, 5]),
                (20, vec![6, 6]),
                (98, vec![7, 7])
            ]
        );
        // One write over three regions and the gaps between them joins them.
        view.write_at(&[8; 12], 12).unwrap();
        let regions: Vec<(u64, usize)> = image
            .borrow()
            .regions()
            .map(|(a, b)| (a, b.len()))
            .collect();
        assert_eq!(regions, vec![(0, 1), (10, 14), (98, 2)]);
        view.read_at(&mut buf, 20).unwrap();
        assert_eq!(buf, [8, 8, 8, 8, 0, 0, 0, 0]);
    }
}
