"""The manager's ranking (`handlers.agents.ranking`) against a plain sorted list: same order after any sequence of
puts, moves and removals, with runs split as they fill (a small LOAD makes many), and after a bulk load."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agentlog.handlers.agents import ranking
from agentlog.handlers.agents.ranking import Key, Ranking

OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["put", "discard"]), st.integers(0, 60), st.integers(-5, 5), st.booleans()),
    max_size=400,
)


@settings(max_examples=200, deadline=None)
@given(OPERATIONS, st.integers(0, 400))
def test_a_ranking_keeps_the_order_of_its_keys(operations: list[tuple[str, int, int, bool]], load_at: int) -> None:
    original = ranking.LOAD
    ranking.LOAD = 3
    try:
        ranked, plain = Ranking(), {}
        for step, (operation, item_number, value, flag) in enumerate(operations):
            item = f"i{item_number}"
            if step == load_at:  # as a loaded state does: gather every key, then order them once
                reloaded = Ranking()
                reloaded.gather()
                for name, key in plain.items():
                    reloaded.put(name, key)
                reloaded.order()
                ranked = reloaded
            if operation == "put":
                key: Key = (flag, value, item)
                ranked.put(item, key)
                plain[item] = key
            else:
                ranked.discard(item)
                plain.pop(item, None)
            assert list(ranked) == sorted(plain.values())
            assert ranked.first() == (min(plain.values()) if plain else None)
            assert len(ranked) == len(plain) and all(name in ranked for name in plain)
    finally:
        ranking.LOAD = original
