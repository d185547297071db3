"""agentlog as a library user meets it: built as a wheel, installed non-editable into a fresh virtualenv beside the
example plugin (`examples/orders`), and driven only through the installed `agentlog` command.

The plugin brings its own event types, a handler keeping its own table, a projection, a report view and its own
alembic branch. The virtualenv borrows the third-party dependencies of the one running the tests (a `.pth` line),
and the wheels are built with the build backend installed there, so the test needs no network; agentlog and the
plugin themselves are installed from their wheels.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import textwrap
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "orders"

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Virtualenv:
    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def agentlog(self) -> Path:
        return self.path / "bin" / "agentlog"

    @property
    def site_packages(self) -> Path:
        (found,) = (self.path / "lib").glob("python3*/site-packages")
        return found


def _build_wheels(sources: list[Path], into: Path) -> list[Path]:
    """One wheel per source, in its order, built with the backend installed here (a dev dependency), not one pip
    would fetch into an isolated environment."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", *map(str, sources), "-w",
         str(into)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    names = [tomllib.loads((source / "pyproject.toml").read_text())["project"]["name"] for source in sources]
    return [next(into.glob(f"{name.replace('-', '_')}-*.whl")) for name in names]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Virtualenv]:
    base = tmp_path_factory.mktemp("plugin-venv")
    agentlog_wheel, plugin_wheel = _build_wheels([ROOT, EXAMPLE], base / "wheels")
    env = Virtualenv(base / "venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env.path)], check=True, timeout=120)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(env.python), "install", "-q", "--no-deps", "--no-index",
         str(agentlog_wheel), str(plugin_wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (env.site_packages / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    yield env


def _broken_plugin(env: Virtualenv) -> None:
    """A distribution whose every entry point is broken, installed beside the healthy ones."""
    info = env.site_packages / "broken_plugin-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [agentlog.event_types]
            broken = no_such_module_anywhere
            [agentlog.handlers]
            broken = no_such_module_anywhere:handler
            [agentlog.projections]
            broken = json:dumps
            [agentlog.migrations]
            broken = json
            """
        )
    )


@dataclass
class Cli:
    env: Virtualenv
    environment: dict[str, str]
    cwd: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.env.agentlog), *args], check=False, env=self.environment, cwd=self.cwd, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"agentlog {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
        return done

    def up(self, log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                [str(self.env.agentlog), "up", "--only", "handlers,projections"],
                env=self.environment, cwd=self.cwd, stdout=subprocess.DEVNULL, stderr=out,
            )  # fmt: skip


def _cli(env: Virtualenv, database_url: str, owner_database_url: str, tmp_path: Path) -> Cli:
    project = tmp_path / "project"
    (project / "handlers").mkdir(parents=True)  # the user's own top-level `handlers` package, beside agentlog
    (project / "handlers" / "__init__.py").write_text("MINE = True\n")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AGENTLOG_")}
    environment.update({
        "AGENTLOG_DATABASE_URL": database_url,
        "AGENTLOG_OWNER_DATABASE_URL": owner_database_url,
        "AGENTLOG_HOME": str(tmp_path / "home"),
        "AGENTLOG_LOG_FORMAT": "json",
        "AGENTLOG_POLL_INTERVAL_S": "0.2",
        "AGENTLOG_HANDLER_LOCK_RETRY_S": "0.2",
        "PYTHONPATH": str(project),  # the user's packages come first
    })  # fmt: skip
    return Cli(env, environment, project)


def _wait_for(url: str, sql: str, expected: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    seen: object = None
    while time.monotonic() < deadline:
        with psycopg.connect(url) as connection:
            seen = connection.execute(sql).fetchall()
        if seen == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"{sql} gave {seen!r}, expected {expected!r}")


def _stop(process: subprocess.Popen[bytes], how: signal.Signals) -> None:
    process.send_signal(how)
    process.wait(timeout=60)


TOTALS = "SELECT customer, currency, orders, amount_cents FROM orders.customer_totals ORDER BY 1, 2"
ORDERS = "SELECT order_id, currency, status FROM projections.orders ORDER BY 1"


def test_the_example_plugin_end_to_end_in_a_fresh_virtualenv(
    venv: Virtualenv, database_url: str, owner_database_url: str, tmp_path: Path
) -> None:
    _broken_plugin(venv)
    cli = _cli(venv, database_url, owner_database_url, tmp_path)

    migrated = cli.run("migrate")
    assert "orders_0001" in migrated.stdout
    assert "agentlog.migrations" in migrated.stderr and "Traceback" not in migrated.stderr  # one line, skipped
    types = json.loads(cli.run("types", "OrderPlaced", "--json").stdout)
    assert [entry["schema_version"] for entry in types] == [1, 2]

    cli.run("append", "order-1", "OrderPlaced",
            '{"order_id": "1", "customer": "ada", "amount_cents": 1250, "currency": "USD"}')  # fmt: skip
    refused = cli.run("append", "order-x", "OrderPlaced", '{"order_id": "x", "customer": "ada"}', check=False)
    assert refused.returncode == 3 and "amount_cents" in refused.stderr
    with psycopg.connect(database_url) as connection:  # a version-1 payload, as an older writer would have sent
        connection.execute(
            "SELECT agentlog.append_event('order-2', 'OrderPlaced', %s::jsonb, schema_version => 1)",
            [json.dumps({"order_id": "2", "customer": "ada", "amount_cents": 100})],
        )

    listed = cli.run("handler", "list")
    assert "order_totals\tOrderCancelled, OrderPlaced" in listed.stdout
    assert "broken\tBROKEN: ModuleNotFoundError" in listed.stdout and "Traceback" not in listed.stderr

    log = tmp_path / "up.log"
    up = cli.up(log)
    try:
        _wait_for(database_url, TOTALS, [("ada", "EUR", 1, 100), ("ada", "USD", 1, 1250)])
        _wait_for(database_url, ORDERS, [("1", "USD", "placed"), ("2", "EUR", "placed")])  # version 1 upcast
        _stop(up, signal.SIGKILL)
        cli.run("append", "order-1", "OrderCancelled", '{"order_id": "1", "reason": "changed their mind"}')
        up = cli.up(log)
        _wait_for(database_url, TOTALS, [("ada", "EUR", 1, 100), ("ada", "USD", 0, 0)])
        _wait_for(database_url, ORDERS, [("1", "USD", "cancelled"), ("2", "EUR", "placed")])
        _wait_for(
            database_url,
            "SELECT day IS NOT NULL, currency, orders, cancelled FROM reports.order_totals_daily ORDER BY 2",
            [(True, "EUR", 1, 0), (True, "USD", 0, 1)],
        )
    finally:
        _stop(up, signal.SIGINT)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    broken = [line for line in lines if line.get("event") == "plugin.broken"]
    assert {line["group"] for line in broken} >= {"agentlog.event_types", "agentlog.handlers", "agentlog.projections"}
    assert not any("Traceback" in line.get("exception", "") for line in broken)

    cli.run("replay", "orders")
    verified = cli.run("replay", "--verify", "orders")
    assert "live matches" in verified.stdout
    _wait_for(database_url, TOTALS, [("ada", "EUR", 1, 100), ("ada", "USD", 0, 0)])  # nothing applied twice
    again = cli.run("migrate")
    assert "already at" in again.stdout


def test_a_user_package_named_handlers_beside_agentlog(
    venv: Virtualenv, database_url: str, owner_database_url: str, tmp_path: Path
) -> None:
    cli = _cli(venv, database_url, owner_database_url, tmp_path)
    done = subprocess.run(
        [str(venv.python), "-c", "import agentlog.system, handlers, agentlog.handlers; print(handlers.MINE)"],
        check=False, env=cli.environment, cwd=cli.cwd, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    installed = {path.name for path in venv.site_packages.iterdir()}
    assert {"eventstore", "projections", "handlers", "domains"}.isdisjoint(installed)
    assert (venv.site_packages / "agentlog" / "py.typed").exists()
