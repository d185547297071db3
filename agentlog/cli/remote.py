"""Commands that act through the API of a running `agentlog up` (tasks, budgets, schedules), so every rule the API
enforces holds for them too: AGENTLOG_URL (default: this machine's `up`), as AGENTLOG_TOKEN, or else as an admin
token made for the call from the database's signing key (whoever can reach the database is its operator)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import orjson

from agentlog.cli.common import ExitCode, fail, load_settings, run_async, write_line
from agentlog.database import open_database
from agentlog.eventstore.postgres.connections import create_pool
from agentlog.tokens import issue, signing_key

if TYPE_CHECKING:
    from agentlog.client import AgentlogClient

T = TypeVar("T")
CLI_TOKEN_TTL_S = 300.0
EXIT_FOR_STATUS = {404: ExitCode.INVALID_INPUT, 409: ExitCode.CONFLICT, 412: ExitCode.CONFLICT,
                   422: ExitCode.INVALID_INPUT}  # fmt: skip


async def _admin_token(database_url: str) -> str:
    pool = await create_pool(database_url, max_size=1)
    try:
        return issue(await signing_key(pool), "admin", "cli", ttl_s=CLI_TOKEN_TTL_S)
    finally:
        await pool.close()


def through_api(action: Callable[[AgentlogClient], Awaitable[T]]) -> T:
    """Run `action` with a client of the API; a refusal (the API's, or its request model's before anything was
    sent) or an unreachable API is one line on stderr."""
    from pydantic import ValidationError  # imported here, as the client: commands that need no API start faster

    from agentlog.client import AgentlogClient, ApiError

    settings = load_settings()
    url = api_url(os.environ.get("AGENTLOG_URL") or f"http://127.0.0.1:{settings.port or 8787}")
    token = os.environ.get("AGENTLOG_TOKEN") or run_async(_admin_token(open_database(settings).url))

    async def call() -> T:
        async with AgentlogClient(url, token, retries=1) as client:
            return await action(client)

    try:
        return run_async(call())
    except ApiError as error:
        detail = error.detail
        if isinstance(detail, list):  # validation: name each field
            detail = "; ".join(f"{'.'.join(str(p) for p in item['loc'][1:])}: {item['msg']}" for item in detail)
        fail(f"{detail} ({error.status} {error.code})", EXIT_FOR_STATUS.get(error.status, ExitCode.FAILED))
    except ValidationError as error:  # the client's request model (the API's own) refused it before sending
        fail("; ".join(_named(item["loc"], item["msg"]) for item in error.errors()), ExitCode.INVALID_INPUT)
    except httpx.TransportError as error:
        fail(f"no agentlog API at {url} ({error}): is `agentlog up` running there?", ExitCode.DATABASE_UNAVAILABLE)


def _named(loc: tuple[int | str, ...], message: str) -> str:
    """`field.path: message`, as the API's 422 reads on the command line (a whole-model rule names its field)."""
    message = message.removeprefix("Value error, ")
    return f"{'.'.join(str(part) for part in loc)}: {message}" if loc else message


def api_url(text: str) -> str:
    """`text` as the API's base URL, or one line naming what is wrong with it (never a traceback)."""
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, ValueError) as error:
        fail(f"AGENTLOG_URL {text!r} is not a URL: {error}", ExitCode.USAGE)
    if url.scheme not in ("http", "https") or not url.host:
        fail(f"AGENTLOG_URL {text!r} is not an http(s) URL with a host", ExitCode.USAGE)
    if url.port is not None and not 0 < url.port < 65536:
        fail(f"AGENTLOG_URL {text!r}: port {url.port} is not between 1 and 65535", ExitCode.USAGE)
    return text


def print_json(value: Any) -> None:
    write_line(orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode())
