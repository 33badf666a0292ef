#!/bin/sh
# Runs an example program and checks that it exits 0 and prints the value it stored, so a
# program that runs but reads back the wrong thing fails too.
#   tests/cpp/run_example.sh PATTERN PROGRAM [ARGS...]
set -eu
want=$1
shift
out=$("$@")
printf '%s\n' "$out"
printf '%s\n' "$out" | grep -q -- "$want" || {
  echo "$1: no output line matches '$want'" >&2
  exit 1
}
