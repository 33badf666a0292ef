#!/usr/bin/env bash
# Compares carbonlite's whisper engine with python whisper 1.1.10 on the same workload
# (10s:1d,1m:30d file; update_many of 60 points; one-day fetch) in one run, and prints the
# ratios. Targets: >= 50x python's update_many points/s, >= 20x its fetch rate.
# Usage: bench/whisper_vs_python.sh [seconds-per-measurement]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-2}"
python3 -c 'import whisper' 2>/dev/null || { echo "pip install whisper==1.1.10" >&2; exit 1; }
cargo build --release --quiet --example whisper_bench
RS="$(target/release/examples/whisper_bench "$SECS")"
PY="$(python3 bench/whisper_py_bench.py "$SECS")"
echo "$RS"
echo "$PY"
python3 - "$RS" "$PY" <<'PYEOF'
import json, sys
rs, py = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert rs["fetch_known_values"] == py["fetch_known_values"], "the two fetches saw different data"
u = rs["update_many_points_per_s"] / py["update_many_points_per_s"]
f = rs["fetch_1d_per_s"] / py["fetch_1d_per_s"]
print("update_many points/s: carbonlite %.0f  python %.0f  ratio %.1fx (target >= 50x)%s"
      % (rs["update_many_points_per_s"], py["update_many_points_per_s"], u, "" if u >= 50 else "  BELOW TARGET"))
print("fetch 1d /s:          carbonlite %.1f  python %.1f  ratio %.1fx (target >= 20x)%s"
      % (rs["fetch_1d_per_s"], py["fetch_1d_per_s"], f, "" if f >= 20 else "  BELOW TARGET"))
PYEOF
