"""Compile the project's modules once, before the tests start the hundreds of Python processes they start.

Those processes (`agentlog` commands, `agentlog up`, agent workers, test helpers run with `python -m`) import the
project from this checkout. Where PYTHONDONTWRITEBYTECODE is set (CI's machine sets it), none of them writes what
it compiled, so each compiled every module it imported again: half a second of CPU for `agentlog up`. Compiling
explicitly writes the bytecode whatever that variable says; a module already up to date is skipped.
"""

from __future__ import annotations

import compileall
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agentlog", "eventstore", "domains", "projections", "handlers", "tests")
"""agentlog/ links to the layers beside it, and compileall follows no link: they are named on their own."""


def compile_the_project() -> None:
    for package in PACKAGES:
        compileall.compile_dir(ROOT / package, quiet=2, workers=1)
