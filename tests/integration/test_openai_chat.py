"""The OpenAI-compatible chat provider against the fake server of `tests/support/fake_openai.py` (real HTTP, in the
test's loop, no database): streamed text and tool calls reassembled by `collect`, the request's wire format, and
every way the stream can fail, each an `LLMProviderError` that says what happened."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from agentlog.llm import LLMProviderError
from agentlog.llm.chat import ChatChunk, ChatMessage, ChatRequest, Profile, ToolCall, ToolSpec, Usage, collect
from agentlog.llm.openai_chat import OpenAICompatibleChat
from tests.support.fake_openai import Answer, FakeCall, FakeOpenAI

API_KEY = "sk-test-123"
MODEL = "test-model"
PROFILE = Profile("speed", MODEL, temperature=0.3, max_tokens=1_024)
HELLO = ChatRequest((ChatMessage("system", "Be brief."), ChatMessage("user", "Say hello.")), PROFILE)
SEARCH = ToolSpec("search", "Search the web.", {"type": "object", "properties": {"q": {"type": "string"}}})


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=API_KEY) as server:
        yield server


@pytest.fixture
async def chat(fake: FakeOpenAI) -> AsyncIterator[OpenAICompatibleChat]:
    provider = OpenAICompatibleChat(fake.base_url, API_KEY, timeout_s=5)
    yield provider
    await provider.aclose()


async def chunks_of(provider: OpenAICompatibleChat, request: ChatRequest = HELLO) -> list[ChatChunk]:
    return [chunk async for chunk in provider.stream(request)]


async def failure(provider: OpenAICompatibleChat, request: ChatRequest = HELLO, *, url: bool = True) -> str:
    """The message of the error `collect` raises; one line, naming the model and the URL (unless it is `collect`'s
    own error)."""
    async with asyncio.timeout(5):
        with pytest.raises(LLMProviderError) as raised:
            await collect(provider, request)
    message = str(raised.value)
    assert "\n" not in message and MODEL in message
    assert provider.url in message or not url
    return message


async def test_streamed_text_is_reassembled(fake: FakeOpenAI, chat: OpenAICompatibleChat) -> None:
    fake.script(Answer.say("Hello there, traveller.", pieces=4, usage=(31, 7)))
    response = await collect(chat, HELLO)
    assert response.message == ChatMessage("assistant", "Hello there, traveller.")
    assert response.text_parts == ("Hello ", "there,", " trave", "ller.")
    assert (response.finish_reason, response.usage) == ("stop", Usage(31, 7))
    assert (response.provider, response.model) == ("openai-compatible", MODEL)
    assert response.chunks == 7  # the role, four pieces, the finish, the usage
    assert response.first_chunk_ms is not None and response.duration_ms >= response.first_chunk_ms


async def test_one_chunk_per_event_and_the_usage_last(fake: FakeOpenAI, chat: OpenAICompatibleChat) -> None:
    fake.script(Answer.say("Hi!", pieces=2))
    assert await chunks_of(chat) == [
        ChatChunk(),
        ChatChunk("Hi"),
        ChatChunk("!"),
        ChatChunk(finish_reason="stop"),
        ChatChunk(usage=Usage(17, 9)),
    ]


async def test_request_body(fake: FakeOpenAI, chat: OpenAICompatibleChat) -> None:
    conversation = (
        ChatMessage("system", "You plan."),
        ChatMessage("user", "Weather in Paris?"),
        ChatMessage("assistant", "", (ToolCall("call_7", "search", {"q": "Paris weather"}),)),
        ChatMessage("tool", "Sunny, 24°C", tool_call_id="call_7"),
    )
    fake.script(Answer.say("Sunny."))
    await collect(chat, ChatRequest(conversation, Profile("balanced", MODEL, 0.7, 2_048), (SEARCH,)))
    [received] = fake.requests
    assert (received.method, received.path) == ("POST", "/v1/chat/completions")
    assert received.headers["authorization"] == f"Bearer {API_KEY}"
    assert received.headers["accept"] == "text/event-stream"
    assert received.body == {
        "model": MODEL,
        "temperature": 0.7,
        "max_tokens": 2_048,
        "messages": [
            {"role": "system", "content": "You plan."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_7", "type": "function",
                 "function": {"name": "search", "arguments": '{"q": "Paris weather"}'}},
            ]},
            {"role": "tool", "content": "Sunny, 24°C", "tool_call_id": "call_7"},
        ],
        "tools": [{"type": "function", "function": {
            "name": "search", "description": "Search the web.",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        }}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }  # fmt: skip


async def test_no_tools_no_tools_field(fake: FakeOpenAI, chat: OpenAICompatibleChat) -> None:
    fake.script(Answer.say("Hello."))
    await collect(chat, HELLO)
    body = fake.requests[0].body
    assert "tools" not in body
    assert (body["temperature"], body["max_tokens"]) == (0.3, 1_024)


@pytest.mark.parametrize("interleave", [False, True], ids=["one-after-the-other", "interleaved"])
async def test_tool_calls_are_reassembled(fake: FakeOpenAI, chat: OpenAICompatibleChat, interleave: bool) -> None:
    answer = Answer.call(
        FakeCall("search", {"q": "Paris weather", "limit": 3}, call_id="call_abc", pieces=5),
        FakeCall("fetch", {"url": "https://example.org/météo"}, call_id="call_def", pieces=4),
        interleave=interleave,
    )
    fake.script(answer, answer)
    chunks = await chunks_of(chat, ChatRequest(HELLO.messages, PROFILE, (SEARCH,)))
    indexes = [delta.index for chunk in chunks for delta in chunk.tool_calls]
    assert indexes == ([0, 1] * 5 + [0] if interleave else [0] * 6 + [1] * 5)
    response = await collect(chat, ChatRequest(HELLO.messages, PROFILE, (SEARCH,)))
    assert response.message == ChatMessage("assistant", "", (
        ToolCall("call_abc", "search", {"q": "Paris weather", "limit": 3}),
        ToolCall("call_def", "fetch", {"url": "https://example.org/météo"}),
    ))  # fmt: skip
    assert response.finish_reason == "tool_calls"


async def test_text_then_a_tool_call(fake: FakeOpenAI, chat: OpenAICompatibleChat) -> None:
    fake.script(Answer.call(FakeCall("search", {"q": "x"}), text="Let me look."))
    response = await collect(chat, HELLO)
    assert response.message.content == "Let me look."
    assert response.message.tool_calls == (ToolCall("call_0", "search", {"q": "x"}),)


async def test_line_separators_inside_json_strings(fake: FakeOpenAI, chat: OpenAICompatibleChat) -> None:
    text = "one\u2028two\u2029three\x85four\x1cfive\x0bsix\r\nseven 🌍"  # sent unescaped; only CR/LF end SSE lines
    fake.script(Answer.say(text, pieces=3))
    assert (await collect(chat, HELLO)).message.content == text


async def test_comments_event_and_id_lines_are_ignored(fake: FakeOpenAI, chat: OpenAICompatibleChat) -> None:
    fake.script(replace(Answer.say("Hello.", pieces=2), sse_extras=True))
    response = await collect(chat, HELLO)
    assert (response.message.content, response.usage, response.chunks) == ("Hello.", Usage(17, 9), 5)


async def test_slow_chunks_within_the_timeout(fake: FakeOpenAI, chat: OpenAICompatibleChat) -> None:
    fake.script(replace(Answer.say("Hello.", pieces=3), chunk_delay_s=0.02))
    assert (await collect(chat, HELLO)).message.content == "Hello."


async def test_connections_are_reused(fake: FakeOpenAI, chat: OpenAICompatibleChat) -> None:
    fake.default = Answer.say("ok")
    for _ in range(5):
        assert (await collect(chat, HELLO)).message.content == "ok"
    assert (len(fake.requests), fake.connections) == (5, 1)


async def test_concurrent_streams(fake: FakeOpenAI, chat: OpenAICompatibleChat) -> None:
    fake.default = replace(Answer.say("in parallel", pieces=4), chunk_delay_s=0.01)
    responses = await asyncio.gather(*(collect(chat, HELLO) for _ in range(4)))
    assert {response.message.content for response in responses} == {"in parallel"}


async def test_http_error_status(fake: FakeOpenAI, chat: OpenAICompatibleChat) -> None:
    fake.script(Answer.error(500, "The server had an error\nwhile processing your request."))
    message = await failure(chat)
    assert "HTTP 500: The server had an error while processing your request." in message


async def test_an_error_body_that_is_not_the_apis(fake: FakeOpenAI, chat: OpenAICompatibleChat) -> None:
    fake.script(Answer(status=502, body="<html><h1>502 Bad Gateway</h1>\n</html>" + "x" * 500))
    message = await failure(chat)
    assert "HTTP 502: <html><h1>502 Bad Gateway</h1> </html>xxx" in message and message.endswith("x...")


async def test_a_wrong_api_key(fake: FakeOpenAI) -> None:
    provider = OpenAICompatibleChat(fake.base_url + "/", "sk-wrong", timeout_s=5)
    try:
        message = await failure(provider)
    finally:
        await provider.aclose()
    assert "HTTP 401" in message and "Incorrect API key" in message


async def test_a_stream_ended_without_done(fake: FakeOpenAI, chat: OpenAICompatibleChat) -> None:
    fake.script(replace(Answer.say("Hello there.", pieces=3), cut_after=3))
    message = await failure(chat)
    assert "cut off" in message and "after 3 chunks without data: [DONE]" in message


async def test_a_connection_reset_mid_stream(fake: FakeOpenAI, chat: OpenAICompatibleChat) -> None:
    fake.script(replace(Answer.say("Hello there.", pieces=3), drop_after=2))
    message = await failure(chat)
    assert "the stream was cut off after 2 chunks: RemoteProtocolError" in message


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        ("<html>bad gateway</html>", "not JSON (Expecting value): <html>bad gateway</html>"),
        ('{"choices": [{"delta": {"content": "Hel', "not JSON (Unterminated string"),
        ("[1, 2]", "not a JSON object"),
        ('{"id": "x"}', "choices is not a list"),
        ('{"choices": {"0": {}}}', "choices is not a list"),
        ('{"choices": ["x"]}', "choices[0] is not an object"),
        ('{"choices": [{"delta": "Hello"}]}', "choices[0].delta is not an object"),
        ('{"choices": [{"delta": {"content": 42}}]}', "choices[0].delta.content is not a string"),
        ('{"choices": [{"delta": {"tool_calls": {"index": 0}}}]}', "choices[0].delta.tool_calls is not a list"),
        (
            '{"choices": [{"delta": {"tool_calls": [{"index": "0"}]}}]}',
            "choices[0].delta.tool_calls[0].index is not a natural",
        ),
        (
            '{"choices": [{"delta": {"tool_calls": [{"index": 0, "function": "f"}]}}]}',
            "choices[0].delta.tool_calls[0].function is not an object",
        ),
        (
            '{"choices": [{"delta": {"tool_calls": [{"index": 0, "id": 7}]}}]}',
            "choices[0].delta.tool_calls[0]: id, function.name or function.arguments is not a string",
        ),
        ('{"choices": [], "usage": {"prompt_tokens": "many"}}', "usage.prompt_tokens"),
        ('{"choices": [], "usage": 12}', "usage is not an object"),
    ],
)
async def test_a_malformed_chunk(fake: FakeOpenAI, chat: OpenAICompatibleChat, garbage: str, reason: str) -> None:
    fake.script(replace(Answer.say("Hello."), garbage=garbage))
    message = await failure(chat)
    assert f"malformed chunk 2: {reason}" in message
    assert garbage[:40] in message  # what was sent, to see what is wrong


async def test_an_error_sent_in_the_stream(fake: FakeOpenAI, chat: OpenAICompatibleChat) -> None:
    fake.script(replace(Answer.say("Hello."), garbage='{"error": {"message": "model overloaded", "code": 503}}'))
    assert "the server sent an error after 1 chunks: model overloaded" in await failure(chat)


async def test_a_response_that_is_not_an_event_stream(fake: FakeOpenAI, chat: OpenAICompatibleChat) -> None:
    fake.script(Answer(raw='{"id": "chatcmpl-1", "choices": [{"message": {"content": "Hello."}}]}'))
    message = await failure(chat)
    assert "not an event stream (content-type application/json)" in message and "chatcmpl-1" in message


async def test_tool_arguments_that_are_not_json(fake: FakeOpenAI, chat: OpenAICompatibleChat) -> None:
    fake.script(Answer.call(FakeCall("search", '{"q": "Par')))
    assert "tool call search: arguments are not JSON" in await failure(chat, url=False)


async def test_a_slow_answer_times_out(fake: FakeOpenAI) -> None:
    fake.script(replace(Answer.say("late"), delay_s=10))
    provider = OpenAICompatibleChat(fake.base_url, API_KEY, timeout_s=0.3)
    try:
        assert "no answer within 0.3s (ReadTimeout)" in await failure(provider)
    finally:
        await provider.aclose()


async def test_a_stalled_stream_times_out(fake: FakeOpenAI) -> None:
    fake.script(replace(Answer.say("Hello there.", pieces=3), chunk_delay_s=10))
    provider = OpenAICompatibleChat(fake.base_url, API_KEY, timeout_s=0.3)
    try:
        assert "the stream stalled: nothing for 0.3s after 0 chunks (ReadTimeout)" in await failure(provider)
    finally:
        await provider.aclose()


async def test_an_unreachable_server() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    provider = OpenAICompatibleChat(f"http://127.0.0.1:{port}/v1", API_KEY, timeout_s=2)
    try:
        assert "request failed: ConnectError" in await failure(provider)
    finally:
        await provider.aclose()


async def test_the_fake_answers_500_when_nothing_is_scripted(chat: OpenAICompatibleChat) -> None:
    assert "no scripted answer" in await failure(chat)


async def test_event_stream_lines_split_anywhere() -> None:
    from agentlog.llm.openai_chat import _sse_data

    async def pieces() -> AsyncIterator[bytes]:
        for piece in [b"\xef\xbb\xbfdata: a\r", b"\ndata: b\r\n", b"\r\n", b"data: c\rdata:d\r\r: note\n", b"\n",
                      b"event: x\nid: 1\nretry: 5\n\n", b"da", b"ta: \xc3", b"\xa9\n\ndata: [DONE]"]:  # fmt: skip
            yield piece

    stray: list[str] = []
    assert [data async for data in _sse_data(pieces(), stray)] == ["a\nb", "c\nd", "é", "[DONE]"]
    assert stray == []
