"""The auth matrix (issue 12): every route, for each token kind (admin, person, agent), on its own and on another
agent's resources, over a real connection. A refused request appends nothing."""

from __future__ import annotations

from typing import Any

import pytest

from agentlog.eventstore import EventStore
from tests.support.api import api_running
from tests.support.coordination import settled

OWN, OTHER = "ada", "bob"
OK = "ok"
# (method, path, body or params, who may: kinds allowed for own and for other agent's resources)
# "own" means the agent token's own id appears in the path/body; "other" means bob's does.
ROUTES: list[tuple[str, str, dict[str, Any] | None, set[str], set[str]]] = [
    ("PUT", "/agents/{agent}", {"working_on": "x"}, {"admin", "agent"}, {"admin"}),
    ("GET", "/agents", None, {"admin", "person", "agent"}, {"admin", "person", "agent"}),
    ("GET", "/agents/{agent}", None, {"admin", "person", "agent"}, {"admin", "person", "agent"}),
    ("GET", "/agents/{agent}/health", None, {"admin", "person", "agent"}, {"admin", "person", "agent"}),
    ("POST", "/agents/{agent}/heartbeat", None, {"admin", "agent"}, {"admin"}),
    ("POST", "/chat", {"body": "hello"}, {"admin", "person", "agent"}, {"admin", "person", "agent"}),
    ("GET", "/chat", None, {"admin", "person", "agent"}, {"admin", "person", "agent"}),
    ("POST", "/agents/{agent}/inbox", {"body": "hi"}, {"admin", "person", "agent"}, {"admin", "person", "agent"}),
    (
        "POST",
        "/messages",
        {"to": "{agent}", "body": "hi"},
        {"admin", "person", "agent"},
        {"admin", "person", "agent"},
    ),
    ("GET", "/agents/{agent}/inbox", None, {"admin", "person", "agent"}, {"admin", "person"}),
    ("POST", "/agents/{agent}/inbox/ack", {"message_ids": ["m1"]}, {"admin", "agent"}, {"admin"}),
    ("POST", "/agents/{agent}/checkpoint", {"summary": "s"}, {"admin", "agent"}, {"admin"}),
    ("GET", "/agents/{agent}/checkpoint/history", None, {"admin", "person", "agent"}, {"admin", "person"}),
    ("POST", "/agents/{agent}/memories", {"text": "t"}, {"admin", "agent"}, {"admin"}),
    ("GET", "/agents/{agent}/memories", None, {"admin", "person", "agent"}, {"admin", "person", "agent"}),
    ("GET", "/memories", None, {"admin", "person", "agent"}, {"admin", "person", "agent"}),
    ("GET", "/agents/{agent}/hot-start", None, {"admin", "person", "agent"}, {"admin", "person"}),
    ("POST", "/locks/matrix/{agent}.py", {"agent_id": "{agent}"}, {"admin", "agent"}, {"admin"}),
    ("GET", "/locks", None, {"admin", "person", "agent"}, {"admin", "person", "agent"}),
    ("POST", "/claims", {"agent_id": "{agent}", "pattern": "claims/{agent}/**"}, {"admin", "agent"}, {"admin"}),
    ("GET", "/claims", None, {"admin", "person", "agent"}, {"admin", "person", "agent"}),
    ("PUT", "/programs/{agent}", {"command": ["true"]}, {"admin"}, {"admin"}),  # it runs on the server
    ("POST", "/agents/{agent}/start", {}, {"admin", "person"}, {"admin", "person"}),
    ("POST", "/agents/{agent}/restart", {}, {"admin", "person"}, {"admin", "person"}),
    ("POST", "/agents/{agent}/stop", {}, {"admin", "person"}, {"admin", "person"}),
    ("GET", "/programs", None, {"admin", "person", "agent"}, {"admin", "person", "agent"}),
    ("GET", "/programs/{agent}", None, {"admin", "person", "agent"}, {"admin", "person", "agent"}),
    ("DELETE", "/agents/{agent}", None, {"admin", "agent"}, {"admin"}),
]


def fill(value: Any, agent: str) -> Any:
    if isinstance(value, str):
        return value.replace("{agent}", agent)
    if isinstance(value, list):
        return [fill(item, agent) for item in value]
    if isinstance(value, dict):
        return {key: fill(item, agent) for key, item in value.items()}
    return value


@pytest.mark.parametrize("kind", ["admin", "person", "agent"])
async def test_every_route_by_token_kind_and_scope(store: EventStore, kind: str) -> None:
    async with api_running(store) as api:
        for agent_id in (OWN, OTHER):
            async with api.client("agent", agent_id) as itself:
                assert (await itself.put(f"/agents/{agent_id}", json={})).status_code == 201
        name = OWN if kind == "agent" else "carol"
        async with api.client(kind, name) as client:  # type: ignore[arg-type]
            for method, path, body, own_kinds, other_kinds in ROUTES:
                for target, allowed in ((OWN, own_kinds), (OTHER, other_kinds)):
                    payload = fill(body, target)
                    if kind not in allowed:
                        await settled(store)
                    before = await api.event_count()
                    if method == "GET":
                        answer = await client.get(fill(path, target))
                    elif method == "DELETE":
                        answer = await client.delete(fill(path, target))
                    else:
                        answer = await client.request(method, fill(path, target), json=payload)
                    where = f"{kind} {method} {fill(path, target)}: {answer.status_code} {answer.text[:200]}"
                    if kind in allowed:
                        assert answer.status_code < 400 or answer.status_code in {404, 409}, where
                    else:
                        assert answer.status_code == 403, where
                        assert await api.event_count() == before, f"refused but appended: {where}"
        async with api.client("agent", OWN) as client:
            client.headers.pop("authorization")
            assert (await client.get("/agents")).status_code == 401
            client.headers["authorization"] = "Bearer not-a-token"
            unauthorized = await client.get("/agents")
            assert unauthorized.status_code == 401 and unauthorized.headers["www-authenticate"].startswith("Bearer")
