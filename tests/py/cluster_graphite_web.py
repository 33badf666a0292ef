#!/usr/bin/env python3
"""graphite-web, used as a library, against a carbonlite cluster (driven by tests/cluster_node.rs).

    cluster_graphite_web.py PATTERN FROM UNTIL NOW

Finds PATTERN with graphite.storage.STORE (one RemoteFinder per CLUSTER_SERVERS entry, the
way a graphite-web front end reads carbon nodes) and renders it with STORE.fetch. Prints JSON:
{"found": [leaf paths], "values": {name: [non-None values]}}.
Environment: QUERY_CLUSTER, QUERY_TMP (see cluster_settings.py). Fails if graphite-web is missing.
"""
import json
import sys

from graphite_web_env import setup

setup("cluster_settings")

from graphite.storage import STORE  # noqa: E402


def main(pattern, start, end, now):
    nodes = list(STORE.find(pattern, start, end))
    found = sorted(n.path for n in nodes if n.is_leaf)
    series = STORE.fetch([pattern], start, end, now, {"localOnly": False})
    values = {}
    for s in series:
        values[s["name"]] = [v for v in s["values"] if v is not None]
    print(json.dumps({"found": found, "values": values}))


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
