"""The database side of `handlers.decider_state`, in memory: a head and rows saved and loaded as the handler does.

Saving after every event and loading back is how the property tests catch an entry the decider changed without
marking it (`KeyedState.changed`): the loaded state would differ from the live one. Comparing the loaded state's
indexes (built from scratch) with the live ones (kept up to date event by event) catches an index that drifted.
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel

from agentlog.handlers.decider_state import KeyedState, state_from_rows, take_rows

K = TypeVar("K", bound=KeyedState)


class SavedRows:
    def __init__(self) -> None:
        self.head: dict[str, Any] | None = None
        self.rows: dict[str, Any] = {}
        self.written = 0
        """Rows written (inserted, replaced or deleted) by every save so far."""

    def save(self, state: KeyedState, *, everything: bool = False) -> None:
        saved = take_rows(state, everything=everything)
        if everything:
            self.rows.clear()
        self.head = orjson.loads(saved.head)
        for key, value in saved.upserts.items():
            self.rows[key] = orjson.loads(value)
        for key in saved.deletes:
            self.rows.pop(key, None)
        self.written += len(saved.upserts) + len(saved.deletes)
        assert saved.row_count == len(self.rows), "the head's row count does not match the rows saved"

    def load(self, model: type[K]) -> K:
        assert self.head is not None
        return state_from_rows(model, copy.deepcopy(self.head), iter(copy.deepcopy(sorted(self.rows.items()))))


def private_indexes(state: KeyedState) -> dict[str, Any]:
    """Every derived index of a state (and of the models it holds), in a comparable form."""
    found: dict[str, Any] = {}
    for name, value in (state.__pydantic_private__ or {}).items():
        if name != "_unsaved":
            found[name] = value.comparable() if hasattr(value, "comparable") else value
    for name, value in state:
        if isinstance(value, BaseModel):
            for inner, index in (value.__pydantic_private__ or {}).items():
                found[f"{name}.{inner}"] = index
    return found
