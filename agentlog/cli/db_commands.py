"""`agentlog db`: the database agentlog uses."""

from __future__ import annotations

from typing import Annotated

import typer

from agentlog.cli.common import handles_errors, load_settings, out, write_line
from agentlog.database import Role, open_database
from agentlog.embedded import EmbeddedPostgres

app = typer.Typer(no_args_is_help=True, help="The database: its URL, and the embedded server.")


@app.command("url")
@handles_errors
def url_command(
    role: Annotated[
        Role,
        typer.Option(
            "--role",
            help="application (agentlog's processes and clients), reporting (read-only: projections and reports, "
            "for analysts and dashboards) or owner (migrations and backups only)",
        ),
    ] = "application",
) -> None:
    """Print a URL that psql accepts: psql "$(agentlog db url)". Starts the embedded server if needed."""
    write_line(open_database(load_settings()).url_for(role))


@app.command("stop")
@handles_errors
def stop_command() -> None:
    """Stop the embedded server of AGENTLOG_HOME (committed data is kept)."""
    settings = load_settings()
    stopped = EmbeddedPostgres(settings.home).stop()
    out.print("stopped the embedded server" if stopped else "the embedded server is not running")
