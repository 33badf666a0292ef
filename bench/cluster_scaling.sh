#!/usr/bin/env bash
# Ingest through a routing node in front of 1, 2 and 3 storage nodes, each a separate
# `carbonlite` daemon process on loopback.
#
#   bench/cluster_scaling.sh [METRICS] [POINTS]      (default 100000 x 10 = 1M points)
#
# The router listens on plaintext TCP, routes with carbon_ch (pickle to the nodes); nodes keep
# points in their cache ([whisper] enabled = false), so the figure is routing + delivery, not
# whisper writes. Time = from the first line sent by ../shared/bench's loadgen until the
# router, stopped with SIGTERM once loadgen is done, exits — its close waits until every
# sender has written everything to its node. On a 2-core machine the router, the nodes and
# loadgen share two cores: more nodes add parallel receivers but no cores, so this measures
# the router's cost per point and that delivery keeps up, not a cluster's scale-out.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${SHARED_BENCH:-$ROOT/../shared/bench}"
LOADGEN="$SHARED/loadgen/target/release/loadgen"
METRICS="${1:-100000}" POINTS="${2:-10}"
BIN="$ROOT/target/release/carbonlite"
[[ -x "$BIN" ]] || (cd "$ROOT" && cargo build --release --bin carbonlite)
[[ -x "$LOADGEN" ]] || (cd "$SHARED/loadgen" && cargo build --release)
base=$(mktemp -d /tmp/cluster-scaling.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [[ -n "${KEEP:-}" ]] || rm -rf "$base"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

for n in 1 2 3; do
  dests=()
  for k in $(seq 0 $((n - 1))); do
    port=$((24040 + k))
    mkdir -p "$base/n$n-$k"
    cat > "$base/n$n-$k/node.conf" <<CONF
[common]
metric-interval = "0"
[whisper]
data-dir = "$base/n$n-$k/data"
enabled = false
[cache]
max-size = 0
[tcp]
enabled = false
[pickle]
enabled = true
listen = "127.0.0.1:$port"
[carbonlink]
enabled = false
CONF
    "$BIN" -config "$base/n$n-$k/node.conf" >"$base/n$n-$k/log" 2>&1 & pids+=($!)
    wait_port "$port"
    dests+=("\"127.0.0.1:$port:n$k\"")
  done
  cat > "$base/router$n.conf" <<CONF
[common]
metric-interval = "0"
[whisper]
data-dir = "$base/router$n"
enabled = false
[tcp]
enabled = true
listen = "127.0.0.1:23030"
[carbonlink]
enabled = false
[cluster]
destinations = [$(IFS=,; echo "${dests[*]}")]
hashing = "carbon_ch"
protocol = "pickle"
queue-size = 2000000
CONF
  "$BIN" -config "$base/router$n.conf" >"$base/router$n.log" 2>&1 & router=$!
  wait_port 23030
  t0=$(date +%s.%N)
  "$LOADGEN" --port 23030 --metrics "$METRICS" --points "$POINTS" --json >"$base/lg$n.json"
  kill -TERM "$router"; wait "$router" || true
  t1=$(date +%s.%N)
  python3 - "$n" "$t0" "$t1" "$METRICS" "$POINTS" "$base/lg$n.json" <<'PY'
import json, sys
n, t0, t1, m, p, lg = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
send = json.load(open(lg))
pts = m * p
print(json.dumps({"nodes": n, "points": pts, "seconds": round(t1 - t0, 3),
                  "points_per_s": round(pts / (t1 - t0)), "loadgen_lines_per_s": send.get("lines_per_s")}))
PY
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
done
