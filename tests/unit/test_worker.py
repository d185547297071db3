"""The worker on real documents, without a server: people edit their own replicas, updates go both ways as the
document server would pass them, and the worker's annotation runs with fake extractors that count and fail."""

# ruff: noqa: RUF001  (full-width punctuation is part of what is tested)

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from pycrdt import Doc, Text, XmlElement, XmlFragment, XmlText, write_var_uint

from agentlog.agents import worker as worker_module
from agentlog.agents.backoff import Backoff
from agentlog.agents.worker import Worker, parse_arguments
from agentlog.llm import Extraction, LLMProviderError, Place

CITIES = {"Paris": (48.85, 2.35), "Rome": (41.89, 12.48), "Lyon": (45.76, 4.84), "Oslo": (59.91, 10.75),
          "Tokyo": (35.69, 139.69), "St. Louis": (38.63, -90.2), "東京": (35.69, 139.69), "大阪": (34.69, 135.5),
          "Zürich": (47.37, 8.55), "Wien": (48.21, 16.37), "Atlantis": (0.0, 0.0)}  # fmt: skip
FINDER = re.compile("|".join(sorted(map(re.escape, CITIES), key=len, reverse=True)))


class FakeExtractor:
    """Finds the cities above; records every call; fails on every text containing `failing`."""

    provider = "fake"
    model = "fake-1"

    def __init__(self, failing: str | None = None) -> None:
        self.calls: list[str] = []
        self.failing = failing

    async def extract(self, text: str) -> Extraction:
        self.calls.append(text)
        await asyncio.sleep(0)
        if self.failing is not None and self.failing in text:
            raise LLMProviderError("the model answered garbage", provider=self.provider, model=self.model)
        places = tuple(
            Place(match.group(), *CITIES[match.group()], match.start(), match.end(), None)
            for match in FINDER.finditer(text)
        )
        return Extraction(places, self.provider, self.model, 10, 5, 0.1)

    async def aclose(self) -> None:
        pass


class QuietWorker(Worker):
    """The worker with its standard output kept in a list."""

    def __init__(self, layout: str, extractor: FakeExtractor) -> None:
        arguments = ["--document", "d", "--agent", "a", "--url", "ws://127.0.0.1:9/doc", "--layout", layout]
        super().__init__(parse_arguments(arguments), extractor)
        self.emitted: list[dict[str, Any]] = []

    def emit(self, message: dict[str, Any]) -> None:
        self.emitted.append(message)


class Person:
    """Someone editing their own replica of the document; `sync` swaps updates with the worker's replica."""

    def __init__(self, worker: Worker, layout: str) -> None:
        self.worker = worker
        self.layout = layout
        self.document: Doc[Any] = Doc()
        self.fragment = self.document.get("default", type=XmlFragment)
        self.text = self.document.get("text", type=Text)

    def sync(self) -> None:
        self.worker.document.apply_update(self.document.get_update(self.worker.document.get_state()))
        self.document.apply_update(self.worker.document.get_update(self.document.get_state()))

    def paragraph(self, content: str) -> Text | XmlText:
        """A new paragraph (tiptap), or `content` and a line break at the end of the text."""
        if self.layout == "text":
            self.text.insert(len(str(self.text).encode()), content + "\n")
            return self.text
        with self.document.transaction():
            paragraph = self.fragment.children.append(XmlElement("paragraph"))
            return paragraph.children.append(XmlText(content))

    def nodes(self) -> list[Text | XmlText]:
        if self.layout == "text":
            return [self.text]
        return [child for paragraph in self.fragment.children for child in paragraph.children]  # type: ignore[union-attr]

    @staticmethod
    def plain(node: Text | XmlText) -> str:
        return "".join(chunk if isinstance(chunk, str) else "\x00" for chunk, _ in node.diff())

    def type(self, node: Text | XmlText, after: str, content: str) -> None:
        """Type `content` right after the first `after` in the node."""
        plain = self.plain(node)
        node.insert(len(plain[: plain.index(after) + len(after)].encode()), content)

    def unmark(self, node: Text | XmlText, name: str) -> None:
        plain = self.plain(node)
        start = len(plain[: plain.index(name)].encode())
        node.format(start, start + len(name.encode()), {"geo": None})

    def marks(self) -> list[str]:
        return [str(chunk) for node in self.nodes() for chunk, attrs in node.diff() if attrs and attrs.get("geo")]


@pytest.fixture(params=["tiptap", "text"])
def layout(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def started(layout: str, extractor: FakeExtractor) -> tuple[QuietWorker, Person]:
    worker = QuietWorker(layout, extractor)
    worker.follow()
    return worker, Person(worker, layout)


async def edit(person: Person, change: Callable[[], object]) -> None:
    """One edit by the person, then the worker's annotation and the marks back to the person."""
    change()
    person.sync()
    await person.worker._annotate_once()
    person.sync()


async def test_sentences_are_split_where_people_end_them(layout: str) -> None:
    extractor = FakeExtractor()
    _, person = await started(layout, extractor)
    await edit(person, lambda: person.paragraph("We flew to St. Louis. Dr. Watson met us, e.g. in Paris. It cost 3.5."))
    await edit(person, lambda: person.paragraph("東京に行った。大阪も行った！"))
    await edit(person, lambda: person.paragraph("Wait... what? Rome, she said."))
    assert extractor.calls == [
        "We flew to St. Louis.", "Dr. Watson met us, e.g. in Paris.", "It cost 3.5.",
        "東京に行った。", "大阪も行った！", "Wait... what?", "Rome, she said.",
    ]  # fmt: skip
    assert sorted(person.marks()) == sorted(["St. Louis", "Paris", "東京", "大阪", "Rome"])


async def test_lines_and_list_items_are_sentences_in_plain_text() -> None:
    extractor = FakeExtractor()
    worker = QuietWorker("text", extractor)
    person = Person(worker, "text")
    person.text.insert(0, "Places:\n- Paris\n- Rome and Oslo\n1. Lyon\n2. Tok")
    person.sync()
    worker.follow()  # written before the worker came: extracted at once
    await worker._annotate_once()
    person.sync()
    assert extractor.calls == ["Places:", "Paris", "Rome and Oslo", "Lyon"]  # "Tok" is still being typed
    assert sorted(person.marks()) == ["Lyon", "Oslo", "Paris", "Rome"]


async def test_a_line_typed_before_a_line_break_is_extracted_once_it_is_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """A line break already there makes every prefix of the line a finished line: one call when typing stops,
    not one per keystroke."""
    monkeypatch.setattr(worker_module, "LINE_QUIET_S", 0.3)
    extractor = FakeExtractor()
    worker, person = await started("text", extractor)
    await edit(person, lambda: person.text.insert(0, "Trip:\n- \n"))
    annotator = asyncio.create_task(worker._annotate())
    try:
        for typed in range(5):
            person.type(person.text, "- " + "Tokyo"[:typed], "Tokyo"[typed])
            person.sync()
            await asyncio.sleep(0.05)
        await wait_for(lambda: "Tokyo" in (person.sync(), person.marks())[1], timeout=2)
        assert extractor.calls == ["Trip:", "Tokyo"]
    finally:
        annotator.cancel()


async def test_places_are_marked_at_the_right_bytes_after_accents_and_embeds(layout: str) -> None:
    worker, person = await started(layout, FakeExtractor())
    node = person.paragraph("Ça va très bien à Zürich. Then Wien.")
    person.sync()
    await worker._annotate_once()
    person.sync()
    assert person.marks() == ["Zürich", "Wien"]
    node.insert_embed(0, {"image": "map.png"})  # one position; the sentence holding it is left alone
    await edit(person, lambda: person.type(node, "Wien.", " Hier Paris."))
    assert person.marks() == ["Zürich", "Wien", "Paris"]


async def test_a_failing_sentence_backs_off_without_blocking_the_others(
    layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: every keystroke retried the failing sentence first and gave up on the pass, so five keystrokes made
    five failed calls and the next sentence was never marked."""
    monkeypatch.setattr(worker_module, "BACKOFF", Backoff(first_s=1.0, factor=2, cap_s=1.5, attempts=4))
    extractor = FakeExtractor(failing="Atlantis")
    worker, person = await started(layout, extractor)
    annotator = asyncio.create_task(worker._annotate())
    failing = "We sailed to Atlantis."
    try:
        node = person.paragraph(failing)
        person.sync()
        await wait_for(lambda: extractor.calls == [failing])
        failed_at = time.monotonic()
        for character in " Then Rome.":  # keystrokes, each its own update
            person.type(node, person.plain(node).rstrip("\n"), character)
            person.sync()
            await asyncio.sleep(0.02)
        await wait_for(lambda: "Rome" in (person.sync(), person.marks())[1])
        if time.monotonic() - failed_at < 0.9:  # the machine was not too busy to tell
            assert extractor.calls.count(failing) == 1  # still backing off: the keystrokes did not retry it
        assert extractor.calls.count("Then Rome.") == 1
        # Retried by the timer, without a keystroke: after 1 s, then 1.5 s (the cap), then 1.5 s; then given up.
        await wait_for(lambda: extractor.calls.count(failing) == 4, timeout=8)
        assert time.monotonic() - failed_at > 3.9
        await asyncio.sleep(2)
        assert extractor.calls.count(failing) == 4  # a sentence that keeps failing does not spin
        assert extractor.calls.count("Then Rome.") == 1
    finally:
        annotator.cancel()


async def test_an_edited_failing_sentence_is_a_new_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "BACKOFF", Backoff(first_s=30, cap_s=60))
    extractor = FakeExtractor(failing="Atlantis")
    _, person = await started("tiptap", extractor)
    node = person.paragraph("We sailed to Atlantis.")
    await edit(person, lambda: None)
    await edit(person, lambda: person.unmark(node, "Atlantis"))  # no text changed: nothing is called
    assert extractor.calls == ["We sailed to Atlantis."]
    await edit(person, lambda: person.type(node, "Atlantis", " and Rome"))
    assert extractor.calls[-1] == "We sailed to Atlantis and Rome."  # still failing, but tried at once
    extractor.failing = None
    await edit(person, lambda: person.type(node, "Rome", " and Oslo"))
    assert person.marks() == ["Atlantis", "Rome", "Oslo"]


def big_document(person: Person, sentences: int) -> Iterator[Text | XmlText]:
    """`sentences` sentences, four to a paragraph (or a line), each with two places."""
    for paragraph in range(sentences // 4):
        yield person.paragraph(" ".join(f"Day {paragraph * 4 + n} we drove from Paris to Lyon." for n in range(4)))


class Typist:
    """Someone typing into the middle of a sentence in the middle of a document whose places are all marked."""

    def __init__(self, worker: QuietWorker, person: Person, node: Text | XmlText, after: str) -> None:
        self.worker, self.person, self.node, self.after = worker, person, node, after

    @classmethod
    async def on(cls, layout: str, sentences: int) -> Typist:
        worker, person = await started(layout, FakeExtractor())
        with person.document.transaction():
            nodes = list(big_document(person, sentences))
        person.sync()
        await worker._annotate_once()
        person.sync()
        assert len(person.marks()) == 2 * sentences
        return cls(worker, person, nodes[len(nodes) // 2], f"Day {sentences // 2 + 1} we drove")

    async def keystroke(self) -> float:
        """Seconds of the worker's work for one keystroke: its observer, then its annotation."""
        calls = list(self.worker.extractor.calls)  # type: ignore[attr-defined]
        self.person.type(self.node, self.after, "x")
        self.after += "x"
        update = self.person.document.get_update(self.worker.document.get_state())
        started_at = time.perf_counter()
        self.worker.document.apply_update(update)  # the worker's observer runs in here
        await self.worker._annotate_once()
        seconds = time.perf_counter() - started_at
        self.person.sync()
        assert self.worker.extractor.calls == [*calls, f"{self.after} from Paris to Lyon."]  # type: ignore[attr-defined]
        return seconds


async def test_a_keystroke_costs_its_sentence_not_the_document(layout: str) -> None:
    """Before: every keystroke re-split and re-checked every sentence of the document (1,500 sentences: 30 s per
    keystroke, then missed pongs, a kill, a restart, AgentFailed)."""
    small, large = await Typist.on(layout, 12), await Typist.on(layout, 1_000)
    small_s = [await small.keystroke() for _ in range(7)]
    large_s = [await large.keystroke() for _ in range(7)]
    assert statistics.median(large_s) < 0.1, large_s
    # pycrdt's own share grows with a long text's formatting runs (about 2 ms at 1,000 marked sentences in one
    # Y.Text): the margin is for that; the previous worker took 0.1 s (tiptap) and 30 s (text) here.
    assert statistics.median(large_s) < 5 * statistics.median(small_s) + 0.02, (small_s, large_s)


async def test_a_keystroke_asks_the_cache_about_its_sentence_only(layout: str) -> None:
    typist = await Typist.on(layout, 1_000)
    looked_up: list[str] = []
    cache = typist.worker.cache
    real_get = cache.get
    cache.get = lambda key: (looked_up.append(key), real_get(key))[1]  # type: ignore[method-assign]
    for _ in range(3):
        await typist.keystroke()
    assert looked_up == [f"Day 501 we drove{'x' * n} from Paris to Lyon." for n in (1, 2, 3)]


async def test_the_cache_keeps_what_is_used_and_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: first in, first out — a sentence in constant use was forgotten as soon as it was the oldest."""
    monkeypatch.setattr(worker_module, "FOUND_CACHE", 3)
    extractor = FakeExtractor()
    worker, person = await started("tiptap", extractor)
    for sentence in ["In Paris.", "In Rome.", "In Oslo.", "In Paris.", "In Lyon.", "In Paris."]:
        await edit(person, lambda sentence=sentence: person.paragraph(sentence))  # type: ignore[misc]
    assert extractor.calls == ["In Paris.", "In Rome.", "In Oslo.", "In Lyon."]
    assert len(worker.cache) == 3 and "In Rome." not in worker.cache
    assert person.marks() == ["Paris", "Rome", "Oslo", "Paris", "Lyon", "Paris"]


async def test_a_mark_a_person_removes_is_not_put_back(layout: str) -> None:
    """Before: the next change anywhere re-scanned every sentence and marked the place again."""
    extractor = FakeExtractor()
    worker, person = await started(layout, extractor)
    node = person.paragraph("We met in Paris and Rome. We left.")
    await edit(person, lambda: None)
    assert person.marks() == ["Paris", "Rome"]
    await edit(person, lambda: person.unmark(node, "Paris"))
    assert person.marks() == ["Rome"]
    await edit(person, lambda: person.type(node, "We left.", " Then Oslo."))  # the same paragraph, another sentence
    await edit(person, lambda: person.paragraph("Elsewhere in Lyon."))
    assert person.marks() == ["Rome", "Oslo", "Lyon"]
    assert worker.counters.locations_marked == 4
    await edit(person, lambda: person.type(node, "We met", " again"))  # an edited sentence is new
    assert person.marks() == ["Paris", "Rome", "Oslo", "Lyon"]


async def test_an_unmarked_sentence_that_moves_to_a_new_paragraph_stays_unmarked() -> None:
    """What an editor does on Enter at the start of a paragraph: the text moves into a new node."""
    _, person = await started("tiptap", FakeExtractor())
    node = person.paragraph("We met in Paris and Rome.")
    await edit(person, lambda: None)
    await edit(person, lambda: person.unmark(node, "Paris"))

    def split_paragraph() -> None:
        moved = node.diff()
        with person.document.transaction():
            del node[0 : len(person.plain(node).encode())]
            paragraph = person.fragment.children.insert(1, XmlElement("paragraph"))
            tail = paragraph.children.append(XmlText())
            for chunk, attributes in moved:
                tail.insert(len(person.plain(tail).encode()), str(chunk), attributes)

    await edit(person, split_paragraph)
    assert [person.plain(node) for node in person.nodes()] == ["", "We met in Paris and Rome."]
    assert person.marks() == ["Rome"]


async def test_deleted_paragraphs_are_never_touched_and_the_rest_is_marked(monkeypatch: pytest.MonkeyPatch) -> None:
    """pycrdt frees a deleted branch: reading one through an old handle crashes the process."""
    monkeypatch.setattr(worker_module, "BACKOFF", Backoff(first_s=0.05, cap_s=0.05))
    extractor = FakeExtractor(failing="Atlantis")
    _, person = await started("tiptap", extractor)
    for index in range(30):
        person.paragraph(f"Paragraph {index} sails to Atlantis.")
    await edit(person, lambda: None)
    await edit(person, lambda: person.fragment.children.__delitem__(slice(0, 30)))
    await asyncio.sleep(0.1)  # every back-off is over: their sentences are gone, so nothing is retried
    await edit(person, lambda: person.paragraph("Now Oslo."))
    for index in range(5):
        paragraph = XmlElement("paragraph", contents=[XmlText(f"Top {index} in Rome.")])
        await edit(person, lambda paragraph=paragraph: person.fragment.children.insert(0, paragraph))  # type: ignore[misc]
    node = person.nodes()[-1]
    await edit(person, lambda: person.type(node, "Oslo.", " And Lyon."))
    assert person.marks() == ["Rome"] * 5 + ["Oslo", "Lyon"]
    assert extractor.calls.count("Paragraph 0 sails to Atlantis.") == 1


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, message: bytes) -> None:
        self.sent.append(message)


@pytest.fixture
async def commands() -> AsyncIterator[asyncio.StreamReader]:
    yield asyncio.StreamReader()


async def test_a_renewed_token_is_kept_and_sent_over_the_document_socket(commands: asyncio.StreamReader) -> None:
    arguments = ["--document", "d", "--agent", "a", "--url", "ws://127.0.0.1:9/doc"]
    args = parse_arguments(arguments)
    args.token = "first"
    worker = Worker(args, FakeExtractor(), commands)
    socket = FakeSocket()
    worker.websocket = socket  # type: ignore[assignment]
    reading = asyncio.create_task(worker._commands())
    renewed = "tök-2.signature"
    commands.feed_data(b'{"op": "token", "token": "' + renewed.encode() + b'"}\n')
    commands.feed_data(b'{"op": "token"}\n{"op": "token", "token": 7}\n')  # nothing to renew with: ignored
    await wait_for(lambda: bool(socket.sent))
    encoded = renewed.encode()
    assert socket.sent == [b"\x02" + write_var_uint(len(encoded)) + encoded]
    assert len(encoded) == len(renewed) + 1  # the length counts UTF-8 bytes
    assert worker.token == renewed and worker.url() == f"ws://127.0.0.1:9/doc/d?token={renewed}"
    commands.feed_data(b'{"op": "shutdown"}\n')
    await asyncio.wait_for(reading, 2)
    assert socket.sent == [b"\x02" + write_var_uint(len(encoded)) + encoded]


async def wait_for(condition: Callable[[], bool], timeout: float = 2) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
