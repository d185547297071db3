"""Events of `token-…` streams: access tokens taken back.

A token is revoked by its id (`token-<id>`), or every token of one name issued before a moment (`token-user-…`,
`token-agent-…`, by a digest of the name): a leaked link, a person who left the team. Every document server follows
these and closes the sockets that use a revoked token within seconds; no server accepts it again.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints, model_validator

from agentlog.eventstore.events import Event, catalogue


def token_stream(token_id: str) -> str:
    return f"token-{token_id}"


def holder_stream(kind: str, name: str) -> str:
    """One stream per holder; names may hold any printable character, stream ids may not (hence the digest)."""
    return f"token-{kind}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


@catalogue.register
class TokenRevoked(Event):
    """A token (`token_id`), or every token of `kind` and `subject` issued at or before `issued_before` (Unix
    seconds), may no longer open a document; sockets open with it are closed."""

    event_type: ClassVar[str] = "TokenRevoked"
    category: ClassVar[str] = "token"

    token_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    kind: Literal["user", "agent"] | None = None
    subject: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    issued_before: Annotated[float, Field(ge=0)] | None = None
    reason: Annotated[str, StringConstraints(max_length=500)] = ""

    @model_validator(mode="after")
    def _one_target(self) -> TokenRevoked:
        if self.token_id is None and (self.kind is None or self.subject is None or self.issued_before is None):
            raise ValueError("give a token_id, or kind, subject and issued_before")
        return self
