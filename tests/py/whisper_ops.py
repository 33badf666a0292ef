#!/usr/bin/env python3
"""Peer for tests/whisper_compat.rs: runs JSON-described whisper operations with real
python whisper (1.1.10) and prints one result line per operation.

stdin: {"cases": [{"path": str, "ops": [op, ...]}, ...], "sets": [[int, ...], ...]}
ops:   ["create", [[spp, points], ...], xff, method, sparse]
       ["update", value, ts, now]
       ["update_many", [[ts, value], ...], now]
       ["fetch", from, until_or_null, now, spp_or_null]   (spp = archiveToSelect)
       ["set_agg", method, xff_or_null]
       ["info"]
stdout: per case "case <i>", then per op one of
       ok | none | err <ExceptionClass> | agg <old method>
       series <from> <until> <step> <value|None>...
       info <method> <maxRetention> <xff> <offset>,<spp>,<points>...
       and per entry of "sets": "set <int>..." (iteration order of set(list)).
Floats are printed with repr(), which round-trips exactly.
"""
import json
import sys

try:
    import whisper
except ImportError:
    sys.stderr.write("python whisper is missing: pip install whisper==1.1.10\n")
    sys.exit(3)


def run(op):
    kind = op[0]
    if kind == "create":
        _, archives, xff, method, sparse = op
        whisper.create(path, [tuple(a) for a in archives], xff, method, sparse=sparse)
        return "ok"
    if kind == "update":
        _, value, ts, now = op
        whisper.update(path, value, ts, now=now)
        return "ok"
    if kind == "update_many":
        _, points, now = op
        whisper.update_many(path, [tuple(p) for p in points], now=now)
        return "ok"
    if kind == "fetch":
        _, frm, until, now, spp = op
        res = whisper.fetch(path, frm, until, now=now, archiveToSelect=spp)
        if res is None:
            return "none"
        (start, end, step), values = res
        return " ".join(["series", str(start), str(end), str(step)] + [repr(v) for v in values])
    if kind == "set_agg":
        _, method, xff = op
        return "agg " + whisper.setAggregationMethod(path, method, xff)
    if kind == "info":
        h = whisper.info(path)
        parts = ["info", h["aggregationMethod"], str(h["maxRetention"]), repr(h["xFilesFactor"])]
        parts += ["%d,%d,%d" % (a["offset"], a["secondsPerPoint"], a["points"]) for a in h["archives"]]
        return " ".join(parts)
    raise ValueError("unknown op %r" % (kind,))


req = json.load(sys.stdin)
out = []
for i, case in enumerate(req.get("cases", [])):
    path = case["path"]
    out.append("case %d" % i)
    for op in case["ops"]:
        try:
            out.append(run(op))
        except Exception as e:  # the Rust side compares the class name
            out.append("err " + type(e).__name__)
for keys in req.get("sets", []):
    out.append("set " + " ".join(str(k) for k in set(keys)))
sys.stdout.write("\n".join(out) + "\n")
