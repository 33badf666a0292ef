"""Reads the files examples-c/pipeline_check.c left with Graphite's own whisper library and
checks every point: value m*100 + p + 0.25 at base + 60*p for metric check.m<m>.value."""
import math
import os
import sys

import whisper

data, base = sys.argv[1], int(sys.argv[2])
bad = 0
for m in range(1000):
    path = os.path.join(data, "check", "m%04d" % m, "value.wsp")
    info = whisper.info(path)
    assert (info["archives"][0]["secondsPerPoint"], info["archives"][0]["points"]) == (60, 1440), info
    (start, end, step), values = whisper.fetch(path, base - 60)
    for p in range(10):
        v = values[(base + 60 * p - start) // step]
        if v != m * 100 + p + 0.25:
            bad += 1
            if bad < 5:
                print("m%04d p%d: %r" % (m, p, v))
print("checked 1000 files, %d bad" % bad)
sys.exit(1 if bad else 0)
