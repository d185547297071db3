"""The operating system's side of agent programs: a program starts in a session of its own that dies with its
runner, carries a marker in its environment by which any runner on the machine knows it again, and is signalled as
a whole process group.

Dying with the runner (`PR_SET_PDEATHSIG`, Linux) is what keeps one copy of a program running: a runner killed with
kill -9 takes its programs with it, so the runner that takes over can start them again without finding them still
running on a machine it cannot see. Elsewhere programs outlive their runner, and the one that takes over on the same
machine stops them by their marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

MARKER = "AGENTLOG_PROGRAM_RUN"
"""`<fleet>/<agent id>/<run>`: the fleet is the database's (one per log), so two logs' runners on one machine never
take each other's programs for their own."""
PR_SET_PDEATHSIG = 1


def marker(fleet: str, agent_id: str, run: int) -> str:
    return f"{fleet}/{agent_id}/{run}"


@dataclass(frozen=True, slots=True)
class Marked:
    """A running program found by its marker."""

    pid: int
    agent_id: str
    run: int


def _die_with_runner() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def die_with_runner() -> None:  # runs in the child between fork and exec
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    return die_with_runner


DIE_WITH_RUNNER = _die_with_runner()


async def start(
    command: Sequence[str], env: Mapping[str, str], working_dir: str | None, output: IO[bytes]
) -> asyncio.subprocess.Process:
    """Start `command` as the leader of a new session (its group is signalled as one), its output to `output`."""
    return await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=output,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(env),
        cwd=working_dir,
        start_new_session=True,
        preexec_fn=DIE_WITH_RUNNER,  # prctl only: nothing that could deadlock after fork
    )


def signal_group(pid: int, signum: int) -> bool:
    """Send `signum` to the program's whole process group; False when there is none any more."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def marked_processes(fleet: str) -> list[Marked]:
    """Every program of this fleet running on this machine: session leaders whose environment carries the marker
    (a process the program started inherits it, but leads no session of its own, unless it made one)."""
    found: list[Marked] = []
    prefix = f"{MARKER}={fleet}/".encode()
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            environ = (entry / "environ").read_bytes()
            if prefix not in environ or os.getsid(pid) != pid:
                continue
        except OSError:
            continue
        for variable in environ.split(b"\0"):
            if variable.startswith(prefix):
                agent_id, _, run = variable[len(prefix) :].decode(errors="replace").rpartition("/")
                if run.isdigit():
                    found.append(Marked(pid, agent_id, int(run)))
    return found


async def kill_and_wait(pid: int, grace_s: float) -> None:
    """SIGTERM the group, SIGKILL it after `grace_s`, and wait until the leader is gone (it is not our child)."""
    if not signal_group(pid, signal.SIGTERM):
        return
    deadline = asyncio.get_running_loop().time() + grace_s
    while _alive(pid):
        if asyncio.get_running_loop().time() >= deadline:
            signal_group(pid, signal.SIGKILL)
            deadline = float("inf")
        await asyncio.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, 0)
            return True
        return False
    return state not in {b"Z", b"X"}
