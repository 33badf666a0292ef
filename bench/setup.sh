# Sourced by the bench runners (bench/run.sh, bench/w1_fresh.sh) once ROOT is set: the
# results directory, the release daemon and library, the embedded W1 runner
# (bench/w1_embedded.c, linked against that library), the harness' python venv, and
# `need_deb CMD PKG` to install a Debian peer on first use.
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
