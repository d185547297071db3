"""programs: one row per agent program — its command line, where its lifecycle stands (`domains.programs.lifecycle`,
the rule the keeper decides by), the current run's process and host, restarts in a row, runs and crashes counted,
and the last exit and why; its environment's names only (their values may be secrets). An event of an earlier run
changes nothing here, as it changes nothing for the keeper."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from agentlog.domains.programs.events import (
    PROGRAM_TYPES,
    ProgramExited,
    ProgramRunning,
    ProgramStarting,
    agent_of,
    program_stream,
)
from agentlog.domains.programs.lifecycle import ProgramLifecycle
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.eventstore.postgres.queries import load_queries

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))


class ProgramRow(BaseModel):
    """What the projection folds on from: the program, and what it counts beside."""

    program: ProgramLifecycle = Field(default_factory=ProgramLifecycle)
    runs_started: int = 0
    crashes: int = 0
    started_at: datetime | None = None


def _row(folded: ProgramRow, updated_at: datetime) -> dict[str, Any]:
    program = folded.program
    spec = program.spec
    return {
        "agent_id": program.agent_id, "status": program.status, "command": spec.command if spec else [],
        "max_restarts": spec.max_restarts if spec else 0, "run": program.run, "restart": program.restart,
        "pid": program.pid, "host": program.host, "last_exit_code": program.last_exit_code,
        "reason": program.reason, "runs_started": folded.runs_started, "crashes": folded.crashes,
        "started_at": folded.started_at, "updated_at": updated_at, "state": _without_secrets(folded),
    }  # fmt: skip


def _without_secrets(folded: ProgramRow) -> dict[str, Any]:
    """The fold as the projection keeps it: its environment's names, not their values, which may be secrets (the
    reporting role reads every projection; only the log, which it cannot read, keeps the values)."""
    state = folded.model_dump(mode="json")
    spec = state["program"].get("spec")
    if spec is not None:
        spec["env"] = dict.fromkeys(spec["env"], "")
    return state


class Programs:
    name: ClassVar[str] = "programs"
    version: ClassVar[int] = 2
    """2: the environment's values are no longer kept."""
    tables: ClassVar[tuple[str, ...]] = ("programs",)
    event_types: ClassVar[frozenset[str] | None] = PROGRAM_TYPES | {"TimerFired"}

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        mine = [item for item in events if _on_its_program(item)]
        if not mine:
            return
        agent_ids = sorted({agent_of(item.stream_id) for item in mine})
        rows = await connection.fetch(QUERIES["program_rows"], agent_ids)
        folded = {row["agent_id"]: ProgramRow.model_validate(row["state"]) for row in rows}
        updated: dict[str, datetime] = {}
        for item in mine:
            agent_id, event = agent_of(item.stream_id), item.event
            row = folded.get(agent_id)
            if row is None:
                if event.event_type != "ProgramDefined":
                    continue  # a timer on a stream no program was defined on
                row = folded[agent_id] = ProgramRow(program=ProgramLifecycle(agent_id=agent_id))
            before = row.program.status
            row.program.fold(event, item.stream_version)
            if isinstance(event, ProgramStarting):
                row.runs_started += 1
                row.started_at = None
            elif isinstance(event, ProgramRunning) and row.program.status == "running" and event.run == row.program.run:
                row.started_at = item.recorded_at
            elif isinstance(event, ProgramExited) and event.run == row.program.run and not event.runner_left:
                row.crashes += before in {"starting", "running"}  # it ended while nobody asked it to
            updated[agent_id] = item.recorded_at
        if updated:
            out = [_row(folded[agent_id], at) for agent_id, at in sorted(updated.items())]
            await connection.execute(QUERIES["program_upsert"], out)


def _on_its_program(item: TypedEvent) -> bool:
    """A program's event on its own stream, or a timer on a program's stream (the keeper's)."""
    if not item.stream_id.startswith("program-"):
        return False
    return item.stream_id == program_stream(getattr(item.event, "agent_id", agent_of(item.stream_id)))


projection = Programs()
