#!/usr/bin/env bash
# carbonserver /render throughput and latency: 100 metrics x 1 day (1-minute points) in one
# request (`target=bench.m*`, a glob over 100 files), against the release daemon.
#
#   bench/render_bench.sh [SECONDS] [THREADS]      (default 10 s, 4 client threads)
#
# Files are made with python whisper (60s:1d, full day of points) so the data does not depend
# on carbonlite's writer. Prints one JSON line per format (json, protobuf, pickle).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
secs="${1:-10}" threads="${2:-4}"
(cd "$ROOT" && cargo build --release -q --bin carbonlite)
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 - "$work/data" <<'PY'
import os, sys, time, whisper
root = sys.argv[1]
now = int(time.time())
for i in range(100):
    d = os.path.join(root, "bench")
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, "m%03d.wsp" % i)
    whisper.create(p, [(60, 1440)])
    whisper.update_many(p, [(now - 86400 + k * 60, float(i * 10000 + k)) for k in range(1440)])
PY
port=$((20000 + RANDOM % 20000))
cat > "$work/go-carbon.conf" <<CONF
[whisper]
data-dir = "$work/data"
workers = 1
[tcp]
enabled = true
listen = "127.0.0.1:0"
[carbonlink]
enabled = false
[carbonserver]
enabled = true
listen = "127.0.0.1:$port"
CONF
"$ROOT/target/release/carbonlite" -config "$work/go-carbon.conf" 2>"$work/daemon.log" &
pid=$!
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
  sleep 0.1
done
now=$(date +%s)
for fmt in json protobuf pickle; do
  q="/render/?target=bench.m*&from=$((now - 86400))&until=$now&format=$fmt"
  printf '{"format":"%s",' "$fmt"
  python3 "$ROOT/bench/render_load.py" "127.0.0.1:$port" "$q" --seconds "$secs" --threads "$threads" | cut -c2-
done
