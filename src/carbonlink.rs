//! The carbonlink listener (`[carbonlink]`): graphite-web's `CARBONLINK_HOSTS` protocol, so
//! renders include points still in the cache (carbon `CacheManagementHandler`, go-carbon
//! `cache/carbonlink.go`).
//!
//! Frames are a 4-byte big-endian length and a pickle (protocols 2–5, read by the safe
//! unpickler in [`crate::parse::pickle`]). Requests are dicts:
//! - `{'type': 'cache-query', 'metric': m}` → `{'datapoints': [(ts, value), …]}`
//! - `{'type': 'cache-query-bulk', 'metrics': [m, …]}` → `{'datapointsByMetric': {m: […]}}`
//! - `{'type': 'get-metadata', 'metric': m, 'key': 'aggregationMethod'}` → `{'value': name}`
//!
//! Anything else well framed gets `{'error': …}` (carbon's answer to an unknown type), so
//! graphite-web raises `CarbonLinkRequestError` instead of waiting. Answers are protocol 2,
//! as carbon sends. A frame over 16 MiB, or one that stalls, closes the connection.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::carbonserver::listener::{Listener, ListenerState, POLL};
use crate::engine::Shared;
use crate::error::Result;
use crate::parse::pickle::{Limits, Pickle, PyObject, Value, dumps};
use crate::points::Point;

/// Largest request frame (graphite-web's bulk queries are a few hundred KiB at most).
pub const MAX_FRAME: usize = 16 << 20;
/// Connections served at once; more are closed on accept.
const MAX_CONNS: usize = 512;

/// Starts the `[carbonlink]` listener.
pub(crate) fn start(shared: Arc<Shared>) -> Result<Listener> {
    let listen = shared.config.carbonlink.listen.clone();
    let s = shared.clone();
    Listener::start(
        "carbonlink",
        "carbonlink",
        &listen,
        MAX_CONNS,
        Arc::new(move |stream, state| serve(stream, state, &s)),
        Arc::new(|_stream| {}),
    )
}

fn serve(mut stream: TcpStream, state: &ListenerState, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(POLL));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_nodelay(true);
    let idle = shared.config.carbonlink.read_timeout;
    loop {
        let mut len = [0u8; 4];
        match read_full(&mut stream, &mut len, state, idle, true) {
            Ok(true) => {}
            _ => return,
        }
        let n = u32::from_be_bytes(len) as usize;
        if n > MAX_FRAME {
            return;
        }
        let mut body = vec![0u8; n];
        match read_full(&mut stream, &mut body, state, idle, false) {
            Ok(true) => {}
            _ => return,
        }
        let reply = answer(shared, &body);
        let Ok(len) = u32::try_from(reply.len()) else {
            return;
        };
        let mut out = Vec::with_capacity(reply.len() + 4);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&reply);
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

/// Fills `buf`. Ok(false): the peer closed (or, between frames, went idle or we are
/// stopping). A frame started but not finished within `idle` is an error.
fn read_full(
    s: &mut TcpStream,
    buf: &mut [u8],
    state: &ListenerState,
    idle: Duration,
    between_frames: bool,
) -> std::io::Result<bool> {
    let start = Instant::now();
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                let waiting = between_frames && got == 0;
                if waiting && state.stopping() {
                    return Ok(false);
                }
                if !idle.is_zero() && start.elapsed() > idle {
                    if waiting {
                        return Ok(false);
                    }
                    return Err(ErrorKind::TimedOut.into());
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn error(msg: String) -> PyObject {
    PyObject::Dict(vec![(PyObject::Str("error".into()), PyObject::Str(msg))])
}

/// The pickled answer to one request payload.
pub(crate) fn answer(shared: &Shared, request: &[u8]) -> Vec<u8> {
    let limits = Limits {
        max_objects: 1 << 20,
        max_marks: 16,
    };
    let reply = match Pickle::load(request, &limits) {
        Ok(p) => handle(shared, p.root()),
        Err(e) => error(format!("cannot unpickle request: {e}")),
    };
    dumps(&reply, 2)
}

fn handle(shared: &Shared, req: Value<'_>) -> PyObject {
    let Value::Dict(d) = req else {
        return error(format!("request is a {}, not a dict", req.type_name()));
    };
    let Some(kind) = d.get_str("type").and_then(|v| v.as_text()) else {
        return error("request has no 'type'".into());
    };
    let metric = d.get_str("metric").and_then(|v| v.as_text());
    match (kind, metric) {
        ("cache-query", Some(m)) => PyObject::Dict(vec![(
            PyObject::Str("datapoints".into()),
            datapoints(shared, m),
        )]),
        ("cache-query-bulk", _) => {
            let Some(list) = d.get_str("metrics").and_then(|v| v.as_seq()) else {
                return error("cache-query-bulk needs a 'metrics' list".into());
            };
            let mut by_metric = Vec::with_capacity(list.len());
            for v in list.iter() {
                let Some(m) = v.as_text() else {
                    return error(format!("metric name is a {}", v.type_name()));
                };
                by_metric.push((PyObject::Str(m.into()), datapoints(shared, m)));
            }
            PyObject::Dict(vec![(
                PyObject::Str("datapointsByMetric".into()),
                PyObject::Dict(by_metric),
            )])
        }
        ("get-metadata", Some(m)) => {
            let key = d.get_str("key").and_then(|v| v.as_text()).unwrap_or("");
            if key != "aggregationMethod" {
                return error(format!("Unsupported metadata key \"{key}\""));
            }
            match aggregation_of(shared, m) {
                Ok(name) => PyObject::Dict(vec![(
                    PyObject::Str("value".into()),
                    PyObject::Str(name.into()),
                )]),
                Err(e) => error(e.to_string()),
            }
        }
        ("cache-query" | "get-metadata", None) => error(format!("{kind} needs a 'metric'")),
        _ => error(format!("Invalid request type \"{kind}\"")),
    }
}

/// Cached points of `metric` as carbon lists them: `(timestamp, value)` tuples.
fn datapoints(shared: &Shared, metric: &str) -> PyObject {
    let points: Vec<Point> = shared
        .canonical_name(metric)
        .ok()
        .and_then(|n| shared.cache.get(&n))
        .unwrap_or_default();
    PyObject::List(
        points
            .iter()
            .map(|p| PyObject::Tuple(vec![PyObject::Int(p.timestamp), PyObject::Float(p.value)]))
            .collect(),
    )
}

/// The file's aggregation method; for a metric only in the cache, the one its file will get.
pub(crate) fn aggregation_of(shared: &Shared, metric: &str) -> Result<&'static str> {
    let name = shared.canonical_name(metric)?;
    let path = shared.metric_path(&name)?;
    match shared.pool.get(&path) {
        Ok(f) => Ok(f.lock().header().aggregation.name()),
        Err(crate::Error::NotFound(_)) if shared.cache.get(&name).is_some() => {
            Ok(shared.rules.rules_for(&name).aggregation.name())
        }
        Err(e) => Err(e),
    }
}
