"""The agent worker's work per keystroke at 10, 1,000 and 10,000 sentences, beside the previous algorithm's.

    .venv/bin/python bench/bench_worker.py                       # both layouts, 10 / 1,000 / 10,000 sentences
    .venv/bin/python bench/bench_worker.py --sizes 10,1000 --keystrokes 11 --previous-budget 60

No server and no model: a person's replica and the worker's replica of the same document swap updates in one
process, as the document server would pass them, so what is timed is the worker alone. The extractor answers
at once from a dictionary, and every sentence has been extracted and marked before timing starts (the worker
joined the finished document), so a keystroke costs only what the worker itself does about it.

One keystroke: the person types one character into the middle of the middle sentence of the document (a new
sentence text, so one extraction and one mark per keystroke). Timed, wall clock and process CPU: the worker's
replica applying the person's update, then the worker's annotation step (`Worker._annotate_once`: the queue, the
instant extraction, the mark). Applying the update is split in two: the worker's observer (mirroring the change),
timed inside it, and the rest, which is pycrdt decoding and integrating the update and building the event (in the
`text` layout that grows with the formatting runs of the whole text: yrs walks the text from its start to build
the delta). Beside it, the previous algorithm's figure, measured in the same run on the same marked document:

* **previous worker** — the worker's code before this change (`_annotate_once`, `_mark`, `Surface.plain`,
  `Plain.position`/`marked`, copied below unchanged except for logging and the extractor call): every node's
  plain text, every sentence by regex, the cache (already holding every sentence), and for every sentence with
  places the node read again, the sentence searched for, each place's marks checked and its position counted.
  Cells it cannot finish in `--previous-budget` seconds, predicted from the size before, are not run.
* **re-split only** — just reading every node's plain text and splitting it with the previous regex: what any
  algorithm that looks at the whole document per keystroke pays before doing anything else.

Layouts: `tiptap` (an XmlFragment of paragraphs of four sentences) and `text` (one Y.Text, four sentences per
line). Each sentence names two places ("Day 17 we drove from Paris to Lyon.").
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pycrdt import Doc, Text, XmlElement, XmlFragment, XmlText

from agentlog.agents.worker import Worker, parse_arguments
from agentlog.llm import Extraction, Place
from agentlog.logs import configure_logging

CITIES = {"Paris": (48.85, 2.35), "Lyon": (45.76, 4.84)}
PER_PARAGRAPH = 4


class InstantExtractor:
    """Answers at once: the benchmark measures the worker, not a model."""

    provider = "instant"
    model = "dictionary"

    async def extract(self, text: str) -> Extraction:
        return Extraction(places_in(text), self.provider, self.model, 1, 1, 0.0)

    async def aclose(self) -> None:
        pass


class QuietWorker(Worker):
    """The worker without its standard output, timing its own observer (the rest of applying an update is
    pycrdt's: decoding and integrating it, and building the event the observer gets)."""

    def __init__(self, layout: str) -> None:
        arguments = ["--document", "bench", "--agent", "bench", "--url", "ws://127.0.0.1:9/doc", "--layout", layout]
        super().__init__(parse_arguments(arguments), InstantExtractor())
        self.observer_s = 0.0

    def emit(self, message: dict[str, Any]) -> None:
        pass

    def _on_change(self, events: list[Any]) -> None:
        started = time.perf_counter()
        super()._on_change(events)
        self.observer_s += time.perf_counter() - started


def places_in(text: str) -> tuple[Place, ...]:
    places = []
    for name, (latitude, longitude) in CITIES.items():
        at = text.find(name)
        while at >= 0:
            places.append(Place(name, latitude, longitude, at, at + len(name), None))
            at = text.find(name, at + 1)
    return tuple(sorted(places, key=lambda place: place.start))


def sentence(index: int) -> str:
    return f"Day {index} we drove from Paris to Lyon."


def fill(document: Doc[Any], layout: str, sentences: int) -> list[Text | XmlText]:
    """The document's text nodes: paragraphs of four sentences, or one text of four sentences per line."""
    lines = [
        " ".join(sentence(n) for n in range(start, min(sentences, start + PER_PARAGRAPH)))
        for start in range(0, sentences, PER_PARAGRAPH)
    ]
    if layout == "text":
        text = document.get("text", type=Text)
        text += "\n".join(lines)
        return [text]
    fragment = document.get("default", type=XmlFragment)
    nodes: list[Text | XmlText] = []
    with document.transaction():
        for line in lines:
            paragraph = fragment.children.append(XmlElement("paragraph"))
            nodes.append(paragraph.children.append(XmlText(line)))
    return nodes


def plain(node: Text | XmlText) -> str:
    return "".join(chunk if isinstance(chunk, str) else "\ufffc" for chunk, _ in node.diff())


def text_nodes(document: Doc[Any], layout: str) -> Iterator[Text | XmlText]:
    if layout == "text":
        yield document.get("text", type=Text)
        return
    for paragraph in document.get("default", type=XmlFragment).children:
        for child in getattr(paragraph, "children", []):
            if isinstance(child, XmlText):
                yield child


# The previous worker's algorithm, as it was (agentlog/agents/worker.py before per-keystroke work followed the
# change), minus its logging and with the cache already holding every sentence.
SENTENCE = re.compile(r"[^.!?]*[.!?]+(?=\s|$)")
EMBED = "\ufffc"


@dataclass(frozen=True, slots=True)
class Plain:
    text: str
    ranges: list[tuple[int, int, dict[str, Any]]]
    embeds: frozenset[int]

    def position(self, index: int) -> int:
        return sum(1 if at in self.embeds else len(self.text[at].encode()) for at in range(index))

    def marked(self, start: int, end: int) -> bool:
        return all(
            any("geo" in attributes and low <= at < high for low, high, attributes in self.ranges)
            for at in range(start, end)
        )


def previous_plain(node: Text | XmlText) -> Plain:
    parts: list[str] = []
    ranges: list[tuple[int, int, dict[str, Any]]] = []
    embeds: set[int] = set()
    at = 0
    for chunk, attributes in node.diff():
        if isinstance(chunk, str):
            text = chunk
        else:
            text = EMBED
            embeds.add(at)
        parts.append(text)
        if attributes:
            ranges.append((at, at + len(text), dict(attributes)))
        at += len(text)
    return Plain("".join(parts), ranges, frozenset(embeds))


class PreviousWorker:
    def __init__(self, document: Doc[Any], layout: str, found: dict[str, tuple[Place, ...]]) -> None:
        self.document, self.layout, self.found = document, layout, found

    def annotate_once(self) -> None:
        for node in list(text_nodes(self.document, self.layout)):
            text = previous_plain(node).text
            for match in SENTENCE.finditer(text):
                found = match.group().strip()
                if not found or EMBED in found:
                    continue
                places = self.found[found]  # cached: the benchmark's extractor would answer at once anyway
                if places:
                    self._mark(node, found, places)

    def _mark(self, node: Text | XmlText, found: str, places: tuple[Place, ...]) -> None:
        plain_text = previous_plain(node)
        text = plain_text.text
        with self.document.transaction(origin="previous"):
            at = text.find(found)
            while at >= 0:
                for place in places:
                    start, end = at + place.start, at + place.end
                    if text[start:end] != place.name or plain_text.marked(start, end):
                        continue
                    value = {"name": place.name, "lat": place.latitude, "lon": place.longitude}
                    node.format(plain_text.position(start), plain_text.position(end), {"geo": value})
                at = text.find(found, at + len(found))


def resplit_only(document: Doc[Any], layout: str) -> int:
    return sum(len(SENTENCE.findall(plain(node))) for node in text_nodes(document, layout))


@dataclass(frozen=True, slots=True)
class Cell:
    layout: str
    sentences: int
    nodes: int
    join_s: float
    wall_ms: float
    cpu_ms: float
    observer_ms: float
    annotate_ms: float
    pycrdt_ms: float
    previous_wall_ms: float | None
    previous_cpu_ms: float | None
    previous_note: str
    resplit_ms: float


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """(wall ms, CPU ms) of `action`."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


async def measure(layout: str, sentences: int, keystrokes: int, previous_budget_s: float | None) -> Cell:
    person: Doc[Any] = Doc()
    nodes = fill(person, layout, sentences)
    worker = QuietWorker(layout)
    worker.document.apply_update(person.get_update())
    started = time.perf_counter()
    worker.follow()  # joins the finished document: every sentence extracted and marked once
    await worker._annotate_once()
    join_s = time.perf_counter() - started
    person.apply_update(worker.document.get_update(person.get_state()))
    target = sentences // 2  # the middle sentence, in the middle node (or the only one)
    middle = nodes[0] if layout == "text" else nodes[target // PER_PARAGRAPH]
    after = f"Day {target} we drove"
    walls, cpus, observers, annotates, pycrdts = [], [], [], [], []
    gc.collect()
    for _ in range(keystrokes):
        text = plain(middle)
        middle.insert(len(text[: text.index(after) + len(after)].encode()), "x")
        after += "x"
        update = person.get_update(worker.document.get_state())
        worker.observer_s = 0.0
        wall, cpu = time.perf_counter(), time.process_time()
        worker.document.apply_update(update)
        applied = time.perf_counter()
        await worker._annotate_once()
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
        observers.append(worker.observer_s * 1000)
        pycrdts.append((applied - wall - worker.observer_s) * 1000)
        annotates.append((time.perf_counter() - applied) * 1000)
        person.apply_update(worker.document.get_update(person.get_state()))
    resplit = statistics.median(timed(lambda: resplit_only(person, layout))[0] for _ in range(min(keystrokes, 5)))
    previous = measure_previous(person, layout, keystrokes, previous_budget_s)
    return Cell(
        layout, sentences, len(nodes), join_s, statistics.median(walls), statistics.median(cpus),
        statistics.median(observers), statistics.median(annotates), statistics.median(pycrdts),
        previous[0], previous[1], previous[2], resplit,
    )  # fmt: skip


def measure_previous(
    person: Doc[Any], layout: str, keystrokes: int, budget_s: float | None
) -> tuple[float | None, float | None, str]:
    """The previous algorithm on a replica of the same marked document, its cache holding every sentence."""
    if budget_s is not None and budget_s <= 0:
        return None, None, "not run"
    replica: Doc[Any] = Doc()
    replica.apply_update(person.get_update())
    root = replica.get("text", type=Text) if layout == "text" else replica.get("default", type=XmlFragment)
    root.observe_deep(lambda events: None)  # the previous worker observed the document too
    found = {
        match.group().strip(): places_in(match.group().strip())
        for node in text_nodes(replica, layout)
        for match in SENTENCE.finditer(plain(node))
    }
    previous = PreviousWorker(replica, layout, found)
    nodes = list(text_nodes(replica, layout))
    middle = nodes[len(nodes) // 2]
    walls, cpus = [], []
    deadline = time.monotonic() + (budget_s if budget_s is not None else float("inf"))
    for _ in range(keystrokes):
        text = plain(middle)
        at = len(text) // 2
        while not text[at].isalpha():
            at += 1
        middle.insert(len(text[:at].encode()), "y")  # the same keystroke: into the middle sentence
        found.update({m.group().strip(): places_in(m.group().strip()) for m in SENTENCE.finditer(plain(middle))})
        wall, cpu = timed(previous.annotate_once)
        walls.append(wall)
        cpus.append(cpu)
        if time.monotonic() > deadline:
            break
    note = f"{len(walls)} keystroke{'s' if len(walls) > 1 else ''}" if len(walls) < keystrokes else ""
    return statistics.median(walls), statistics.median(cpus), note


def report(cells: list[Cell], keystrokes: int) -> str:
    lines = [
        f"per keystroke, median of {keystrokes} keystrokes (ms); extractor instant, every sentence already marked",
        "",
        "| layout | sentences | nodes | this worker: wall | CPU | of which pycrdt applying the update | its observer"
        " | its annotation"
        " | previous worker: wall | CPU | re-split only (previous regex) | join (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in cells:
        previous_wall = cell.previous_note if cell.previous_wall_ms is None else f"{cell.previous_wall_ms:,.1f}"
        previous_cpu = "—" if cell.previous_cpu_ms is None else f"{cell.previous_cpu_ms:,.1f}"
        note = f" ({cell.previous_note})" if cell.previous_note and cell.previous_wall_ms is not None else ""
        lines.append(
            f"| {cell.layout} | {cell.sentences:,} | {cell.nodes:,} | {cell.wall_ms:.2f} | {cell.cpu_ms:.2f}"
            f" | {cell.pycrdt_ms:.2f} | {cell.observer_ms:.2f} | {cell.annotate_ms:.2f}"
            f" | {previous_wall}{note} | {previous_cpu} | {cell.resplit_ms:,.1f} | {cell.join_s:.2f} |"
        )
    return "\n".join(lines)


async def run(sizes: list[int], keystrokes: int, previous_budget_s: float) -> list[Cell]:
    cells: list[Cell] = []
    for layout in ("tiptap", "text"):
        for index, size in enumerate(sizes):
            budget = previous_budget_s
            if previous_budget_s <= 0:
                budget = 0
            elif index > 0 and cells[-1].previous_wall_ms is not None:
                predicted = cells[-1].previous_wall_ms / 1000 * (size / sizes[index - 1]) ** 2  # quadratic at worst
                budget = previous_budget_s if predicted <= previous_budget_s else 0
            elif index > 0:
                budget = 0
            cell = await measure(layout, size, keystrokes, budget)
            cells.append(cell)
            print(report([cell], keystrokes).splitlines()[-1], flush=True)
    return cells


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10,1000,10000", help="sentences per document, ascending")
    parser.add_argument("--keystrokes", type=int, default=21)
    parser.add_argument(
        "--previous-budget",
        type=float,
        default=120.0,
        help="seconds the previous algorithm may take per cell (0: do not run it)",
    )
    arguments = parser.parse_args()
    configure_logging("warning")
    sizes = [int(size) for size in arguments.sizes.split(",")]
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {sys.platform}", flush=True)
    cells = asyncio.run(run(sizes, arguments.keystrokes, arguments.previous_budget))
    print()
    print(report(cells, arguments.keystrokes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
