"""What a coordination rule refuses; the API answers each with its own status (409, 403, 404)."""

from __future__ import annotations

from dataclasses import dataclass, field


class CoordinationError(Exception):
    """A coordination command was refused; nothing was appended."""


@dataclass
class Conflict:
    """Someone else holds what was asked for: a lock (`resource`) or a claim (`claim_id`, `pattern`)."""

    kind: str
    holder: str
    resource: str | None = None
    claim_id: str | None = None
    pattern: str | None = None
    fencing_token: int | None = None
    exclusive: bool | None = None


class HeldError(CoordinationError):
    """Held by another agent; `conflicts` names who holds what."""

    def __init__(self, message: str, conflicts: list[Conflict]) -> None:
        super().__init__(message)
        self.conflicts = conflicts


@dataclass
class StaleGrantError(CoordinationError):
    """The grant named is not the current one (an old fencing token, another holder, a lock already free)."""

    message: str
    current_holder: str | None = None
    current_fencing_token: int | None = None
    details: dict[str, object] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


class NotFoundError(CoordinationError):
    """No such claim, lock grant or agent."""
