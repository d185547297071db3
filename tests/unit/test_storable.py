"""What the log keeps exactly as given (`eventstore.storable`): strings without NUL or lone surrogates, finite
numbers; anything else is named by its path, so the API and the store can say which field to fix."""

from __future__ import annotations

import math
from typing import Any

import pytest

from agentlog.eventstore.storable import find_unstorable


@pytest.mark.parametrize(
    "value",
    [{}, {"a": "ok", "b": [1, 2.5, None, True, False], "c": {"d": "é😀\uffff"}}, "plain", 10**40, -0.0, [[]]],
)
def test_json_the_log_can_keep_passes(value: Any) -> None:
    assert find_unstorable(value) is None


@pytest.mark.parametrize(
    ("value", "path", "words"),
    [
        ({"a": "x\x00y"}, ("a",), "NUL"),
        ({"a": ["ok", "\ud800"]}, ("a", 1), "surrogate"),
        ({"a": {"b": "\udfff"}}, ("a", "b"), "surrogate"),
        ("\x00", (), "NUL"),
        ({"a": math.nan}, ("a",), "finite"),
        ({"a": [1, math.inf]}, ("a", 1), "finite"),
        ({"a": {"b": -math.inf}}, ("a", "b"), "finite"),
        ({"k\x00": 1}, (), "key"),
        ({"ok": {"\ud800": 1}}, ("ok",), "key"),
    ],
)  # fmt: skip
def test_what_the_log_cannot_keep_is_named_by_its_path(value: Any, path: tuple[Any, ...], words: str) -> None:
    found = find_unstorable(value)
    assert found is not None and found.path == path, found
    assert words in found.problem
    assert str(found).startswith(".".join(str(part) for part in path) or found.problem)


def test_a_key_is_shown_escaped_never_as_the_bad_character() -> None:
    found = find_unstorable({"k\x00": 1})
    assert found is not None and "\x00" not in found.problem and "'k\\x00'" in found.problem
    found = find_unstorable({"\ud800": 1})
    assert found is not None and found.problem.encode()  # a message that can be sent as UTF-8


def test_the_first_problem_in_document_order_is_named() -> None:
    found = find_unstorable({"a": "fine", "b": ["\x00", math.nan], "c": "\x00"})
    assert found is not None and found.path == ("b", 0)


def test_deep_nesting_is_walked_without_recursion() -> None:
    deep: Any = "\x00"
    for _ in range(50_000):
        deep = [deep]
    found = find_unstorable(deep)
    assert found is not None and len(found.path) == 50_000
