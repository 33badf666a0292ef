#!/usr/bin/env bash
# One W1 run of the embedded engine, timed as issue #3 defines it: a C host program
# (bench/w1_embedded.c) calls carbon_add_line with loadgen's exact W1 lines, and the clock
# runs from the first add until carbon_flush returns. Afterwards, untimed, the harness's
# lib/wsp_check.py reads every file with Graphite's whisper and checks all 600k points.
# Appends one JSON line in run_workload.sh's format (so ../shared/bench/summarize.py
# tabulates it beside the TCP peers); persist_secs is the flush time.
#
#   bench/w1_embedded.sh --name NAME --data-dir DIR --results FILE [--sparse true|false]
#
# Needs target/release/w1_embedded, which bench/setup.sh builds (w1_fresh.sh sources it).
# DIR must not exist.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${SHARED_BENCH:-$ROOT/../shared/bench}"
PYTHON="${PYTHON:-/tmp/peers/venv/bin/python}"
LOADGEN="${LOADGEN:-$SHARED/loadgen/target/release/loadgen}"
name="" data_dir="" results="" sparse=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) name="$2"; shift 2;;
    --data-dir) data_dir="$2"; shift 2;;
    --results) results="$2"; shift 2;;
    --sparse) sparse="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
[[ -n "$name" && -n "$data_dir" && -n "$results" ]] || { echo "need --name, --data-dir, --results" >&2; exit 2; }
[[ -e "$data_dir" ]] && { echo "$data_dir exists" >&2; exit 2; }
[[ -x "$LOADGEN" ]] || (cd "$SHARED/loadgen" && cargo build --release -q)
runner="$ROOT/target/release/w1_embedded"
lines="$(mktemp /tmp/peers/w1-lines.XXXXXX)"
trap 'rm -f "$lines"' EXIT
now=$(date +%s)
lg=$("$LOADGEN" --json --out "$lines" --now "$now")
t0=$(date +%s.%N)
run=$("$runner" "$lines" "$data_dir" "$SHARED/conf/storage-schemas.conf" \
      "$SHARED/conf/storage-aggregation.conf" "$sparse")
ck=$("$PYTHON" "$SHARED/lib/wsp_check.py" --data-dir "$data_dir" --first-ts \
     "$("$PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])["first_ts"])' "$lg")" \
     --interval 0.1 --timeout 60 --t0 "$t0") || echo "persist check failed: $ck" >&2
"$PYTHON" - "$name" "$run" "$ck" "$ROOT/bench/w1_embedded.c" "$sparse" >> "$results" <<'EOF'
import json, sys, time
name, run, ck, cmd, sparse = sys.argv[1:]
run = json.loads(run); ck = json.loads(ck) if ck.strip() else None
rec = {"peer": name, "workload": "W1", "mode": "persist", "run": 1,
       "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "cmd": f"{cmd} (sparse-create {sparse})",
       "notes": "embedded: carbon_add_line -> carbon_flush; fresh data dir",
       "lines": run["lines"], "ingest_secs": run["ingest_secs"],
       "ingest_send_secs": run["ingest_secs"],
       "ingest_lines_per_s": run["lines"] / run["ingest_secs"], "loadgen_errors": [],
       "server_cpu_secs": run["cpu_secs"], "server_hwm_kb": run["hwm_kb"],
       "server_alive_at_end": True, "embedded": run,
       "persist_secs": run["persist_secs"],
       "persist_points_per_s": run["lines"] / run["persist_secs"]}
# Verified after the fact: every file, every point, read back with Graphite's whisper.
if ck is not None:
    rec["check"] = ck
    if "t_full" not in ck:
        rec["loadgen_errors"] = ["verification failed: " + json.dumps(ck)]
print(json.dumps(rec))
EOF
tail -1 "$results"
