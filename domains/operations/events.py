"""Events of operations on entity keys. One stream per key, `operation-<key>`: its history is every operation
registered on it, what became of each, and the timers that close its conflict window and expire it.

An entity key names what the work is about, in the caller's own words: `email:1234`, `customer-42`,
`order/2026/17`. It is a name, never parsed: two spellings are two keys, except for what normalisation makes one
(surrounding blanks, Unicode composition, `normalise_key`).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, ClassVar

from pydantic import Field, StringConstraints

from agentlog.domains.coordination.names import AgentId, InvalidNameError
from agentlog.domains.timers.events import TimerDelay
from agentlog.eventstore.events import Event, catalogue

STREAM_PREFIX = "operation-"
MAX_KEY_BYTES = 190
"""A stream id is at most 200 bytes; the key is the stream's name after `operation-`."""
KEY_PATTERN = r"^[^\s\x00-\x1f\x7f]+$"
EntityKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY_BYTES, pattern=KEY_PATTERN)]
OPERATION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
OperationId = Annotated[str, StringConstraints(pattern=OPERATION_ID_PATTERN)]
Action = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(max_length=500)]
TimerId = Annotated[str, StringConstraints(min_length=1, max_length=100)]
MAX_OPERATION_TTL_S = 7 * 24 * 3600
_KEY = re.compile(KEY_PATTERN)


class InvalidOperationError(InvalidNameError):
    """An entity key, operation id, action or duration an operation cannot have; `field` names which, and the
    message starts with it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def normalise_key(key: object, field: str = "key") -> str:
    """The one spelling of an entity key (NFC, surrounding blanks dropped), or `InvalidOperationError` naming
    `field`: a key becomes a stream name, so it may hold no blanks or control characters and has a byte limit."""
    if not isinstance(key, str):
        raise InvalidOperationError(field, f"an entity key is a string, not {type(key).__name__}")
    normal = unicodedata.normalize("NFC", key).strip()
    if not normal:
        raise InvalidOperationError(field, "the entity key is empty; name what the work is about (email:1234)")
    if not _KEY.fullmatch(normal):
        raise InvalidOperationError(
            field, f"entity key {normal[:80]!r} holds blanks or control characters; join words with '-' or ':'"
        )
    if len(normal.encode()) > MAX_KEY_BYTES:
        raise InvalidOperationError(field, f"an entity key is at most {MAX_KEY_BYTES} bytes (UTF-8)")
    return normal


def operation_stream(key: str) -> str:
    """The stream of a (normalised) entity key: every operation on it, in the order they were registered."""
    return STREAM_PREFIX + key


def key_of_stream(stream_id: str) -> str | None:
    """The entity key an `operation-` stream is about (None for any other stream)."""
    return stream_id[len(STREAM_PREFIX) :] if stream_id.startswith(STREAM_PREFIX) else None


@catalogue.register
class OperationRegistered(Event):
    """`agent_id` is working on `key` (`action`: what it does to it). Another agent registering on the key within
    `window_s` is refused with this one; it expires `ttl_s` after it was registered unless finished before. Its
    timers (`window_timer_id`, none when `window_s` is 0, and `expiry_timer_id`) are scheduled in the same append."""

    event_type: ClassVar[str] = "OperationRegistered"
    category: ClassVar[str] = "operation"

    key: EntityKey
    operation_id: OperationId
    agent_id: AgentId
    action: Action
    window_s: TimerDelay
    ttl_s: Annotated[float, Field(gt=0, le=MAX_OPERATION_TTL_S)]
    window_timer_id: TimerId | None = None
    expiry_timer_id: TimerId
    data: dict[str, Any] = Field(default_factory=dict)


@catalogue.register
class OperationFinished(Event):
    """The agent that registered the operation is done with it (`outcome`, in its words)."""

    event_type: ClassVar[str] = "OperationFinished"
    category: ClassVar[str] = "operation"

    key: EntityKey
    operation_id: OperationId
    agent_id: AgentId
    outcome: ShortText = ""


@catalogue.register
class OperationExpired(Event):
    """Ended by the log: its TTL passed unfinished (`timer_id`, the expiry timer as the expirer saw it)."""

    event_type: ClassVar[str] = "OperationExpired"
    category: ClassVar[str] = "operation"

    key: EntityKey
    operation_id: OperationId
    agent_id: AgentId
    timer_id: TimerId
    reason: ShortText
