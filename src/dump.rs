//! go-carbon's `[dump]`: on close the cache is written to a file instead of to whisper, and
//! on open the files found are read back into the cache (go-carbon `carbon/grace.go`,
//! `points/reader.go`), so a restart neither waits for nor loses the cache.
//!
//! # Files (go-carbon's names and formats, so a dump directory moves between the two)
//! - `cache.<pid>.<unix-nanos>.bin`: binary. Per metric: `varint(name length)`, the name,
//!   `varint(point count)`, then per point `varint(value bits - previous value bits)` and
//!   `varint(timestamp - previous timestamp)`, both starting from 0. Varints are Go's
//!   `binary.PutVarint` (zig-zag, 7 bits a byte, low first); value bits are the f64's IEEE
//!   bits as i64, differences wrap.
//! - `input.<pid>.<unix-nanos>` (any name not ending in `.bin`): plaintext lines
//!   `name value timestamp\n`, what go-carbon diverts its input to while it dumps.
//!
//! Files are restored in go-carbon's order (by the nanosecond field, a cache file before an
//! input file of the same stop) and deleted once read. A damaged file (cut short, bad varint)
//! gives up every complete point before the damage, is counted in `dump_errors`, and is
//! renamed `damaged.<name>` so neither program reads it again. carbonlite writes the dump to
//! a hidden temporary name, fsyncs it and renames it, so a crash mid-dump never leaves a
//! half file under a name that restores.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::cache::AddBatch;
use crate::engine::{AddLinesOutcome, Shared};
use crate::error::{Error, Result};
use crate::journal::record;
use crate::points::{Point, unix_now};

/// Go's `points.MB`: longest metric name a reader accepts.
const MAX_NAME: u64 = 1 << 20;
/// Points gathered before they go to the cache in one batch.
const CHUNK: usize = 4096;

/// Appends `x` as a Go `binary.PutVarint`.
fn put_varint(out: &mut Vec<u8>, x: i64) {
    record::put_varint(out, record::zigzag(x));
}

/// Reads a Go varint at `*pos`; None if the bytes end first or it overflows 64 bits.
fn get_varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    record::get_varint(buf, pos).ok().map(record::unzigzag)
}

/// Appends one metric's record in go-carbon's binary dump format.
pub fn encode_record(name: &str, points: &[Point], out: &mut Vec<u8>) {
    put_varint(out, name.len() as i64);
    out.extend_from_slice(name.as_bytes());
    put_varint(out, points.len() as i64);
    let (mut v0, mut t0) = (0i64, 0i64);
    for p in points {
        let v = p.value.to_bits() as i64;
        put_varint(out, v.wrapping_sub(v0));
        put_varint(out, p.timestamp.wrapping_sub(t0));
        (v0, t0) = (v, p.timestamp);
    }
}

/// What reading one dump file gave.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DumpRead {
    /// Records delivered (metrics of a binary file, lines of a text file).
    pub records: u64,
    /// Points delivered.
    pub points: u64,
    /// Why reading stopped before the end, if it did (what followed is lost).
    pub damage: Option<String>,
}

/// Decodes a binary (`.bin`) dump, calling `each` per metric record. A record cut short still
/// delivers its complete points, as go-carbon's reader does; the damage is reported.
pub fn decode_binary(buf: &[u8], mut each: impl FnMut(&str, &[Point])) -> DumpRead {
    let mut r = DumpRead::default();
    let mut pos = 0;
    let mut points = Vec::new();
    while pos < buf.len() {
        let start = pos;
        let fail = |what: &str| Some(format!("{what} at byte {start}"));
        let Some(len) = get_varint(buf, &mut pos).filter(|&l| (0..=MAX_NAME as i64).contains(&l))
        else {
            r.damage = fail("bad metric name length");
            break;
        };
        let Some(name) = buf.get(pos..pos + len as usize) else {
            r.damage = fail("metric name cut short");
            break;
        };
        pos += len as usize;
        let Ok(name) = std::str::from_utf8(name) else {
            r.damage = fail("metric name is not UTF-8");
            break;
        };
        let Some(count) = get_varint(buf, &mut pos).filter(|&c| c >= 0) else {
            r.damage = fail("bad point count");
            break;
        };
        points.clear();
        let (mut v, mut t) = (0i64, 0i64);
        for _ in 0..count {
            let (Some(dv), Some(dt)) = (get_varint(buf, &mut pos), get_varint(buf, &mut pos))
            else {
                r.damage = Some(format!(
                    "{name}: {} of {count} points, then the file ends or is damaged",
                    points.len()
                ));
                break;
            };
            v = v.wrapping_add(dv);
            t = t.wrapping_add(dt);
            points.push(Point::new(t, f64::from_bits(v as u64)));
        }
        if !points.is_empty() {
            r.records += 1;
            r.points += points.len() as u64;
            each(name, &points);
        }
        if r.damage.is_some() {
            break;
        }
    }
    r
}

/// Decodes a plaintext dump (go-carbon `input.*` files). Bad lines are skipped, as go-carbon
/// does; an unfinished last line is damage.
pub fn decode_plain(buf: &[u8], mut each: impl FnMut(&str, &[Point])) -> DumpRead {
    let mut r = DumpRead::default();
    let complete = match buf.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    if complete < buf.len() {
        r.damage = Some(format!("unfinished last line at byte {complete}"));
    }
    for line in crate::parse::plain::lines(&buf[..complete], unix_now()).flatten() {
        r.records += 1;
        r.points += 1;
        each(line.name, &[line.point]);
    }
    r
}

/// Reads one dump file (binary if its name ends in `.bin`, as go-carbon decides).
pub fn read_file(path: &Path, each: impl FnMut(&str, &[Point])) -> Result<DumpRead> {
    let buf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let binary = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.to_ascii_lowercase().ends_with(".bin"));
    Ok(if binary {
        decode_binary(&buf, each)
    } else {
        decode_plain(&buf, each)
    })
}

/// The dump files of `dir` in go-carbon's restore order.
pub fn files_to_restore(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut list = Vec::new();
    for ent in entries {
        let ent = ent.map_err(|e| Error::io(dir, e))?;
        if ent.file_type().map(|t| t.is_dir()).unwrap_or(true) {
            continue;
        }
        let Some(name) = ent.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() < 3 {
            continue;
        }
        let kind = match parts[0] {
            "cache" => "1",
            "input" => "2",
            _ => continue,
        };
        list.push((format!("{}_{kind}:{name}", parts[2]), ent.path()));
    }
    list.sort();
    Ok(list.into_iter().map(|(_, p)| p).collect())
}

/// Close with `[dump] enabled`: the persisters are stopped; every cached point goes to a new
/// `cache.<pid>.<nanos>.bin`. On success the journal (whose points are all in the dump or in
/// whisper files) is deleted; on failure it is kept, so the next open replays it.
pub(crate) fn dump_on_close(shared: &Shared) {
    let batches = shared.cache.drain_all();
    let points: usize = batches.iter().map(|b| b.points.len()).sum();
    let result = if points == 0 {
        Ok(())
    } else {
        write_dump(&shared.config.dump_dir(), &batches)
    };
    match result {
        Ok(()) => {
            shared.stats.dump_points.fetch_add(points as u64, Relaxed);
            if let Some(d) = &shared.durability {
                d.retire();
            }
        }
        Err(e) => {
            shared.stats.dump_errors.fetch_add(1, Relaxed);
            *shared.last_write_error.lock() = Some(format!("dump on close: {e}"));
        }
    }
}

fn write_dump(dir: &Path, batches: &[crate::cache::Batch]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("cache.{}.{nanos}.bin", std::process::id());
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(&name);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| Error::io(p, e)
    };
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    for b in batches {
        buf.clear();
        encode_record(&b.name, &b.points, &mut buf);
        w.write_all(&buf).map_err(io(&tmp))?;
    }
    let file = w
        .into_inner()
        .map_err(|e| Error::io(&tmp, e.into_error()))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Open with `[dump] enabled`: restores every dump file, before `open` returns when
/// `restore-per-second = 0`, else from a background thread at that many records a second.
pub(crate) fn restore_on_open(
    shared: &Arc<Shared>,
    threads: &mut Vec<std::thread::JoinHandle<()>>,
) -> Result<()> {
    if !shared.config.dump.enabled {
        return Ok(());
    }
    let files = files_to_restore(&shared.config.dump_dir())?;
    if files.is_empty() {
        return Ok(());
    }
    let rps = shared.config.dump.restore_per_second;
    if rps == 0 {
        restore_files(shared, &files, 0);
        return Ok(());
    }
    let s = shared.clone();
    let t = std::thread::Builder::new()
        .name("carbonlite-restore".into())
        .spawn(move || restore_files(&s, &files, rps))
        .map_err(|e| Error::io("carbonlite-restore", e))?;
    threads.push(t);
    Ok(())
}

fn restore_files(shared: &Shared, files: &[PathBuf], rps: u32) {
    let start = Instant::now();
    let mut records = 0u64;
    for path in files {
        if shared.shutdown.load(Relaxed) {
            return; // the rest stays on disk for the next open
        }
        let mut chunk: Vec<(String, Point)> = Vec::new();
        let read = read_file(path, |name, points| {
            if rps > 0 {
                records += 1;
                // Pace records as go-carbon's throttle ticker does.
                let due = start + Duration::from_secs_f64(records as f64 / rps as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    if !chunk.is_empty() {
                        add_chunk(shared, &mut chunk);
                    }
                    std::thread::sleep(wait);
                }
            }
            chunk.extend(points.iter().map(|&p| (name.to_owned(), p)));
            if chunk.len() >= CHUNK {
                add_chunk(shared, &mut chunk);
            }
        });
        add_chunk(shared, &mut chunk);
        let outcome = match read {
            Ok(r) => r,
            Err(e) => {
                shared.stats.dump_errors.fetch_add(1, Relaxed);
                *shared.last_write_error.lock() = Some(format!("dump restore: {e}"));
                continue;
            }
        };
        let done = match &outcome.damage {
            None => std::fs::remove_file(path),
            Some(why) => {
                shared.stats.dump_errors.fetch_add(1, Relaxed);
                *shared.last_write_error.lock() = Some(format!(
                    "dump restore: {}: {why}; {} points restored, the rest is lost",
                    path.display(),
                    outcome.points
                ));
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                std::fs::rename(path, path.with_file_name(format!("damaged.{name}")))
            }
        };
        if let Err(e) = done {
            shared.stats.dump_errors.fetch_add(1, Relaxed);
            *shared.last_write_error.lock() = Some(format!("dump restore: {e}"));
        }
    }
}

/// Puts `chunk`'s points into the cache (journaled, waiting for room) and empties it.
fn add_chunk(shared: &Shared, chunk: &mut Vec<(String, Point)>) {
    let names: Vec<Option<Cow<'_, str>>> = chunk
        .iter()
        .map(|(n, _)| shared.counted_canonical_name(n).ok())
        .collect();
    let mut batch = AddBatch::with_capacity(chunk.len());
    for (name, (_, p)) in names.iter().zip(chunk.iter()) {
        if let Some(name) = name {
            batch.push(name, *p);
        }
    }
    let mut out = AddLinesOutcome::default();
    shared.add_batch(&mut batch, &mut out, true);
    shared
        .stats
        .restored_points
        .fetch_add(out.accepted, Relaxed);
    if out.rejected > 0 {
        shared.stats.dump_errors.fetch_add(1, Relaxed);
        if let Some(e) = out.first_error {
            *shared.last_write_error.lock() = Some(format!("dump restore: {e}"));
        }
    }
    drop(batch);
    drop(names);
    chunk.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_go() {
        // Values from Go's binary.PutVarint.
        for (x, bytes) in [
            (0i64, &[0x00u8][..]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (
                i64::MIN,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, x);
            assert_eq!(out, bytes, "{x}");
            let mut pos = 0;
            assert_eq!(get_varint(&out, &mut pos), Some(x));
            assert_eq!(pos, out.len());
        }
        assert_eq!(get_varint(&[0x80], &mut 0), None);
        assert_eq!(get_varint(&[0xff; 11], &mut 0), None);
    }

    #[test]
    fn records_round_trip_and_cut_records_keep_whole_points() {
        let pts = [
            Point::new(100, 1.5),
            Point::new(160, -2.0),
            Point::new(90, f64::INFINITY),
        ];
        let mut buf = Vec::new();
        encode_record("a.b", &pts, &mut buf);
        let first = buf.len();
        encode_record("c", &pts[..1], &mut buf);
        let mut got = Vec::new();
        let r = decode_binary(&buf, |n, p| got.push((n.to_owned(), p.to_vec())));
        assert_eq!((r.records, r.points, r.damage), (2, 4, None));
        assert_eq!(got[0], ("a.b".to_owned(), pts.to_vec()));
        for cut in (1..buf.len()).filter(|&c| c != first) {
            let mut n = 0;
            let r = decode_binary(&buf[..cut], |_, p| n += p.len());
            assert!(r.damage.is_some(), "cut {cut}");
            assert_eq!(n as u64, r.points);
            assert!(n < 4);
        }
    }
}
