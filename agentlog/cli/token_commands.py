"""`agentlog token`: access tokens for the document server."""

from __future__ import annotations

from typing import Annotated

import typer

from agentlog.cli.common import ExitCode, fail, handles_errors, load_settings, run_async, write_line
from agentlog.database import open_database
from agentlog.documents.tokens import Kind, issue, signing_key
from eventstore.event_types.documents import DOCUMENT_ID_PATTERN
from eventstore.postgres.connections import create_pool

app = typer.Typer(no_args_is_help=True, help="Tokens for /doc/{document_id}?token=…")


async def _token(url: str, kind: Kind, name: str, ttl_s: float, document: str | None) -> str:
    pool = await create_pool(url, max_size=1)
    try:
        return issue(await signing_key(pool), kind, name, ttl_s=ttl_s, document_id=document)
    finally:
        await pool.close()


@app.command("user")
@handles_errors
def user_command(
    name: Annotated[str, typer.Argument(help="the person's user id (recorded in PersonJoined/PersonLeft)")],
    ttl_hours: Annotated[float | None, typer.Option(help="lifetime (default AGENTLOG_TOKEN_TTL_S, 7 days)")] = None,
) -> None:
    """Print a token for a person: ws://HOST:8787/doc/DOCUMENT?token=TOKEN."""
    settings = load_settings()
    ttl_s = settings.token_ttl_s if ttl_hours is None else ttl_hours * 3600
    try:
        write_line(run_async(_token(open_database(settings).url, "user", name, ttl_s, None)))
    except ValueError as error:
        fail(str(error), ExitCode.INVALID_INPUT)


@app.command("agent")
@handles_errors
def agent_command(
    name: Annotated[str, typer.Argument(help="the agent's id")],
    document: Annotated[str, typer.Option(help="the one document the token opens")],
    ttl_hours: Annotated[float, typer.Option(help="lifetime in hours")] = 24.0,
) -> None:
    """Print a token for an agent (agents' sockets do not count as people in a document)."""
    settings = load_settings()
    if not DOCUMENT_ID_PATTERN.fullmatch(document):
        fail(f"invalid document id {document!r}", ExitCode.INVALID_INPUT)
    try:
        write_line(run_async(_token(open_database(settings).url, "agent", name, ttl_hours * 3600, document)))
    except ValueError as error:
        fail(str(error), ExitCode.INVALID_INPUT)
