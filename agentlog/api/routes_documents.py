"""/documents/{id}/text: a collaborative document's text as stored (every update a person's edit produced that
the document servers stored), for readers and the `read_document` tool. Read from the database, not from a room:
it answers on any process, whether or not the document is open, and changes nothing (no compaction)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pycrdt import Doc, Text, XmlElement, XmlFragment, XmlText
from pydantic import BaseModel

from agentlog.api.errors import forbidden
from agentlog.api.services import Reader, Svc
from agentlog.documents.updates import QUERIES as DOCUMENT_QUERIES
from agentlog.documents.updates import fold

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
    found = await services.store.pool.fetchrow(DOCUMENT_QUERIES["select_document"], document_id)
    rows = [] if found is None else [(i, bytes(b)) for i, b in zip(found["ids"], found["bodies"], strict=True)]
    layout, text = await asyncio.to_thread(_text_of, rows) if rows else ("empty", "")
    return DocumentText(document_id=document_id, layout=layout, text=text[:MAX_TEXT_CHARS],
                        truncated=len(text) > MAX_TEXT_CHARS, updates=len(rows))  # fmt: skip
