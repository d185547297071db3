"""inbox: each agent's direct messages and the chat messages that mention it, with read receipts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from agentlog.domains.coordination.events import ChatPosted, DirectMessageAcknowledged, DirectMessageSent
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.projections.builtin.coordination.queries import QUERIES


class Inbox:
    name: ClassVar[str] = "inbox"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("inbox",)
    event_types: ClassVar[frozenset[str] | None] = frozenset(
        {"ChatPosted", "DirectMessageSent", "DirectMessageAcknowledged"}
    )

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        messages: list[dict[str, Any]] = []
        receipts: list[tuple[str, str, Any]] = []

        async def flush() -> None:
            # In order: a receipt in the batch of its message finds the message's row.
            if messages:
                await connection.execute(QUERIES["inbox_insert"], messages)
                messages.clear()
            if receipts:
                await connection.execute(QUERIES["inbox_acknowledge"], *map(list, zip(*receipts, strict=True)))
                receipts.clear()

        for item in events:
            event = item.event
            common = {"global_position": item.global_position, "sent_at": item.recorded_at}
            if isinstance(event, DirectMessageSent):
                if receipts:
                    await flush()
                messages.append({**event.to_data(), **common, "kind": "direct"})
            elif isinstance(event, ChatPosted):
                if receipts:
                    await flush()
                for recipient in dict.fromkeys(event.mentions):
                    messages.append({
                        "recipient": recipient, "message_id": event.message_id, "kind": "mention",
                        "sender": event.author, "sender_kind": event.author_kind, "body": event.body,
                        "data": event.data, "thread_id": None, "task_id": None, **common,
                    })  # fmt: skip
            elif isinstance(event, DirectMessageAcknowledged):
                receipts.append((event.agent_id, event.message_id, item.recorded_at))
        await flush()


projection = Inbox()
