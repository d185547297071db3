"""What every request to /api/v1 passes before a route sees it: a body size limit (413), a rate limit per token
(429 with Retry-After), a JSON body only of what the log can keep (`eventstore.storable`: a NUL, a lone
surrogate, NaN or Infinity anywhere is a 422 naming where; so is a NUL in the path or the query), and
`Idempotency-Key` on POST (the same key answers what it answered first; the same key with another body is 422;
the same key while its first request still runs is 409 with Retry-After: it used to run twice and the second
append its first's event ids). A pure ASGI middleware: the body is read once, bounded, and handed on."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import re
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentlog.api.auth import Authenticator, bearer_token, reads_only
from agentlog.api.errors import KEEP_IT_ELSEWHERE, ApiError
from agentlog.api.reads import QUERIES
from agentlog.domains.planning.events import ToolCallRefused, refusals_stream, refused_arguments
from agentlog.eventstore import EventStore
from agentlog.eventstore.storable import find_unstorable, string_problem
from agentlog.tokens import Identity, TokenError, verify_refreshing

API_PREFIX = "/api/v1"
MAX_KEY_CHARS = 200
KEY_LEASE_S = 60.0
"""How long a request under way holds its Idempotency-Key against retries: past it, its process is taken for dead
(the longest request, a task claim, waits 30 s)."""


class RateLimiter:
    """A token bucket per caller: `rate` requests per second sustained, `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def retry_after(self, key: str, now: float | None = None) -> float | None:
        """None when the request may go; else the seconds until it may."""
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate
        self._buckets[key] = (tokens - 1, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > 100_000:
            self._buckets.popitem(last=False)
        return None


async def _answer(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = orjson.dumps(body)
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*head, *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})


def parsed_as_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body with this content type as JSON (none given, `application/json`, `.../x+json`)."""
    if not content_type:
        return True
    kind, _, subtype = content_type.partition(";")[0].strip().lower().partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def unstorable_address(scope: Scope) -> dict[str, Any] | None:
    """The 422 answer for a NUL in the path or the query (`%00`), which would reach PostgreSQL as a parameter and
    fail there; None otherwise. Only NUL: the server decodes a percent-encoded lone surrogate as U+FFFD already."""
    nul = "\x00"
    where: list[str] | None = None
    if nul in str(scope["path"]):
        where = ["path"]
    elif b"%00" in scope.get("query_string", b""):
        pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)  # as starlette reads it
        where = next((["query", name] for name, value in pairs if nul in name or nul in value), None)
        if where is not None and nul in where[1]:
            where = ["query"]
    if where is None:
        return None
    wrong = {"loc": where, "msg": string_problem(nul), "type": "value_error"}
    return {"detail": [wrong], "code": "invalid"}


def unstorable_body(content_type: str | None, body: bytes) -> dict[str, Any] | None:
    """The 422 answer for a JSON body holding a value the log cannot keep, naming where; None for any other body.

    One rule for every route, whatever its model: a free JSON field (`payload`, `data`, `metadata`) is checked as
    much as a typed one (`json.loads`, which FastAPI uses, takes `NaN` and makes `inf` of `1e999`; a typed float
    field would refuse them only if it had bounds, and then as "less than or equal"). Most bodies cost one strict
    parse: orjson refuses lone surrogates, NaN and numbers beyond a double itself, so only a body it refuses or one
    with an escaped NUL is parsed again as FastAPI parses it and walked. A body that is not JSON at all is left to
    FastAPI's own answer."""
    if not body or not parsed_as_json(content_type):
        return None
    if b"\\u0000" not in body:
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
        else:
            return None
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None
    found = find_unstorable(parsed)
    if found is None:
        return None
    wrong = {"loc": ["body", *found.path], "msg": found.problem, "type": "value_error"}
    return {"detail": [wrong], "code": "invalid"}


SESSION_HEADER = "agentlog-session"
STEP_HEADER = "agentlog-step"
TOOL_HEADER = "agentlog-tool"
"""Headers a planner's calls carry, so that a refusal names the session, the step and the tool it came from."""
def _arguments(body: bytes) -> dict[str, Any]:
    """What a refused write carried, as its refusal records it: the JSON object of its body (a small one)."""
    if not body or len(body) > 64_000:
        return {}
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(parsed, dict) or find_unstorable(parsed) is not None:
        return {}
    return parsed


def _header_id(value: str | None, limit: int = 64) -> str | None:
    if value is None or not re.fullmatch(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{limit - 1}}}", value):
        return None
    return value


class Guard:
    def __init__(
        self, app: ASGIApp, *, store: EventStore, auth: Authenticator, limiter: RateLimiter, max_body_bytes: int
    ) -> None:
        self.app, self.store, self.auth, self.limiter, self.max_body_bytes = app, store, auth, limiter, max_body_bytes
        self._requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = {name.decode().lower(): value.decode("latin-1") for name, value in scope["headers"]}
        body = await self._read_body(headers, receive, send)
        if body is None:
            return
        try:
            identity = await self._identity(scope)
        except ApiError as wrong:
            await _answer(send, wrong.status, {"detail": wrong.detail, "code": wrong.code}, [
                (k.lower().encode(), v.encode()) for k, v in (wrong.headers or {}).items()])
            return
        if identity is not None:
            wait = self.limiter.retry_after(identity.token_id or f"{identity.kind}:{identity.name}")
            if wait is not None:
                seconds = max(1, math.ceil(wait))
                limited = {"detail": f"rate limit: retry in {seconds} s", "code": "rate_limited"}
                await _answer(send, 429, limited, [(b"retry-after", str(seconds).encode())])
                return
        if identity is not None and identity.read_only and not reads_only(scope["method"], str(scope["path"])):
            await self._refuse_write(send, identity, scope, headers, body)
            return
        refused = unstorable_address(scope) or unstorable_body(headers.get("content-type"), body)
        if refused is not None:
            await _answer(send, 422, refused)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        key = headers.get("idempotency-key")
        if key is None or scope["method"] != "POST" or identity is None:
            await self.app(scope, replay, send)
            return
        await self._idempotent(scope, f"{identity.kind}:{identity.name}", key, body, replay, send)

    async def _refuse_write(
        self, send: Send, identity: Identity, scope: Scope, headers: dict[str, str], body: bytes
    ) -> None:
        """A read-only token's write: refused, and the refusal recorded, whatever the caller meant by it."""
        route = f"{scope['method']} {scope['path']}"[:2_000]
        tool = headers.get(TOOL_HEADER, "")
        named = re.fullmatch(r"[A-Za-z0-9_-]{1,64}", tool) is not None
        reason = "this token may only read (scope read): it cannot write"
        if named:
            reason = f"tool {tool} writes ({route}), and {reason.removeprefix('this ')}"
        refusal = ToolCallRefused(
            agent_id=identity.name, holder_kind=identity.kind, tool=tool if named else route,
            arguments=refused_arguments(_arguments(body)), reason=reason,
            session_id=_header_id(headers.get(SESSION_HEADER)), step_id=_header_id(headers.get(STEP_HEADER), 32),
        )  # fmt: skip
        await self.store.append(refusals_stream(identity.name), [refusal])
        await _answer(send, 403, {"detail": reason, "code": "read_only_token", "route": route})

    async def _read_body(self, headers: dict[str, str], receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None once the request was answered (too large, or the client left)."""
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _answer(send, 413, self._too_large())
            return None
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _answer(send, 413, self._too_large())
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _idempotent(
        self, scope: Scope, principal: str, key: str, body: bytes, receive: Receive, send: Send
    ) -> None:
        if not 1 <= len(key) <= MAX_KEY_CHARS:
            wrong = {"loc": ["header", "Idempotency-Key"], "msg": f"1 to {MAX_KEY_CHARS} characters",
                     "type": "value_error"}  # fmt: skip
            await _answer(send, 422, {"detail": [wrong], "code": "invalid"})
            return
        query = scope.get("query_string", b"").decode()
        digest = hashlib.sha256(f"{scope['method']} {scope['path']}?{query}\n".encode() + body).hexdigest()
        if await self.store.pool.fetchval(QUERIES["take_key"], principal, key, digest, KEY_LEASE_S) is None:
            await self._answer_taken(send, principal, key, digest)
            return
        captured: dict[str, Any] = {"status": 500, "body": b"", "streamed": False}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                # A stream (a planner turn's SSE) is not an answer to keep: not held in memory while it runs.
                captured["streamed"] = any(name.lower() == b"content-type" and value.startswith(b"text/event-stream")
                                           for name, value in message.get("headers", []))  # fmt: skip
            elif message["type"] == "http.response.body" and not captured["streamed"]:
                captured["body"] += message.get("body", b"")
            await send(message)

        answer: Any = None
        try:
            await self.app(scope, receive, capture)
            if captured["status"] < 500 and captured["status"] != 429 and not captured["streamed"]:
                # else not worth keeping: a retry runs again (a stream's: it follows the same turn again)
                with contextlib.suppress(orjson.JSONDecodeError):
                    answer = orjson.loads(captured["body"]) if captured["body"] else {}
        finally:
            # Shielded: a client that leaves cancels the request, and its key must not stay taken for the lease.
            await asyncio.shield(self._settle_key(principal, key, digest, captured["status"], answer))

    async def _settle_key(self, principal: str, key: str, digest: str, status: int, answer: Any) -> None:
        if answer is None:
            await self.store.pool.execute(QUERIES["give_key_back"], principal, key, digest)
            return
        await self.store.pool.execute(QUERIES["keep_answer"], principal, key, digest, status, answer)
        self._requests += 1
        if self._requests % 1000 == 0:
            await self.store.pool.execute(QUERIES["forget_old_answers"])

    async def _answer_taken(self, send: Send, principal: str, key: str, digest: str) -> None:
        """The key is another request's: its answer, or 409 while it runs, or 422 when it was another request."""
        first = await self.store.pool.fetchrow(QUERIES["idempotent_answer"], principal, key)
        if first is not None and first["request_hash"] != digest:
            reused = {"loc": ["header", "Idempotency-Key"], "msg": "this key was used with another request",
                      "type": "value_error"}  # fmt: skip
            await _answer(send, 422, {"detail": [reused], "code": "idempotency_key_reused"})
        elif first is None or first["status_code"] is None:  # under way (or given back this instant): retry
            busy = {"detail": "a request with this Idempotency-Key is under way: retry it shortly",
                    "code": "idempotency_key_in_progress"}  # fmt: skip
            await _answer(send, 409, busy, [(b"retry-after", b"1")])
        else:
            await _answer(send, first["status_code"], first["body"], [(b"idempotent-replayed", b"true")])

    def _too_large(self) -> dict[str, Any]:
        return {"detail": f"the body is over {self.max_body_bytes:,} bytes; {KEEP_IT_ELSEWHERE}", "code": "too_large",
                "limit_bytes": self.max_body_bytes}  # fmt: skip

    async def _identity(self, scope: Scope) -> Identity | None:
        """The token's holder (rate limits count per token, idempotency keys per holder, read-only tokens are held
        to reading), read as the routes read it (`auth.bearer_token`), its keys reloaded as theirs are, revoked
        tokens none; None when it does not verify (the route answers 401)."""
        given = [value.decode("latin-1") for name, value in scope["headers"] if name.lower() == b"authorization"]
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))).get("token")
        token = bearer_token(given, query)
        try:
            identity = await verify_refreshing(self.auth.keys, token)
        except TokenError:
            return None
        return None if self.auth.revocations.revoked(identity) else identity
