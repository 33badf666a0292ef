"""Builds a whisper file with python whisper for tests/cli_compat.rs.

Usage: cli_make.py SPEC_JSON
SPEC_JSON: {"path": str, "archives": [[spp, points], ...], "xff": float,
            "method": str, "now": int, "points": [[ts, value], ...]}
Values may be the strings "inf"/"-inf". Points are written with update_many(now=now).
"""
import json
import sys

import whisper

spec = json.loads(sys.argv[1])
whisper.create(spec["path"], [tuple(a) for a in spec["archives"]],
               xFilesFactor=spec["xff"], aggregationMethod=spec["method"])
points = [(int(t), float(v)) for t, v in spec["points"]]
if points:
    whisper.update_many(spec["path"], points, now=spec["now"])
