"""Agent programs attacked (the hostile review of the program runner): a handover interrupted by the turn coming
back, programs whose leader leaves children behind (a crash, `up` killed with SIGKILL), a takeover on the same
machine, and an `up` on a copy of the database. Each of these lost an exit, ran a program twice, counted a
takeover as a crash or killed another log's program before it was fixed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.acceptance.test_programs_up import alive, client_for, running, stream_types, until, wait_gone
from tests.support.gazetteer import with_gazetteer_index
from tests.support.partition import FreezableProxy, OtherHostSystem, other_machines_possible
from tests.support.system import RunningSystem, query

pytestmark = pytest.mark.slow

ACTIVE_RUNNER = """
SELECT a.pid FROM pg_stat_activity AS a JOIN pg_locks AS l ON l.pid = a.pid
 WHERE a.application_name = 'agentlog handler program-runner' AND l.locktype = 'advisory' AND l.granted
"""
RUNNER_LOCK = "SELECT pg_advisory_lock(1095524685, hashtext('program-runner'))"
IGNORES_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); " \
               "time.sleep(600)"  # fmt: skip


async def events_of(database_url: str, agent_id: str) -> list[Any]:
    from agentlog.eventstore import EventStore

    async with EventStore.open(database_url) as store:
        return [store.decode(recorded) for recorded in await store.read_stream(f"program-{agent_id}")]


def pids_in(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


async def test_a_turn_regained_while_handing_over_still_records_the_end(
    database_url: str, owner_database_url: str, tmp_path: Path
) -> None:
    """Cut off past `handover_s`, the runner stops its programs (SIGTERM, waiting out the grace) and forgets them;
    its turn came back within the grace and cancelled the handover half-way: the program stayed `running` in the
    log, a later stop killed it, no exit was ever recorded, and it was `stopping` for good."""
    system = RunningSystem(database_url, with_gazetteer_index(tmp_path / "home"), tmp_path / "up.log",
                           program_handover_s="1").start()  # fmt: skip
    try:
        async with await client_for(system, database_url, "root", "admin") as admin:
            await admin.put("/programs/p", json={"command": [sys.executable, "-c", IGNORES_TERM], "stop_grace_s": 4,
                                                 "max_restarts": 5, "restart_delay_s": 0.1})  # fmt: skip
            await admin.post("/agents/p/start", json={})
            first = await until(admin, "p", running(1))
            output = tmp_path / "home" / "programs" / "p.log"
            while "ready" not in (output.read_text() if output.exists() else ""):
                await asyncio.sleep(0.05)
            (row,) = await query(owner_database_url, ACTIVE_RUNNER)
            holder = await asyncpg.connect(owner_database_url)  # a partition: its session gone, its lock kept away
            await holder.execute("SELECT pg_terminate_backend($1)", row["pid"])
            await holder.execute(RUNNER_LOCK)
            await asyncio.sleep(2.0)  # past handover_s: it is stopping its program, within the grace
            await holder.close()  # its turn comes back mid-handover
            second = await until(admin, "p", running(2), timeout=30)  # the end recorded, the next run started
            await wait_gone(first["pid"])
            assert (await admin.post("/agents/p/stop", json={})).status_code == 200
            stopped = await until(admin, "p", lambda state: state["status"] == "stopped", timeout=30)
            assert stopped["run"] == 2
            await wait_gone(second["pid"])
    finally:
        assert system.stop() == 0


async def test_what_a_crashed_leader_started_goes_with_it(database_url: str, tmp_path: Path) -> None:
    """A run whose leader forked a child and crashed left the child running: after three runs and `stopped`, three
    children of the program still ran."""
    children = tmp_path / "children"
    script = f"sleep 600 & echo $! >> {children}; sleep 0.3; exit 3"
    system = RunningSystem(database_url, with_gazetteer_index(tmp_path / "home"), tmp_path / "up.log").start()
    try:
        async with await client_for(system, database_url, "root", "admin") as admin:
            await admin.put("/programs/forker", json={"command": ["/bin/sh", "-c", script], "max_restarts": 2,
                                                      "restart_delay_s": 0.1, "stop_grace_s": 1})  # fmt: skip
            await admin.post("/agents/forker/start", json={})
            await until(admin, "forker", lambda state: state["status"] == "stopped" and state["run"] == 3)
            assert len(pids_in(children)) == 3
            for pid in pids_in(children):
                await wait_gone(pid, timeout=5)
    finally:
        kill_all(pids_in(children))
        assert system.stop() == 0


async def test_up_killed_leaves_no_child_of_a_program_to_run_beside_its_next_run(
    database_url: str, tmp_path: Path
) -> None:
    """`up` killed with SIGKILL took the program's leader along (PR_SET_PDEATHSIG) but not the child it started
    (a wrapper's: sh, uv, npm), and the next `up` started the program again beside it."""
    children = tmp_path / "children"
    script = f"sleep 600 & echo $! >> {children}; wait"
    home = with_gazetteer_index(tmp_path / "home")
    system = RunningSystem(database_url, home, tmp_path / "up.log").start()
    try:
        async with await client_for(system, database_url, "root", "admin") as admin:
            await admin.put("/programs/wrapped", json={"command": ["/bin/sh", "-c", script], "stop_grace_s": 1})
            await admin.post("/agents/wrapped/start", json={})
            first = await until(admin, "wrapped", running(1))
            while not pids_in(children):
                await asyncio.sleep(0.05)
        system.stop(signal.SIGKILL)
        await wait_gone(first["pid"], timeout=5)
        system = RunningSystem(database_url, home, tmp_path / "up.log").start()
        async with await client_for(system, database_url, "root", "admin") as admin:
            await until(admin, "wrapped", running(2))
            deadline = time.monotonic() + 15
            while len(pids_in(children)) < 2:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            first_child, second_child = pids_in(children)
            await wait_gone(first_child, timeout=10)
            assert alive(second_child)
    finally:
        kill_all(pids_in(children))
        system.stop()


async def test_a_takeover_on_the_same_machine_is_no_crash_of_the_programs(
    database_url: str, owner_database_url: str, tmp_path: Path
) -> None:
    """The active runner's session cut (its pool still working), the standby took over and stopped the program to
    start it again itself; the old runner saw the exit first and recorded it as the program's own: with
    `max_restarts` 0 the takeover stopped the program for good."""
    first = RunningSystem(database_url, with_gazetteer_index(tmp_path / "h1"), tmp_path / "m1.log",
                          manager_id="m1").start()  # fmt: skip
    await asyncio.sleep(1)  # the first one's runner has the turn
    second = RunningSystem(database_url, with_gazetteer_index(tmp_path / "h2"), tmp_path / "m2.log",
                           manager_id="m2", handler_lock_retry_s="0.01").start()  # fmt: skip
    try:
        async with await client_for(second, database_url, "root", "admin") as admin:
            await admin.put("/programs/p", json={"command": ["sleep", "600"], "max_restarts": 0, "stop_grace_s": 1})
            await admin.post("/agents/p/start", json={})
            await until(admin, "p", running(1))
            runner = [e for e in await events_of(database_url, "p") if e.event_type == "ProgramRunning"][-1].runner
            assert runner.endswith(f":{first.pid}"), runner
            (row,) = await query(owner_database_url, ACTIVE_RUNNER)
            await query(owner_database_url, "SELECT pg_terminate_backend($1)", row["pid"])
            await until(admin, "p", running(2))
        exits = [e for e in await events_of(database_url, "p") if e.event_type == "ProgramExited"]
        assert [(e.run, e.runner_left) for e in exits] == [(1, True)], exits
    finally:
        for system in (first, second):
            system.stop()


async def test_an_up_on_a_copy_of_the_database_leaves_the_originals_programs_alone(
    database_url: str, owner_database_url: str, postgres_server: Any, template_database: str, tmp_path: Path
) -> None:
    """A copy of the database (a restored backup, a staging clone) carried the fleet id that marks the programs'
    processes: an `up` on it, on the same machine, took the original's program for a stray and killed it."""
    name = f"agentlog_copy_{uuid.uuid4().hex[:10]}"
    janitor = postgres_server.janitor(name, template=template_database)
    janitor.init()
    production = RunningSystem(database_url, with_gazetteer_index(tmp_path / "h1"), tmp_path / "m1.log").start()
    staging = None
    try:
        async with await client_for(production, database_url, "root", "admin") as admin:
            await admin.put("/programs/p", json={"command": ["sleep", "600"]})
            await admin.post("/agents/p/start", json={})
            first = await until(admin, "p", running(1))
            fleet_of = "SELECT value FROM agentlog.secrets WHERE name = 'program-runner/fleet'"
            (fleet,) = await query(owner_database_url, fleet_of)  # what a dump and restore carries over
            await query(postgres_server.database_url(name),
                        "INSERT INTO agentlog.secrets (name, value) VALUES ('program-runner/fleet', $1)",
                        fleet["value"])  # fmt: skip
            staging = RunningSystem(postgres_server.application_url(name), with_gazetteer_index(tmp_path / "h2"),
                                    tmp_path / "m2.log").start()  # fmt: skip
            staging.wait_for_log(lambda line: line.get("event") == "handler.active"
                                 and line.get("handler") == "program-runner", 30)  # fmt: skip
            await asyncio.sleep(1.0)
            assert alive(first["pid"]), "the copy's runner killed the original's program"
            assert await stream_types(database_url, "p") == [
                "ProgramDefined", "ProgramStartRequested", "ProgramStarting", "ProgramRunning", "TimerScheduled"]
    finally:
        if staging is not None:
            staging.stop()
        production.stop()
        janitor.drop()


# -- the second hostile review ------------------------------------------------------------------------------------


@pytest.mark.skipif(not other_machines_possible(), reason="no namespaces here to make `up` another machine")
async def test_a_partitioned_runner_stops_its_program_before_another_machine_starts_it(
    database_url: str, owner_database_url: str, tmp_path: Path
) -> None:
    """A partition ends no session on the cut-off side (its next statement just waits), so its runner never
    handed over, while the runner on another machine took the turn once the server dropped the sessions and started
    the program `handover_s` and its grace later: two copies for as long as the partition lasted."""
    proxy = FreezableProxy(database_url)
    a = RunningSystem(proxy.url(), with_gazetteer_index(tmp_path / "ha"), tmp_path / "a.log", manager_id="ma",
                      program_handover_s="2").start()  # fmt: skip
    await asyncio.sleep(1.0)  # A's runner has the turn
    b = OtherHostSystem(database_url, with_gazetteer_index(tmp_path / "hb"), tmp_path / "b.log", manager_id="mb",
                        program_handover_s="2").start()  # fmt: skip
    try:
        async with await client_for(b, database_url, "root", "admin") as admin:
            await admin.put("/programs/p", json={"command": ["sleep", "600"], "stop_grace_s": 1})
            await admin.post("/agents/p/start", json={})
            first = await until(admin, "p", running(1))
            proxy.freeze()
            # The server notices the vanished client (its keepalives) and drops its sessions; here at once:
            await query(owner_database_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE client_port = ANY($1::int[])", list(proxy.upstream_ports))  # fmt: skip
            second = await until(admin, "p", running(2), timeout=60)
            assert second["host"] == "otherhost" and not alive(first["pid"]), "two copies ran"
        assert any(line.get("event") == "programs.lease_expired" for line in a.log_lines())
    finally:
        proxy.thaw()
        for system in (a, b):
            system.stop(signal.SIGKILL)
        proxy.close()


async def test_a_takeover_on_the_same_machine_waits_for_a_program_that_hides_its_marker(
    database_url: str, owner_database_url: str, tmp_path: Path
) -> None:
    """A program whose environment no longer shows the marker (`env -i`, or setproctitle, which reuses it) was
    taken for gone by the runner taking over on the same machine, and started again beside the one the cut-off
    runner still held."""
    first = RunningSystem(database_url, with_gazetteer_index(tmp_path / "h1"), tmp_path / "m1.log",
                          manager_id="m1", program_handover_s="2").start()  # fmt: skip
    await asyncio.sleep(1.0)
    second = RunningSystem(database_url, with_gazetteer_index(tmp_path / "h2"), tmp_path / "m2.log",
                           manager_id="m2", handler_lock_retry_s="0.01").start()  # fmt: skip
    try:
        async with await client_for(second, database_url, "root", "admin") as admin:
            await admin.put("/programs/p", json={"command": ["env", "-i", "sleep", "600"], "stop_grace_s": 1})
            await admin.post("/agents/p/start", json={})
            one = await until(admin, "p", running(1))
            (row,) = await query(owner_database_url, ACTIVE_RUNNER)
            await query(owner_database_url, "SELECT pg_terminate_backend($1)", row["pid"])
            two = await until(admin, "p", running(2))
            assert not alive(one["pid"]), "the program ran twice"
            assert alive(two["pid"])
    finally:
        for system in (first, second):
            system.stop()


async def test_the_old_runners_clean_up_leaves_the_new_runners_run_alone(
    database_url: str, owner_database_url: str, tmp_path: Path
) -> None:
    """A takeover while a start was in flight: the old runner spawned run 2, its batch rolled back with its session;
    the new runner stopped that process and started run 2 itself, with the same marker, and the old runner's
    clean-up of its own run 2 then killed every process carrying it: the new one, recorded as a crash."""
    a = RunningSystem(database_url, with_gazetteer_index(tmp_path / "h1"), tmp_path / "m1.log",
                      manager_id="m1").start()  # fmt: skip
    await asyncio.sleep(1.0)
    b = RunningSystem(database_url, with_gazetteer_index(tmp_path / "h2"), tmp_path / "m2.log", manager_id="m2",
                      handler_lock_retry_s="0.01").start()  # fmt: skip
    planted: subprocess.Popen[bytes] | None = None
    try:
        async with await client_for(b, database_url, "root", "admin") as admin:
            await admin.put("/programs/p", json={"command": ["sleep", "600"], "max_restarts": 0, "stop_grace_s": 3})
            await admin.post("/agents/p/start", json={})
            one = await until(admin, "p", running(1))
            fleet = fleet_of(one["pid"])
            # A leftover of an earlier run, deaf to SIGTERM: the start of run 2 waits out its grace first.
            planted = subprocess.Popen([sys.executable, "-c", IGNORES_TERM], stdout=subprocess.DEVNULL,
                                       env={**os.environ, "AGENTLOG_PROGRAM_RUN": f"{fleet}/p/0/planted"})  # fmt: skip
            await asyncio.sleep(0.5)
            await admin.post("/agents/p/restart", json={})
            await until(admin, "p", lambda state: state["status"] == "starting" and state["run"] == 2)
            holder = await asyncpg.connect(owner_database_url)
            await holder.execute("SELECT pg_advisory_lock(1095524683, hashtext('program-p'))")  # its append waits
            while not marked_with(f"{fleet}/p/2/"):
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
            os.kill(a.pid, signal.SIGSTOP)  # any stall of its loop longer than the other's poll does the same
            (row,) = await query(owner_database_url, ACTIVE_RUNNER)
            await query(owner_database_url, "SELECT pg_terminate_backend($1)", row["pid"])  # rolled back
            await holder.close()
            two = await until(admin, "p", running(2))
            os.kill(a.pid, signal.SIGCONT)
            await asyncio.sleep(3)
            assert alive(two["pid"]), "the old runner's clean-up killed the new runner's run"
            assert (await admin.get("/programs/p")).json()["status"] == "running"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(a.pid, signal.SIGCONT)
        if planted is not None:
            planted.kill()
            planted.wait()
        for system in (a, b):
            system.stop()


async def test_a_second_stop_signal_kills_programs_still_stopping(database_url: str, tmp_path: Path) -> None:
    """`up` stopping waits out its programs' stop grace while it holds the runner's turn (no standby can start
    them meanwhile); a second SIGINT did not hurry it."""
    system = RunningSystem(database_url, with_gazetteer_index(tmp_path / "home"), tmp_path / "up.log").start()
    async with await client_for(system, database_url, "root", "admin") as admin:
        await admin.put("/programs/deaf", json={"command": [sys.executable, "-c", IGNORES_TERM], "stop_grace_s": 60})
        await admin.post("/agents/deaf/start", json={})
        started = await until(admin, "deaf", running(1))
    output = tmp_path / "home" / "programs" / "deaf.log"
    while "ready" not in (output.read_text() if output.exists() else ""):
        await asyncio.sleep(0.05)
    assert system.process is not None
    asked = time.monotonic()
    system.process.send_signal(signal.SIGINT)
    await asyncio.sleep(1.0)
    assert system.stop(signal.SIGINT, timeout=20) == 0 and time.monotonic() - asked < 20
    await wait_gone(started["pid"], timeout=5)
    exited = [e for e in await events_of(database_url, "deaf") if e.event_type == "ProgramExited"]
    assert [(e.exit_code, e.runner_left) for e in exited] == [(-signal.SIGKILL, True)]


def fleet_of(pid: int) -> str:
    """The fleet in a program's marker."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    marker = next(value for value in environ if value.startswith(b"AGENTLOG_PROGRAM_RUN="))
    return marker.decode().split("=", 1)[1].split("/")[0]


def marked_with(prefix: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if f"AGENTLOG_PROGRAM_RUN={prefix}".encode() in (entry / "environ").read_bytes() and alive(
                    int(entry.name)
                ):
                    found.append(int(entry.name))
    return found
