"""The y-websocket protocol as the document server reads it: every frame checked before a room sees it.

A socket that sends garbage is closed (its client is broken or hostile), so the room and everyone else in it
never see the bytes. Awareness updates are parsed and their states checked as JSON before anyone else gets them
(a malformed state forwarded as it came crashes the Node y-websocket peers that receive it).

Frames (numbers are varuints, byte strings are a varuint length and the bytes):

    sync        0, step (0 state vector | 1 missing updates | 2 update), bytes
    awareness   1, bytes: count, then per client: client id, clock, state (JSON text, "null" when gone)
    auth        2, bytes: a renewed token (agentlog's workers send it before their token expires)
    query       3: "send me everyone's awareness"
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from pycrdt import get_update, write_var_uint

from agentlog.documents.dependencies import decode_state, deletions_held

SYNC, AWARENESS, AUTH, QUERY_AWARENESS = 0, 1, 2, 3
SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE = 0, 1, 2
SYNC_STEPS = {SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE}
MAX_AWARENESS_STATE_BYTES = 64 * 1024
"""A client's presence state (name, colour, cursor) is small; more is someone filling the room's memory."""


class MalformedMessageError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Message:
    kind: int
    step: int | None
    payload: bytes
    """The sync payload (state vector or update), the awareness update, or the token; empty for a query."""


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: str
    """JSON text of an object, or "null" for a client that is gone."""

    @property
    def gone(self) -> bool:
        return self.state == "null"


def parse_message(message: bytes) -> Message:
    """The message, or MalformedMessageError unless it is a sync, awareness, auth or query message, framed exactly."""
    if not message:
        raise MalformedMessageError("empty message")
    kind, offset = _varuint(message, 0)
    step: int | None = None
    if kind == SYNC:
        step, offset = _varuint(message, offset)
        if step not in SYNC_STEPS:
            raise MalformedMessageError(f"unknown sync step {step}")
        payload, offset = _bytes(message, offset)
    elif kind in (AWARENESS, AUTH):
        payload, offset = _bytes(message, offset)
    elif kind == QUERY_AWARENESS:
        payload = b""
    else:
        raise MalformedMessageError(f"unknown message type {kind}")
    if offset != len(message):
        raise MalformedMessageError(f"{len(message) - offset} stray bytes after the message")
    return Message(kind, step, payload)


def check_message(message: bytes) -> None:
    """Raise MalformedMessageError unless `message` is a well-framed y-websocket message."""
    parse_message(message)


def parse_awareness(payload: bytes) -> list[AwarenessEntry]:
    """The entries of an awareness update, each state checked: a JSON object or null, of bounded size."""
    count, offset = _varuint(payload, 0)
    entries = []
    for _ in range(count):
        client_id, offset = _varuint(payload, offset)
        clock, offset = _varuint(payload, offset)
        raw, offset = _bytes(payload, offset)
        if len(raw) > MAX_AWARENESS_STATE_BYTES:
            raise MalformedMessageError(f"an awareness state of {len(raw)} bytes (the limit is 64 KiB)")
        try:
            state = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise MalformedMessageError(f"an awareness state that is not JSON: {error}") from error
        if state is not None and not isinstance(state, dict):
            raise MalformedMessageError("an awareness state must be a JSON object or null")
        entries.append(AwarenessEntry(client_id, clock, "null" if state is None else raw.decode()))
    if offset != len(payload):
        raise MalformedMessageError(f"{len(payload) - offset} stray bytes after the awareness update")
    return entries


def awareness_message(entries: list[AwarenessEntry]) -> bytes:
    """An awareness message carrying `entries` (a joiner's view of everyone, or who left)."""
    body = [write_var_uint(len(entries))]
    for entry in entries:
        state = entry.state.encode()
        body += [write_var_uint(entry.client_id), write_var_uint(entry.clock), write_var_uint(len(state)), state]
    payload = b"".join(body)
    return bytes([AWARENESS]) + write_var_uint(len(payload)) + payload


def sync_message(step: int, payload: bytes) -> bytes:
    return bytes([SYNC, step]) + write_var_uint(len(payload)) + payload


def auth_message(token: str) -> bytes:
    encoded = token.encode()
    return bytes([AUTH]) + write_var_uint(len(encoded)) + encoded


def is_integrated(update: bytes, state: bytes) -> bool:
    """Whether a document at `state` (an encoded state vector) holds every operation of `update`: nothing of it waits
    for missing dependencies. (The update's own state vector cannot tell: it stops at the first gap.)

    Its deletions count too: a document keeps a deletion of items it lacks aside, and its encoding leaves it out, so
    a row holding one is not in the folded document (compaction deleted such a row, and the deletion was lost once
    the items came)."""
    rest = get_update(update, state)
    if rest[0] != 0:  # clients with operations left: the structs part is not empty
        return False
    return deletions_held(rest[1:], decode_state(state))  # what is left is the update's whole delete set


def _varuint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if offset >= len(data):
            raise MalformedMessageError("truncated number")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, offset
        shift += 7
        if shift > 63:
            raise MalformedMessageError("number too long")


def _bytes(data: bytes, offset: int) -> tuple[bytes, int]:
    length, offset = _varuint(data, offset)
    if offset + length > len(data):
        raise MalformedMessageError("truncated payload")
    return data[offset : offset + length], offset + length
