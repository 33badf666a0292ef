#!/usr/bin/env bash
# Peer script for ../shared/bench/run_workload.sh: runs the carbonlite daemon in the
# foreground (exec, so $! is its PID) with a go-carbon.conf written for the run.
#
#   bench/carbonlite-node.sh [--port 2303] [--data-dir DIR] [--workers N] [--sparse true|false]
#                            [--persist true|false] [--max-size N]
#                            [--journal off|always|interval|never] [--max-open-files N]
#
# Uses ../shared/bench/conf's W1 storage schemas (10s:1d,1m:30d, average, xff 0.5).
# CARBONLITE_BIN=path runs another build (e.g. a saved copy of the previous code, to alternate
# old and new in one interleaved pass).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${SHARED_BENCH:-$ROOT/../shared/bench}"
port=2303 data_dir=/tmp/peers/data/carbonlite workers=2 sparse=false persist=true max_size=0 journal=off max_open_files=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) port="$2"; shift 2;;
    --data-dir) data_dir="$2"; shift 2;;
    --workers) workers="$2"; shift 2;;
    --sparse) sparse="$2"; shift 2;;
    --persist) persist="$2"; shift 2;;
    --max-size) max_size="$2"; shift 2;;
    --journal) journal="$2"; shift 2;;
    --max-open-files) max_open_files="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
base=/tmp/peers/carbonlite
mkdir -p "$base" "$data_dir"
conf="$base/go-carbon-$port.conf"
cat > "$conf" <<CONF
[common]
metric-interval = "0"
[whisper]
data-dir = "$data_dir"
schemas-file = "$SHARED/conf/storage-schemas.conf"
aggregation-file = "$SHARED/conf/storage-aggregation.conf"
workers = $workers
sparse-create = $sparse
enabled = $persist
max-open-files = $max_open_files
[cache]
max-size = $max_size
overflow = "block"
[tcp]
enabled = true
listen = "127.0.0.1:$port"
[carbonlink]
# The daemon opens 7002 by default; two benchmark nodes at once would collide on it.
enabled = false
CONF
if [[ "$journal" != off ]]; then
  printf '[journal]\nenabled = true\nfsync = "%s"\n' "$journal" >> "$conf"
fi
exec "${CARBONLITE_BIN:-$ROOT/target/release/carbonlite}" -config "$conf"
