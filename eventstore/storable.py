"""What the log can keep exactly as it was given, as one rule for every writer: the API checks request bodies with
it (a 422 naming the field), the store checks every event and its metadata with it before appending.

Events are stored as PostgreSQL `jsonb`, which cannot hold every value a JSON parser hands over:

- U+0000 (NUL) in a string or a key: neither `text` nor `jsonb` can hold it; PostgreSQL refuses the whole append.
- A lone surrogate (U+D800 to U+DFFF on its own, which `json.loads` makes of `"\\ud800"`): not a character, so
  there is no UTF-8 for it and the event cannot even be encoded.
- NaN, Infinity and -Infinity (which `json.loads` takes, and makes of `1e999` too): JSON has no such numbers, and
  the encoder would silently write `null` instead, changing the data.

The first two would be a driver error deep in an append (a 500 for the API, a traceback for the CLI), the third
data silently changed; refused here, the caller is told which field to fix, and nothing is appended. The store
also refuses an event over `MAX_EVENT_DATA_BYTES` (`EventTooLargeError`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

MAX_EVENT_DATA_BYTES = 1 << 20
"""Event bodies stay small: large LLM prompts and responses belong in content-addressed storage."""

Path = tuple[str | int, ...]


def stored_size(data: bytes) -> int:
    """About what PostgreSQL counts against `MAX_EVENT_DATA_BYTES` for compact JSON `data`, from above.

    The database measures an event as `jsonb::text`, which writes a space after every `:` and `,`: counting them
    all (those inside strings too) errs on the large side, so what fits by this measure fits there (numbers with
    an exponent, written out in full by PostgreSQL, excepted). For a rule that must be sure now that an event it
    will only make later fits (a schedule's firings)."""
    return len(data) + data.count(b":") + data.count(b",")


@dataclass(frozen=True, slots=True)
class Unstorable:
    """Where a value the log cannot keep is (keys and list indexes from the top), and what is wrong with it."""

    path: Path
    problem: str

    def __str__(self) -> str:
        where = ".".join(str(part) for part in self.path)
        return f"{where}: {self.problem}" if where else self.problem


def string_problem(text: str) -> str | None:
    """Why the log cannot keep `text`, or None when it can."""
    if "\x00" in text:
        return "holds a NUL character (U+0000), which PostgreSQL cannot store"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "holds a lone surrogate (U+D800 to U+DFFF), which is not a character and has no UTF-8"
    return None


def find_unstorable(value: object) -> Unstorable | None:
    """The first value, in document order, the log could not keep as given; None when there is none.

    Walked with a stack, not recursion: a body nested thousands deep is still checked, not a RecursionError. A key
    is checked before its value; a bad key is reported at its object's path, shown escaped (it cannot be sent as it
    is: a lone surrogate has no UTF-8 for the answer either)."""
    stack: list[tuple[Path, object, bool]] = [((), value, False)]
    """(path, value, whether the path's last part is a key still to check)"""
    while stack:
        path, item, keyed = stack.pop()
        if keyed and isinstance(path[-1], str):
            problem = string_problem(path[-1])
            if problem is not None:
                return Unstorable(path[:-1], f"the key {path[-1]!a} {problem}")
        if isinstance(item, str):
            problem = string_problem(item)
            if problem is not None:
                return Unstorable(path, problem)
        elif isinstance(item, float) and not math.isfinite(item):
            return Unstorable(path, f"{item} is not a finite number: JSON has no NaN or Infinity (give a number)")
        elif isinstance(item, Mapping):
            stack.extend(((*path, key), child, True) for key, child in reversed(list(item.items())))
        elif isinstance(item, list | tuple):
            stack.extend(((*path, index), child, False) for index, child in reversed(list(enumerate(item))))
    return None
