"""The `agentlog` command."""

from __future__ import annotations

from typing import Annotated

import structlog
import typer

from agentlog.cli import (
    budget_commands,
    chat_commands,
    db_commands,
    handler_commands,
    log_commands,
    mcp_commands,
    program_commands,
    read_commands,
    schedule_commands,
    task_commands,
    token_commands,
)
from agentlog.cli.common import ExitCode, fail, handles_errors, load_settings, out, run_async
from agentlog.config import COMPONENTS, parse_components
from agentlog.database import check_log_order, migrate, open_database, prepare_schema, runs_as_superuser
from agentlog.eventstore import catalogue
from agentlog.eventstore.loading import log_plugin_errors
from agentlog.handlers.registry import installed_handlers
from agentlog.logs import configure_logging_from_environment
from agentlog.projections import installed_projections

log = structlog.get_logger("agentlog.cli")

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="agentlog: an event-sourced control plane for fleets of AI agents, on PostgreSQL.",
)
app.add_typer(db_commands.app, name="db")
app.add_typer(handler_commands.app, name="handler")
app.add_typer(token_commands.app, name="token")
app.add_typer(task_commands.app, name="task")
app.add_typer(budget_commands.app, name="budget")
app.add_typer(schedule_commands.app, name="schedule")
app.add_typer(program_commands.app, name="program")
app.add_typer(chat_commands.app, name="session")
app.command("chat")(chat_commands.chat_command)
app.command("types")(log_commands.types_command)
app.command("append")(log_commands.append_command)
app.command("tail")(log_commands.tail_command)
app.command("replay")(read_commands.replay_command)
app.command("report")(read_commands.report_command)
app.command("mcp")(mcp_commands.mcp_command)


@app.command("migrate")
@handles_errors
def migrate_command() -> None:
    """Bring the database schema to the newest migration (events are never lost)."""
    settings = load_settings()
    before, after = migrate(open_database(settings).owner_url)
    out.print(f"already at {after}" if before == after else f"migrated from {before or 'empty'} to {after}")


@app.command("up")
@handles_errors
def up_command(
    only: Annotated[
        str | None,
        typer.Option(
            "--only",
            help=f"Host only these, comma-separated ({', '.join(COMPONENTS)}); default AGENTLOG_COMPONENTS, or all.",
        ),
    ] = None,
) -> None:
    """Run the system here: database (embedded unless AGENTLOG_DATABASE_URL), migrations, and what it hosts:
    installed handlers, projections, and the documents with their agents."""
    settings = load_settings()
    if only is not None:
        try:
            settings = settings.model_copy(update={"components": ",".join(parse_components(only))})
        except ValueError as error:
            fail(f"--only: {error}", ExitCode.USAGE)
    broken = catalogue.load_plugins()  # before anything runs: a broken plugin is named once, and up goes on
    handler_plugins = installed_handlers() if settings.hosts("handlers") else None
    projection_plugins = installed_projections() if settings.hosts("projections") else None
    for plugins in (handler_plugins, projection_plugins):
        if plugins is not None:
            log_plugin_errors(plugins.errors)
    database = open_database(settings)
    try:
        before, after = prepare_schema(database)
        check_log_order(database.url)
        if runs_as_superuser(database.url):
            log.warning(
                "agentlog.superuser",
                hint="AGENTLOG_DATABASE_URL connects as a superuser, who can forge the log; give it the "
                "agentlog_application role and the owner's URL to AGENTLOG_OWNER_DATABASE_URL",
            )
        handlers = list(handler_plugins.found.values()) if handler_plugins is not None else []
        projections = list(projection_plugins.found.values()) if projection_plugins is not None else []
        log.info(
            "agentlog.up",
            database="embedded" if database.embedded else "external",
            schema=after,
            migrated=before != after,
            components=settings.components.split(",") if settings.components else [],
            handlers=[handler.name for handler in handlers],
            projections=[projection.name for projection in projections],
            broken_plugins=len(broken)
            + sum(len(plugins.errors) for plugins in (handler_plugins, projection_plugins) if plugins is not None),
            hint='psql "$(agentlog db url)" to query; Ctrl-C to stop',
        )
        from agentlog.system import run_system  # imported here: `up` alone needs the whole system

        run_async(
            run_system(
                settings,
                database.url,
                handlers,
                projections,
                agents=settings.hosts("agents"),
                api=settings.hosts("api"),
            )
        )
    finally:
        if database.embedded is not None and database.started_here:
            database.embedded.stop()


def main() -> None:
    configure_logging_from_environment()
    app()
