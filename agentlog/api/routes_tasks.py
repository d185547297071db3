"""/tasks: create (one, or a workflow of several at once), list, read, cancel, requeue; and an agent's side of an
attempt — claim, start, heartbeat, complete, fail, snooze — each checked by the task's lifecycle
(`domains.tasks.lifecycle.check`) on the task's stream, and appended at the version it was checked against.

An agent's command the lifecycle refuses (a stale attempt, another agent's, a finished task) is answered 409 with
the rule it broke, and recorded as `TaskAttemptRefused`, so a late worker's result is in the log for people to see;
nothing else is appended. Assignments are the dispatcher's alone: a claim is a request it answers, within the same
limits as the tasks it pushes, so no path around it can overshoot a limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import ValidationError

from agentlog.api.auth import Caller
from agentlog.api.commands import Actor, TaskFold, Written
from agentlog.api.errors import ApiError, forbidden, invalid, not_found
from agentlog.api.feed import Follower, Hub
from agentlog.api.reads import QUERIES
from agentlog.api.services import Act, Reader, Services, Svc, Who
from agentlog.api.views import task, task_state
from agentlog.client import models
from agentlog.domains.planning.step_tasks import check_step_task
from agentlog.domains.tasks.access import created_by_agent
from agentlog.domains.tasks.backoff import check_backoff
from agentlog.domains.tasks.dependencies import (
    Blocked,
    DependencyCycleError,
    blocked_by,
    check_workflow,
    find_cycle,
)
from agentlog.domains.tasks.events import (
    TASK_ID_PATTERN,
    TaskCancelled,
    TaskClaimRequested,
    TaskCompleted,
    TaskCreated,
    TaskFailed,
    TaskHeartbeat,
    TaskRequeued,
    TaskSnoozed,
    TaskStarted,
    claim_stream,
    task_stream,
)
from agentlog.domains.tasks.lifecycle import AttemptCommand, Refusal, TaskLifecycle, check, refusal_event
from agentlog.domains.timers.events import MAX_TIMER_DELAY_S
from agentlog.eventstore import Event

router = APIRouter(tags=["tasks"])
TaskPath = Annotated[str, Path(pattern=TASK_ID_PATTERN, description="the task's id")]
Limit = Annotated[int, Query(ge=1, le=500)]
Plan = list[tuple[str, int | None, list[Event]]]


def spec_of(body: models.TaskCreate, creator: Caller, actor: Actor, now: datetime, field: str = "") -> TaskCreated:
    """The event a create asks for; `run_at` (with its time zone: `models.Moment`) becomes the delay the dispatcher
    waits (the log keeps no clock). A back-off base above its cap is refused here, by the domain's rule for new
    tasks (`backoff.check_backoff`), since `TaskCreated` still reads the ones older releases took."""
    try:
        check_backoff(body.backoff_base_s, body.backoff_max_s)
    except ValueError as error:
        raise invalid(f"{field}backoff_base_s", str(error)) from error
    wrong_step = check_step_task(body.task_type, body.capabilities)
    if wrong_step is not None:
        raise invalid(f"{field}capabilities", wrong_step)
    run_after_s = 0.0
    if body.run_at is not None:
        run_after_s = max((body.run_at - now).total_seconds(), 0.0)
        if run_after_s > MAX_TIMER_DELAY_S:
            raise invalid(f"{field}run_at", "run_at is more than a year away")
    try:
        return TaskCreated(
            task_id=body.task_id or actor.mint("t-"), run_after_s=run_after_s, created_by=creator.name,
            created_by_kind=creator.kind, **body.model_dump(exclude={"task_id"}),
        )  # fmt: skip
    except ValidationError as error:  # the event's own rules (a task naming itself, or one twice, in depends_on)
        raise invalid(f"{field}depends_on", error.errors()[0]["msg"].removeprefix("Value error, ")) from error


async def check_dependencies(services: Services, specs: Sequence[TaskCreated]) -> None:
    """422 naming the cycle when creating `specs` (in order) closes one with the tasks the projection knows.

    Two creates racing to close a cycle both pass here; the dispatcher dead-letters the later (it checks too)."""
    names = sorted({dependency for spec in specs for dependency in spec.depends_on})
    rows = await services.store.pool.fetch(QUERIES["task_dependencies"], names) if names else []
    known = {row["task_id"]: list(row["depends_on"]) for row in rows}
    try:
        check_workflow(known, [(spec.task_id, spec.depends_on) for spec in specs])
    except DependencyCycleError as error:
        raise invalid("depends_on", str(error), cycle=error.cycle) from error


async def create(services: Services, who: Who, actor: Act, specs: Sequence[TaskCreated]) -> list[models.TaskState]:
    coordinator = services.coordinator

    async def plan() -> Plan:
        planned: Plan = []
        for spec in specs:
            fold = await coordinator.task(spec.task_id)
            if fold.task.status != "new":
                if await _created_by(services, actor, spec):
                    continue  # this very request's first run, cut off before it answered: done already
                raise ApiError(409, "exists", f"task {spec.task_id} exists already", task_id=spec.task_id)
            planned.append((task_stream(spec.task_id), fold.version, [spec]))
        return planned

    services.wrote(who, await coordinator.decide(actor, plan))
    states = []
    for spec in specs:
        created = TaskFold()
        created.fold(spec, 1)
        states.append(task_state(created))
    return states


async def _created_by(services: Services, actor: Actor, spec: TaskCreated) -> bool:
    """Whether the task was created, as `spec` says, by a request with this one's Idempotency-Key."""
    if actor.key is None:
        return False
    first = await services.store.read_stream(task_stream(spec.task_id), limit=1)
    if not first or first[0].metadata.get("idempotency_key") != actor.key:
        return False
    recorded = services.store.decode(first[0])
    # The wait a `run_at` gives is counted from now, so it differs on every run: the rest must be the same.
    same = isinstance(recorded, TaskCreated) and spec.model_copy(update={"run_after_s": recorded.run_after_s})
    return same == recorded


@router.post("/tasks", response_model=models.TaskState, status_code=201)
async def create_task(body: models.TaskCreate, services: Svc, who: Who, actor: Act) -> models.TaskState:
    """Queue a task. It waits for `run_at` and for every task in `depends_on` to complete (a dependency
    dead-lettered or cancelled fails it); a `depends_on` closing a cycle is refused (422 naming it)."""
    await services.reads.caught_up(who.key)  # the caller's own tasks, just created, are in the cycle check
    spec = spec_of(body, who, actor, datetime.now(UTC))
    await check_dependencies(services, [spec])
    return (await create(services, who, actor, [spec]))[0]


@router.post("/workflows", response_model=list[models.TaskState], status_code=201)
async def create_workflow(body: models.Workflow, services: Svc, who: Who, actor: Act) -> list[models.TaskState]:
    """Queue several tasks in one append, all or none; their `depends_on` may name each other in any order."""
    await services.reads.caught_up(who.key)
    now = datetime.now(UTC)
    specs = [spec_of(item, who, actor, now, f"tasks.{index}.") for index, item in enumerate(body.tasks)]
    seen: set[str] = set()
    for index, spec in enumerate(specs):
        if spec.task_id in seen:
            raise invalid(f"tasks.{index}.task_id", f"task {spec.task_id} is named twice")
        seen.add(spec.task_id)
    await check_dependencies(services, specs)
    return await create(services, who, actor, specs)


@router.get("/tasks", response_model=list[models.Task])
async def list_tasks(
    services: Svc, who: Reader,
    status: Annotated[str | None, Query(max_length=20)] = None,
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
    task_type: Annotated[str | None, Query(max_length=200)] = None,
    after: Annotated[str, Query(max_length=64, description="the last task id of the previous page")] = "",
    limit: Limit = 100,
) -> list[models.Task]:  # fmt: skip
    rows = await services.store.pool.fetch(QUERIES["tasks"], status, agent_id, task_type, after, limit)
    return [task(row, who) for row in rows]


@router.get("/tasks/queue", response_model=list[models.QueueDepth])
async def queue_depth(services: Svc, who: Reader) -> list[models.QueueDepth]:
    """How many tasks there are by status and priority, with the oldest of each."""
    return [models.QueueDepth(**dict(row)) for row in await services.store.pool.fetch(QUERIES["queue_depth"])]


@router.get("/tasks/{task_id}", response_model=models.Task)
async def get_task(task_id: TaskPath, services: Svc, who: Reader) -> models.Task:
    row = await services.store.pool.fetchrow(QUERIES["task"], task_id)
    if row is None:
        raise not_found(f"no task {task_id}")
    return task(row, who)


# -- what people do to tasks ------------------------------------------------------------------------------------


async def command(
    services: Services, who: Who, actor: Act, task_id: str, make: Callable[[TaskLifecycle], Event],
    record_refusal: bool = False,
) -> models.TaskState:  # fmt: skip
    """Fold the task, let `make` build the event, check it, append it at the folded version; a refusal is 409
    (recorded as `TaskAttemptRefused` when `record_refusal`: an agent's command)."""
    coordinator = services.coordinator
    refused: list[Refusal] = []
    folded: list[TaskFold] = []

    async def plan() -> Plan:
        fold = await coordinator.task(task_id)
        if fold.task.status == "new":
            raise not_found(f"no task {task_id}")
        event = make(fold.task)
        refusal = check(fold.task, event)
        folded[:], refused[:] = [fold], [] if refusal is None else [refusal]
        if refusal is None:
            return [(task_stream(task_id), fold.version, [event])]
        if not record_refusal:
            raise _refused(task_id, fold.task, refusal)
        return [(task_stream(task_id), fold.version, [refusal_event(fold.task, event, refusal)])]

    written = await coordinator.decide(actor, plan)
    services.wrote(who, written)
    if refused:
        raise _refused(task_id, folded[0].task, refused[0])
    return _after(folded[0], written)


def _refused(task_id: str, task: TaskLifecycle, refusal: Refusal) -> ApiError:
    return ApiError(409, "refused", refusal.message, rule=refusal.rule, current_attempt=refusal.current_attempt,
                    task_status=task.status, task_id=task_id)  # fmt: skip


def _after(fold: TaskFold, written: Written) -> models.TaskState:
    for event in written.events:
        fold.fold(event)
    fold.version = written.stream_version
    return task_state(fold)


@router.post("/tasks/{task_id}/cancel", response_model=models.TaskState)
async def cancel(task_id: TaskPath, body: models.TaskCancel, services: Svc, who: Who, actor: Act) -> models.TaskState:
    """Cancel a task that has not finished, running or not: the agent holding it sees `TaskCancelled` (its feed,
    and a 409 `task-finished` on its next heartbeat) and should stop. People and admins cancel any task; an agent
    only those it created."""

    def cancelled(task: TaskLifecycle) -> Event:
        creator = ("", "") if task.spec is None else (task.spec.created_by, task.spec.created_by_kind)
        if who.kind == "agent" and not created_by_agent(who.name, *creator):
            raise forbidden(f"agent {who.name} may cancel only the tasks it created")
        return TaskCancelled(
            task_id=task_id, reason=body.reason, cancelled_by=who.name,
            agent_id=task.agent_id if task.holding else None, attempt=task.attempt if task.holding else 0,
        )  # fmt: skip

    return await command(services, who, actor, task_id, cancelled)


@router.post("/tasks/{task_id}/requeue", response_model=models.TaskState)
async def requeue(task_id: TaskPath, body: models.TaskRequeue, services: Svc, who: Who, actor: Act) -> models.TaskState:
    """Queue a dead-lettered task again, with all its attempts to spend anew (admins only)."""
    if who.kind != "admin":
        raise forbidden("only an admin token requeues a dead letter")
    fold = await services.coordinator.task(task_id)
    blocker = await _why_it_cannot_run(services, fold.task) if fold.task.status == "dead_lettered" else None
    if blocker is not None:
        raise ApiError(409, "refused", blocker, rule="still-blocked", task_status=fold.task.status, task_id=task_id)
    requeued = TaskRequeued(task_id=task_id, requeued_by=who.name, reason=body.reason)
    return await command(services, who, actor, task_id, lambda _task: requeued)


MAX_WALKED = 10_000
"""Tasks a refused requeue walks to say why, at most."""


async def _why_it_cannot_run(services: Services, task: TaskLifecycle) -> str | None:
    """Why a dead letter requeued would only be dead-lettered again (the dispatcher's rules, asked of the log now):
    it is in a cycle of dependencies, or a dependency was cancelled or is a dead letter itself."""
    depends_on = [] if task.spec is None else task.spec.depends_on
    if not depends_on:
        return None
    rows = await services.store.pool.fetch(QUERIES["task_dependencies"], depends_on)
    known = {row["task_id"]: list(row["depends_on"]) for row in rows}
    cycle = find_cycle(lambda other: known.get(other, ()), task.task_id, depends_on)
    if cycle is not None:
        return f"task {task.task_id} is in a cycle of dependencies {' -> '.join(cycle)}: it can never run"
    blocked = await _blocked(services, depends_on)
    if blocked is None:
        return None
    # What it waits on that will not complete, all of it (a dependency may be blocked through another branch):
    # a cancelled task anywhere below means it can never run; else the dead letters that can run again come first.
    cancelled: list[str] = []
    requeueable: list[str] = []
    seen, waiting = {task.task_id}, list(depends_on)
    while waiting and len(seen) <= MAX_WALKED:
        current = waiting.pop(0)
        if current in seen:
            continue
        seen.add(current)
        found = (await services.coordinator.task(current)).task
        if found.status == "cancelled":
            cancelled.append(current)
        elif found.status in {"dead_lettered", "queued", "waiting"}:
            below = [] if found.spec is None else found.spec.depends_on
            if found.status == "dead_lettered" and await _blocked(services, below) is None:
                requeueable.append(current)
            waiting.extend(below)
    if cancelled == [blocked.dependency]:
        return f"{blocked.reason}: this task can never run"
    if cancelled:
        return f"{blocked.reason}; it waits on {', '.join(cancelled[:5])}, cancelled: this task can never run"
    if requeueable:
        return f"{blocked.reason}: requeue {', '.join(requeueable[:5])} first (then the dead letters after it)"
    return f"{blocked.reason}: this task can never run"


async def _blocked(services: Services, depends_on: Sequence[str]) -> Blocked | None:
    statuses = {dependency: (await services.coordinator.task(dependency)).task.status for dependency in depends_on}
    return blocked_by(depends_on, statuses.get)


# -- an agent's side of an attempt ----------------------------------------------------------------------------


async def attempt(
    services: Services, who: Who, actor: Act, task_id: str, body: models.AttemptCommand,
    make: Callable[[str], AttemptCommand],
) -> models.TaskState:  # fmt: skip
    agent_id = who.agent(body.agent_id)
    event = make(agent_id)
    return await command(services, who, actor, task_id, lambda _task: event, record_refusal=True)


@router.post("/tasks/{task_id}/start", response_model=models.TaskState)
async def start(
    task_id: TaskPath, body: models.AttemptCommand, services: Svc, who: Who, actor: Act
) -> models.TaskState:
    """Begin the attempt assigned to me; a stale or unknown attempt is 409 (and recorded)."""
    return await attempt(services, who, actor, task_id, body,
                         lambda agent: TaskStarted(task_id=task_id, attempt=body.attempt, agent_id=agent))  # fmt: skip


@router.post("/tasks/{task_id}/heartbeat", response_model=models.TaskState)
async def heartbeat(
    task_id: TaskPath, body: models.TaskHeartbeat, services: Svc, who: Who, actor: Act
) -> models.TaskState:
    """Still working on the attempt: send one every `heartbeat_interval_s`; silent for two intervals, it fails.
    409 `task-finished` means the task was cancelled (or finished otherwise): stop."""
    return await attempt(services, who, actor, task_id, body, lambda agent: TaskHeartbeat(
        task_id=task_id, attempt=body.attempt, agent_id=agent, progress=body.progress))  # fmt: skip


@router.post("/tasks/{task_id}/complete", response_model=models.TaskState)
async def complete(
    task_id: TaskPath, body: models.TaskCompletion, services: Svc, who: Who, actor: Act
) -> models.TaskState:
    """The attempt succeeded, with its result; a stale attempt's completion is refused (409) and recorded."""
    return await attempt(services, who, actor, task_id, body, lambda agent: TaskCompleted(
        task_id=task_id, attempt=body.attempt, agent_id=agent, result=body.result))  # fmt: skip


@router.post("/tasks/{task_id}/fail", response_model=models.TaskState)
async def fail(task_id: TaskPath, body: models.TaskFailure, services: Svc, who: Who, actor: Act) -> models.TaskState:
    """The attempt failed: retried after a back-off while attempts are left (and it is `retryable`), else
    dead-lettered."""
    return await attempt(services, who, actor, task_id, body, lambda agent: TaskFailed(
        task_id=task_id, attempt=body.attempt, agent_id=agent, error=body.error, retryable=body.retryable))  # fmt: skip


@router.post("/tasks/{task_id}/snooze", response_model=models.TaskState)
async def snooze(task_id: TaskPath, body: models.TaskSnooze, services: Svc, who: Who, actor: Act) -> models.TaskState:
    """Put the task back for `delay_s` without spending an attempt (a rate limit, a resource not ready)."""
    return await attempt(services, who, actor, task_id, body, lambda agent: TaskSnoozed(
        task_id=task_id, attempt=body.attempt, agent_id=agent, delay_s=body.delay_s, reason=body.reason))  # fmt: skip


@router.post("/task-claims", response_model=models.ClaimAnswer)
async def claim(body: models.TaskClaim, request: Request, services: Svc, who: Who, actor: Act) -> models.ClaimAnswer:
    """Ask the dispatcher for a task (pull) and wait up to `wait_s` for its answer: an assignment (its attempt is
    what later commands name), or why none (`declined`), or `pending` when it has not answered in time — the
    assignment then still arrives, on the feed (`tasks:<agent>`) and in `GET /tasks?agent_id=...`."""
    agent_id = who.agent(body.agent_id)
    await services.coordinator.registered(agent_id)
    claim_id = actor.mint("claim-")
    requested = TaskClaimRequested(claim_id=claim_id, agent_id=agent_id, task_types=body.task_types)
    hub: Hub = request.app.state.hub
    await hub.start()
    follower = hub.join()  # before the append: the answer cannot slip past
    try:

        async def plan() -> Plan:
            return [(claim_stream(agent_id), None, [requested])]

        services.wrote(who, await services.coordinator.decide(actor, plan))
        return await _answer(services, follower, claim_id, body.wait_s)
    finally:
        hub.leave(follower)


async def _answer(services: Services, follower: Follower, claim_id: str, wait_s: float) -> models.ClaimAnswer:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while (left := deadline - loop.time()) > 0:
        try:
            batch = await asyncio.wait_for(follower.next(), left)
        except TimeoutError:
            break
        if batch is None:  # the hub dropped this follower (it fell behind): the answer is still in the log
            break
        for event in batch:
            if event.data.get("claim_id") != claim_id:
                continue
            if event.event_type == "TaskClaimDeclined":
                return models.ClaimAnswer(claim_id=claim_id, declined=str(event.data.get("reason", "")))
            if event.event_type == "TaskAssigned":
                task_id, attempt = str(event.data["task_id"]), int(event.data["attempt"])
                fold = await services.coordinator.task(task_id)
                if fold.task.attempt != attempt or fold.task.agent_id != event.data.get("agent_id"):
                    # The log refused the answer (the task moved first): the lifecycle's fold is the truth.
                    why = f"task {task_id} was {fold.task.status} before its attempt {attempt} could be assigned"
                    return models.ClaimAnswer(claim_id=claim_id, declined=why)
                return models.ClaimAnswer(claim_id=claim_id, assignment=assignment(fold, attempt, claim_id))
    return models.ClaimAnswer(claim_id=claim_id, pending=True)


def assignment(fold: TaskFold, attempt: int, claim_id: str | None = None) -> models.Assignment:
    spec = fold.task.spec
    assert spec is not None and fold.task.agent_id is not None
    return models.Assignment(
        task_id=spec.task_id, attempt=attempt, agent_id=fold.task.agent_id, task_type=spec.task_type,
        payload=spec.payload, payload_ref=spec.payload_ref, priority=spec.priority,
        heartbeat_interval_s=spec.heartbeat_interval_s, execution_timeout_s=spec.execution_timeout_s,
        claim_id=claim_id,
    )  # fmt: skip


@router.get("/tasks/{task_id}/assignment", response_model=models.Assignment)
async def current_assignment(task_id: TaskPath, services: Svc, who: Who) -> models.Assignment:
    """The task's current attempt, for the agent it was pushed to: what to do and the attempt to name."""
    fold = await services.coordinator.task(task_id)
    if fold.task.status == "new":
        raise not_found(f"no task {task_id}")
    if not fold.task.holding:
        raise ApiError(409, "not_assigned", f"task {task_id} is {fold.task.status}: no attempt is assigned",
                       task_status=fold.task.status)  # fmt: skip
    assert fold.task.agent_id is not None
    who.reads_private(fold.task.agent_id)
    return assignment(fold, fold.task.attempt)
