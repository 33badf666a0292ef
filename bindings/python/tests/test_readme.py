"""The README's examples are files the test suites run, pasted verbatim into README.md.

Python's is run here; hello.c/hello.cpp are built and run by `make check` and CMake; the Go
Example is run (with its Output checked) by `go test`. This test fails when README drifts.
"""
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
    assert "app.requests [None, None, None, 42.0, None]" in out.stdout, out.stdout
    assert "3 points written" in out.stdout, out.stdout


def snippets():
    go = (ROOT / "bindings/go/example_test.go").read_text()
    return {
        "python": EXAMPLE.read_text(),
        "c": (ROOT / "examples-c/hello.c").read_text(),
        "c++": (ROOT / "examples-c/hello.cpp").read_text(),
        "go": go[go.index("func Example() {"):],
    }


def test_readme_contains_every_example():
    readme = (ROOT / "README.md").read_text()
    for lang, text in snippets().items():
        assert f"```{lang if lang != 'c++' else 'cpp'}\n{text.strip()}\n```" in readme, lang
