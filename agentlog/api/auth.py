"""Who calls, and what they may do: bearer tokens (`agentlog.tokens`), revocations from the log, scopes.

An `admin` may do anything, as any agent; a `person` reads everything and acts as itself (chat, direct messages),
never as an agent; an `agent` acts only as its own id: registering, heartbeats, locks, claims, checkpoints,
memories, reading and acknowledging its inbox. Hints elsewhere (MCP annotations) never widen this.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from agentlog.api.errors import ApiError, forbidden, unauthorized
from agentlog.documents.revocations import Revocations
from agentlog.tokens import Identity, Keyring, TokenError, verify_refreshing


@dataclass(frozen=True, slots=True)
class Caller:
    identity: Identity

    @property
    def kind(self) -> str:
        return self.identity.kind

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def key(self) -> str:
        """What rate limits, idempotency keys and read-your-writes are counted by: the token."""
        return self.identity.token_id or f"{self.identity.kind}:{self.identity.name}"

    def agent(self, agent_id: str | None) -> str:
        """The agent this caller acts as: its own id for an agent token (another is refused), the one named for an
        admin; a person acts as no agent."""
        if self.kind == "agent":
            if agent_id is not None and agent_id != self.name:
                raise forbidden(f"this token acts as agent {self.name} only, not {agent_id}")
            return self.name
        if self.kind == "admin":
            if agent_id is None:
                raise forbidden("an admin token acts as an agent only when the agent is named (agent_id)")
            return agent_id
        raise forbidden("a person's token cannot act as an agent; use an agent's token (`agentlog token agent ID`)")

    def reads_private(self, agent_id: str) -> None:
        """An agent's inbox, tasks feed, checkpoints and hot-start bundle: the agent itself, a person or an admin."""
        if self.kind == "agent" and agent_id != self.name:
            raise forbidden(f"this token is agent {self.name}'s: it cannot read agent {agent_id}'s")

    def reads_every_task(self) -> None:
        """Every task's payload and result: people and admins. An agent reads the tasks it created or was given."""
        if self.kind == "agent":
            raise forbidden(f"this token is agent {self.name}'s: it reads its own tasks, not every task")

    def author(self) -> tuple[str, str]:
        """Who a chat post or direct message is from: (name, kind)."""
        return self.name, self.kind


class Authenticator:
    def __init__(self, keys: Keyring, revocations: Revocations) -> None:
        self.keys = keys
        self.revocations = revocations

    async def caller_of_token(self, token: str | None) -> Caller:
        try:
            identity = await verify_refreshing(self.keys, (token or "").strip() or None)
        except TokenError as error:
            raise unauthorized(str(error)) from error
        if self.revocations.revoked(identity):
            raise unauthorized("revoked token")
        return Caller(identity)

    async def caller(self, request: Request) -> Caller:
        token = bearer_token(request.headers.getlist("authorization"), request.query_params.get("token"))
        who = await self.caller_of_token(token)
        if who.identity.read_only and not reads_only(request.method, request.url.path):
            # The guard refused it already (and recorded it); this holds whatever reached the route.
            raise ApiError(403, "read_only_token", "this token may only read (scope read): it cannot write")
        return who


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOOLS_PATH = "/api/v1/tools/"


def reads_only(method: str, path: str) -> bool:
    """Whether a read-only token may send this request: a read, or a call of a tool (whose route checks that the
    tool only reads)."""
    return method in READ_METHODS or (method == "POST" and path.startswith(TOOLS_PATH))


def bearer_token(headers: list[str], query_token: str | None) -> str | None:
    """The request's token, read one way by the guard and by the routes: the one `Authorization: Bearer` header, or
    else `?token=`. Two Authorization headers are refused (each reader could take another)."""
    if len(headers) > 1:
        raise unauthorized("send one Authorization header")
    if not headers:
        return (query_token or "").strip() or None
    scheme, _, token = headers[0].partition(" ")
    if scheme.lower() != "bearer":
        raise unauthorized("use `Authorization: Bearer TOKEN` (`agentlog token ...` prints one)")
    return token.strip() or None
