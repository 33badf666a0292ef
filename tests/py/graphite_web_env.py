"""Makes graphite-web importable as a library with a test settings module.

pip installs graphite-web's package under <prefix>/opt/graphite/webapp (its setup.cfg), which
is not on sys.path; the settings modules live beside this file.
"""
import os
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent


def setup(settings_module):
    """Puts graphite-web and tests/py on sys.path and starts Django with `settings_module`."""
    sys.path.insert(0, str(HERE))
    for base in {sysconfig.get_paths()["purelib"], sys.prefix}:
        webapp = Path(base) / "opt" / "graphite" / "webapp"
        if webapp.is_dir():
            sys.path.insert(0, str(webapp))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
    import django

    django.setup()
