"""Shared fixtures. Python whisper is the peer these tests compare with: missing, they fail."""
import os
from pathlib import Path

import pytest

try:
    import whisper  # noqa: F401
except ImportError as e:  # fail loudly, never skip: the comparison is the point of the suite
    raise ImportError(
        "python whisper==1.1.10 is required by the carbonlite tests: pip install whisper==1.1.10"
    ) from e

import carbonlite

#: The repository root (bindings/python/tests -> ../../..).
ROOT = Path(os.environ.get("CARBONLITE_ROOT", Path(__file__).resolve().parents[3]))

SCHEMAS = """\
[carbon]
pattern = ^carbon\\.
retentions = 60:90d

[multi]
pattern = ^multi\\.
retentions = 10s:10m,1m:2h,5m:1d

[default]
pattern = .*
retentions = 60s:1d
"""


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def schemas(tmp_path):
    p = tmp_path / "storage-schemas.conf"
    p.write_text(SCHEMAS)
    return p


@pytest.fixture
def carbon(data_dir, schemas):
    opts = f'[whisper]\nschemas-file = "{schemas}"\nworkers = 2\n'
    with carbonlite.Carbon(data_dir, opts) as c:
        yield c


def wsp(data_dir, name):
    """Where carbonlite stores plain metric `name`."""
    return str(Path(data_dir, *name.split(".")).with_suffix(".wsp"))
