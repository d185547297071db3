"""Backup and restore into a new cluster, with the README's own commands: the log's order survives (issue 9,
item 1), and `up` refuses a log whose order is broken some other way."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from agentlog.config import Settings
from agentlog.domains.documents.events import PersonJoined
from agentlog.embedded import EmbeddedPostgres
from agentlog.eventstore import EventStore
from agentlog.projections import installed_projections
from agentlog.system import run_system
from tests.support.gazetteer import with_gazetteer_index
from tests.support.system import RunningSystem

ROOT = Path(__file__).resolve().parents[2]
AGENTLOG = [sys.executable, "-m", "agentlog.cli"]
BURNED_TRANSACTIONS = 3_000


def pgserver_binaries() -> Path:
    spec = importlib.util.find_spec("pgserver")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def readme_block(marker: str) -> str:
    """The shell block after `<!-- marker -->` in the README: the test runs what the README tells people to run."""
    text = (ROOT / "README.md").read_text()
    found = re.search(rf"<!-- {marker} -->\n```sh\n(.*?)```", text, re.DOTALL)
    assert found, f"README has no block marked {marker}"
    return found.group(1)


def clean_environment(**variables: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTLOG_")}
    env.update({"AGENTLOG_LOG_FORMAT": "json", "AGENTLOG_PORT": "0", **variables})
    # `agentlog` (this virtualenv) and pg_dump/pg_restore/createdb (the embedded server's major version).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), str(pgserver_binaries()), env["PATH"]])
    return env


async def run(arguments: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, arguments, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


async def restore_as_the_readme_says(source_owner_url: str, new_server_url: str, workdir: Path, *, seal: bool) -> str:
    """Back up `source_owner_url` and restore it into the new cluster with the README's block; the restored URL."""
    block = readme_block("backup-and-restore")
    if not seal:
        block = block.replace("agentlog migrate", "true")
    env = clean_environment(AGENTLOG_DATABASE_URL=source_owner_url, NEW_SERVER_URL=new_server_url)
    result = await run(["bash", "-euo", "pipefail", "-c", block], env, workdir)
    assert result.returncode == 0, result.stderr
    return new_server_url.rsplit("/", 1)[0] + "/agentlog_restored"


async def append_with_the_cli(url: str, stream_id: str) -> subprocess.CompletedProcess[str]:
    joined = '{"user_id": "ada", "people_present": 1, "connection_id": "c-new", "server_id": "new"}'
    env = clean_environment(AGENTLOG_DATABASE_URL=url)
    return await run([*AGENTLOG, "append", stream_id, "PersonJoined", joined], env, ROOT)


async def wait_until_every_checkpoint_passed(url: str, stream_id: str, handlers: set[str]) -> None:
    connection = await asyncpg.connect(url)
    try:
        new = await connection.fetchrow(
            "SELECT transaction_id, global_position FROM agentlog.events WHERE stream_id = $1 AND stream_version = 1",
            stream_id,
        )
        assert new is not None
        async with asyncio.timeout(30):
            while True:
                rows = await connection.fetch("SELECT name, transaction_id, global_position FROM agentlog.checkpoints")
                position = (new["transaction_id"], new["global_position"])
                passed = all((row["transaction_id"], row["global_position"]) >= position for row in rows)
                if passed and {row["name"] for row in rows} >= handlers:
                    return
                await asyncio.sleep(0.1)
    finally:
        await connection.close()


def tail_until(url: str, stream_id: str) -> list[dict[str, object]]:
    """`agentlog tail --from-start --json` until it shows `stream_id`: every event it printed until then."""
    tail = subprocess.Popen(
        [*AGENTLOG, "tail", "--from-start", "--json"],
        env=clean_environment(AGENTLOG_DATABASE_URL=url), cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        seen: list[dict[str, object]] = []
        deadline = time.monotonic() + 30
        assert tail.stdout is not None
        while time.monotonic() < deadline and (not seen or seen[-1]["stream_id"] != stream_id):
            seen.append(json.loads(tail.stdout.readline()))
        return seen
    finally:
        tail.kill()
        tail.wait()
        if tail.stdout is not None:
            tail.stdout.close()


@pytest.fixture
def new_cluster(tmp_path: Path) -> Iterator[str]:
    """A second PostgreSQL cluster, fresh from initdb: its transaction ids start low."""
    server = EmbeddedPostgres(tmp_path / "new-cluster", server_settings={"fsync": "off"})
    url, _ = server.ensure_running()
    try:
        yield url
    finally:
        server.stop()
        shutil.rmtree(tmp_path / "new-cluster", ignore_errors=True)


async def caught_up(url: str, projections: list[str], settings: Settings) -> None:
    """Run the installed projections on `url` until each has applied the whole log."""
    stop = asyncio.Event()
    hosted = list(installed_projections().found.values())
    running = asyncio.create_task(run_system(settings, url, [], hosted, stop=stop))
    connection = await asyncpg.connect(url)
    try:
        async with asyncio.timeout(30):
            while True:
                rows = await connection.fetch("SELECT name, events_behind FROM agentlog.handler_lag")
                if {row["name"] for row in rows} >= set(projections) and all(r["events_behind"] == 0 for r in rows):
                    break
                await asyncio.sleep(0.05)
    finally:
        await connection.close()
        stop.set()
        await running


async def test_a_log_restored_into_a_new_cluster_keeps_its_order(
    database_url: str, owner_database_url: str, new_cluster: str, tmp_path: Path
) -> None:
    owner = await asyncpg.connect(owner_database_url)
    try:  # an old log: its transaction ids are well above a new cluster's
        await owner.execute(
            f"DO $$ BEGIN FOR i IN 1..{BURNED_TRANSACTIONS} LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$"
        )
    finally:
        await owner.close()
    async with EventStore.open(database_url) as store:
        for n in range(20):
            await store.append(
                f"document-old{n % 4}",
                [PersonJoined(user_id=f"u{n}", people_present=n + 1, connection_id=f"c{n}", server_id="old")],
            )
    projections = sorted(installed_projections().found)
    await caught_up(database_url, projections, Settings(_env_file=None, poll_interval_s=0.1))

    restored = await restore_as_the_readme_says(owner_database_url, new_cluster, tmp_path, seal=True)
    connection = await asyncpg.connect(restored)
    try:
        newest = await connection.fetchval("SELECT max(transaction_id::text::bigint) FROM agentlog.events")
        server_id = await connection.fetchval("SELECT pg_current_xact_id()::text::bigint")
        assert server_id < newest, "the new cluster's ids must start below the old log's for this test to mean much"
        restored_positions = {row[0] for row in await connection.fetch("SELECT global_position FROM agentlog.events")}
    finally:
        await connection.close()

    home = with_gazetteer_index(tmp_path / "home")
    system = RunningSystem(restored, home, tmp_path / "up.log", idle_grace_s="600").start()
    try:
        appended = await append_with_the_cli(restored, "document-new")
        assert appended.returncode == 0, appended.stderr
        # Every handler, those with restored checkpoints and those new here, passes the new event.
        await wait_until_every_checkpoint_passed(restored, "document-new", {*projections, "document-activity"})
        seen = await asyncio.to_thread(tail_until, restored, "document-new")
        assert seen[-1]["stream_id"] == "document-new"  # after every restored event, in the log's order
        assert {event["global_position"] for event in seen} >= restored_positions
    finally:
        system.stop()


async def test_an_unsealed_restore_refuses_appends(
    owner_database_url: str, new_cluster: str, tmp_path: Path
) -> None:
    """Before `agentlog migrate`, an append into the restored log would sort below its checkpoints: refused."""
    restored = await restore_as_the_readme_says(owner_database_url, new_cluster, tmp_path, seal=False)
    appended = await append_with_the_cli(restored, "document-x")
    assert appended.returncode == 5
    assert "restored or moved into another PostgreSQL cluster" in appended.stderr
    assert len(appended.stderr.strip().splitlines()) == 1
    connection = await asyncpg.connect(restored)
    try:
        assert await connection.fetchval("SELECT count(*) FROM agentlog.events") == 0
    finally:
        await connection.close()


async def test_up_refuses_a_log_whose_order_is_broken(
    database_url: str, owner_database_url: str, tmp_path: Path
) -> None:
    async with EventStore.open(database_url) as store:
        joined = PersonJoined(user_id="u", people_present=1, connection_id="c", server_id="s")
        await store.append("document-a", [joined])
    await caught_up(database_url, ["stream_summary"], Settings(_env_file=None, poll_interval_s=0.1))
    owner = await asyncpg.connect(owner_database_url)
    try:  # written around agentlog, behind every checkpoint: no handler would ever receive it
        await owner.execute(
            "INSERT INTO agentlog.events (transaction_id, event_id, stream_id, stream_version, event_type, "
            "schema_version, data) VALUES ('3', gen_random_uuid(), 'document-b', 1, 'DocumentIdled', 1, "
            "'{\"document_id\": \"b\", \"reason\": \"forged\"}')"
        )
    finally:
        await owner.close()
    up_env = clean_environment(AGENTLOG_DATABASE_URL=database_url, AGENTLOG_HOME=str(tmp_path / "home"))
    result = await run([*AGENTLOG, "up"], up_env, ROOT)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("agentlog: error:")]
    assert len(errors) == 1 and "order is broken" in errors[0], result.stderr
