"""The text of a document as the worker follows it: a mirror of its tree of text nodes, kept from pycrdt events.

Why a mirror: the events of one transaction say which nodes changed and how (`path`, `delta`), so the worker
works on those nodes only, and only on the sentences around each change (`NodeText`), instead of reading every
node of the document after every keystroke.

Why the tree is mirrored too (layout `tiptap`: an `XmlFragment` of paragraphs and other elements): an event that
removes children says how many, not which, and a removed node must never be touched again — pycrdt frees a
deleted branch, and reading one through an old handle crashes the process. The mirror knows which records the
removed positions held, marks them dead, and the worker checks `alive` before it formats anything. Paths in
events are positions after the transaction, so container events are applied shallowest first, text events last.
Anything that does not fit (a path that leads nowhere, a delta longer than the node) makes the mirror read the
document again (`load`), logged: that costs the whole document once, and sentences nobody changed are not looked
at twice even then, because a node read again keeps the sentences it already had (see `_reread`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from pycrdt import Doc, Text, XmlElement, XmlFragment, XmlText

from agentlog.agents.node_text import Change, DeltaMismatchError, NodeText, Pending, Unmarked

log = structlog.get_logger("agentlog.worker")


@dataclass(eq=False, slots=True)
class TextRecord:
    """One text node and its mirror. `alive` turns False when the node leaves the document: never touch
    `node` then."""

    node: Text | XmlText
    text: NodeText
    alive: bool = True


@dataclass(eq=False, slots=True)
class Branch:
    """An element (or the fragment) and its children, as positions in it."""

    children: list[Branch | TextRecord] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class SentenceWork:
    """One occurrence of a finished sentence in one text node, waiting for its places (the extraction queue's
    `Work`)."""

    record: TextRecord
    pending: Pending

    @property
    def text(self) -> str:
        return self.pending.text

    def current(self) -> bool:
        return self.record.alive and self.record.text.holds(self.pending)

    def finish(self) -> None:
        self.record.text.done(self.pending)


class MirrorMismatchError(LookupError):
    """An event does not fit the mirror (a path that leads nowhere): the document is read again."""


class Surface:
    """Text nodes of one document, with the sentences that became new since the last `take`."""

    def __init__(self, document: Doc[Any], layout: str) -> None:
        self.layout = layout
        self.root: Text | XmlFragment
        if layout == "tiptap":
            self.root = document.get("default", type=XmlFragment)
        else:
            self.root = document.get("text", type=Text)
        self._tree: Branch | TextRecord = Branch() if isinstance(self.root, XmlFragment) else _record(self.root)
        self._fresh: list[tuple[TextRecord, Pending]] = []
        self._unmarked: list[Unmarked] = []

    def load(self) -> None:
        """Mirror the document as it is now; every finished sentence in it is new (the worker has just joined)."""
        _bury(self._tree)
        if isinstance(self.root, Text):
            self._tree = _record(self.root)
        else:
            self._tree = _branch(self.root)
        for record in self.records():
            self._fresh.extend((record, pending) for pending in record.text.load())

    def records(self) -> Iterator[TextRecord]:
        """Every text node, in document order."""
        yield from _records(self._tree)

    def take(self) -> tuple[list[tuple[TextRecord, Pending]], list[Unmarked]]:
        """The sentences that became new, and the marks someone removed, since the last call."""
        fresh, unmarked = self._fresh, self._unmarked
        self._fresh, self._unmarked = [], []
        return fresh, unmarked

    def follow(self, events: Sequence[object], *, own: bool) -> None:
        """Bring the mirror up to date with one transaction's events (`own`: the worker's own transaction)."""
        try:
            self._follow(events, own)
        except (MirrorMismatchError, DeltaMismatchError) as error:
            log.warning("worker.mirror_reloaded", reason=str(error))
            self._reload()
        except Exception:  # a bug here must not stop the worker from following its document
            log.exception("worker.mirror_failed")
            self._reload()

    def _follow(self, events: Sequence[object], own: bool) -> None:
        containers: list[object] = []
        texts: list[object] = []
        for event in events:
            (texts if isinstance(getattr(event, "target", None), Text | XmlText) else containers).append(event)
        for event in sorted(containers, key=lambda event: len(_path(event))):
            branch = self._resolve(_path(event))
            if not isinstance(branch, Branch):
                raise MirrorMismatchError(f"children changed under a text node at {_path(event)}")
            self._children_changed(branch, _delta(event))
        for event in texts:
            record = self._resolve(_path(event))
            if not isinstance(record, TextRecord):
                raise MirrorMismatchError(f"text changed in an element at {_path(event)}")
            self._collect(record, record.text.apply(_delta(event), own=own))

    def _resolve(self, path: list[Any]) -> Branch | TextRecord:
        at = self._tree
        for index in path:
            if not isinstance(at, Branch) or not isinstance(index, int) or not 0 <= index < len(at.children):
                raise MirrorMismatchError(f"no node at {path}")
            at = at.children[index]
        return at

    def _children_changed(self, branch: Branch, delta: list[dict[str, Any]]) -> None:
        at = 0
        for operation in delta:
            if "retain" in operation:
                at += int(operation["retain"])
            elif "insert" in operation:
                inserted = [_mirror(child) for child in operation["insert"]]
                branch.children[at:at] = inserted
                at += len(inserted)
                for child in inserted:
                    for record in _records(child):
                        self._fresh.extend((record, pending) for pending in record.text.load())
            elif "delete" in operation:
                count = int(operation["delete"])
                if at + count > len(branch.children):
                    raise MirrorMismatchError(f"{count} children removed at {at} of {len(branch.children)}")
                for child in branch.children[at : at + count]:
                    _bury(child)
                del branch.children[at : at + count]
            if at > len(branch.children):
                raise MirrorMismatchError(f"a children delta reaches {at} of {len(branch.children)}")

    def _collect(self, record: TextRecord, change: Change) -> None:
        self._fresh.extend((record, pending) for pending in change.fresh)
        self._unmarked.extend(change.unmarked)

    def _reload(self) -> None:
        """Read the whole document again; nodes at the same place keep the sentences they had (`_reread`)."""
        old = list(self.records())
        _bury(self._tree)
        self._tree = _record(self.root) if isinstance(self.root, Text) else _branch(self.root)
        for index, record in enumerate(self.records()):
            previous = old[index].text if index < len(old) else None
            self._fresh.extend((record, pending) for pending in _reread(record.text, previous))


def _reread(text: NodeText, previous: NodeText | None) -> list[Pending]:
    """A node read again: its sentences are new where their text was not in the node it replaces, or was there and
    still waiting for its places."""
    fresh = text.load()
    if previous is None:
        return fresh
    waiting = Counter(pending.text for pending in previous.pending)
    known = Counter(pending.text for pending in previous.load()) - waiting
    kept = []
    for pending in fresh:
        if known[pending.text] > 0:
            known[pending.text] -= 1
            text.done(pending)
        else:
            kept.append(pending)
    return kept


def _path(event: object) -> list[Any]:
    return list(getattr(event, "path", []))


def _delta(event: object) -> list[dict[str, Any]]:
    return list(getattr(event, "delta", []) or [])


def _record(node: Text | XmlText) -> TextRecord:
    return TextRecord(node, NodeText(node.diff()))


def _branch(node: XmlFragment | XmlElement) -> Branch:
    return Branch([_mirror(child) for child in node.children])


def _mirror(node: object) -> Branch | TextRecord:
    if isinstance(node, XmlText):
        return _record(node)
    if isinstance(node, XmlElement | XmlFragment):
        return _branch(node)
    raise MirrorMismatchError(f"a child of an unexpected kind: {type(node).__name__}")


def _records(node: Branch | TextRecord) -> Iterator[TextRecord]:
    if isinstance(node, TextRecord):
        yield node
        return
    for child in node.children:
        yield from _records(child)


def _bury(node: Branch | TextRecord) -> None:
    for record in _records(node):
        record.alive = False
