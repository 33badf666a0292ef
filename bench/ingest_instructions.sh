#!/usr/bin/env bash
# Instructions per line of carbon_add_line on the steady ingest benchmark (benches/ingest.rs,
# 100k metrics, cache holding at most 10 points per metric), counted by callgrind.
#
#   bench/ingest_instructions.sh [ROUNDS]   (100k-line rounds, default 10; under a minute)
#   INGEST_BIN=<a saved target/release/deps/ingest-*> bench/ingest_instructions.sh   (another build)
#
# Why: the lines/s of `cargo bench --bench ingest` follow this shared VM, whose speed on the
# same binary swings by 2x from hour to hour (README, Performance). An instruction count does
# not move with the machine, so it tells whether a code change made the hot path cheaper.
# It is not a speed: it ignores cache misses (about a fifth of the time at 100k metrics) and
# instruction-level parallelism.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
rounds="${1:-10}"
command -v valgrind >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
}
bin=${INGEST_BIN:-$(cargo bench --no-run --bench ingest 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)}
[[ -x $bin ]] || { echo "no ingest bench binary" >&2; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# Only what runs inside carbon_add_line_ex (carbon_add_line's body) is counted: the input
# building and the memory probe around it are not.
INGEST_FIXED="$rounds" INGEST_STEADY=1 valgrind --tool=callgrind --callgrind-out-file="$out" \
  --toggle-collect=carbon_add_line_ex "$bin" --bench >/dev/null 2>&1
total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
lines=$((rounds * 100000))
echo "carbon_add_line: $((total / lines)) instructions per line ($total over $lines lines, $bin)"
