"""One text node of a document as the worker keeps it: its UTF-8 bytes, which bytes carry a `geo` mark, and the
finished sentences still waiting for their places. Pure: it is fed pycrdt's deltas and never reads the document.

Why bytes: pycrdt counts positions in UTF-8 bytes (an embed counts one), so a delta applies to a `bytearray` as
it comes and a place is formatted at `sentence start + bytes before the place` without converting the whole node.
An embed is kept as one NUL byte, which decodes to one character: a sentence holding one is left alone.

Why windows: a delta changes a few bytes, so only the sentences around them can change. Sentence boundaries are
decided from at most `sentences.CONTEXT` characters either side (see `agentlog.agents.sentences`), so two
boundaries that far from the edit are boundaries before and after it alike; the sentences between them, before
and after, are compared as multisets of texts, and only a sentence whose text was not there before is new. A
keystroke therefore costs the sentence it is in (plus a `bytearray` memmove), whatever the size of the node, and a
sentence nobody touched is never looked at again — so a mark someone removed from it is not put back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentlog.agents.sentences import CONTEXT, boundaries, sentences

MARK = "geo"
EMBED = "\x00"
"""Stands in for an embed: one byte, one character, one pycrdt position."""
_WINDOW_BYTES = 4 * CONTEXT
"""The first window tried around an edit (bytes); it grows fourfold until trusted boundaries are found."""


class DeltaMismatchError(ValueError):
    """A delta does not fit the node as mirrored here: read the node again (`NodeText(node.diff())`)."""


@dataclass(eq=False, slots=True)
class Pending:
    """A finished sentence waiting for its places: its text, and where it is now in the node (bytes), kept up to
    date as the node is edited around it. Compared by identity: the same text twice is two sentences."""

    start: int
    end: int
    text: str
    by_line: bool = False
    """Ended by a line break, not punctuation: maybe still being typed (see `sentences.Sentence.by_line`)."""


@dataclass(frozen=True, slots=True)
class Unmarked:
    """Someone removed a `geo` mark from characters [start, end) of a sentence with this text."""

    sentence: str
    start: int
    end: int


@dataclass(slots=True)
class Change:
    fresh: list[Pending] = field(default_factory=list)
    """Finished sentences whose text is new in the node, in text order."""
    unmarked: list[Unmarked] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Found:
    start: int
    end: int
    text: str
    finished: bool
    by_line: bool


class NodeText:
    """The mirror of one text node: built from `node.diff()`, kept in step with `apply(event.delta)`."""

    def __init__(self, chunks: Iterable[tuple[Any, Mapping[str, Any] | None]]) -> None:
        self.content = bytearray()
        self.marks = bytearray()
        """1 for every byte that carries a `geo` mark."""
        for chunk, attributes in chunks:
            data = chunk.encode() if isinstance(chunk, str) else EMBED.encode()
            self.content += data
            self.marks += bytes([_marked(attributes)]) * len(data)
        self.pending: dict[Pending, None] = {}
        """Finished sentences waiting for their places, in the order they were found."""

    def load(self) -> list[Pending]:
        """Every finished sentence of the node is new (the worker has just arrived, or the node is new)."""
        found = _sentences(self.content, 0, len(self.content))
        fresh = [Pending(s.start, s.end, s.text, s.by_line) for s in found if s.finished and EMBED not in s.text]
        self.pending = dict.fromkeys(fresh)
        return fresh

    def is_marked(self, start: int, end: int) -> bool:
        return start < end and 0 not in self.marks[start:end]

    def mark(self, start: int, end: int) -> None:
        """The worker marked [start, end) itself (and did not follow its own transaction)."""
        self.marks[start:end] = b"\x01" * (end - start)

    def holds(self, pending: Pending) -> bool:
        """Whether `pending` is still one of this node's sentences, where it says it is."""
        return pending in self.pending

    def done(self, pending: Pending) -> None:
        self.pending.pop(pending, None)

    def apply(self, delta: Sequence[Mapping[str, Any]], *, own: bool = False) -> Change:
        """Apply one event's delta; `own` when the worker made the change (its marks are not someone removing)."""
        low, old_high, growth = _extent(delta, len(self.content))
        change = Change()
        if low is None:  # formatting only: no sentence changed
            self._edit(delta, change, own)
            return change
        left, right = _anchors(self.content, low, old_high)
        before = _sentences(self.content, left, right)
        self._edit(delta, change, own)
        after = _sentences(self.content, left, right + growth)
        self._reconcile(left, right, growth, before, after, change)
        return change

    def _edit(self, delta: Sequence[Mapping[str, Any]], change: Change, own: bool) -> None:
        """Edit content and marks as the delta says; note the ranges where someone else removed a mark."""
        removed: list[tuple[int, int]] = []
        at = 0
        for operation in delta:
            if "retain" in operation:
                count = int(operation["retain"])
                attributes = operation.get("attributes")
                if attributes and MARK in attributes:
                    if attributes[MARK] is None and not own:
                        removed.extend(_runs(self.marks, at, at + count))
                    self.marks[at : at + count] = bytes([_marked(attributes)]) * count
                at += count
            elif "insert" in operation:
                value = operation["insert"]
                data = value.encode() if isinstance(value, str) else EMBED.encode()
                self.content[at:at] = data
                self.marks[at:at] = bytes([_marked(operation.get("attributes"))]) * len(data)
                at += len(data)
            elif "delete" in operation:
                del self.content[at : at + int(operation["delete"])]
                del self.marks[at : at + int(operation["delete"])]
        change.unmarked.extend(self._unmarked(start, end) for start, end in removed)

    def _reconcile(
        self, left: int, right: int, growth: int, before: list[_Found], after: list[_Found], change: Change
    ) -> None:
        """Sentences in [left, right) before the edit and in [left, right + growth) after it: new texts become
        pending, pending sentences that are still there move, the others are dropped; pending ones after the
        window shift by `growth`."""
        unchanged = Counter(found.text for found in before if found.finished)
        waiting: dict[str, list[Pending]] = {}
        kept: dict[Pending, None] = {}
        for pending in self.pending:
            if pending.start >= right:
                pending.start += growth
                pending.end += growth
                kept[pending] = None
            elif pending.end <= left:
                kept[pending] = None
            else:
                waiting.setdefault(pending.text, []).append(pending)
        for found in after:
            if not found.finished:
                continue
            if unchanged[found.text] > 0:
                unchanged[found.text] -= 1
                carried = waiting.get(found.text)
                if carried:
                    pending = carried.pop(0)
                    pending.start, pending.end = found.start, found.end
                    kept[pending] = None
            elif EMBED not in found.text:
                pending = Pending(found.start, found.end, found.text, found.by_line)
                kept[pending] = None
                change.fresh.append(pending)
        self.pending = kept

    def _unmarked(self, start: int, end: int) -> Unmarked:
        left, right = _anchors(self.content, start, end)
        for found in _sentences(self.content, left, right):
            if found.start < end and start < found.end:
                low, high = max(start, found.start), min(end, found.end)
                offset = len(self.content[found.start : low].decode())
                return Unmarked(found.text, offset, offset + len(self.content[low:high].decode()))
        return Unmarked(self.content[start:end].decode(), 0, len(self.content[start:end].decode()))


def _runs(marks: bytearray, start: int, end: int) -> list[tuple[int, int]]:
    """The marked stretches of [start, end) (a removal's delta may reach past the mark it removes)."""
    runs = []
    at = marks.find(1, start, end)
    while at != -1:
        stop = marks.find(0, at, end)
        stop = end if stop == -1 else stop
        runs.append((at, stop))
        at = marks.find(1, stop, end)
    return runs


def _marked(attributes: Mapping[str, Any] | None) -> int:
    return 1 if attributes and attributes.get(MARK) is not None else 0


def _extent(delta: Sequence[Mapping[str, Any]], size: int) -> tuple[int | None, int, int]:
    """Where the delta changes text: (first changed byte or None, end of the change in old bytes, growth)."""
    low: int | None = None
    high = 0
    growth = 0
    at = 0
    for operation in delta:
        if "retain" in operation:
            at += int(operation["retain"])
        elif "insert" in operation:
            value = operation["insert"]
            length = len(value.encode()) if isinstance(value, str) else 1
            low = at if low is None else low
            high = at
            growth += length
        elif "delete" in operation:
            count = int(operation["delete"])
            if count == 0:
                continue
            low = at if low is None else low
            at += count
            high = at
            growth -= count
        if at > size:
            raise DeltaMismatchError(f"a delta reaches byte {at} of a node of {size} bytes")
    return low, high, growth


def _char_start(content: bytes | bytearray, at: int) -> int:
    while 0 < at < len(content) and content[at] & 0xC0 == 0x80:
        at -= 1
    return at


def _anchors(content: bytes | bytearray, low: int, high: int) -> tuple[int, int]:
    """Two boundaries around [low, high) with at least CONTEXT characters between them and the range (or the ends
    of the node): boundaries both before and after any edit inside the range. Looks only at a window around it."""
    margin = _WINDOW_BYTES
    size = len(content)
    while True:
        window_start = _char_start(content, max(0, low - margin))
        window_end = _char_start(content, min(size, high + margin))
        window = content[window_start:window_end].decode()
        low_at = len(content[window_start:low].decode())
        high_at = low_at + len(content[low:high].decode())
        at_start, at_end = window_start == 0, window_end == size
        cuts = boundaries(window)
        lefts = [cut for cut in cuts if cut <= low_at - CONTEXT and (at_start or cut >= CONTEXT)]
        rights = [cut for cut in cuts if cut >= high_at + CONTEXT and (at_end or cut <= len(window) - CONTEXT)]
        left = lefts[-1] if lefts else (0 if at_start else None)
        right = rights[0] if rights else (len(window) if at_end else None)
        if left is not None and right is not None:
            return (
                window_start + len(window[:left].encode()),
                window_start + len(window[:right].encode()),
            )
        margin *= 4


def _sentences(content: bytes | bytearray, left: int, right: int) -> list[_Found]:
    """The sentences between boundaries `left` and `right` (bytes), read with CONTEXT characters around them."""
    window_start = _char_start(content, max(0, left - 4 * CONTEXT))
    window_end = _char_start(content, min(len(content), right + 4 * CONTEXT))
    window = content[window_start:window_end].decode()
    start_at = len(content[window_start:left].decode())
    end_at = start_at + len(content[left:right].decode())
    found = []
    char_at, byte_at = start_at, left
    for sentence in sentences(window, start_at, end_at):
        byte_at += len(window[char_at : sentence.start].encode())
        text = window[sentence.start : sentence.end]
        start = byte_at
        byte_at += len(text.encode())
        char_at = sentence.end
        found.append(_Found(start, byte_at, text, sentence.finished, sentence.by_line))
    return found
