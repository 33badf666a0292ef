//! Reading from other nodes through their carbonserver HTTP API, with the requests
//! graphite-web's and carbonapi's remote finders send: `/metrics/find/?format=json&query=…`
//! and `/render/?format=json&target=…&from=…&until=…` (see `crate::carbonserver` for the
//! answer shapes; go-carbon's carbonserver answers the same).
//!
//! The client is std only: one HTTP/1.0 GET per request with `Connection: close`, so the
//! answer is never chunked and ends where the connection does (Content-Length, when sent,
//! is checked). That is all a query to a carbonserver needs; an HTTP crate would bring
//! keep-alive and TLS we do not use into every program that embeds the library.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::carbonserver::{JsonMultiFetch, JsonMultiGlob};

use crate::error::Error;
use crate::find::FindMatch;
use crate::whisper::Series;

/// Largest answer read from a node (a find of 30,000 paths or a long render is far below).
const MAX_ANSWER: usize = 256 << 20;

/// Why a query to one node failed: `Down` means try the next replica.
#[derive(Debug)]
pub enum QueryError {
    /// Connection refused, reset or timed out, or a 5xx: the node cannot answer now.
    Down(String),
    /// The node answered 404: it does not hold the metric.
    NotFound,
    /// The node answered, but with something we cannot use (4xx, bad JSON).
    Bad(String),
}

impl QueryError {
    /// As a crate error naming the node.
    pub fn into_error(self, addr: &str, what: &str) -> Error {
        match self {
            QueryError::NotFound => Error::NotFound(what.to_owned()),
            QueryError::Down(m) | QueryError::Bad(m) => Error::io(
                format!("carbonserver {addr}"),
                std::io::Error::other(format!("{what}: {m}")),
            ),
        }
    }
}

/// `GET path` on `addr` (`host:port`) within `timeout`; the body of a 200 answer.
pub fn get(addr: &str, path: &str, timeout: Duration) -> std::result::Result<Vec<u8>, QueryError> {
    let deadline = Instant::now() + timeout;
    let down = |e: std::io::Error| QueryError::Down(e.to_string());
    let sa = addr
        .to_socket_addrs()
        .map_err(down)?
        .next()
        .ok_or_else(|| QueryError::Down(format!("{addr}: no address")))?;
    let mut s = TcpStream::connect_timeout(&sa, timeout).map_err(down)?;
    let left = |d: Instant| {
        d.saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    s.set_write_timeout(Some(left(deadline))).map_err(down)?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: carbonlite\r\n\r\n"
    )
    .map_err(down)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        s.set_read_timeout(Some(left(deadline))).map_err(down)?;
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > MAX_ANSWER {
                    return Err(QueryError::Bad("answer larger than 256 MiB".into()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(down(e)),
        }
        if Instant::now() >= deadline {
            return Err(QueryError::Down(format!(
                "no complete answer within {timeout:?}"
            )));
        }
    }
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| QueryError::Down("connection closed before the answer's head".into()))?;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let body = buf.split_off(head_end + 4);
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| QueryError::Bad(format!("not an HTTP answer: {:?}", first_line(&head))))?;
    let length = head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    });
    if length.is_some_and(|n| body.len() < n) {
        return Err(QueryError::Down("answer cut short".into()));
    }
    match status {
        200 => Ok(body),
        404 => Err(QueryError::NotFound),
        500.. => Err(QueryError::Down(format!("HTTP {}", first_line(&head)))),
        _ => Err(QueryError::Bad(format!(
            "{}: {}",
            first_line(&head),
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Percent-encodes a query-string value (RFC 3986 unreserved characters stay).
pub fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether one node holds `metric` (a file or cached points), by go-carbon's `/info/`: 200 yes,
/// 404 no. `/render/` answers 404 both for an unknown metric and for a window outside every
/// archive of a known one (go-carbon skips such series); this tells them apart.
pub fn exists(
    addr: &str,
    metric: &str,
    timeout: Duration,
) -> std::result::Result<bool, QueryError> {
    let path = format!("/info/?format=json&target={}", encode(metric));
    match get(addr, &path, timeout) {
        Ok(_) => Ok(true),
        Err(QueryError::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `/metrics/find/` of `pattern` on one node.
pub fn find(
    addr: &str,
    pattern: &str,
    timeout: Duration,
) -> std::result::Result<Vec<FindMatch>, QueryError> {
    let path = format!("/metrics/find/?format=json&query={}", encode(pattern));
    let body = match get(addr, &path, timeout) {
        // go-carbon answers a find without matches with 404 in some formats.
        Err(QueryError::NotFound) => return Ok(Vec::new()),
        r => r?,
    };
    let r: JsonMultiGlob =
        serde_json::from_slice(&body).map_err(|e| QueryError::Bad(format!("find answer: {e}")))?;
    Ok(r.metrics
        .into_iter()
        .flat_map(|g| g.matches)
        .map(|m| FindMatch {
            path: m.path.into_owned(),
            is_leaf: m.is_leaf,
        })
        .collect())
}

/// `/render/` of one metric on one node: the series as `Carbon::fetch` would return it there.
pub fn fetch(
    addr: &str,
    metric: &str,
    from: i64,
    until: i64,
    now: i64,
    timeout: Duration,
) -> std::result::Result<Series, QueryError> {
    let path = format!(
        "/render/?format=json&target={}&from={from}&until={until}&now={now}",
        encode(metric)
    );
    let body = get(addr, &path, timeout)?;
    let r: JsonMultiFetch = serde_json::from_slice(&body)
        .map_err(|e| QueryError::Bad(format!("render answer: {e}")))?;
    let s = r
        .metrics
        .into_iter()
        .find(|s| s.name == metric)
        .ok_or(QueryError::NotFound)?;
    if s.step_time <= 0
        || s.stop_time < s.start_time
        || (s.stop_time - s.start_time) / s.step_time != s.values.len() as i64
    {
        return Err(QueryError::Bad(format!(
            "render answer for {metric}: window {}..{} step {} does not hold {} values",
            s.start_time,
            s.stop_time,
            s.step_time,
            s.values.len()
        )));
    }
    let values = s
        .values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if s.is_absent.get(i).copied().unwrap_or(false) {
                f64::NAN
            } else {
                v
            }
        })
        .collect();
    Ok(Series {
        from: s.start_time,
        until: s.stop_time,
        step: s.step_time,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server answering `answer` to the first request; returns its address.
    /// It reads the whole request head first and drains before closing: closing a socket with
    /// unread bytes makes the kernel send RST, which the client would see as a reset instead
    /// of `answer` (a flaky failure under load).
    fn serve(answer: &'static [u8]) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ = c.write_all(answer);
            let _ = c.shutdown(std::net::Shutdown::Write);
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
        });
        addr
    }

    #[test]
    fn answers_map_to_outcomes() {
        let t = Duration::from_secs(2);
        let a = serve(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(get(&a, "/", t).unwrap(), b"ok");
        let a = serve(b"HTTP/1.0 404 Not Found\r\n\r\n");
        assert!(matches!(get(&a, "/", t), Err(QueryError::NotFound)));
        let a = serve(b"HTTP/1.0 503 Busy\r\n\r\n");
        assert!(matches!(get(&a, "/", t), Err(QueryError::Down(_))));
        let a = serve(b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nok");
        assert!(matches!(get(&a, "/", t), Err(QueryError::Down(_))));
        let a = serve(b"garbage");
        assert!(get(&a, "/", t).is_err());
        // Nothing listens: down, quickly.
        let free = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(matches!(
            get(&free.to_string(), "/", t),
            Err(QueryError::Down(_))
        ));
        let a = serve(
            b"HTTP/1.0 200 OK\r\n\r\n{\"metrics\":[{\"name\":\"a.b\",\"startTime\":10,\"stopTime\":40,\"stepTime\":10,\"values\":[1,0,3],\"isAbsent\":[false,true,false]}]}",
        );
        let s = fetch(&a, "a.b", 0, 40, 40, t).unwrap();
        assert_eq!((s.from, s.until, s.step), (10, 40, 10));
        assert_eq!(s.values[0], 1.0);
        assert!(s.values[1].is_nan());
        let a = serve(
            b"HTTP/1.0 200 OK\r\n\r\n{\"metrics\":[{\"name\":\"a.b\",\"startTime\":10,\"stopTime\":40,\"stepTime\":10,\"values\":[1]}]}",
        );
        assert!(matches!(
            fetch(&a, "a.b", 0, 40, 40, t),
            Err(QueryError::Bad(_))
        ));
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("a.b*{x,y}"), "a.b%2A%7Bx%2Cy%7D");
        assert_eq!(encode("t;k=v"), "t%3Bk%3Dv");
    }
}
