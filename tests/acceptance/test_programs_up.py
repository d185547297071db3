"""Agent programs under `agentlog up` (issue 13 item 2, seed 003): an admin defines the command line an agent runs
as, people start, stop and restart it through the API, the runner runs it as a real process; a crash is restarted
up to the limit, a stop escalates to SIGKILL after the grace, and `up` killed with SIGKILL, stopped, or replaced
by a second `up` never leaves a program running twice or not at all."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentlog.eventstore import EventStore
from tests.support.gazetteer import with_gazetteer_index
from tests.support.system import ROOT, RunningSystem, token_for

pytestmark = pytest.mark.slow


def api_of(system: RunningSystem) -> str:
    return system.document_url.replace("ws://", "http://").removesuffix("/doc")


async def client_for(system: RunningSystem, database_url: str, name: str, kind: str) -> httpx.AsyncClient:
    token = await token_for(database_url, name, kind)  # type: ignore[arg-type]
    return httpx.AsyncClient(base_url=f"{api_of(system)}/api/v1", headers={"authorization": f"Bearer {token}"},
                             timeout=30)  # fmt: skip


def program(*arguments: str, **policy: Any) -> dict[str, Any]:
    return {"command": [sys.executable, "-m", "tests.support.program", *arguments], "working_dir": str(ROOT),
            "restart_delay_s": 0.1, "stop_grace_s": 1.0, **policy}  # fmt: skip


async def until(client: httpx.AsyncClient, agent_id: str, accept: Callable[[dict[str, Any]], bool],
                timeout: float = 30) -> dict[str, Any]:  # fmt: skip
    """The program's state once `accept` takes it."""
    deadline = time.monotonic() + timeout
    while True:
        state: dict[str, Any] = (await client.get(f"/programs/{agent_id}")).json()
        if accept(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"program {agent_id} never got there; last: {state}")
        await asyncio.sleep(0.1)


def running(run: int, *, registered: bool = False) -> Callable[[dict[str, Any]], bool]:
    """Running run `run`; `registered`: its agent registered too (it is started up: its signal handlers are in)."""
    return lambda state: state["status"] == "running" and state["run"] == run and (
        not registered or state["health"] == "healthy")  # fmt: skip


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return stat.read().rpartition(b")")[2].split()[0] not in {b"Z", b"X"}


async def said(home: Path, agent_id: str, line: str, timeout: float = 30) -> None:
    """Wait until the program's output (which the runner keeps in the home) has `line`."""
    output = home / "programs" / f"{agent_id}.log"
    deadline = time.monotonic() + timeout
    while not output.exists() or line not in output.read_text():
        assert time.monotonic() < deadline, f"{agent_id} never said {line!r}"
        await asyncio.sleep(0.05)


async def wait_gone(pid: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still runs"
        await asyncio.sleep(0.05)


async def stream_types(database_url: str, agent_id: str) -> list[str]:
    async with EventStore.open(database_url) as store:
        return [recorded.event_type for recorded in await store.read_stream(f"program-{agent_id}")]


async def test_start_crash_restart_stop_through_the_api(database_url: str, tmp_path: Path) -> None:
    system = RunningSystem(database_url, with_gazetteer_index(tmp_path / "home"), tmp_path / "up.log").start()
    try:
        async with await client_for(system, database_url, "root", "admin") as admin, \
                await client_for(system, database_url, "ada", "person") as ada, \
                await client_for(system, database_url, "p1", "agent") as agent:  # fmt: skip
            assert (await ada.put("/programs/p1", json=program())).status_code == 403  # an admin's only
            assert (await ada.post("/agents/p1/start", json={})).status_code == 404  # no program yet
            defined = await admin.put("/programs/p1", json=program(max_restarts=1))
            assert defined.status_code == 200 and defined.json()["status"] == "stopped", defined.text
            assert (await agent.post("/agents/p1/start", json={})).status_code == 403  # people and admins start it

            assert (await ada.post("/agents/p1/start", json={"reason": "go"})).status_code == 200
            first = await until(ada, "p1", lambda state: running(1)(state) and state["health"] == "healthy")
            again = await ada.post("/agents/p1/start", json={})
            assert again.status_code == 409 and again.json()["code"] == "running", again.text
            log = (tmp_path / "home" / "programs" / "p1.log").read_text()
            assert "registered p1 run 1" in log

            os.kill(first["pid"], signal.SIGKILL)  # a crash: started again, as run 2
            second = await until(ada, "p1", running(2))
            assert second["pid"] != first["pid"] and second["restart"] == 1
            os.kill(second["pid"], signal.SIGKILL)  # max_restarts 1: no third run
            stopped = await until(ada, "p1", lambda state: state["status"] == "stopped")
            assert "max_restarts 1" in stopped["reason"] and stopped["last_exit_code"] == -9

            assert (await ada.post("/agents/p1/restart", json={})).status_code == 200  # from stopped: a start
            third = await until(ada, "p1", running(3))
            await said(tmp_path / "home", "p1", "registered p1 run 3")  # started up: its SIGTERM handler is in
            assert third["restart"] == 0
            assert (await ada.post("/agents/p1/stop", json={})).status_code == 200
            done = await until(ada, "p1", lambda state: state["status"] == "stopped")
            assert done["last_exit_code"] == 0 and done["reason"] == "stopped as asked"  # SIGTERM, ended at once
            await wait_gone(third["pid"])

            listed = (await ada.get("/programs")).json()
            assert [(row["agent_id"], row["runs_started"], row["crashes"]) for row in listed] == [("p1", 3, 2)]
        # Each run's proven-run timer is decided after its ProgramRunning, and may come after a quick exit: not here.
        types = await stream_types(database_url, "p1")
        assert [kind for kind in types if kind != "TimerScheduled"] == [
            "ProgramDefined", "ProgramStartRequested", "ProgramStarting", "ProgramRunning",
            "ProgramExited", "ProgramErrored", "TimerFired", "ProgramStarting", "ProgramRunning",
            "ProgramExited", "ProgramStopped", "ProgramRestartRequested", "ProgramStarting",
            "ProgramRunning", "ProgramStopRequested", "ProgramStopping", "ProgramExited", "ProgramStopped",
        ]  # fmt: skip
        assert types.count("TimerScheduled") == 4  # the restart timer, and each of the three runs' proven timers
    finally:
        assert system.stop() == 0


async def test_a_program_deaf_to_sigterm_is_killed_after_its_grace(database_url: str, tmp_path: Path) -> None:
    system = RunningSystem(database_url, with_gazetteer_index(tmp_path / "home"), tmp_path / "up.log").start()
    try:
        async with await client_for(system, database_url, "root", "admin") as admin:
            await admin.put("/programs/deaf", json=program("--ignore-term", stop_grace_s=0.5))
            await admin.post("/agents/deaf/start", json={})
            started = await until(admin, "deaf", running(1, registered=True))
            asked = time.monotonic()
            await admin.post("/agents/deaf/stop", json={})
            stopped = await until(admin, "deaf", lambda state: state["status"] == "stopped")
            assert stopped["last_exit_code"] == -signal.SIGKILL and time.monotonic() - asked >= 0.5
            await wait_gone(started["pid"])
    finally:
        assert system.stop() == 0


async def test_up_killed_takes_its_programs_along_and_the_next_up_starts_them(
    database_url: str, tmp_path: Path
) -> None:
    home = with_gazetteer_index(tmp_path / "home")
    system = RunningSystem(database_url, home, tmp_path / "up.log").start()
    async with await client_for(system, database_url, "root", "admin") as admin:
        await admin.put("/programs/p1", json=program())
        await admin.post("/agents/p1/start", json={})
        first = await until(admin, "p1", running(1))
    assert system.stop(signal.SIGKILL) == -signal.SIGKILL
    await wait_gone(first["pid"], timeout=5)  # it died with its runner: nothing left to run twice

    system = RunningSystem(database_url, home, tmp_path / "up.log").start()
    try:
        async with await client_for(system, database_url, "root", "admin") as admin:
            second = await until(admin, "p1", running(2))
            await said(home, "p1", "registered p1 run 2")
            assert second["restart"] == 0  # not the program's crash: no restart counted
        types = await stream_types(database_url, "p1")
        assert types[-4:] == ["ProgramExited", "ProgramStarting", "ProgramRunning", "TimerScheduled"], types
    finally:
        assert system.stop() == 0
    # Stopped in order: its program stopped with it, and waits to start with the next runner.
    await wait_gone(second["pid"])
    async with EventStore.open(database_url) as store:
        last = [store.decode(recorded) for recorded in await store.read_stream("program-p1")][-2:]
    assert [event.event_type for event in last] == ["ProgramExited", "ProgramStarting"]
    assert getattr(last[0], "runner_left") is True and getattr(last[0], "exit_code") == 0  # noqa: B009

    # The next `up` starts that very run (whether or not the stopping runner was shown its start), and no other.
    system = RunningSystem(database_url, home, tmp_path / "up.log").start()
    try:
        async with await client_for(system, database_url, "root", "admin") as admin:
            third = await until(admin, "p1", running(3))
            await asyncio.sleep(1.0)
            assert (await admin.get("/programs/p1")).json()["run"] == 3 and alive(third["pid"])
    finally:
        assert system.stop() == 0


async def test_two_ups_run_each_program_once_and_the_standby_takes_over(database_url: str, tmp_path: Path) -> None:
    first = RunningSystem(database_url, with_gazetteer_index(tmp_path / "h1"), tmp_path / "m1.log",
                          manager_id="m1").start()  # fmt: skip
    second = RunningSystem(database_url, with_gazetteer_index(tmp_path / "h2"), tmp_path / "m2.log",
                           manager_id="m2").start()  # fmt: skip
    try:
        async with await client_for(second, database_url, "root", "admin") as admin:
            for n in range(3):
                await admin.put(f"/programs/p{n}", json=program())
                await admin.post(f"/agents/p{n}/start", json={})
            states = [await until(admin, f"p{n}", running(1)) for n in range(3)]
            runner_pid = await _runner_pid(database_url)
            active, standby = (first, second) if runner_pid == first.pid else (second, first)
            assert runner_pid == active.pid
            active.stop(signal.SIGKILL)
            for state in states:
                await wait_gone(state["pid"], timeout=5)
        async with await client_for(standby, database_url, "root", "admin") as admin:
            for n in range(3):
                await until(admin, f"p{n}", running(2))
            assert await _runner_pid(database_url) == standby.pid
    finally:
        for system in (first, second):
            system.stop()


async def _runner_pid(database_url: str) -> int:
    """The `up` whose runner recorded the latest run (from the `runner` field: host:pid)."""
    async with EventStore.open(database_url) as store:
        runners = [store.decode(recorded) for recorded in await store.read_stream("program-p0")]
    return int(str([event for event in runners if event.event_type == "ProgramRunning"][-1].runner).split(":")[1])  # type: ignore[attr-defined]
