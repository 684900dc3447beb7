"""The MCP server in sampling mode: the SDK's client plays the host and answers
``sampling/createMessage`` with a callback; the editor is the official openai SDK."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import openai
import pytest
from mcp.client.session import ClientRequestContext
from mcp_types import CreateMessageRequestParams, CreateMessageResult, ErrorData, TextContent

from tests.fakes import Daemon
from tests.mcp_fakes import call, mcp_host, wait_status


class Host:
    """A sampling callback that records what it was asked and answers with ``reply``."""

    def __init__(self, reply: str = "from the host", stop_reason: str | None = "endTurn") -> None:
        self.reply = reply
        self.stop_reason = stop_reason
        self.asked: list[CreateMessageRequestParams] = []

    async def __call__(
        self, context: ClientRequestContext, params: CreateMessageRequestParams
    ) -> CreateMessageResult | ErrorData:
        self.asked.append(params)
        return CreateMessageResult(
            role="assistant",
            content=TextContent(type="text", text=self.reply),
            model="host-model",
            stop_reason=self.stop_reason,
        )


class IgnoresLimits(Host):
    """Like VS Code: ignores maxTokens and stopSequences, returns no stopReason."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply, stop_reason=None)


async def refuse(context: ClientRequestContext, params: CreateMessageRequestParams) -> ErrorData:
    return ErrorData(code=-1, message="User rejected sampling request")


async def test_host_answers_editor_requests_through_sampling(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    host = Host("Hi from the host model")
    async with mcp_host(daemon, tmp_path, sampling=True, sampling_callback=host) as client:
        status = await wait_status(client, "granted")  # dialed in when the host connected
        reply = await openai_client(daemon).chat.completions.create(
            model="mcp-agent",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": "Hi"},
                {"role": "user", "content": "Again"},
            ],
            max_tokens=50,
            temperature=0.3,
            stop=["\n\n"],
        )
    assert status.data["mode"] == "sampling" and status.data["models"] == ["mcp-agent"]
    assert reply.choices[0].message.content == "Hi from the host model"
    assert reply.choices[0].finish_reason == "stop"
    [asked] = host.asked
    assert asked.system_prompt == "Be brief."
    assert [(m.role, m.content.text) for m in asked.messages] == [  # type: ignore[union-attr]
        ("user", "Hello"),
        ("assistant", "Hi"),
        ("user", "Again"),
    ]
    assert asked.max_tokens == 50 and asked.temperature == 0.3
    assert asked.stop_sequences == ["\n\n"]
    assert asked.model_preferences is not None
    assert [h.name for h in asked.model_preferences.hints or []] == ["mcp-agent"]


async def test_editor_without_limits_asks_the_configured_max_tokens(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    host = Host()
    async with mcp_host(
        daemon,
        tmp_path,
        sampling=True,
        sampling_callback=host,
        config={"mcp_sampling_max_tokens": 321},
    ) as client:
        await wait_status(client, "granted")
        stream = await openai_client(daemon).chat.completions.create(
            model="mcp-agent", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "from the host"
    assert host.asked[0].max_tokens == 321 and host.asked[0].stop_sequences is None


async def test_host_ignoring_stop_sequences_has_its_answer_cut(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    host = IgnoresLimits("first part\n\nsecond part")
    async with mcp_host(daemon, tmp_path, sampling=True, sampling_callback=host) as client:
        await wait_status(client, "granted")
        reply = await openai_client(daemon).chat.completions.create(
            model="mcp-agent", messages=[{"role": "user", "content": "hi"}], stop=["\n\n"]
        )
    assert reply.choices[0].message.content == "first part"
    assert reply.choices[0].finish_reason == "stop"


async def test_host_ignoring_max_tokens_has_its_answer_cut(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    host = IgnoresLimits("x" * 400)
    async with mcp_host(daemon, tmp_path, sampling=True, sampling_callback=host) as client:
        await wait_status(client, "granted")
        stream = await openai_client(daemon).chat.completions.create(
            model="mcp-agent",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=3,
            stream=True,
        )
        chunks = [c async for c in stream if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "x" * 12
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_host_reporting_max_tokens_finishes_with_length(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    host = Host("cut short", stop_reason="maxTokens")
    async with mcp_host(daemon, tmp_path, sampling=True, sampling_callback=host) as client:
        await wait_status(client, "granted")
        reply = await openai_client(daemon).chat.completions.create(
            model="mcp-agent", messages=[{"role": "user", "content": "hi"}]
        )
    assert reply.choices[0].finish_reason == "length"


async def test_user_refusing_sampling_gives_the_editor_a_forbidden_error(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    async with mcp_host(daemon, tmp_path, sampling=True, sampling_callback=refuse) as client:
        await wait_status(client, "granted")
        with pytest.raises(openai.APIStatusError) as raised:
            await openai_client(daemon).chat.completions.create(
                model="mcp-agent", messages=[{"role": "user", "content": "hi"}]
            )
    assert raised.value.status_code == 502
    assert "- forbidden: the host refused" in raised.value.message
    assert "User rejected sampling request" in raised.value.message


async def test_host_without_sampling_is_told_it_is_unsupported(
    daemon: Daemon, tmp_path: Path
) -> None:
    async with mcp_host(daemon, tmp_path, sampling=True) as client:
        status = await call(client, "provider_status")
        answer = await call(client, "request_local_provider_access")
    assert status.status == "none"  # no dial-in for a host that cannot sample
    assert answer.is_error and answer.text.startswith("unsupported:")
    assert "does not support sampling" in answer.text and "without --sampling" in answer.text
    assert list(daemon.state.registry) == []


async def test_newest_revision_connection_cannot_sample(daemon: Daemon, tmp_path: Path) -> None:
    async with mcp_host(
        daemon, tmp_path, sampling=True, mode="auto", sampling_callback=Host()
    ) as client:
        answer = await call(client, "request_local_provider_access")
    assert answer.is_error and answer.text.startswith("unsupported:")
    assert "2026-07-28" in answer.text and "2025-11-25" in answer.text


async def test_sampling_mode_offers_only_the_access_tools(daemon: Daemon, tmp_path: Path) -> None:
    async with mcp_host(daemon, tmp_path, sampling=True, sampling_callback=Host()) as client:
        names = sorted(tool.name for tool in (await client.list_tools()).tools)
        await wait_status(client, "granted")
        released = await call(client, "release_access")
    assert names == ["provider_status", "release_access", "request_local_provider_access"]
    assert released.data["reason"] == "released"


async def test_editor_cancel_while_the_host_samples_cancels_the_sampling_request(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(context: ClientRequestContext, params: CreateMessageRequestParams) -> ErrorData:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return ErrorData(code=-1, message="unreachable")

    async with mcp_host(daemon, tmp_path, sampling=True, sampling_callback=slow) as client:
        await wait_status(client, "granted")
        ask = asyncio.create_task(
            openai_client(daemon).chat.completions.create(
                model="mcp-agent", messages=[{"role": "user", "content": "hi"}]
            )
        )
        await asyncio.wait_for(started.wait(), 5)
        ask.cancel()
        await asyncio.gather(ask, return_exceptions=True)
        await asyncio.wait_for(cancelled.wait(), 5)


async def test_autocomplete_through_the_ollama_api_is_sampled_and_cut_like_void_expects(
    daemon: Daemon, ollama_client: Any, tmp_path: Path
) -> None:
    host = IgnoresLimits("return a + b\n\nprint('extra')")
    async with mcp_host(daemon, tmp_path, sampling=True, sampling_callback=host) as client:
        await wait_status(client, "granted")
        pieces = [
            part.response
            async for part in await ollama_client(daemon).generate(
                model="mcp-agent",
                prompt="def add(a, b):\n    ",
                suffix="\n",
                raw=True,
                stream=True,
                options={"stop": ["\n\n"], "num_predict": 64},
            )
        ]
    assert "".join(pieces) == "return a + b"
    [asked] = host.asked
    text = asked.messages[0].content.text  # type: ignore[union-attr]
    assert "<before_cursor>\ndef add(a, b):\n    \n</before_cursor>" in text
    assert asked.stop_sequences == ["\n\n"] and asked.max_tokens == 64
