"""Decider events: the settings a decider decides with are part of the log, so every replay decides alike.

A process that hosts a decider records `DeciderConfigured` when it starts with settings other than the last ones
recorded; from that event on, the decider decides with them, wherever and whenever the log is refolded.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import StringConstraints

from agentlog.eventstore.events import Event, catalogue

DeciderName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,62}$")]


@catalogue.register
class DeciderConfigured(Event):
    """From here on, the decider `decider` decides with `settings` (each of its settings by name)."""

    event_type: ClassVar[str] = "DeciderConfigured"
    category: ClassVar[str] = "decider"

    decider: DeciderName
    settings: dict[str, float | int | str | bool]


def decider_stream(name: str) -> str:
    return f"decider-{name}"
