"""Stream ids, categories, event ids."""

from __future__ import annotations

import time
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentlog.eventstore import InvalidStreamIdError, category_of, derived_event_id, new_event_id, validate_stream_id
from agentlog.eventstore.identifiers import DERIVED_EVENT_NAMESPACE
from agentlog.eventstore.records import ExpectedVersion, expected_version_argument


@pytest.mark.parametrize(
    ("stream_id", "category"),
    [("agent-42", "agent"), ("document-a-b", "document"), ("solo", "solo"), ("-x", "")],
)
def test_the_category_is_what_comes_before_the_first_dash(stream_id: str, category: str) -> None:
    assert category_of(stream_id) == category


@pytest.mark.parametrize("bad", ["", " ", "a b", "a\tb", "a\nb", "a\x00b", "é" * 101])
def test_invalid_stream_ids_are_refused(bad: str) -> None:
    with pytest.raises(InvalidStreamIdError):
        validate_stream_id(bad)


def test_a_stream_id_of_200_bytes_is_accepted() -> None:
    assert validate_stream_id("x" * 200) == "x" * 200


def test_event_ids_are_version_7_and_ordered_by_time() -> None:
    first = new_event_id()
    time.sleep(0.002)
    second = new_event_id()
    assert first.version == 7 and first.variant == uuid.RFC_4122
    assert first < second
    assert len({new_event_id() for _ in range(10_000)}) == 10_000


@given(st.text(min_size=1, max_size=30), st.uuids(), st.integers(0, 5))
def test_derived_event_ids_depend_only_on_their_inputs(handler: str, cause: uuid.UUID, index: int) -> None:
    assert derived_event_id(handler, cause, index) == derived_event_id(handler, cause, index)
    assert derived_event_id(handler, cause, index) != derived_event_id(handler, cause, index + 1)
    # Exactly the UUIDv5 every event already in a log was given: the fast path must never change an id.
    expected = uuid.uuid5(DERIVED_EVENT_NAMESPACE, f"{handler}/{cause}/{index}")
    made = derived_event_id(handler, cause, index)
    assert (made, made.version, made.variant, str(made), hash(made)) == (
        expected, 5, uuid.RFC_4122, str(expected), hash(expected))  # fmt: skip


def test_expected_versions_translate_to_sql() -> None:
    assert expected_version_argument(ExpectedVersion.ANY) is None
    assert expected_version_argument(ExpectedVersion.NO_STREAM) == 0
    assert expected_version_argument(5) == 5
    for bad in (-1, True, "3"):
        with pytest.raises(ValueError, match="expected version"):
            expected_version_argument(bad)  # type: ignore[arg-type]
