#!/usr/bin/env python3
"""graphite-web, used as a library, against a running carbonlite node (driven by tests/query.rs).

    query_graphite_web.py carbonlink METRIC...       CarbonLinkPool.query / get_metadata with
                                                     pickle protocols 2-5, and a raw
                                                     cache-query-bulk; prints JSON
    query_graphite_web.py remote DATA_DIR PATTERN FROM UNTIL NOW
                                                     RemoteFinder.find_nodes + fetch against
                                                     carbonserver; every series must equal
                                                     whisper.fetch on the file; prints JSON

Environment: QUERY_CARBONLINK, QUERY_CARBONSERVER, QUERY_TMP (see query_settings.py).
Fails (non-zero exit) if graphite-web or whisper is missing: the comparison is the point.
"""
import json
import os
import pickle
import socket
import struct
import sys

import whisper

from graphite_web_env import setup

setup("query_settings")

from django.conf import settings  # noqa: E402
from graphite.carbonlink import CarbonLinkPool, CarbonLinkRequestError  # noqa: E402
from graphite.finders.remote import RemoteFinder  # noqa: E402
from graphite.finders.utils import FindQuery  # noqa: E402
from graphite.util import parseHosts, unpickle  # noqa: E402


def carbonlink(metrics):
    out = {"query": {}, "metadata": {}}
    for proto in (2, 3, 4, 5):
        settings.CARBONLINK_PICKLE_PROTOCOL = proto
        pool = CarbonLinkPool(parseHosts(settings.CARBONLINK_HOSTS), settings.CARBONLINK_TIMEOUT)
        for m in metrics:
            points = [[int(t), float(v)] for t, v in pool.query(m)]
            prev = out["query"].setdefault(m, points)
            assert prev == points, (proto, m, prev, points)
            try:
                out["metadata"][m] = pool.get_metadata(m, "aggregationMethod")
            except CarbonLinkRequestError as e:
                out["metadata"][m] = "error: %s" % e
    # cache-query-bulk: graphite-web 1.1 has no client call for it, so speak the frame directly.
    host, port = settings.CARBONLINK_HOSTS[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), 5) as s:
        def ask(req, proto):
            body = pickle.dumps(req, protocol=proto)
            s.sendall(struct.pack("!L", len(body)) + body)
            n = struct.unpack("!L", recv_exactly(s, 4))[0]
            return unpickle.loads(recv_exactly(s, n))
        bulk = ask({"type": "cache-query-bulk", "metrics": list(metrics)}, 5)
        out["bulk"] = {k: [[int(t), float(v)] for t, v in pts] for k, pts in bulk["datapointsByMetric"].items()}
        out["unknown"] = ask({"type": "set-color", "metric": "x"}, 2)
        out["no_type"] = ask({"metric": "x"}, 4)
        out["not_a_dict"] = ask(["cache-query", "x"], 3)
    print(json.dumps(out))


def recv_exactly(s, n):
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise EOFError("connection closed")
        buf += d
    return buf


def remote(data_dir, pattern, start, end, now):
    finder = RemoteFinder(settings.CLUSTER_SERVERS[0])
    nodes = finder.find_nodes(FindQuery(pattern, start, end))
    found = sorted((n.path, bool(n.is_leaf)) for n in nodes)
    series = finder.fetch([pattern], start, end, now=now)
    checked = []
    for s in sorted(series, key=lambda s: s["name"]):
        assert s["pathExpression"] == pattern, s
        path = os.path.join(data_dir, *s["name"].split(".")) + ".wsp"
        want = whisper.fetch(path, start, end, now=now)
        got = (tuple(s["time_info"]), list(s["values"]))
        assert want is not None, path
        assert (tuple(want[0]), list(want[1])) == got, (s["name"], want, got)
        checked.append({"name": s["name"], "time_info": list(got[0]), "known": sum(v is not None for v in got[1])})
    print(json.dumps({"found": found, "series": checked}))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "carbonlink":
        carbonlink(sys.argv[2:])
    elif len(sys.argv) == 7 and sys.argv[1] == "remote":
        remote(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    else:
        sys.exit(__doc__)
