//! Builds the C programs in examples-c/ with the system `cc` against include/carbonlite.h
//! and the libraries cargo just built (shared and static), runs them (also under valgrind),
//! and cross-checks the whisper files they leave with python whisper.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/<profile>/deps`, where `cargo test` leaves libcarbonlite.so and .a.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    for dir in [deps.clone(), deps.parent().unwrap().to_path_buf()] {
        if dir.join("libcarbonlite.so").exists() && dir.join("libcarbonlite.a").exists() {
            return dir;
        }
    }
    panic!("libcarbonlite.so/.a not found next to {}", exe.display());
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Compiles `examples-c/<name>.c` into `out`, linked shared or static.
fn build(name: &str, out: &Path, shared: bool) -> PathBuf {
    build_source(&format!("examples-c/{name}.c"), out, shared)
}

/// Compiles the C file at `source` (relative to the project root) into `out`.
fn build_source(source: &str, out: &Path, shared: bool) -> PathBuf {
    let name = Path::new(source).file_stem().unwrap().to_str().unwrap();
    let lib = lib_dir();
    let exe = out.join(format!(
        "{name}-{}",
        if shared { "shared" } else { "static" }
    ));
    let mut cmd = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g"])
        .arg(format!("-I{}", root().join("include").display()))
        .arg(root().join(source))
        .arg("-o")
        .arg(&exe);
    if shared {
        cmd.arg(format!("-L{}", lib.display()))
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            .arg("-lcarbonlite");
    } else {
        cmd.arg(lib.join("libcarbonlite.a"));
    }
    // What `--print native-static-libs` lists for a Rust staticlib on Linux.
    cmd.args(["-lm", "-lpthread", "-ldl", "-lgcc_s", "-lc"]);
    let st = cmd
        .status()
        .expect("the system C compiler `cc` must be installed");
    assert!(st.success(), "compiling {name}.c failed: {cmd:?}");
    exe
}

#[test]
fn pipeline_check_shared_and_static() {
    let tmp = tempfile::tempdir().unwrap();
    for shared in [true, false] {
        let exe = build("pipeline_check", tmp.path(), shared);
        let data = tmp
            .path()
            .join(if shared { "data-shared" } else { "data-static" });
        let out = Command::new(&exe).arg(&data).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{} failed:\n{stdout}\n{}",
            exe.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let base = stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix("base="))
            .expect("pipeline_check prints base=");
        let py = Command::new("python3")
            .arg(root().join("tests/py/check_pipeline_files.py"))
            .arg(&data)
            .arg(base)
            .output()
            .unwrap();
        assert!(
            py.status.success(),
            "python whisper cross-check failed (pip install whisper==1.1.10):\n{}{}",
            String::from_utf8_lossy(&py.stdout),
            String::from_utf8_lossy(&py.stderr)
        );
    }
}

/// examples-c/threads_check.c: 8 threads adding while 2 fetch and 1 flushes, on one handle;
/// afterwards every point is in its file, received once and written once.
#[test]
fn threads_check_shared_and_static() {
    let tmp = tempfile::tempdir().unwrap();
    for shared in [true, false] {
        let exe = build("threads_check", tmp.path(), shared);
        let data = tmp.path().join(format!("data-{shared}"));
        let out = Command::new(&exe).arg(&data).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.starts_with("ok: 8000 points"),
            "{} failed:\n{stdout}\n{}",
            exe.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The C programs again under valgrind's memcheck, which sees the library's own memory
/// accesses too (it is not compiled for a sanitizer): no invalid read or write, no use of
/// uninitialised memory, no definite leak once `carbon_close` returns. Fewer points for the
/// threaded check, which valgrind runs one thread at a time.
#[test]
fn c_programs_under_valgrind() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, args) in [("pipeline_check", &[][..]), ("threads_check", &["4"][..])] {
        let exe = build(name, tmp.path(), true);
        let out = Command::new("valgrind")
            .args(["-q", "--error-exitcode=99", "--leak-check=full"])
            .args([
                "--errors-for-leak-kinds=definite",
                "--show-leak-kinds=definite",
            ])
            .arg(&exe)
            .arg(tmp.path().join(format!("data-{name}")))
            .args(args)
            .output()
            .expect("valgrind must be installed (scripts/install-test-deps)");
        assert!(
            out.status.success(),
            "{name} under valgrind: {:?}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// bench/w1_embedded.c, the embedded W1 runner, on a small W1-shaped workload: every line
/// accepted and written, one file per metric, and a bad line makes it fail loudly.
#[test]
fn w1_bench_runner_writes_every_line() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = build_source("bench/w1_embedded.c", tmp.path(), true);
    let schemas = tmp.path().join("storage-schemas.conf");
    std::fs::write(&schemas, "[w1]\npattern = .*\nretentions = 10s:1d,1m:30d\n").unwrap();
    let aggregation = tmp.path().join("storage-aggregation.conf");
    std::fs::write(
        &aggregation,
        "[w1]\npattern = .*\nxFilesFactor = 0.5\naggregationMethod = average\n",
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let first = now / 10 * 10 - 50;
    let mut lines = String::new();
    for i in 0..6 {
        for m in 0..50 {
            let v = (m * 7 + i * 13) % 10000;
            lines += &format!(
                "bench.host{}.cpu{}.value {}.{} {}\n",
                m / 10,
                m % 10,
                v / 10,
                v % 10,
                first + i * 10
            );
        }
    }
    let run = |text: &str, data: &str| {
        let file = tmp.path().join(format!("{data}.lines"));
        std::fs::write(&file, text).unwrap();
        Command::new(&exe)
            .arg(&file)
            .arg(tmp.path().join(data))
            .arg(&schemas)
            .arg(&aggregation)
            .arg("true")
            .output()
            .unwrap()
    };
    let out = run(&lines, "good");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for field in [
        "\"lines\": 300,",
        "\"accepted\": 300,",
        "\"created\": 50,",
        "\"committed\": 300,",
    ] {
        assert!(stdout.contains(field), "{field} not in {stdout}");
    }
    let files = walk_count(&tmp.path().join("good"));
    assert_eq!(files, 50);
    let bad = run(&(lines.clone() + "bench.bad nan 1\n"), "bad");
    assert!(!bad.status.success(), "a rejected line must fail the run");
}

fn walk_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            if p.is_dir() {
                walk_count(&p)
            } else {
                usize::from(p.extension().is_some_and(|x| x == "wsp"))
            }
        })
        .sum()
}
