"""A decider's state in the database, saved by key: what a batch changed costs what it changed.

The state is a pydantic model (`KeyedState`) whose large collections — one entry per document, per agent — are
named in `keyed`. It is saved as a head row in `agentlog.decider_states` (everything but those collections, with a
sequence number for compare-and-set and the number of rows that go with it) and one row per entry in
`agentlog.decider_rows`, keyed `kind/id`. The decider marks each entry it changes (`changed`); a save writes the
head and the marked entries only (an entry gone from its collection is deleted), so the cost of a batch does not
grow with the number of entries the state holds. Loading reads every row once per session.

Derived data, like the state it stores: a head of another state version, or rows that do not add up to the count
its head recorded (a row lost or added by hand), are not trusted — the caller refolds the log and writes every row
anew (`everything`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

from pydantic import BaseModel, PrivateAttr

from agentlog.eventstore.postgres.connections import Connection
from agentlog.eventstore.postgres.queries import load_queries

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))

KEY_SEPARATOR = "/"
SAVE_CHUNK_ROWS = 10_000
"""Rows per statement when every row is written (after a refold): bounded parameters, whatever the state's size."""


class KeyedState(BaseModel):
    """A decider's state saved row by row: a head, and one row per entry of each collection named in `keyed`.

    Evolve must call `changed(kind, id)` for every entry it adds, modifies or removes: an entry changed without
    being marked is saved late or never, and a restarted handler would decide from an older version of it.
    """

    keyed: ClassVar[dict[str, tuple[str, ...]]] = {}
    """row kind → the path of attributes to a `dict[str, BaseModel]` whose entries are saved one row each."""
    _unsaved: set[tuple[str, str]] = PrivateAttr(default_factory=set)

    @property
    def unsaved(self) -> set[tuple[str, str]]:
        """(kind, id) of every entry changed since the last save. (Read through the private dictionary: pydantic's
        own lookup of a private attribute costs ~6 µs, on a path taken several times per event.)"""
        return cast(set[tuple[str, str]], self.__pydantic_private__["_unsaved"])  # type: ignore[index]

    def changed(self, kind: str, key: str) -> None:
        self.unsaved.add((kind, key))

    def collection(self, kind: str) -> dict[str, BaseModel]:
        owner: Any = self
        for name in self.keyed[kind]:
            owner = getattr(owner, name)
        collection: dict[str, BaseModel] = owner
        return collection

    def row_count(self) -> int:
        return sum(len(self.collection(kind)) for kind in self.keyed)


K = TypeVar("K", bound=KeyedState)


@dataclass(frozen=True, slots=True)
class StateRows:
    """What one save writes: the head, the rows to insert or replace, the keys of rows to delete."""

    head: bytes
    upserts: dict[str, bytes]
    deletes: list[str]
    row_count: int


def take_rows(state: KeyedState, *, everything: bool) -> StateRows:
    """The rows to save: every one, or those changed since the last take (which are then no longer unsaved)."""
    upserts: dict[str, bytes] = {}
    deletes: list[str] = []
    if everything:
        for kind in state.keyed:
            for key, entry in state.collection(kind).items():
                upserts[kind + KEY_SEPARATOR + key] = entry.model_dump_json().encode()
    else:
        for kind, key in sorted(state.unsaved):
            current = state.collection(kind).get(key)
            if current is None:
                deletes.append(kind + KEY_SEPARATOR + key)
            else:
                upserts[kind + KEY_SEPARATOR + key] = current.model_dump_json().encode()
    state.unsaved.clear()
    head = state.model_dump_json(exclude=_collections_excluded(type(state))).encode()
    return StateRows(head, upserts, deletes, state.row_count())


def state_from_rows(model: type[K], head: dict[str, Any], rows: Iterator[tuple[str, Any]]) -> K:
    """The state a head and its rows make up (validated once, so derived indexes are built once)."""
    for key, value in rows:
        kind, _, entry_id = key.partition(KEY_SEPARATOR)
        owner = head
        *parents, name = model.keyed[kind]
        for parent in parents:
            owner = owner.setdefault(parent, {})
        owner.setdefault(name, {})[entry_id] = value
    return model.model_validate(head)


def _collections_excluded(model: type[KeyedState]) -> dict[str, Any]:
    excluded: dict[str, Any] = {}
    for path in model.keyed.values():
        owner = excluded
        *parents, name = path
        for parent in parents:
            owner = owner.setdefault(parent, {})
        owner[name] = True
    return excluded





async def load_state(connection: Connection, name: str, model: type[K], state_version: int) -> tuple[K | None, int]:
    """The saved state and its sequence number; no state when none was saved, or none that can be trusted."""
    head = await connection.fetchrow(QUERIES["load_head"], name)
    if head is None:
        return None, 0
    if head["state_version"] != state_version:
        return None, head["sequence"]
    rows = await connection.fetch(QUERIES["load_rows"], name)
    if len(rows) != head["row_count"]:
        return None, head["sequence"]
    state = state_from_rows(model, head["state"], ((row["key"], row["state"]) for row in rows))
    return state, head["sequence"]


async def save_state(
    connection: Connection, name: str, state_version: int, state: KeyedState, sequence: int, *, everything: bool
) -> bool:
    """Save what changed (every row with `everything`) in the caller's transaction; False when the sequence
    moved (another instance saved meanwhile), and then nothing was written."""
    rows = take_rows(state, everything=everything)
    keys, values = list(rows.upserts), list(rows.upserts.values())
    first = SAVE_CHUNK_ROWS if everything else len(keys)
    if everything:
        await connection.execute(QUERIES["delete_all_rows"], name)
    saved = await connection.fetchval(
        QUERIES["save"],
        name, sequence, state_version, rows.head, rows.row_count, keys[:first], values[:first], rows.deletes,
    )  # fmt: skip
    if saved is None:
        return False
    for start in range(first, len(keys), SAVE_CHUNK_ROWS):
        await connection.execute(
            QUERIES["write_rows"], name, keys[start : start + SAVE_CHUNK_ROWS], values[start : start + SAVE_CHUNK_ROWS]
        )
    return True
