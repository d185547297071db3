"""The task queue through the API over real connections (issue 13): create, pull, start, heartbeat, complete; a
silent attempt replaced by a new one and the old attempt's late completion refused and recorded; cancel a running
task and the agent is told; requeue from the dead letter; workflows; and bad input refused with nothing appended."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from agentlog.domains.tasks.events import TaskCreated, claim_stream
from agentlog.eventstore import NO_STREAM, EventStore, NewEvent
from agentlog.eventstore.postgres import recorder
from agentlog.handlers.decider import verify_decider
from agentlog.handlers.decider_state import load_state
from agentlog.handlers.tasks.dispatcher import Dispatcher, DispatcherState
from tests.support.api import RunningApi, api_running
from tests.support.coordination import settled
from tests.support.hosting import hosted


async def pulling_agent(api: RunningApi, agent_id: str, capabilities: list[str] | None = None) -> httpx.AsyncClient:
    """An agent that gets tasks only when it claims them (so the test says when it works)."""
    client = api.client("agent", agent_id)
    body = {"capabilities": capabilities or [], "metadata": {"task_mode": "pull"}}
    assert (await client.put(f"/agents/{agent_id}", json=body)).status_code == 201
    return client


async def claimed(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    answer = await client.post("/task-claims", json={"wait_s": 10, **body})
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def events_of(store: EventStore, stream: str) -> list[str]:
    return [event.event_type for event in await store.read_stream(stream)]


async def test_create_claim_start_heartbeat_complete(store: EventStore) -> None:
    async with api_running(store) as api:
        agent = await pulling_agent(api, "worker-1", ["python"])
        person = api.client("person", "ada")
        created = await person.post("/tasks", json={"task_id": "build-1", "task_type": "build", "priority": 7,
                                                   "capabilities": ["python"], "payload": {"target": "wheel"}})
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "queued" and created.json()["stream_version"] == 1

        answer = await claimed(agent)
        assignment = answer["assignment"]
        assert assignment is not None, answer
        assert (assignment["task_id"], assignment["attempt"]) == ("build-1", 1)
        assert assignment["payload"] == {"target": "wheel"}
        for step, body in (("start", {}), ("heartbeat", {"progress": {"done": 0.5}}),
                           ("complete", {"result": {"wheel": "agentlog.whl"}})):
            done = await agent.post(f"/tasks/build-1/{step}", json={"attempt": 1, **body})
            assert done.status_code == 200, (step, done.text)
        assert done.json()["status"] == "completed"

        task = (await agent.get("/tasks/build-1")).json()  # read-your-writes: the projection shows it
        assert (task["status"], task["agent_id"]) == ("completed", "worker-1")
        assert task["result"] == {"wheel": "agentlog.whl"}

        # Nothing else to take: the claim is declined, with the reason.
        assert (await claimed(agent))["declined"]
        # Done is done: another completion is refused, recorded, and changes nothing.
        again = await agent.post("/tasks/build-1/complete", json={"attempt": 1, "result": {"wheel": "other"}})
        assert again.status_code == 409 and again.json()["rule"] == "task-finished", again.text
        await settled(store)
        assert (await events_of(store, "task-build-1"))[-1] == "TaskAttemptRefused"
        task = (await agent.get("/tasks/build-1")).json()
        assert task["result"] == {"wheel": "agentlog.whl"} and task["refusals"] == 1


async def test_silent_attempt_is_replaced_and_its_late_completion_refused(store: EventStore) -> None:
    """The killed-worker case (PgQueuer #475/#430): an attempt that stops beating fails by its heartbeat timer and
    runs again as attempt 2; attempt 1's worker coming back to complete is refused (409 stale-attempt), recorded,
    and attempt 2's result is the one kept."""
    async with api_running(store) as api:
        agent = await pulling_agent(api, "worker-1")
        person = api.client("person", "ada")
        spec = {"task_id": "t1", "task_type": "crawl", "heartbeat_interval_s": 0.2, "backoff_base_s": 0.05,
                "backoff_max_s": 0.1, "max_attempts": 3}  # fmt: skip
        assert (await person.post("/tasks", json=spec)).status_code == 201
        first = (await claimed(agent))["assignment"]
        assert first["attempt"] == 1
        assert (await agent.post("/tasks/t1/start", json={"attempt": 1})).status_code == 200
        # ... and the worker goes silent: two heartbeat intervals later the attempt fails, and is retried.
        second = None
        async with asyncio.timeout(20):
            while second is None:
                await asyncio.sleep(0.2)
                second = (await claimed(agent, wait_s=1))["assignment"]
        assert second["attempt"] == 2

        late = await agent.post("/tasks/t1/complete", json={"attempt": 1, "result": {"from": "attempt 1"}})
        assert late.status_code == 409, late.text
        assert (late.json()["rule"], late.json()["current_attempt"]) == ("stale-attempt", 2)
        assert (await agent.post("/tasks/t1/start", json={"attempt": 2})).status_code == 200
        kept = await agent.post("/tasks/t1/complete", json={"attempt": 2, "result": {"from": "attempt 2"}})
        assert kept.status_code == 200 and kept.json()["status"] == "completed", kept.text

        types = await events_of(store, "task-t1")
        failed = [t for t in types if t == "TaskFailed"]
        assert failed == ["TaskFailed"] and "TaskAttemptRefused" in types, types
        refused = [e for e in await store.read_stream("task-t1") if e.event_type == "TaskAttemptRefused"]
        assert refused[0].data["refused_type"] == "TaskCompleted" and refused[0].data["attempt"] == 1
        task = (await agent.get("/tasks/t1")).json()
        assert task["result"] == {"from": "attempt 2"} and task["attempt"] == 2


async def test_cancel_a_running_task_and_its_agent_is_told(store: EventStore) -> None:
    async with api_running(store) as api:
        agent = await pulling_agent(api, "worker-1")
        person = api.client("person", "ada")
        assert (await person.post("/tasks", json={"task_id": "long", "task_type": "think"})).status_code == 201
        assert (await claimed(agent))["assignment"]["attempt"] == 1
        assert (await agent.post("/tasks/long/start", json={"attempt": 1})).status_code == 200

        # Another agent may not cancel what it did not create, nor may an agent named as the person who did; the
        # person may.
        for name in ("worker-2", "ada"):
            other = await pulling_agent(api, name)
            assert (await other.post("/tasks/long/cancel", json={})).status_code == 403, name
        cancelled = await person.post("/tasks/long/cancel", json={"reason": "not needed"})
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
        event = (await store.read_stream("task-long"))[-1]
        assert event.event_type == "TaskCancelled"
        assert (event.data["agent_id"], event.data["attempt"], event.data["reason"]) == ("worker-1", 1, "not needed")

        beat = await agent.post("/tasks/long/heartbeat", json={"attempt": 1})
        assert beat.status_code == 409, beat.text
        assert (beat.json()["rule"], beat.json()["task_status"]) == ("task-finished", "cancelled")
        assert (await person.post("/tasks/long/cancel", json={})).status_code == 409  # finished already


async def test_an_agent_reads_the_payload_and_result_only_of_its_own_tasks(store: EventStore) -> None:
    """A task's payload and result may hold what only its creator and its agent should see: other agents get the
    task without them (`withheld` names what was left out), in the list and alone; people and admins see all."""
    async with api_running(store) as api:
        worker, nosy = await pulling_agent(api, "worker-1"), await pulling_agent(api, "nosy")
        person = api.client("person", "ada")
        secret = {"task_id": "s1", "task_type": "mail", "payload": {"customer": "c-42", "token": "hunter2"}}
        assert (await person.post("/tasks", json=secret)).status_code == 201
        own = {"task_id": "n1", "task_type": "note", "payload": {"mine": True}}
        assert (await nosy.post("/tasks", json=own)).status_code == 201
        assert (await claimed(worker, task_types=["mail"]))["assignment"]["task_id"] == "s1"
        done = await worker.post("/tasks/s1/complete", json={"attempt": 1, "result": {"sent": "c-42"}})
        assert done.status_code == 200, done.text
        await settled(store)
        hidden = ["payload", "payload_ref", "result", "last_error", "reason"]
        for reader, sees in ((person, True), (worker, True), (nosy, False)):
            alone = (await reader.get("/tasks/s1")).json()
            listed = {task["task_id"]: task for task in (await reader.get("/tasks")).json()}
            for task in (alone, listed["s1"]):
                if sees:
                    assert (task["payload"]["token"], task["result"], task["withheld"]) == (
                        "hunter2", {"sent": "c-42"}, [])  # fmt: skip
                else:
                    assert "hunter2" not in str(task) and task["result"] is None and task["withheld"] == hidden, task
                assert task["status"] == "completed"
        assert (await nosy.get("/tasks/n1")).json()["payload"] == {"mine": True}, "its own task, created by it"
        # A dead letter's reason quotes its last error: withheld as the error is.
        assert (await person.post("/tasks", json={"task_id": "s2", "task_type": "mail"})).status_code == 201
        assert (await claimed(worker, task_types=["mail"]))["assignment"]["task_id"] == "s2"
        failure = {"attempt": 1, "error": "login failed with password hunter2", "retryable": False}
        assert (await worker.post("/tasks/s2/fail", json=failure)).status_code == 200
        async with asyncio.timeout(20):
            while (await person.get("/tasks/s2")).json()["status"] != "dead_lettered":
                await asyncio.sleep(0.05)
        assert "hunter2" in (await person.get("/tasks/s2")).json()["reason"]
        assert "hunter2" not in (await nosy.get("/tasks/s2")).text and "hunter2" not in (await nosy.get("/tasks")).text


async def test_dead_letter_and_requeue_by_an_admin(store: EventStore) -> None:
    async with api_running(store) as api:
        agent = await pulling_agent(api, "worker-1")
        person, admin = api.client("person", "ada"), api.client("admin", "root")
        assert (await person.post("/tasks", json={"task_id": "bad", "task_type": "parse"})).status_code == 201
        assert (await claimed(agent))["assignment"]["attempt"] == 1
        failure = {"attempt": 1, "error": "malformed input", "retryable": False}
        failed = await agent.post("/tasks/bad/fail", json=failure)
        assert failed.status_code == 200, failed.text
        async with asyncio.timeout(20):
            while (await agent.get("/tasks/bad")).json()["status"] != "dead_lettered":
                await asyncio.sleep(0.05)
        assert "malformed input" in (await agent.get("/tasks/bad")).json()["reason"]

        assert (await person.post("/tasks/bad/requeue", json={})).status_code == 403
        requeued = await admin.post("/tasks/bad/requeue", json={"reason": "input fixed"})
        assert requeued.status_code == 200 and requeued.json()["status"] == "queued", requeued.text
        assert (await claimed(agent))["assignment"]["attempt"] == 2
        assert (await admin.post("/tasks/bad/requeue", json={})).status_code == 409  # not a dead letter now


async def test_a_dead_letter_that_cannot_run_is_not_requeued(store: EventStore) -> None:
    """A task dead-lettered for a cycle of dependencies, or for a dependency that was cancelled, would only be
    dead-lettered again: requeueing it is refused with why (it used to answer 200 and dead-letter it again)."""
    async with api_running(store) as api:
        person, admin = api.client("person", "ada"), api.client("admin", "root")
        for body in ({"task_id": "a", "task_type": "x"}, {"task_id": "b", "task_type": "x", "depends_on": ["a"]}):
            assert (await person.post("/tasks", json=body)).status_code == 201  # no agent: a waits
        assert (await person.post("/tasks/a/cancel", json={"reason": "not needed"})).status_code == 200
        for looped in ("x", "y"):  # past the API, as two creates racing would: the dispatcher dead-letters them
            other = "y" if looped == "x" else "x"
            spec = TaskCreated(task_id=looped, task_type="x", depends_on=[other])
            await store.append(f"task-{looped}", [NewEvent(spec)], NO_STREAM)
        async with asyncio.timeout(20):
            while {(await person.get(f"/tasks/{t}")).json().get("status") for t in "bxy"} != {"dead_lettered"}:
                await asyncio.sleep(0.05)
        await settled(store)
        before = await api.event_count()
        blocked = await admin.post("/tasks/b/requeue", json={})
        assert blocked.status_code == 409 and blocked.json()["rule"] == "still-blocked", blocked.text
        assert "dependency a was cancelled: this task can never run" in blocked.json()["detail"], blocked.text
        for looped in ("x", "y"):
            cycle = await admin.post(f"/tasks/{looped}/requeue", json={})
            assert cycle.status_code == 409 and "cycle of dependencies" in cycle.json()["detail"], cycle.text
        assert await api.event_count() == before


async def test_a_refused_requeue_says_which_dead_letter_to_requeue_first(store: EventStore) -> None:
    """A chain dead-lettered from its head: the tail's requeue names the head, where requeueing must begin (it
    named only the tail's own dependency, whose requeue was refused in turn); a chain ending in a cancelled task
    can never run, and says so."""
    async with api_running(store) as api:
        agent = await pulling_agent(api, "w")
        person, admin = api.client("person", "ada"), api.client("admin", "root")
        chain = [{"task_id": f"c{n}", "task_type": "x", **({"depends_on": [f"c{n - 1}"]} if n else {})}
                 for n in range(4)]  # fmt: skip
        assert (await person.post("/workflows", json={"tasks": chain})).status_code == 201
        assert (await claimed(agent))["assignment"]["task_id"] == "c0"
        failure = {"attempt": 1, "error": "broken", "retryable": False}
        assert (await agent.post("/tasks/c0/fail", json=failure)).status_code == 200
        async with asyncio.timeout(20):
            while (await person.get("/tasks/c3")).json()["status"] != "dead_lettered":
                await asyncio.sleep(0.05)
        tail = await admin.post("/tasks/c3/requeue", json={})
        assert tail.status_code == 409 and "requeue c0 first" in tail.text
        assert (await admin.post("/tasks/c0/requeue", json={})).status_code == 200
        # A diamond: d waits on c0 (requeueable) and on a cancelled task: it can never run, whatever is requeued.
        assert (await person.post("/tasks", json={"task_id": "gone", "task_type": "never"})).status_code == 201
        assert (await person.post("/tasks/gone/cancel", json={})).status_code == 200
        fork = {"task_id": "d", "task_type": "x", "depends_on": ["c3", "gone"]}
        assert (await person.post("/tasks", json=fork)).status_code == 201
        async with asyncio.timeout(20):
            while (await person.get("/tasks/d")).json().get("status") != "dead_lettered":
                await asyncio.sleep(0.05)
        diamond = await admin.post("/tasks/d/requeue", json={})
        assert diamond.status_code == 409 and "gone, cancelled: this task can never run" in diamond.text, diamond.text


async def test_workflow_runs_in_dependency_order(store: EventStore) -> None:
    async with api_running(store) as api:
        agent = await pulling_agent(api, "worker-1")
        person = api.client("person", "ada")
        workflow = {"tasks": [
            {"task_id": "deploy", "task_type": "deploy", "depends_on": ["build", "test"], "priority": 10},
            {"task_id": "test", "task_type": "test", "depends_on": ["build"], "priority": 9},
            {"task_id": "build", "task_type": "build", "priority": 1},
        ]}  # fmt: skip
        created = await person.post("/workflows", json=workflow)
        assert created.status_code == 201, created.text
        order = []
        for _ in range(3):
            assignment = (await claimed(agent))["assignment"]
            assert assignment is not None
            order.append(assignment["task_id"])
            done = await agent.post(f"/tasks/{assignment['task_id']}/complete", json={"attempt": assignment["attempt"]})
            assert done.status_code == 200, done.text
        assert order == ["build", "test", "deploy"], "a dependent ran before what it depends on"


async def test_bad_input_is_refused_naming_the_field_and_appends_nothing(store: EventStore) -> None:
    async with api_running(store) as api:
        person = api.client("person", "ada")
        first = await person.post("/tasks", json={"task_id": "a", "task_type": "x", "depends_on": ["b"]})
        assert first.status_code == 201
        await settled(store)
        before = await api.event_count()

        def field_of(answer: httpx.Response) -> str:
            assert answer.status_code == 422, answer.text
            return str(answer.json()["detail"][0]["loc"][-1])

        assert field_of(await person.post("/tasks", json={"task_type": "x", "priority": 11})) == "priority"
        assert field_of(await person.post("/tasks", json={"task_type": "x", "priority": 0})) == "priority"
        cycle = await person.post("/tasks", json={"task_id": "b", "task_type": "x", "depends_on": ["a"]})
        assert field_of(cycle) == "depends_on" and cycle.json()["cycle"] == ["b", "a", "b"], cycle.text
        itself = await person.post("/tasks", json={"task_id": "c", "task_type": "x", "depends_on": ["c"]})
        assert field_of(itself) == "depends_on"
        naive = await person.post("/tasks", json={"task_type": "x", "run_at": "2030-01-01T00:00:00"})
        assert field_of(naive) == "run_at"
        assert field_of(await person.post("/tasks", json={"task_type": "x", "max_atempts": 2})) == "max_atempts"
        loop = {"tasks": [{"task_id": "p", "task_type": "x", "depends_on": ["q"]},
                          {"task_id": "q", "task_type": "x", "depends_on": ["p"]}]}  # fmt: skip
        assert field_of(await person.post("/workflows", json=loop)) == "depends_on"
        twice = {"tasks": [{"task_id": "p", "task_type": "x"}, {"task_id": "p", "task_type": "y"}]}
        assert field_of(await person.post("/workflows", json=twice)) == "task_id"
        exists = await person.post("/tasks", json={"task_id": "a", "task_type": "x"})
        assert exists.status_code == 409 and exists.json()["code"] == "exists", exists.text
        assert (await person.post("/tasks/nope/start", json={"attempt": 1})).status_code == 403  # a person is no agent
        agent = api.client("agent", "w")
        assert (await agent.post("/tasks/nope/start", json={"attempt": 1})).status_code == 404
        assert (await agent.post("/tasks/a/start", json={"attempt": 0})).status_code == 422
        await settled(store)
        assert await api.event_count() == before, "a refused request appended something"


async def test_hot_start_has_my_tasks(store: EventStore) -> None:
    async with api_running(store) as api:
        agent = await pulling_agent(api, "worker-1")
        person = api.client("person", "ada")
        assert (await person.post("/tasks", json={"task_id": "mine", "task_type": "x"})).status_code == 201
        assert (await claimed(agent))["assignment"]["task_id"] == "mine"
        await settled(store)
        bundle = (await agent.get("/agents/worker-1/hot-start")).json()
        assert [task["task_id"] for task in bundle["tasks"]] == ["mine"]
        assert bundle["tasks"][0]["status"] == "assigned"


async def test_overview_and_statistics_in_seed_003_shapes(store: EventStore) -> None:
    async with api_running(store) as api:
        agent = await pulling_agent(api, "worker-1", ["python"])
        person = api.client("person", "ada")
        for body in ({"task_id": "done", "task_type": "x", "capabilities": ["python"]},
                     {"task_id": "cobol", "task_type": "port", "capabilities": ["cobol"], "priority": 9}):  # fmt: skip
            assert (await person.post("/tasks", json=body)).status_code == 201
        assignment = (await claimed(agent))["assignment"]
        assert assignment["task_id"] == "done"
        assert (await agent.post("/tasks/done/start", json={"attempt": 1})).status_code == 200
        assert (await agent.post("/tasks/done/complete", json={"attempt": 1})).status_code == 200
        assert (await person.post("/tasks", json={"task_id": "next", "task_type": "x"})).status_code == 201
        gone = await pulling_agent(api, "worker-2")
        assert (await gone.delete("/agents/worker-2", params={"reason": "done"})).status_code == 200
        await settled(store)

        overview = (await person.get("/overview")).json()
        assert (overview["totalAgents"], overview["healthyAgents"], overview["stoppedAgents"]) == (2, 1, 1)
        assert overview["totalAgents"] == overview["runningAgents"] + overview["stoppedAgents"], overview
        health = overview["healthyAgents"] + overview["degradedAgents"] + overview["unhealthyAgents"]
        assert overview["runningAgents"] == health, overview
        assert (overview["pendingTasks"], overview["completedTasks"], overview["unroutableTasks"]) == (2, 1, 1)
        assert overview["unroutable"] == [
            {"task_id": "cobol", "task_type": "port", "priority": 9, "capabilities": ["cobol"]}
        ], "a task no agent can take is accepted and named"
        assert overview["agentsByType"] == {"untyped": 1}
        stats = (await person.get("/agents/worker-1/statistics")).json()
        assert (stats["total_tasks"], stats["completed_tasks"], stats["failed_tasks"], stats["active_tasks"]) == (
            1, 1, 0, 0)  # fmt: skip
        assert isinstance(stats["avg_execution_time_ms"], int) and stats["avg_execution_time_ms"] >= 0
        assert (await person.get("/agents/nobody/statistics")).status_code == 404
        depth = {(row["status"], row["priority"]): row["tasks"] for row in (await person.get("/tasks/queue")).json()}
        assert depth == {("completed", 5): 1, ("queued", 9): 1, ("queued", 5): 1}


async def test_a_dispatcher_behind_the_api_ends_up_where_the_log_is(store: EventStore) -> None:
    """The dispatcher is down (as when `up` restarts) while the API goes on: an attempt's execution timer fires, a
    person cancels the task, and the agent's completion of it past the timer is refused. The dispatcher then decides
    the timeout from the log as it was before the cancel — a failure and a retry the lifecycle refuses, landing after
    the cancel — and must agree with the log: the cancelled task is neither retried nor handed to a claim, its slot is
    free, and a refold of the log decides exactly what was recorded."""
    async with api_running(store) as api:
        agent = await pulling_agent(api, "w")  # one attempt at a time
        person = api.client("person", "ada")
        spec = {"task_type": "work", "execution_timeout_s": 1, "max_attempts": 1}
        assert (await person.post("/tasks", json={"task_id": "slow", **spec})).status_code == 201
        assert (await person.post("/tasks", json={"task_id": "after", "task_type": "report",
                                                  "depends_on": ["slow"]})).status_code == 201  # fmt: skip
        assert (await claimed(agent))["assignment"]["task_id"] == "slow"
        assert (await agent.post("/tasks/slow/start", json={"attempt": 1})).status_code == 200
        await settled(store)

    down = frozenset({"task-dispatcher"})
    async with api_running(store, without=down) as api:
        person, agent = api.client("person", "ada"), api.client("agent", "w")
        async with asyncio.timeout(20):
            while "TimerFired" not in await events_of(store, "task-slow"):
                await asyncio.sleep(0.05)
        late = await agent.post("/tasks/slow/complete", json={"attempt": 1, "result": {"late": True}})
        assert late.status_code == 409 and late.json()["rule"] == "timed-out", late.text
        assert (await person.post("/tasks/slow/cancel", json={"reason": "not needed"})).status_code == 200
        assert (await person.post("/tasks", json={"task_id": "next", "task_type": "work"})).status_code == 201
        await settled(store, without=down)

    async with api_running(store) as api:
        await settled(store)
        person, agent = api.client("person", "ada"), api.client("agent", "w")
        answer = await claimed(agent)
        assert answer["assignment"] is not None and answer["assignment"]["task_id"] == "next", answer
        await settled(store)
        slow = (await person.get("/tasks/slow")).json()
        assert (slow["status"], slow["attempt"]) == ("cancelled", 1), slow
        streamed = await events_of(store, "task-slow")
        assert "TaskAssigned" not in streamed[streamed.index("TaskCancelled"):], streamed
        after = (await person.get("/tasks/after")).json()
        assert (after["status"], after["reason"]) == ("dead_lettered", "dependency slow was cancelled"), after
        checkpoint = await recorder.select_checkpoint(store.pool, Dispatcher.name)
        assert checkpoint is not None
        assert await verify_decider(store, Dispatcher(), until=checkpoint) == []
        state, _ = await load_state(store.pool, Dispatcher.name, DispatcherState, Dispatcher.state_version)
        assert state is not None
        for row in await store.pool.fetch("SELECT task_id, status, attempt FROM projections.tasks"):
            task = state.tasks[row["task_id"]]
            assert (task.status, task.attempt) == (row["status"], row["attempt"]), row["task_id"]


async def test_a_claim_answered_with_an_assignment_the_log_refused_is_declined(store: EventStore) -> None:
    """The dispatcher is down while an agent's claim waits and a person cancels the only task. The dispatcher comes
    back and decides from the log as it was at the claim — it assigns the task, after its cancel, so the lifecycle
    refuses the assignment. The waiting claim must be told why it got nothing (it used to be a 500)."""
    down = frozenset({"task-dispatcher"})
    async with api_running(store, without=down) as api:
        agent = await pulling_agent(api, "w")
        person = api.client("person", "ada")
        assert (await person.post("/tasks", json={"task_id": "c1", "task_type": "work"})).status_code == 201
        claim = asyncio.create_task(agent.post("/task-claims", json={"wait_s": 25}))
        async with asyncio.timeout(10):
            while "TaskClaimRequested" not in await events_of(store, claim_stream("w")):
                await asyncio.sleep(0.05)
        assert (await person.post("/tasks/c1/cancel", json={"reason": "not needed"})).status_code == 200
        async with hosted(store, [Dispatcher()], []):
            answer = await claim
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["assignment"] is None and "c1" in body["declined"], body
        assert (await person.get("/tasks/c1")).json()["status"] == "cancelled"
