"""The README's examples run: every Python, SQL, shell, JSON and JavaScript block, as a reader would use it.

Each block runs on a fresh database. Python blocks run as scripts with `AGENTLOG_DATABASE_URL` set; SQL blocks run
as the application role (what `psql "$(agentlog db url)"` gives); shell blocks run in bash with the installed
`agentlog` and PostgreSQL's client programs on PATH. What a person would stop by hand is bounded here, and only
that: `agentlog up &` is waited for before the next command and stopped at the end of its block, and `agentlog
tail` (which follows forever) stops after a few seconds. A block preceded by `<!-- name -->` is run by the test
named in `RUN_ELSEWHERE` instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.support.gazetteer import with_gazetteer_index

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent

RUN_ELSEWHERE = {
    "backup-and-restore": "tests/acceptance/test_restore.py",
    "quick-start": "tests/acceptance/test_readme.py::test_the_quick_start_runs_the_system",
}

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int
    marker: str | None

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.language})"


def readme_blocks() -> list[Block]:
    text = README.read_text()
    blocks = []
    for match in re.finditer(r"(?:<!-- (?P<marker>[a-z-]+) -->\n)?^```(?P<language>\w*)\n(?P<code>.*?)^```$", text,
                             re.MULTILINE | re.DOTALL):  # fmt: skip
        line = text.count("\n", 0, match.start("language")) + 1
        blocks.append(Block(match["language"], match["code"], line, match["marker"]))
    return blocks


CODE = [block for block in readme_blocks() if block.language and block.marker is None]


def postgres_bin() -> Path:
    """The client programs in the embedded server's wheel (psql, pg_dump...), found without importing it."""
    spec = importlib.util.find_spec("pgserver")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def environment(database_url: str, owner_url: str, home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTLOG_")}
    env.update({
        "AGENTLOG_DATABASE_URL": database_url,
        "AGENTLOG_OWNER_DATABASE_URL": owner_url,
        "AGENTLOG_HOME": str(with_gazetteer_index(home)),
        "AGENTLOG_PORT": "0",
        "AGENTLOG_LOG_FORMAT": "json",
        "AGENTLOG_POLL_INTERVAL_S": "0.2",
        "PATH": os.pathsep.join([str(BIN), str(postgres_bin()), env.get("PATH", "")]),
    })  # fmt: skip
    return env


# What a person stops by hand, bounded; everything else runs as written.
SHELL_PRELUDE = r"""
set -euo pipefail
UP_LOG="$WORKDIR/up.log"
: > "$UP_LOG"
agentlog() {
    case "${1:-}" in
        up) command agentlog "$@" 2>>"$UP_LOG" ;;
        tail) local status=0
              timeout 5 "$(type -P agentlog)" "$@" || status=$?
              [ "$status" -eq 124 ] || return "$status" ;;
        *) wait_for_up; command agentlog "$@" ;;
    esac
}
wait_for_up() {
    [ -n "${README_STARTS_UP:-}" ] || return 0
    for _ in $(seq 1200); do grep -q '"runner.started"' "$UP_LOG" && return 0; sleep 0.1; done
    echo "agentlog up did not start: $(cat "$UP_LOG")" >&2; return 1
}
# A background job of a script ignores SIGINT, so Ctrl-C is SIGTERM here (agentlog up treats both alike), sent to
# the command the job runs (the job itself is a subshell running the function above).
stop_up() {
    local job
    for job in $(jobs -p); do pkill -TERM -P "$job" || true; done
    wait || true
}
trap stop_up EXIT
"""


def run_shell(block: Block, env: dict[str, str], workdir: Path) -> subprocess.CompletedProcess[str]:
    starts_up = re.search(r"^agentlog up\b.*&", block.code, re.MULTILINE) is not None
    script = SHELL_PRELUDE + block.code
    return subprocess.run(
        ["bash", "-c", script], check=False, capture_output=True, text=True, timeout=240, cwd=workdir,
        stdin=subprocess.DEVNULL,
        env={**env, "WORKDIR": str(workdir), **({"README_STARTS_UP": "1"} if starts_up else {})},
    )  # fmt: skip


@pytest.mark.parametrize("block", CODE, ids=str)
def test_a_readme_block_runs(
    block: Block, database_url: str, owner_database_url: str, tmp_path: Path
) -> None:
    env = environment(database_url, owner_database_url, tmp_path / "home")
    if block.language == "python":
        done = subprocess.run([sys.executable, "-c", block.code], check=False, capture_output=True, text=True,
                              timeout=120, env=env, cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, f"{block} failed:\n{done.stderr}"
    elif block.language == "sql":
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute(block.code.encode())  # the whole script, as psql would run it
    elif block.language == "sh":
        done = run_shell(block, env, tmp_path)
        assert done.returncode == 0, f"{block} failed:\n{done.stdout}\n{done.stderr}"
    elif block.language == "json":
        json.loads(block.code)
    elif block.language == "toml":
        entry_points = tomllib.loads(block.code).get("project", {}).get("entry-points", {})
        example = tomllib.loads((ROOT / "examples" / "orders" / "pyproject.toml").read_text())
        for group, entries in entry_points.items():  # what the README shows is what the tested example declares
            assert entries == example["project"]["entry-points"][group], f"{block}: {group}"
    elif block.language == "js":
        if shutil.which("node") is None:
            pytest.skip("node is not installed")
        source = tmp_path / "block.mjs"
        source.write_text(block.code)
        done = subprocess.run(["node", "--check", str(source)], check=False, capture_output=True, text=True)
        assert done.returncode == 0, f"{block} is not valid JavaScript:\n{done.stderr}"
    else:
        raise AssertionError(f"{block}: no way to run a {block.language!r} block; add one here")


def test_every_block_is_run_somewhere() -> None:
    blocks = readme_blocks()
    assert any(block.language == "python" for block in blocks) and any(block.language == "sh" for block in blocks)
    for block in blocks:
        if block.marker is not None:
            assert block.marker in RUN_ELSEWHERE, f"{block}: marker {block.marker!r} names no test"
            path = RUN_ELSEWHERE[block.marker].split("::")[0]
            assert block.marker in (ROOT / path).read_text(), f"{path} does not run the {block.marker} block"


def test_the_quick_start_runs_the_system(tmp_path: Path) -> None:
    """The quick start's two commands: CI runs the second (`.ci/run`); the first starts the whole system on an
    embedded PostgreSQL, here in a home of its own, until Ctrl-C."""
    (block,) = [block for block in readme_blocks() if block.marker == "quick-start"]
    up, test = (line.split("#")[0].strip() for line in block.code.strip().splitlines())
    assert f"exec {test} " in (ROOT / ".ci" / "run").read_text()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTLOG_")}
    env.update({"AGENTLOG_HOME": str(tmp_path / "home"), "AGENTLOG_PORT": "0", "AGENTLOG_LOG_FORMAT": "json"})
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # a session of its own: Ctrl-C reaches run.py and agentlog alike
            up.split(), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=out, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 180
        while '"runner.started"' not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert '"database": "embedded"' in log.read_text()
    finally:
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 0, log.read_text()
