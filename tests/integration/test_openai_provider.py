"""The OpenAI-compatible provider against a fake chat-completions server (starlette under uvicorn, in-process).

The fake checks the request's shape itself and answers 400 when it is wrong, so the happy path fails if the wire
format breaks; each test then sets what the fake answers: content, usage, status, delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from agentlog.llm import LLMProviderError, OpenAICompatibleExtractor, Place
from agentlog.llm.port import INSTRUCTIONS
from tests.support.asgi import serving

API_KEY = "sk-test-123"
MODEL = "test-model"
PARIS = {"name": "Paris", "latitude": 48.8534, "longitude": 2.3488, "country": "FR"}
NEW_YORK_CITY = {"name": "New York City", "latitude": 40.7143, "longitude": -74.006, "country": "US"}


@dataclass
class FakeLLM:
    base_url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    content: str | None = json.dumps({"places": []})
    usage: dict[str, int] | None = field(default_factory=lambda: {"prompt_tokens": 321, "completion_tokens": 45})
    status: int = 200
    raw_body: str | None = None  # sent as is instead of a completion
    delay_s: float = 0.0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def answer(self, *places: dict[str, Any]) -> None:
        self.content = json.dumps({"places": list(places)})


def _shape_problems(request: Request, body: Any) -> list[str]:
    problems = []
    if request.headers.get("authorization") != f"Bearer {API_KEY}":
        problems.append(f"authorization {request.headers.get('authorization')!r}")
    if not request.headers.get("content-type", "").startswith("application/json"):
        problems.append("not JSON")
    if not isinstance(body, dict):
        return [*problems, "body is not an object"]
    if body.get("model") != MODEL:
        problems.append(f"model {body.get('model')!r}")
    messages = body.get("messages")
    if not (isinstance(messages, list) and [m.get("role") for m in messages] == ["system", "user"]):
        problems.append(f"messages {messages!r}")
    if body.get("temperature") != 0 or body.get("response_format") != {"type": "json_object"}:
        problems.append("temperature or response_format")
    return problems


def _app(fake: FakeLLM) -> Starlette:
    async def completions(request: Request) -> Response:
        body = await request.json()
        fake.requests.append({"headers": dict(request.headers), "body": body})
        if fake.delay_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fake.release.wait(), fake.delay_s)
        problems = _shape_problems(request, body)
        if problems:
            return JSONResponse({"error": {"message": "; ".join(problems)}}, status_code=400)
        if fake.status != 200:
            return PlainTextResponse("upstream exploded\nTraceback: ...", status_code=fake.status)
        if fake.raw_body is not None:
            return PlainTextResponse(fake.raw_body)
        completion: dict[str, Any] = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": MODEL,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": fake.content}, "finish_reason": "stop"}
            ],
        }
        if fake.usage is not None:
            completion["usage"] = fake.usage
        return JSONResponse(completion)

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    fake = FakeLLM(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}/v1")
    try:
        async with serving(_app(fake), sock, lifespan="off", ws="none"):
            try:
                yield fake
            finally:
                fake.release.set()
    finally:
        sock.close()


@pytest.fixture
async def extractor(fake_llm: FakeLLM) -> AsyncIterator[OpenAICompatibleExtractor]:
    extractor = OpenAICompatibleExtractor(fake_llm.base_url, API_KEY, MODEL, timeout_s=5)
    yield extractor
    await extractor.aclose()


async def test_request_shape(fake_llm: FakeLLM, extractor: OpenAICompatibleExtractor) -> None:
    text = "I flew from Paris to New York City last May."
    await extractor.extract(text)
    [request] = fake_llm.requests
    assert request["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert request["body"] == {
        "model": MODEL,
        "messages": [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": text}],
        "temperature": 0,
        "response_format": {"type": "json_object"},
    }


async def test_places_offsets_and_usage(fake_llm: FakeLLM, extractor: OpenAICompatibleExtractor) -> None:
    text = "We met in Paris, flew to New York City, then back to Paris."
    fake_llm.answer(PARIS, NEW_YORK_CITY, {"name": "Lyon", "latitude": 45.75, "longitude": 4.85, "country": "FR"})
    result = await extractor.extract(text)
    assert result.places == (
        Place("Paris", 48.8534, 2.3488, 10, 15, "FR"),
        Place("New York City", 40.7143, -74.006, 25, 38, "US"),
        Place("Paris", 48.8534, 2.3488, 53, 58, "FR"),
    )  # "Lyon" is not in the text: dropped
    for place in result.places:
        assert text[place.start : place.end] == place.name
    assert (result.prompt_tokens, result.completion_tokens) == (321, 45)
    assert (result.provider, result.model) == ("openai-compatible", MODEL)
    assert result.duration_ms > 0


async def test_overlapping_and_differently_cased_names(fake_llm: FakeLLM, extractor: OpenAICompatibleExtractor) -> None:
    text = "New York is not York; Parisians love paris."
    york = {"name": "York", "latitude": 53.96, "longitude": -1.08, "country": "GB"}
    fake_llm.answer(york, {**NEW_YORK_CITY, "name": "New York"}, {**PARIS, "name": "PARIS", "country": ""})
    result = await extractor.extract(text)
    assert [(p.name, p.start, p.end, p.country) for p in result.places] == [
        ("New York", 0, 8, "US"),
        ("York", 16, 20, "GB"),
        ("paris", 37, 42, None),  # not inside "Parisians"; as written in the text; blank country is None
    ]


async def test_usage_absent_counts_zero(fake_llm: FakeLLM, extractor: OpenAICompatibleExtractor) -> None:
    fake_llm.usage = None
    fake_llm.answer(PARIS)
    result = await extractor.extract("Paris")
    assert (result.prompt_tokens, result.completion_tokens) == (0, 0)
    assert [p.name for p in result.places] == ["Paris"]


async def test_a_fenced_answer_is_accepted(fake_llm: FakeLLM, extractor: OpenAICompatibleExtractor) -> None:
    fake_llm.content = "```json\n" + json.dumps({"places": [PARIS]}) + "\n```"
    assert [p.name for p in (await extractor.extract("Paris")).places] == ["Paris"]


async def test_no_api_key_sends_no_authorization(fake_llm: FakeLLM) -> None:
    extractor = OpenAICompatibleExtractor(fake_llm.base_url + "/", None, MODEL)
    try:
        with pytest.raises(LLMProviderError, match="HTTP 400"):  # the fake insists on the key
            await extractor.extract("Paris")
    finally:
        await extractor.aclose()
    assert "authorization" not in fake_llm.requests[0]["headers"]


async def test_http_500_is_a_provider_error(fake_llm: FakeLLM, extractor: OpenAICompatibleExtractor) -> None:
    fake_llm.status = 500
    with pytest.raises(LLMProviderError) as raised:
        await extractor.extract("Paris")
    message = str(raised.value)
    assert "HTTP 500" in message and "upstream exploded" in message
    assert f"{fake_llm.base_url}/chat/completions" in message and MODEL in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("Sure! Paris is the capital of France.", "not JSON"),
        ('{"places": [{"name": "Paris"', "not JSON"),
        ('{"cities": ["Paris"]}', "not a places answer: places"),
        ('{"places": [{"name": "Paris", "latitude": 123, "longitude": 2.3}]}', "latitude"),
        (None, "no message content"),
    ],
)
async def test_malformed_content_is_a_provider_error(
    fake_llm: FakeLLM, extractor: OpenAICompatibleExtractor, content: str | None, reason: str
) -> None:
    fake_llm.content = content
    with pytest.raises(LLMProviderError, match=reason) as raised:
        await extractor.extract("Paris")
    assert "\n" not in str(raised.value)


async def test_a_body_that_is_not_a_completion_is_a_provider_error(
    fake_llm: FakeLLM, extractor: OpenAICompatibleExtractor
) -> None:
    fake_llm.raw_body = "<html>gateway</html>"
    with pytest.raises(LLMProviderError, match="response body is not JSON"):
        await extractor.extract("Paris")
    fake_llm.raw_body = json.dumps({"choices": []})
    with pytest.raises(LLMProviderError, match="unexpected response shape: choices"):
        await extractor.extract("Paris")


async def test_timeout_is_a_provider_error(fake_llm: FakeLLM) -> None:
    fake_llm.delay_s = 10
    extractor = OpenAICompatibleExtractor(fake_llm.base_url, API_KEY, MODEL, timeout_s=0.3)
    try:
        async with asyncio.timeout(5):
            with pytest.raises(LLMProviderError, match=r"no answer within 0\.3s"):
                await extractor.extract("Paris")
    finally:
        await extractor.aclose()


async def test_an_unreachable_server_is_a_provider_error() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    extractor = OpenAICompatibleExtractor(f"http://127.0.0.1:{port}/v1", API_KEY, MODEL, timeout_s=2)
    try:
        with pytest.raises(LLMProviderError, match="request failed: ConnectError"):
            await extractor.extract("Paris")
    finally:
        await extractor.aclose()
