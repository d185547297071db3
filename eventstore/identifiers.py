"""Identifiers of the log: stream ids and their categories, time-ordered event ids, derived event ids."""

from __future__ import annotations

import hashlib
import random
import re
import time
import uuid

from agentlog.eventstore.errors import InvalidStreamIdError

MAX_STREAM_ID_BYTES = 200
_FORBIDDEN_IN_STREAM_ID = re.compile(r"[\s\x00-\x1f\x7f]")

_random_bits = random.Random().getrandbits

# Namespace of event ids derived from (handler, causing event): a retry after a crash derives the same ids.
DERIVED_EVENT_NAMESPACE = uuid.UUID("6f0b8f4e-3c55-4d43-9a8f-0c7d5d1e2a61")


def validate_stream_id(stream_id: str) -> str:
    """Return `stream_id` unchanged if the log accepts it, else raise with what is wrong."""
    if not isinstance(stream_id, str) or not stream_id:
        raise InvalidStreamIdError("stream id is empty; give a name such as 'agent-42'")
    size = len(stream_id.encode())
    if size > MAX_STREAM_ID_BYTES:
        raise InvalidStreamIdError(f"stream id is {size} bytes long; the limit is {MAX_STREAM_ID_BYTES}")
    if _FORBIDDEN_IN_STREAM_ID.search(stream_id):
        raise InvalidStreamIdError(f"stream id {stream_id!r} contains whitespace or a control character")
    return stream_id


def category_of(stream_id: str) -> str:
    """The category is the part of the stream id before the first '-': `agent` of `agent-42`."""
    return stream_id.split("-", 1)[0]


_UUID7_FIXED_BITS = (0x7 << 76) | (0b10 << 62)
"""Version 7 and the RFC 4122 variant, in place."""
_LOW_62 = (1 << 62) - 1
_UUID = uuid.UUID
_UNKNOWN_SAFETY = uuid.SafeUUID.unknown
_new_object = object.__new__
_set_uuid_int = uuid.UUID.__dict__["int"].__set__
_set_uuid_is_safe = uuid.UUID.__dict__["is_safe"].__set__
_time_ns = time.time_ns


def new_event_id() -> uuid.UUID:
    """A UUIDv7: random but time-ordered, so the unique index on event ids grows at its right edge.

    Event ids must be unique, not unguessable: 74 bits from `random` (reseeded in forked children by CPython)
    per millisecond, without a system call per id on the append path. The UUID is built through its slots, not
    `uuid.UUID(int=...)`, whose checks cost more than the rest together (the value is valid by construction);
    ids are made per event, so this is on the hot path of every batch.
    """
    random_bits = _random_bits(74)
    made = _new_object(_UUID)
    _set_uuid_int(
        made,
        ((_time_ns() // 1_000_000) << 80)
        | _UUID7_FIXED_BITS
        | ((random_bits >> 62) << 64)
        | (random_bits & _LOW_62),
    )
    _set_uuid_is_safe(made, _UNKNOWN_SAFETY)
    return made


_DERIVED_PREFIX = hashlib.sha1(DERIVED_EVENT_NAMESPACE.bytes, usedforsecurity=False)
_UUID5_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID5_FIXED_BITS = (0x5 << 76) | (0x8000 << 48)


def derived_event_id(handler_name: str, causing_event_id: uuid.UUID, index: int = 0) -> uuid.UUID:
    """The id of the `index`-th event a handler appends because of `causing_event_id`; stable across retries.

    `uuid.uuid5(DERIVED_EVENT_NAMESPACE, f"{handler_name}/{causing_event_id}/{index}")`, computed from the
    namespace's hash state copied and built through the UUID's slots: deciders derive several per input event."""
    digest = _DERIVED_PREFIX.copy()
    digest.update(f"{handler_name}/{causing_event_id}/{index}".encode())
    made = _new_object(_UUID)
    _set_uuid_int(made, (int.from_bytes(digest.digest()[:16]) & _UUID5_CLEAR) | _UUID5_FIXED_BITS)
    _set_uuid_is_safe(made, _UNKNOWN_SAFETY)
    return made
