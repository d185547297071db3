"""Whether two claim patterns can name a common path: the overlap rule of claims, and of claims against locks.

Patterns are path globs: `*` any run of characters within one segment, `?` one character, `**` as a whole segment
any number of segments (none included: `src/**` covers `src` too); everything else is literal. Two patterns
overlap when some path matches both; a lock's resource is a literal path (`literal=True`: its stars are
characters). Both checks are a walk over the pair of patterns with memory of the positions seen, so they cost the
product of the patterns' lengths at worst, never more.
"""

from __future__ import annotations

from functools import lru_cache

GLOBSTAR = "**"
Segment = tuple[str, ...]
"""A segment as tokens: a character, "?" or "*" (a literal "*" or "?" is written "\\*" / "\\?" in tokens)."""


def _segment_tokens(segment: str, literal: bool) -> Segment:
    if literal:
        return tuple("\\" + char if char in "*?" else char for char in segment)
    return tuple(segment)


def _segments(pattern: str, literal: bool) -> tuple[Segment | None, ...]:
    """The pattern's segments; None stands for a `**` segment."""
    return tuple(
        None if (part == GLOBSTAR and not literal) else _segment_tokens(part, literal) for part in pattern.split("/")
    )


def overlaps(first: str, second: str, *, first_literal: bool = False, second_literal: bool = False) -> bool:
    """True when a path exists that both patterns match."""
    return _paths_overlap(_segments(first, first_literal), _segments(second, second_literal))


@lru_cache(maxsize=4096)
def _paths_overlap(left: tuple[Segment | None, ...], right: tuple[Segment | None, ...]) -> bool:
    seen: dict[tuple[int, int], bool] = {}

    def walk(i: int, j: int) -> bool:
        key = (i, j)
        if key in seen:
            return seen[key]
        seen[key] = False  # a cycle (globstar against globstar) adds nothing
        if i == len(left) and j == len(right):
            result = True
        elif i < len(left) and left[i] is None:
            result = walk(i + 1, j) or (j < len(right) and walk(i, j + 1))
        elif j < len(right) and right[j] is None:
            result = walk(i, j + 1) or (i < len(left) and walk(i + 1, j))
        elif i < len(left) and j < len(right):
            a, b = left[i], right[j]
            assert a is not None and b is not None
            result = _segments_overlap(a, b) and walk(i + 1, j + 1)
        else:
            result = False
        seen[key] = result
        return result

    return walk(0, 0)


def _segments_overlap(left: Segment, right: Segment) -> bool:
    seen: dict[tuple[int, int], bool] = {}

    def walk(i: int, j: int) -> bool:
        key = (i, j)
        if key in seen:
            return seen[key]
        seen[key] = False
        if i == len(left) and j == len(right):
            result = True
        elif i < len(left) and left[i] == "*":
            result = walk(i + 1, j) or (j < len(right) and walk(i, j + 1))
        elif j < len(right) and right[j] == "*":
            result = walk(i, j + 1) or (i < len(left) and walk(i + 1, j))
        elif i < len(left) and j < len(right):
            result = _chars_meet(left[i], right[j]) and walk(i + 1, j + 1)
        else:
            result = False
        seen[key] = result
        return result

    return walk(0, 0)


def _chars_meet(a: str, b: str) -> bool:
    if a == "?" or b == "?":
        return True
    return a.removeprefix("\\") == b.removeprefix("\\")
