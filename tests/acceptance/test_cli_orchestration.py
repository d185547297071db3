"""`agentlog task`, `agentlog budget` and `agentlog schedule` as a person runs them: real processes against a
real API, its rules holding for them (a cycle, a malformed cron, a priority out of range, a person's token where
an admin's is needed, a NUL in a payload, a time zone that is no IANA zone: one line on stderr, the exit code,
nothing appended), and an API that is not there named."""

from __future__ import annotations

import asyncio
import json
import subprocess

from agentlog.eventstore import EventStore
from tests.acceptance.test_cli import AGENTLOG, ROOT, environment
from tests.support.api import api_running


async def agentlog(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([*AGENTLOG, *arguments], env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip

    return await asyncio.to_thread(run)  # the API answering it runs on this test's loop


async def test_tasks_and_budgets_from_the_command_line(store: EventStore, database_url: str) -> None:
    async with api_running(store) as api:
        env = environment(AGENTLOG_DATABASE_URL=database_url, AGENTLOG_URL=api.url)
        created = await agentlog("task", "create", "build", "--id", "b1", "--priority", "8", "--payload",
                                 '{"target": "wheel"}', "--capability", "python", env=env)  # fmt: skip
        assert created.returncode == 0, created.stderr
        assert json.loads(created.stdout)["status"] == "queued"
        after = await agentlog("task", "create", "test", "--id", "t1", "--depends-on", "b1", env=env)
        assert after.returncode == 0, after.stderr
        before = await api.event_count()

        cycle = await agentlog("task", "create", "x", "--id", "b2", "--depends-on", "t1", "--depends-on", "b2", env=env)
        assert cycle.returncode == 3 and "depends_on" in cycle.stderr, cycle.stderr
        exists = await agentlog("task", "create", "build", "--id", "b1", env=env)
        assert exists.returncode == 4 and "exists already" in exists.stderr, exists.stderr
        bad = await agentlog("task", "create", "x", "--priority", "11", env=env)
        assert bad.returncode == 3 and "priority" in bad.stderr, bad.stderr
        person = {**env, "AGENTLOG_TOKEN": api.token("person", "ada")}
        refused = await agentlog("budget", "set", "global", "1000", env=person)
        assert refused.returncode == 1 and "admin" in refused.stderr, refused.stderr
        assert await api.event_count() == before, "a refused command appended something"

        listed = await agentlog("task", "list", "--status", "queued", env=env)
        assert listed.returncode == 0 and "b1" in listed.stdout and "t1" in listed.stdout, listed.stderr
        cancelled = await agentlog("task", "cancel", "b1", "--reason", "changed my mind", env=env)
        assert json.loads(cancelled.stdout)["status"] == "cancelled", cancelled.stderr

        set_budget = await agentlog("budget", "set", "global", "100000", "--reset-hour", "6", "--time-zone",
                                    "Europe/Paris", env=env)  # fmt: skip
        assert set_budget.returncode == 0 and json.loads(set_budget.stdout)["limit_tokens"] == 100_000
        shown_budget = await agentlog("budget", "show", env=env)
        assert shown_budget.returncode == 0 and "100,000" in shown_budget.stdout, shown_budget.stderr

        schedule = await agentlog("schedule", "create", "nightly", "0 3 * * *", "--task", "backup", "--time-zone",
                                  "Europe/Paris", "--overlap", "buffer_one", env=env)  # fmt: skip
        assert schedule.returncode == 0 and json.loads(schedule.stdout)["status"] == "active", schedule.stderr
        bad_cron = await agentlog("schedule", "create", "broken", "0 25 * * *", "--chat", "hello", env=env)
        assert bad_cron.returncode == 3 and "cron" in bad_cron.stderr, bad_cron.stderr
        paused = await agentlog("schedule", "pause", "nightly", env=env)
        assert json.loads(paused.stdout)["status"] == "paused", paused.stderr

    gone = await agentlog("task", "list", env=env)
    assert gone.returncode == 5 and "is `agentlog up` running" in gone.stderr, gone.stderr


async def test_hostile_input_is_one_line_from_the_command_line(store: EventStore, database_url: str) -> None:
    async with api_running(store) as api:
        env = environment(AGENTLOG_DATABASE_URL=database_url, AGENTLOG_URL=api.url)
        before = await api.event_count()
        for arguments, named in (
            (["task", "create", "build", "--payload", '{"a": "\\u0000"}'], "payload.a: holds a NUL character"),
            (["task", "create", "build", "--payload", '{"a": {"\\u0000": 1}}'], "payload.a: the key"),
            (["schedule", "create", "nightly", "0 3 * * *", "--task", "backup", "--payload", '{"b": "x\\u0000"}'],
             "action.task.payload.b: holds a NUL"),
            (["budget", "set", "global", "1000", "--time-zone", "localtime"], "time_zone: 'localtime' is not an IANA"),
            (["schedule", "create", "n", "0 3 * * *", "--task", "b", "--time-zone", "posixrules"], "time_zone: "),
        ):  # fmt: skip
            refused = await agentlog(*arguments, env=env)
            lines = refused.stderr.strip().splitlines()
            assert refused.returncode == 3 and len(lines) == 1, refused.stderr
            assert named in lines[0], refused.stderr
        assert await api.event_count() == before, "a refused command appended something"


async def test_programs_from_the_command_line(store: EventStore, database_url: str) -> None:
    async with api_running(store) as api:
        env = environment(AGENTLOG_DATABASE_URL=database_url, AGENTLOG_URL=api.url)
        defined = await agentlog("program", "define", "p1", "--max-restarts", "2", "--env", "MODE=fast", "--",
                                 "python", "-m", "my_agent", "--verbose", env=env)  # fmt: skip
        assert defined.returncode == 0, defined.stderr
        state = json.loads(defined.stdout)
        assert (state["command"], state["env_names"], state["max_restarts"]) == (
            ["python", "-m", "my_agent", "--verbose"], ["MODE"], 2)  # fmt: skip
        before = await api.event_count()
        person = {**env, "AGENTLOG_TOKEN": api.token("person", "ada")}
        refused = await agentlog("program", "define", "p1", "--", "sh", "-c", "rm -rf /", env=person)
        assert refused.returncode == 1 and "admin" in refused.stderr, refused.stderr
        bad = await agentlog("program", "define", "p1", "--max-restarts", "-1", "--", "python", env=env)
        assert bad.returncode == 3 and "max_restarts" in bad.stderr, bad.stderr
        no_value = await agentlog("program", "define", "p1", "--env", "MODE", "--", "python", env=env)
        assert no_value.returncode == 2 and "NAME=VALUE" in no_value.stderr, no_value.stderr
        unknown = await agentlog("program", "start", "nobody", env=env)
        assert unknown.returncode != 0 and "no program" in unknown.stderr, unknown.stderr
        assert await api.event_count() == before, "a refused command appended something"

        started = await agentlog("program", "start", "p1", "--reason", "go", env=person)
        assert started.returncode == 0, started.stderr
        listed = await agentlog("program", "list", env=env)
        assert listed.returncode == 0 and "p1" in listed.stdout, listed.stderr
        shown = await agentlog("program", "show", "p1", env=env)
        assert shown.returncode == 0 and json.loads(shown.stdout)["agent_id"] == "p1", shown.stderr
