//! `carbon_*` and `whisper_*` functions on an embedded carbon handle.

use std::ffi::{c_char, c_int};

use super::{bytes, c_str, carbon_error, ffi_boundary, set_last_error};
use crate::config::Config;
use crate::engine::Carbon;
use crate::error::Error;

/// An embedded carbon node: cache, persister threads and (optionally) a TCP listener.
/// Opaque; created by `carbon_open`, released by `carbon_close`.
pub struct carbon {
    inner: Carbon,
}

/// A fetched window: `len` values at `from, from+step, …` (`until` excluded); NaN marks a gap.
/// Owned by the caller after a successful `whisper_fetch`; release with `whisper_series_free`.
#[repr(C)]
#[derive(Debug)]
pub struct whisper_series {
    /// First interval (inclusive), Unix seconds.
    pub from: i64,
    /// End interval (exclusive), Unix seconds.
    pub until: i64,
    /// Seconds between values.
    pub step: i64,
    /// Number of values.
    pub len: usize,
    /// `len` values, NaN where there is no point; NULL when `len` is 0.
    pub values: *mut f64,
}

/// Counters since `carbon_open` and current cache gauges (go-carbon's self-metric names),
/// filled by `carbon_stats`. (Named `carbon_counters` because C cannot have a type and a
/// function both called `carbon_stats`.)
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct carbon_counters {
    /// Points accepted into the cache.
    pub metrics_received: u64,
    /// Lines or points refused as malformed (bad syntax, NaN value …).
    pub parse_errors: u64,
    /// Points refused for their metric name (path tricks, name policy).
    pub name_errors: u64,
    /// Points refused (`overflow = "error"`) or dropped (`"drop"`) by a full cache.
    pub overflow: u64,
    /// whisper update_many calls done.
    pub update_operations: u64,
    /// Points written to whisper files.
    pub committed_points: u64,
    /// whisper files created.
    pub created: u64,
    /// Creations postponed by `max-creates-per-second` (the points wait in the cache).
    pub throttled_creates: u64,
    /// Failed writes, retried later with backoff.
    pub write_errors: u64,
    /// Of those, full disk or quota.
    pub disk_full_errors: u64,
    /// Writes refused because the file is corrupt.
    pub corrupt_files: u64,
    /// Fetches that found points in the cache.
    pub cache_queries: u64,
    /// Points received by the TCP listener.
    pub tcp_metrics_received: u64,
    /// Lines the TCP listener refused.
    pub tcp_errors: u64,
    /// Open TCP connections.
    pub tcp_active: u64,
    /// Points in the cache now (queued + being written).
    pub cache_size: u64,
    /// Metrics in the cache now.
    pub cache_metrics: u64,
    /// `[cache] max-size`.
    pub cache_max_size: u64,
    /// Points taken by a persister and not yet confirmed written.
    pub not_confirmed: u64,
    /// Persister threads.
    pub workers: u64,
    /// Points received by the UDP listener.
    pub udp_metrics_received: u64,
    /// Lines the UDP listener refused (incomplete last lines of datagrams included).
    pub udp_errors: u64,
    /// Points received by the pickle listener.
    pub pickle_metrics_received: u64,
    /// Bad pickle entries, unreadable or oversized frames.
    pub pickle_errors: u64,
    /// Open pickle connections.
    pub pickle_active: u64,
    /// Bytes the journal's segments take now (`[journal] enabled`; 0 otherwise).
    pub journal_bytes: u64,
    /// Journal segment files now.
    pub journal_segments: u64,
    /// Journal records appended (one per add call or buffer of lines).
    pub journal_appends: u64,
    /// Bytes appended to the journal.
    pub journal_appended_bytes: u64,
    /// fsyncs of journal segments.
    pub journal_fsyncs: u64,
    /// Points replayed from the journal by `carbon_open`.
    pub journal_replayed: u64,
    /// Journal failures: appends, replay, segment release, damage found at open.
    pub journal_errors: u64,
    /// Points refused because the journal reached `max-size` (also in `overflow`).
    pub journal_refused: u64,
    /// Journal segments deleted because their points are in whisper files.
    pub journal_released: u64,
    /// Corrupt whisper files moved to `<data-dir>/.corrupt/`.
    pub quarantined: u64,
    /// Points written to a `[dump]` file on close.
    pub dump_points: u64,
    /// Points restored from `[dump]` files on open.
    pub restored_points: u64,
    /// Dump files that could not be written or read, or were damaged.
    pub dump_errors: u64,
}

/// Detailed result of `carbon_add_line_ex`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct carbon_add_result {
    /// Points now in the cache.
    pub accepted: u64,
    /// Lines refused (malformed, bad name, or cache full).
    pub rejected: u64,
    /// Of the rejected, how many a full cache refused.
    pub refused_full: u64,
}

/// Resolves a handle argument.
///
/// # Safety
/// `c` is NULL or a live pointer from `carbon_open`.
unsafe fn handle<'a>(c: *const carbon) -> Result<&'a Carbon, Error> {
    // SAFETY: per the caller's contract the pointer is NULL or live.
    unsafe { c.as_ref() }
        .map(|c| &c.inner)
        .ok_or_else(|| Error::invalid("carbon handle is NULL"))
}

fn open_with(config: Result<Config, Error>) -> Result<*mut carbon, Error> {
    let inner = Carbon::open(config?)?;
    Ok(Box::into_raw(Box::new(carbon { inner })))
}

/// Opens an embedded carbon storing whisper files under `data_dir`.
///
/// `options` is NULL or go-carbon.conf TOML text (`[whisper] workers = 4`, `[cache] max-size`,
/// `[tcp] enabled = true` …); `data_dir` overrides `[whisper] data-dir`. Unknown keys and bad
/// values fail, naming the key.
///
/// Returns a handle, or NULL with `carbon_last_error()` saying why.
/// Ownership: release with `carbon_close`. Thread safety: the handle may be used from any
/// number of threads at once.
///
/// # Safety
/// `data_dir` is a NUL-terminated path; `options` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn carbon_open(
    data_dir: *const c_char,
    options: *const c_char,
) -> *mut carbon {
    ffi_boundary!(*mut carbon, {
        // SAFETY: caller contract.
        let dir = unsafe { c_str(data_dir, "data_dir") }?;
        let mut config = Config::embedded(dir);
        if !options.is_null() {
            // SAFETY: caller contract.
            let text = unsafe { c_str(options, "options") }?;
            config = config.apply_toml(text, "<options>")?;
            config.whisper.data_dir = dir.into();
        }
        open_with(Ok(config))
    })
}

/// Opens an embedded carbon from a go-carbon.conf file (its `[whisper] data-dir` is used).
/// Returns a handle or NULL (see `carbon_last_error()`); release with `carbon_close`.
///
/// # Safety
/// `path` is a NUL-terminated path.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn carbon_open_config(path: *const c_char) -> *mut carbon {
    ffi_boundary!(*mut carbon, {
        // SAFETY: caller contract.
        let path = unsafe { c_str(path, "path") }?;
        // Embedded defaults underneath: the listener runs only if the file enables it.
        let config = Config::embedded("data").apply_file(std::path::Path::new(path))?;
        open_with(Ok(config))
    })
}

/// Adds plaintext lines (`name value timestamp\n` …, carbon's rules) from `buf[0..len]`.
///
/// Returns the number of points accepted (bad lines are skipped and counted in
/// `carbon_stats.parse_errors`/`name_errors`; `carbon_last_error()` then describes the first
/// one), or `CARBON_EFULL` when a full cache refused some points (the rest were accepted;
/// `carbon_add_line_ex` reports the counts), or another negative `carbon_error`.
/// The buffer is only read during the call.
///
/// # Safety
/// `c` is from `carbon_open`; `buf` points to `len` readable bytes (NULL only if `len` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn carbon_add_line(c: *mut carbon, buf: *const c_char, len: usize) -> i64 {
    let mut out = carbon_add_result::default();
    // SAFETY: same contract as ours.
    let r = unsafe { carbon_add_line_ex(c, buf, len, &mut out) };
    if r < 0 { r as i64 } else { out.accepted as i64 }
}

/// `carbon_add_line` with the accepted / rejected / refused-by-full-cache counts written to
/// `*out` (also when the result is `CARBON_EFULL`). Returns 0, `CARBON_EFULL`, or another
/// negative `carbon_error` (then `*out` is untouched).
///
/// # Safety
/// As `carbon_add_line`; `out` is a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn carbon_add_line_ex(
    c: *mut carbon,
    buf: *const c_char,
    len: usize,
    out: *mut carbon_add_result,
) -> c_int {
    ffi_boundary!(c_int, {
        // SAFETY: caller contract.
        let carbon = unsafe { handle(c) }?;
        // SAFETY: caller contract.
        let data = unsafe { bytes(buf, len, "buf") }?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let r = carbon.add_lines(data);
        let result = carbon_add_result {
            accepted: r.accepted,
            rejected: r.rejected,
            refused_full: r.refused_full,
        };
        // SAFETY: checked non-NULL; caller guarantees it is valid for writes.
        unsafe { out.write(result) };
        if let Some(e) = &r.first_error {
            set_last_error(&e.to_string());
        }
        if r.refused_full > 0 {
            set_last_error(
                &Error::Full {
                    accepted: r.accepted,
                    refused: r.refused_full,
                }
                .to_string(),
            );
            return Ok(carbon_error::CARBON_EFULL as i32);
        }
        Ok(0)
    })
}

/// Adds one point. `timestamp` -1 means now. Returns 0 or a negative `carbon_error`
/// (`CARBON_EINVAL` for NaN or a timestamp outside 0..=2^32-1, `CARBON_ENAME` for a refused
/// name, `CARBON_EFULL` …).
///
/// # Safety
/// `c` is from `carbon_open`; `metric` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn carbon_add(
    c: *mut carbon,
    metric: *const c_char,
    value: f64,
    timestamp: i64,
) -> c_int {
    ffi_boundary!(c_int, {
        // SAFETY: caller contract.
        let carbon = unsafe { handle(c) }?;
        // SAFETY: caller contract.
        let metric = unsafe { c_str(metric, "metric") }?;
        carbon.add(metric, value, timestamp)?;
        Ok(0)
    })
}

/// Returns once every point accepted before the call is in its whisper file. Returns 0, or
/// `CARBON_EIO`/`CARBON_ENOSPC` when files keep failing (their points stay cached and are
/// retried).
///
/// # Safety
/// `c` is from `carbon_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn carbon_flush(c: *mut carbon) -> c_int {
    ffi_boundary!(c_int, {
        // SAFETY: caller contract.
        unsafe { handle(c) }?.flush()?;
        Ok(0)
    })
}

/// whisper.py's `fetch(from, until)` on `metric`'s file with every cached point laid over it
/// (`until <= 0`: now). A metric only in the cache uses the window its schema will give it.
/// Returns 0 and fills `*out` (which the caller then frees with `whisper_series_free`), or a
/// negative `carbon_error` (`CARBON_ENOTFOUND` for an unknown metric) leaving `*out` untouched.
/// A window entirely outside the retention gives `len == 0`.
///
/// # Safety
/// `c` is from `carbon_open`; `metric` is NUL-terminated; `out` is valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn whisper_fetch(
    c: *mut carbon,
    metric: *const c_char,
    from: i64,
    until: i64,
    out: *mut whisper_series,
) -> c_int {
    ffi_boundary!(c_int, {
        // SAFETY: caller contract.
        let carbon = unsafe { handle(c) }?;
        // SAFETY: caller contract.
        let metric = unsafe { c_str(metric, "metric") }?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let s = carbon.fetch(metric, from, (until > 0).then_some(until))?;
        let len = s.values.len();
        let values = if len == 0 {
            std::ptr::null_mut()
        } else {
            Box::into_raw(s.values.into_boxed_slice()).cast::<f64>()
        };
        // SAFETY: checked non-NULL; caller guarantees it is valid for writes.
        unsafe {
            out.write(whisper_series {
                from: s.from,
                until: s.until,
                step: s.step,
                len,
                values,
            })
        };
        Ok(0)
    })
}

/// Frees the values of a series filled by `whisper_fetch` and resets it (`values = NULL`,
/// `len = 0`), so freeing twice is harmless. NULL is a no-op.
///
/// # Safety
/// `s` is NULL or a series filled by `whisper_fetch` (or already freed).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn whisper_series_free(s: *mut whisper_series) {
    ffi_boundary!((), {
        // SAFETY: caller contract: NULL or a valid series.
        if let Some(s) = unsafe { s.as_mut() } {
            if !s.values.is_null() && s.len > 0 {
                let slice = std::ptr::slice_from_raw_parts_mut(s.values, s.len);
                // SAFETY: values/len came from Box<[f64]>::into_raw in whisper_fetch.
                drop(unsafe { Box::from_raw(slice) });
            }
            s.values = std::ptr::null_mut();
            s.len = 0;
        }
        Ok(())
    })
}

/// Copies counters and gauges into `*out`. Returns 0 or a negative `carbon_error`.
///
/// `carbon_counters` grows at the end as counters are added: a program that may load a newer
/// library than the header it was built with calls `carbon_stats_sized` instead.
///
/// # Safety
/// `c` is from `carbon_open`; `out` is valid for writes of this header's `carbon_counters`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn carbon_stats(c: *mut carbon, out: *mut carbon_counters) -> c_int {
    ffi_boundary!(c_int, {
        // SAFETY: caller contract.
        let v = counters(unsafe { handle(c) }?);
        // SAFETY: caller contract (the whole struct is writable).
        unsafe { write_prefix(&v, out, std::mem::size_of::<carbon_counters>()) }.map(|_| 0)
    })
}

/// `carbon_stats` that writes at most `size` bytes: pass `sizeof(carbon_counters)` as the
/// program's header has it. Fields only ever grow at the end, so a program built against an
/// older header gets every field it knows and nothing past its struct; a newer header's
/// extra fields stay untouched. Returns this library's `sizeof(carbon_counters)` (the bytes
/// written are the smaller of the two), or a negative `carbon_error`. `size` 0 writes
/// nothing and `out` may then be NULL: a way to ask the size.
///
/// # Safety
/// `c` is from `carbon_open`; `out` is valid for writes of `size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn carbon_stats_sized(
    c: *mut carbon,
    out: *mut carbon_counters,
    size: usize,
) -> c_int {
    ffi_boundary!(c_int, {
        // SAFETY: caller contract.
        let v = counters(unsafe { handle(c) }?);
        // SAFETY: caller contract.
        unsafe { write_prefix(&v, out, size) }
    })
}

/// Writes the first `size` bytes of `v` to `out` (all of `v` at most); returns `size_of::<T>()`.
///
/// # Safety
/// `out` is NULL with `size` 0, or valid for writes of `size` bytes.
unsafe fn write_prefix<T: Copy>(v: &T, out: *mut T, size: usize) -> Result<c_int, Error> {
    let n = size.min(std::mem::size_of::<T>());
    if n > 0 {
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        // SAFETY: `v` is a live `T` of at least `n` bytes; the caller guarantees `out` holds
        // `size` ≥ `n` writable bytes; a local and the caller's buffer cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(std::ptr::from_ref(v).cast::<u8>(), out.cast::<u8>(), n)
        };
    }
    Ok(std::mem::size_of::<T>() as c_int)
}

/// The handle's counters in their C layout.
fn counters(c: &Carbon) -> carbon_counters {
    let s = c.stats();
    carbon_counters {
        metrics_received: s.metrics_received,
        parse_errors: s.parse_errors,
        name_errors: s.name_errors,
        overflow: s.overflow,
        update_operations: s.update_operations,
        committed_points: s.committed_points,
        created: s.created,
        throttled_creates: s.throttled_creates,
        write_errors: s.write_errors,
        disk_full_errors: s.disk_full_errors,
        corrupt_files: s.corrupt_files,
        cache_queries: s.cache_queries,
        tcp_metrics_received: s.tcp_metrics_received,
        tcp_errors: s.tcp_errors,
        tcp_active: s.tcp_active,
        cache_size: s.cache_size,
        cache_metrics: s.cache_metrics,
        cache_max_size: s.cache_max_size,
        not_confirmed: s.not_confirmed,
        workers: s.workers,
        udp_metrics_received: s.udp_metrics_received,
        udp_errors: s.udp_errors,
        pickle_metrics_received: s.pickle_metrics_received,
        pickle_errors: s.pickle_errors,
        pickle_active: s.pickle_active,
        journal_bytes: s.journal_bytes,
        journal_segments: s.journal_segments,
        journal_appends: s.journal_appends,
        journal_appended_bytes: s.journal_appended_bytes,
        journal_fsyncs: s.journal_fsyncs,
        journal_replayed: s.journal_replayed,
        journal_errors: s.journal_errors,
        journal_refused: s.journal_refused,
        journal_released: s.journal_released,
        quarantined: s.quarantined,
        dump_points: s.dump_points,
        restored_points: s.restored_points,
        dump_errors: s.dump_errors,
    }
}

/// Stops the listener, writes every cached point to its whisper file (to a go-carbon dump
/// file instead with `[dump] enabled`), stops the threads and frees the handle. NULL is a
/// no-op. No other thread may use the handle during or after.
///
/// # Safety
/// `c` is NULL or from `carbon_open`, and not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn carbon_close(c: *mut carbon) {
    ffi_boundary!((), {
        if !c.is_null() {
            // SAFETY: from Box::into_raw in carbon_open; the caller gives it up.
            let b = unsafe { Box::from_raw(c) };
            b.inner.close();
        }
        Ok(())
    })
}

/// One node a glob matched (see `carbon_find`).
#[repr(C)]
#[derive(Debug)]
pub struct carbon_find_match {
    /// Dotted metric path, NUL-terminated; owned by the list.
    pub path: *mut c_char,
    /// True for a metric, false for a branch (a directory, or a prefix of cached names).
    pub is_leaf: bool,
}

/// What `carbon_find` returns: `len` matches sorted by path. Release with
/// `carbon_find_list_free`.
#[repr(C)]
#[derive(Debug)]
pub struct carbon_find_list {
    /// `len` matches; NULL when `len` is 0.
    pub matches: *mut carbon_find_match,
    /// Number of matches.
    pub len: usize,
}

/// Expands a Graphite glob (`*`, `?`, `[a-z]`, `[!a-z]`, `{a,b}`) over the whisper tree and
/// the metrics still only in the cache, as carbonserver's `/metrics/find/` does.
/// Returns the number of matches (also `out->len`) and fills `*out`, or a negative
/// `carbon_error` (`CARBON_EINVAL` for a malformed or too broad glob) leaving `*out`
/// untouched. Ownership: the caller frees `*out` with `carbon_find_list_free`.
/// Thread safety: any thread, concurrently with every other call on `c`.
///
/// # Safety
/// `c` is from `carbon_open`; `pattern` is NUL-terminated; `out` is valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn carbon_find(
    c: *mut carbon,
    pattern: *const c_char,
    out: *mut carbon_find_list,
) -> i64 {
    ffi_boundary!(i64, {
        // SAFETY: caller contract.
        let carbon = unsafe { handle(c) }?;
        // SAFETY: caller contract.
        let pattern = unsafe { c_str(pattern, "pattern") }?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let found = carbon.find(pattern)?;
        let mut items = Vec::with_capacity(found.len());
        for m in found {
            let path = std::ffi::CString::new(m.path)
                .map_err(|_| Error::invalid("metric path contains NUL"))?;
            items.push(carbon_find_match {
                path: path.into_raw(),
                is_leaf: m.is_leaf,
            });
        }
        let len = items.len();
        let matches = if len == 0 {
            std::ptr::null_mut()
        } else {
            Box::into_raw(items.into_boxed_slice()).cast::<carbon_find_match>()
        };
        // SAFETY: checked non-NULL; caller guarantees it is valid for writes.
        unsafe { out.write(carbon_find_list { matches, len }) };
        Ok(len as i64)
    })
}

/// Frees what `carbon_find` put in `*list` and resets it (`matches = NULL`, `len = 0`), so
/// freeing twice is harmless. NULL is a no-op.
///
/// # Safety
/// `list` is NULL or a list filled by `carbon_find` (or already freed).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn carbon_find_list_free(list: *mut carbon_find_list) {
    ffi_boundary!((), {
        // SAFETY: caller contract: NULL or a valid list.
        if let Some(l) = unsafe { list.as_mut() } {
            if !l.matches.is_null() && l.len > 0 {
                let slice = std::ptr::slice_from_raw_parts_mut(l.matches, l.len);
                // SAFETY: matches/len came from Box<[carbon_find_match]>::into_raw.
                let items = unsafe { Box::from_raw(slice) };
                for m in items.iter() {
                    if !m.path.is_null() {
                        // SAFETY: from CString::into_raw in carbon_find.
                        drop(unsafe { std::ffi::CString::from_raw(m.path) });
                    }
                }
            }
            l.matches = std::ptr::null_mut();
            l.len = 0;
        }
        Ok(())
    })
}

/// Bytes of `carbon_destination_counters.destination`, NUL included (the C struct spells
/// out 256, since the header exports no constants).
pub const CARBON_DESTINATION_NAME_LEN: usize = 256;

/// Counters of one `[cluster]` destination (carbon-relay's `destinations.<d>.*`), filled by
/// `carbon_destination_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct carbon_destination_counters {
    /// `host:port[:instance]` as configured, NUL-terminated (cut to fit 256 bytes).
    // A literal: cbindgen exports no constants (cbindgen.toml), so C sees the size here.
    pub destination: [c_char; 256],
    /// True for this process's own entry (`local`): its share is stored, not sent, and the
    /// sender counters stay 0.
    pub local: bool,
    /// Points written to a connection to the destination.
    pub sent: u64,
    /// Points waiting now (memory queue, connections' batches and spill; gauge).
    pub queued: u64,
    /// Points dropped because queue and spill were full (carbon's `fullQueueDrops`).
    pub dropped: u64,
    /// Connections re-established after one was lost or refused.
    pub reconnects: u64,
    /// Connect attempts that failed.
    pub connect_failures: u64,
    /// Points written to the spill journal past `queue-size`.
    pub spilled: u64,
    /// Queries (fetch/find) to the destination's carbonserver that failed.
    pub query_errors: u64,
    /// Points a stream listener held back until the destination's full queue had room
    /// (`flow-control`, carbon-c-relay's `metricStalls`).
    pub stalls: u64,
}

/// Number of `[cluster]` destinations of `c` (0 for a handle opened without `[cluster]`);
/// valid indices for `carbon_destination_stats` are `0..count`. Returns the count or a
/// negative `carbon_error`.
///
/// # Safety
/// `c` is from `carbon_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn carbon_destination_count(c: *mut carbon) -> c_int {
    ffi_boundary!(c_int, {
        // SAFETY: caller contract.
        let n = unsafe { handle(c) }?.destination_stats().len();
        Ok(c_int::try_from(n).unwrap_or(c_int::MAX))
    })
}

/// Copies the counters of destination `index` (configuration order) into `*out`. Returns 0,
/// or `CARBON_EINVAL` for an index past `carbon_destination_count` or a NULL argument
/// (`*out` then untouched). Thread safety: any thread, concurrently with every other call.
/// The struct grows at the end: see `carbon_destination_stats_sized`.
///
/// # Safety
/// `c` is from `carbon_open`; `out` is valid for writes of this header's struct.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn carbon_destination_stats(
    c: *mut carbon,
    index: usize,
    out: *mut carbon_destination_counters,
) -> c_int {
    ffi_boundary!(c_int, {
        // SAFETY: caller contract.
        let v = destination_counters(unsafe { handle(c) }?, index)?;
        let size = std::mem::size_of::<carbon_destination_counters>();
        // SAFETY: caller contract (the whole struct is writable).
        unsafe { write_prefix(&v, out, size) }.map(|_| 0)
    })
}

/// `carbon_destination_stats` that writes at most `size` bytes (pass
/// `sizeof(carbon_destination_counters)`), as `carbon_stats_sized` does. Returns this library's
/// `sizeof(carbon_destination_counters)` or a negative `carbon_error`.
///
/// # Safety
/// `c` is from `carbon_open`; `out` is valid for writes of `size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn carbon_destination_stats_sized(
    c: *mut carbon,
    index: usize,
    out: *mut carbon_destination_counters,
    size: usize,
) -> c_int {
    ffi_boundary!(c_int, {
        // SAFETY: caller contract.
        let v = destination_counters(unsafe { handle(c) }?, index)?;
        // SAFETY: caller contract.
        unsafe { write_prefix(&v, out, size) }
    })
}

/// Destination `index`'s counters in their C layout.
fn destination_counters(c: &Carbon, index: usize) -> Result<carbon_destination_counters, Error> {
    let all = c.destination_stats();
    let d = all.get(index).ok_or_else(|| {
        Error::invalid(format!(
            "destination index {index}: the handle has {} destinations",
            all.len()
        ))
    })?;
    let mut name = [0 as c_char; CARBON_DESTINATION_NAME_LEN];
    let text = d.destination.to_string();
    let n = text.len().min(CARBON_DESTINATION_NAME_LEN - 1);
    for (dst, &b) in name.iter_mut().zip(&text.as_bytes()[..n]) {
        *dst = b as c_char;
    }
    Ok(carbon_destination_counters {
        destination: name,
        local: d.local,
        sent: d.sender.sent,
        queued: d.sender.queued,
        dropped: d.sender.dropped,
        reconnects: d.sender.reconnects,
        connect_failures: d.sender.connect_failures,
        spilled: d.sender.spilled,
        query_errors: d.query_errors,
        stalls: d.sender.stalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: never NULL.
        unsafe { CStr::from_ptr(super::super::carbon_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn null_arguments_are_errors() {
        // SAFETY: exercising NULL handling.
        unsafe {
            assert!(carbon_open(std::ptr::null(), std::ptr::null()).is_null());
            assert!(last().contains("data_dir is NULL"));
            assert_eq!(
                carbon_add(std::ptr::null_mut(), c"a".as_ptr(), 1.0, 1),
                carbon_error::CARBON_EINVAL as i32
            );
            assert_eq!(
                carbon_add_line(std::ptr::null_mut(), std::ptr::null(), 0),
                carbon_error::CARBON_EINVAL as i64
            );
            assert_eq!(
                carbon_flush(std::ptr::null_mut()),
                carbon_error::CARBON_EINVAL as i32
            );
            assert_eq!(
                carbon_stats(std::ptr::null_mut(), std::ptr::null_mut()),
                carbon_error::CARBON_EINVAL as i32
            );
            whisper_series_free(std::ptr::null_mut());
            carbon_close(std::ptr::null_mut());
        }
    }

    #[test]
    fn open_add_fetch_close() {
        let dir = tempfile::tempdir().unwrap();
        let d = std::ffi::CString::new(dir.path().to_str().unwrap()).unwrap();
        // SAFETY: valid arguments throughout.
        unsafe {
            let c = carbon_open(d.as_ptr(), c"[whisper]\nworkers = 1\n".as_ptr());
            assert!(!c.is_null(), "{}", last());
            let now = crate::points::unix_now();
            let line = format!("a.b 1.5 {now}\nbad line\nc.d nan {now}\n");
            let n = carbon_add_line(c, line.as_ptr().cast(), line.len());
            assert_eq!(n, 1);
            assert!(last().contains("bad line"), "{}", last());
            let mut s = carbon_counters::default();
            assert_eq!(carbon_stats(c, &mut s), 0);
            assert_eq!((s.metrics_received, s.parse_errors), (1, 2));
            let mut out = whisper_series {
                from: 0,
                until: 0,
                step: 0,
                len: 0,
                values: std::ptr::null_mut(),
            };
            assert_eq!(whisper_fetch(c, c"a.b".as_ptr(), now - 60, 0, &mut out), 0);
            let vals = std::slice::from_raw_parts(out.values, out.len);
            assert_eq!(vals.iter().filter(|v| !v.is_nan()).count(), 1);
            whisper_series_free(&mut out);
            whisper_series_free(&mut out);
            assert!(out.values.is_null());
            assert_eq!(carbon_flush(c), 0);
            assert!(dir.path().join("a/b.wsp").exists());
            assert_eq!(
                whisper_fetch(c, c"no.such".as_ptr(), now - 60, 0, &mut out),
                carbon_error::CARBON_ENOTFOUND as i32
            );
            assert_eq!(
                carbon_add(c, c"../etc/passwd".as_ptr(), 1.0, now),
                carbon_error::CARBON_ENAME as i32
            );
            for ts in [-2, 1 << 32] {
                assert_eq!(
                    carbon_add(c, c"a.b".as_ptr(), 1.0, ts),
                    carbon_error::CARBON_EINVAL as i32
                );
                assert!(last().contains("outside whisper's range"), "{}", last());
            }
            carbon_close(c);
            assert!(carbon_open(d.as_ptr(), c"[cache]\nmax-sise = 1\n".as_ptr()).is_null());
            assert!(last().contains("max-sise"), "{}", last());
        }
    }

    #[test]
    fn find_lists_tree_and_cache() {
        let dir = tempfile::tempdir().unwrap();
        let d = std::ffi::CString::new(dir.path().to_str().unwrap()).unwrap();
        // SAFETY: valid arguments throughout, NULLs where the contract allows them.
        unsafe {
            let c = carbon_open(d.as_ptr(), c"[whisper]\nworkers = 1\n".as_ptr());
            assert!(!c.is_null(), "{}", last());
            let now = crate::points::unix_now();
            assert_eq!(carbon_add(c, c"srv.a.cpu".as_ptr(), 1.0, now), 0);
            assert_eq!(carbon_flush(c), 0);
            assert_eq!(carbon_add(c, c"srv.b.cpu".as_ptr(), 1.0, now), 0);
            let mut out = carbon_find_list {
                matches: std::ptr::null_mut(),
                len: 0,
            };
            assert_eq!(carbon_find(c, c"srv.*".as_ptr(), &mut out), 2, "{}", last());
            let got: Vec<(String, bool)> = std::slice::from_raw_parts(out.matches, out.len)
                .iter()
                .map(|m| {
                    (
                        std::ffi::CStr::from_ptr(m.path)
                            .to_str()
                            .unwrap()
                            .to_string(),
                        m.is_leaf,
                    )
                })
                .collect();
            assert_eq!(
                got,
                [("srv.a".to_string(), false), ("srv.b".to_string(), false)]
            );
            carbon_find_list_free(&mut out);
            carbon_find_list_free(&mut out);
            assert!(out.matches.is_null());
            assert_eq!(carbon_find(c, c"srv.*.cpu".as_ptr(), &mut out), 2);
            assert!(
                std::slice::from_raw_parts(out.matches, out.len)
                    .iter()
                    .all(|m| m.is_leaf)
            );
            carbon_find_list_free(&mut out);
            assert_eq!(carbon_find(c, c"nothing.*".as_ptr(), &mut out), 0);
            assert!(out.matches.is_null());
            assert_eq!(
                carbon_find(c, c"a..b".as_ptr(), &mut out),
                carbon_error::CARBON_EINVAL as i64
            );
            assert_eq!(
                carbon_find(c, std::ptr::null(), &mut out),
                carbon_error::CARBON_EINVAL as i64
            );
            assert_eq!(
                carbon_find(std::ptr::null_mut(), c"x".as_ptr(), &mut out),
                carbon_error::CARBON_EINVAL as i64
            );
            carbon_find_list_free(std::ptr::null_mut());
            carbon_close(c);
        }
    }

    #[test]
    fn sized_stats_write_no_more_than_the_callers_struct() {
        let dir = tempfile::tempdir().unwrap();
        let d = std::ffi::CString::new(dir.path().to_str().unwrap()).unwrap();
        let full = std::mem::size_of::<carbon_counters>();
        // SAFETY: valid arguments throughout; the buffers hold `size` bytes.
        unsafe {
            let c = carbon_open(d.as_ptr(), c"[whisper]\nenabled = false\n".as_ptr());
            assert!(!c.is_null(), "{}", last());
            let line = "a.b 1 1700000000\nbad\nc nan 1700000000\n";
            assert_eq!(carbon_add_line(c, line.as_ptr().cast(), line.len()), 1);
            // A host built against an older header: three fields, then memory of its own.
            #[repr(C)]
            struct Old {
                metrics_received: u64,
                parse_errors: u64,
                name_errors: u64,
                after: [u8; 64],
            }
            let mut old = Old {
                metrics_received: 0,
                parse_errors: 0,
                name_errors: 9,
                after: [0xAA; 64],
            };
            let got = carbon_stats_sized(c, std::ptr::from_mut(&mut old).cast(), 24);
            assert_eq!(got as usize, full);
            assert_eq!((old.metrics_received, old.parse_errors), (1, 2));
            assert_eq!(old.name_errors, 0);
            assert_eq!(old.after, [0xAA; 64], "nothing past the host's struct");
            // A host built against a newer header: its extra fields stay as they were.
            let mut newer = vec![0xBBu8; full + 16];
            assert_eq!(
                carbon_stats_sized(c, newer.as_mut_ptr().cast(), newer.len()) as usize,
                full
            );
            assert!(newer[full..].iter().all(|&b| b == 0xBB));
            let mut s = carbon_counters::default();
            assert_eq!(carbon_stats(c, &mut s), 0);
            let same: carbon_counters = newer.as_ptr().cast::<carbon_counters>().read_unaligned();
            assert_eq!(
                (same.metrics_received, same.parse_errors, same.dump_errors),
                (s.metrics_received, s.parse_errors, s.dump_errors)
            );
            // Size 0 asks the size, and needs no buffer; any other size does.
            assert_eq!(
                carbon_stats_sized(c, std::ptr::null_mut(), 0) as usize,
                full
            );
            assert_eq!(
                carbon_stats_sized(c, std::ptr::null_mut(), 8),
                carbon_error::CARBON_EINVAL as i32
            );
            assert_eq!(
                carbon_stats_sized(std::ptr::null_mut(), &mut s, full),
                carbon_error::CARBON_EINVAL as i32
            );
            carbon_close(c);
        }
    }

    #[test]
    fn destination_stats_through_the_c_api() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::embedded(dir.path())
            .apply_toml(
                "[whisper]\nenabled = false\n[cluster]\n\
                 destinations = [\"127.0.0.1:1:a\", \"127.0.0.1:1:b\"]\n\
                 local = \"127.0.0.1:1:b\"\nconnect-timeout = \"50ms\"\nspill = false\n",
                "<t>",
            )
            .unwrap();
        let c = open_with(Ok(cfg)).unwrap();
        // SAFETY: c is live until carbon_close; out points to a local.
        unsafe {
            assert_eq!(carbon_destination_count(c), 2);
            let mut out = std::mem::MaybeUninit::<carbon_destination_counters>::zeroed();
            assert_eq!(carbon_destination_stats(c, 1, out.as_mut_ptr()), 0);
            let out = out.assume_init();
            let name = std::ffi::CStr::from_ptr(out.destination.as_ptr());
            assert_eq!(name.to_str().unwrap(), "127.0.0.1:1:b");
            assert!(out.local);
            let mut o2 = out;
            assert_eq!(
                carbon_destination_stats(c, 2, &mut o2),
                carbon_error::CARBON_EINVAL as i32
            );
            assert_eq!(
                carbon_destination_stats(c, 0, std::ptr::null_mut()),
                carbon_error::CARBON_EINVAL as i32
            );
            assert_eq!(
                carbon_destination_count(std::ptr::null_mut()),
                carbon_error::CARBON_EINVAL as i32
            );
            // Sized: the name and nothing past what the caller has.
            let full = std::mem::size_of::<carbon_destination_counters>();
            let mut buf = vec![0xCCu8; full];
            let got = carbon_destination_stats_sized(c, 0, buf.as_mut_ptr().cast(), 16);
            assert_eq!(got as usize, full);
            assert_eq!(&buf[..14], b"127.0.0.1:1:a\0");
            assert!(buf[16..].iter().all(|&b| b == 0xCC));
            assert_eq!(
                carbon_destination_stats_sized(c, 2, buf.as_mut_ptr().cast(), full),
                carbon_error::CARBON_EINVAL as i32
            );
            carbon_close(c);
        }
    }
}
