"""The document activity decider: active on the first person in, idle after a grace nobody came back in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from agentlog.domains.agents.events import ManagerStarted, ManagerStopped
from agentlog.domains.deciders.events import DeciderConfigured
from agentlog.domains.documents.events import DocumentActivated, DocumentIdled, PersonJoined, PersonLeft
from agentlog.domains.timers.events import TimerCancelled, TimerFired, TimerScheduled
from agentlog.eventstore import Event
from agentlog.handlers.decider import Decision, Fact, step
from agentlog.handlers.documents.activity import IDLE_GRACE, ActivityState, DocumentActivity
from tests.unit.saved_rows import SavedRows, private_indexes


class Log:
    def __init__(self) -> None:
        self.decider = DocumentActivity(idle_grace_s=30)
        self.state = self.decider.initial_state()
        self.facts: list[Fact] = []
        self.decisions: list[Decision] = []

    def feed(self, stream_id: str, event: Event) -> list[Event]:
        fact = Fact(event, uuid.UUID(int=len(self.facts) + 1), stream_id, len(self.facts) + 1)
        self.facts.append(fact)
        self.state, decisions = step(self.decider, self.state, fact)
        self.decisions.extend(decisions)
        return [decision.event for decision in decisions]

    def join(self, connection: str, server: str = "s1", document: str = "d") -> list[Event]:
        return self.feed(
            f"document-{document}",
            PersonJoined(user_id="ada", people_present=1, connection_id=connection, server_id=server),
        )

    def leave(self, connection: str, server: str = "s1", document: str = "d") -> list[Event]:
        return self.feed(
            f"document-{document}",
            PersonLeft(user_id="ada", people_present=0, connection_id=connection, server_id=server),
        )

    def fire(self, timer: TimerScheduled, document: str = "d") -> list[Event]:
        return self.feed(
            f"document-{document}",
            TimerFired(
                timer_id=timer.timer_id, purpose=IDLE_GRACE, subject=document, due_at=datetime(2026, 1, 1, tzinfo=UTC)
            ),
        )


def test_first_in_activates_last_out_schedules_grace_and_a_return_cancels_it() -> None:
    log = Log()
    assert [type(e) for e in log.join("c1")] == [DocumentActivated]
    assert log.join("c2") == []
    assert log.leave("c1") == []
    (first_timer,) = log.leave("c2")
    assert isinstance(first_timer, TimerScheduled) and first_timer.delay_s == 30
    (cancelled,) = log.join("c3")
    assert cancelled == TimerCancelled(timer_id=first_timer.timer_id)
    assert log.fire(first_timer) == []  # fired after it was cancelled: ignored
    (second_timer,) = log.leave("c3")
    assert isinstance(second_timer, TimerScheduled) and second_timer.timer_id != first_timer.timer_id
    (idled,) = log.fire(second_timer)
    assert isinstance(idled, DocumentIdled) and "30 s" in idled.reason
    assert log.state.documents == {}  # nothing left to remember about a quiet document
    assert [type(e) for e in log.join("c4")] == [DocumentActivated]


def test_a_server_that_restarts_or_is_lost_takes_its_people_with_it() -> None:
    log = Log()
    log.feed(
        "manager-s1",
        ManagerStarted(manager_id="s1", incarnation="i1", host="h", pid=1, max_agents=1, document_url="ws://x/doc"),
    )
    log.feed(
        "manager-s2",
        ManagerStarted(manager_id="s2", incarnation="i3", host="h", pid=3, max_agents=1, document_url="ws://x/doc"),
    )
    log.join("c1", server="s1", document="a")
    log.join("c2", server="s2", document="b")
    restarted = log.feed(
        "manager-s1",
        ManagerStarted(manager_id="s1", incarnation="i2", host="h", pid=2, max_agents=1, document_url="ws://x/doc"),
    )
    assert [(type(e), e.subject) for e in restarted if isinstance(e, TimerScheduled)] == [(TimerScheduled, "a")]
    lost = log.feed("manager-s2", ManagerStopped(manager_id="s2", incarnation="i3", how="lost", reason="gone"))
    assert [e.subject for e in lost if isinstance(e, TimerScheduled)] == ["b"]


ACTIONS = st.lists(
    st.tuples(st.sampled_from(["join", "leave", "fire", "restart"]), st.integers(0, 3), st.sampled_from(["a", "b"])),
    max_size=60,
)
SERVERS = ["s1", "s2"]


@settings(max_examples=200, deadline=None)
@given(ACTIONS)
def test_active_exactly_while_someone_is_in_or_within_grace_and_deterministic(
    actions: list[tuple[str, int, str]],
) -> None:
    """People join on either of two servers; a server that restarts takes its people with it."""
    log = Log()
    present: dict[str, dict[str, str]] = {"a": {}, "b": {}}
    timers: dict[str, list[TimerScheduled]] = {"a": [], "b": []}
    active = {"a": False, "b": False}
    incarnations = 0
    for action, number, document in actions:
        connection = f"{document}{number}"
        server = SERVERS[number % 2]
        if action == "join" and connection not in present[document]:
            present[document][connection] = server
            out = log.join(connection, server=server, document=document)
        elif action == "leave" and connection in present[document]:
            out = log.leave(connection, server=present[document].pop(connection), document=document)
        elif action == "fire" and timers[document]:
            out = log.fire(timers[document][number % len(timers[document])], document=document)
        elif action == "restart":
            incarnations += 1
            for people in present.values():
                for gone in [c for c, s in people.items() if s == server]:
                    del people[gone]
            out = log.feed(
                f"manager-{server}",
                ManagerStarted(manager_id=server, incarnation=f"i{incarnations}", host="h", pid=1, max_agents=1,
                               document_url="ws://x/doc"),
            )  # fmt: skip
        else:
            continue
        for event in out:
            if isinstance(event, TimerScheduled):
                timers[event.subject].append(event)
            if isinstance(event, DocumentActivated):
                assert not active[event.document_id]
                active[event.document_id] = True
            if isinstance(event, DocumentIdled):
                assert active[event.document_id] and not present[event.document_id]
                active[event.document_id] = False
        for name, connections in present.items():
            if connections:
                assert active[name], "someone is in an inactive document"
    replay = DocumentActivity(idle_grace_s=30)
    state = ActivityState()
    saved = SavedRows()
    saved.save(state, everything=True)
    again: list[Decision] = []
    for index, fact in enumerate(log.facts):
        # Loaded before every event, as a restarted handler would: from one JSON value, or from the rows saved.
        state = ActivityState.model_validate_json(state.model_dump_json()) if index % 2 else saved.load(ActivityState)
        state, decisions = step(replay, state, fact)
        saved.save(state)
        assert private_indexes(saved.load(ActivityState)) == private_indexes(state), "an index drifted"
        again.extend(decisions)
    assert again == log.decisions
    assert saved.written <= 3 * len(log.facts), "a save wrote more than what its event touched"


def test_a_lost_server_with_thousands_of_documents_is_one_step() -> None:
    log = Log()
    log.feed("manager-s1", ManagerStarted(manager_id="s1", incarnation="i1", host="h", pid=1, max_agents=1,
                                          document_url="ws://x/doc"))  # fmt: skip
    for index in range(5_000):
        log.join(f"c{index}", document=f"d{index}")
    lost = log.feed("manager-s1", ManagerStopped(manager_id="s1", incarnation="i1", how="lost", reason="gone"))
    assert len(lost) == 5_000 and all(isinstance(event, TimerScheduled) for event in lost)


def test_recorded_settings_apply_from_their_event_and_unusable_ones_are_ignored() -> None:
    log = Log()  # configured with a 30 s grace
    log.feed("decider-document-activity", DeciderConfigured(decider="document-activity", settings={"idle_grace_s": 5}))
    log.join("c1")
    (grace,) = [e for e in log.leave("c1") if isinstance(e, TimerScheduled)]
    assert grace.delay_s == 5
    for unusable in ({"idle_grace_s": 1e12}, {"idle_grace_s": "soon"}):  # beyond any timer; not a number
        log.feed("decider-document-activity", DeciderConfigured(decider="document-activity", settings=unusable))
    log.feed("decider-agent-manager", DeciderConfigured(decider="document-activity", settings={"idle_grace_s": 9}))
    log.join("c2")
    (grace,) = [e for e in log.leave("c2") if isinstance(e, TimerScheduled)]
    assert grace.delay_s == 5, "settings from another stream or that no timer can have were adopted"
