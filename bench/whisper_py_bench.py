#!/usr/bin/env python3
"""Python whisper's throughput on the shape examples/whisper_bench.rs measures for carbonlite:
10s:1d,1m:30d, update_many of 60 points 10 s apart moving forward, and one-day fetches.
Prints one JSON object. Usage: whisper_py_bench.py [seconds-per-measurement]"""
import json
import os
import sys
import tempfile
import time

try:
    import whisper
except ImportError:
    sys.exit("python whisper is missing: pip install whisper==1.1.10")

budget = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "bench.wsp")
    whisper.create(path, [(10, 8640), (60, 43200)], 0.5, "average")

    t = 1700000000
    calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < budget:
        for _ in range(20):
            points = [(t + i * 10, float(i % 7)) for i in range(60)]
            t += 600
            whisper.update_many(path, points, now=t)
            calls += 1
    update_secs = time.perf_counter() - start

    now = t
    whisper.update_many(path, [(now - 86400 + i * 10, float(i)) for i in range(8640)], now=now)
    fetches = 0
    known = 0
    start = time.perf_counter()
    while time.perf_counter() - start < budget:
        (_, values) = whisper.fetch(path, now - 86400, None, now=now)
        known += sum(1 for v in values if v is not None)
        fetches += 1
    fetch_secs = time.perf_counter() - start

print(json.dumps({
    "impl": "python-whisper-" + __import__("importlib.metadata").metadata.version("whisper"),
    "update_many_calls": calls,
    "update_many_points_per_s": round(calls * 60 / update_secs),
    "fetch_1d_per_s": round(fetches / fetch_secs, 1),
    "fetch_known_values": known // max(fetches, 1),
}))
