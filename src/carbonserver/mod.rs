//! go-carbon's carbonserver HTTP API (`[carbonserver]`), which graphite-web (as a
//! `CLUSTER_SERVERS` entry) and carbonapi query:
//!
//! - `/metrics/find/?query=<glob>&format=json|pickle|protobuf|carbonapi_v3_pb`
//! - `/render/?target=<glob>&from=<epoch>&until=<epoch>&format=…` — whisper data with the
//!   cache laid over it ([`crate::engine::Carbon::fetch`])
//! - `/info/?target=<metric>&format=json|protobuf|carbonapi_v3_pb`
//!
//! Response shapes follow go-carbon `carbonserver/{find,render,info}.go`: JSON find and
//! render are the carbonapi_v3 / v2 messages as Go's `encoding/json` writes them, info JSON as
//! `protojson` writes it (int64 as strings); pickle is what graphite-web's `RemoteFinder` and
//! `RemoteReader` read. `Accept: application/x-carbonapi-v3-pb` selects v3 like go-carbon,
//! and v3 requests may carry their protobuf request in a POST body.

pub(crate) mod http;
pub(crate) mod listener;
pub mod proto;

use std::sync::Arc;

use prost::Message;
use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::engine::Shared;
use crate::error::{Error, Result};
use crate::find::{FindMatch, find_in};
use crate::parse::pickle::{PyObject, dumps};
use crate::points::unix_now;
use crate::whisper::{AggregationMethod, Retention};
use http::{Conn, Next, Request, Response};
use listener::{Listener, ListenerState};

const JSON: &str = "application/json";
const PICKLE: &str = "application/pickle";
const PROTOBUF: &str = "application/x-protobuf";
const V2PB: &str = "application/x-carbonapi-v2-pb";
const V3PB: &str = "application/x-carbonapi-v3-pb";
/// Connections served at once; more get a 503.
const MAX_CONNS: usize = 256;

/// The query-side listeners of one node; stopped before the pipeline on close.
#[derive(Debug, Default)]
pub(crate) struct QueryListeners {
    /// `[carbonlink]`, when enabled.
    pub carbonlink: Option<Listener>,
    /// `[carbonserver]`, when enabled.
    pub carbonserver: Option<Listener>,
}

impl QueryListeners {
    /// Starts the enabled listeners; if one fails, the others are stopped again.
    pub(crate) fn start(shared: &Arc<Shared>) -> Result<QueryListeners> {
        let mut q = QueryListeners::default();
        if shared.config.carbonlink.enabled {
            q.carbonlink = Some(crate::carbonlink::start(shared.clone())?);
        }
        if shared.config.carbonserver.enabled {
            q.carbonserver = Some(start(shared.clone())?);
        }
        Ok(q)
    }

    /// Stops both; idempotent.
    pub(crate) fn stop(&mut self) {
        for l in [self.carbonserver.as_mut(), self.carbonlink.as_mut()]
            .into_iter()
            .flatten()
        {
            l.stop();
        }
    }
}

fn start(shared: Arc<Shared>) -> Result<Listener> {
    let listen = shared.config.carbonserver.listen.clone();
    let s = shared.clone();
    Listener::start(
        "carbonserver",
        "carbonserver",
        &listen,
        MAX_CONNS,
        Arc::new(move |stream, state| serve(stream, state, &s)),
        Arc::new(|stream| {
            let mut c = Conn::new(stream, std::time::Duration::from_secs(1));
            c.send(
                &Response::error(503, "Service Unavailable (too many connections)"),
                false,
                false,
            );
        }),
    )
}

fn serve(stream: std::net::TcpStream, state: &ListenerState, shared: &Shared) {
    let cfg = &shared.config.carbonserver;
    let mut conn = Conn::new(stream, cfg.write_timeout);
    loop {
        match conn.next_request(state, cfg.read_timeout) {
            Next::Closed => return,
            Next::Bad(resp) => {
                conn.send(&resp, false, false);
                return;
            }
            Next::Request(req) => {
                let resp =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| route(shared, &req)))
                        .unwrap_or_else(|_| {
                            Response::error(500, "Internal error while processing request")
                        });
                let keep = req.keep_alive && !state.stopping();
                if !conn.send(&resp, keep, req.method == "HEAD") || !keep {
                    return;
                }
            }
        }
    }
}

/// Answers one request.
pub(crate) fn route(shared: &Shared, req: &Request) -> Response {
    let path = req.path.trim_end_matches('/');
    match path {
        "/metrics/find" => find_handler(shared, req),
        "/render" => render_handler(shared, req),
        "/info" => info_handler(shared, req),
        _ => Response::error(404, "404 page not found"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Pickle,
    V2,
    V3,
}

fn format_of(req: &Request) -> std::result::Result<Format, Response> {
    if req.headers("accept").any(|a| a == V3PB) {
        return Ok(Format::V3);
    }
    match req.param("format").unwrap_or("") {
        "" | "json" => Ok(Format::Json),
        "pickle" => Ok(Format::Pickle),
        "protobuf" | "protobuf3" | "carbonapi_v2_pb" => Ok(Format::V2),
        "carbonapi_v3_pb" => Ok(Format::V3),
        _ => Err(Response::error(400, "Bad request (unsupported format)")),
    }
}

fn bad(e: impl std::fmt::Display) -> Response {
    Response::error(400, format!("Bad request ({e})"))
}

// ---------------------------------------------------------------- find

// The JSON wire types serve both ends: this server writes them, a routing handle's
// `cluster::query` reads them from other nodes, so the two cannot drift apart.

/// One match of a `/metrics/find/?format=json` answer.
#[derive(Serialize, Deserialize)]
pub(crate) struct JsonGlobMatch<'a> {
    #[serde(borrow)]
    pub(crate) path: Cow<'a, str>,
    #[serde(rename = "isLeaf")]
    pub(crate) is_leaf: bool,
}

/// The matches of one query (go-carbon's `GlobResponse`).
#[derive(Serialize, Deserialize)]
pub(crate) struct JsonGlobResponse<'a> {
    /// The query; readers do not need it.
    #[serde(borrow, default)]
    pub(crate) name: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) matches: Vec<JsonGlobMatch<'a>>,
}

/// A `/metrics/find/?format=json` answer (go-carbon's `MultiGlobResponse`).
#[derive(Serialize, Deserialize)]
pub(crate) struct JsonMultiGlob<'a> {
    #[serde(borrow)]
    pub(crate) metrics: Vec<JsonGlobResponse<'a>>,
}

fn find_handler(shared: &Shared, req: &Request) -> Response {
    let format = match format_of(req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let queries: Vec<String> = if format == Format::V3 && !req.body.is_empty() {
        match proto::v3::MultiGlobRequest::decode(&req.body[..]) {
            Ok(r) => r.metrics,
            Err(e) => return bad(format!("invalid payload: {e}")),
        }
    } else {
        req.params("query").map(str::to_owned).collect()
    };
    if queries.is_empty() {
        return Response::error(400, "Bad request (no query)");
    }
    let mut results: Vec<(&str, Vec<FindMatch>)> = Vec::with_capacity(queries.len());
    let mut errors = Vec::new();
    for q in &queries {
        match find_in(shared, q) {
            Ok(m) => results.push((q, m)),
            Err(e) => errors.push(format!("{q}: {e}")),
        }
    }
    if results.is_empty() {
        return bad(format!("can't expand globs: {}", errors.join("; ")));
    }
    match format {
        Format::Json => {
            let body = JsonMultiGlob {
                metrics: results
                    .iter()
                    .map(|(q, ms)| JsonGlobResponse {
                        name: Cow::Borrowed(q),
                        matches: ms
                            .iter()
                            .map(|m| JsonGlobMatch {
                                path: Cow::Borrowed(&m.path),
                                is_leaf: m.is_leaf,
                            })
                            .collect(),
                    })
                    .collect(),
            };
            json_response(&body)
        }
        Format::Pickle => {
            // go-carbon's shape; graphite-web reads `metric_path`/`isLeaf` as well as
            // `path`/`is_leaf`.
            let items = results
                .iter()
                .flat_map(|(_, ms)| ms.iter())
                .map(|m| {
                    PyObject::Dict(vec![
                        (
                            PyObject::Str("metric_path".into()),
                            PyObject::Str(m.path.clone()),
                        ),
                        (PyObject::Str("isLeaf".into()), PyObject::Bool(m.is_leaf)),
                    ])
                })
                .collect();
            Response::ok(PICKLE, dumps(&PyObject::List(items), 2))
        }
        Format::V2 => {
            let (q, ms) = &results[0];
            if ms.is_empty() {
                return Response::error(404, "Not Found");
            }
            let r = proto::v2::GlobResponse {
                name: q.to_string(),
                matches: ms
                    .iter()
                    .map(|m| proto::v2::GlobMatch {
                        path: m.path.clone(),
                        is_leaf: m.is_leaf,
                    })
                    .collect(),
            };
            Response::ok(PROTOBUF, r.encode_to_vec())
        }
        Format::V3 => {
            let r = proto::v3::MultiGlobResponse {
                metrics: results
                    .iter()
                    .map(|(q, ms)| proto::v3::GlobResponse {
                        name: q.to_string(),
                        matches: ms
                            .iter()
                            .map(|m| proto::v3::GlobMatch {
                                path: m.path.clone(),
                                is_leaf: m.is_leaf,
                            })
                            .collect(),
                    })
                    .collect(),
            };
            Response::ok(V3PB, r.encode_to_vec())
        }
    }
}

fn json_response<T: Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => Response::ok(JSON, b),
        Err(e) => Response::error(500, format!("response encode failed: {e}")),
    }
}

// ---------------------------------------------------------------- render

/// One target of a render: a glob and its window.
struct Target {
    name: String,
    path_expression: String,
    from: i64,
    until: i64,
}

/// One fetched series.
struct Fetched {
    name: String,
    path_expression: String,
    from: i64,
    until: i64,
    step: i64,
    values: Vec<f64>,
    aggregation: AggregationMethod,
    x_files_factor: f32,
    request_from: i64,
    request_until: i64,
}

fn int_param(req: &Request, k: &str) -> std::result::Result<i64, Response> {
    req.param(k)
        .and_then(|v| v.trim().parse::<i64>().ok())
        .ok_or_else(|| bad(format!("invalid '{k}' time")))
}

fn render_handler(shared: &Shared, req: &Request) -> Response {
    let format = match format_of(req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let targets: Vec<Target> = if format == Format::V3 && !req.body.is_empty() {
        match proto::v3::MultiFetchRequest::decode(&req.body[..]) {
            Ok(r) => r
                .metrics
                .into_iter()
                .map(|m| Target {
                    path_expression: if m.path_expression.is_empty() {
                        m.name.clone()
                    } else {
                        m.path_expression
                    },
                    name: m.name,
                    from: m.start_time,
                    until: m.stop_time,
                })
                .collect(),
            Err(e) => return bad(format!("invalid payload: {e}")),
        }
    } else {
        let (from, until) = match (int_param(req, "from"), int_param(req, "until")) {
            (Ok(f), Ok(u)) => (f, u),
            (Err(r), _) | (_, Err(r)) => return r,
        };
        req.params("target")
            .map(|t| Target {
                name: t.to_string(),
                path_expression: t.to_string(),
                from,
                until,
            })
            .collect()
    };
    if targets.is_empty() {
        return Response::error(400, "Bad request (no target)");
    }
    let now = match req.param("now") {
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) => n,
            Err(_) => return bad("invalid 'now' time"),
        },
        None => unix_now(),
    };
    let max = shared.config.carbonserver.max_metrics_rendered;
    let mut series = Vec::new();
    'targets: for t in &targets {
        let Ok(matches) = find_in(shared, &t.name) else {
            continue;
        };
        for m in matches.iter().filter(|m| m.is_leaf) {
            if series.len() >= max {
                break 'targets;
            }
            if let Ok(Some(f)) = fetch_one(shared, &m.path, t, now) {
                series.push(f);
            }
        }
    }
    if series.is_empty() && !shared.config.carbonserver.empty_result_ok {
        return Response::error(404, "Bad request (Not Found)");
    }
    match format {
        Format::Json => render_json(&series),
        Format::Pickle => render_pickle(&series),
        Format::V2 => {
            let r = proto::v2::MultiFetchResponse {
                metrics: series.iter().map(v2_series).collect(),
            };
            Response::ok(V2PB, r.encode_to_vec())
        }
        Format::V3 => {
            let r = proto::v3::MultiFetchResponse {
                metrics: series
                    .into_iter()
                    .map(|s| proto::v3::FetchResponse {
                        name: s.name,
                        path_expression: s.path_expression,
                        consolidation_func: s.aggregation.name().into(),
                        start_time: s.from,
                        stop_time: s.until,
                        step_time: s.step,
                        x_files_factor: s.x_files_factor,
                        high_precision_timestamps: false,
                        values: s.values,
                        applied_functions: Vec::new(),
                        request_start_time: s.request_from,
                        request_stop_time: s.request_until,
                    })
                    .collect(),
            };
            Response::ok(V3PB, r.encode_to_vec())
        }
    }
}

fn fetch_one(shared: &Shared, name: &str, t: &Target, now: i64) -> Result<Option<Fetched>> {
    let s = shared.fetch(name, t.from, Some(t.until), now)?;
    if s.step <= 0 {
        // The window is outside every archive: go-carbon skips such series.
        return Ok(None);
    }
    let (aggregation, x_files_factor, _) = metadata(shared, name)?;
    Ok(Some(Fetched {
        name: name.to_string(),
        path_expression: t.path_expression.clone(),
        from: s.from,
        until: s.until,
        step: s.step,
        values: s.values,
        aggregation,
        x_files_factor,
        request_from: t.from,
        request_until: t.until,
    }))
}

/// Aggregation, xFilesFactor and archives: from the file, or for a metric only in the
/// cache, from the rules its file will be created with.
fn metadata(shared: &Shared, metric: &str) -> Result<(AggregationMethod, f32, Vec<Retention>)> {
    let name = shared.canonical_name(metric)?;
    let path = shared.metric_path(&name)?;
    match shared.pool.get(&path) {
        Ok(f) => {
            let f = f.lock();
            let h = f.header();
            let rets = h
                .archives
                .iter()
                .map(|a| Retention {
                    seconds_per_point: a.seconds_per_point,
                    points: a.points,
                })
                .collect();
            Ok((h.aggregation, h.x_files_factor, rets))
        }
        Err(Error::NotFound(_)) if shared.cache.get(&name).is_some() => {
            let r = shared.rules.rules_for(&name);
            Ok((r.aggregation, r.x_files_factor, r.retentions))
        }
        Err(e) => Err(e),
    }
}

fn v2_series(s: &Fetched) -> proto::v2::FetchResponse {
    proto::v2::FetchResponse {
        name: s.name.clone(),
        start_time: s.from as i32,
        stop_time: s.until as i32,
        step_time: s.step as i32,
        values: s
            .values
            .iter()
            .map(|v| if v.is_nan() { 0.0 } else { *v })
            .collect(),
        is_absent: s.values.iter().map(|v| v.is_nan()).collect(),
    }
}

/// One series of a `/render/?format=json` answer (go-carbon's v2 `FetchResponse`).
#[derive(Serialize, Deserialize)]
pub(crate) struct JsonFetch<'a> {
    #[serde(borrow)]
    pub(crate) name: Cow<'a, str>,
    #[serde(rename = "startTime")]
    pub(crate) start_time: i64,
    #[serde(rename = "stopTime")]
    pub(crate) stop_time: i64,
    #[serde(rename = "stepTime")]
    pub(crate) step_time: i64,
    pub(crate) values: Vec<f64>,
    /// Absent when the answer has no gaps to mark (readers take all values as present).
    #[serde(rename = "isAbsent", default)]
    pub(crate) is_absent: Vec<bool>,
}

/// A `/render/?format=json` answer (go-carbon's `MultiFetchResponse`).
#[derive(Serialize, Deserialize)]
pub(crate) struct JsonMultiFetch<'a> {
    #[serde(borrow)]
    pub(crate) metrics: Vec<JsonFetch<'a>>,
}

/// go-carbon's JSON render: the v2 message (absent values are 0 with `isAbsent`), since
/// JSON has no NaN.
fn render_json(series: &[Fetched]) -> Response {
    let body = JsonMultiFetch {
        metrics: series
            .iter()
            .map(|s| JsonFetch {
                name: Cow::Borrowed(&s.name),
                start_time: s.from,
                stop_time: s.until,
                step_time: s.step,
                values: s
                    .values
                    .iter()
                    .map(|v| if v.is_nan() { 0.0 } else { *v })
                    .collect(),
                is_absent: s.values.iter().map(|v| v.is_nan()).collect(),
            })
            .collect(),
    };
    json_response(&body)
}

/// What graphite-web's `RemoteReader.fetch_multi` reads: a list of dicts with `name`,
/// `pathExpression`, `start`, `end`, `step` and `values` (None for gaps).
fn render_pickle(series: &[Fetched]) -> Response {
    let s = |t: &str| PyObject::Str(t.to_string());
    let list = series
        .iter()
        .map(|f| {
            PyObject::Dict(vec![
                (s("name"), s(&f.name)),
                (s("pathExpression"), s(&f.path_expression)),
                (s("start"), PyObject::Int(f.from)),
                (s("end"), PyObject::Int(f.until)),
                (s("step"), PyObject::Int(f.step)),
                (
                    s("xFilesFactor"),
                    PyObject::Float(f64::from(f.x_files_factor)),
                ),
                (s("consolidationFunc"), s(f.aggregation.name())),
                (
                    s("values"),
                    PyObject::List(
                        f.values
                            .iter()
                            .map(|v| {
                                if v.is_nan() {
                                    PyObject::None
                                } else {
                                    PyObject::Float(*v)
                                }
                            })
                            .collect(),
                    ),
                ),
            ])
        })
        .collect();
    Response::ok(PICKLE, dumps(&PyObject::List(list), 2))
}

// ---------------------------------------------------------------- info

#[derive(Serialize)]
struct JsonRetention {
    #[serde(rename = "secondsPerPoint")]
    seconds_per_point: String,
    #[serde(rename = "numberOfPoints")]
    number_of_points: String,
}

#[derive(Serialize)]
struct JsonInfo {
    name: String,
    #[serde(rename = "consolidationFunc")]
    consolidation_func: String,
    #[serde(rename = "maxRetention")]
    max_retention: String,
    #[serde(rename = "xFilesFactor")]
    x_files_factor: f32,
    retentions: Vec<JsonRetention>,
}

#[derive(Serialize)]
struct JsonMultiInfo {
    metrics: Vec<JsonInfo>,
}

/// go-carbon's `titleizeAggrMethod`: `average` → `Average`.
fn titleize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn info_handler(shared: &Shared, req: &Request) -> Response {
    let format = match format_of(req) {
        Ok(Format::Pickle) | Err(_) => {
            return Response::error(400, "Bad request (unsupported format)");
        }
        Ok(f) => f,
    };
    let targets: Vec<String> = if format == Format::V3 && !req.body.is_empty() {
        match proto::v3::MultiGlobRequest::decode(&req.body[..]) {
            Ok(r) => r.metrics,
            Err(e) => return bad(format!("invalid payload: {e}")),
        }
    } else {
        req.params("target").map(str::to_owned).collect()
    };
    let mut infos = Vec::with_capacity(targets.len());
    for t in &targets {
        match metadata(shared, t) {
            Ok((agg, xff, rets)) => infos.push((t.clone(), agg, xff, rets)),
            Err(_) => return Response::error(404, "Metric not found"),
        }
    }
    if infos.is_empty() {
        return Response::error(404, "Not Found");
    }
    let max_ret = |rets: &[Retention]| {
        rets.iter()
            .map(|r| i64::from(r.seconds_per_point) * i64::from(r.points))
            .max()
            .unwrap_or(0)
    };
    match format {
        Format::Json => json_response(&JsonMultiInfo {
            metrics: infos
                .iter()
                .map(|(name, agg, xff, rets)| JsonInfo {
                    name: name.clone(),
                    consolidation_func: titleize(agg.name()),
                    max_retention: max_ret(rets).to_string(),
                    x_files_factor: *xff,
                    retentions: rets
                        .iter()
                        .map(|r| JsonRetention {
                            seconds_per_point: r.seconds_per_point.to_string(),
                            number_of_points: r.points.to_string(),
                        })
                        .collect(),
                })
                .collect(),
        }),
        Format::V2 => {
            let (name, agg, xff, rets) = &infos[0];
            let r = proto::v2::InfoResponse {
                name: name.clone(),
                aggregation_method: titleize(agg.name()),
                max_retention: max_ret(rets) as i32,
                x_files_factor: *xff,
                retentions: rets
                    .iter()
                    .map(|r| proto::v2::Retention {
                        seconds_per_point: r.seconds_per_point as i32,
                        number_of_points: r.points as i32,
                    })
                    .collect(),
            };
            Response::ok(V2PB, r.encode_to_vec())
        }
        Format::V3 | Format::Pickle => {
            let r = proto::v3::MultiMetricsInfoResponse {
                metrics: infos
                    .iter()
                    .map(|(name, agg, xff, rets)| proto::v3::MetricsInfoResponse {
                        name: name.clone(),
                        consolidation_func: titleize(agg.name()),
                        x_files_factor: *xff,
                        max_retention: max_ret(rets),
                        retentions: rets
                            .iter()
                            .map(|r| proto::v3::Retention {
                                seconds_per_point: i64::from(r.seconds_per_point),
                                number_of_points: i64::from(r.points),
                            })
                            .collect(),
                    })
                    .collect(),
            };
            Response::ok(V3PB, r.encode_to_vec())
        }
    }
}
