"""Which recorded events are a decider's own decisions, proven by their ids rather than taken from their metadata.

A decision's id is derived from (decider, causing event id, the decision's index among that event's decisions),
and its metadata names all three (`decision_metadata`). Metadata alone proves nothing: anyone may append an event
through the CLI or SQL claiming `{"decider": "agent-manager"}`, with any causation id, or none that parses. Trusting
that made the live decider ignore such an event as "already folded" and made `replay --verify` crash on it, or
compare it as if the decider had made it. So an event counts as the decider's own only when its id is the one the
decider would have derived from what its metadata claims (`decision_cause`); any other event is an ordinary one,
and metadata that does not parse is ignored, never an error.

Decisions recorded before the index was written into the metadata carry only the decider and the cause: their
index is looked for among the first `LEGACY_INDEX_SEARCH` ones, which is what those deciders ever made per event.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from agentlog.eventstore import RecordedEvent, TypedEvent, derived_event_id

DECIDER_KEY = "decider"
CAUSE_KEY = "causation_id"
INDEX_KEY = "decision_index"

LEGACY_INDEX_SEARCH = 64
"""How many indexes are tried for a decision recorded without its index (before the index was in the metadata)."""


def decision_id(decider: str, cause: uuid.UUID, index: int) -> uuid.UUID:
    """The id of the `index`-th decision `decider` made after event `cause`: the same on every retry and refold."""
    return derived_event_id(decider, cause, index)


def decision_metadata(decider: str, cause: uuid.UUID, index: int) -> dict[str, Any]:
    """What a decision records about itself: enough to derive its id again (`decision_cause`)."""
    return {DECIDER_KEY: decider, CAUSE_KEY: str(cause), INDEX_KEY: index}


def decision_cause(decider: str, event: RecordedEvent | TypedEvent) -> uuid.UUID | None:
    """The event that caused `event` if `event` is one of `decider`'s own decisions, else None (any other event)."""
    metadata: Mapping[str, Any] = event.metadata or {}
    if metadata.get(DECIDER_KEY) != decider:
        return None
    cause = _parsed_uuid(metadata.get(CAUSE_KEY))
    if cause is None:
        return None
    return cause if event.event_id in _claimed_ids(decider, cause, metadata) else None


def is_own_decision(decider: str, event: RecordedEvent | TypedEvent) -> bool:
    return decision_cause(decider, event) is not None


def _claimed_ids(decider: str, cause: uuid.UUID, metadata: Mapping[str, Any]) -> set[uuid.UUID]:
    """The ids the metadata's claim allows: the one of its index, or (no index recorded) those of the first few."""
    if INDEX_KEY not in metadata:
        return {decision_id(decider, cause, index) for index in range(LEGACY_INDEX_SEARCH)}
    index = metadata[INDEX_KEY]
    # JSON true is a Python int (1), and 1.0 is not an index: only a plain, non-negative integer counts.
    if type(index) is not int or index < 0:
        return set()
    return {decision_id(decider, cause, index)}


def _parsed_uuid(value: object) -> uuid.UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
