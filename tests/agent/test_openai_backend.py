"""The openai backend against a canned OpenAI-compatible upstream on a loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mcp_local_provider.agent import (
    BackendError,
    Embeddings,
    Finish,
    InvokeRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
)
from mcp_local_provider.agent.backends.openai import OpenAIBackend
from mcp_local_provider.core.config import BackendSettings
from tests.clis import chat, collect
from tests.upstream import USAGE, WORDS, Upstream

MakeBackend = Callable[..., Awaitable[OpenAIBackend]]


@pytest.fixture
async def upstream(aiohttp_server: Any) -> AsyncIterator[tuple[Upstream, str]]:
    canned = Upstream()
    server = await aiohttp_server(canned.app())
    yield canned, str(server.make_url("/v1"))


@pytest.fixture
async def make_backend(upstream: tuple[Upstream, str]) -> AsyncIterator[MakeBackend]:
    made: list[OpenAIBackend] = []

    async def make(start: bool = True, **fields: Any) -> OpenAIBackend:
        fields.setdefault("base_url", upstream[1])
        backend = OpenAIBackend(BackendSettings(**fields))
        made.append(backend)
        if start:
            await backend.start()
        return backend

    yield make
    for backend in made:
        await backend.close()


async def test_content_is_streamed_through_with_finish_and_usage(
    upstream: tuple[Upstream, str], make_backend: MakeBackend
) -> None:
    backend = await make_backend()
    events = await collect(backend.serve(chat(model="up-small", stream=True)))
    assert [e.text for e in events if isinstance(e, TextDelta)] == WORDS
    assert [e for e in events if isinstance(e, ReasoningDelta)] == [ReasoningDelta("Thinking.")]
    assert events[-1] == Finish("stop", USAGE)


async def test_tool_call_fragments_are_passed_through(
    upstream: tuple[Upstream, str], make_backend: MakeBackend
) -> None:
    upstream[0].mode = "tools"
    backend = await make_backend()
    events = await collect(backend.serve(chat(model="up-small", stream=True)))
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls[0] == ToolCallDelta(0, "call_1", "weather", "")
    assert "".join(c.arguments for c in calls) == '{"city":"Oslo"}'
    assert isinstance(events[-1], Finish) and events[-1].reason == "tool_calls"


async def test_a_streamed_request_is_passed_on_as_a_stream_with_usage(
    upstream: tuple[Upstream, str], make_backend: MakeBackend
) -> None:
    backend = await make_backend()
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {}}}]
    request = chat(model="up-large", temperature=0.2, stop=["END"], max_tokens=5, top_p=None,
                   tools=tools, stream=True)  # fmt: skip
    await collect(backend.serve(request))
    path, body = upstream[0].requests[-1]
    assert path == "/v1/chat/completions"
    assert body == {
        "model": "up-large", "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.2, "stop": ["END"], "max_tokens": 5, "tools": tools,
        "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip


async def test_a_request_for_one_answer_asks_the_upstream_for_one_answer(
    upstream: tuple[Upstream, str], make_backend: MakeBackend
) -> None:
    upstream[0].mode = "json"
    backend = await make_backend()
    events = await collect(backend.serve(chat(model="up-large", max_tokens=5, stream=False)))
    _, body = upstream[0].requests[-1]
    assert body == {
        "model": "up-large", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5,
        "stream": False,
    }  # fmt: skip
    assert events == [ReasoningDelta("Thinking."), TextDelta("".join(WORDS)), Finish("stop", USAGE)]


async def test_a_configured_model_replaces_the_requested_one(
    upstream: tuple[Upstream, str], make_backend: MakeBackend
) -> None:
    backend = await make_backend(models=("local",), model="up-small")
    await collect(backend.serve(chat(model="local")))
    assert upstream[0].requests[-1][1]["model"] == "up-small"


async def test_models_come_from_the_upstream_unless_configured(
    upstream: tuple[Upstream, str], make_backend: MakeBackend
) -> None:
    listed = await make_backend()
    assert [m.name for m in listed.models()] == ["up-small", "up-large"]
    assert "embedding" in listed.models()[0].capabilities
    configured = await make_backend(models=("mine",))
    assert [m.name for m in configured.models()] == ["mine"]
    assert [p for p, _ in upstream[0].requests] == ["/v1/models"]


async def test_the_api_key_comes_from_an_environment_variable(
    upstream: tuple[Upstream, str], make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-from-env")
    backend = await make_backend(api_key_env="TEST_UPSTREAM_KEY")
    await collect(backend.serve(chat(model="up-small", stream=True)))
    assert upstream[0].headers[-1]["Authorization"] == "Bearer sk-from-env"


async def test_the_api_key_comes_from_a_file(
    upstream: tuple[Upstream, str], make_backend: MakeBackend, tmp_path: Path
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    await make_backend(api_key_file=key_file)
    assert upstream[0].headers[-1]["Authorization"] == "Bearer sk-from-file"


async def test_without_a_configured_key_none_is_sent(
    upstream: tuple[Upstream, str], make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    await make_backend()
    assert "Authorization" not in upstream[0].headers[-1]


async def test_a_missing_key_variable_is_a_clear_error(make_backend: MakeBackend) -> None:
    with pytest.raises(BackendError, match="NO_SUCH_KEY_VARIABLE"):
        await make_backend(api_key_env="NO_SUCH_KEY_VARIABLE")


async def test_no_base_url_is_a_clear_error() -> None:
    with pytest.raises(BackendError, match="--base-url"):
        await OpenAIBackend(BackendSettings()).start()


async def test_an_upstream_error_status_becomes_a_backend_error(
    upstream: tuple[Upstream, str], make_backend: MakeBackend
) -> None:
    upstream[0].mode = "error"
    backend = await make_backend(models=("up-small",))
    with pytest.raises(BackendError) as raised:
        await collect(backend.serve(chat(model="up-small", stream=True)))
    assert raised.value.message == "the upstream answered 429: slow down"
    assert raised.value.code == "upstream_rate_limited"


async def test_a_mid_stream_error_becomes_a_backend_error(
    upstream: tuple[Upstream, str], make_backend: MakeBackend
) -> None:
    upstream[0].mode = "midstream_error"
    backend = await make_backend(models=("up-small",))
    with pytest.raises(BackendError, match="model crashed"):
        await collect(backend.serve(chat(model="up-small", stream=True)))


async def test_an_upstream_that_does_not_stream_is_answered_whole(
    upstream: tuple[Upstream, str], make_backend: MakeBackend
) -> None:
    upstream[0].mode = "json"
    backend = await make_backend(models=("up-small",))
    events = await collect(backend.serve(chat(model="up-small", stream=True)))
    assert events == [ReasoningDelta("Thinking."), TextDelta("".join(WORDS)), Finish("stop", USAGE)]


async def test_completions_and_embeddings_are_passed_through(
    upstream: tuple[Upstream, str], make_backend: MakeBackend
) -> None:
    backend = await make_backend(models=("up-small",))
    completion = InvokeRequest(
        id="r1", kind="completion", model="up-small", prompt="def add(a, b):", suffix="\n"
    )
    events = await collect(backend.serve(completion))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["return", " a + b"]
    assert upstream[0].requests[-1][1]["suffix"] == "\n"
    embedding = InvokeRequest(id="r2", kind="embedding", model="up-small", input=["a", "b"])
    [vectors] = await collect(backend.serve(embedding))
    assert isinstance(vectors, Embeddings)
    assert vectors.vectors == [[0.0, 0.5], [1.0, 0.5]]  # put back in input order


async def test_cancelling_closes_the_upstream_stream(
    upstream: tuple[Upstream, str], make_backend: MakeBackend
) -> None:
    upstream[0].mode = "slow"
    backend = await make_backend(models=("up-small",))
    first = asyncio.Event()

    async def consume() -> None:
        async for event in backend.serve(chat(model="up-small", stream=True)):
            if isinstance(event, TextDelta):
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(upstream[0].disconnected.wait(), 2)
