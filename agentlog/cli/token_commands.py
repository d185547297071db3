"""`agentlog token`: access tokens for the document server, and taking them back."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from agentlog.cli.common import ExitCode, fail, handles_errors, load_settings, run_async, write_line
from agentlog.database import open_database
from agentlog.documents.tokens import Kind, TokenError, issue, signing_key, verify
from agentlog.domains.documents.events import DOCUMENT_ID_PATTERN
from agentlog.domains.tokens.events import TokenRevoked, holder_stream, token_stream
from agentlog.eventstore import ANY, EventStore
from agentlog.eventstore.postgres.connections import create_pool

app = typer.Typer(no_args_is_help=True, help="Tokens for /doc/{document_id}?token=…, and revoking them.")

TOKEN_ID_LENGTH = 16


async def _token(
    url: str, kind: Kind, name: str, ttl_s: float, document: str | None, documents: tuple[str, ...] | None
) -> str:
    pool = await create_pool(url, max_size=1)
    try:
        key = await signing_key(pool)
        return issue(key, kind, name, ttl_s=ttl_s, document_id=document, documents=documents)
    finally:
        await pool.close()


@app.command("user")
@handles_errors
def user_command(
    name: Annotated[str, typer.Argument(help="the person's user id (recorded in PersonJoined/PersonLeft)")],
    ttl_hours: Annotated[float | None, typer.Option(help="lifetime (default AGENTLOG_TOKEN_TTL_S, 7 days)")] = None,
    document: Annotated[
        list[str] | None,
        typer.Option("--document", help="only documents matching this pattern (shell-style, e.g. 'team-*'); repeat"),
    ] = None,
) -> None:
    """Print a token for a person: ws://HOST:8787/doc/DOCUMENT?token=TOKEN."""
    settings = load_settings()
    ttl_s = settings.token_ttl_s if ttl_hours is None else ttl_hours * 3600
    patterns = tuple(document) if document else None
    try:
        write_line(run_async(_token(open_database(settings).url, "user", name, ttl_s, None, patterns)))
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
        write_line(run_async(_token(open_database(settings).url, "agent", name, ttl_hours * 3600, document, None)))
    except ValueError as error:
        fail(str(error), ExitCode.INVALID_INPUT)


@app.command("revoke")
@handles_errors
def revoke_command(
    token: Annotated[str | None, typer.Argument(help="the token, or its id")] = None,
    user: Annotated[str | None, typer.Option(help="every token of this person issued until now")] = None,
    agent: Annotated[str | None, typer.Option(help="every token of this agent issued until now")] = None,
    reason: Annotated[str, typer.Option(help="why (recorded, and logged by the servers)")] = "",
) -> None:
    """Take tokens back: every document server closes the sockets using them within seconds and refuses them."""
    if sum(value is not None for value in (token, user, agent)) != 1:
        fail("give one token (or token id), or --user NAME, or --agent NAME", ExitCode.USAGE)
    settings = load_settings()
    url = open_database(settings).url

    async def revoke() -> str:
        async with EventStore.open(url) as store:
            if token is not None:
                token_id = await _token_id(store, token)
                revoked = TokenRevoked(token_id=token_id, reason=reason)
                stream = token_stream(token_id)
            else:
                kind: Kind = "user" if user is not None else "agent"
                subject = user if user is not None else agent
                assert subject is not None
                revoked = TokenRevoked(kind=kind, subject=subject, issued_before=time.time(), reason=reason)
                stream = holder_stream(kind, subject)
            await store.append(stream, [revoked], ANY)
            return stream

    try:
        write_line(f"revoked: {run_async(revoke())}")
    except ValueError as error:
        fail(str(error), ExitCode.INVALID_INPUT)


async def _token_id(store: EventStore, token: str) -> str:
    """The id of a token given whole (its signature checked), or an id given as it is."""
    if token.count(".") == 2:
        key = await signing_key(store.pool)
        try:
            identity = verify(key, token, now=0.0)  # an expired token may be revoked all the same
        except TokenError as error:
            raise ValueError(f"not a token of this database: {error}") from error
        if identity.token_id is None:
            raise ValueError("this token was issued before tokens had ids: revoke its holder (--user / --agent)")
        return identity.token_id
    if len(token) != TOKEN_ID_LENGTH or not all(c in "0123456789abcdef" for c in token):
        raise ValueError(f"a token id is {TOKEN_ID_LENGTH} hexadecimal digits; give the token or its id")
    return token
