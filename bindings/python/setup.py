"""Bundles libcarbonlite.so into the package when one is found at build time.

Looked for in $CARBONLITE_LIB (a file), then ../../target/release (a checkout that ran
`cargo build --release`). Without one the package still installs, and at import time finds the
library through CARBONLITE_LIB or the system paths instead.
"""
import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _find_lib():
    env = os.environ.get("CARBONLITE_LIB")
    if env and Path(env).is_file():
        return Path(env)
    built = HERE.parent.parent / "target" / "release" / "libcarbonlite.so"
    return built if built.is_file() else None


class BuildPyWithLib(build_py):
    """build_py that also copies libcarbonlite.so next to the package's modules."""

    def run(self):
        super().run()
        lib = _find_lib()
        if lib is not None:
            dest = Path(self.build_lib) / "carbonlite" / "libcarbonlite.so"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(lib, dest)


setup(cmdclass={"build_py": BuildPyWithLib})
