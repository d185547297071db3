"""/programs and /agents/{agent_id}/start|stop|restart: agents registered with a command line, run by the program
runner (seed 003's agent lifecycle). Each command folds the program's stream with the programs domain's rule
(`domains.programs.lifecycle`) and appends a person's request at the version it folded; the program keeper decides
what happens, the runner does it and records what became of the process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Path

from agentlog.api.auth import Caller
from agentlog.api.errors import ApiError, forbidden, not_found
from agentlog.api.reads import QUERIES
from agentlog.api.services import Act, Reader, Services, Svc, Who
from agentlog.client import models
from agentlog.domains.coordination.names import AGENT_ID_PATTERN
from agentlog.domains.programs.events import (
    ProgramDefined,
    ProgramRestartRequested,
    ProgramStartRequested,
    ProgramStopRequested,
    program_stream,
)
from agentlog.domains.programs.lifecycle import ProgramLifecycle, check_request, health
from agentlog.eventstore import Event

router = APIRouter(tags=["programs"])
AgentPath = Annotated[str, Path(pattern=AGENT_ID_PATTERN, description="the agent's id")]
Request = type[ProgramStartRequested] | type[ProgramStopRequested] | type[ProgramRestartRequested]


async def current(services: Services, agent_id: str) -> ProgramLifecycle:
    program = await services.coordinator.programs.current(program_stream(agent_id))
    program.agent_id = program.agent_id or agent_id
    return program


async def state(services: Services, agent_id: str) -> models.ProgramState:
    program = await current(services, agent_id)
    spec = program.spec
    if spec is None or program.status == "undefined":
        raise not_found(f"agent {agent_id} has no program; define it first (PUT /api/v1/programs/{agent_id})")
    entry = await services.coordinator.member(agent_id)
    activity = "offline" if entry.state == "gone" else entry.activity if entry.registered else None
    return models.ProgramState(
        agent_id=agent_id, status=program.status, health=health(program, activity), command=spec.command,
        env_names=sorted(spec.env), working_dir=spec.working_dir, max_restarts=spec.max_restarts,
        restart_delay_s=spec.restart_delay_s, stop_grace_s=spec.stop_grace_s, proven_after_s=spec.proven_after_s,
        run=program.run, restart=program.restart, pid=program.pid, host=program.host,
        last_exit_code=program.last_exit_code, reason=program.reason, stream_version=program.version,
    )  # fmt: skip


async def command(
    services: Services, who: Caller, actor: Act, agent_id: str, decide: Callable[[ProgramLifecycle], list[Event]]
) -> models.ProgramState:
    """Fold, decide (raising to refuse), append at the folded version; nothing to append is an answer too."""
    stream = program_stream(agent_id)

    async def plan() -> list[tuple[str, int | None, list[Event]]]:
        program = await current(services, agent_id)
        events = decide(program)
        return [(stream, program.version, events)] if events else []

    if await plan():
        services.wrote(who, await services.coordinator.decide(actor, plan))
    return await state(services, agent_id)


@router.put("/programs/{agent_id}", response_model=models.ProgramState)
async def define_program(
    agent_id: AgentPath, body: models.ProgramDefine, services: Svc, who: Who, actor: Act
) -> models.ProgramState:
    """Define (or change) the command line an agent runs as, and its restart policy; a change applies from its next
    start. An admin's token only: the command runs on the server. The same definition again appends nothing."""
    if who.kind != "admin":
        raise forbidden("a program's command line runs on the server: only an admin's token may define it")
    defined = ProgramDefined(agent_id=agent_id, defined_by=who.name, **body.model_dump())

    def decide(program: ProgramLifecycle) -> list[Event]:
        same = program.spec is not None and program.spec.model_dump(exclude={"defined_by"}) == defined.model_dump(
            exclude={"defined_by"})  # fmt: skip
        return [] if same else [defined]

    return await command(services, who, actor, agent_id, decide)


def _request(kind: Request) -> Callable[..., object]:
    async def act(
        agent_id: AgentPath, body: models.ProgramAction, services: Svc, who: Who, actor: Act
    ) -> models.ProgramState:
        if who.kind == "agent":
            raise forbidden("programs are started and stopped by people and admins; an agent's token reads them only")
        request = kind(agent_id=agent_id, requested_by=who.name, reason=body.reason)

        def decide(program: ProgramLifecycle) -> list[Event]:
            refusal = check_request(program, request)
            if refusal is None:
                return [request]
            status = 404 if refusal.rule == "program-unknown" else 409
            raise ApiError(status, refusal.rule.replace("-", "_"), refusal.message, program_status=program.status)

        return await command(services, who, actor, agent_id, decide)

    return act


router.add_api_route(
    "/agents/{agent_id}/start", _request(ProgramStartRequested), methods=["POST"], response_model=models.ProgramState,
    summary="Start the agent's program", description="409 when it runs or is starting already, or is stopping.",
)  # fmt: skip
router.add_api_route(
    "/agents/{agent_id}/stop", _request(ProgramStopRequested), methods=["POST"], response_model=models.ProgramState,
    summary="Stop the agent's program", description="SIGTERM, then SIGKILL after its stop grace; one waiting for "
    "its restart after a crash stops at once. 409 when it is stopped or stopping already.",
)  # fmt: skip
router.add_api_route(
    "/agents/{agent_id}/restart", _request(ProgramRestartRequested), methods=["POST"],
    response_model=models.ProgramState, summary="Restart the agent's program",
    description="Stop it and start it again (or just start it when it is not running). 409 while it is stopping.",
)  # fmt: skip


@router.get("/programs", response_model=list[models.ProgramRow])
async def list_programs(services: Svc, who: Reader) -> list[models.ProgramRow]:
    """Every program, as the programs projection shows it: status, current run, restarts, crashes, last exit."""
    rows = await services.store.pool.fetch(QUERIES["programs"])
    return [models.ProgramRow(**{name: row[name] for name in models.ProgramRow.model_fields}) for row in rows]


@router.get("/programs/{agent_id}", response_model=models.ProgramState)
async def get_program(agent_id: AgentPath, services: Svc, who: Reader) -> models.ProgramState:
    """The program as its stream says now, with its health while it runs."""
    return await state(services, agent_id)
