"""Prints where carbon's ConsistentHashingRouter (carbon.routers, the code carbon-relay runs)
places each metric name read from stdin: one line per name, destinations in the router's
order as `host:port:instance` (`host:port` without instance).

usage: ring_carbon.py HASH_TYPE REPLICATION DIVERSE(0|1) DEST [DEST ...] < names
"""
import sys
from types import SimpleNamespace

try:
    from carbon.routers import ConsistentHashingRouter
    from carbon.util import parseDestinations
except ImportError as e:  # the test must fail, not skip, without the peer
    sys.exit("python carbon is missing (GRAPHITE_NO_PREFIX=True pip install carbon): %s" % e)


def main():
    hash_type, repl, diverse = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    settings = SimpleNamespace(
        REPLICATION_FACTOR=repl, DIVERSE_REPLICAS=diverse, ROUTER_HASH_TYPE=hash_type
    )
    router = ConsistentHashingRouter(settings)
    for d in parseDestinations(sys.argv[4:]):
        router.addDestination(d)
    out = []
    for line in sys.stdin:
        name = line.rstrip("\n")
        dests = router.getDestinations(name)
        out.append(" ".join(
            "%s:%d" % (h, p) + ("" if i is None else ":" + i) for (h, p, i) in dests
        ))
    sys.stdout.write("\n".join(out) + "\n")


main()
