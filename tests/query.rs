//! The query side with real clients: graphite-web (as a library) reading carbonlink and
//! carbonserver, carbonserver's formats checked independently of our encoders, and garbage
//! HTTP that must get errors while the server keeps serving.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use carbonlite::config::Config;
use carbonlite::engine::Carbon;
use carbonlite::parse::pickle::{Limits, Pickle, Value};
use carbonlite::points::unix_now;

const SCHEMAS: &str = "[everything]\npattern = .*\nretentions = 60s:1d,5m:7d\n";

fn open(dir: &Path, extra: &str) -> Carbon {
    let schemas = dir.join("storage-schemas.conf");
    std::fs::write(&schemas, SCHEMAS).unwrap();
    let toml = format!(
        "[whisper]\nworkers = 1\nschemas-file = {:?}\n{extra}\n\
         [carbonserver]\nenabled = true\nlisten = \"127.0.0.1:0\"\nread-timeout = \"3s\"\n\
         [carbonlink]\nenabled = true\nlisten = \"127.0.0.1:0\"\n",
        schemas.display().to_string()
    );
    let data = dir.join("data");
    let c = Config::embedded(&data).apply_toml(&toml, "<test>").unwrap();
    Carbon::open(c).unwrap()
}

fn python(args: &[&str], c: &Carbon, tmp: &Path) -> serde_json::Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/py/query_graphite_web.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .env("QUERY_TMP", tmp)
        .env("QUERY_CARBONLINK", c.carbonlink_addr().unwrap().to_string())
        .env(
            "QUERY_CARBONSERVER",
            c.carbonserver_addr().unwrap().to_string(),
        )
        .output()
        .expect("python3 must be installed");
    assert!(
        out.status.success(),
        "graphite-web client failed (needs `pip install graphite-web whisper==1.1.10`, see \
         scripts/install-test-deps):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap()
}

/// One HTTP exchange on a fresh connection: (status, body).
fn http(addr: SocketAddr, raw: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw).unwrap();
    read_response(&mut s)
}

fn read_response(s: &mut TcpStream) -> (u16, Vec<u8>) {
    read_next(s, &mut Vec::new())
}

/// Reads one response; bytes of the next (pipelined) one stay in `buf`.
fn read_next(s: &mut TcpStream, buf: &mut Vec<u8>) -> (u16, Vec<u8>) {
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    (status, body)
}

fn get(addr: SocketAddr, target: &str) -> (u16, Vec<u8>) {
    http(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

/// Writes 2 hours of one-a-minute points for `names` and flushes them to disk.
fn fill(c: &Carbon, names: &[&str], now: i64) {
    for (k, n) in names.iter().enumerate() {
        for i in 0..120 {
            let ts = now - 7200 + i * 60;
            c.add(n, (k * 1000) as f64 + i as f64 * 0.5, ts).unwrap();
        }
    }
    c.flush().unwrap();
}

#[test]
fn graphite_web_remote_finder_equals_whisper() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), "");
    let now = unix_now();
    let names = ["q.m0.cpu", "q.m1.cpu", "q.m2.cpu", "q.m2.mem", "q.other"];
    fill(&c, &names, now);
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let (from, until, nows) = (
        (now - 3600).to_string(),
        (now - 60).to_string(),
        now.to_string(),
    );
    let out = python(
        &["remote", d, "q.*.cpu", &from, &until, &nows],
        &c,
        dir.path(),
    );
    let found: Vec<(String, bool)> = serde_json::from_value(out["found"].clone()).unwrap();
    assert_eq!(
        found,
        [
            ("q.m0.cpu".to_string(), true),
            ("q.m1.cpu".to_string(), true),
            ("q.m2.cpu".to_string(), true)
        ]
    );
    let series = out["series"].as_array().unwrap();
    assert_eq!(series.len(), 3, "{out}");
    for s in series {
        assert!(s["known"].as_u64().unwrap() >= 55, "{s}");
    }
    // A branch level: directories are branches, only leaves are rendered.
    let out = python(&["remote", d, "q.*", &from, &until, &nows], &c, dir.path());
    let found: Vec<(String, bool)> = serde_json::from_value(out["found"].clone()).unwrap();
    assert_eq!(
        found,
        [
            ("q.m0".to_string(), false),
            ("q.m1".to_string(), false),
            ("q.m2".to_string(), false),
            ("q.other".to_string(), true)
        ]
    );
    assert_eq!(out["series"].as_array().unwrap().len(), 1);
    // Older than the first archive: graphite-web gets the 5-minute archive, as whisper does.
    let old = (now - 2 * 86400).to_string();
    let out = python(
        &["remote", d, "q.m2.{cpu,mem}", &old, &until, &nows],
        &c,
        dir.path(),
    );
    let series = out["series"].as_array().unwrap();
    assert_eq!(series.len(), 2, "{out}");
    assert_eq!(series[0]["time_info"][2], 300);
}

#[test]
fn graphite_web_carbonlink_reads_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    // Cache-only node: nothing is ever written, so every point stays queryable.
    let c = open(dir.path(), "enabled = false");
    let now = unix_now();
    c.add("cl.a", 1.5, now - 120).unwrap();
    c.add("cl.a", 2.5, now - 60).unwrap();
    c.add("cl.a", 3.5, now - 60).unwrap(); // newest write wins, as in carbon's dict
    c.add("cl.b", -7.0, now).unwrap();
    let out = python(&["carbonlink", "cl.a", "cl.b", "cl.none"], &c, dir.path());
    let want_a = serde_json::json!([[now - 120, 1.5], [now - 60, 3.5]]);
    let want_b = serde_json::json!([[now, -7.0]]);
    assert_eq!(out["query"]["cl.a"], want_a, "{out}");
    assert_eq!(out["query"]["cl.b"], want_b);
    assert_eq!(out["query"]["cl.none"], serde_json::json!([]));
    assert_eq!(out["bulk"]["cl.a"], want_a);
    assert_eq!(out["bulk"]["cl.none"], serde_json::json!([]));
    assert_eq!(out["metadata"]["cl.a"], "average");
    assert!(
        out["metadata"]["cl.none"]
            .as_str()
            .unwrap()
            .starts_with("error: not found"),
        "{out}"
    );
    assert_eq!(
        out["unknown"]["error"], "Invalid request type \"set-color\"",
        "{out}"
    );
    assert!(out["no_type"]["error"].is_string());
    assert!(out["not_a_dict"]["error"].is_string());
    // A find sees cache-only metrics, and render lays the cache over an empty window.
    let addr = c.carbonserver_addr().unwrap();
    let (code, body) = get(addr, "/metrics/find/?query=cl.*");
    assert_eq!(code, 200);
    let j = json(&body);
    let paths: Vec<&str> = j["metrics"][0]["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["cl.a", "cl.b"]);
    let (code, body) = get(
        addr,
        &format!("/render/?target=cl.a&from={}&until={now}", now - 600),
    );
    assert_eq!(code, 200);
    let j = json(&body);
    let m = &j["metrics"][0];
    let vals = m["values"].as_array().unwrap();
    let absent = m["isAbsent"].as_array().unwrap();
    let start = m["startTime"].as_i64().unwrap();
    let i = ((now - 60 - (now - 60).rem_euclid(60)) - start) / 60;
    assert_eq!(vals[i as usize], 3.5);
    assert_eq!(absent[i as usize], false);
    assert_eq!(absent.iter().filter(|a| *a == false).count(), 2);
}

/// Minimal protobuf wire reader, independent of prost: (field, wire type, payload).
fn pb_fields(mut b: &[u8]) -> Vec<(u64, u8, Vec<u8>)> {
    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = b[0];
            *b = &b[1..];
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        v
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b);
        let (field, wt) = (key >> 3, (key & 7) as u8);
        let payload = match wt {
            0 => varint(&mut b).to_le_bytes().to_vec(),
            1 => {
                let (p, rest) = b.split_at(8);
                b = rest;
                p.to_vec()
            }
            2 => {
                let n = varint(&mut b) as usize;
                let (p, rest) = b.split_at(n);
                b = rest;
                p.to_vec()
            }
            5 => {
                let (p, rest) = b.split_at(4);
                b = rest;
                p.to_vec()
            }
            _ => panic!("wire type {wt}"),
        };
        out.push((field, wt, payload));
    }
    out
}

#[test]
fn carbonserver_formats_agree_with_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), "");
    let now = unix_now();
    fill(&c, &["f.a", "f.b"], now);
    let addr = c.carbonserver_addr().unwrap();
    let from = now - 3600;
    let want = c.fetch_at("f.a", from, Some(now), now).unwrap();
    let q = format!("target=f.a&from={from}&until={now}&now={now}");

    // JSON: go-carbon's v2 shape.
    let (code, body) = get(addr, &format!("/render/?{q}&format=json"));
    assert_eq!(code, 200);
    let j = json(&body);
    let m = &j["metrics"][0];
    assert_eq!(m["name"], "f.a");
    assert_eq!(m["startTime"], want.from);
    assert_eq!(m["stepTime"], want.step);
    let vals: Vec<f64> = serde_json::from_value(m["values"].clone()).unwrap();
    let absent: Vec<bool> = serde_json::from_value(m["isAbsent"].clone()).unwrap();
    for (i, w) in want.values.iter().enumerate() {
        assert_eq!(absent[i], w.is_nan(), "{i}");
        if !w.is_nan() {
            assert_eq!(vals[i], *w);
        }
    }

    // Pickle: graphite-web's reader shape, read back with the safe unpickler.
    let (code, body) = get(addr, &format!("/render/?{q}&format=pickle"));
    assert_eq!(code, 200);
    let p = Pickle::load(&body, &Limits::default()).unwrap();
    let Value::List(list) = p.root() else {
        panic!("not a list")
    };
    let Some(Value::Dict(d)) = list.get(0) else {
        panic!("not a dict")
    };
    assert_eq!(d.get_str("name").unwrap().as_text(), Some("f.a"));
    assert_eq!(d.get_str("pathExpression").unwrap().as_text(), Some("f.a"));
    assert_eq!(d.get_str("step").unwrap().as_f64(), Some(60.0));
    assert_eq!(
        d.get_str("consolidationFunc").unwrap().as_text(),
        Some("average")
    );
    let pv = d.get_str("values").unwrap().as_seq().unwrap();
    assert_eq!(pv.len(), want.values.len());
    for (v, w) in pv.iter().zip(&want.values) {
        match v {
            Value::None => assert!(w.is_nan()),
            v => assert_eq!(v.as_f64(), Some(*w)),
        }
    }

    // carbonapi_v2_pb, decoded by hand: MultiFetchResponse{1: FetchResponse{…}}.
    let (code, body) = get(addr, &format!("/render/?{q}&format=protobuf"));
    assert_eq!(code, 200);
    let outer = pb_fields(&body);
    assert_eq!(outer.len(), 1);
    let inner = pb_fields(&outer[0].2);
    let name = inner.iter().find(|f| f.0 == 1).unwrap();
    assert_eq!(name.2, b"f.a");
    let start = inner.iter().find(|f| f.0 == 2).unwrap();
    assert_eq!(
        u64::from_le_bytes(start.2[..8].try_into().unwrap()),
        want.from as u64
    );
    let packed = &inner.iter().find(|f| f.0 == 5).unwrap().2;
    let pb_vals: Vec<f64> = packed
        .chunks(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(pb_vals.len(), want.values.len());

    // carbonapi_v3_pb via Accept: NaN gaps, pathExpression carried.
    let (code, body) = http(
        addr,
        format!(
            "GET /render/?target=f.*&from={from}&until={now}&now={now} HTTP/1.1\r\n\
             Accept: application/x-carbonapi-v3-pb\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(code, 200);
    let series = pb_fields(&body);
    assert_eq!(series.len(), 2);
    let f = pb_fields(&series[0].2);
    assert_eq!(f.iter().find(|f| f.0 == 2).unwrap().2, b"f.*");
    let v3: Vec<f64> = f
        .iter()
        .find(|f| f.0 == 9)
        .unwrap()
        .2
        .chunks(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        v3.iter().filter(|v| v.is_nan()).count(),
        want.values.iter().filter(|v| v.is_nan()).count()
    );

    // find: json, pickle, v2 protobuf.
    let (_, body) = get(addr, "/metrics/find/?query=f.*");
    assert_eq!(
        json(&body),
        serde_json::json!({"metrics":[{"name":"f.*","matches":[
            {"path":"f.a","isLeaf":true},{"path":"f.b","isLeaf":true}]}]})
    );
    let (_, body) = get(addr, "/metrics/find/?query=*&format=pickle");
    let p = Pickle::load(&body, &Limits::default()).unwrap();
    let Value::List(list) = p.root() else {
        panic!()
    };
    let Some(Value::Dict(d)) = list.get(0) else {
        panic!()
    };
    assert_eq!(d.get_str("metric_path").unwrap().as_text(), Some("f"));
    assert!(matches!(d.get_str("isLeaf"), Some(Value::Bool(false))));
    let (code, body) = get(addr, "/metrics/find/?query=f.b&format=protobuf");
    assert_eq!(code, 200);
    let g = pb_fields(&body);
    assert_eq!(g[0].2, b"f.b");
    assert_eq!(pb_fields(&g[1].2)[0].2, b"f.b");
    assert_eq!(get(addr, "/metrics/find/?query=zz&format=protobuf").0, 404);

    // info: protojson shape, int64 as strings.
    let (code, body) = get(addr, "/info/?target=f.a");
    assert_eq!(code, 200);
    let j = json(&body);
    assert_eq!(j["metrics"][0]["consolidationFunc"], "Average");
    assert_eq!(j["metrics"][0]["maxRetention"], (7 * 86400).to_string());
    assert_eq!(j["metrics"][0]["retentions"][0]["secondsPerPoint"], "60");
    assert_eq!(get(addr, "/info/?target=f.zz").0, 404);
    assert_eq!(get(addr, "/info/?target=f.a&format=pickle").0, 400);

    // Nothing matched: go-carbon's 404.
    assert_eq!(
        get(
            addr,
            &format!("/render/?target=nope&from={from}&until={now}")
        )
        .0,
        404
    );
}

#[test]
fn garbage_http_gets_errors_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), "");
    let now = unix_now();
    fill(&c, &["g.a"], now);
    let addr = c.carbonserver_addr().unwrap();
    let ok = format!("/render/?target=g.a&from={}&until={now}", now - 600);
    let huge_glob = format!("/metrics/find/?query={}", "a".repeat(20_000));
    let brace_bomb = format!(
        "/metrics/find/?query={{{}}}",
        (0..500)
            .map(|i| format!("x.{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let long_header = format!("GET / HTTP/1.1\r\nX-Junk: {}\r\n\r\n", "j".repeat(100_000));
    let cases: Vec<(Vec<u8>, u16)> =
        vec![
        (b"garbage\r\n\r\n".to_vec(), 400),
        (b"GET /render/ HTTP/9.9\r\n\r\n".to_vec(), 505),
        (b"BREW /render/ HTTP/1.1\r\n\r\n".to_vec(), 405),
        (b"GET render HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET /metrics/find/?query=%zz HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET /metrics/find/?query=%C3%28 HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET /\xff\xfe HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET /x HTTP/1.1\r\nno colon here\r\n\r\n".to_vec(), 400),
        (b"POST /render/ HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n".to_vec(), 413),
        (b"POST /render/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n".to_vec(), 400),
        (b"POST /render/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), 501),
        (long_header.into_bytes(), 431),
        (format!("GET {huge_glob} HTTP/1.1\r\n\r\n").into_bytes(), 400),
        (format!("GET {brace_bomb} HTTP/1.1\r\n\r\n").into_bytes(), 400),
        (
            format!(
                "GET /metrics/find/?query={}x{} HTTP/1.1\r\n\r\n",
                "%7B".repeat(5000),
                "%7D".repeat(5000)
            )
            .into_bytes(),
            400,
        ),
        (b"GET /no/such/path HTTP/1.1\r\n\r\n".to_vec(), 404),
        (b"GET /render/?target=g.a&format=xml&from=1&until=2 HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET /render/?target=g.a HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET /render/?target=g.a&from=x&until=1 HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET /render/?from=1&until=2 HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET /metrics/find/ HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET /metrics/find/?query=a..b HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET /metrics/find/?query=../../etc HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET /metrics/find/?query=a/b HTTP/1.1\r\n\r\n".to_vec(), 400),
        (
            b"POST /render/?format=carbonapi_v3_pb HTTP/1.1\r\nContent-Length: 3\r\n\r\n\x0a\x09a"
                .to_vec(),
            400,
        ),
    ];
    for (raw, want) in &cases {
        let (code, _) = http(addr, raw);
        assert_eq!(
            code,
            *want,
            "{}",
            String::from_utf8_lossy(&raw[..raw.len().min(80)])
        );
        assert_eq!(
            get(addr, &ok).0,
            200,
            "after {:?}",
            &raw[..raw.len().min(40)]
        );
    }
    // Half a request, a dropped connection and binary junk: no answer owed, nothing breaks.
    for junk in [
        &b"GET /render/?tar"[..],
        &[0u8, 1, 2, 255, 254, 10, 13, 10, 13][..],
    ] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(junk).unwrap();
        drop(s);
    }
    // Keep-alive and pipelining: two requests in one write, two answers in order.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        format!("GET {ok} HTTP/1.1\r\n\r\nGET /metrics/find/?query=g.* HTTP/1.1\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_next(&mut s, &mut buf).0, 200);
    let (code, body) = read_next(&mut s, &mut buf);
    assert_eq!(
        (
            code,
            json(&body)["metrics"][0]["matches"][0]["path"].clone()
        ),
        (200, "g.a".into())
    );
    // Many idle connections do not starve a real one.
    let idle: Vec<TcpStream> = (0..50).map(|_| TcpStream::connect(addr).unwrap()).collect();
    assert_eq!(get(addr, &ok).0, 200);
    drop(idle);
    // A stalled request is cut off by read-timeout (3 s here) with 408.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /render/?target=g.a HTTP/1.1\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).0, 408);
    assert_eq!(get(addr, &ok).0, 200);
    c.close();
}
