#!/usr/bin/env bash
# Builds examples-c/hello.c and hello.cpp against an installed carbonlite, finding it only
# through `pkg-config --cflags --libs carbonlite`, and runs them.  usage: check_installed.sh PREFIX
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
prefix=$(cd "$1" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pcdir=$(dirname "$(find "$prefix" -name carbonlite.pc | head -1)")
[[ -f "$pcdir/carbonlite.pc" ]] || { echo "no carbonlite.pc under $prefix"; exit 1; }
for f in carbonlite.h carbonlite.hpp; do [[ -f "$prefix/include/$f" ]] || { echo "missing include/$f"; exit 1; }; done
export PKG_CONFIG_PATH="$pcdir"
flags=$(pkg-config --cflags --libs carbonlite)
libdir=$(pkg-config --variable=libdir carbonlite)
[[ -f "$libdir/libcarbonlite.so" && -f "$libdir/libcarbonlite.a" ]] || { echo "missing .so/.a in $libdir"; exit 1; }
case "$flags" in *"$prefix"*) ;; *) echo "pkg-config flags do not point into $prefix: $flags"; exit 1;; esac
# No -I to the source tree: only what pkg-config says.
${CC:-cc} -std=c11 -Wall -Wextra -Werror "$root/examples-c/hello.c" -o "$tmp/hello" $flags -Wl,-rpath,"$libdir"
${CXX:-c++} -std=c++17 -Wall -Wextra -Werror "$root/examples-c/hello.cpp" -o "$tmp/hello-cpp" $flags -Wl,-rpath,"$libdir"
# (ldd's output is captured first: `ldd | grep -q` under pipefail fails when grep exits early.)
deps=$(ldd "$tmp/hello")
[[ $deps == *"$libdir/libcarbonlite.so"* ]] || { echo "$deps"; echo "hello does not use the installed .so"; exit 1; }
"$root/tests/cpp/run_example.sh" '^hello.world = 42 ' "$tmp/hello" "$tmp/data-c"
"$root/tests/cpp/run_example.sh" '^app.requests 42 ' "$tmp/hello-cpp" "$tmp/data-cpp"
# Static: the .a plus Libs.private.
${CC:-cc} -std=c11 "$root/examples-c/hello.c" -o "$tmp/hello-static" $(pkg-config --cflags carbonlite) \
  "$libdir/libcarbonlite.a" $(pkg-config --libs-only-l --static carbonlite | sed 's/-lcarbonlite//')
deps=$(ldd "$tmp/hello-static")
if [[ $deps == *carbonlite* ]]; then echo "static hello needs the .so"; exit 1; fi
"$root/tests/cpp/run_example.sh" '^hello.world = 42 ' "$tmp/hello-static" "$tmp/data-static"
echo "installed copy under $prefix: ok (pkg-config $(pkg-config --modversion carbonlite))"
