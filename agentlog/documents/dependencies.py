"""Reading the parts of a Y.js update (format v1) that the room needs and pycrdt does not tell: state vectors and
delete sets.

A deletion counts as applied only once the document holds the items it deletes: the document keeps a deletion of
items it lacks aside and applies it when they come, but an encoding of the document leaves it out, so a row holding
it is not "in" the document until then.
"""

from __future__ import annotations


class UnreadableUpdateError(ValueError):
    """The bytes are not a well-formed state vector or delete set."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def byte(self) -> int:
        if self.at >= len(self.data):
            raise UnreadableUpdateError("truncated update")
        value = self.data[self.at]
        self.at += 1
        return value

    def uint(self) -> int:
        value = shift = 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
            if shift > 70:
                raise UnreadableUpdateError("number too long")


def decode_state(state: bytes) -> dict[int, int]:
    """An encoded state vector as client → clock (the document holds clocks below it)."""
    reader = _Reader(state)
    return {reader.uint(): reader.uint() for _ in range(reader.uint())}


def deletions_held(delete_set: bytes, state: dict[int, int]) -> bool:
    """Whether a document at `state` holds every item an encoded delete set deletes."""
    reader = _Reader(delete_set)
    for _ in range(reader.uint()):
        client = reader.uint()
        held = state.get(client, 0)
        for _ in range(reader.uint()):
            clock, length = reader.uint(), reader.uint()
            if length and clock + length > held:
                return False
    return True
