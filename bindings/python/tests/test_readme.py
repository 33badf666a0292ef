"""The README's Python example is examples/readme.py, run here, and pasted verbatim in README."""
import os
import subprocess
import sys
from pathlib import Path

from carbonlite import _lib
from conftest import ROOT

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "readme.py"


def test_readme_example_runs(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    # The example runs in another folder: hand it the very library this test process loaded.
    env["CARBONLITE_LIB"] = os.path.abspath(_lib.lib._name)
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "app.requests" in out.stdout and "42.0" in out.stdout, out.stdout


def test_readme_contains_the_example():
    assert EXAMPLE.read_text().strip() in (ROOT / "README.md").read_text()
