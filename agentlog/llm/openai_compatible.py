"""A provider speaking the OpenAI chat-completions wire format: OpenAI itself, vLLM, llama.cpp, Ollama, LiteLLM...

The model is asked for names and coordinates only; offsets are computed here by finding each returned name in the
text, because models count characters badly and a wrong offset would mark the wrong words in a document. A name
the model returns that is not in the text (a correction, a translation) is dropped rather than guessed at.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import structlog
from pydantic import BaseModel, Field, ValidationError, field_validator

from agentlog.llm.port import INSTRUCTIONS, Extraction, LLMProviderError, Place

PROVIDER = "openai-compatible"  # the alias agentlog.llm.providers accepts for "openai"
_SNIPPET_CHARS = 200
_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*(.*?)\s*```\s*$", re.DOTALL)

_log = structlog.get_logger(__name__)


class _Message(BaseModel):
    content: str | None = None


class _Choice(BaseModel):
    message: _Message


class _Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Completion(BaseModel):
    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage | None = None


class _AnsweredPlace(BaseModel):
    name: str = Field(min_length=1)
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    country: str | None = None

    @field_validator("country")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return (value.strip() or None) if value is not None else None


class _Answer(BaseModel):
    places: list[_AnsweredPlace]


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _SNIPPET_CHARS else flat[: _SNIPPET_CHARS - 3] + "..."


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(root)"
    return f"{where}: {first['msg']}"


def _occurrences(text: str, name: str) -> list[tuple[int, int]]:
    """Where `name` occurs as whole words; ignoring case only if it never occurs as written."""
    pattern = rf"(?<!\w){re.escape(name)}(?!\w)"
    spans = [m.span() for m in re.finditer(pattern, text)]
    return spans or [m.span() for m in re.finditer(pattern, text, re.IGNORECASE)]


def _locate(text: str, answered: list[_AnsweredPlace]) -> tuple[tuple[Place, ...], list[str]]:
    """Every occurrence of every answered name, leftmost-longest where they overlap ("New York" over "York")."""
    found: list[Place] = []
    missing: list[str] = []
    seen: set[str] = set()
    for answer in answered:
        if answer.name in seen:
            continue
        seen.add(answer.name)
        spans = _occurrences(text, answer.name)
        if not spans:
            missing.append(answer.name)
        for start, end in spans:
            found.append(Place(text[start:end], answer.latitude, answer.longitude, start, end, answer.country))
    found.sort(key=lambda p: (p.start, -(p.end - p.start)))
    kept: list[Place] = []
    for place in found:
        if not kept or place.start >= kept[-1].end:
            kept.append(place)
    return tuple(kept), missing


class OpenAICompatibleExtractor:
    """A `LocationExtractor` backed by any `/chat/completions` endpoint that honours JSON mode."""

    provider: str = PROVIDER

    def __init__(self, base_url: str, api_key: str | None, model: str, timeout_s: float = 30) -> None:
        self.model = model
        self.url = f"{base_url.rstrip('/')}/chat/completions"
        self.timeout_s = timeout_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout_s))

    def _error(self, message: str) -> LLMProviderError:
        return LLMProviderError(message, provider=self.provider, model=self.model, url=self.url)

    async def extract(self, text: str) -> Extraction:
        began = time.perf_counter()
        completion = await self._complete(text)
        content = completion.choices[0].message.content
        if content is None:
            raise self._error("the first choice has no message content")
        answer = self._parse_answer(content)
        places, missing = _locate(text, answer.places)
        if missing:
            _log.info("llm.places_not_in_text", provider=self.provider, model=self.model, names=missing)
        usage = completion.usage or _Usage()
        return Extraction(
            places=places,
            provider=self.provider,
            model=self.model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            duration_ms=(time.perf_counter() - began) * 1000,
        )

    async def _complete(self, text: str) -> _Completion:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": text}],
            "temperature": 0,
            "response_format": {"type": "json_object"},
        }
        try:
            response = await self._client.post(self.url, json=request)
        except httpx.TimeoutException as exc:
            raise self._error(f"no answer within {self.timeout_s:g}s ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise self._error(f"request failed: {type(exc).__name__}: {_one_line(str(exc))}") from exc
        if response.is_error:
            raise self._error(f"HTTP {response.status_code}: {_one_line(response.text)}")
        try:
            return _Completion.model_validate(response.json())
        except json.JSONDecodeError as exc:
            raise self._error(f"the response body is not JSON: {_one_line(response.text)}") from exc
        except ValidationError as exc:
            raise self._error(f"unexpected response shape: {_first_error(exc)}") from exc

    def _parse_answer(self, content: str) -> _Answer:
        fenced = _FENCE.match(content)  # some servers wrap JSON mode's answer in a Markdown fence anyway
        try:
            return _Answer.model_validate(json.loads(fenced.group(1) if fenced else content))
        except json.JSONDecodeError as exc:
            raise self._error(f"the message content is not JSON: {_one_line(content)}") from exc
        except ValidationError as exc:
            raise self._error(f"the message content is not a places answer: {_first_error(exc)}") from exc

    async def aclose(self) -> None:
        await self._client.aclose()
