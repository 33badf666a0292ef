//! Builds the C programs in examples-c/ with the system `cc` against include/carbonlite.h
//! and the libraries cargo just built (shared and static), runs them, and cross-checks the
//! whisper files they leave with python whisper.

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
    let lib = lib_dir();
    let exe = out.join(format!(
        "{name}-{}",
        if shared { "shared" } else { "static" }
    ));
    let mut cmd = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g"])
        .arg(format!("-I{}", root().join("include").display()))
        .arg(root().join(format!("examples-c/{name}.c")))
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
