"""/documents/{id}/text and /documents/{id}/marks: a collaborative document's text as stored (every update the
document servers stored), for readers and the `read_document` tool; and places marked in it, for the `mark_place`
tool. Both work from the database, not from a room, so they answer on any process, whether the document is open
or not: a mark is an update stored like a person's, and the servers that have the document open take it from the
database as they take another server's (`documents.updates.UpdateFollower`)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pycrdt import Doc, Text, XmlElement, XmlFragment, XmlText
from pydantic import BaseModel, Field

from agentlog.agents.node_text import MARK
from agentlog.api.errors import forbidden, not_found
from agentlog.api.services import Reader, Svc, Who
from agentlog.documents.updates import QUERIES as DOCUMENT_QUERIES
from agentlog.documents.updates import fold, stored_rows

router = APIRouter(tags=["documents"])
DocumentPath = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f/]+$")]
MAX_TEXT_CHARS = 200_000


class DocumentText(BaseModel):
    document_id: str
    layout: str
    """`tiptap` (paragraphs of an XmlFragment 'default'), `text` (a Y.Text 'text'), or `empty`."""
    text: str
    truncated: bool
    updates: int


def _paragraphs(node: XmlFragment | XmlElement) -> list[str]:
    lines: list[str] = []
    for child in node.children:
        if isinstance(child, XmlText):
            lines.append(str(child))
        elif isinstance(child, XmlElement):
            inner = _paragraphs(child)
            if child.tag in ("paragraph", "heading", "listItem", "codeBlock", "blockquote"):
                lines.append("".join(inner) if all("\n" not in part for part in inner) else "\n".join(inner))
            else:
                lines.extend(inner)
    return lines


def _text_of(rows: list[tuple[int, bytes]]) -> tuple[str, str]:
    document: Doc[Any] = fold(rows)[0]
    fragment = document.get("default", type=XmlFragment)
    if len(fragment.children) > 0:
        return "tiptap", "\n".join(_paragraphs(fragment))
    text = str(document.get("text", type=Text))
    return ("text", text) if text else ("empty", "")


@router.get("/documents/{document_id}/text", response_model=DocumentText)
async def document_text(document_id: DocumentPath, services: Svc, who: Reader) -> DocumentText:
    """The document's text as stored (paragraphs on lines); a person's token limited to some documents reads those
    only; an agent's token limited to one document, that one."""
    if not who.identity.opens(document_id):
        raise forbidden(f"this token does not open document {document_id}")
    rows, _ = await stored_rows(services.store.pool, document_id)
    layout, text = await asyncio.to_thread(_text_of, rows) if rows else ("empty", "")
    return DocumentText(document_id=document_id, layout=layout, text=text[:MAX_TEXT_CHARS],
                        truncated=len(text) > MAX_TEXT_CHARS, updates=len(rows))  # fmt: skip


MARKS_SERVER = "api"
"""The `server_id` a mark's update is stored under: no document server's, so every one of them takes it."""


class PlaceMark(BaseModel):
    text: str = Field(min_length=1, max_length=200, description="the place's name as written in the document")
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    occurrences: Literal["all", "first"] = "all"


class Marked(BaseModel):
    document_id: str
    marked: int
    """How many occurrences were marked (0: the text is not in the document)."""


def _text_nodes(document: Doc[Any]) -> list[Text | XmlText]:
    found: list[Text | XmlText] = []

    def walk(node: XmlFragment | XmlElement) -> None:
        for child in node.children:
            if isinstance(child, XmlText):
                found.append(child)
            elif isinstance(child, XmlElement):
                walk(child)

    walk(document.get("default", type=XmlFragment))
    found.append(document.get("text", type=Text))
    return found


MAX_MARKS = 100
"""Occurrences one request marks at most (formatting thousands of runs takes pycrdt minutes, and every open room
receives the update)."""


def _content(node: Text | XmlText) -> tuple[bytes, bytearray]:
    """The node's text as pycrdt's formatting counts it (UTF-8 bytes, an embed one position), and which of those
    positions carry a place mark already."""
    content = bytearray()
    marked = bytearray()
    for chunk, *rest in node.diff():
        attributes = rest[0] if rest else None
        piece = chunk.encode() if isinstance(chunk, str) else b"\0"
        content += piece
        marked += bytes([1 if attributes and attributes.get(MARK) is not None else 0]) * len(piece)
    return bytes(content), marked


def _mark(rows: list[tuple[int, bytes]], mark: PlaceMark) -> tuple[bytes | None, int]:
    """The update marking `mark.text` where it stands in the document (formatting attribute `geo`, as the agents
    mark places), and how many occurrences it marks: up to `MAX_MARKS`, none already marked (as the agents, it
    never re-points a place someone marked)."""
    document: Doc[Any] = fold(rows)[0]
    updates: list[bytes] = []
    subscription = document.observe(lambda event: updates.append(event.update))
    needle = mark.text.encode()
    value = {"name": mark.text, "lat": mark.latitude, "lon": mark.longitude}
    wanted = 1 if mark.occurrences == "first" else MAX_MARKS
    marked = 0
    with document.transaction():
        for node in _text_nodes(document):
            content, already = _content(node)
            start = content.find(needle)
            while start >= 0 and marked < wanted:
                end = start + len(needle)
                if not any(already[start:end]):
                    node.format(start, end, {MARK: value})
                    marked += 1
                start = content.find(needle, end)
    document.unobserve(subscription)
    return (updates[0] if updates else None), marked


@router.post("/documents/{document_id}/marks", response_model=Marked)
async def mark_place(document_id: DocumentPath, body: PlaceMark, services: Svc, who: Who) -> Marked:
    """Mark a place where its name stands in the document (every occurrence, or the first), as the agents mark
    the places they find; people see it at once wherever the document is open."""
    if not who.identity.opens(document_id):
        raise forbidden(f"this token does not open document {document_id}")
    rows, _ = await stored_rows(services.store.pool, document_id)
    if not rows:
        raise not_found(f"document {document_id} has nothing stored")
    update, marked = await asyncio.to_thread(_mark, rows, body)
    if update is not None:
        await services.store.pool.execute(DOCUMENT_QUERIES["insert_updates"], [document_id], [update], MARKS_SERVER)
        await services.store.pool.execute(DOCUMENT_QUERIES["notify_stored"], MARKS_SERVER)
    return Marked(document_id=document_id, marked=marked)
