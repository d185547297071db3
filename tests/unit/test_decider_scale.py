"""A decision costs what its event touches, not the number of documents known (issue 10, item 8).

Each decider is loaded (as a restarted handler loads it) with 200 and with 40,000 active documents people are in,
then decides the same new joins; the larger state may not make a join cost much more. The first version cost about
as many times more as it knew documents more (every event sorted or scanned them all); so did popping from a set a
load had filled, which kept its large table. Timed back to back, best of three, so a busy machine slows both alike.
"""

from __future__ import annotations

import itertools
import sys
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from agentlog.domains.agents.events import ManagerStarted
from agentlog.domains.documents.events import DocumentActivated, PersonJoined
from agentlog.domains.documents.presence import PeopleIn, Presence
from agentlog.handlers.agents.manager import AgentManager, DocumentWants, ManagerSeat, ManagerState
from agentlog.handlers.decider import Fact, step
from agentlog.handlers.documents.activity import ActivityState, DocumentActivity, DocumentStatus

SMALL, LARGE = 200, 40_000
POSITIONS = itertools.count(1_000_000)
S = TypeVar("S")
JOINS = 300
ALLOWED_RATIO = 4.0
"""200 times the documents may cost at most this many times as much per join (it measures ~1x)."""


def presence(documents: int) -> Presence:
    return Presence(
        documents={f"d{i}": PeopleIn(connections={f"c{i}": "m1"}, last_server="m1") for i in range(documents)},
        servers={"m1": "i1"},
    )


def loaded_manager(documents: int) -> ManagerState:
    """Every document active, people in it and deferred (one manager, no slot): as loaded from saved rows."""
    return ManagerState.model_validate(
        ManagerState(
            documents={
                f"d{i}": DocumentWants(active=True, last_activity=i + 1, server_id="m1", deferred=True)
                for i in range(documents)
            },
            managers={"m1": ManagerSeat(incarnation="i1", max_agents=0, document_url="ws://x/doc")},
            presence=presence(documents),
        ).model_dump()
    )


def loaded_activity(documents: int) -> ActivityState:
    return ActivityState.model_validate(
        ActivityState(
            documents={f"d{i}": DocumentStatus(active=True) for i in range(documents)}, presence=presence(documents)
        ).model_dump()
    )


def seconds_per_join_of_manager(state: ManagerState) -> float:
    decider = AgentManager()
    started = time.perf_counter()
    for _ in range(JOINS):
        position = next(POSITIONS)
        document_id = f"n{position}"
        joined = PersonJoined(user_id="u", people_present=1, connection_id=document_id, server_id="m1")
        activated = DocumentActivated(document_id=document_id, people_present=1, server_id="m1")
        for event in (joined, activated):
            state, decisions = step(decider, state, Fact(event, uuid.uuid4(), f"document-{document_id}", position))
        assert [d.event.event_type for d in decisions] == ["AgentDeferred"]
    return (time.perf_counter() - started) / JOINS


def seconds_per_join_of_activity(state: ActivityState) -> float:
    decider = DocumentActivity()
    started = time.perf_counter()
    for _ in range(JOINS):
        document_id = f"n{next(POSITIONS)}"
        joined = PersonJoined(user_id="u", people_present=1, connection_id=document_id, server_id="m1")
        state, decisions = step(decider, state, Fact(joined, uuid.uuid4(), f"document-{document_id}", None))
        assert [d.event.event_type for d in decisions] == ["DocumentActivated"]
    restarted = ManagerStarted(manager_id="m2", incarnation="i1", host="h", pid=1, max_agents=1, document_url="x")
    state, decisions = step(decider, state, Fact(restarted, uuid.uuid4(), "manager-m2", None))
    assert decisions == [], "a server none of these people are on took them away"
    return (time.perf_counter() - started) / JOINS


def best_ratio(load: Callable[[int], S], cost: Callable[[S], float]) -> float:
    small, large = load(SMALL), load(LARGE)
    return min(cost(large) / cost(small) for _ in range(3))


def test_a_join_costs_the_agent_manager_the_same_with_200_times_the_documents() -> None:
    assert best_ratio(loaded_manager, seconds_per_join_of_manager) < ALLOWED_RATIO


def test_a_join_costs_the_activity_decider_the_same_with_200_times_the_documents() -> None:
    assert best_ratio(loaded_activity, seconds_per_join_of_activity) < ALLOWED_RATIO


def test_a_loaded_state_s_work_sets_are_not_the_ones_the_load_filled() -> None:
    """Sets keep the table they grew to: popping from one a load filled with every document scans it each time."""
    state = loaded_manager(LARGE)
    step(AgentManager(), state, Fact(DocumentActivated(document_id="x", people_present=1, server_id="m1"),
                                     uuid.uuid4(), "document-x", next(POSITIONS)))  # fmt: skip
    assert sys.getsizeof(state.index.recheck_documents) < sys.getsizeof(set(range(1_000)))
