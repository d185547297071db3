"""What an update waits for, read from its bytes before it is applied (agentlog.documents.dependencies), checked
against pycrdt applying it: it may say "waits" of an update the document would take whole, never the reverse."""

from __future__ import annotations

import random
from typing import Any

from pycrdt import Array, Doc, Map, Text, get_update

from agentlog.documents.dependencies import decode_state, missing


def edits(seed: int) -> list[bytes]:
    """Three people editing text, a map and an array (nested types, deletions, wide characters), now and then
    syncing with each other: every update any of them made."""
    chooser = random.Random(seed)
    people: list[Doc[Any]] = [Doc() for _ in range(3)]
    updates: list[bytes] = []
    for person in people:
        person.observe(lambda event: updates.append(event.update))
    for _ in range(40):
        person = chooser.choice(people)
        text, entries, items = (person.get("t", type=Text), person.get("m", type=Map), person.get("a", type=Array))
        roll = chooser.random()
        if roll < 0.4:
            text.insert(chooser.randint(0, len(text)), chooser.choice(["x", "héllo", "ab"]))
        elif roll < 0.55 and len(text) and str(text).isascii():  # pycrdt counts wide characters differently
            index = chooser.randint(0, len(text) - 1)
            del text[index : index + 1]
        elif roll < 0.7:
            entries[chooser.choice("kl")] = chooser.choice([1, 2.5, "s", None, True, {"a": [1, 2]}, b"bin"])
        elif roll < 0.8:
            items.append(chooser.choice([1, "z", Map({"q": 1}), Text("in")]))
        elif roll < 0.9 and len(items):
            del items[0]
        else:
            other = chooser.choice(people)
            if other is not person:
                other.apply_update(person.get_update(other.get_state()))
    return updates


def test_an_update_read_as_complete_is_taken_whole() -> None:
    told = 0
    for seed in range(60):
        updates = edits(seed)
        random.Random(seed).shuffle(updates)
        document: Doc[Any] = Doc()
        for update in updates:
            need = missing(update, decode_state(document.get_state()))
            document.apply_update(update)
            structs_left = get_update(update, document.get_state())[0]
            if need is None:
                told += 1
                assert structs_left == 0, f"read as complete, but it waits (seed {seed})"
    assert told > 500
