"""Django settings for graphite-web reading a carbonlite cluster: query_settings.py with
CLUSTER_SERVERS taken from QUERY_CLUSTER ("host:port,host:port,..."; the nodes'
carbonserver addresses) and no carbonlink (the nodes' caches are read through carbonserver).
"""
import os

os.environ.setdefault("QUERY_CARBONLINK", "127.0.0.1:1")
os.environ.setdefault("QUERY_CARBONSERVER", "127.0.0.1:1")

from query_settings import *  # noqa: F401,F403,E402

CLUSTER_SERVERS = os.environ["QUERY_CLUSTER"].split(",")
CARBONLINK_HOSTS = []
REMOTE_FIND_TIMEOUT = 30.0
REMOTE_FETCH_TIMEOUT = 60.0
FIND_TIMEOUT = 30.0
FETCH_TIMEOUT = 60.0
