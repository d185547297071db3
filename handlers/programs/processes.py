"""The operating system's side of agent programs: a program starts in a session of its own that dies with its
runner, carries a marker in its environment by which any runner on the machine knows it again, and is signalled as
a whole process group.

Dying with the runner (`PR_SET_PDEATHSIG`, Linux) is what keeps one copy of a program running: a runner killed with
kill -9 takes its programs' leaders with it, so the runner that takes over can start them again without finding
them still running on a machine it cannot see. What a leader started (a wrapper's child: `sh -c`, `uv run`, `npm`)
does not die with it; every process of a run carries the marker, so the runner that takes over on the same machine
stops them all by it, and a run that ends has what is left of it killed (its group, and every process marked
with it).
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
"""`<fleet>/<agent id>/<run>/<nonce>`: the fleet is the log's (two logs' runners on one machine never take each
other's programs for their own), the nonce the runner's that started it (its own clean-up never touches the same
run started again by a runner that took over)."""
PR_SET_PDEATHSIG = 1


def marker(fleet: str, agent_id: str, run: int, nonce: str) -> str:
    return f"{fleet}/{agent_id}/{run}/{nonce}"


@dataclass(frozen=True, slots=True)
class Marked:
    """A process of a run, found by its marker: the run's leader or anything it started."""

    pid: int
    agent_id: str
    run: int
    nonce: str
    pgid: int | None


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
    """Every process of this fleet's programs on this machine: each carries the marker in its environment, the
    run's leader and whatever it started (inherited), in its group or in a session of its own."""
    found: list[Marked] = []
    prefix = f"{MARKER}={fleet}/".encode()
    me = os.getpid()
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if prefix not in environ:
            continue
        for variable in environ.split(b"\0"):
            if variable.startswith(prefix):
                parts = variable[len(prefix) :].decode(errors="replace").split("/")
                pid = int(entry.name)
                if len(parts) == 3 and parts[1].isdigit() and _alive(pid):
                    found.append(Marked(pid, parts[0], int(parts[1]), parts[2], _group_of(pid)))
    return found


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def alive(pid: int) -> bool:
    return _alive(pid)


def of_run(marked: list[Marked], agent_id: str, run: int | None = None, nonce: str | None = None) -> list[int]:
    """The pids of the agent's processes (of one run, or of any; started by one runner, or by any)."""
    return [found.pid for found in marked if found.agent_id == agent_id and (run is None or found.run == run)
            and (nonce is None or found.nonce == nonce)]  # fmt: skip


async def kill_and_wait(pids: list[int], grace_s: float) -> None:
    """SIGTERM each process and its group, SIGKILL them after `grace_s`, and wait until all are gone (they need
    not be our children)."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    while living := [pid for pid in pids if _alive(pid)]:
        if loop.time() >= deadline:
            for pid in living:
                _signal(pid, signal.SIGKILL)
            deadline = float("inf")
        await asyncio.sleep(0.05)


def _signal(pid: int, signum: int) -> None:
    signal_group(pid, signum)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


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
