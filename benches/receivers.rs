//! Pickle ingest vs plaintext ingest, same machine, same run. `cargo bench --bench receivers`.
//!
//! - `parse/*`: bytes → points only (`plain::for_each_line` vs `pickle::for_each_point`), 10k
//!   points, pickles as carbon-relay sends them (protocol 2, 500 points per frame).
//! - `socket/*`: a node with the persister off; one client sends 100k points over loopback to
//!   `[tcp]` or `[pickle]`, timed until the cache has counted them all.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use carbonlite::config::Config;
use carbonlite::engine::Carbon;
use carbonlite::parse::pickle::{Limits, PyObject, dumps, for_each_point, frame};
use carbonlite::parse::plain;

const BASE: i64 = 1_700_000_000;

fn name(m: usize) -> String {
    format!("bench.host{}.cpu{}.value", m % 100, m / 100)
}

fn plain_lines(n: usize, round: i64) -> Vec<u8> {
    (0..n)
        .map(|m| format!("{} {}.5 {}\n", name(m), m, BASE + round * 60))
        .collect::<String>()
        .into_bytes()
}

/// carbon-relay's frames: `pickle.dumps(list_of_500, protocol=2)` with a length prefix.
fn pickle_frames(n: usize, round: i64) -> Vec<Vec<u8>> {
    (0..n)
        .collect::<Vec<_>>()
        .chunks(500)
        .map(|ms| {
            let list = ms
                .iter()
                .map(|&m| {
                    PyObject::Tuple(vec![
                        PyObject::Str(name(m)),
                        PyObject::Tuple(vec![
                            PyObject::Int(BASE + round * 60),
                            PyObject::Float(m as f64 + 0.5),
                        ]),
                    ])
                })
                .collect();
            frame(&dumps(&PyObject::List(list), 2)).unwrap()
        })
        .collect()
}

fn parse(c: &mut Criterion) {
    const N: usize = 10_000;
    let lines = plain_lines(N, 0);
    let frames = pickle_frames(N, 0);
    let limits = Limits::default();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("plaintext", |b| {
        b.iter(|| {
            let (a, _) = plain::for_each_line(&lines, BASE, |_, _| {}, |_| {});
            assert_eq!(a as usize, N);
        })
    });
    g.bench_function("pickle", |b| {
        b.iter(|| {
            let mut total = 0;
            for f in &frames {
                let (a, _) = for_each_point(&f[4..], BASE, &limits, |_, _| {}, |_| {}).unwrap();
                total += a;
            }
            assert_eq!(total as usize, N);
        })
    });
    g.finish();
}

fn socket(c: &mut Criterion) {
    const N: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::embedded(dir.path())
        .apply_toml(
            "[whisper]\nenabled = false\n[cache]\nmax-size = 0\n[common]\nmetric-interval = \"0\"\n\
             [tcp]\nenabled = true\nlisten = \"127.0.0.1:0\"\n\
             [pickle]\nenabled = true\nlisten = \"127.0.0.1:0\"\n",
            "<bench>",
        )
        .unwrap();
    let node = Carbon::open(cfg).unwrap();
    let rounds = 8i64;
    let lines: Vec<Vec<u8>> = (0..rounds).map(|r| plain_lines(N, r)).collect();
    let frames: Vec<Vec<u8>> = (0..rounds)
        .map(|r| pickle_frames(N, r + rounds).concat())
        .collect();
    let mut g = c.benchmark_group("socket");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    let wait = |target: u64| {
        while node.stats().metrics_received < target {
            std::thread::sleep(Duration::from_micros(200));
        }
    };
    let mut k = 0usize;
    g.bench_function("plaintext_tcp", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let target = node.stats().metrics_received + N as u64;
                let start = Instant::now();
                let mut s = TcpStream::connect(node.tcp_addr().unwrap()).unwrap();
                s.write_all(&lines[k % lines.len()]).unwrap();
                drop(s);
                wait(target);
                total += start.elapsed();
                k += 1;
            }
            total
        })
    });
    g.bench_function("pickle", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let target = node.stats().metrics_received + N as u64;
                let start = Instant::now();
                let mut s = TcpStream::connect(node.pickle_addr().unwrap()).unwrap();
                s.write_all(&frames[k % frames.len()]).unwrap();
                drop(s);
                wait(target);
                total += start.elapsed();
                k += 1;
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, parse, socket);
criterion_main!(benches);
