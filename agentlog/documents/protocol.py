"""Checks that a WebSocket frame is a well-formed y-websocket message before a room sees it.

pycrdt-websocket skips a message it cannot handle and keeps the socket; we close a socket that sends garbage
instead (its client is broken or hostile), so the room and everyone else in it never see the bytes.
"""

from __future__ import annotations

SYNC, AWARENESS, AUTH, QUERY_AWARENESS = 0, 1, 2, 3
SYNC_STEPS = {0, 1, 2}  # step 1 (state vector), step 2 (missing updates), update


class MalformedMessageError(ValueError):
    pass


def check_message(message: bytes) -> None:
    """Raise MalformedMessageError unless `message` is a sync, awareness or query-awareness message, framed exactly."""
    if not message:
        raise MalformedMessageError("empty message")
    kind, offset = _varuint(message, 0)
    if kind == SYNC:
        step, offset = _varuint(message, offset)
        if step not in SYNC_STEPS:
            raise MalformedMessageError(f"unknown sync step {step}")
        offset = _bytes(message, offset)
    elif kind == AWARENESS:
        offset = _bytes(message, offset)
    elif kind != QUERY_AWARENESS:
        raise MalformedMessageError(f"unknown message type {kind}")
    if offset != len(message):
        raise MalformedMessageError(f"{len(message) - offset} stray bytes after the message")


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


def _bytes(data: bytes, offset: int) -> int:
    length, offset = _varuint(data, offset)
    if offset + length > len(data):
        raise MalformedMessageError("truncated payload")
    return offset + length
