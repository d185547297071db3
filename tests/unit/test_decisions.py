"""Which events are a decider's own decisions (by derived id, whatever the metadata claims), and how the runner
shrinks a batch around an event its handler cannot handle. No database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from agentlog.eventstore import RecordedEvent
from agentlog.handlers.decisions import decision_cause, decision_id, decision_metadata
from agentlog.handlers.handler import UndecidableEventError
from agentlog.handlers.runner import isolating_limit

DECIDER = "document-activity"
CAUSE = uuid.UUID("0190c1b2-0000-7000-8000-000000000001")


def recorded(event_id: uuid.UUID, metadata: dict[str, Any], position: int = 1) -> RecordedEvent:
    return RecordedEvent(
        position, 1, event_id, "document-a", 1, "document", "DocumentIdled", 1, {}, metadata, datetime.now(UTC)
    )


def test_a_decision_recorded_as_the_decider_records_it_is_its_own() -> None:
    for index in (0, 3):
        event = recorded(decision_id(DECIDER, CAUSE, index), decision_metadata(DECIDER, CAUSE, index))
        assert decision_cause(DECIDER, event) == CAUSE
        assert decision_cause("agent-manager", event) is None


def test_a_decision_recorded_before_the_index_was_in_the_metadata_is_found_by_its_id() -> None:
    event = recorded(decision_id(DECIDER, CAUSE, 2), {"decider": DECIDER, "causation_id": str(CAUSE)})
    assert decision_cause(DECIDER, event) == CAUSE


@pytest.mark.parametrize(
    "metadata",
    [
        decision_metadata(DECIDER, CAUSE, 0),  # right claim, wrong id: appended by someone else
        {"decider": DECIDER, "causation_id": str(CAUSE), "decision_index": 1},
        {"decider": DECIDER, "causation_id": str(CAUSE), "decision_index": True},
        {"decider": DECIDER, "causation_id": str(CAUSE), "decision_index": "0"},
        {"decider": DECIDER, "causation_id": str(CAUSE), "decision_index": -1},
        {"decider": DECIDER, "causation_id": "not-a-uuid", "decision_index": 0},
        {"decider": DECIDER, "causation_id": 42},
        {"decider": DECIDER},
        {},
    ],
)
def test_metadata_that_does_not_prove_a_decision_makes_an_ordinary_event(metadata: dict[str, Any]) -> None:
    assert decision_cause(DECIDER, recorded(uuid.uuid4(), metadata)) is None


def test_the_runner_claims_the_events_before_an_undecidable_one_then_that_one_alone() -> None:
    events = [recorded(uuid.uuid4(), {}, position) for position in range(1, 6)]

    def error_at(event: RecordedEvent) -> UndecidableEventError:
        return UndecidableEventError("h", event, ValueError("odd"))

    assert isolating_limit(events, error_at(events[3])) == 3
    assert isolating_limit(events, error_at(events[0])) == 1
    assert isolating_limit(events, error_at(recorded(uuid.uuid4(), {}, 9))) == 1
    assert "ValueError: odd" in error_at(events[0]).reason
