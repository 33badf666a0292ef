#!/usr/bin/env bash
# Runs examples-c/collector briefly and checks what it stored with Graphite's python whisper:
# --once writes every metric; memory.total equals /proc/meminfo; SIGINT stops a running
# collector cleanly with its points on disk.  usage: check_collector.sh COLLECTOR_BINARY
set -euo pipefail
exe=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
PY=${PYTHON:-python3}

"$exe" --data "$tmp/once" --once --prefix test.host >"$tmp/once.out"
grep -q "1 samples" "$tmp/once.out" || { cat "$tmp/once.out"; echo "collector --once: unexpected output"; exit 1; }
for m in cpu/user cpu/idle cpu/context_switches memory/total memory/available load/1min procs/total; do
  [[ -f "$tmp/once/test/host/$m.wsp" ]] || { echo "missing $m.wsp"; exit 1; }
done
"$PY" - "$tmp/once/test/host" <<'PY'
import sys, time, whisper
base = sys.argv[1]
def last(name):
    (_, _, _), vals = whisper.fetch(f"{base}/{name}.wsp", time.time() - 300)
    got = [v for v in vals if v is not None]
    assert got, f"{name}: no value"
    return got[-1]
mem = dict(l.split(":", 1) for l in open("/proc/meminfo"))
total = int(mem["MemTotal"].split()[0]) * 1024
assert last("memory/total") == total, (last("memory/total"), total)
cpu = sum(last(f"cpu/{s}") for s in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"))
assert abs(cpu - 100) < 0.01, cpu
assert last("procs/total") >= 1
print("collector --once: values check out against /proc")
PY

"$exe" --data "$tmp/sig" --interval 0.2 --prefix test.sig >"$tmp/sig.out" &
pid=$!
sleep 1
kill -INT "$pid"
wait "$pid" || { echo "collector exited $? after SIGINT"; cat "$tmp/sig.out"; exit 1; }
grep -q "stopped by signal" "$tmp/sig.out" || { cat "$tmp/sig.out"; exit 1; }
[[ -f "$tmp/sig/test/sig/load/1min.wsp" ]] || { echo "SIGINT: nothing flushed"; exit 1; }
cat "$tmp/sig.out"

"$exe" --data "$tmp/sec" --seconds 1 --interval 0.5 --prefix test.sec >"$tmp/sec.out"
grep -q "3 samples" "$tmp/sec.out" || { cat "$tmp/sec.out"; echo "--seconds 1 --interval 0.5: want 3 samples"; exit 1; }
echo "collector: ok"
