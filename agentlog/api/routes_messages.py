"""/chat and the inboxes: posts with @mentions (which land in the mentioned agents' inboxes), direct messages with
optional thread and task, reading unread or all, and read receipts (events)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Path, Query

from agentlog.api.errors import not_found
from agentlog.api.reads import QUERIES
from agentlog.api.services import Act, Reader, Svc, Who
from agentlog.api.views import chat, inbox
from agentlog.client import models
from agentlog.domains.coordination.events import ChatPosted, DirectMessageAcknowledged, DirectMessageSent
from agentlog.domains.coordination.names import AGENT_ID_PATTERN, CHAT_STREAM, inbox_stream
from agentlog.eventstore import Event

router = APIRouter(tags=["messages"])
AgentPath = Annotated[str, Path(pattern=AGENT_ID_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=500)]
MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9][A-Za-z0-9._-]{0,63})")


def mentions_in(body: str, given: list[str]) -> list[str]:
    return list(dict.fromkeys([*given, *(name.rstrip(".") for name in MENTION.findall(body))]))[:100]


@router.post("/chat", response_model=models.Posted, status_code=201)
async def post_chat(body: models.ChatPost, services: Svc, who: Who, actor: Act) -> models.Posted:
    """Post to everyone; `@agent-id` in the body (or `mentions`) puts the message in those agents' inboxes."""
    author, kind = who.author()
    if kind == "agent":
        await services.coordinator.registered(author)
    event = ChatPosted(message_id=actor.mint("msg-"), author=author, author_kind=kind,
                       body=body.body, mentions=mentions_in(body.body, body.mentions), data=body.data)  # fmt: skip

    async def plan() -> list[tuple[str, int | None, list[Event]]]:
        return [(CHAT_STREAM, None, [event])]

    written = await services.coordinator.decide(actor, plan)
    services.wrote(who, written)
    return models.Posted(message_id=event.message_id, global_position=written.position.global_position)


@router.get("/chat", response_model=models.ChatPage)
async def read_chat(
    services: Svc, who: Reader, after: Annotated[int, Query(ge=0)] = 0, limit: Limit = 100
) -> models.ChatPage:
    """Messages after `after` (a `seq`; 0 from the start), oldest first; `next_after` reads on."""
    rows = await services.store.pool.fetch(QUERIES["chat_after"], after, limit)
    messages = [chat(row) for row in rows]
    return models.ChatPage(messages=messages, next_after=messages[-1].seq if messages else after)


async def _send(services: Svc, who: Who, actor: Act, recipient: str, body: models.DirectMessage) -> models.Posted:
    sender, kind = who.author()
    if kind == "agent":
        await services.coordinator.registered(sender)
    entry = await services.coordinator.member(recipient)
    if entry.state == "unknown":
        raise not_found(f"no agent {recipient}")
    event = DirectMessageSent(message_id=actor.mint("msg-"), sender=sender, sender_kind=kind,
                              recipient=recipient, body=body.body, data=body.data, thread_id=body.thread_id,
                              task_id=body.task_id)  # fmt: skip

    async def plan() -> list[tuple[str, int | None, list[Event]]]:
        return [(inbox_stream(recipient), None, [event])]

    written = await services.coordinator.decide(actor, plan)
    services.wrote(who, written)
    return models.Posted(message_id=event.message_id, global_position=written.position.global_position)


@router.post("/agents/{agent_id}/inbox", response_model=models.Posted, status_code=201)
async def send_to_inbox(
    agent_id: AgentPath, body: models.DirectMessage, services: Svc, who: Who, actor: Act
) -> models.Posted:
    """A direct message to the agent: in its inbox until it acknowledges it."""
    return await _send(services, who, actor, agent_id, body)


@router.post("/messages", response_model=models.Posted, status_code=201)
async def send_message(body: models.MessageTo, services: Svc, who: Who, actor: Act) -> models.Posted:
    """A direct message to the agent named in `to`."""
    return await _send(services, who, actor, body.to, models.DirectMessage(**body.model_dump(exclude={"to"})))


@router.get("/agents/{agent_id}/inbox", response_model=models.InboxPage)
async def read_inbox(
    agent_id: AgentPath, services: Svc, who: Reader,
    unread: bool = True, after: Annotated[int, Query(ge=0)] = 0, limit: Limit = 100,
) -> models.InboxPage:  # fmt: skip
    """Unread messages (`unread=false`: all), oldest first, after `after` (a `seq`)."""
    who.reads_private(agent_id)
    pool = services.store.pool
    messages = [inbox(row) for row in await pool.fetch(QUERIES["inbox_after"], agent_id, unread, after, limit)]
    count = await pool.fetchval(QUERIES["inbox_unread"], agent_id)
    return models.InboxPage(messages=messages, unread=count, next_after=messages[-1].seq if messages else after)


@router.post("/agents/{agent_id}/inbox/ack", response_model=models.Acknowledged)
async def acknowledge(
    agent_id: AgentPath, body: models.Acknowledgement, services: Svc, who: Who, actor: Act
) -> models.Acknowledged:
    """Read receipts for messages in the agent's inbox (each one an event; acknowledged ones are not repeated)."""
    agent_id = who.agent(agent_id)
    await services.reads.caught_up(who.key)
    rows = await services.store.pool.fetch(
        QUERIES["inbox_unacknowledged"], agent_id, list(dict.fromkeys(body.message_ids))
    )
    ids = [row["message_id"] for row in rows]
    if ids:

        async def plan() -> list[tuple[str, int | None, list[Event]]]:
            return [(inbox_stream(agent_id), None,
                     [DirectMessageAcknowledged(message_id=i, agent_id=agent_id) for i in ids])]  # fmt: skip

        services.wrote(who, await services.coordinator.decide(actor, plan))
    return models.Acknowledged(acknowledged=ids)
