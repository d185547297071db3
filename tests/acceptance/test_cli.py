"""The `agentlog` command as a person runs it: real processes, real database, stdout/stderr and exit codes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from agentlog.config import COMPONENTS
from tests.support.gazetteer import with_gazetteer_index

ROOT = Path(__file__).resolve().parents[2]
AGENTLOG = [sys.executable, "-m", "agentlog.cli"]
JOINED = '{"user_id": "ada", "people_present": 1, "connection_id": "c1", "server_id": "cli"}'
LEFT = '{"user_id": "ada", "people_present": 0, "connection_id": "c1", "server_id": "cli"}'


def environment(**overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTLOG_")}
    # Port 0: `up` serves documents on any free port, so tests never collide with each other or a running system.
    env.update({"AGENTLOG_LOG_FORMAT": "json", "AGENTLOG_PORT": "0", **overrides})
    return env


def agentlog(*arguments: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENTLOG, *arguments], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return environment(AGENTLOG_DATABASE_URL=database_url)


async def event_count(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM agentlog.events"))
    finally:
        await connection.close()


def test_types_lists_the_catalogue_with_json_schemas(env: dict[str, str]) -> None:
    listing = agentlog("types", env=env)
    assert listing.returncode == 0
    assert "PersonJoined" in listing.stdout and "PersonLeft" in listing.stdout
    detail = agentlog("types", "PersonJoined", env=env)
    old, new = json.loads(detail.stdout)  # every schema version, oldest first
    assert (old["schema_version"], new["schema_version"]) == (1, 2)
    assert set(old["json_schema"]["required"]) == {"user_id", "people_present"}
    assert set(new["json_schema"]["required"]) == {"user_id", "people_present", "connection_id", "server_id"}


async def test_append_then_tail_shows_the_event(env: dict[str, str], database_url: str) -> None:
    appended = agentlog("append", "document-plan", "PersonJoined", JOINED, "--expected-version", "no-stream",
                        "--metadata", '{"actor": "cli-test"}', env=env)
    assert appended.returncode == 0, appended.stderr
    assert "to document-plan at version 1" in appended.stdout
    tail = subprocess.Popen(
        [*AGENTLOG, "tail", "--from-start", "--json"], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        first = json.loads(tail.stdout.readline())  # type: ignore[union-attr]
        live = agentlog("append", "document-plan", "PersonLeft", LEFT,
                        "--expected-version", "1", env=env)
        assert live.returncode == 0, live.stderr
        second = json.loads(tail.stdout.readline())  # type: ignore[union-attr]
    finally:
        tail.send_signal(signal.SIGINT)
        assert tail.wait(timeout=10) == 0
        tail.stdout.close()  # type: ignore[union-attr]
    assert (first["stream_id"], first["stream_version"], first["event_type"]) == ("document-plan", 1, "PersonJoined")
    assert first["data"] == json.loads(JOINED)
    assert first["metadata"] == {"actor": "cli-test"}
    assert (second["stream_version"], second["event_type"]) == (2, "PersonLeft")
    assert second["global_position"] > first["global_position"]
    assert await event_count(database_url) == 2


def test_tail_prints_one_line_per_event(env: dict[str, str]) -> None:
    assert agentlog("append", "document-x", "PersonJoined", JOINED, env=env).returncode == 0
    tail = subprocess.Popen([*AGENTLOG, "tail", "--from-start"], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = tail.stdout.readline()  # type: ignore[union-attr]
    finally:
        tail.send_signal(signal.SIGTERM)
        tail.wait(timeout=10)
        tail.stdout.close()  # type: ignore[union-attr]
    position, stream, version, event_type, data, metadata = line.split(maxsplit=5)
    assert (position, stream, version, event_type) == ("1", "document-x", "v1", "PersonJoined")
    assert json.loads(data) == json.loads(JOINED)
    assert json.loads(metadata) == {}


BAD_INPUT = [
    (["document-a", "PersonJoined", '{"user_id": "ada"'], 3, "not valid JSON"),
    (["document-a", "PersonJoined", "[1, 2]"], 3, "must be a JSON object"),
    (["document-a", "NoSuchType", "{}"], 3, "unknown event type 'NoSuchType'"),
    (["document-a", "PersonJoined", LEFT.replace('"people_present": 0', '"people_present": 0')], 3, "people_present"),
    (["document-a", "PersonJoined", '{"user_id": "ada", "people_present": 1, "x": 1}'], 3, "x: Extra inputs"),
    (["", "PersonJoined", JOINED], 3, "stream id is empty"),
    (["x" * 201, "PersonJoined", JOINED], 3, "the limit is 200"),
    (["document a", "PersonJoined", JOINED], 3, "whitespace"),
    (["document-a", "PersonJoined", JOINED, "--expected-version", "7"], 4, "expected 7, actual 1"),
    (["document-a", "PersonJoined", JOINED, "--expected-version", "soon"], 2, "--expected-version"),
    (["document-a", "PersonJoined", JOINED, "--event-id", "not-a-uuid"], 3, "not a UUID"),
    (["document-a", "PersonJoined", JOINED, "--metadata", "1"], 3, "--metadata must be a JSON object"),
    (["document-a", "PersonJoined", JOINED.replace('"ada"', '"a\\u0000"')], 3, "user_id: holds a NUL character"),
    (["document-a", "PersonJoined", JOINED, "--metadata", '{"a": "\\u0000"}'], 3, "a: holds a NUL character"),
]


@pytest.mark.parametrize(("arguments", "exit_code", "message"), BAD_INPUT)
async def test_bad_input_is_one_clear_line_and_appends_nothing(
    env: dict[str, str], database_url: str, arguments: list[str], exit_code: int, message: str
) -> None:
    assert agentlog("append", "document-a", "PersonJoined", JOINED, env=env).returncode == 0
    result = agentlog("append", *arguments, env=env)
    assert result.returncode == exit_code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("agentlog: error: ")
    assert message in lines[0]
    assert await event_count(database_url) == 1


def test_an_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    unreachable = environment(AGENTLOG_DATABASE_URL="postgresql://nobody:secret@127.0.0.1:9/none")
    for arguments in (["migrate"], ["append", "document-a", "PersonJoined", JOINED], ["tail"]):
        result = agentlog(*arguments, env=unreachable, timeout=30)
        assert result.returncode == 5, (arguments, result.stderr)
        assert result.stderr.strip().splitlines() == [result.stderr.strip()]
        assert "unreachable" in result.stderr


def test_handler_lag_lists_checkpoints(env: dict[str, str]) -> None:
    result = agentlog("handler", "lag", "--json", env=env)
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"handlers": [], "barrier_held_by": None}


def psql_binary() -> str | None:
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / "psql"
        if bundled.exists():
            return str(bundled)
    return shutil.which("psql")


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield with_gazetteer_index(tmp_path / "state")
    # Whatever the test did, never leave an embedded server running behind it.
    agentlog("db", "stop", env=environment(AGENTLOG_HOME=str(tmp_path / "state")))


def start_up(env: dict[str, str]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [*AGENTLOG, "up"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()  # type: ignore[union-attr]
        if not line:
            break
        if json.loads(line).get("event") == "runner.started":
            return process
    process.kill()
    raise AssertionError("agentlog up did not start")


@pytest.mark.slow
def test_up_runs_on_an_embedded_server_whose_data_survives_restarts(home: Path) -> None:
    env = environment(AGENTLOG_HOME=str(home))
    up = start_up(env)
    try:
        url = agentlog("db", "url", env=env).stdout.strip()
        assert url.startswith("postgresql://")
        psql = psql_binary()
        assert psql is not None
        appended = subprocess.run(
            [psql, url, "-At", "-c",
             "SELECT stream_version FROM agentlog.append_event("
             "'document-readme', 'PersonJoined', '{\"user_id\": \"ada\", \"people_present\": 1, "
             "\"connection_id\": \"c1\", \"server_id\": \"psql\"}')"],
            capture_output=True, text=True, check=False,
        )
        assert appended.returncode == 0, appended.stderr
        assert appended.stdout.strip() == "1"
        # The running system reacts to the join (the document becomes active): the stream moves on by itself.
        assert agentlog("append", "document-readme", "PersonLeft", LEFT, env=env).returncode == 0
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=30) == 0
        up.stderr.close()  # type: ignore[union-attr]
    # `up` started the server, so it stopped it on the way out.
    assert not (home / "postgres" / "data" / "postmaster.pid").exists()

    up = start_up(env)
    try:
        count = subprocess.run(
            [psql_binary() or "psql", agentlog("db", "url", env=env).stdout.strip(), "-At", "-c",
             "SELECT string_agg(event_type, ',' ORDER BY stream_version) FROM agentlog.events"
             " WHERE event_type IN ('PersonJoined', 'PersonLeft')"],
            capture_output=True, text=True, check=False,
        )
        assert count.stdout.strip() == "PersonJoined,PersonLeft"
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=30) == 0
        up.stderr.close()  # type: ignore[union-attr]


def test_up_hosts_only_what_it_is_asked_for(env: dict[str, str], tmp_path: Path) -> None:
    """`up --only projections`: the log and its projections, no document server, no agent manager; a component
    it does not know is one line and exit 2, before anything starts."""
    wrong = agentlog("up", "--only", "projections,telepathy", env=env)
    assert wrong.returncode == 2 and wrong.stderr.strip().splitlines() == [
        f"agentlog: error: --only: unknown component telepathy; choose from {', '.join(COMPONENTS)}"
    ]
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen([*AGENTLOG, "up", "--only", "projections"], env=env, cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=out)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while '"runner.started"' not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    (started,) = [line for line in lines if line["event"] == "agentlog.up"]
    assert started["components"] == ["projections"] and started["handlers"] == []
    assert "stream_summary" in started["projections"]
    assert not any(line["event"] in {"documents.listening", "manager.started"} for line in lines)
