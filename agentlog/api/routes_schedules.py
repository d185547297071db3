"""/schedules: cron schedules that create tasks or post to the chat (seed 002), created, changed, paused, resumed
and deleted at runtime. Each command folds the schedule's stream with the schedules domain's rule
(`domains.schedules.schedule`) and appends at the version it folded; the `scheduler` decider fires the slots."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path

from agentlog.api.auth import Caller
from agentlog.api.errors import forbidden, not_found
from agentlog.api.reads import QUERIES
from agentlog.api.services import Act, Reader, Services, Svc, Who
from agentlog.client import models
from agentlog.domains.schedules import schedule as rules
from agentlog.domains.schedules.events import ScheduleSpec, schedule_stream
from agentlog.domains.schedules.schedule import Schedule
from agentlog.eventstore import Event

router = APIRouter(tags=["schedules"])
SchedulePath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="the schedule's id")]
Plan = list[tuple[str, int | None, list[Event]]]


def schedule_state(schedule: Schedule) -> models.ScheduleState:
    return models.ScheduleState(
        schedule_id=schedule.schedule_id, status=schedule.status, spec=schedule.spec, fired=schedule.fired,
        skipped=schedule.skipped, missed=schedule.missed, last_fired_slot=schedule.last_fired_slot,
        stream_version=schedule.version,
    )  # fmt: skip


async def command(
    services: Services, who: Who, actor: Act, schedule_id: str, decide: Callable[[Schedule], list[Event]]
) -> models.ScheduleState:
    """Fold, decide (the rule raises to refuse), append at the folded version; nothing to append is an answer too
    (a pause of a paused schedule). Schedules are people's and admins': what a firing does (a task with its
    payload, a post in everyone's name) is theirs to set, so an agent's token is refused."""
    if who.kind == "agent":
        raise forbidden("schedules are managed by people and admins; an agent's token reads them only")
    folds = services.coordinator.schedules
    stream = schedule_stream(schedule_id)

    async def plan() -> Plan:
        schedule = await folds.current(stream)
        events = decide(schedule)
        return [(stream, schedule.version, events)] if events else []

    if await plan():
        services.wrote(who, await services.coordinator.decide(actor, plan))
    return schedule_state(await folds.current(stream))


@router.post("/schedules", response_model=models.ScheduleState, status_code=201)
async def create_schedule(body: models.ScheduleCreate, services: Svc, who: Who, actor: Act) -> models.ScheduleState:
    """Create a schedule: a cron expression (5 fields, or 6 with seconds first) read in `time_zone`, what each
    firing does (a task from a template, or a chat post), its overlap and catch-up policies. A malformed cron
    expression or an unknown time zone: 422 naming it."""
    schedule_id = body.schedule_id or actor.mint("s-")
    spec = ScheduleSpec.model_validate(body.model_dump(exclude={"schedule_id"}))
    return await command(services, who, actor, schedule_id,
                         lambda schedule: rules.create(schedule, schedule_id, spec, created_by=who.name))  # fmt: skip


@router.patch("/schedules/{schedule_id}", response_model=models.ScheduleState)
async def change_schedule(
    schedule_id: SchedulePath, services: Svc, who: Who, actor: Act,
    changes: Annotated[dict[str, Any], Body(description="the fields of the spec to change, as in the create")],
) -> models.ScheduleState:  # fmt: skip
    """Change some fields; the next slot follows the new spec."""
    return await command(services, who, actor, schedule_id, lambda schedule: rules.change(
        schedule, schedule_id, changes, changed_by=who.name))  # fmt: skip


@router.post("/schedules/{schedule_id}/pause", response_model=models.ScheduleState)
async def pause_schedule(
    schedule_id: SchedulePath, body: models.ScheduleReason, services: Svc, who: Who, actor: Act
) -> models.ScheduleState:
    """Fire no slot until resumed (slots passing meanwhile are not caught up)."""
    return await command(services, who, actor, schedule_id, lambda schedule: rules.pause(
        schedule, schedule_id, paused_by=who.name, reason=body.reason))  # fmt: skip


@router.post("/schedules/{schedule_id}/resume", response_model=models.ScheduleState)
async def resume_schedule(schedule_id: SchedulePath, services: Svc, who: Who, actor: Act) -> models.ScheduleState:
    return await command(services, who, actor, schedule_id,
                         lambda schedule: rules.resume(schedule, schedule_id, resumed_by=who.name))  # fmt: skip


@router.delete("/schedules/{schedule_id}", response_model=models.ScheduleState)
async def delete_schedule(
    schedule_id: SchedulePath, services: Svc, who: Who, actor: Act, reason: str = ""
) -> models.ScheduleState:
    return await command(services, who, actor, schedule_id, lambda schedule: rules.delete(
        schedule, schedule_id, deleted_by=who.name, reason=reason[:500]))  # fmt: skip


@router.get("/schedules", response_model=list[models.ScheduleRow])
async def list_schedules(services: Svc, who: Reader) -> list[models.ScheduleRow]:
    """Live schedules, with what they fired, skipped and missed, and the next slot."""
    return [_row(row, who) for row in await services.store.pool.fetch(QUERIES["schedules"])]


@router.get("/schedules/{schedule_id}", response_model=models.ScheduleRow)
async def get_schedule(schedule_id: SchedulePath, services: Svc, who: Reader) -> models.ScheduleRow:
    row = await services.store.pool.fetchrow(QUERIES["schedule"], schedule_id)
    if row is None:
        raise not_found(f"no schedule {schedule_id}")
    return _row(row, who)


def _row(row: Any, reader: Caller) -> models.ScheduleRow:
    """The schedule as `reader` may see it: an agent gets what a firing does without its payload or data (the
    tasks it creates are withheld from agents the same way, `domains.tasks.access`)."""
    shown = models.ScheduleRow(**{name: row[name] for name in models.ScheduleRow.model_fields if name != "withheld"})
    action = shown.action
    if reader.kind != "agent" or not action:
        return shown
    hidden = {**action, "data": {}} if "data" in action else dict(action)
    if isinstance(action.get("task"), dict):
        hidden["task"] = {**action["task"], "payload": {}}
    return shown.model_copy(update={"action": hidden, "withheld": ["action.task.payload", "action.data"]})
