"""Plugin migrations as careless authors and operators leave them: fake `agentlog.migrations` entry points naming
revision folders written here, against a real database."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import psycopg
import pytest

from agentlog.database import MIGRATIONS_ENTRY_POINTS, current_revision, migrate

REVISION = '''\
from alembic import op

revision = "{revision}"
down_revision = None
branch_labels = ("{label}",)
depends_on = {depends_on!r}


def upgrade() -> None:
    op.execute("{sql}")


def downgrade() -> None:
    pass
'''


class FakePlugins:
    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.installed: dict[str, str] = {}
        real = metadata.entry_points

        def entry_points(**selection: str) -> list[metadata.EntryPoint]:
            found = list(real(**selection))
            if selection.get("group") == MIGRATIONS_ENTRY_POINTS:
                found += [metadata.EntryPoint(name, package, MIGRATIONS_ENTRY_POINTS)
                          for name, package in self.installed.items()]  # fmt: skip
            return found

        monkeypatch.setattr(metadata, "entry_points", entry_points)
        monkeypatch.syspath_prepend(str(root))

    def add(self, package: str, revision: str, sql: str, depends_on: str | None = "0006_roles") -> None:
        folder = self.root / package
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        (folder / f"{revision}.py").write_text(
            REVISION.format(revision=revision, label=package, depends_on=depends_on, sql=sql)
        )
        self.installed[package] = package

    def uninstall(self, package: str) -> None:
        del self.installed[package]
        sys.modules.pop(package, None)


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePlugins]:
    yield FakePlugins(tmp_path, monkeypatch)


def test_an_uninstalled_plugins_revision_does_not_stop_migrate(owner_database_url: str, plugins: FakePlugins) -> None:
    plugins.add("gone_plugin", "gone_0001", "CREATE SCHEMA gone")
    migrate(owner_database_url)
    assert "gone_0001" in (current_revision(owner_database_url) or "")
    plugins.uninstall("gone_plugin")
    before, after = migrate(owner_database_url)  # the system stays up; the revision stays recorded
    assert before == after and "gone_0001" in (after or "")
    plugins.add("gone_plugin2", "again_0001", "CREATE SCHEMA again")
    migrate(owner_database_url)
    with psycopg.connect(owner_database_url) as connection:
        rows = {row[0] for row in connection.execute("SELECT version_num FROM alembic_version")}
    assert {"gone_0001", "again_0001"} <= rows


def test_a_plugin_without_depends_on_runs_after_our_roles(empty_database_url: str, plugins: FakePlugins) -> None:
    grant = "CREATE SCHEMA eager; GRANT USAGE ON SCHEMA eager TO agentlog_application"
    plugins.add("eager_plugin", "eager_0001", grant, depends_on=None)
    migrate(empty_database_url)
    assert "eager_0001" in (current_revision(empty_database_url) or "")


def test_a_failing_plugin_migration_does_not_stop_ours(empty_database_url: str, plugins: FakePlugins) -> None:
    plugins.add("failing_plugin", "failing_0001", "SELECT no_such_function()")
    plugins.add("fine_plugin", "fine_0001", "CREATE SCHEMA fine")
    migrate(empty_database_url)
    heads = current_revision(empty_database_url) or ""
    assert "fine_0001" in heads and "failing_0001" not in heads
    with psycopg.connect(empty_database_url) as connection:
        assert connection.execute("SELECT count(*) FROM agentlog.event_schemas").fetchone() != (0,)


def test_two_plugins_with_one_revision_id(owner_database_url: str, plugins: FakePlugins) -> None:
    plugins.add("twin_a", "twin_0001", "CREATE SCHEMA twin_a")
    plugins.add("twin_b", "twin_0001", "CREATE SCHEMA twin_b")  # alembic alone warns and keeps one of them
    migrate(owner_database_url)
    with psycopg.connect(owner_database_url) as connection:
        schemas = {row[0] for row in connection.execute("SELECT nspname FROM pg_namespace")}
    assert "twin_a" in schemas and "twin_b" not in schemas  # twin_b is named broken: its id is twin_a's


def test_a_plugin_revision_reusing_one_of_our_ids_is_left_out(owner_database_url: str, plugins: FakePlugins) -> None:
    plugins.add("copycat", "0001_event_log", "CREATE SCHEMA copycat")
    migrate(owner_database_url)
    with psycopg.connect(owner_database_url) as connection:
        assert connection.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'copycat'").fetchone() is None
