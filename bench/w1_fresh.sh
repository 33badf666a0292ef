#!/usr/bin/env bash
# W1 (10,000 metrics x 60 points, persisted) for carbon-cache (sparse) over TCP, carbonlite
# full and sparse over TCP (the daemon), and carbonlite full and sparse embedded (a C host
# program, first carbon_add_line until carbon_flush returns: issue #3's definition; see
# bench/w1_embedded.sh), round-robin with a rotating order, each run into a FRESH data
# directory and nothing deleted until the series ends.
#
#   bench/w1_fresh.sh [ROUNDS]   (default 3; results in bench/results/w1-fresh-<time>/, summarized)
#
# Why not bench/run.sh w1: this disk's ext4 has no journal, and in that mode the kernel skips
# inodes freed in the last seconds (up to ~5 min while their inode block is dirty) when it
# allocates new ones, scanning past them. Creating 10,100 directories and 10,000 files right
# after the previous run's were deleted then costs 3-20 s instead of ~0.8 s, whichever
# server runs, and the harness's 60 s quiet period is not enough. Fresh directories keep
# every run out of that window; a series starts 6 minutes after the last one deleted its
# files (bench/setup.sh), and after the test suite or any other bulk delete it needs as long
# (not detected: wait by hand). Polling is every 0.1 s for every server.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${SHARED_BENCH:-$ROOT/../shared/bench}"
export SHARED_BENCH="$SHARED"
rounds="${1:-3}"
source "$ROOT/bench/setup.sh"
need_deb carbon-cache graphite-carbon
OUT="$RES/w1-fresh-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
base="/tmp/peers/data/w1-fresh-$$"
mkdir -p "$base"
trap 'delete_series "$base"' EXIT
wait_after_deletes
variants=(carbon-cache-sparse carbonlite carbonlite-sparse carbonlite-embedded carbonlite-embedded-sparse)
n=${#variants[@]}
report() {
  tail -1 "$OUT/w1-fresh-$1.jsonl" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(r["when"], r["peer"], "persist", round(r["persist_secs"],3), "s", int(r["persist_points_per_s"]), "points/s; ingest", round(r["ingest_secs"],3), "s; server cpu", r["server_cpu_secs"], "ERRORS" if r["loadgen_errors"] or (r.get("check") or {}).get("error") else "")'
}
cd "$SHARED"
for r in $(seq 1 "$rounds"); do
  for k in $(seq 0 $((n - 1))); do
    v=${variants[$(((k + r - 1) % n))]}
    dd="$base/$r-$k"
    case "$v" in
      carbon-cache-sparse) port=2103 cmd=(peers/carbon-cache.sh --port 2103 --variant sparse --data-dir "$dd");;
      carbonlite) port=2303 cmd=("$ROOT/bench/carbonlite-node.sh" --port 2303 --data-dir "$dd" --sparse false);;
      carbonlite-sparse) port=2303 cmd=("$ROOT/bench/carbonlite-node.sh" --port 2303 --data-dir "$dd" --sparse true);;
    esac
    sync
    sleep 5
    case "$v" in
      carbonlite-embedded*)
        "$ROOT/bench/w1_embedded.sh" --name "$v" --data-dir "$dd" --results "$OUT/w1-fresh-$v.jsonl" \
          --sparse "$([[ $v == *sparse ]] && echo true || echo false)" >/dev/null
        report "$v"
        continue;;
    esac
    ./run_workload.sh --runs 1 --name "$v" --port "$port" --interval 0.1 --quiet 0 --keep-data \
      --notes "fresh data dir" --results "$OUT/w1-fresh-$v.jsonl" --data-dir "$dd" -- "${cmd[@]}" >/dev/null
    report "$v"
  done
done
uptime
python3 "$SHARED/summarize.py" "$OUT"
