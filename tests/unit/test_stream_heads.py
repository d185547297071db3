"""What the store remembers of its streams' heads, and when it declines to skip the lookup."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agentlog.eventstore.stream_heads import StreamHeads


def test_an_unknown_stream_needs_a_lookup_unless_it_must_not_exist() -> None:
    heads = StreamHeads()
    assert heads.append_after("s", None) is None
    assert heads.append_after("s", 3) is None
    assert heads.append_after("s", 0) == 0


def test_a_known_head_is_appended_after() -> None:
    heads = StreamHeads()
    heads.reached("s", 4, heads.epoch)
    assert heads.append_after("s", None) == 4
    assert heads.append_after("s", 4) == 4
    assert heads.append_after("s", 2) == 2, "version 2 exists, so version 3 is either free or taken"
    assert heads.append_after("s", 5) is None, "version 5 may not exist: appending after it could leave a gap"


def test_heads_only_move_forward() -> None:
    heads = StreamHeads()
    heads.reached("s", 4, heads.epoch)
    heads.reached("s", 2, heads.epoch)  # a slow report of an older append
    assert heads.append_after("s", None) == 4


def test_a_contended_stream_is_looked_up_from_then_on() -> None:
    heads = StreamHeads()
    heads.reached("s", 4, heads.epoch)
    heads.contended("s")
    assert heads.append_after("s", None) is None
    heads.reached("s", 6, heads.epoch)
    assert heads.append_after("s", None) is None


def test_forgetting_everything() -> None:
    heads = StreamHeads()
    heads.reached("s", 4, heads.epoch)
    heads.contended("t")
    heads.forget_all()
    assert heads.append_after("s", None) is None
    heads.reached("t", 1, heads.epoch)
    assert heads.append_after("t", None) == 1


def test_an_answer_from_before_forgetting_is_not_remembered() -> None:
    """A statement sent before the store forgot everything (its server may since have lost events) reports late."""
    heads = StreamHeads()
    sent_in = heads.epoch
    heads.forget_all()
    heads.reached("s", 9, sent_in)
    assert heads.append_after("s", None) is None


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(1, 50)), max_size=200))
def test_memory_is_bounded_and_never_runs_ahead(reports: list[tuple[str, int]]) -> None:
    heads = StreamHeads(capacity=3)
    highest: dict[str, int] = {}
    for stream, version in reports:
        heads.reached(stream, version, heads.epoch)
        highest[stream] = max(highest.get(stream, 0), version)
        remembered = [s for s in "abcdefgh" if heads.append_after(s, None) is not None]
        assert len(remembered) <= 3
        assert stream in remembered, "the stream just reported is remembered"
        for s in remembered:
            remembered_head = heads.append_after(s, None)
            assert remembered_head is not None and remembered_head <= highest[s]
