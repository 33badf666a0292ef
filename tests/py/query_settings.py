"""Django settings for using graphite-web as a library against a carbonlite node.

graphite-web installs its package under <site-packages>/opt/graphite/webapp; the test script
puts that on sys.path. Addresses and directories come from the environment the Rust test
sets: QUERY_CARBONLINK and QUERY_CARBONSERVER ("127.0.0.1:port"), QUERY_TMP (a scratch dir).
"""
import os

from graphite.settings import *  # noqa: F401,F403  (graphite-web's defaults, then ours)

SECRET_KEY = "carbonlite-tests"
_tmp = os.environ["QUERY_TMP"]
STORAGE_DIR = _tmp
LOG_DIR = _tmp
INDEX_FILE = os.path.join(_tmp, "index")
WHISPER_DIR = os.path.join(_tmp, "no-local-whisper")
STANDARD_DIRS = []
CARBONLINK_HOSTS = [os.environ["QUERY_CARBONLINK"]]
CARBONLINK_TIMEOUT = 5.0
CLUSTER_SERVERS = [os.environ["QUERY_CARBONSERVER"]]
REMOTE_EXCLUDE_LOCAL = False
USE_WORKER_POOL = False
FIND_TIMEOUT = 10.0
FETCH_TIMEOUT = 10.0
FIND_CACHE_DURATION = 0
LOG_INFO_PERFORMANCE = False
LOG_RENDERING_PERFORMANCE = False
LOG_CACHE_PERFORMANCE = False
CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(_tmp, "g.db")}}
