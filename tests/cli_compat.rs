//! `carbonlite-whisper <cmd>` against whisper 1.1.10's own scripts: same files, same
//! arguments, stdout compared byte for byte together with the exit code (and stderr where
//! the script's message is fixed text). Files made by either side are compared byte for byte.
//!
//! The scripts read the real clock and cannot be given "now", so every comparison runs the
//! script, checks the clock did not tick meanwhile, and runs carbonlite with that second as
//! `CARBONLITE_NOW`; test data is laid out relative to the real clock.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_carbonlite-whisper");
const INSTALL_HINT: &str = "python whisper is required: pip install whisper==1.1.10";

fn clock() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The python interpreter that has whisper, and the directory holding its scripts (asked
/// from python itself, so pyenv shims are bypassed). Fails, never skips, when missing.
fn python() -> &'static (PathBuf, PathBuf) {
    static PY: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    PY.get_or_init(|| {
        let code = "import sys, sysconfig, whisper; print(sys.executable); print(sysconfig.get_path('scripts'))";
        let out = Command::new("python3").args(["-c", code]).output();
        let out = match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            Ok(o) => panic!("{INSTALL_HINT} ({})", String::from_utf8_lossy(&o.stderr).trim()),
            Err(e) => panic!("{INSTALL_HINT} (python3: {e})"),
        };
        let mut lines = out.lines();
        let exe = PathBuf::from(lines.next().unwrap_or_default());
        let scripts = PathBuf::from(lines.next().unwrap_or_default());
        (exe, scripts)
    })
}

/// The installed script `whisper-<name>.py`.
fn script(name: &str) -> PathBuf {
    let path = python().1.join(format!("whisper-{name}.py"));
    assert!(
        path.is_file(),
        "{} not found; {INSTALL_HINT}",
        path.display()
    );
    path
}

/// A command running the python interpreter that has whisper.
fn python3() -> Command {
    Command::new(&python().0)
}

/// One run's observable result.
#[derive(Debug, PartialEq)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Our usage text names `carbonlite-whisper <cmd>` where the script says `whisper-<cmd>.py`;
/// everything else must be identical (the link test checks the names too).
fn ours(run: Run, name: &str) -> Run {
    let (from, to) = (
        format!("carbonlite-whisper {name}"),
        format!("whisper-{name}.py"),
    );
    Run {
        code: run.code,
        stdout: run.stdout.replace(&from, &to),
        stderr: run.stderr.replace(&from, &to),
    }
}

fn finish(out: Output) -> Run {
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn exec(mut cmd: Command, stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    {
        use std::io::Write;
        let mut pipe = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            pipe.write_all(text.as_bytes()).unwrap();
        }
    }
    finish(child.wait_with_output().unwrap())
}

/// Runs the python script, then carbonlite with the same arguments and the same second as
/// "now"; `before` prepares fresh inputs for each side (e.g. copies a file). Returns both runs.
fn both(
    name: &str,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
    mut before: impl FnMut(Side),
) -> (Run, Run, i64) {
    let py = script(name);
    for _ in 0..10 {
        before(Side::Python);
        let t0 = clock();
        let mut cmd = python3();
        cmd.arg(&py).args(args);
        let p = exec(cmd, stdin, env);
        if clock() != t0 {
            continue; // the second changed under the script; try again
        }
        before(Side::Carbonlite);
        let mut cmd = Command::new(BIN);
        cmd.arg(name).args(args);
        let now = t0.to_string();
        let mut env = env.to_vec();
        env.push(("CARBONLITE_NOW", &now));
        let c = ours(exec(cmd, stdin, &env), name);
        return (p, c, t0);
    }
    panic!("clock kept ticking during {name} runs");
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Side {
    Python,
    Carbonlite,
}

/// Asserts the two runs printed the same stdout and exited alike.
fn assert_same(what: &str, p: &Run, c: &Run) {
    assert_eq!(
        p.stdout, c.stdout,
        "{what}: stdout differs (python stderr: {})",
        p.stderr
    );
    assert_eq!(
        p.code, c.code,
        "{what}: exit code differs (python stderr: {}, ours: {})",
        p.stderr, c.stderr
    );
}

/// Compares one command on files that neither side modifies.
fn compare(what: &str, name: &str, args: &[&str], env: &[(&str, &str)]) -> (Run, Run) {
    let (p, c, _) = both(name, args, None, env, |_| {});
    assert_same(what, &p, &c);
    (p, c)
}

/// Builds a whisper file with python whisper (tests/py/cli_make.py).
fn make(
    path: &Path,
    archives: &[(u32, u32)],
    xff: f64,
    method: &str,
    now: i64,
    points: &[(i64, f64)],
) {
    let pts: Vec<String> = points
        .iter()
        .map(|(t, v)| {
            let v = if v.is_infinite() {
                format!("\"{}inf\"", if *v < 0.0 { "-" } else { "" })
            } else {
                format!("{v:?}")
            };
            format!("[{t}, {v}]")
        })
        .collect();
    let arcs: Vec<String> = archives
        .iter()
        .map(|(s, p)| format!("[{s}, {p}]"))
        .collect();
    let spec = format!(
        r#"{{"path": {:?}, "archives": [{}], "xff": {xff:?}, "method": "{method}", "now": {now}, "points": [{}]}}"#,
        path.to_str().unwrap(),
        arcs.join(", "),
        pts.join(", ")
    );
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/cli_make.py");
    let out = python3().arg(helper).arg(&spec).output().expect("python3");
    assert!(
        out.status.success(),
        "{INSTALL_HINT}\ncli_make.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A two-archive file (1 min for a day, 1 h for a week) with varied values and gaps, laid
/// out relative to `now`.
fn sample(dir: &Path, name: &str, now: i64) -> PathBuf {
    let path = dir.join(name);
    let values = [
        1.0,
        0.5,
        0.0,
        -3.25,
        1e20,
        1.0 / 3.0,
        123_456.789,
        0.0,
        2.0,
        1e-7,
        f64::INFINITY,
        42.0,
    ];
    let mut points = Vec::new();
    for (i, v) in values.iter().enumerate() {
        points.push((now - 60 * (i as i64 * 3 + 1), *v)); // every third minute: gaps between
    }
    for h in 2..30 {
        points.push((now - 3600 * h, h as f64 * 1.5));
    }
    make(
        &path,
        &[(60, 1440), (3600, 168)],
        0.5,
        "average",
        now,
        &points,
    );
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn info_matches_script() {
    let dir = tempfile::tempdir().unwrap();
    let f = sample(dir.path(), "a.wsp", clock());
    let odd = dir.path().join("odd.wsp");
    make(
        &odd,
        &[(10, 6), (60, 10), (600, 3)],
        0.1,
        "absmin",
        clock(),
        &[],
    );
    for file in [&f, &odd] {
        compare("info", "info", &[s(file)], &[]);
        compare("info --json", "info", &["--json", s(file)], &[]);
        compare("info --js (prefix)", "info", &[s(file), "--js"], &[]);
        for field in [
            "aggregationMethod",
            "maxRetention",
            "xFilesFactor",
            "archives",
            "fileSize",
            "nope",
        ] {
            compare(&format!("info {field}"), "info", &[s(file), field], &[]);
        }
    }
    let (_, c) = compare("info no args", "info", &[], &[]);
    assert_eq!(c.code, Some(1));
    // Unreadable files: same (empty) stdout and exit code 1 from every reader.
    let bad = dir.path().join("bad.wsp");
    std::fs::write(&bad, b"abc").unwrap();
    let missing = dir.path().join("missing.wsp");
    for file in [&bad, &missing] {
        for (name, args) in [
            ("info", vec![s(file)]),
            ("fetch", vec![s(file)]),
            ("dump", vec![s(file)]),
        ] {
            let (_, c) = compare(&format!("{name} on {}", file.display()), name, &args, &[]);
            assert_eq!(c.code, Some(1));
        }
    }
}

#[test]
fn fetch_matches_script() {
    let dir = tempfile::tempdir().unwrap();
    let now = clock();
    let f = sample(dir.path(), "a.wsp", now);
    let from = (now - 3600).to_string();
    let until = (now - 60).to_string();
    let old_from = (now - 5 * 86_400).to_string();
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--json"],
        vec!["--pretty"],
        vec!["--pretty", "-t", "%Y-%m-%d %H:%M:%S %Z %j %a"],
        vec!["--pretty", "--time-format=%c|%s|%z"],
        vec!["--drop=nulls"],
        vec!["--drop", "zeroes"],
        vec!["--drop=empty", "--json"],
        vec!["--from", &from],
        vec!["--from", &from, "--until", &until],
        vec!["--from", &old_from, "--json"],
        vec!["--from", &old_from, "--until", &from, "--drop=nulls"],
        vec!["--from=0x10", "--until", "100"], // beyond retention: "No data"
        vec!["--from", &until, "--until", &from], // from > until
        vec!["--from=abc"],
        vec!["--drop=bad"],
        vec!["--nope"],
    ];
    for extra in &cases {
        let mut args = extra.clone();
        args.push(s(&f));
        compare(&format!("fetch {extra:?}"), "fetch", &args, &[]);
    }
    for tz in [
        "UTC",
        "Europe/Paris",
        "America/New_York",
        "EST5EDT",
        "<+0330>-3:30",
    ] {
        compare(
            &format!("fetch --pretty TZ={tz}"),
            "fetch",
            &["--pretty", s(&f)],
            &[("TZ", tz)],
        );
    }
    // Positional count errors print help (exit 1) in the script.
    compare("fetch no path", "fetch", &[], &[]);
    compare("fetch two paths", "fetch", &[s(&f), s(&f)], &[]);
    let (p, c) = compare(
        "fetch missing file",
        "fetch",
        &[s(&dir.path().join("nope.wsp"))],
        &[],
    );
    assert_eq!(p.stderr, c.stderr);
}

#[test]
fn dump_matches_script() {
    let dir = tempfile::tempdir().unwrap();
    let f = sample(dir.path(), "a.wsp", clock());
    let small = dir.path().join("small.wsp");
    let now = clock();
    make(
        &small,
        &[(1, 5), (5, 4)],
        0.25,
        "max",
        now,
        &[(now - 1, 7.5), (now - 2, -0.1), (now - 3, 1e300)],
    );
    for file in [&small, &f] {
        compare("dump", "dump", &[s(file)], &[]);
        compare("dump --raw", "dump", &["-r", s(file)], &[]);
    }
    compare(
        "dump --pretty",
        "dump",
        &["--pretty", s(&small)],
        &[("TZ", "Asia/Kolkata")],
    );
    compare(
        "dump --pretty -t",
        "dump",
        &["--pretty", "-t%d/%m %H:%M", s(&small)],
        &[],
    );
    let (p, c) = compare(
        "dump missing",
        "dump",
        &[s(&dir.path().join("nope.wsp"))],
        &[],
    );
    assert_eq!(p.stderr, c.stderr);
    compare("dump no args", "dump", &[], &[]);
}

/// Runs create on both sides, each in its own directory with the same relative path (so the
/// printed path is identical), and compares stdout, exit code and the files' bytes.
fn compare_create(dir: &Path, args: &[&str], pre_existing: bool) {
    let pdir = dir.join("py");
    let cdir = dir.join("cl");
    let mut runs = Vec::new();
    for d in [&pdir, &cdir] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).unwrap();
        if pre_existing {
            std::fs::write(d.join("m.wsp"), b"old").unwrap();
        }
    }
    let mut cmd = python3();
    cmd.current_dir(&pdir).arg(script("create")).args(args);
    runs.push(exec(cmd, None, &[]));
    let mut cmd = Command::new(BIN);
    cmd.current_dir(&cdir).arg("create").args(args);
    runs.push(ours(exec(cmd, None, &[]), "create"));
    assert_same(&format!("create {args:?}"), &runs[0], &runs[1]);
    let pf = std::fs::read(pdir.join("m.wsp")).ok();
    let cf = std::fs::read(cdir.join("m.wsp")).ok();
    // On a bad --aggregationMethod/--xFilesFactor whisper.py leaves an empty file behind
    // (it opens the file before checking them); carbonlite checks first and leaves nothing.
    if runs[0].code == Some(0) {
        assert!(pf == cf, "create {args:?}: files differ");
        assert!(
            pf.is_some() != args.contains(&"--estimate"),
            "create {args:?}: file presence"
        );
        let sparse = |d: &Path| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(d.join("m.wsp")).unwrap().blocks()
        };
        if args.contains(&"--sparse") {
            assert!(
                sparse(&cdir) <= sparse(&pdir) + 8,
                "create --sparse allocated blocks"
            );
        }
    }
}

#[test]
fn create_matches_script() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    compare_create(d, &["m.wsp", "60:1440"], false);
    compare_create(d, &["m.wsp", "1m:1d", "1h:7d", "10s:6h"], false);
    compare_create(
        d,
        &[
            "m.wsp",
            "10s:6h",
            "--xFilesFactor=0.1",
            "--aggregationMethod",
            "avg_zero",
        ],
        false,
    );
    compare_create(d, &["--sparse", "m.wsp", "60:100000"], false);
    compare_create(d, &["--fallocate", "m.wsp", "5:1000", "15m:8"], false);
    compare_create(d, &["m.wsp", "60:1440"], true); // exists
    compare_create(d, &["--overwrite", "m.wsp", "60:1440"], true);
    compare_create(d, &["m.wsp", "60:1440", "--aggregationMethod=first"], false);
    compare_create(d, &["m.wsp", "60:1440", "--xFilesFactor=1.5"], false);
    compare_create(d, &["m.wsp", "60:1440", "60:100"], false); // same precision
    compare_create(d, &["m.wsp"], false); // help
    compare_create(d, &["--estimate", "1m:1d,1h:7d,1d:5y"], false);
    compare_create(d, &["--estimate", "10s:6h", "1m:7d", "10m:5y"], false);
    compare_create(d, &["--estimate"], false);
    compare_create(d, &["--xFilesFactor=x", "m.wsp", "60:10"], false);
}

#[test]
fn update_matches_script() {
    let dir = tempfile::tempdir().unwrap();
    let base_now = clock();
    let template = sample(dir.path(), "template.wsp", base_now);
    let target = dir.path().join("t.wsp");
    let run = |what: &str, args: &dyn Fn(i64) -> Vec<String>, stdin: Option<&str>| {
        // The arguments depend on "now"; build them from the second the script runs in.
        let py = script("update");
        for _ in 0..10 {
            std::fs::copy(&template, &target).unwrap();
            let t0 = clock();
            let a = args(t0);
            let mut cmd = python3();
            cmd.arg(&py).args(&a);
            let p = exec(cmd, stdin, &[]);
            if clock() != t0 {
                continue;
            }
            let pbytes = std::fs::read(&target).unwrap();
            std::fs::copy(&template, &target).unwrap();
            let mut cmd = Command::new(BIN);
            cmd.arg("update").args(&a);
            let c = ours(
                exec(cmd, stdin, &[("CARBONLITE_NOW", &t0.to_string())]),
                "update",
            );
            assert_same(what, &p, &c);
            assert!(
                pbytes == std::fs::read(&target).unwrap(),
                "{what}: files differ after update"
            );
            return;
        }
        panic!("clock kept ticking");
    };
    let t = s(&target).to_string();
    run(
        "single",
        &|now| vec![t.clone(), format!("{}:12.5", now - 30)],
        None,
    );
    run("N:", &|_| vec![t.clone(), "N:7".into()], None);
    run(
        "many",
        &|now| {
            vec![
                t.clone(),
                format!("{}:1", now - 90),
                format!("{}:2", now - 7200),
                format!("{}:3", now - 100_000),
            ]
        },
        None,
    );
    run(
        "many incl. dropped",
        &|now| {
            vec![
                t.clone(),
                format!("{}:1", now - 90),
                format!("{}:9", now - 9_999_999),
            ]
        },
        None,
    );
    run(
        "stdin",
        &|_| vec![t.clone()],
        Some(&format!(
            "{}:4\n{}:5\nN:6\n",
            base_now - 120,
            base_now - 180
        )),
    );
    run(
        "not covered",
        &|now| vec![t.clone(), format!("{}:1", now - 9_999_999)],
        None,
    );
    run(
        "future",
        &|now| vec![t.clone(), format!("{}:1", now + 100)],
        None,
    );
    run(
        "bad value",
        &|now| vec![t.clone(), format!("{}:x", now)],
        None,
    );
    run("no args", &|_| vec![], None);
    run("empty stdin", &|_| vec![t.clone()], Some(""));
    run("blank stdin line", &|_| vec![t.clone()], Some("1:2\n\n"));
    run(
        "missing file",
        &|now| vec![format!("{t}.none"), format!("{now}:1")],
        None,
    );
}

#[test]
fn set_aggregation_method_matches_script() {
    let dir = tempfile::tempdir().unwrap();
    let template = sample(dir.path(), "template.wsp", clock());
    let target = dir.path().join("t.wsp");
    let t = s(&target).to_string();
    let cases: Vec<Vec<&str>> = vec![
        vec![&t, "max"],
        vec![&t, "sum", "0.25"],
        vec![&t, "absmax", "0.3", "ignored-extra"],
        vec![&t, "first"],
        vec![&t, "sum", "abc"],
        vec![&t, "sum", "2"],
        vec![&t],
    ];
    for args in &cases {
        let mut files = Vec::new();
        let (p, c, _) = both("set-aggregation-method", args, None, &[], |side| {
            if side == Side::Carbonlite {
                files.push(std::fs::read(&target).unwrap());
            }
            std::fs::copy(&template, &target).unwrap();
        });
        assert_same(&format!("set-aggregation-method {args:?}"), &p, &c);
        assert!(
            files.last().unwrap() == &std::fs::read(&target).unwrap(),
            "{args:?}: files differ"
        );
        if p.code != Some(0) {
            assert_eq!(p.stderr, c.stderr, "{args:?}: stderr");
        }
    }
    let missing = dir.path().join("none.wsp");
    let (p, c, _) = both(
        "set-aggregation-method",
        &[s(&missing), "max"],
        None,
        &[],
        |_| {},
    );
    assert_eq!((p.code, &p.stderr), (c.code, &c.stderr));
}

/// Linked under a script's name, the binary is that script: help and optparse errors match
/// byte for byte, program name included.
#[test]
fn script_named_links_print_identical_usage() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "create",
        "info",
        "update",
        "fetch",
        "dump",
        "set-aggregation-method",
    ] {
        let py = script(name);
        let link = dir.path().join(format!("whisper-{name}.py"));
        std::os::unix::fs::symlink(BIN, &link).unwrap();
        for args in [&["--help"][..], &["-h"], &["--bogus"], &["-Z"]] {
            let mut cmd = python3();
            cmd.arg(&py).args(args);
            let p = exec(cmd, None, &[]);
            let mut cmd = Command::new(&link);
            cmd.args(args);
            let c = exec(cmd, None, &[]);
            assert_eq!(p, c, "whisper-{name}.py {args:?}");
        }
    }
}
