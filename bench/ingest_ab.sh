#!/usr/bin/env bash
# Compares two builds of the steady ingest benchmark (benches/ingest.rs) on this noisy machine:
# short fixed runs of A and B alternate on one core, and each B run is divided by the A run
# just before it, so the machine's swings (2x over an hour here) fall on both sides.
#
#   bench/ingest_ab.sh A B [PAIRS] [ROUNDS]     (defaults: 20 pairs of 30 100k-line rounds)
#
# A and B are saved `target/release/deps/ingest-*` binaries, e.g.
#   cargo bench --no-run --bench ingest; cp target/release/deps/ingest-<hash> /tmp/ingest-old
# Passing the same binary twice shows the method's own spread (a median ratio near 1.00).
# Prints the median lines/s of each and the median B/A ratio with how many pairs B won.
set -euo pipefail
a=$1 b=$2 pairs=${3:-20} rounds=${4:-30}
run() {
  INGEST_FIXED="$rounds" INGEST_STEADY=1 taskset -c 1 "$1" --bench 2>&1 |
    sed -n 's/^[0-9]* rounds: \([0-9.]*\) M lines\/s.*/\1/p'
}
out=$(for _ in $(seq "$pairs"); do echo "$(run "$a") $(run "$b")"; done)
python3 - "$out" <<'EOF'
import statistics as s, sys
rows = [tuple(map(float, l.split())) for l in sys.argv[1].splitlines()]
ratios = [b / a for a, b in rows]
print("A median %.2f M lines/s, B median %.2f M; B/A median %.3f (B faster in %d of %d pairs)" % (
    s.median(a for a, _ in rows), s.median(b for _, b in rows), s.median(ratios),
    sum(r > 1 for r in ratios), len(ratios)))
EOF
