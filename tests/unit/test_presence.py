"""The presence rule both deciders fold (`domains.documents.presence`), against a plain model of it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agentlog.domains.agents.events import ManagerStarted, ManagerStopped
from agentlog.domains.documents.events import PersonJoined, PersonLeft
from agentlog.domains.documents.presence import Presence
from agentlog.eventstore import Event

SERVERS = ["s1", "s2", "s3"]
DOCUMENTS = ["a", "b", "c"]


def started(server: str, incarnation: str) -> ManagerStarted:
    return ManagerStarted(
        manager_id=server, incarnation=incarnation, host="h", pid=1, max_agents=1, document_url="ws://x/doc"
    )


ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("join"), st.sampled_from(DOCUMENTS), st.integers(0, 4), st.sampled_from(SERVERS)),
        st.tuples(st.just("leave"), st.sampled_from(DOCUMENTS), st.integers(0, 4)),
        st.tuples(st.just("start"), st.sampled_from(SERVERS), st.sampled_from(["i1", "i2"])),
        st.tuples(st.just("stop"), st.sampled_from(SERVERS), st.sampled_from(["i1", "i2"])),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ACTIONS)
def test_presence_follows_connections_and_servers_take_their_people_with_them(
    actions: list[tuple[object, ...]],
) -> None:
    presence = Presence()
    people: dict[str, dict[str, str]] = {document: {} for document in DOCUMENTS}
    servers: dict[str, str] = {}
    last_server: dict[str, str] = {}
    for action in actions:
        before = {document: dict(connections) for document, connections in people.items()}
        stream, event = _event(action, people, servers, last_server)
        changed = presence.fold(stream, event)
        assert set(changed) >= {d for d in DOCUMENTS if before[d] != people[d]}, "a change was not reported"
        for document in DOCUMENTS:
            assert presence.people_in(document) == len(people[document])
            if people[document]:
                assert presence.documents[document].connections == people[document]
                assert presence.documents[document].last_server == last_server[document]
            else:
                assert document not in presence.documents, "a document nobody is in is kept"
        assert presence.servers == servers
        reloaded = Presence.model_validate_json(presence.model_dump_json())
        assert reloaded.documents_of_server == presence.documents_of_server, "the server index drifted"


def _event(
    action: tuple[object, ...],
    people: dict[str, dict[str, str]],
    servers: dict[str, str],
    last_server: dict[str, str],
) -> tuple[str, Event]:
    """The event for an action, after applying it to the plain model."""
    match action:
        case ("join", str(document), int(number), str(server)):
            people[document][f"c{number}"] = server
            last_server[document] = server
            event: Event = PersonJoined(user_id="u", people_present=1, connection_id=f"c{number}", server_id=server)
            return f"document-{document}", event
        case ("leave", str(document), int(number)):
            people[document].pop(f"c{number}", None)
            event = PersonLeft(user_id="u", people_present=0, connection_id=f"c{number}", server_id="s1")
            return f"document-{document}", event
        case ("start", str(server), str(incarnation)):
            if servers.get(server) != incarnation:
                _drop(people, server)
            servers[server] = incarnation
            return f"manager-{server}", started(server, incarnation)
        case ("stop", str(server), str(incarnation)):
            if servers.get(server) == incarnation:
                _drop(people, server)
                del servers[server]
            event = ManagerStopped(manager_id=server, incarnation=incarnation, how="lost", reason="test")
            return f"manager-{server}", event
    raise AssertionError(action)


def _drop(people: dict[str, dict[str, str]], server: str) -> None:
    for connections in people.values():
        for connection in [c for c, s in connections.items() if s == server]:
            del connections[connection]


def test_a_lost_server_costs_its_own_documents_only() -> None:
    presence = Presence()
    presence.fold("manager-s1", started("s1", "i1"))
    presence.fold("manager-s2", started("s2", "i1"))
    for index in range(2_000):
        server = "s1" if index < 3 else "s2"
        joined = PersonJoined(user_id="u", people_present=1, connection_id=f"c{index}", server_id=server)
        presence.fold(f"document-d{index}", joined)
    gone = presence.fold("manager-s1", ManagerStopped(manager_id="s1", incarnation="i1", how="lost", reason="x"))
    assert gone == ["d0", "d1", "d2"]
    assert len(presence.documents) == 1_997
