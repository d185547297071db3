"""The suite's temporary files in memory (/dev/shm) when the machine has room there.

Everything a test writes goes to temporary directories: the session's PostgreSQL server, the clusters and state
directories that `agentlog up` and the restore tests make, `tmp_path`. On a disk-backed /tmp each CREATE DATABASE,
commit and file deletion waits on the disk (a quarter to half a second per test database on CI's machine, and the
embedded servers' initdb likewise); in memory it does not. Nothing a test checks depends on where the files are.

TMPDIR is set for the test process and so for every process it starts; a TMPDIR given by the caller is kept.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

MEMORY = Path("/dev/shm")
ROOM_NEEDED = 2 * 1024**3
"""Free bytes /dev/shm must have: a whole run needs a few hundred MB (every server's data directory at once)."""


def keep_temporary_files_in_memory() -> Path:
    """Point TMPDIR (and this process's `tempfile`) at a directory in /dev/shm, unless TMPDIR is already set or
    /dev/shm is missing or small; return the temporary directory in use."""
    if "TMPDIR" not in os.environ and _has_room(MEMORY):
        os.environ["TMPDIR"] = str(MEMORY)
        tempfile.tempdir = None  # pytest's capture asked already: ask again, with TMPDIR set
    return Path(tempfile.gettempdir())


def _has_room(directory: Path) -> bool:
    try:
        return directory.is_dir() and os.access(directory, os.W_OK) and shutil.disk_usage(directory).free >= ROOM_NEEDED
    except OSError:
        return False
