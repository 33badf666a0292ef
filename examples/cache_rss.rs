//! Peak memory per cached point: RSS growth / points held with 1M points (100k metrics x 10
//! points, W2's names) in the cache, persister off. Prints one JSON line.
//! `cargo run --release --example cache_rss`.

use carbonlite::config::Config;
use carbonlite::engine::Carbon;

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("carbonlite-rss-{}", std::process::id()));
    let cfg = Config::embedded(&dir).apply_toml(
        "[whisper]\nenabled = false\n[cache]\nmax-size = 0\n[common]\nmetric-interval = \"0\"\n",
        "<rss>",
    )?;
    let c = Carbon::open(cfg)?;
    let (metrics, points) = (100_000usize, 10i64);
    let before = rss_kib("VmRSS:");
    let base = 1_700_000_000i64;
    let mut buf = String::new();
    for p in 0..points {
        buf.clear();
        for m in 0..metrics {
            buf.push_str(&format!(
                "bench.host{}.cpu{}.value {} {}\n",
                m % 100,
                m / 100,
                m,
                base + p * 10
            ));
        }
        let r = c.add_lines(buf.as_bytes());
        assert_eq!(r.accepted, metrics as u64);
    }
    drop(buf);
    let after = rss_kib("VmRSS:");
    let held = c.stats().cache_size;
    println!(
        "{{\"points\": {held}, \"metrics\": {metrics}, \"rss_growth_kib\": {}, \"bytes_per_point\": {:.1}, \"peak_rss_kib\": {}}}",
        after - before,
        (after - before) as f64 * 1024.0 / held as f64,
        rss_kib("VmHWM:")
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
