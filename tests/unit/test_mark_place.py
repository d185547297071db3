"""`mark_place`'s marking (`api.routes_documents._mark`), without a database: embeds count as one position, a place
someone marked already is not re-pointed, and one request marks at most `MAX_MARKS` occurrences (a hostile review
found the first two marking the wrong characters, and the third taking minutes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pycrdt import Doc, Text, XmlElement, XmlFragment, XmlText

from agentlog.api.routes_documents import MAX_MARKS, PlaceMark, _mark
from agentlog.documents.updates import fold

PARIS = PlaceMark(text="Paris", latitude=48.86, longitude=2.35)


def stored(build: Callable[[Doc[Any]], None]) -> list[tuple[int, bytes]]:
    document: Doc[Any] = Doc()
    build(document)
    return [(1, document.get_update())]


def runs(rows: list[tuple[int, bytes]], update: bytes | None, layout: str) -> list[tuple[Any, Any]]:
    document = fold(rows + ([(2, update)] if update else []))[0]
    if layout == "text":
        node: Text | XmlText = document.get("text", type=Text)
    else:
        (paragraph,) = document.get("default", type=XmlFragment).children
        node = paragraph.children[0]
    return [(chunk, (rest[0] or {}).get("geo") if rest else None) for chunk, *rest in node.diff()]


def test_an_embed_before_the_place_counts_as_one_position() -> None:
    def build(document: Doc[Any]) -> None:
        text = document.get("text", type=Text)
        text.insert(0, "x")
        text.insert_embed(1, {"img": 1})
        text.insert_embed(2, {"img": 2})
        text.insert(3, " go to Paris.")

    rows = stored(build)
    update, marked = _mark(rows, PARIS)
    assert marked == 1
    assert [chunk for chunk, geo in runs(rows, update, "text") if geo] == ["Paris"]


def test_a_place_marked_already_is_not_re_pointed() -> None:
    def build(document: Doc[Any]) -> None:
        text = XmlText("Paris, Texas and Paris")
        document.get("default", type=XmlFragment).children.append(XmlElement("paragraph", contents=[text]))
        text.format(0, 12, {"geo": {"name": "Paris, Texas", "lat": 33.66, "lon": -95.56}})

    rows = stored(build)
    update, marked = _mark(rows, PARIS)
    assert marked == 1
    shown = runs(rows, update, "tiptap")
    assert ("Paris, Texas", {"name": "Paris, Texas", "lat": 33.66, "lon": -95.56}) in shown
    assert ("Paris", {"name": "Paris", "lat": 48.86, "lon": 2.35}) in shown


def test_one_request_marks_a_bounded_number_of_occurrences() -> None:
    rows = stored(lambda document: document.get("text", type=Text).insert(0, "Paris " * (MAX_MARKS + 50)))
    update, marked = _mark(rows, PARIS)
    assert marked == MAX_MARKS
    assert sum(1 for _, geo in runs(rows, update, "text") if geo) == MAX_MARKS
