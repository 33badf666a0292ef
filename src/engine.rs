//! `Carbon`: one embedded carbon node — cache, persister threads, optional TCP listener and
//! self-metrics — with open / add / fetch / flush / close (go-carbon `carbon/app.go`).

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::cache::{AddBatch, AddOutcome, Cache, CacheOptions};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::names;
use crate::parse::plain;
use crate::persister::Persister;
use crate::points::{Point, unix_now};
use crate::schema::StorageRules;
use crate::stats::{Snapshot, Stats};
use crate::tags;
use crate::whisper::{FilePool, Retention, Series};

/// State shared by the handle, the persister workers and the listener.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) rules: StorageRules,
    pub(crate) cache: Cache,
    pub(crate) stats: Stats,
    pub(crate) pool: FilePool,
    pub(crate) shutdown: AtomicBool,
    /// Text of the persister's most recent failure, for `flush` errors and the daemon's log.
    pub(crate) last_write_error: Mutex<Option<String>>,
    /// Addresses the listeners are bound to (to wake their accept calls on close).
    pub(crate) listen_addrs: Mutex<Vec<std::net::SocketAddr>>,
    /// Set first on close: listeners stop accepting and connections finish.
    pub(crate) receivers_stopping: AtomicBool,
    /// Accept and connection threads of the stream listeners, which close waits for.
    pub(crate) streams: crate::receiver::StreamThreads,
    /// Where `[udp]` and `[pickle]` are bound.
    pub(crate) receiver_addrs: Mutex<crate::receiver::Bound>,
    /// Close's wake-up for timer threads (self-metrics).
    pub(crate) stop: StopSignal,
    /// `[cluster]`: every add is routed through it (None = standalone).
    pub(crate) cluster: Option<crate::cluster::Routed>,
    /// The write-ahead journal, when `[journal] enabled`.
    pub(crate) durability: Option<crate::durability::Durability>,
}

/// What `add_lines` did with a buffer: every line is either accepted or counted as rejected.
#[derive(Debug, Default)]
pub struct AddLinesOutcome {
    /// Points now in the cache.
    pub accepted: u64,
    /// Lines refused (malformed, bad name, or refused by a full cache).
    pub rejected: u64,
    /// Of the rejected, how many a full cache refused.
    pub refused_full: u64,
    /// Why the first rejected line was refused.
    pub first_error: Option<Error>,
}

impl AddLinesOutcome {
    fn record(&mut self, r: Result<()>) {
        match r {
            Ok(()) => self.accepted += 1,
            Err(e) => self.reject(1, e),
        }
    }

    /// `n` points refused for the same reason `e`.
    pub(crate) fn reject(&mut self, n: u64, e: Error) {
        self.rejected += n;
        if matches!(e, Error::Full { .. }) {
            self.refused_full += n;
        }
        self.first_error.get_or_insert(e);
    }
}

/// Lines parsed before their points go to the cache in one `Cache::add_batch`: enough that
/// the cache's 1024 shards get ~16 points per lock (each unlock waits for the shard's
/// stores, so fewer locks per point pay; 3–5% over 4096 on `benches/ingest.rs`), while the
/// batch (40 bytes a point) stays within a large L2.
const ADD_CHUNK: usize = 16384;

/// Bytes of renamed names one `add_lines` call keeps for its batches (see `add_parsed`):
/// a megabyte read off a socket fits, a gigabyte buffer from the C API does not grow the
/// arena past this.
const RENAMED_BYTES: usize = 1 << 20;

/// An embedded carbon node. Every method takes `&self` and is safe to call from any number of
/// threads at once.
#[derive(Debug)]
pub struct Carbon {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
    /// carbonlink and carbonserver; stopped first on close.
    query: Mutex<crate::carbonserver::QueryListeners>,
}

impl Carbon {
    /// Creates the data dir if needed, reads the storage rules and starts the persister
    /// workers, the self-metrics timer and, when `[tcp] enabled`, the listener.
    pub fn open(config: Config) -> Result<Carbon> {
        let data_dir = config.whisper.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|e| Error::io(&data_dir, e))?;
        let (durability, replay) = match config.journal.enabled {
            true => {
                crate::durability::Durability::open(&config).map(|(d, r)| (Some(d), Some(r)))?
            }
            false => (None, None),
        };
        let rules = StorageRules::load(
            config.whisper.schemas_file.as_deref(),
            config.whisper.aggregation_file.as_deref(),
        )?;
        let cluster = (config.cluster.clone())
            .map(|c| crate::cluster::Routed::new(c, &data_dir))
            .transpose()?;
        let cache = Cache::new(CacheOptions {
            max_size: config.cache.max_size,
            write_strategy: config.cache.write_strategy,
            overflow: config.cache.overflow,
            ..CacheOptions::default()
        });
        let shared = Arc::new(Shared {
            pool: FilePool::new(config.whisper.open_files()),
            rules,
            cache,
            stats: Stats::default(),
            shutdown: AtomicBool::new(false),
            last_write_error: Mutex::new(None),
            listen_addrs: Mutex::new(Vec::new()),
            receivers_stopping: AtomicBool::new(false),
            streams: Default::default(),
            receiver_addrs: Mutex::new(Default::default()),
            stop: StopSignal::default(),
            cluster,
            durability,
            config,
        });
        let carbon = Carbon {
            shared: shared.clone(),
            threads: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            query: Mutex::new(Default::default()),
        };
        let mut threads = Vec::new();
        if shared.config.whisper.enabled {
            let persister = Arc::new(Persister::new(shared.clone()));
            for i in 0..shared.config.whisper.workers {
                let p = persister.clone();
                threads.push(spawn(format!("carbonlite-persist-{i}"), move || p.run())?);
            }
        }
        // Journal replay and dump restore fill the cache before any listener starts.
        if let Err(e) = crate::durability::start(&shared, replay.as_ref(), &mut threads) {
            *carbon.threads.lock() = threads;
            carbon.close();
            return Err(e);
        }
        if !shared.config.common.metric_interval.is_zero()
            && shared.config.common.metric_endpoint == "local"
        {
            let s = shared.clone();
            threads.push(spawn("carbonlite-selfmetrics".into(), move || {
                self_metrics_loop(&s)
            })?);
        }
        if shared.config.tcp.enabled {
            match crate::receiver::TcpReceiver::start(shared.clone()) {
                Ok(handles) => threads.extend(handles),
                Err(e) => {
                    *carbon.threads.lock() = threads;
                    carbon.close();
                    return Err(e);
                }
            }
        }
        match crate::receiver::start_udp_and_pickle(&shared) {
            Ok(handles) => threads.extend(handles),
            Err(e) => {
                *carbon.threads.lock() = threads;
                carbon.close();
                return Err(e);
            }
        }
        *carbon.threads.lock() = threads;
        match crate::carbonserver::QueryListeners::start(&shared) {
            Ok(q) => *carbon.query.lock() = q,
            Err(e) => {
                carbon.close();
                return Err(e);
            }
        }
        Ok(carbon)
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Adds one point. `timestamp == -1` means now, as in carbon's plaintext protocol; any
    /// other timestamp outside whisper's `0..=u32::MAX` is refused (`InvalidArgument`).
    pub fn add(&self, metric: &str, value: f64, timestamp: i64) -> Result<()> {
        let ts = if timestamp == -1 {
            unix_now()
        } else {
            timestamp
        };
        if value.is_nan() {
            self.shared.stats.parse_errors.fetch_add(1, Relaxed);
            return Err(Error::invalid(format!("{metric}: value is NaN")));
        }
        self.shared.add_point(metric, Point::new(ts, value))
    }

    /// Parses plaintext lines and adds their points, going on past bad lines.
    pub fn add_lines(&self, buf: &[u8]) -> AddLinesOutcome {
        self.shared.add_lines(buf, unix_now())
    }

    /// Returns once every point accepted before the call is in its whisper file. Fails with
    /// `Error::Io` when points stop making progress because their files cannot be written.
    pub fn flush(&self) -> Result<()> {
        if let Some(r) = &self.shared.cluster {
            return r.flush(&self.shared);
        }
        self.shared.flush()
    }

    /// whisper.py's `fetch(from, until)` window with every cached point laid over it.
    /// `until = None` means now.
    pub fn fetch(&self, metric: &str, from: i64, until: Option<i64>) -> Result<Series> {
        self.fetch_at(metric, from, until, unix_now())
    }

    /// `fetch` with an explicit `now`, for deterministic tests.
    pub fn fetch_at(
        &self,
        metric: &str,
        from: i64,
        until: Option<i64>,
        now: i64,
    ) -> Result<Series> {
        if let Some(r) = &self.shared.cluster {
            return r.fetch(&self.shared, metric, from, until, now);
        }
        self.shared.fetch(metric, from, until, now)
    }

    /// The address the TCP listener is bound to, once it runs (useful with port 0).
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        self.shared.listen_addrs.lock().first().copied()
    }

    /// The address the `[udp]` listener is bound to, once it runs (useful with port 0).
    pub fn udp_addr(&self) -> Option<std::net::SocketAddr> {
        self.shared.receiver_addrs.lock().udp
    }

    /// The address the `[pickle]` listener is bound to, once it runs (useful with port 0).
    pub fn pickle_addr(&self) -> Option<std::net::SocketAddr> {
        self.shared.receiver_addrs.lock().pickle
    }

    /// Graphite glob (`*`, `?`, `[a-z]`, `{a,b}`) over the whisper tree and the cached
    /// metric names, sorted by path; what carbonserver's `/metrics/find/` answers.
    pub fn find(&self, pattern: &str) -> Result<Vec<crate::find::FindMatch>> {
        if let Some(r) = &self.shared.cluster {
            return r.find(&self.shared, pattern);
        }
        crate::find::find_in(&self.shared, pattern)
    }

    /// The address the carbonserver HTTP API is bound to, once it runs.
    pub fn carbonserver_addr(&self) -> Option<std::net::SocketAddr> {
        self.query.lock().carbonserver.as_ref().map(|l| l.addr())
    }

    /// The address the carbonlink listener is bound to, once it runs.
    pub fn carbonlink_addr(&self) -> Option<std::net::SocketAddr> {
        self.query.lock().carbonlink.as_ref().map(|l| l.addr())
    }

    /// Counters and cache gauges.
    pub fn stats(&self) -> Snapshot {
        self.shared.snapshot()
    }

    /// Text of the most recent background failure (whisper write, corrupt file, journal
    /// damage found at open, dump), for logs; the counters in `stats` say how many.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_write_error.lock().clone()
    }

    /// Stops the listener, flushes everything, stops the workers. Idempotent; `Drop` calls it.
    pub fn close(&self) {
        if self.closed.swap(true, Relaxed) {
            return;
        }
        self.query.lock().stop();
        crate::receiver::stop_listeners(&self.shared);
        if let Some(r) = &self.shared.cluster {
            r.close();
        }
        // Everything accepted must reach disk (or the dump) before the workers stop.
        let dump = self.shared.config.dump.enabled;
        if self.shared.config.whisper.enabled && !dump {
            crate::durability::flushed_on_close(&self.shared, self.shared.flush());
        }
        self.shared.shutdown.store(true, Relaxed);
        self.shared.stop.stop();
        // The journal releaser sleeps a whole period between rounds; wake it to see shutdown.
        if let Some(d) = &self.shared.durability {
            d.kick_releaser();
        }
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        if dump {
            crate::dump::dump_on_close(&self.shared);
        }
    }
}

impl Drop for Carbon {
    fn drop(&mut self) {
        self.close();
    }
}

/// `[cluster]` (crate::cluster::node): the routing handle's own parts.
impl Carbon {
    /// Per-destination counters of a routing handle, in destination order; empty when the
    /// handle was opened without `[cluster]`.
    pub fn destination_stats(&self) -> Vec<crate::cluster::DestinationStats> {
        self.shared
            .cluster
            .as_ref()
            .map_or_else(Vec::new, |r| r.stats())
    }

    /// The ring and senders of a routing handle (placement questions, `route`).
    pub fn router(&self) -> Option<&crate::cluster::Router> {
        self.shared.cluster.as_ref().map(|r| r.router())
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|e| Error::io(name, e))
}

impl Shared {
    /// Applies tag normalisation and the name policy; the result is the cache key and names
    /// the file, so both always agree.
    #[inline]
    pub(crate) fn canonical_name<'a>(&self, metric: &'a str) -> Result<Cow<'a, str>> {
        if names::is_plain(metric.as_bytes()) {
            return Ok(Cow::Borrowed(metric));
        }
        self.canonical_name_slow(metric)
    }

    #[inline(never)]
    fn canonical_name_slow<'a>(&self, metric: &'a str) -> Result<Cow<'a, str>> {
        // Borrowed unless tags need normalising (an untagged name always is).
        let name = tags::normalize_cow(metric)?;
        let name = match names::apply_policy(self.config.common.name_policy, &name)? {
            Cow::Borrowed(_) => name,
            Cow::Owned(s) => Cow::Owned(s),
        };
        names::validate(&name)?;
        Ok(name)
    }

    pub(crate) fn add_point(&self, metric: &str, p: Point) -> Result<()> {
        self.add_one(&self.counted_canonical_name(metric)?, p, false)
    }

    /// `canonical_name`, counting a refused name in `name_errors`.
    pub(crate) fn counted_canonical_name<'a>(&self, metric: &'a str) -> Result<Cow<'a, str>> {
        self.count_name_error(self.canonical_name(metric))
    }

    /// `r`, a name's canonical form, with a refusal counted in `name_errors`.
    fn count_name_error<T>(&self, r: Result<T>) -> Result<T> {
        r.inspect_err(|_| {
            self.stats.name_errors.fetch_add(1, Relaxed);
        })
    }

    /// `add_point` for a name that already went through `canonical_name`.
    fn add_canonical(&self, name: &str, p: Point) -> Result<()> {
        let _logged = self.journal_one(name, p, false)?;
        self.cache_canonical(name, p)
    }

    /// Journals one point when `[journal] enabled`; hold the guard until it is cached.
    #[inline]
    fn journal_one(
        &self,
        name: &str,
        p: Point,
        wait: bool,
    ) -> Result<Option<crate::durability::Logged<'_>>> {
        match &self.durability {
            None => Ok(None),
            Some(d) => d
                .log(
                    || std::iter::once((name, p)),
                    1,
                    wait,
                    &self.stats,
                    &self.shutdown,
                )
                .map(Some),
        }
    }

    /// `add_canonical` without the journal (already journaled, or replayed from it).
    fn cache_canonical(&self, name: &str, p: Point) -> Result<()> {
        match self.cache.add(name, p) {
            Ok(AddOutcome::Added) => {
                self.stats.metrics_received.fetch_add(1, Relaxed);
                Ok(())
            }
            Ok(AddOutcome::Dropped) => {
                self.stats.overflow.fetch_add(1, Relaxed);
                Ok(())
            }
            Err(e) => {
                if matches!(e, Error::Full { .. }) {
                    self.stats.overflow.fetch_add(1, Relaxed);
                }
                Err(e)
            }
        }
    }

    /// `add_canonical` for receivers: a full cache makes the caller wait for room instead of
    /// refusing (so a socket stops being read), and waiting is not counted as overflow.
    fn add_canonical_waiting(&self, name: &str, p: Point) -> Result<()> {
        let _logged = self.journal_one(name, p, true)?;
        self.cache_canonical_waiting(name, p)
    }

    /// `add_canonical_waiting` without the journal.
    fn cache_canonical_waiting(&self, name: &str, p: Point) -> Result<()> {
        if matches!(self.config.cache.overflow, crate::cache::Overflow::Drop) {
            // The operator chose go-carbon's behaviour: drop and count.
            return self.cache_canonical(name, p);
        }
        loop {
            match self.cache.add_waiting(name, p, Duration::from_millis(100)) {
                Ok(_) => {
                    self.stats.metrics_received.fetch_add(1, Relaxed);
                    return Ok(());
                }
                Err(Error::Full { .. }) if !self.shutdown.load(Relaxed) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn add_lines(&self, buf: &[u8], now: i64) -> AddLinesOutcome {
        self.add_lines_with(buf, now, false)
    }

    /// `add_lines` for stream receivers: points a full cache has no room for wait for it
    /// (`add_canonical_waiting`) instead of being refused, so the socket stops being read.
    pub(crate) fn add_lines_waiting(&self, buf: &[u8], now: i64) -> AddLinesOutcome {
        self.add_lines_with(buf, now, true)
    }

    fn add_lines_with(&self, buf: &[u8], now: i64, wait: bool) -> AddLinesOutcome {
        // Lines are ~40 bytes: don't reserve a whole chunk for a short buffer.
        self.add_parsed(plain::lines(buf, now), buf.len() / 32 + 1, wait)
    }

    /// `add_lines_waiting` for points already decoded (the pickle receiver): same names,
    /// batches and waiting, in slice order.
    pub(crate) fn add_points_waiting(&self, points: &[(&str, Point)]) -> AddLinesOutcome {
        let lines = points.iter().map(|&(name, point)| {
            Ok(plain::Line {
                name,
                point,
                plain: names::is_plain(name.as_bytes()),
            })
        });
        self.add_parsed(lines, points.len(), true)
    }

    /// Names through `canonical_name` (its quick check answered by `Line::plain`), points
    /// into the cache in `ADD_CHUNK` batches; a parse error (counted in `parse_errors`) or a
    /// refused metric flushes the batch first, so outcomes follow input order. A renamed
    /// metric (tags to sort, a name the policy cleans) joins the batch under its new name,
    /// kept in an arena, until the call has renamed `RENAMED_BYTES`; after that each one
    /// flushes the batch and goes alone. `hint` sizes the batch.
    fn add_parsed<'a>(
        &self,
        parsed: impl Iterator<Item = Result<plain::Line<'a>>>,
        hint: usize,
        wait: bool,
    ) -> AddLinesOutcome {
        let mut out = AddLinesOutcome::default();
        let renamed = bumpalo::Bump::new();
        let mut batch = AddBatch::with_capacity(ADD_CHUNK.min(hint));
        let mut parse_errors = 0;
        for line in parsed {
            let (name, p) = match line {
                // `plain` already answered `canonical_name`'s quick check: a plain name is
                // its own canonical name, any other takes the slow path at once.
                Ok(l) if l.plain => (Ok(Cow::Borrowed(l.name)), l.point),
                Ok(l) => (
                    self.count_name_error(self.canonical_name_slow(l.name)),
                    l.point,
                ),
                Err(e) => {
                    // Flush first, so outcomes (and `first_error`) follow line order.
                    self.add_batch(&mut batch, &mut out, wait);
                    parse_errors += 1;
                    out.record(Err(e));
                    continue;
                }
            };
            match name {
                Ok(Cow::Borrowed(name)) => {
                    batch.push(name, p);
                    if batch.len() >= ADD_CHUNK {
                        self.add_batch(&mut batch, &mut out, wait);
                    }
                }
                // The batch keeps push order per metric, so earlier points of the same metric
                // stay first either way.
                Ok(Cow::Owned(name)) if renamed.allocated_bytes() < RENAMED_BYTES => {
                    batch.push(renamed.alloc_str(&name), p);
                    if batch.len() >= ADD_CHUNK {
                        self.add_batch(&mut batch, &mut out, wait);
                    }
                }
                Ok(Cow::Owned(name)) => {
                    self.add_batch(&mut batch, &mut out, wait);
                    out.record(self.add_one(&name, p, wait));
                }
                Err(e) => {
                    self.add_batch(&mut batch, &mut out, wait);
                    out.record(Err(e));
                }
            }
        }
        self.add_batch(&mut batch, &mut out, wait);
        if parse_errors > 0 {
            self.stats.parse_errors.fetch_add(parse_errors, Relaxed);
        }
        out
    }

    /// One canonical point: routed on a `[cluster]` handle, else stored (`store_one`).
    fn add_one(&self, name: &str, p: Point, wait: bool) -> Result<()> {
        match &self.cluster {
            Some(r) => r.add_canonical(self, name, p, wait),
            None => self.store_one(name, p, wait),
        }
    }

    /// One canonical point into this process's journal and cache, waiting for room (`wait`)
    /// or refused by a full cache; also a routing handle's own share.
    pub(crate) fn store_one(&self, name: &str, p: Point, wait: bool) -> Result<()> {
        if wait {
            self.add_canonical_waiting(name, p)
        } else {
            self.add_canonical(name, p)
        }
    }

    /// Adds and empties `batch`; points beyond the cache's free room go through `add` one by
    /// one, which applies the overflow policy exactly as `add_point` would. On a `[cluster]`
    /// handle every point is routed instead (one branch per batch, not per point).
    pub(crate) fn add_batch(
        &self,
        batch: &mut AddBatch<'_>,
        out: &mut AddLinesOutcome,
        wait: bool,
    ) {
        if batch.is_empty() {
            return;
        }
        if let Some(r) = &self.cluster {
            for (name, p) in batch.rest(0) {
                out.record(r.add_canonical(self, name, p, wait));
            }
            batch.clear();
            return;
        }
        let _logged = match &self.durability {
            None => None,
            Some(d) => match d.log_batch(batch, wait, &self.stats, &self.shutdown) {
                Ok(g) => Some(g),
                Err(e) => return crate::durability::refuse_batch(batch, out, e),
            },
        };
        let added = self.cache.add_batch(batch);
        self.stats.metrics_received.fetch_add(added as u64, Relaxed);
        out.accepted += added as u64;
        for (name, p) in batch.rest(added) {
            out.record(match wait {
                true => self.cache_canonical_waiting(name, p),
                false => self.cache_canonical(name, p),
            });
        }
        batch.clear();
    }

    pub(crate) fn flush(&self) -> Result<()> {
        let target = self.cache.seq();
        let mut last_progress = Instant::now();
        let mut last_committed = self.stats.committed_points.load(Relaxed);
        let errors_before =
            self.stats.write_errors.load(Relaxed) + self.stats.corrupt_files.load(Relaxed);
        loop {
            if self
                .cache
                .wait_persisted(target, Some(Duration::from_millis(100)))
            {
                return Ok(());
            }
            let committed = self.stats.committed_points.load(Relaxed);
            if committed != last_committed {
                last_committed = committed;
                last_progress = Instant::now();
            }
            let errors =
                self.stats.write_errors.load(Relaxed) + self.stats.corrupt_files.load(Relaxed);
            // Failing files are retried with backoff; report them instead of waiting forever.
            if errors > errors_before && last_progress.elapsed() > Duration::from_secs(5) {
                let why = self.last_write_error.lock().clone().unwrap_or_default();
                return Err(Error::io(
                    self.config.whisper.data_dir.clone(),
                    std::io::Error::other(format!(
                        "points still cached after write failures ({why}); they are retried"
                    )),
                ));
            }
            if !self.config.whisper.enabled {
                return Err(Error::invalid(
                    "flush: [whisper] enabled = false, points are never written",
                ));
            }
        }
    }

    pub(crate) fn metric_path(&self, name: &str) -> Result<PathBuf> {
        names::metric_path(&self.config.whisper.data_dir, name)
    }

    pub(crate) fn fetch(
        &self,
        metric: &str,
        from: i64,
        until: Option<i64>,
        now: i64,
    ) -> Result<Series> {
        let name = self.canonical_name(metric)?;
        let path = self.metric_path(&name)?;
        let cached = self.cache.get(&name);
        let series = match self.pool.get(&path) {
            Ok(file) => file.lock().fetch(from, until, now)?,
            Err(Error::NotFound(_)) if cached.is_some() => {
                let rules = self.rules.rules_for(&name);
                empty_window(&rules.retentions, from, until, now)?
            }
            Err(Error::NotFound(_)) => return Err(Error::NotFound(name.into_owned())),
            Err(e) => return Err(e),
        };
        let mut series = series.unwrap_or_default();
        if let Some(points) = cached {
            self.stats.cache_queries.fetch_add(1, Relaxed);
            overlay(&mut series, &points);
        }
        Ok(series)
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut s = self.stats.snapshot();
        s.cache_size = self.cache.size() as u64;
        s.cache_metrics = self.cache.metrics() as u64;
        s.cache_max_size = self.config.cache.max_size as u64;
        s.not_confirmed = self.cache.not_confirmed() as u64;
        s.workers = if self.config.whisper.enabled {
            self.config.whisper.workers as u64
        } else {
            0
        };
        if let Some(d) = &self.durability {
            d.fill(&mut s);
        }
        s
    }
}

/// Lays cached points over a fetched window the way graphite-web merges carbonlink answers:
/// each point goes to its interval (`ts - ts % step`); for one interval the newest timestamp
/// wins. Points are sorted ascending, so a plain overwrite does that.
fn overlay(series: &mut Series, points: &[Point]) {
    if series.step <= 0 {
        return;
    }
    for p in points {
        let interval = p.timestamp - p.timestamp.rem_euclid(series.step);
        if interval >= series.from && interval < series.until {
            let i = ((interval - series.from) / series.step) as usize;
            if let Some(v) = series.values.get_mut(i) {
                *v = p.value;
            }
        }
    }
}

/// whisper.py's fetch window for a file that does not exist yet, computed from the retentions
/// its schema will give it, all gaps. Same clamping and archive choice as `file_fetch`.
fn empty_window(
    retentions: &[Retention],
    from: i64,
    until: Option<i64>,
    now: i64,
) -> Result<Option<Series>> {
    let until = until.unwrap_or(now);
    if from > until {
        return Err(Error::InvalidTimeInterval(format!(
            "from {from} is after until {until}"
        )));
    }
    let max_retention = retentions
        .iter()
        .map(|r| r.seconds_per_point as i64 * r.points as i64)
        .max()
        .unwrap_or(0);
    let oldest = now - max_retention;
    if from > now || until < oldest {
        return Ok(None);
    }
    let from = from.max(oldest);
    let until = until.min(now);
    let diff = now - from;
    let Some(archive) = retentions
        .iter()
        .find(|r| r.seconds_per_point as i64 * r.points as i64 >= diff)
        .or_else(|| retentions.last())
    else {
        return Ok(None);
    };
    let step = archive.seconds_per_point as i64;
    let from_interval = from - from.rem_euclid(step) + step;
    let mut until_interval = until - until.rem_euclid(step) + step;
    if from_interval == until_interval {
        until_interval += step;
    }
    let n = ((until_interval - from_interval) / step) as usize;
    Ok(Some(Series {
        from: from_interval,
        until: until_interval,
        step,
        values: vec![f64::NAN; n],
    }))
}

/// Close's wake-up for timer threads: they wait on it instead of napping in a loop, so close
/// never waits for a period to end and an idle timer costs no wake-ups.
#[derive(Debug, Default)]
pub(crate) struct StopSignal {
    stopped: Mutex<bool>,
    cond: parking_lot::Condvar,
}

impl StopSignal {
    /// Waits until `deadline` or until `stop`; true once stopped.
    pub(crate) fn wait_until(&self, deadline: Instant) -> bool {
        let mut stopped = self.stopped.lock();
        if !*stopped {
            self.cond.wait_until(&mut stopped, deadline);
        }
        *stopped
    }

    /// Wakes every waiter for good.
    pub(crate) fn stop(&self) {
        *self.stopped.lock() = true;
        self.cond.notify_all();
    }
}

fn self_metrics_loop(shared: &Shared) {
    let prefix = shared.config.self_metric_prefix();
    let interval = shared.config.common.metric_interval;
    let mut prev = shared.snapshot();
    let mut next = Instant::now() + interval;
    while !shared.stop.wait_until(next) {
        if Instant::now() < next {
            continue; // a spurious wake-up
        }
        next += interval;
        let snap = shared.snapshot();
        let ts = unix_now();
        for (name, value) in snap.self_metrics(&prev) {
            let _ = shared.add_point(&format!("{prefix}.{name}"), Point::new(ts, value));
        }
        for (name, value) in shared.cluster.iter().flat_map(|r| r.self_metrics()) {
            let _ = shared.add_point(&format!("{prefix}.{name}"), Point::new(ts, value));
        }
        prev = snap;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signal_wakes_waiters_at_once_and_stays_set() {
        let s = Arc::new(StopSignal::default());
        let far = Instant::now() + Duration::from_secs(60);
        assert!(!s.wait_until(Instant::now() + Duration::from_millis(5)));
        let w = {
            let s = s.clone();
            std::thread::spawn(move || (s.wait_until(far), Instant::now()))
        };
        std::thread::sleep(Duration::from_millis(20));
        s.stop();
        let (stopped, at) = w.join().unwrap();
        assert!(stopped && at < far - Duration::from_secs(50));
        assert!(s.wait_until(far), "a stopped signal never waits again");
    }

    #[test]
    fn overlay_keeps_newest_per_interval() {
        let mut s = Series {
            from: 100,
            until: 160,
            step: 10,
            values: vec![f64::NAN; 6],
        };
        overlay(
            &mut s,
            &[
                Point::new(95, 9.0),
                Point::new(101, 1.0),
                Point::new(109, 2.0),
                Point::new(150, 5.0),
                Point::new(160, 6.0),
            ],
        );
        assert_eq!(s.values[0], 2.0);
        assert!(s.values[1].is_nan());
        assert_eq!(s.values[5], 5.0);
    }

    #[test]
    fn empty_window_matches_whisper_rules() {
        let r = [
            Retention {
                seconds_per_point: 10,
                points: 360,
            },
            Retention {
                seconds_per_point: 60,
                points: 1440,
            },
        ];
        let now = 1_000_000;
        let s = empty_window(&r, now - 600, None, now).unwrap().unwrap();
        assert_eq!(
            (s.from, s.until, s.step, s.values.len()),
            (now - 600 + 10, now + 10, 10, 60)
        );
        let s = empty_window(&r, now - 7200, Some(now), now)
            .unwrap()
            .unwrap();
        assert_eq!(s.step, 60);
        assert!(
            empty_window(&r, now + 10, Some(now + 20), now)
                .unwrap()
                .is_none()
        );
        assert!(empty_window(&r, now - 10, Some(now - 20), now).is_err());
    }
}
