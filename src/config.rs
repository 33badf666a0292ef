//! Options in go-carbon.conf's TOML key names (go-carbon `carbon/config.go`).
//!
//! A real go-carbon.conf must load unchanged, so every key go-carbon knows is accepted; the ones
//! carbonlite does not implement are listed in [`Config::ignored`] (the daemon prints them).
//! A key nobody knows, or a value of the wrong type or range, is an error naming
//! `[section] key` and the line — a typo must never silently fall back to a default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cache::{Overflow, WriteStrategy};
use crate::error::{Error, Result};
use crate::names::NamePolicy;

/// Everything `carbon_open` and the daemon can be told.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[common]`.
    pub common: CommonConfig,
    /// `[whisper]`.
    pub whisper: WhisperConfig,
    /// `[cache]`.
    pub cache: CacheConfig,
    /// `[tcp]`: the plaintext listener.
    pub tcp: TcpConfig,
    /// `[carbonlink]`: graphite-web's cache-query protocol.
    pub carbonlink: CarbonlinkConfig,
    /// `[carbonserver]`: go-carbon's HTTP find/render/info API.
    pub carbonserver: CarbonserverConfig,
    /// go-carbon keys accepted but not implemented (yet), as `section.key`.
    pub ignored: Vec<String>,
    /// `[cluster]` (carbonlite's section): members, hashing and senders; None = standalone.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// `[udp]`: the plaintext datagram listener.
    pub udp: UdpConfig,
    /// `[pickle]`: carbon's pickle protocol listener.
    pub pickle: PickleConfig,
    /// `[journal]` (carbonlite's section): the write-ahead journal in the data dir.
    pub journal: JournalConfig,
    /// `[dump]` (go-carbon): cache written out on close, read back on open.
    pub dump: DumpConfig,
}

/// `[dump]` (go-carbon's keys and file format, see `crate::dump`).
#[derive(Debug, Clone)]
pub struct DumpConfig {
    /// Whether close dumps the cache (instead of writing it to whisper) and open restores.
    pub enabled: bool,
    /// Directory of the dump files; None = `<data-dir>/.dump` (go-carbon's default,
    /// `/var/lib/graphite/dump/`, is a daemon's path, not an embedded library's).
    pub path: Option<PathBuf>,
    /// Records (a metric's points in a cache dump, a line in an input file) restored per
    /// second; 0 = unlimited, restored before `open` returns. Otherwise restored in the
    /// background, as go-carbon does.
    pub restore_per_second: u32,
}

impl Config {
    /// Where `[dump]` files go.
    pub fn dump_dir(&self) -> PathBuf {
        self.dump
            .path
            .clone()
            .unwrap_or_else(|| self.whisper.data_dir.join(".dump"))
    }
}

/// `[journal]`: how points accepted by `carbon_add*` are made durable before they reach
/// whisper files (see `crate::journal` for the contract of each fsync policy).
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// Whether points are journaled at all.
    pub enabled: bool,
    /// `always`, `interval` or `never`.
    pub fsync: crate::journal::FsyncPolicy,
    /// Period of the background fsync under `interval`.
    pub fsync_interval: Duration,
    /// Bytes the journal may take; beyond it appends fail as a full cache does. 0 = unlimited.
    pub max_size: u64,
    /// Size at which a segment file is sealed and a new one started.
    pub segment_size: u64,
}

impl JournalConfig {
    /// The options `Journal::open` takes for this section.
    pub fn options(&self) -> crate::journal::JournalOptions {
        crate::journal::JournalOptions {
            fsync: self.fsync,
            fsync_interval: self.fsync_interval,
            segment_size: self.segment_size,
            max_size: self.max_size,
            on_sync: None,
        }
    }
}

/// `[common]`.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// Host name substituted for `{host}` in `graph-prefix` (dots become `_`); defaults to the
    /// machine's host name. carbonlite's own key: a library has no command line to pass it.
    pub hostname: String,
    /// Prefix of self-metrics, go-carbon's `carbon.agents.{host}`.
    pub graph_prefix: String,
    /// Where self-metrics go: `local` (into this store) or empty (nowhere).
    pub metric_endpoint: String,
    /// How often self-metrics are written; zero disables them.
    pub metric_interval: Duration,
    /// What to do with names carbon-c-relay would clean (carbonlite's key).
    pub name_policy: NamePolicy,
}

/// `[whisper]`.
#[derive(Debug, Clone)]
pub struct WhisperConfig {
    /// Root of the whisper tree.
    pub data_dir: PathBuf,
    /// storage-schemas.conf; None = carbon's shipped example.
    pub schemas_file: Option<PathBuf>,
    /// storage-aggregation.conf; None = carbon's shipped example.
    pub aggregation_file: Option<PathBuf>,
    /// Persister threads.
    pub workers: usize,
    /// Cap on update_many calls per second over all workers; 0 = unlimited.
    pub max_updates_per_second: u32,
    /// Cap on file creations per second; 0 = unlimited. Throttled metrics wait in the cache.
    pub max_creates_per_second: u32,
    /// Create files sparse instead of zero-filled.
    pub sparse_create: bool,
    /// When false, points are cached but never written (go-carbon's cache-only mode).
    pub enabled: bool,
    /// Bound on whisper files kept open by the persister (carbonlite's key); 0 = auto
    /// ([`WhisperConfig::open_files`]). Reopening a file costs an open, a header read and a
    /// map per update, so a pool smaller than the set of active metrics triples the CPU of
    /// steady-state writes.
    pub max_open_files: usize,
    /// Move corrupt files to `<data-dir>/.corrupt/<relative path>` so their metric's points
    /// create a fresh file (carbonlite's key; default off: corrupt files are only reported).
    pub quarantine_corrupt: bool,
}

/// Most files `max-open-files = 0` keeps open: each open file also holds a memory map, and
/// Linux allows 65530 maps per process by default (`vm.max_map_count`).
pub const AUTO_OPEN_FILES_MAX: usize = 32_768;

impl WhisperConfig {
    /// The file pool's size: `max-open-files`, or for 0 three quarters of the process's
    /// descriptor limit (`RLIMIT_NOFILE`, soft) — the rest stays for sockets, the journal and
    /// the host program — between 256 and [`AUTO_OPEN_FILES_MAX`].
    pub fn open_files(&self) -> usize {
        if self.max_open_files > 0 {
            return self.max_open_files;
        }
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        usize::try_from(soft / 4 * 3)
            .unwrap_or(usize::MAX)
            .clamp(256, AUTO_OPEN_FILES_MAX)
    }
}

/// `[cache]`.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Points held at most (queued + being written); 0 = unlimited.
    pub max_size: usize,
    /// Which metric the persister writes next.
    pub write_strategy: WriteStrategy,
    /// What a full cache does to new points (carbonlite's key; go-carbon always drops).
    pub overflow: Overflow,
}

/// `[tcp]`.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// Whether the listener runs.
    pub enabled: bool,
    /// `host:port`; go-carbon's `:2003` form means every address.
    pub listen: String,
    /// go-carbon's queue between receiver and cache; carbonlite adds straight into the sharded
    /// cache, so this only sizes the per-connection read buffer when non-zero.
    pub buffer_size: usize,
    /// Connections silent this long are closed (carbonlite's key; go-carbon uses 2 minutes).
    pub read_timeout: Duration,
}

/// `[udp]`.
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// Whether the listener runs.
    pub enabled: bool,
    /// `host:port`; go-carbon's `:2003` form means every address.
    pub listen: String,
    /// go-carbon's queue between receiver and cache; carbonlite adds each datagram straight
    /// into the sharded cache, so the value is kept for `-check-config` only.
    pub buffer_size: usize,
    /// go-carbon logs the incomplete last lines it drops; carbonlite counts them in
    /// `udp_errors` (it has no logger), so the flag only records the operator's wish.
    pub log_incomplete: bool,
}

/// `[pickle]`.
#[derive(Debug, Clone)]
pub struct PickleConfig {
    /// Whether the listener runs.
    pub enabled: bool,
    /// `host:port`; go-carbon's `:2004` form means every address.
    pub listen: String,
    /// Sizes the per-connection read buffer when non-zero (no queue, as `[tcp]`).
    pub buffer_size: usize,
    /// Largest frame accepted; a longer length prefix closes the connection (go-carbon 64 MiB).
    pub max_message_size: usize,
    /// Idle connections, and frames not complete this long after they started, are closed
    /// (carbonlite's key, as `[tcp] read-timeout`; 2 minutes as go-carbon's deadline).
    pub read_timeout: Duration,
}

/// `[carbonlink]` (go-carbon `carbonlink`).
#[derive(Debug, Clone)]
pub struct CarbonlinkConfig {
    /// Whether the listener runs.
    pub enabled: bool,
    /// `host:port`; `:7002` means every address.
    pub listen: String,
    /// Connections silent this long are closed.
    pub read_timeout: Duration,
}

/// `[carbonserver]` (go-carbon `carbonserver`): the keys carbonlite implements.
#[derive(Debug, Clone)]
pub struct CarbonserverConfig {
    /// Whether the HTTP server runs.
    pub enabled: bool,
    /// `host:port`; `:8080` means every address.
    pub listen: String,
    /// Idle keep-alive connections and slow requests are closed after this.
    pub read_timeout: Duration,
    /// A response that cannot be written within this is abandoned.
    pub write_timeout: Duration,
    /// Most patterns a glob may expand to through brace groups spanning dots.
    pub max_globs: usize,
    /// Most nodes one glob may match before the query is refused.
    pub max_metrics_globbed: usize,
    /// Most series one render returns (more are cut off, as go-carbon does).
    pub max_metrics_rendered: usize,
    /// Answer a render that found nothing with an empty 200 instead of 404.
    pub empty_result_ok: bool,
}

impl Config {
    /// Defaults for the embedded library: go-carbon's `NewConfig()` values, except that no
    /// listener runs unless asked and the data dir is the one given to `carbon_open`.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            common: CommonConfig {
                hostname: system_hostname(),
                graph_prefix: "carbon.agents.{host}".into(),
                metric_endpoint: "local".into(),
                metric_interval: Duration::from_secs(60),
                name_policy: NamePolicy::Passthrough,
            },
            whisper: WhisperConfig {
                data_dir: data_dir.into(),
                schemas_file: None,
                aggregation_file: None,
                workers: 2,
                max_updates_per_second: 0,
                max_creates_per_second: 0,
                sparse_create: false,
                enabled: true,
                max_open_files: 0,
                quarantine_corrupt: false,
            },
            cache: CacheConfig {
                max_size: 1_000_000,
                write_strategy: WriteStrategy::Max,
                overflow: Overflow::Error,
            },
            tcp: TcpConfig {
                enabled: false,
                listen: "127.0.0.1:2003".into(),
                buffer_size: 0,
                read_timeout: Duration::from_secs(120),
            },
            carbonlink: CarbonlinkConfig {
                enabled: false,
                listen: "127.0.0.1:7002".into(),
                read_timeout: Duration::from_secs(30),
            },
            carbonserver: CarbonserverConfig {
                enabled: false,
                listen: "127.0.0.1:8080".into(),
                read_timeout: Duration::from_secs(60),
                write_timeout: Duration::from_secs(60),
                max_globs: 100,
                max_metrics_globbed: 30_000,
                max_metrics_rendered: 1_000,
                empty_result_ok: false,
            },
            ignored: Vec::new(),
            cluster: None,
            udp: UdpConfig {
                enabled: false,
                listen: "127.0.0.1:2003".into(),
                buffer_size: 0,
                log_incomplete: false,
            },
            pickle: PickleConfig {
                enabled: false,
                listen: "127.0.0.1:2004".into(),
                buffer_size: 0,
                max_message_size: 64 << 20,
                read_timeout: Duration::from_secs(120),
            },
            journal: JournalConfig {
                enabled: false,
                fsync: crate::journal::FsyncPolicy::Interval,
                fsync_interval: Duration::from_secs(1),
                max_size: 0,
                segment_size: 64 << 20,
            },
            dump: DumpConfig {
                enabled: false,
                path: None,
                restore_per_second: 0,
            },
        }
    }

    /// Defaults for the `carbonlite` daemon: the embedded ones with the plaintext listener on
    /// 127.0.0.1:2003 and carbonlink on 127.0.0.1:7002 (go-carbon enables both by default)
    /// and whisper files under ./data.
    pub fn daemon() -> Config {
        let mut c = Config::embedded("data");
        c.tcp.enabled = true;
        c.carbonlink.enabled = true;
        c
    }

    /// Overlays go-carbon.conf TOML `text` on `self`. `file` names the source in errors.
    pub fn apply_toml(mut self, text: &str, file: &str) -> Result<Config> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
            Error::Config {
                file: file.into(),
                line,
                message: e.message().to_string(),
            }
        })?;
        let mut cx = Cx {
            file,
            text,
            ignored: Vec::new(),
        };
        for (section, value) in &table {
            let Some(t) = value.as_table() else {
                if section == "logging" && value.is_array() {
                    cx.ignored.push("logging".into());
                    continue;
                }
                return Err(cx.err(section, "", "expected a [section]".into()));
            };
            match section.as_str() {
                "common" => self.apply_common(&mut cx, t)?,
                "whisper" => self.apply_whisper(&mut cx, t)?,
                "cache" => self.apply_cache(&mut cx, t)?,
                "tcp" => self.apply_tcp(&mut cx, t)?,
                "cluster" => {
                    let base = self
                        .cluster
                        .take()
                        .unwrap_or_else(|| crate::cluster::ClusterConfig::new(Vec::new()));
                    self.cluster = Some(base.apply_toml(t, file)?);
                }
                "udp" => self.apply_udp(&mut cx, t)?,
                "pickle" => self.apply_pickle(&mut cx, t)?,
                "journal" => self.apply_journal(&mut cx, t)?,
                "dump" => self.apply_dump(&mut cx, t)?,
                "carbonlink" => self.apply_carbonlink(&mut cx, t)?,
                "carbonserver" => self.apply_carbonserver(&mut cx, t)?,
                _ => {
                    let known = go_carbon_keys(section).ok_or_else(|| {
                        cx.err(section, "", format!("unknown section [{section}]"))
                    })?;
                    for key in t.keys() {
                        // `[receiver.x]` and nested tables carry free-form protocol options.
                        if !known.is_empty() && !known.contains(&key.as_str()) {
                            return Err(cx.err(
                                section,
                                key,
                                format!("unknown key in [{section}]"),
                            ));
                        }
                        cx.ignored.push(format!("{section}.{key}"));
                    }
                }
            }
        }
        self.ignored.extend(cx.ignored);
        Ok(self)
    }

    /// Reads a go-carbon.conf file over the daemon defaults; relative `data-dir`,
    /// `schemas-file` and `aggregation-file` stay relative to the working directory, as in
    /// go-carbon.
    pub fn load(path: &Path) -> Result<Config> {
        Config::daemon().apply_file(path)
    }

    /// Overlays a go-carbon.conf file on `self` (errors name the file).
    pub fn apply_file(self, path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        self.apply_toml(&text, &path.display().to_string())
    }

    /// `graph-prefix` with `{host}` substituted (dots in the host become `_`, as go-carbon).
    pub fn self_metric_prefix(&self) -> String {
        self.common
            .graph_prefix
            .replace("{host}", &self.common.hostname.replace('.', "_"))
    }

    fn apply_common(&mut self, cx: &mut Cx, t: &toml::Table) -> Result<()> {
        for (k, v) in t {
            let c = &mut self.common;
            match k.as_str() {
                "hostname" => c.hostname = cx.string("common", k, v)?,
                "graph-prefix" => c.graph_prefix = cx.string("common", k, v)?,
                "metric-endpoint" => {
                    let s = cx.string("common", k, v)?;
                    if !matches!(s.as_str(), "" | "local") {
                        cx.ignored.push(format!(
                            "common.metric-endpoint={s} (only \"local\" is implemented)"
                        ));
                    }
                    c.metric_endpoint = s;
                }
                "metric-interval" => c.metric_interval = cx.duration("common", k, v)?,
                "name-policy" => {
                    let s = cx.string("common", k, v)?;
                    c.name_policy =
                        match s.as_str() {
                            "reject" => NamePolicy::Reject,
                            "sanitize" => NamePolicy::Sanitize,
                            "passthrough" => NamePolicy::Passthrough,
                            _ => return Err(cx.err(
                                "common",
                                k,
                                format!(
                                    "{s:?}: expected \"reject\", \"sanitize\" or \"passthrough\""
                                ),
                            )),
                        };
                }
                "user" | "max-cpu" | "logfile" | "log-level" => {
                    cx.ignored.push(format!("common.{k}"))
                }
                _ => return Err(cx.err("common", k, "unknown key in [common]".into())),
            }
        }
        Ok(())
    }

    fn apply_whisper(&mut self, cx: &mut Cx, t: &toml::Table) -> Result<()> {
        for (k, v) in t {
            let w = &mut self.whisper;
            match k.as_str() {
                "data-dir" => w.data_dir = cx.string("whisper", k, v)?.into(),
                "schemas-file" => w.schemas_file = non_empty(cx.string("whisper", k, v)?),
                "aggregation-file" => w.aggregation_file = non_empty(cx.string("whisper", k, v)?),
                "workers" => w.workers = cx.int("whisper", k, v, 1, 1024)? as usize,
                "max-updates-per-second" => {
                    w.max_updates_per_second = cx.int("whisper", k, v, 0, u32::MAX as i64)? as u32
                }
                "max-creates-per-second" => {
                    w.max_creates_per_second = cx.int("whisper", k, v, 0, u32::MAX as i64)? as u32
                }
                "sparse-create" => w.sparse_create = cx.bool("whisper", k, v)?,
                "enabled" => w.enabled = cx.bool("whisper", k, v)?,
                "max-open-files" => {
                    w.max_open_files = cx.int("whisper", k, v, 0, 1 << 24)? as usize
                }
                "quarantine-corrupt" => w.quarantine_corrupt = cx.bool("whisper", k, v)?,
                "quotas-file"
                | "physical-size-factor"
                | "flock"
                | "compressed"
                | "hash-filenames"
                | "remove-empty-file"
                | "online-migration"
                | "online-migration-rate"
                | "online-migration-global-scope"
                | "hard-max-creates-per-second" => cx.ignored.push(format!("whisper.{k}")),
                _ => return Err(cx.err("whisper", k, "unknown key in [whisper]".into())),
            }
        }
        Ok(())
    }

    fn apply_cache(&mut self, cx: &mut Cx, t: &toml::Table) -> Result<()> {
        let mut overflow: Option<String> = None;
        let mut block_timeout = Duration::from_secs(10);
        for (k, v) in t {
            match k.as_str() {
                "max-size" => self.cache.max_size = cx.int("cache", k, v, 0, i64::MAX)? as usize,
                "write-strategy" => {
                    let s = cx.string("cache", k, v)?;
                    self.cache.write_strategy = WriteStrategy::from_name(&s).ok_or_else(|| {
                        cx.err(
                            "cache",
                            k,
                            format!("{s:?}: expected \"max\", \"sorted\" or \"noop\""),
                        )
                    })?;
                }
                "overflow" => overflow = Some(cx.string("cache", k, v)?),
                "block-timeout" => block_timeout = cx.duration("cache", k, v)?,
                "bloom-size" | "input-buffer" => cx.ignored.push(format!("cache.{k}")),
                _ => return Err(cx.err("cache", k, "unknown key in [cache]".into())),
            }
        }
        match overflow.as_deref() {
            None => {
                if let Overflow::Block(_) = self.cache.overflow {
                    self.cache.overflow = Overflow::Block(block_timeout);
                }
            }
            Some("error") => self.cache.overflow = Overflow::Error,
            Some("block") => self.cache.overflow = Overflow::Block(block_timeout),
            Some("drop") => self.cache.overflow = Overflow::Drop,
            Some(s) => {
                return Err(cx.err(
                    "cache",
                    "overflow",
                    format!("{s:?}: expected \"error\", \"block\" or \"drop\""),
                ));
            }
        }
        Ok(())
    }

    fn apply_tcp(&mut self, cx: &mut Cx, t: &toml::Table) -> Result<()> {
        for (k, v) in t {
            let c = &mut self.tcp;
            match k.as_str() {
                "enabled" => c.enabled = cx.bool("tcp", k, v)?,
                "listen" => c.listen = cx.string("tcp", k, v)?,
                "buffer-size" => c.buffer_size = cx.int("tcp", k, v, 0, 1 << 30)? as usize,
                "read-timeout" => c.read_timeout = cx.duration("tcp", k, v)?,
                "compression" => cx.ignored.push(format!("tcp.{k}")),
                _ => return Err(cx.err("tcp", k, "unknown key in [tcp]".into())),
            }
        }
        Ok(())
    }
}

impl Config {
    fn apply_udp(&mut self, cx: &mut Cx, t: &toml::Table) -> Result<()> {
        for (k, v) in t {
            let c = &mut self.udp;
            match k.as_str() {
                "enabled" => c.enabled = cx.bool("udp", k, v)?,
                "listen" => c.listen = cx.string("udp", k, v)?,
                "buffer-size" => c.buffer_size = cx.int("udp", k, v, 0, 1 << 30)? as usize,
                "log-incomplete" => c.log_incomplete = cx.bool("udp", k, v)?,
                _ => return Err(cx.err("udp", k, "unknown key in [udp]".into())),
            }
        }
        Ok(())
    }

    fn apply_pickle(&mut self, cx: &mut Cx, t: &toml::Table) -> Result<()> {
        for (k, v) in t {
            let c = &mut self.pickle;
            match k.as_str() {
                "enabled" => c.enabled = cx.bool("pickle", k, v)?,
                "listen" => c.listen = cx.string("pickle", k, v)?,
                "buffer-size" => c.buffer_size = cx.int("pickle", k, v, 0, 1 << 30)? as usize,
                "max-message-size" => {
                    c.max_message_size = cx.int("pickle", k, v, 1, u32::MAX as i64)? as usize
                }
                "read-timeout" => c.read_timeout = cx.duration("pickle", k, v)?,
                _ => return Err(cx.err("pickle", k, "unknown key in [pickle]".into())),
            }
        }
        Ok(())
    }

    fn apply_carbonlink(&mut self, cx: &mut Cx, t: &toml::Table) -> Result<()> {
        for (k, v) in t {
            let c = &mut self.carbonlink;
            match k.as_str() {
                "enabled" => c.enabled = cx.bool("carbonlink", k, v)?,
                "listen" => c.listen = cx.string("carbonlink", k, v)?,
                "read-timeout" => c.read_timeout = cx.duration("carbonlink", k, v)?,
                "query-timeout" => cx.ignored.push(format!("carbonlink.{k}")),
                _ => return Err(cx.err("carbonlink", k, "unknown key in [carbonlink]".into())),
            }
        }
        Ok(())
    }

    fn apply_carbonserver(&mut self, cx: &mut Cx, t: &toml::Table) -> Result<()> {
        for (k, v) in t {
            let c = &mut self.carbonserver;
            match k.as_str() {
                "enabled" => c.enabled = cx.bool("carbonserver", k, v)?,
                "listen" => c.listen = cx.string("carbonserver", k, v)?,
                "read-timeout" => c.read_timeout = cx.duration("carbonserver", k, v)?,
                "write-timeout" => c.write_timeout = cx.duration("carbonserver", k, v)?,
                "max-globs" => c.max_globs = cx.int("carbonserver", k, v, 1, 1 << 20)? as usize,
                "max-metrics-globbed" => {
                    c.max_metrics_globbed = cx.int("carbonserver", k, v, 1, 1 << 30)? as usize
                }
                "max-metrics-rendered" => {
                    c.max_metrics_rendered = cx.int("carbonserver", k, v, 1, 1 << 30)? as usize
                }
                "empty-result-ok" => c.empty_result_ok = cx.bool("carbonserver", k, v)?,
                // go-carbon's index, cache and tuning knobs (many, and growing): accepted
                // and reported, as before this section was implemented.
                _ => cx.ignored.push(format!("carbonserver.{k}")),
            }
        }
        Ok(())
    }
}

impl Config {
    fn apply_journal(&mut self, cx: &mut Cx, t: &toml::Table) -> Result<()> {
        for (k, v) in t {
            let c = &mut self.journal;
            match k.as_str() {
                "enabled" => c.enabled = cx.bool("journal", k, v)?,
                "fsync" => {
                    let s = cx.string("journal", k, v)?;
                    c.fsync = crate::journal::FsyncPolicy::from_name(&s).ok_or_else(|| {
                        cx.err(
                            "journal",
                            k,
                            format!("{s:?}: expected \"always\", \"interval\" or \"never\""),
                        )
                    })?;
                }
                "fsync-interval" => {
                    c.fsync_interval = cx.duration("journal", k, v)?;
                    if c.fsync_interval.is_zero() {
                        return Err(cx.err("journal", k, "must be positive".into()));
                    }
                }
                "max-size" => c.max_size = cx.size("journal", k, v, 0)?,
                "segment-size" => c.segment_size = cx.size("journal", k, v, 4096)?,
                _ => return Err(cx.err("journal", k, "unknown key in [journal]".into())),
            }
        }
        Ok(())
    }
}

impl Config {
    fn apply_dump(&mut self, cx: &mut Cx, t: &toml::Table) -> Result<()> {
        for (k, v) in t {
            let c = &mut self.dump;
            match k.as_str() {
                "enabled" => c.enabled = cx.bool("dump", k, v)?,
                "path" => c.path = non_empty(cx.string("dump", k, v)?),
                "restore-per-second" => {
                    c.restore_per_second = cx.int("dump", k, v, 0, u32::MAX as i64)? as u32
                }
                _ => return Err(cx.err("dump", k, "unknown key in [dump]".into())),
            }
        }
        Ok(())
    }
}

/// go-carbon sections carbonlite does not implement yet, with their keys (empty = free-form).
fn go_carbon_keys(section: &str) -> Option<&'static [&'static str]> {
    let keys: &[&str] = match section {
        "carbonlink" => &["listen", "enabled", "read-timeout", "query-timeout"],
        "grpc" => &["listen", "enabled"],
        "tags" => &[
            "enabled",
            "tagdb-url",
            "tagdb-timeout",
            "tagdb-chunk-size",
            "tagdb-update-interval",
            "local-dir",
        ],
        "pprof" => &["listen", "enabled"],
        "prometheus" => &["enabled", "endpoint", "labels"],
        "tracing" => &["enabled", "jaegerEndpoint", "stdout", "send_timeout"],
        "carbonserver" | "receiver" => &[],
        _ => return None,
    };
    Some(keys)
}

/// Context for typed reads: turns a bad value into an error naming file, line and key.
struct Cx<'a> {
    file: &'a str,
    text: &'a str,
    ignored: Vec<String>,
}

impl Cx<'_> {
    fn err(&self, section: &str, key: &str, message: String) -> Error {
        let line = find_key_line(self.text, section, key);
        let what = if key.is_empty() {
            format!("[{section}]")
        } else {
            format!("[{section}] {key}")
        };
        Error::Config {
            file: self.file.into(),
            line,
            message: format!("{what}: {message}"),
        }
    }
    fn string(&self, s: &str, k: &str, v: &toml::Value) -> Result<String> {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| self.err(s, k, format!("expected a string, got {v}")))
    }
    fn bool(&self, s: &str, k: &str, v: &toml::Value) -> Result<bool> {
        v.as_bool()
            .ok_or_else(|| self.err(s, k, format!("expected true or false, got {v}")))
    }
    fn int(&self, s: &str, k: &str, v: &toml::Value, min: i64, max: i64) -> Result<i64> {
        match v.as_integer() {
            Some(i) if (min..=max).contains(&i) => Ok(i),
            Some(i) => Err(self.err(s, k, format!("{i} is out of range {min}..={max}"))),
            None => Err(self.err(s, k, format!("expected an integer, got {v}"))),
        }
    }
    /// A byte count: an integer, or a string with a unit (`"512MiB"`, `"1GB"`, `"64k"`;
    /// binary and decimal units as written). At least `min` unless 0.
    fn size(&self, s: &str, k: &str, v: &toml::Value, min: u64) -> Result<u64> {
        let n = match v {
            toml::Value::Integer(i) => u64::try_from(*i).ok(),
            toml::Value::String(text) => parse_size(text),
            _ => None,
        }
        .ok_or_else(|| {
            self.err(
                s,
                k,
                format!("{v} is not a size like 1073741824 or \"1GiB\""),
            )
        })?;
        if n != 0 && n < min {
            return Err(self.err(s, k, format!("{n} is below the minimum of {min} bytes")));
        }
        Ok(n)
    }
    fn duration(&self, s: &str, k: &str, v: &toml::Value) -> Result<Duration> {
        let text = self.string(s, k, v)?;
        parse_go_duration(&text).ok_or_else(|| {
            self.err(
                s,
                k,
                format!("{text:?} is not a duration like \"1m0s\" or \"500ms\""),
            )
        })
    }
}

fn non_empty(s: String) -> Option<PathBuf> {
    if s.is_empty() { None } else { Some(s.into()) }
}

/// Parses Go's `time.ParseDuration` syntax (`1m0s`, `1.5h`, `300ms`, `0`), as go-carbon.conf
/// writes durations.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * unit;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Parses a byte size with an optional unit: `k`/`m`/`g`/`t` (+`b`) are powers of 1000,
/// `ki`/`mi`/`gi`/`ti` (+`b`) powers of 1024, case-insensitive.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..digits].parse().ok()?;
    let unit = t[digits..].trim().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1_000,
        "m" => 1_000_000,
        "g" => 1_000_000_000,
        "t" => 1_000_000_000_000,
        "ki" => 1 << 10,
        "mi" => 1 << 20,
        "gi" => 1 << 30,
        "ti" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn line_of(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Best-effort line of `key` inside `[section]` for error messages (0 when not found).
fn find_key_line(text: &str, section: &str, key: &str) -> usize {
    let mut in_section = false;
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') {
            in_section = l.trim_matches(|c| c == '[' || c == ']').trim() == section;
            if in_section && key.is_empty() {
                return i + 1;
            }
        } else if in_section && !key.is_empty() {
            let k = l.split('=').next().unwrap_or("").trim().trim_matches('"');
            if k == key {
                return i + 1;
            }
        }
    }
    0
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1m0s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_go_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_go_duration("200ms"), Some(Duration::from_millis(200)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "10", "1x", "s", "1m-3s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn real_go_carbon_conf_loads() {
        let text = include_str!("../tests/data/go-carbon.conf");
        let c = Config::daemon().apply_toml(text, "go-carbon.conf").unwrap();
        assert_eq!(
            c.whisper.data_dir,
            PathBuf::from("/var/lib/graphite/whisper")
        );
        assert_eq!(c.whisper.workers, 8);
        assert_eq!(c.cache.max_size, 1_000_000);
        assert_eq!(c.cache.write_strategy, WriteStrategy::Max);
        assert!(c.tcp.enabled);
        assert_eq!(c.tcp.listen, ":2003");
        assert_eq!(c.common.metric_interval, Duration::from_secs(60));
        assert!(c.ignored.iter().any(|k| k == "grpc.listen"));
        assert!(c.pickle.enabled && c.udp.enabled);
        assert_eq!(c.pickle.listen, ":2004");
        assert_eq!(c.pickle.max_message_size, 67_108_864);
        assert!(c.ignored.iter().any(|k| k == "carbonserver.trigram-index"));
    }

    #[test]
    fn errors_name_key_and_line() {
        let e = Config::embedded("d")
            .apply_toml("[cache]\nmax-size = 10\nmax-sise = 3\n", "x.conf")
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("x.conf:3") && msg.contains("max-sise"),
            "{msg}"
        );
        let e = Config::embedded("d")
            .apply_toml("[whisper]\nworkers = \"8\"\n", "x.conf")
            .unwrap_err();
        assert!(
            e.to_string().contains("x.conf:2") && e.to_string().contains("workers"),
            "{e}"
        );
        let e = Config::embedded("d")
            .apply_toml("[cache]\noverflow = \"spill\"\n", "o")
            .unwrap_err();
        assert!(e.to_string().contains("overflow"), "{e}");
        let e = Config::embedded("d")
            .apply_toml("[nonsense]\na = 1\n", "o")
            .unwrap_err();
        assert!(e.to_string().contains("unknown section"), "{e}");
        let e = Config::embedded("d")
            .apply_toml("[pickle]\nlisten = \":2004\"\nlistne = 2\n", "o")
            .unwrap_err();
        assert!(e.to_string().contains("listne"), "{e}");
        let e = Config::embedded("d")
            .apply_toml("[cache\n", "o")
            .unwrap_err();
        assert!(e.to_string().starts_with("o:1"), "{e}");
        let e = Config::embedded("d")
            .apply_toml("[whisper]\nworkers = 0\n", "o")
            .unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
    }

    #[test]
    fn cluster_section() {
        let c = Config::embedded("d")
            .apply_toml(
                "[cluster]\ndestinations = [\"10.0.0.1:2004:a\", \"10.0.0.2:2004:b\"]\nhashing = \"fnv1a_ch/c-relay\"\n",
                "o",
            )
            .unwrap();
        let cl = c.cluster.unwrap();
        assert_eq!(cl.destinations.len(), 2);
        assert_eq!(cl.hashing, crate::cluster::HashKind::Fnv1aChRelay);
        assert!(Config::embedded("d").cluster.is_none());
        let e = Config::embedded("d")
            .apply_toml("[cluster]\nhashing = \"carbon_ch\"\n", "o")
            .unwrap_err();
        assert!(e.to_string().contains("[cluster]"), "{e}");
    }

    #[test]
    fn overflow_modes_and_prefix() {
        let c = Config::embedded("d")
            .apply_toml("[cache]\noverflow = \"block\"\nblock-timeout = \"2s\"\n[common]\nhostname = \"a.b\"\n", "o")
            .unwrap();
        assert!(matches!(c.cache.overflow, Overflow::Block(d) if d == Duration::from_secs(2)));
        assert_eq!(c.self_metric_prefix(), "carbon.agents.a_b");
        let c = Config::embedded("d")
            .apply_toml("[cache]\noverflow = \"drop\"\n", "o")
            .unwrap();
        assert!(matches!(c.cache.overflow, Overflow::Drop));
        assert!(!Config::embedded("d").tcp.enabled);
        assert!(Config::daemon().tcp.enabled);
    }

    #[test]
    fn carbonlink_and_carbonserver_sections() {
        let text = include_str!("../tests/data/go-carbon.conf");
        let c = Config::daemon().apply_toml(text, "go-carbon.conf").unwrap();
        assert!(c.carbonlink.enabled);
        assert_eq!(c.carbonlink.listen, "127.0.0.1:7002");
        assert_eq!(c.carbonlink.read_timeout, Duration::from_secs(30));
        assert!(!c.carbonserver.enabled);
        assert_eq!(c.carbonserver.listen, "127.0.0.1:8080");
        assert_eq!(c.carbonserver.max_globs, 100);
        let c = Config::embedded("d")
            .apply_toml(
                "[carbonserver]\nenabled = true\nmax-metrics-rendered = 5\nempty-result-ok = true\nbuckets = 3\n",
                "o",
            )
            .unwrap();
        assert!(c.carbonserver.enabled && c.carbonserver.empty_result_ok);
        assert_eq!(c.carbonserver.max_metrics_rendered, 5);
        assert!(c.ignored.iter().any(|k| k == "carbonserver.buckets"));
        let e = Config::embedded("d")
            .apply_toml("[carbonlink]\nlisten = \":7002\"\nlsten = 1\n", "o")
            .unwrap_err();
        assert!(e.to_string().contains("lsten"), "{e}");
        let e = Config::embedded("d")
            .apply_toml("[carbonserver]\nmax-globs = 0\n", "o")
            .unwrap_err();
        assert!(e.to_string().contains("max-globs"), "{e}");
        assert!(!Config::embedded("d").carbonlink.enabled);
    }

    #[test]
    fn journal_section() {
        let d = Config::embedded("d");
        assert!(!d.journal.enabled);
        assert_eq!(d.journal.fsync, crate::journal::FsyncPolicy::Interval);
        assert_eq!(d.journal.fsync_interval, Duration::from_secs(1));
        let c = Config::embedded("d")
            .apply_toml(
                "[journal]\nenabled = true\nfsync = \"always\"\nfsync-interval = \"250ms\"\nmax-size = \"1GiB\"\nsegment-size = 1048576\n",
                "o",
            )
            .unwrap();
        let j = &c.journal;
        assert!(j.enabled);
        assert_eq!(j.fsync, crate::journal::FsyncPolicy::Always);
        assert_eq!(j.fsync_interval, Duration::from_millis(250));
        assert_eq!((j.max_size, j.segment_size), (1 << 30, 1 << 20));
        let o = j.options();
        assert_eq!((o.max_size, o.segment_size), (1 << 30, 1 << 20));
        for (bad, key) in [
            ("fsync = \"sometimes\"", "fsync"),
            ("fsync-interval = \"0\"", "fsync-interval"),
            ("max-size = \"12 parsecs\"", "max-size"),
            ("max-size = -1", "max-size"),
            ("segment-size = 100", "segment-size"),
            ("fsynk = \"never\"", "fsynk"),
        ] {
            let e = Config::embedded("d")
                .apply_toml(&format!("[journal]\n{bad}\n"), "o")
                .unwrap_err();
            assert!(
                e.to_string().contains(key) && e.to_string().contains("o:2"),
                "{bad}: {e}"
            );
        }
        assert_eq!(parse_size("64k"), Some(64_000));
        assert_eq!(parse_size("64KiB"), Some(65_536));
        assert_eq!(parse_size("3 MB"), Some(3_000_000));
        assert_eq!(parse_size("99999999999TiB"), None);
        assert_eq!(parse_size("MiB"), None);
    }

    #[test]
    fn dump_section_and_quarantine_key() {
        let d = Config::embedded("/d");
        assert!(!d.dump.enabled && !d.whisper.quarantine_corrupt);
        assert_eq!(d.dump_dir(), PathBuf::from("/d/.dump"));
        let c = Config::embedded("/d")
            .apply_toml(
                "[dump]\nenabled = true\npath = \"/var/lib/graphite/dump/\"\nrestore-per-second = 100\n\
                 [whisper]\nquarantine-corrupt = true\n",
                "t",
            )
            .unwrap();
        assert!(c.dump.enabled && c.whisper.quarantine_corrupt);
        assert_eq!(c.dump_dir(), PathBuf::from("/var/lib/graphite/dump/"));
        assert_eq!(c.dump.restore_per_second, 100);
        assert!(c.ignored.is_empty(), "{:?}", c.ignored);
        let e = Config::embedded("/d")
            .apply_toml("[dump]\nrestore-per-second = -1\n", "t")
            .unwrap_err();
        assert!(e.to_string().contains("restore-per-second"), "{e}");
    }

    #[test]
    fn max_open_files_auto_follows_the_descriptor_limit() {
        let d = Config::embedded("d");
        assert_eq!(d.whisper.max_open_files, 0, "auto by default");
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let auto = d.whisper.open_files();
        assert!((256..=AUTO_OPEN_FILES_MAX).contains(&auto), "{auto}");
        assert!(auto as u64 <= soft.max(256), "{auto} vs soft limit {soft}");
        let c = d
            .apply_toml(
                "[whisper]
max-open-files = 77
",
                "t",
            )
            .unwrap();
        assert_eq!(c.whisper.open_files(), 77);
        let c = c
            .apply_toml(
                "[whisper]
max-open-files = 0
",
                "t",
            )
            .unwrap();
        assert_eq!(c.whisper.open_files(), auto);
        assert!(
            Config::embedded("d")
                .apply_toml(
                    "[whisper]
max-open-files = -1
",
                    "t"
                )
                .is_err()
        );
    }
}
