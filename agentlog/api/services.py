"""What the routes share: the log, the write side, the read side, and who is calling (FastAPI dependencies)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from agentlog.api.auth import Authenticator, Caller
from agentlog.api.commands import Actor, Coordinator, Written
from agentlog.api.reads import Reads
from agentlog.eventstore import EventStore


@dataclass
class Services:
    store: EventStore
    coordinator: Coordinator
    reads: Reads
    auth: Authenticator

    def wrote(self, caller: Caller, written: Written) -> None:
        self.reads.wrote(caller.key, written.position)


async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def caller(request: Request) -> Caller:
    found: Services = request.app.state.services
    return await found.auth.caller(request)


async def reader(request: Request) -> Caller:
    """The caller, once the projections show what it wrote last (read-your-writes)."""
    found: Services = request.app.state.services
    who = await found.auth.caller(request)
    await found.reads.caught_up(who.key)
    return who


async def actor(
    request: Request,
    who: Annotated[Caller, Depends(caller)],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Actor:
    # Only a POST's key is honoured (the guard keeps its answer): a PUT or DELETE is idempotent by itself, and ids
    # derived from a key it reused would refuse (or drop) a later change.
    key = idempotency_key if request.method == "POST" else None
    return Actor(who.name, who.kind, who.identity.token_id, key)


Svc = Annotated[Services, Depends(services)]
Who = Annotated[Caller, Depends(caller)]
Reader = Annotated[Caller, Depends(reader)]
Act = Annotated[Actor, Depends(actor)]
