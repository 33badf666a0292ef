"""Sends points through Graphite carbon's own relay client (carbon.client, pickle protocol)."""
import sys
from twisted.internet import reactor, defer
from carbon.conf import settings
from carbon.routers import ConsistentHashingRouter
from carbon.client import CarbonClientManager
from carbon import log, state, events
state.events = events

def main():
    host, port = sys.argv[1], int(sys.argv[2])
    settings.DESTINATION_PROTOCOL = "pickle"
    router = ConsistentHashingRouter(settings)
    manager = CarbonClientManager(router)
    dest = (host, port, None)
    lines = [l.split() for l in sys.stdin.read().splitlines() if l.strip()]

    @defer.inlineCallbacks
    def run():
        manager.startService()
        yield manager.startClient(dest)
        for name, value, ts in lines:
            manager.sendDatapoint(name, (float(ts), float(value)))
        yield manager.stopAllClients()
        reactor.stop()

    reactor.callWhenRunning(run)
    reactor.run()

main()
