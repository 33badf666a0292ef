#!/usr/bin/env bash
# A/B of two builds of the library on embedded W1 (bench/w1_embedded.c: first carbon_add_line
# until carbon_flush returns), interleaved run by run with a rotating order, each run into a
# fresh data directory, so both builds see the same drift of this noisy machine. Prints every
# run and the medians of flush time and process CPU.
#
#   bench/w1_ab.sh OLD_LIB_DIR [ROUNDS] [SPARSE]   (defaults 6, true)
#
# OLD_LIB_DIR holds the other build's libcarbonlite.so, e.g. from
#   git worktree add /tmp/old REV && (cd /tmp/old && cargo build --release --lib)
#   bench/w1_ab.sh /tmp/old/target/release
# The new build is this checkout's target/release (bench/setup.sh builds it). The runs' files
# stay under /tmp/peers/data/w1-ab-<pid>/ until the series ends: deleting them slows file
# creation for minutes (README, Performance, "Reproducing W1"), so the next W1 runner waits 6 minutes
# (bench/setup.sh); after the test suite or any other bulk delete, wait as long by hand.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${SHARED_BENCH:-$ROOT/../shared/bench}"
old="${1:?usage: bench/w1_ab.sh OLD_LIB_DIR [ROUNDS] [SPARSE]}"
rounds="${2:-6}" sparse="${3:-true}"
[[ -f "$old/libcarbonlite.so" ]] || { echo "$old/libcarbonlite.so not found" >&2; exit 2; }
source "$ROOT/bench/setup.sh"
LOADGEN="$SHARED/loadgen/target/release/loadgen"
[[ -x "$LOADGEN" ]] || (cd "$SHARED/loadgen" && cargo build --release -q)
base="/tmp/peers/data/w1-ab-$$"
mkdir -p "$base"
trap 'delete_series "$base"' EXIT
wait_after_deletes
# Each build gets a runner with its own rpath; a copy of the old library keeps it stable.
mkdir -p "$base/old-lib"
cp "$old/libcarbonlite.so" "$base/old-lib/"
for v in old new; do
  lib="$ROOT/target/release"
  [[ $v == old ]] && lib="$base/old-lib"
  cc -O2 -Wall -I"$ROOT/include" "$ROOT/bench/w1_embedded.c" -L"$lib" -lcarbonlite \
    -Wl,-rpath,"$lib" -o "$base/run-$v"
done
lines="$base/w1.lines"
"$LOADGEN" --json --out "$lines" --now "$(date +%s)" >/dev/null
conf="$SHARED/conf"
for r in $(seq 1 "$rounds"); do
  for v in $( ((r % 2)) && echo old new || echo new old); do
    sync
    sleep 5
    "$base/run-$v" "$lines" "$base/$v-$r" "$conf/storage-schemas.conf" \
      "$conf/storage-aggregation.conf" "$sparse" | sed "s/^/$v /" | tee -a "$base/results"
  done
done
python3 - "$base/results" <<'EOF'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    v, rec = line.split(" ", 1)
    runs.setdefault(v, []).append(json.loads(rec))
for v in ("old", "new"):
    rs = runs[v]
    flush = [r["persist_secs"] for r in rs]
    cpu = [r["cpu_secs"] for r in rs]
    print(f"{v}: flush median {statistics.median(flush):.3f} s (min {min(flush):.3f}, max {max(flush):.3f}), "
          f"{600000 / statistics.median(flush):,.0f} points/s; CPU median {statistics.median(cpu):.3f} s; runs {len(rs)}")
EOF
uptime
