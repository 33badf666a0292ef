# Sourced by the bench runners (bench/run.sh, bench/w1_fresh.sh) once ROOT is set: the
# results directory, the release daemon and library, the embedded W1 runner
# (bench/w1_embedded.c, linked against that library), the harness' python venv, and
# `need_deb CMD PKG` to install a Debian peer on first use; `wait_after_deletes` and
# `delete_series DIR` keep W1 timings out of the kernel's slow window after bulk deletes.
RES="$ROOT/bench/results"
mkdir -p "$RES"
(cd "$ROOT" && cargo build --release -q --lib --bin carbonlite)
cc -O2 -Wall -I"$ROOT/include" "$ROOT/bench/w1_embedded.c" -L"$ROOT/target/release" -lcarbonlite \
  -Wl,-rpath,"$ROOT/target/release" -o "$ROOT/target/release/w1_embedded"
need_deb() {
  command -v "$1" >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }
}
# The python venv with whisper that run_workload.sh checks files with.
[[ -x /tmp/peers/venv/bin/python ]] && /tmp/peers/venv/bin/python -c 'import whisper' 2>/dev/null \
  || { python3 -m venv /tmp/peers/venv && /tmp/peers/venv/bin/pip install -q whisper==1.1.10; }
# File creation is 3-20x slower for minutes after many files were deleted (README,
# Performance, "Reproducing W1"), and the W1 runners delete their series at the end. They stamp
# that moment here and wait out the window before timing again (BENCH_NO_QUIET=1 skips the
# wait). Deletes by anything else (the test suite, an operator) are not seen: leave 6
# minutes after those by hand.
DELETE_STAMP=/tmp/peers/last-bulk-delete
QUIET_SECS=360
wait_after_deletes() {
  [[ -f $DELETE_STAMP && -z ${BENCH_NO_QUIET:-} ]] || return 0
  local left=$(($(stat -c %Y "$DELETE_STAMP") + QUIET_SECS - $(date +%s)))
  if ((left > 0)); then
    echo "waiting ${left}s: a bulk delete at $(date -r "$DELETE_STAMP" +%T) still slows file creation" >&2
    sleep "$left"
  fi
}
# Deletes a series' files and, if it had any, stamps the time (for the trap of a runner).
delete_series() {
  local had
  had=$(find "$1" -mindepth 1 -maxdepth 1 2>/dev/null | head -1)
  rm -rf "$1"
  [[ -n $had ]] || return 0
  sync
  touch "$DELETE_STAMP"
  echo "deleted the files of this series; the next W1 runner waits ${QUIET_SECS}s" >&2
}

