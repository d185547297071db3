"""The port agents use to find places in text, whatever answers: a local gazetteer or a hosted language model.

The result types carry character offsets so that callers can mark the places in the very text they sent (a
document, a chat message) without searching for them again, and usage figures so that every provider can be
accounted for in the same units, even one that never calls a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# The task as a language model is told it; the gazetteer bills its length too, so that token figures stay
# comparable when a deployment switches provider.
INSTRUCTIONS = (
    "You find the geographic places (cities, towns, regions, countries, landmarks) mentioned in the user's text. "
    'Answer with one JSON object of the form {"places": [{"name": string, "latitude": number, '
    '"longitude": number, "country": string or null}]}: "name" spelled exactly as it appears in the text, '
    '"latitude" and "longitude" in WGS84 decimal degrees, "country" the ISO 3166-1 alpha-2 code of the country '
    'the place is in. List each place once. Answer {"places": []} when the text mentions none. JSON only.'
)


@dataclass(frozen=True, slots=True)
class Place:
    """One mention of a place. `name` is the text as written, so `text[start:end] == name` always holds."""

    name: str
    latitude: float
    longitude: float
    start: int
    end: int
    country: str | None


@dataclass(frozen=True, slots=True)
class Extraction:
    """What one `extract` call found, in text order, with what it cost."""

    places: tuple[Place, ...]
    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    duration_ms: float


@runtime_checkable
class LocationExtractor(Protocol):
    """Finds the places a text mentions. Implementations own resources (an index, an HTTP pool): `aclose` them."""

    provider: str
    model: str

    async def extract(self, text: str) -> Extraction: ...

    async def aclose(self) -> None: ...


class LLMProviderError(Exception):
    """A provider could not produce an extraction; the message says what failed, where and with which model."""

    def __init__(self, message: str, *, provider: str, model: str, url: str | None = None) -> None:
        self.reason = message
        self.provider = provider
        self.model = model
        self.url = url
        where = f" at {url}" if url else ""
        super().__init__(f"{provider} extractor (model {model}{where}): {message}")

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments defeat Exception's default pickling, and errors cross process boundaries here.
        return (_rebuild_error, (self.reason, self.provider, self.model, self.url))


def _rebuild_error(message: str, provider: str, model: str, url: str | None) -> LLMProviderError:
    return LLMProviderError(message, provider=provider, model=model, url=url)
