"""Access tokens for document sockets: signed, expiring, revocable, saying whether the holder is a person or an
agent, and which documents it opens.

A token is `al1.<payload>.<signature>`: the payload is base64url JSON (`k` kind, `sub` name, `exp` expiry and `iat`
issue time in Unix seconds, `jti` its id, `doc` the one document an agent token is good for, `docs` the document
patterns a person's token is limited to), the signature an HMAC-SHA256 over it with a key kept in the database
(`agentlog.secrets`), so every agentlog process on that database accepts the same tokens. A token is taken back by
a `TokenRevoked` event (`agentlog token revoke`): by its id, or every token of a name issued before a moment.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Literal

import orjson

from agentlog.eventstore.postgres.connections import StatementPool

PREFIX = "al1"
KEY_NAME = "token-signing-key"

Kind = Literal["user", "agent"]

ENSURE_KEY = """
WITH made AS (
    INSERT INTO agentlog.secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING value
)
SELECT value FROM made UNION ALL SELECT value FROM agentlog.secrets WHERE name = $1 LIMIT 1
"""


class TokenError(Exception):
    """The token is missing, malformed, forged, expired or not good for this use; the message says which."""


@dataclass(frozen=True, slots=True)
class Identity:
    kind: Kind
    name: str
    expires_at: float
    document_id: str | None = None
    """The one document an agent token opens."""
    token_id: str | None = None
    issued_at: float = 0.0
    documents: tuple[str, ...] | None = None
    """The documents a person's token is limited to (shell-style patterns); None for all."""

    def opens(self, document_id: str) -> bool:
        if self.kind == "agent":
            return self.document_id in (None, document_id)
        return self.documents is None or any(fnmatch.fnmatchcase(document_id, p) for p in self.documents)


async def signing_key(pool: StatementPool) -> bytes:
    """The database's token key, made on first use (concurrent first uses agree on one)."""
    value = await pool.fetchval(ENSURE_KEY, KEY_NAME, secrets.token_bytes(32))
    return bytes(value)


def check_name(name: str) -> str:
    """A token's name as recorded (user ids go into PersonJoined): 1-200 printable characters, not only spaces."""
    stripped = name.strip()
    if not stripped or len(name) > 200 or not name.isprintable():
        raise ValueError("a token's name must have 1 to 200 printable characters, not only spaces")
    return stripped


def issue(
    key: bytes,
    kind: Kind,
    name: str,
    *,
    ttl_s: float,
    document_id: str | None = None,
    documents: tuple[str, ...] | None = None,
) -> str:
    name = check_name(name)
    if ttl_s <= 0:
        raise ValueError("a token's lifetime must be positive")
    if documents is not None and (not documents or not all(p and len(p) <= 200 for p in documents)):
        raise ValueError("document patterns must be 1 to 200 characters each")
    now = time.time()
    claims: dict[str, object] = {
        "k": kind, "sub": name, "exp": int(now + ttl_s), "iat": round(now, 3), "jti": secrets.token_hex(8),
    }  # fmt: skip
    if document_id is not None:
        claims["doc"] = document_id
    if documents is not None:
        claims["docs"] = list(documents)
    payload = _encode(orjson.dumps(claims))
    return f"{PREFIX}.{payload}.{_sign(key, payload)}"


def verify(key: bytes, token: str | None, *, now: float | None = None) -> Identity:
    if not token:
        raise TokenError("no token: connect with ?token=… (`agentlog token user NAME` prints one)")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise TokenError("unknown token format")
    _, payload, signature = parts
    if not hmac.compare_digest(_sign(key, payload).encode(), signature.encode()):
        raise TokenError("unknown token (bad signature)")
    try:
        claims = orjson.loads(_decode(payload))
        kind, name, expires = claims["k"], check_name(str(claims["sub"])), float(claims["exp"])
        documents = claims.get("docs")
        if documents is not None:
            documents = tuple(str(pattern) for pattern in documents)
    except (ValueError, KeyError, TypeError, binascii.Error) as error:
        raise TokenError(f"unknown token (unreadable claims: {error})") from error
    if kind not in ("user", "agent"):
        raise TokenError(f"unknown token kind {kind!r}")
    if expires <= (time.time() if now is None else now):
        raise TokenError("expired token")
    document = claims.get("doc")
    token_id = claims.get("jti")
    return Identity(
        kind,
        name,
        expires,
        None if document is None else str(document),
        None if token_id is None else str(token_id),
        float(claims.get("iat", 0.0)),
        documents,
    )


def _sign(key: bytes, payload: str) -> str:
    return _encode(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
