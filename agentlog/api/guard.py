"""What every request to /api/v1 passes before a route sees it: a body size limit (413), a rate limit per token
(429 with Retry-After), and `Idempotency-Key` on POST (the same key answers what it answered first; the same key
with another body is 422; the same key while its first request still runs is 409 with Retry-After: it used to run
twice and the second append its first's event ids). A pure ASGI middleware: the body is read once, bounded, and
handed on."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
from collections import OrderedDict
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentlog.api.auth import Authenticator
from agentlog.api.reads import QUERIES
from agentlog.eventstore import EventStore
from agentlog.tokens import Identity, TokenError, verify

API_PREFIX = "/api/v1"
MAX_KEY_CHARS = 200
KEY_LEASE_S = 120.0
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
        identity = self._identity(headers)
        if identity is not None:
            wait = self.limiter.retry_after(identity.token_id or f"{identity.kind}:{identity.name}")
            if wait is not None:
                seconds = max(1, math.ceil(wait))
                limited = {"detail": f"rate limit: retry in {seconds} s", "code": "rate_limited"}
                await _answer(send, 429, limited, [(b"retry-after", str(seconds).encode())])
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
        captured: dict[str, Any] = {"status": 500, "body": b""}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")
            await send(message)

        answer: Any = None
        try:
            await self.app(scope, receive, capture)
            if captured["status"] < 500 and captured["status"] != 429:  # else not worth keeping: a retry runs again
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
        return {"detail": f"the body is over {self.max_body_bytes} bytes", "code": "too_large"}

    def _identity(self, headers: dict[str, str]) -> Identity | None:
        """The token's holder (rate limits count per token, idempotency keys per holder), when it verifies at all."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        try:
            identity = verify(self.auth.keys, token.strip())
        except TokenError:
            return None
        return identity
