"""`agentlog token`: access tokens (JWTs) for the API, the feed, MCP and the document sockets; keys; revocation."""

from __future__ import annotations

import re
import time
from typing import Annotated, Literal

import typer

from agentlog.cli.common import ExitCode, fail, handles_errors, load_settings, run_async, write_line
from agentlog.database import open_database
from agentlog.domains.documents.events import DOCUMENT_ID_PATTERN
from agentlog.domains.tokens.events import TokenRevoked, holder_stream, token_stream
from agentlog.eventstore import ANY, EventStore
from agentlog.eventstore.postgres.connections import create_pool
from agentlog.tokens import Kind, TokenError, issue, retire_key, rotate_key, signing_key, verify

app = typer.Typer(
    no_args_is_help=True,
    help="Tokens (JWTs) for the API, the live feed, the MCP server and /doc/{document_id}?token=…; taking them back.",
)

TOKEN_ID_LENGTH = 16
DURATION = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>s|m|h|d)?\s*$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}

TtlOption = Annotated[
    str | None,
    typer.Option("--ttl", help="lifetime: seconds, or with a unit (90s, 15m, 12h, 7d); default AGENTLOG_TOKEN_TTL_S"),
]
DocumentsOption = Annotated[
    list[str] | None,
    typer.Option("--document", help="only documents matching this pattern (shell-style, e.g. 'team-*'); repeat"),
]


def parse_ttl(text: str | None, default_s: float) -> float:
    if text is None:
        return default_s
    matched = DURATION.match(text)
    if matched is None or float(matched["number"]) <= 0:
        raise ValueError(f"--ttl {text!r}: give a positive number of seconds, or 90s, 15m, 12h, 7d")
    return float(matched["number"]) * UNITS[matched["unit"]]


async def _token(
    url: str, kind: Kind, name: str, ttl_s: float, document: str | None, documents: tuple[str, ...] | None
) -> str:
    pool = await create_pool(url, max_size=1)
    try:
        keys = await signing_key(pool)
        return issue(keys, kind, name, ttl_s=ttl_s, document_id=document, documents=documents)
    finally:
        await pool.close()


def _print_token(kind: Kind, name: str, ttl: str | None, ttl_hours: float | None, document: list[str] | None) -> None:
    settings = load_settings()
    try:
        ttl_s = parse_ttl(ttl, settings.token_ttl_s if ttl_hours is None else ttl_hours * 3600)
        single: str | None = None
        patterns = tuple(document) if document else None
        if kind == "agent" and patterns is not None:
            if len(patterns) != 1 or not DOCUMENT_ID_PATTERN.fullmatch(patterns[0]):
                raise ValueError("an agent's token opens one document: give --document ID once (no pattern)")
            single, patterns = patterns[0], None
        write_line(run_async(_token(open_database(settings).url, kind, name, ttl_s, single, patterns)))
    except ValueError as error:
        fail(str(error), ExitCode.INVALID_INPUT)


@app.command("admin")
@handles_errors
def admin_command(
    name: Annotated[str, typer.Argument(help="who holds it (recorded as the actor)")] = "admin",
    ttl: TtlOption = None,
) -> None:
    """Print an operator's token: every API route, as any agent. Keep it to yourself."""
    _print_token("admin", name, ttl, None, None)


@app.command("user")
@handles_errors
def user_command(
    name: Annotated[str, typer.Argument(help="the person's user id (recorded in PersonJoined, chat posts...)")],
    ttl: TtlOption = None,
    ttl_hours: Annotated[float | None, typer.Option(hidden=True, help="lifetime in hours (use --ttl)")] = None,
    document: DocumentsOption = None,
) -> None:
    """Print a person's token: reads everything, acts as itself; ws://HOST:8787/doc/DOCUMENT?token=TOKEN."""
    _print_token("person", name, ttl, ttl_hours, document)


@app.command("agent")
@handles_errors
def agent_command(
    name: Annotated[str, typer.Argument(help="the agent's id: the token acts as this agent only")],
    ttl: TtlOption = None,
    ttl_hours: Annotated[float | None, typer.Option(hidden=True, help="lifetime in hours (use --ttl)")] = None,
    document: Annotated[
        list[str] | None, typer.Option("--document", help="narrow it to this one document's socket")
    ] = None,
) -> None:
    """Print an agent's token for the API (and, with --document, that document's socket)."""
    _print_token("agent", name, ttl, ttl_hours, document)


@app.command("rotate-key")
@handles_errors
def rotate_key_command() -> None:
    """Add a signing key that signs from now on; tokens signed before stay valid until their key is retired."""
    settings = load_settings()

    async def rotate() -> str:
        pool = await create_pool(open_database(settings).url, max_size=1)
        try:
            await signing_key(pool)
            return await rotate_key(pool)
        finally:
            await pool.close()

    write_line(run_async(rotate()))


@app.command("retire-key")
@handles_errors
def retire_key_command(kid: Annotated[str, typer.Argument(help="the key id (a token's `kid` header)")]) -> None:
    """Remove a signing key: every token it signed is refused from then on."""
    settings = load_settings()

    async def retire() -> bool:
        pool = await create_pool(open_database(settings).url, max_size=1)
        try:
            return await retire_key(pool, kid)
        finally:
            await pool.close()

    try:
        retired = run_async(retire())
    except ValueError as error:
        fail(str(error), ExitCode.INVALID_INPUT)
    if not retired:
        fail(f"no signing key {kid!r}", ExitCode.INVALID_INPUT)
    write_line(f"retired: {kid}")


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
                kind: Literal["user", "agent"] = "user" if user is not None else "agent"
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
        keys = await signing_key(store.pool)
        try:
            identity = verify(keys, token, now=0.0)  # an expired token may be revoked all the same
        except TokenError as error:
            raise ValueError(f"not a token of this database: {error}") from error
        if identity.token_id is None:
            raise ValueError("this token was issued before tokens had ids: revoke its holder (--user / --agent)")
        return identity.token_id
    if len(token) != TOKEN_ID_LENGTH or not all(c in "0123456789abcdef" for c in token):
        raise ValueError(f"a token id is {TOKEN_ID_LENGTH} hexadecimal digits; give the token or its id")
    return token
