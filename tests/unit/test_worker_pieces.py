"""The worker's pure parts: its LRU cache, the back-off policy, the extraction queue, and a text node's mirror."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from pycrdt import Doc, Text

from agentlog.agents import node_text
from agentlog.agents.backoff import Backoff
from agentlog.agents.extraction_queue import ExtractionQueue
from agentlog.agents.lru import LRUCache
from agentlog.agents.node_text import EMBED, NodeText
from agentlog.agents.sentences import sentences


def test_the_cache_forgets_the_least_recently_used_entry() -> None:
    cache: LRUCache[str, int] = LRUCache(3)
    for key, value in [("a", 1), ("b", 2), ("c", 3)]:
        cache.put(key, value)
    assert cache.get("a") == 1  # a is now the most recently used
    cache.put("d", 4)
    assert "b" not in cache and len(cache) == 3
    assert [cache.get(key) for key in "acd"] == [1, 3, 4]
    cache.put("c", 30)  # an update counts as a use too
    cache.put("e", 5)
    assert "a" not in cache and cache.get("c") == 30
    assert (cache.hits, cache.misses) == (5, 0)
    assert cache.get("zzz") is None and cache.misses == 1
    with pytest.raises(ValueError, match="at least one"):
        LRUCache[str, int](0)


def test_the_cache_stays_bounded() -> None:
    cache: LRUCache[int, int] = LRUCache(100)
    for key in range(10_000):
        cache.put(key, key)
    assert len(cache) == 100 and 9_999 in cache and 9_899 not in cache


def test_back_off_doubles_to_its_cap_then_gives_up() -> None:
    backoff = Backoff(first_s=1, factor=2, cap_s=10, attempts=6)
    assert [backoff.delay(failures) for failures in range(1, 8)] == [1, 2, 4, 8, 10, None, None]
    assert backoff.delay(0) == 0
    with pytest.raises(ValueError, match="back-off"):
        Backoff(first_s=0)
    with pytest.raises(ValueError, match="back-off"):
        Backoff(first_s=5, cap_s=1)


@dataclass(eq=False)
class Item:
    text: str
    alive: bool = True
    finished: list[str] = field(default_factory=list)

    def current(self) -> bool:
        return self.alive

    def finish(self) -> None:
        self.finished.append(self.text)


def test_the_queue_marks_known_sentences_and_calls_once_per_text() -> None:
    queue: ExtractionQueue[Item] = ExtractionQueue(Backoff(), concurrency=2)
    known = {"Known.": ("place",)}
    items = [Item("Known."), Item("A."), Item("A."), Item("B."), Item("C.")]
    for item in items:
        queue.add(item)
    due = queue.due(0, known.get)
    assert [(item.text, places) for item, places in due.known] == [("Known.", ("place",))]
    assert due.calls == ["A.", "B."]  # one call for both A., and C. waits for a free call
    assert queue.in_flight == {"A.", "B."}
    assert queue.due(0, known.get).calls == []
    assert queue.succeeded("A.") == [items[1], items[2]]
    assert queue.due(0, known.get).calls == ["C."]
    items[3].alive = False  # edited while its call was out
    assert queue.succeeded("B.") == []


def test_a_failing_text_backs_off_alone_and_is_retried_by_time() -> None:
    queue: ExtractionQueue[Item] = ExtractionQueue(Backoff(first_s=1, factor=2, cap_s=4, attempts=4), concurrency=4)
    bad, good = Item("Bad."), Item("Good.")
    queue.add(bad)
    assert queue.due(0, {}.get).calls == ["Bad."]
    assert queue.failed("Bad.", now=0) == 1
    assert queue.next_retry() == 1
    queue.add(good)
    again = Item("Bad.")  # the same text elsewhere waits out the same back-off
    queue.add(again)
    assert queue.due(0.5, {}.get).calls == ["Good."]
    assert queue.due(0.9, {}.get).calls == []
    assert queue.due(1.0, {}.get).calls == ["Bad."]
    assert queue.failed("Bad.", now=1) == 2
    assert queue.due(3.0, {}.get).calls == ["Bad."]
    assert queue.failed("Bad.", now=3) == 4
    assert queue.due(7.0, {}.get).calls == ["Bad."]
    assert queue.failed("Bad.", now=7) is None  # the fourth failure: given up, and no more retries
    assert bad.finished == ["Bad."] and again.finished == ["Bad."]
    assert queue.next_retry() is None
    queue.add(Item("Bad."))
    assert queue.due(1000, {}.get).calls == []
    assert queue.succeeded("Good.") == [good]


def test_held_work_waits_for_its_time_unless_it_is_gone_by_then() -> None:
    queue: ExtractionQueue[Item] = ExtractionQueue(Backoff())
    line, superseded = Item("- Tok"), Item("- To")
    queue.add(superseded, not_before=1.0)
    queue.add(line, not_before=1.5)
    superseded.alive = False  # typed on
    assert queue.next_retry() == 1.5
    assert queue.due(1.0, {}.get).calls == []
    assert queue.due(1.5, {}.get).calls == ["- Tok"]
    assert queue.next_retry() is None


def test_work_that_is_gone_is_dropped() -> None:
    queue: ExtractionQueue[Item] = ExtractionQueue(Backoff())
    gone = Item("Gone.", alive=False)
    queue.add(gone)
    assert queue.due(0, {}.get).calls == [] and not queue.has_ready()


PIECES = ["Paris", " ", ". ", "St. ", "Louis", "é", "東京。", "\n", "- ", "1. ", "3.5", "...", "x", "ü", "Dr.", "? ",
          '"', "e.g. ", "Wait... what", "No. 5"]  # fmt: skip


def finished_sentences(text: str) -> Counter[str]:
    found = (text[s.start : s.end] for s in sentences(text) if s.finished)
    return Counter(sentence for sentence in found if EMBED not in sentence)


def plain(text: Text) -> str:
    return "".join(chunk if isinstance(chunk, str) else EMBED for chunk, _ in text.diff())


@pytest.mark.parametrize("window", [4, 64, 1024])
def test_the_mirror_follows_random_edits_and_finds_exactly_the_new_sentences(
    window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes, marks and pending sentences stay those of the node, and the sentences a delta reports as new are
    the finished sentences of the whole text after it minus those before (as multisets), though only a window
    around the change was split. Small first windows make the window grow."""
    monkeypatch.setattr(node_text, "_WINDOW_BYTES", window)
    rng = random.Random(window)
    for _ in range(20):
        document: Doc[Text] = Doc()
        text = document.get("text", type=Text)
        text += "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 400)))
        mirror = NodeText(text.diff())
        assert Counter(pending.text for pending in mirror.load()) == finished_sentences(plain(text))
        fresh: list[str] = []
        subscription = text.observe_deep(following(mirror, fresh))
        for _ in range(25):
            before = plain(text)
            fresh.clear()
            edit_randomly(text, before, rng)
            after = plain(text)
            assert mirror.content.decode() == after
            marks = bytearray()
            for chunk, attributes in text.diff():
                size = len(chunk.encode()) if isinstance(chunk, str) else 1
                marks += bytes([1 if attributes and attributes.get("geo") is not None else 0]) * size
            assert mirror.marks == marks
            assert Counter(fresh) == finished_sentences(after) - finished_sentences(before), (before, after)
            for pending in mirror.pending:
                assert mirror.content[pending.start : pending.end].decode() == pending.text
        text.unobserve(subscription)


def following(mirror: NodeText, fresh: list[str]) -> Callable[[list[Any]], None]:
    def follow(events: list[Any]) -> None:
        fresh.extend(pending.text for event in events for pending in mirror.apply(event.delta).fresh)

    return follow


def edit_randomly(text: Text, before: str, rng: random.Random) -> None:
    def at(index: int) -> int:  # pycrdt positions are UTF-8 bytes
        return len(before[:index].encode())

    size = len(before)
    choice = rng.random()
    if choice < 0.5 or size == 0:
        text.insert(at(rng.randint(0, size)), "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 4))))
        return
    low = rng.randint(0, size - 1)
    high = min(size, low + rng.randint(1, 20))
    if choice < 0.8:
        del text[at(low) : at(high)]
    elif choice < 0.9:
        text.format(at(low), at(high), {"geo": {"n": 1} if rng.random() < 0.6 else None})
    else:
        text.insert_embed(at(low), {"image": 1})


def test_the_mirror_reports_marks_someone_removed_but_not_its_own() -> None:
    document: Doc[Text] = Doc()
    text = document.get("text", type=Text)
    text += "Intro. We met in Zürich and Paris. Outro."
    mirror = NodeText(text.diff())
    mirror.load()
    changes = []
    subscription = text.observe_deep(lambda events: changes.extend(mirror.apply(e.delta) for e in events))
    start = len("Intro. We met in Zürich and ".encode())
    text.format(start, start + 5, {"geo": {"name": "Paris"}})
    assert changes[-1].unmarked == [] and mirror.is_marked(start, start + 5)
    text.format(start, start + 5, {"geo": None})
    ((removed,),) = [change.unmarked for change in changes[-1:]]
    assert removed.sentence == "We met in Zürich and Paris."
    assert removed.sentence[removed.start : removed.end] == "Paris"
    mirror.apply([{"retain": start}, {"retain": 5, "attributes": {"geo": None}}], own=True)
    assert not mirror.is_marked(start, start + 5)
    text.unobserve(subscription)


def test_a_delta_that_does_not_fit_is_refused() -> None:
    mirror = NodeText([("short", None)])
    with pytest.raises(node_text.DeltaMismatchError, match="byte 9"):
        mirror.apply([{"retain": 9}, {"insert": "x"}])
