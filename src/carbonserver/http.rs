//! Just enough HTTP/1.1 for the carbonserver API, on std: GET/HEAD/POST, query strings and
//! urlencoded forms, Content-Length bodies, keep-alive and pipelining. Everything a client
//! can send is bounded (head 64 KiB, body 16 MiB, time `read-timeout`); anything malformed
//! gets a 4xx and the connection is closed, so a bad client costs one thread for a moment.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::listener::{ListenerState, POLL};

/// Longest request line plus headers.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Largest request body (carbonapi's protobuf requests are far smaller).
pub(crate) const MAX_BODY: usize = 16 << 20;

/// A parsed request.
#[derive(Debug, Default)]
pub(crate) struct Request {
    pub method: String,
    /// Path without the query string, percent-decoded.
    pub path: String,
    /// Query-string and urlencoded-form parameters, in order.
    pub params: Vec<(String, String)>,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub keep_alive: bool,
}

impl Request {
    /// The first value of parameter `k` (go's `FormValue`).
    pub fn param(&self, k: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of parameter `k` (go's `Form[k]`).
    pub fn params<'a>(&'a self, k: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params
            .iter()
            .filter(move |(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `k` (lower-case name).
    pub fn headers<'a>(&'a self, k: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// A response to send.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    /// A 200 with `body`.
    pub fn ok(content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status: 200,
            content_type,
            body,
        }
    }

    /// A plain-text error, as go's `http.Error` writes it.
    pub fn error(status: u16, text: impl Into<String>) -> Response {
        let mut body = text.into().into_bytes();
        body.push(b'\n');
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }
}

/// What reading the next request gave.
#[derive(Debug)]
pub(crate) enum Next {
    Request(Request),
    /// The peer closed, went idle past the timeout, or the server is stopping.
    Closed,
    /// Malformed or oversized: answer this, then close.
    Bad(Response),
}

/// One HTTP connection with its read buffer (which may hold a pipelined next request).
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(stream: TcpStream, write_timeout: Duration) -> Conn {
        let _ = stream.set_read_timeout(Some(POLL));
        let _ = stream.set_write_timeout(Some(write_timeout));
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Reads the next request. `timeout` bounds both idling between requests and the time a
    /// request may take to arrive.
    pub fn next_request(&mut self, state: &ListenerState, timeout: Duration) -> Next {
        let start = Instant::now();
        let head_end = loop {
            if let Some(end) = find_head_end(&self.buf) {
                break end;
            }
            if self.buf.len() > MAX_HEAD {
                return Next::Bad(Response::error(431, "Request Header Fields Too Large"));
            }
            match self.fill() {
                Ok(0) => return Next::Closed,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {
                    if state.stopping() && self.buf.is_empty() {
                        return Next::Closed;
                    }
                    if start.elapsed() > timeout {
                        if self.buf.is_empty() {
                            return Next::Closed;
                        }
                        return Next::Bad(Response::error(408, "Request Timeout"));
                    }
                }
                Err(_) => return Next::Closed,
            }
        };
        let mut req = match parse_head(&self.buf[..head_end.0]) {
            Ok(r) => r,
            Err(resp) => return Next::Bad(resp),
        };
        self.buf.drain(..head_end.1);
        let mut len = 0usize;
        for v in req.headers("content-length") {
            match v.trim().parse::<usize>() {
                Ok(n) => len = n,
                Err(_) => return Next::Bad(Response::error(400, "Bad Content-Length")),
            }
        }
        if req.headers("transfer-encoding").next().is_some() {
            return Next::Bad(Response::error(501, "Transfer-Encoding is not supported"));
        }
        if len > MAX_BODY {
            return Next::Bad(Response::error(413, "Payload Too Large"));
        }
        while self.buf.len() < len {
            match self.fill() {
                Ok(0) => return Next::Closed,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {
                    if start.elapsed() > timeout || state.stopping() {
                        return Next::Bad(Response::error(408, "Request Timeout"));
                    }
                }
                Err(_) => return Next::Closed,
            }
        }
        req.body = self.buf.drain(..len).collect();
        let form = req
            .headers("content-type")
            .next()
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        if form && req.method == "POST" {
            let Ok(text) = std::str::from_utf8(&req.body) else {
                return Next::Bad(Response::error(400, "Bad request (form is not UTF-8)"));
            };
            match parse_query(text) {
                Ok(p) => req.params.extend(p),
                Err(e) => return Next::Bad(Response::error(400, e)),
            }
        }
        Next::Request(req)
    }

    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Writes `resp`; `head_only` for HEAD requests.
    pub fn send(&mut self, resp: &Response, keep_alive: bool, head_only: bool) -> bool {
        let mut out = Vec::with_capacity(160 + resp.body.len());
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}\r\n",
            resp.status,
            reason(resp.status),
            resp.content_type,
            resp.body.len(),
            if keep_alive {
                ""
            } else {
                "Connection: close\r\n"
            }
        );
        if !head_only {
            out.extend_from_slice(&resp.body);
        }
        self.stream.write_all(&out).is_ok() && self.stream.flush().is_ok()
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// (end of head, start of body): the blank line may be CRLF CRLF or bare LF LF.
fn find_head_end(b: &[u8]) -> Option<(usize, usize)> {
    let crlf = b
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    let lf = b.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn parse_head(head: &[u8]) -> Result<Request, Response> {
    let text = std::str::from_utf8(head)
        .map_err(|_| Response::error(400, "Bad request (head is not UTF-8)"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Response::error(400, "Bad request line"));
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(Response::error(505, "HTTP Version Not Supported")),
    };
    if !matches!(method, "GET" | "HEAD" | "POST") {
        return Err(Response::error(405, "Method Not Allowed"));
    }
    let mut req = Request {
        method: method.to_string(),
        ..Request::default()
    };
    for h in lines {
        if h.is_empty() {
            continue;
        }
        let Some((k, v)) = h.split_once(':') else {
            return Err(Response::error(400, "Bad header line"));
        };
        if k.is_empty() || k.contains([' ', '\t']) {
            return Err(Response::error(400, "Bad header name"));
        }
        req.headers
            .push((k.to_ascii_lowercase(), v.trim().to_string()));
    }
    let conn = req
        .headers("connection")
        .next()
        .map(str::to_ascii_lowercase);
    req.keep_alive = match conn.as_deref() {
        Some("close") => false,
        Some("keep-alive") => true,
        _ => http11,
    };
    // Absolute-form targets (proxies) carry scheme and host first.
    let target = match target.find("://") {
        Some(i) => target[i + 3..]
            .find('/')
            .map_or("/", |j| &target[i + 3 + j..]),
        None => target,
    };
    if !target.starts_with('/') {
        return Err(Response::error(400, "Bad request target"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    req.path = percent_decode(path, false).map_err(|e| Response::error(400, e))?;
    req.params = parse_query(query).map_err(|e| Response::error(400, e))?;
    Ok(req)
}

/// `a=1&b=x%20y&c` → pairs; `+` is a space. Bad escapes and non-UTF-8 are errors.
pub(crate) fn parse_query(q: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in q.split(['&', ';']) {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((percent_decode(k, true)?, percent_decode(v, true)?));
    }
    Ok(out)
}

fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                    return Err("Bad request (invalid %-escape in URL)".into());
                };
                out.push(v);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "Bad request (URL is not UTF-8)".into())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_and_refuse() {
        let r = parse_head(
            b"GET /render/?target=a.b&target=c%2Ad&from=1&x=a+b HTTP/1.1\r\nHost: x\r\nAccept: y",
        )
        .unwrap();
        assert_eq!(r.path, "/render/");
        assert_eq!(r.params("target").collect::<Vec<_>>(), ["a.b", "c*d"]);
        assert_eq!(r.param("x"), Some("a b"));
        assert!(r.keep_alive);
        assert_eq!(r.headers("accept").next(), Some("y"));
        let r = parse_head(b"GET http://h:1/info/?a=1 HTTP/1.0").unwrap();
        assert_eq!((r.path.as_str(), r.keep_alive), ("/info/", false));
        for (bad, code) in [
            (&b"GET /x HTTP/2.0"[..], 505),
            (b"DELETE /x HTTP/1.1", 405),
            (b"GET /x?q=%zz HTTP/1.1", 400),
            (b"GET /x?q=%ff HTTP/1.1", 400),
            (b"GET x HTTP/1.1", 400),
            (b"GET /x HTTP/1.1 extra", 400),
            (b"GET /x HTTP/1.1\r\nnocolon", 400),
            (b"\xff\xfe", 400),
            (b"", 400),
        ] {
            assert_eq!(parse_head(bad).unwrap_err().status, code, "{bad:?}");
        }
    }

    #[test]
    fn head_end_accepts_bare_lf() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some((14, 18)));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nrest"), Some((14, 16)));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
