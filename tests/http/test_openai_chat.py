"""/v1/chat/completions and /v1/models through the official openai SDK, against a real daemon
and a real echo agent."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from tests.fakes import Daemon


async def test_chat_returns_the_echoed_text(echo_daemon: Daemon, openai_client: Any) -> None:
    reply = await openai_client(echo_daemon).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hello  wide world"}]
    )
    assert reply.choices[0].message.content == "hello  wide world"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 3


async def test_streamed_deltas_join_to_the_text_with_role_first(
    echo_daemon: Daemon, openai_client: Any
) -> None:
    stream = await openai_client(echo_daemon).chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "one two  three\nfour"}],
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two  three\nfour"
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    assert len(chunks) == 5  # four words, then the finish chunk


async def test_sync_openai_client_streaming_and_not(echo_daemon: Daemon) -> None:
    sync = openai.OpenAI(base_url=echo_daemon.url + "/v1", api_key="noop", max_retries=0)

    def ask() -> tuple[str | None, str]:
        whole = sync.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "sync hello"}]
        )
        streamed = sync.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "sync stream"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        sync.close()
        return whole.choices[0].message.content, text

    assert await asyncio.to_thread(ask) == ("sync hello", "sync stream")


async def test_models_lists_what_active_sessions_serve(
    echo_daemon: Daemon, openai_client: Any
) -> None:
    models = await openai_client(echo_daemon).models.list()
    assert [m.id for m in models.data] == ["echo"]
    assert models.data[0].owned_by


async def test_models_is_empty_without_sessions(daemon: Daemon, openai_client: Any) -> None:
    models = await openai_client(daemon).models.list()
    assert models.data == []


async def test_no_active_session_is_503_with_code(daemon: Daemon, openai_client: Any) -> None:
    with pytest.raises(openai.InternalServerError) as raised:
        await openai_client(daemon).chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.status_code == 503
    assert raised.value.code == "no_active_session"
    assert raised.value.response.headers["x-should-retry"] == "false"
