"""What a Y.js update needs from a document before it can be applied whole, read from the update's bytes alone.

A room must know whether an update waits for missing dependencies *before* it applies it: an update applied is in
the document (a sync reply would show it once its dependencies came), so it has to be stored, and a socket over its
limit of waiting updates would still have left one more stored behind (and one more with every reconnect). And a
room keeps its waiting updates indexed by what each waits for, so an update rechecks only those it may complete
rather than every waiting one (an out-of-order flood made each later update recheck them all on the event loop).

An update (format v1) is its structs, per client a run of clocks, then its delete set. A struct can be integrated
once the document holds its client's clocks up to its own first one and every item it points at (origin, right
origin, parent); a deletion counts once the document holds the items it deletes (the document keeps a deletion of
items it lacks aside and applies it when they come, but an encoding of the document leaves it out, so a row holding
it is not "in" the document until then).
"""

from __future__ import annotations

from dataclasses import dataclass

Need = tuple[int, int]
"""(client, clock): the update waits until the document holds this clock of this client."""


class UnreadableUpdateError(ValueError):
    """The update uses a part of the format this reader does not know (treat it as one that may wait)."""


@dataclass(slots=True)
class _Struct:
    clock: int
    length: int
    needs: list[Need]
    provided: bool
    """False for a skip: the clocks are not in the update."""


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

    def signed(self) -> None:
        """A signed varint, skipped."""
        while self.byte() & 0x80:
            pass

    def buffer(self) -> bytes:
        length = self.uint()
        if self.at + length > len(self.data):
            raise UnreadableUpdateError("truncated update")
        self.at += length
        return self.data[self.at - length : self.at]

    def string(self) -> str:
        try:
            return self.buffer().decode()
        except UnicodeDecodeError as error:
            raise UnreadableUpdateError("a string that is not UTF-8") from error

    def skip(self, length: int) -> None:
        if self.at + length > len(self.data):
            raise UnreadableUpdateError("truncated update")
        self.at += length

    def any(self, depth: int = 0) -> None:
        """A lib0 `Any` value, skipped."""
        if depth > 64:
            raise UnreadableUpdateError("a value nested too deeply")
        tag = self.byte()
        if tag in (127, 126, 121, 120):  # undefined, null, false, true
            return
        if tag == 125:
            self.signed()
        elif tag == 124:
            self.skip(4)
        elif tag in (123, 122):
            self.skip(8)
        elif tag in (119, 116):  # string, bytes
            self.buffer()
        elif tag == 118:  # object
            for _ in range(self.uint()):
                self.buffer()
                self.any(depth + 1)
        elif tag == 117:  # array
            for _ in range(self.uint()):
                self.any(depth + 1)
        else:
            raise UnreadableUpdateError(f"unknown value tag {tag}")


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _read_struct(reader: _Reader, clock: int) -> _Struct:
    info = reader.byte()
    kind = info & 0x1F
    if kind == 0:  # GC: clocks provided, nothing pointed at
        return _Struct(clock, reader.uint(), [], True)
    if kind == 10:  # skip: clocks not in this update
        return _Struct(clock, reader.uint(), [], False)
    needs: list[Need] = []
    if info & 0x80:
        needs.append((reader.uint(), reader.uint()))
    if info & 0x40:
        needs.append((reader.uint(), reader.uint()))
    if not info & 0xC0:
        if reader.uint() == 1:
            reader.buffer()  # a root type by name
        else:
            needs.append((reader.uint(), reader.uint()))
        if info & 0x20:
            reader.buffer()  # parent sub (a map key)
    return _Struct(clock, _content_length(reader, kind), needs, True)


def _content_length(reader: _Reader, kind: int) -> int:
    """Read an item's content of this kind: its length in clocks."""
    if kind == 1:  # deleted
        length = reader.uint()
    elif kind == 2:  # JSON
        length = reader.uint()
        for _ in range(length):
            reader.buffer()
    elif kind == 3:  # binary
        reader.buffer()
        length = 1
    elif kind == 4:  # string
        length = _utf16_length(reader.string())
    elif kind == 5:  # embed
        reader.buffer()
        length = 1
    elif kind == 6:  # format
        reader.buffer()
        reader.buffer()
        length = 1
    elif kind == 7:  # type
        type_ref = reader.uint()
        if type_ref in (3, 5):  # XML element, XML hook: a name
            reader.buffer()
        elif type_ref not in (0, 1, 2, 4, 6):
            raise UnreadableUpdateError(f"unknown type {type_ref}")
        length = 1
    elif kind == 8:  # any
        length = reader.uint()
        for _ in range(length):
            reader.any()
    elif kind == 9:  # subdocument
        reader.buffer()
        reader.any()
        length = 1
    else:
        raise UnreadableUpdateError(f"unknown content kind {kind}")
    if length < 1:
        raise UnreadableUpdateError("an empty struct")
    return length


def decode_state(state: bytes) -> dict[int, int]:
    """An encoded state vector as client → clock (the document holds clocks below it)."""
    reader = _Reader(state)
    return {reader.uint(): reader.uint() for _ in range(reader.uint())}


def missing(update: bytes, state: dict[int, int]) -> Need | None:
    """What the update waits for in a document at `state` (one of the clocks it lacks), or None if it can be applied
    whole there. UnreadableUpdateError if this reader cannot tell."""
    reader = _Reader(update)
    runs: list[tuple[int, list[_Struct]]] = []
    for _ in range(reader.uint()):
        count, client, clock = reader.uint(), reader.uint(), reader.uint()
        structs = []
        for _ in range(count):
            struct = _read_struct(reader, clock)
            structs.append(struct)
            clock += struct.length
        runs.append((client, structs))
    deletions = []
    for _ in range(reader.uint()):
        client = reader.uint()
        for _ in range(reader.uint()):
            clock, length = reader.uint(), reader.uint()
            if length:
                deletions.append((client, clock + length - 1))
    if reader.at != len(update):
        raise UnreadableUpdateError("stray bytes after the update")
    known = dict(state)
    positions = [0] * len(runs)
    progress = True
    while progress:  # structs of one client may point at another's further on in the update: until nothing moves
        progress = False
        for index, (client, structs) in enumerate(runs):
            while positions[index] < len(structs):
                struct = structs[positions[index]]
                if struct.provided:
                    if known.get(client, 0) < struct.clock or any(known.get(c, 0) <= k for c, k in struct.needs):
                        break
                    known[client] = max(known.get(client, 0), struct.clock + struct.length)
                positions[index] += 1
                progress = True
    for index, (client, structs) in enumerate(runs):
        if positions[index] < len(structs):
            struct = structs[positions[index]]
            if known.get(client, 0) < struct.clock:
                return (client, struct.clock - 1)
            return next((c, k) for c, k in struct.needs if known.get(c, 0) <= k)
    return next(((client, clock) for client, clock in deletions if known.get(client, 0) <= clock), None)


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
