"""Which database agentlog talks to and as whom, and bringing its schema to head with alembic.

Three roles (alembic/versions/0006_roles.sql): the owner runs the migrations, the application role runs
everything else, the reporting role reads projections and reports. With the embedded server agentlog knows all
three; with AGENTLOG_DATABASE_URL the operator gives the application role's URL there, and the owner's in
AGENTLOG_OWNER_DATABASE_URL (without it, migrations run as the application URL's role, which must then own the
schema).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import orjson
import psycopg
import structlog

import agentlog
from agentlog.config import Settings
from agentlog.embedded import APPLICATION_ROLE, REPORTING_ROLE, EmbeddedPostgres
from agentlog.eventstore.errors import AgentlogError, DatabaseUnavailableError
from agentlog.eventstore.events import EventCatalogue, catalogue
from agentlog.eventstore.loading import PLUGIN_FAILURES, PluginError, describe_error, log_plugin_errors
from agentlog.eventstore.postgres.queries import load_queries

if TYPE_CHECKING:
    from alembic.config import Config

# alembic and SQLAlchemy are imported inside the functions that migrate: they cost a third of a second, and
# most commands (append, tail, db url) never migrate.

log = structlog.get_logger("agentlog.database")

Role = Literal["application", "reporting", "owner"]

MIGRATIONS_ENTRY_POINTS = "agentlog.migrations"
"""Plugins' migrations: each entry point names a package whose folder holds alembic revision scripts, on a branch
of its own (its first revision has `down_revision = None`, a `branch_labels` of its own and `depends_on` the
agentlog revision it needs). They share agentlog's `alembic_version` table, one row per branch head, and
`agentlog migrate` upgrades every branch to its head in dependency order."""

MIGRATION_LOCK_KEY = 1095524684
"""The advisory lock every migrator holds (alembic/env.py): the steps after the migrations run under it too."""

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))
"""The SQL of this module (psycopg: `%s` placeholders)."""


class RolesMissingError(AgentlogError):
    """agentlog's roles do not exist and the migrating role may not create them."""


class LogOrderBrokenError(AgentlogError):
    """The log's order is broken: some checkpoint has events behind it that it never passed."""


@dataclass(frozen=True, slots=True)
class Database:
    url: str
    """The application role's URL: what every process but the migrator connects with."""
    owner_url: str
    """The owner's URL, for migrations."""
    reporting_url: str | None
    embedded: EmbeddedPostgres | None
    started_here: bool
    """True when this process started the embedded server (and so stops it when it is done)."""

    def url_for(self, role: Role) -> str:
        if role == "owner":
            return self.owner_url
        if role == "reporting":
            if self.reporting_url is None:
                raise AgentlogError("no reporting URL: set AGENTLOG_REPORTING_DATABASE_URL to the reporting role's")
            return self.reporting_url
        return self.url


def open_database(settings: Settings) -> Database:
    """AGENTLOG_DATABASE_URL when set; otherwise the embedded server under AGENTLOG_HOME, started if needed."""
    if settings.database_url:
        return Database(
            settings.database_url,
            settings.owner_database_url or settings.database_url,
            settings.reporting_database_url,
            None,
            False,
        )
    server = EmbeddedPostgres(settings.home)
    owner_url, started = server.ensure_running()
    if started:
        migrate(owner_url)  # a private database is always at head, whichever command started it
    try:
        server.ensure_logins()
    except AgentlogError:
        migrate(owner_url)  # a server started by an older agentlog: its roles come with the migrations
        server.ensure_logins()
    return Database(
        server.role_url(APPLICATION_ROLE), owner_url, server.role_url(REPORTING_ROLE), server, started
    )


def check_reachable(url: str) -> None:
    try:
        with psycopg.connect(url, connect_timeout=5) as connection:
            connection.execute(QUERIES["reachable"])
    except psycopg.OperationalError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DatabaseUnavailableError(f"PostgreSQL is unreachable: {first_line}") from error


def _alembic_config(url: str, locations: list[str] | None = None) -> Config:
    """agentlog's alembic configuration, with the plugins' revision folders (`plugin_migrations()`) beside ours."""
    from alembic.config import Config

    packaged = Path(agentlog.__file__).parent / "_migrations" / "alembic.ini"
    source_tree = Path(agentlog.__file__).parent.parent / "alembic.ini"
    config = Config(str(packaged if packaged.exists() else source_tree))
    config.attributes["database_url"] = url
    ours = str(Path(config.get_main_option("script_location") or "") / "versions")
    plugins = plugin_migrations()[0] if locations is None else locations
    config.set_main_option("version_locations", os.pathsep.join([ours, *plugins]))
    return config


def plugin_migrations() -> tuple[list[str], list[PluginError]]:
    """The revision folders of the installed plugins that load and fit beside ours, and the ones that do not."""
    found, errors = _plugin_migrations()
    return [location for _, location in found], errors


def _plugin_migrations() -> tuple[list[tuple[metadata.EntryPoint, str]], list[PluginError]]:
    """Each plugin's entry point and revision folder, when it loads and fits beside ours, and the ones that do not.

    Each folder is tried beside ours alone first: a plugin whose scripts do not load (an import error, a revision
    pointing nowhere, a second base without a branch label) or whose revision ids are already taken (by ours or
    by a plugin before it: alembic would only warn and keep one of the two) is named in one line and left out, and
    the others migrate all the same."""
    from alembic.script import ScriptDirectory

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Revision X is present more than once": said below, in one line
        taken = {script.revision: "agentlog" for script in ScriptDirectory.from_config(_alembic_config("", []))
                 .walk_revisions()}  # fmt: skip
        found: list[tuple[metadata.EntryPoint, str]] = []
        errors: list[PluginError] = []
        for entry_point in sorted(metadata.entry_points(group=MIGRATIONS_ENTRY_POINTS), key=lambda ep: ep.name):
            try:
                package = entry_point.load()
                paths = list(getattr(package, "__path__", []))
                if not paths:
                    raise TypeError(f"{entry_point.value} is not a package (a folder of revision scripts)")
                location = str(Path(paths[0]).resolve())
                scripts = ScriptDirectory.from_config(_alembic_config("", [location]))
                scripts.get_heads()
                own = [script.revision for script in scripts.walk_revisions() if script.path.startswith(location)]
                clash = next((revision for revision in own if revision in taken), None)
                if clash is not None:
                    raise ValueError(f"revision {clash!r} is already one of {taken[clash]}'s; rename yours")
            except PLUGIN_FAILURES as error:
                errors.append(PluginError(MIGRATIONS_ENTRY_POINTS, entry_point.name, entry_point.value,
                                          describe_error(error)))  # fmt: skip
                continue
            taken.update({revision: f"plugin {entry_point.name!r}" for revision in own})
            found.append((entry_point, location))
    return found, errors


UNINSTALLED_REVISION = """\
# A revision recorded in alembic_version whose plugin is no longer installed (written by agentlog migrate).
revision = {revision!r}
down_revision = None
branch_labels = ({label!r},)
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    raise RuntimeError("the plugin that made revision {revision} is not installed: reinstall it to go down")
"""


def _stand_in_for_uninstalled(url: str, locations: list[str], folder: Path) -> list[str]:
    """Revisions the database is at that no installed script knows (a plugin uninstalled after its migrations
    ran), each given a do-nothing stand-in in `folder`: they stay recorded, and alembic can go on with the rest.

    Decided: an uninstalled plugin never stops a healthy system. Its schema and its row in alembic_version stay
    (installed again, it goes on from there); `agentlog migrate` names them in one warning each time."""
    from alembic.script import ScriptDirectory
    from alembic.script.revision import ResolutionError

    scripts = ScriptDirectory.from_config(_alembic_config(url, locations))
    unknown = []
    for revision in _current_heads(url):
        try:
            scripts.revision_map.get_revision(revision)
        except ResolutionError:
            unknown.append(revision)
    for index, revision in enumerate(unknown):
        text = UNINSTALLED_REVISION.format(revision=revision, label=f"uninstalled-{revision}")
        (folder / f"uninstalled_{index}.py").write_text(text)
    return unknown


def _sqlalchemy_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def _revisions(revisions: tuple[str, ...] | list[str]) -> str | None:
    """A set of branch heads as one value: None for none, else the revision ids sorted, comma-separated."""
    return ", ".join(sorted(revisions)) or None


def head_revision(url: str) -> str | None:
    """The heads of agentlog's migrations and the installed plugins' (see `_revisions`)."""
    from alembic.script import ScriptDirectory

    locations = plugin_migrations()[0]
    with tempfile.TemporaryDirectory(prefix="agentlog-uninstalled-") as folder:
        if _stand_in_for_uninstalled(url, locations, Path(folder)):
            locations = [*locations, folder]
        return _revisions(ScriptDirectory.from_config(_alembic_config(url, locations)).get_heads())


def current_revision(url: str) -> str | None:
    """The revisions the database is at, one per branch (see `_revisions`)."""
    return _revisions(_current_heads(url))


def _current_heads(url: str) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, pool

    engine = create_engine(_sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return tuple(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()


def migrate(url: str, *, event_catalogue: EventCatalogue = catalogue) -> tuple[str | None, str | None]:
    """Upgrade agentlog's migrations and the plugins' to their heads, then seal the log for this cluster, grant
    the roles their privileges and record the catalogue's schemas; return (revisions before, revisions after).
    Safe to run from several processes at once.

    The steps after the migrations run every time, not once: a database restored into another cluster needs its
    transaction epoch moved past the log (see 0005_log_under_operators.sql) and, restored without privileges,
    its grants back; a new agentlog version brings new event schemas.
    """
    from alembic.script import ScriptDirectory

    from alembic import command

    check_reachable(url)
    plugins, broken = _plugin_migrations()
    log_plugin_errors(broken)
    before = current_revision(url)
    locations = [location for _, location in plugins]
    with tempfile.TemporaryDirectory(prefix="agentlog-uninstalled-") as folder:
        uninstalled = _stand_in_for_uninstalled(url, locations, Path(folder))
        if uninstalled:
            log.warning("plugin.migrations_uninstalled", revisions=uninstalled,
                        hint="their plugin is not installed; its schema stays. Reinstall it, or drop its schema and"
                        " delete its row from alembic_version")  # fmt: skip
        config = _alembic_config(url, [*locations, folder] if uninstalled else locations)
        # Ours first, whatever a plugin's depends_on says: a plugin's revisions always find our roles and schemas.
        for head in ScriptDirectory.from_config(_alembic_config(url, [])).get_heads():
            command.upgrade(config, head)
        # Then each plugin's branches, each in its own transaction: one that fails is named and the rest go on.
        for entry_point, location in plugins:
            scripts = ScriptDirectory.from_config(_alembic_config(url, [location]))
            own = {script.revision for script in scripts.walk_revisions() if script.path.startswith(location)}
            try:
                for head in scripts.get_heads():
                    if head in own:
                        command.upgrade(config, head)
            except Exception as error:
                log_plugin_errors([PluginError(MIGRATIONS_ENTRY_POINTS, entry_point.name, entry_point.value,
                                               f"its migration failed: {describe_error(error)}")])  # fmt: skip
    _after_migrations(url, event_catalogue)
    return before, current_revision(url)


class MigrationNeededError(AgentlogError):
    """The schema is behind this agentlog and this role may not migrate it."""


def prepare_schema(database: Database) -> tuple[str | None, str | None]:
    """What `agentlog up` does first: migrate as the owner; when the only URL given is a role that may not
    migrate (a least-privilege deployment, where the owner migrates separately), check that the schema is at head
    instead. Returns (revision before, revision after)."""
    try:
        return migrate(database.owner_url)
    except Exception as error:
        if database.owner_url != database.url or not _is_permission_error(error):
            raise
    head, current = head_revision(database.url), current_revision(database.url)
    if current != head:
        raise MigrationNeededError(
            f"the schema is at {current or 'nothing'} and this agentlog needs {head}; run `agentlog migrate` as the"
            " schema's owner (AGENTLOG_OWNER_DATABASE_URL)"
        )
    log.info("agentlog.schema_at_head", revision=head, migrated_by="the owner (this role may not migrate)")
    return current, current


def _is_permission_error(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(error, psycopg.errors.InsufficientPrivilege):
            return True
        error = getattr(error, "orig", None) or error.__cause__
    return False


def _after_migrations(url: str, event_catalogue: EventCatalogue) -> None:
    schemas = [entry.payload_rules() for entry in event_catalogue]
    try:
        with psycopg.connect(url) as connection:
            connection.execute(QUERIES["lock_migrations"], [MIGRATION_LOCK_KEY])
            row = connection.execute(QUERIES["advance_epoch"]).fetchone()
            connection.execute(QUERIES["grant_privileges"])
            connection.execute(QUERIES["register_schemas"], [orjson.dumps(schemas).decode()])
    except psycopg.Error as error:
        if error.sqlstate == "AL006":
            hint = error.diag.message_hint or ""
            raise RolesMissingError(f"{error.diag.message_primary}: {hint}") from error
        raise
    if row is not None and row[2]:
        log.warning(
            "log.epoch_advanced",
            previous_offset=row[0],
            transaction_id_offset=row[1],
            reason="this database was restored or moved into another PostgreSQL cluster",
        )


def check_log_order(url: str) -> None:
    """Refuse a log whose order is broken: a checkpoint with events behind it that it never passed would never
    deliver them (events appended into a restored log before its epoch was sealed, or written around agentlog);
    a server whose transaction ids, shifted, do not sort above the newest recorded event would append behind it (a
    restore that `agentlog migrate` has not sealed)."""
    with psycopg.connect(url) as connection:
        broken = connection.execute(QUERIES["checkpoints_out_of_order"]).fetchall()
        behind = connection.execute(QUERIES["server_behind_log"]).fetchone()
    if behind is not None and behind[0]:
        raise LogOrderBrokenError(
            "the log's order is not sealed here: this server's transaction ids sort below events the log holds (a"
            " restore into another server or an older copy of this one); run `agentlog migrate` as the owner"
        )
    if broken:
        name, passed, behind = broken[0]
        raise LogOrderBrokenError(
            f"the log's order is broken: handler {name} passed {passed} events but {behind} lie at or before its"
            f" checkpoint ({len(broken)} handler(s) affected); events were written behind checkpoints, which"
            " agentlog cannot deliver. Restore the database again and run `agentlog migrate` before anything"
            " appends."
        )


def runs_as_superuser(url: str) -> bool:
    with psycopg.connect(url) as connection:
        row = connection.execute(QUERIES["is_superuser"]).fetchone()
    return bool(row and row[0])
