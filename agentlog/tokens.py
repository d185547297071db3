"""One token system for the API, the WebSocket feed, the MCP server and the document sockets: JWTs (PyJWT, HS256).

Claims: `iss` "agentlog", `sub` the holder's name (a person's user id, an agent's id, an operator's name), `kind`
`admin` | `person` | `agent`, `iat` and `exp` (Unix seconds), `jti` the token's id (for revocation), and for
document sockets `doc` (the one document a token opens) or `docs` (the document patterns a person's token is limited
to). The header's `kid` names the signing key: keys live in the database (`agentlog.secrets`, `jwt-key/<kid>`), so
every agentlog process on it accepts the same tokens; the newest key signs, the older ones keep verifying until
retired (`agentlog token rotate-key`, `agentlog token retire-key KID`). A token is taken back by a `TokenRevoked`
event (`agentlog token revoke`), by its id or every token of one holder issued before a moment.

What a token may do: an `admin` anything; a `person` read everything and act as itself (chat, messages), never as an
agent; an `agent` act only as its own agent id (`sub`): it cannot post as another, read another's inbox or release
another's lock. A token whose `scope` is "read" may only read, whatever its kind: every write it sends is refused
(and recorded, `ToolCallRefused`), so an executor restricted to reading is held to it by the server.
"""

from __future__ import annotations

import fnmatch
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import jwt

from agentlog.eventstore.postgres.connections import StatementPool
from agentlog.eventstore.postgres.queries import load_queries

ISSUER = "agentlog"
ALGORITHM = "HS256"
KEY_PREFIX = "jwt-key/"
READ_SCOPE = "read"
"""The `scope` claim of a token that may only read (an executor's): anything else it asks is refused."""

Kind = Literal["admin", "person", "agent"]
KINDS: tuple[str, ...] = get_args(Kind)

QUERIES = load_queries(Path(__file__).with_name("tokens.sql"))


class TokenError(Exception):
    """The token is missing, malformed, forged, expired or not good for this use; the message says which."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who holds a verified token."""

    kind: Kind
    name: str
    expires_at: float
    document_id: str | None = None
    """The one document the token opens (None: any the kind allows)."""
    token_id: str | None = None
    issued_at: float = 0.0
    documents: tuple[str, ...] | None = None
    """The documents a person's token is limited to (shell-style patterns); None for all."""
    read_only: bool = False
    """The token may read and call read-only tools, never write (claim `scope` "read": an executor's token)."""

    def opens(self, document_id: str) -> bool:
        if self.document_id is not None:
            return self.document_id == document_id
        return self.documents is None or any(fnmatch.fnmatchcase(document_id, p) for p in self.documents)

    @property
    def revocation_kind(self) -> str:
        """The holder's kind as `TokenRevoked` names it (persons were `user` before there were admins)."""
        return "user" if self.kind == "person" else self.kind


class Keyring:
    """The signing keys of a database, by `kid`; the newest signs."""

    def __init__(self, keys: dict[str, bytes], pool: StatementPool | None = None) -> None:
        if not keys:
            raise TokenError("no signing key: run `agentlog migrate` and `agentlog token rotate-key`")
        self.keys = dict(keys)
        self.current = list(keys)[-1]
        self._pool = pool
        self._refreshed_at = time.monotonic()

    @property
    def secret(self) -> bytes:
        return self.keys[self.current]

    async def refresh(self, *, min_interval_s: float = 1.0) -> bool:
        """Read the keys again (another process may have rotated them); at most once per `min_interval_s`."""
        if self._pool is None or time.monotonic() - self._refreshed_at < min_interval_s:
            return False
        self._refreshed_at = time.monotonic()
        keys = await _select_keys(self._pool)
        if keys:
            self.keys, self.current = keys, list(keys)[-1]
        return True


async def _select_keys(pool: StatementPool) -> dict[str, bytes]:
    return {row["kid"]: bytes(row["value"]) for row in await pool.fetch(QUERIES["select_keys"], KEY_PREFIX)}


def _new_kid() -> str:
    """Time-ordered, so the newest sorts last even among keys made in the same transaction."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(2)}"


async def signing_key(pool: StatementPool) -> Keyring:
    """The database's keyring, with a first key made on first use (concurrent first uses agree on one)."""
    await pool.execute(QUERIES["ensure_key"], KEY_PREFIX + _new_kid(), secrets.token_bytes(32), KEY_PREFIX)
    return Keyring(await _select_keys(pool), pool)


async def rotate_key(pool: StatementPool) -> str:
    """Add a key that signs from now on; tokens signed with the older ones stay valid. Its kid."""
    kid = _new_kid()
    await pool.execute(QUERIES["add_key"], KEY_PREFIX + kid, secrets.token_bytes(32))
    return kid


async def retire_key(pool: StatementPool, kid: str) -> bool:
    """Remove a key: tokens it signed are refused from then on (by each process once it reads its keys again)."""
    keys = await _select_keys(pool)
    if kid in keys and len(keys) == 1:
        raise ValueError("that is the only signing key: rotate first (`agentlog token rotate-key`)")
    return await pool.fetchval(QUERIES["delete_key"], KEY_PREFIX + kid) is not None


def check_name(name: str) -> str:
    """A token's name as recorded (user ids go into PersonJoined): 1-200 printable characters, not only spaces."""
    stripped = name.strip()
    if not stripped or len(name) > 200 or not name.isprintable():
        raise ValueError("a token's name must have 1 to 200 printable characters, not only spaces")
    return stripped


def issue(
    keys: Keyring,
    kind: Kind,
    name: str,
    *,
    ttl_s: float,
    document_id: str | None = None,
    documents: tuple[str, ...] | None = None,
    read_only: bool = False,
) -> str:
    if kind not in KINDS:
        raise ValueError(f"a token's kind is one of {', '.join(KINDS)}")
    name = check_name(name)
    if ttl_s <= 0:
        raise ValueError("a token's lifetime must be positive")
    if documents is not None and (not documents or not all(p and len(p) <= 200 for p in documents)):
        raise ValueError("document patterns must be 1 to 200 characters each")
    now = time.time()
    claims: dict[str, Any] = {
        "iss": ISSUER, "sub": name, "kind": kind, "iat": int(now), "exp": int(now + ttl_s),
        "jti": secrets.token_hex(8), "iat_ms": int(now * 1000),
    }  # fmt: skip
    if document_id is not None:
        claims["doc"] = document_id
    if documents is not None:
        claims["docs"] = list(documents)
    if read_only:
        claims["scope"] = READ_SCOPE
    return jwt.encode(claims, keys.secret, algorithm=ALGORITHM, headers={"kid": keys.current})


def verify(keys: Keyring, token: str | None, *, now: float | None = None) -> Identity:
    """The token's holder, or `TokenError` saying what is wrong. `now=0` accepts expired tokens (to revoke them)."""
    if not token:
        raise TokenError("no token: send `Authorization: Bearer …` or ?token=… (`agentlog token` prints one)")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        raise TokenError(f"unknown token format ({error})") from error
    kid = header.get("kid")
    if not isinstance(kid, str) or kid not in keys.keys:
        raise TokenError("unknown token (signed with a key this database does not have, or retired)")
    try:
        claims = jwt.decode(
            token,
            keys.keys[kid],
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss"], "verify_exp": False},
        )
    except jwt.InvalidSignatureError as error:
        raise TokenError("unknown token (bad signature)") from error
    except jwt.PyJWTError as error:
        raise TokenError(f"unknown token ({error})") from error
    try:
        kind, name, expires = claims["kind"], check_name(str(claims["sub"])), float(claims["exp"])
        documents = claims.get("docs")
        if documents is not None:
            documents = tuple(str(pattern) for pattern in documents)
    except (ValueError, KeyError, TypeError) as error:
        raise TokenError(f"unknown token (unreadable claims: {error})") from error
    if kind not in KINDS:
        raise TokenError(f"unknown token kind {kind!r}")
    scope = claims.get("scope")
    if scope not in (None, READ_SCOPE):
        raise TokenError(f"unknown token scope {scope!r}")
    if expires <= (time.time() if now is None else now):
        raise TokenError("expired token")
    document = claims.get("doc")
    token_id = claims.get("jti")
    issued_ms = claims.get("iat_ms")
    issued_at = float(issued_ms) / 1000 if isinstance(issued_ms, int | float) else float(claims["iat"])
    return Identity(
        kind,
        name,
        expires,
        None if document is None else str(document),
        None if token_id is None else str(token_id),
        issued_at,
        documents,
        read_only=scope == READ_SCOPE,
    )


async def verify_refreshing(keys: Keyring, token: str | None) -> Identity:
    """`verify`, reading the keys again once when the token names a key this process has not seen (rotated by
    another process)."""
    try:
        return verify(keys, token)
    except TokenError:
        if token and await keys.refresh():
            return verify(keys, token)
        raise
