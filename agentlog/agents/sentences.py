"""Where sentences begin and end in a text: a pure function, so that the worker asks for places once per sentence.

Boundaries: a run of end punctuation (`.`, `!`, `?`, `…` and the like) followed by optional closing quotes or
brackets and then white space or the end of the text; the CJK full stop and full-width marks (U+3002, U+FF01,
U+FF1F), with nothing needed after them; and every line break (a line, a list item among them, is never continued
by the next line). A period is not a boundary after a known abbreviation ("St. Louis", "Dr. Watson", "e.g.
Paris"), after an initial ("J. R. R."), after a list marker at the start of a line ("1. Paris"), or before a
number it counts ("No. 5"); no run is a boundary when the next word starts with a lower-case letter ("Wait...
what", '"Why?" she asked', "approx. five"). Decimals ("3.5") and dotted words ("Paris.Then") are not followed by
white space, so they do not split either. Dotted initialisms end a sentence before a capital ("the U.S. Then"):
"U.S. Army" is split, the price of not guessing.

Every decision looks at most `CONTEXT` characters to either side of the place it decides. A caller can therefore
split only a window of a long text around an edit and trust every boundary that lies `CONTEXT` characters inside
the window (see `agentlog.agents.node_text`): that is what keeps the worker's work per keystroke proportional to
the sentence being typed rather than to the document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CONTEXT = 64
"""How far (characters) any boundary decision looks either way; windows must reach this far past what they trust."""

ENDS = ".!?\u2026\u203c\u2047\u2048\u2049\u061f\u06d4\u0589\u1362"
"""End punctuation that needs white space (or the end of the text) after it: . ! ? and the ellipsis, double marks,
Arabic and Urdu, Armenian and Ethiopic ones."""
CJK_ENDS = "\u3002\uff01\uff1f\uff61"
"""The CJK full stop, full-width ! and ?, the half-width full stop: a sentence ends right there (CJK text puts no
space between sentences)."""
CLOSERS = "\"')]}\u201d\u2019\u00bb\u203a\u300d\u300f\uff09\u3011\u3009\u300b"
"""Closing quotes and brackets that belong to the sentence they close."""
LINE_BREAKS = "\n\r\v\f\x85\u2028\u2029"

ABBREVIATIONS = frozenset(
    {
        # titles and honorifics
        "mr", "mrs", "ms", "mx", "dr", "prof", "rev", "fr", "sr", "hon", "gov", "sen", "rep", "pres",
        "gen", "col", "capt", "cpt", "lt", "sgt", "cmdr", "adm", "mme", "mlle", "messrs",
        # places: saints, mountains, forts ("St. Louis", "Mt. Fuji", "Ft. Worth")
        "st", "ste", "mt", "ft", "pt",
        # Latin and reference abbreviations
        "e.g", "i.e", "cf", "vs", "viz", "approx", "ca", "resp", "incl", "excl", "dept", "univ", "est",
        "z.b", "d.h", "u.a", "bzw", "vgl", "ggf", "p.ex",
    }
)  # fmt: skip
"""Words that a period after them does not end a sentence: they are followed by the name or phrase they begin."""
NUMBER_ABBREVIATIONS = frozenset({"no", "nos", "nr", "vol", "vols", "p", "pp", "fig", "figs", "ch", "sec", "art"})
"""Abbreviations that do not end a sentence when a number follows ("No. 5", "pp. 12"), and may when not ("no.")."""

_CANDIDATE = re.compile(f"[{re.escape(ENDS + CJK_ENDS)}]+[{re.escape(CLOSERS)}]*|[{re.escape(LINE_BREAKS)}]+")
BULLETS = "-*+\u2022\u2023\u25e6\u2043\u2219\u2013\u2014"
_LIST_MARKER = re.compile(
    f"[ \t]*(?:[{re.escape(BULLETS)}]"
    + r"|\d{1,3}[.)]|[a-z][.)]|[A-Z]\)|\(\w{1,3}\)|[ivx]{1,5}[.)]|[IVX]{1,5}[.)])[ \t]+"
)
"""A bullet, "1." or "1)", "a." or "A)", "(a)", "iv." at the start of a line, then white space: not part of the
item. "A." is left alone: at the start of a line it is more often an initial ("J. R. R. Tolkien")."""
_MARKER_TOKEN = re.compile(r"\d{1,3}|[A-Za-z]|[ivx]{1,5}|[IVX]{1,5}")


@dataclass(frozen=True, slots=True)
class Sentence:
    """`text[start:end]` of the text that was split: trimmed, list marker left out. `finished` when a boundary
    ends it (end punctuation or a line break), not just the end of the text someone is still typing."""

    start: int
    end: int
    finished: bool
    by_line: bool = False
    """Finished by a line break alone, without end punctuation (a list item, a heading): maybe still being typed,
    if the line break was already there."""


def boundaries(text: str, start: int = 0, end: int | None = None) -> list[int]:
    """The boundaries in (start, end]: positions where a sentence has ended (after its punctuation and closers, or
    after a run of line breaks). Text outside [start, end] is read as context only."""
    return [cut for cut, _ in _cuts(text, start, len(text) if end is None else end)]


def sentences(text: str, start: int = 0, end: int | None = None) -> list[Sentence]:
    """The sentences of text[start:end], where `start` and `end` are boundaries (or the ends of the text) and the
    text around them is context. Pieces without a letter or digit (a lone "...", a bullet) are left out."""
    stop = len(text) if end is None else end
    cuts = _cuts(text, start, stop)
    if not cuts or cuts[-1][0] != stop:
        cuts.append((stop, None))  # the end of the text, in the middle of a sentence still being typed
    found: list[Sentence] = []
    at = start
    for cut, by_line in cuts:
        sentence = _trimmed(text, at, cut, by_line)
        if sentence is not None:
            found.append(sentence)
        at = cut
    return found


def _cuts(text: str, start: int, stop: int) -> list[tuple[int, bool | None]]:
    """Boundaries in (start, stop], each with whether a line break alone made it (no end punctuation)."""
    found: list[tuple[int, bool | None]] = []
    for match in _CANDIDATE.finditer(text, start, stop):
        if match.group()[0] in LINE_BREAKS:
            found.append((match.end(), True))
        elif _ends_sentence(text, match.start(), match.end()):
            found.append((match.end(), False))
    return found


def _ends_sentence(text: str, run_start: int, run_end: int) -> bool:
    run = text[run_start:run_end].rstrip(CLOSERS)
    if any(mark in CJK_ENDS for mark in run):
        return True
    if run_end < len(text) and not text[run_end].isspace():
        return False  # "3.5", "e.g.x", "Paris.Then"
    following = _next_character(text, run_end)
    if following is not None and following.islower():
        return False  # "Wait... what", '"Why?" she asked', "approx. five"
    if run != "." or run_end - run_start != 1:
        return True
    token = _token_before(text, run_start)
    if token is None:
        return True
    word = token.lower()
    if word in ABBREVIATIONS:
        return False
    if word in NUMBER_ABBREVIATIONS and following is not None and following.isdigit():
        return False
    if len(token) == 1 and token.isupper() and token != "I":
        return False  # an initial: "J. R. R. Tolkien"; "I." ends more sentences than it abbreviates
    return not _is_list_marker(text, run_start, token)


def _next_character(text: str, at: int) -> str | None:
    """The first character after the white space at `at`, or None at a line break, the end, or past CONTEXT."""
    for index in range(at, min(len(text), at + CONTEXT)):
        character = text[index]
        if character in LINE_BREAKS:
            return None
        if not character.isspace():
            return character
    return None


def _token_before(text: str, at: int) -> str | None:
    """The word right before `at` (letters with inner periods, like "e.g", or digits), when it starts within
    CONTEXT; None for anything else ("1st", "x2", a word longer than that)."""
    low = max(0, at - CONTEXT)
    start = at
    while start > low and (text[start - 1].isalnum() or text[start - 1] == "."):
        start -= 1
    if start == low and low > 0:
        return None  # longer than any abbreviation, and where it starts is out of context
    token = text[start:at].lstrip(".")
    if token.isdigit() or (token and all(part.isalpha() for part in token.split("."))):
        return token
    return None


def _is_list_marker(text: str, period: int, token: str) -> bool:
    """'1.' or 'a.' or 'iv.' alone at the start of a line, before the item's text."""
    if _MARKER_TOKEN.fullmatch(token) is None:
        return False
    line_start = period - len(token)
    while line_start > 0 and text[line_start - 1] in " \t" and period - line_start < 16:
        line_start -= 1
    return line_start == 0 or text[line_start - 1] in LINE_BREAKS


def _trimmed(text: str, start: int, end: int, by_line: bool | None) -> Sentence | None:
    """The sentence in [start, end); `by_line` None when no boundary ends it."""
    if start == 0 or text[start - 1] in LINE_BREAKS:
        marker = _LIST_MARKER.match(text, start, end)
        if marker is not None:
            start = marker.end()
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if not any(character.isalnum() for character in text[start:end]):
        return None
    return Sentence(start, end, finished=by_line is not None, by_line=bool(by_line))
