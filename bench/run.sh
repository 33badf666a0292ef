#!/usr/bin/env bash
# Runs the issue workloads against carbonlite and its peers, interleaved round-robin on one
# machine (../shared/bench/interleave.sh), and prints median tables.
#
#   bench/run.sh [w1|w2|w3|w1j|all] [ROUNDS]    (default: all 3)
#
# The shared harness is ../shared/bench beside the checkout, or $SHARED_BENCH (a worktree).
#
# W1 = 10,000 metrics x 60 points persisted (carbonlite full + sparse vs python carbon-cache),
#      here with a delete + 60 s quiet between runs, which on this disk measures ext4's
#      recovery from the delete more than the servers: bench/w1_fresh.sh is the W1 to quote,
# W2 = 100,000 metrics x 10 points over one TCP connection, cache only (vs carbon-c-relay),
# W3 = W1 onto existing files, W1J = W1 with the journal off / fsync=interval / fsync=always. Installs Debian graphite-carbon / carbon-c-relay on first use.
# Results: bench/results/*.jsonl.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${SHARED_BENCH:-$ROOT/../shared/bench}"
export SHARED_BENCH="$SHARED"
what="${1:-all}" rounds="${2:-3}"
source "$ROOT/bench/setup.sh"
need_deb carbon-cache graphite-carbon
need_deb carbon-c-relay carbon-c-relay
node="$ROOT/bench/carbonlite-node.sh"
spec="$(mktemp)"
w1() {
  cat <<SPEC
--name carbon-cache-sparse --workload W1 --interval 0.1 --port 2103 --results $RES/carbon-cache-sparse-W1.jsonl --data-dir /tmp/peers/data/carbon-cache -- peers/carbon-cache.sh --port 2103 --variant sparse --data-dir /tmp/peers/data/carbon-cache
--name carbonlite --workload W1 --interval 0.1 --port 2303 --results $RES/carbonlite-W1.jsonl --data-dir /tmp/peers/data/carbonlite -- $node --port 2303 --data-dir /tmp/peers/data/carbonlite --sparse false
--name carbonlite-sparse --workload W1 --interval 0.1 --port 2303 --results $RES/carbonlite-sparse-W1.jsonl --data-dir /tmp/peers/data/carbonlite -- $node --port 2303 --data-dir /tmp/peers/data/carbonlite --sparse true
SPEC
}
w2() {
  cat <<SPEC
--name carbon-c-relay-blackhole --workload W2 --mode ingest --port 2203 --metrics 100000 --points 10 --results $RES/carbon-c-relay-blackhole-W2.jsonl -- peers/carbon-c-relay.sh --port 2203 --dest blackhole
--name carbonlite-cache-only --workload W2 --mode ingest --port 2303 --metrics 100000 --points 10 --results $RES/carbonlite-cache-only-W2.jsonl -- $node --port 2303 --persist false
SPEC
}
w3() {
  cat <<SPEC
--name carbon-cache-sparse --workload W3 --port 2103 --prefill-start -1190 --prefill-settle 10 --interval 0.1 --quiet 30 --results $RES/carbon-cache-sparse-W3.jsonl --data-dir /tmp/peers/data/carbon-cache -- peers/carbon-cache.sh --port 2103 --variant sparse --data-dir /tmp/peers/data/carbon-cache
--name carbonlite-sparse --workload W3 --port 2303 --prefill-start -1190 --prefill-settle 10 --interval 0.1 --quiet 30 --results $RES/carbonlite-sparse-W3.jsonl --data-dir /tmp/peers/data/carbonlite -- $node --port 2303 --data-dir /tmp/peers/data/carbonlite --sparse true
SPEC
}
w1j() {
  for j in off interval always; do
    echo "--name carbonlite-journal-$j --workload W1 --interval 0.1 --port 2303 --results $RES/carbonlite-journal-$j-W1.jsonl --data-dir /tmp/peers/data/carbonlite -- $node --port 2303 --data-dir /tmp/peers/data/carbonlite --sparse false --journal $j"
  done
}
case "$what" in
  w1) w1 > "$spec";; w1j) w1j > "$spec";; w2) w2 > "$spec";; w3) w3 > "$spec";;
  all) { w1; w2; w3; } > "$spec";;
  *) echo "usage: bench/run.sh [w1|w2|w3|w1j|all] [ROUNDS]" >&2; exit 2;;
esac
"$SHARED/interleave.sh" "$rounds" "$spec"
python3 "$SHARED/summarize.py" "$RES"
