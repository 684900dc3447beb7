"""End to end: each backend behind a real daemon, approved, serving the official openai SDK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcp_local_provider.agent import Backend
from mcp_local_provider.agent.backends.openai import OpenAIBackend
from mcp_local_provider.cli import agent as agent_command
from mcp_local_provider.cli.main import build_parser
from mcp_local_provider.core.config import BackendSettings, load_config
from mcp_local_provider.core.registry import SessionState
from tests.clis import ANSWER, FakeCli, group_alive
from tests.conftest import StartDaemon
from tests.fakes import BRIDGE_TOKEN, Daemon, until
from tests.security.helpers import audit_lines
from tests.upstream import USAGE, WORDS, Upstream

MODELS = {
    "claude": "claude-code",
    "cursor": "cursor-agent",
    "gemini": "gemini-cli",
    "codex": "codex",
}
BACKENDS = [*MODELS, "openai"]
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def upstream(aiohttp_server: Any) -> tuple[Upstream, str]:
    canned = Upstream()
    server = await aiohttp_server(canned.app())
    return canned, str(server.make_url("/v1"))


@pytest.fixture
async def serve(
    daemon: Daemon, fake_cli: FakeCli, upstream: tuple[Upstream, str]
) -> AsyncIterator[Any]:
    """``await serve(name, **knobs)``: that backend connected to ``daemon`` and approved;
    returns the model name to ask for."""
    backends: list[Backend] = []

    async def start(name: str, **knobs: Any) -> str:
        backend: Backend
        if name == "openai":
            upstream[0].mode = "slow" if knobs.get("delay") else "stream"
            backend = OpenAIBackend(BackendSettings(base_url=upstream[1], models=("up-small",)))
            model = "up-small"
        else:
            backend = fake_cli.backend(name, **knobs)
            model = MODELS[name]
        backends.append(backend)
        await daemon.start_agent(backend)
        return model

    yield start
    for backend in backends:
        await backend.close()


@pytest.mark.parametrize("name", BACKENDS)
async def test_an_editor_request_is_answered_whole(
    serve: Any, daemon: Daemon, openai_client: Any, name: str
) -> None:
    model = await serve(name)
    reply = await openai_client(daemon).chat.completions.create(model=model, messages=HI)
    assert reply.choices[0].message.content == ANSWER
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens > 0


@pytest.mark.parametrize("name", BACKENDS)
async def test_an_editor_request_is_streamed(
    serve: Any, daemon: Daemon, openai_client: Any, name: str
) -> None:
    model = await serve(name)
    stream = await openai_client(daemon).chat.completions.create(
        model=model, messages=HI, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 6
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_stop_sequence_cuts_the_answer(
    serve: Any, daemon: Daemon, openai_client: Any, name: str, stream: bool
) -> None:
    model = await serve(name)
    api = openai_client(daemon)
    if stream:
        chunks = [
            c
            async for c in await api.chat.completions.create(
                model=model, messages=HI, stop=["How"], stream=True
            )
        ]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        reply = await api.chat.completions.create(model=model, messages=HI, stop=["How"])
        text, finish = reply.choices[0].message.content or "", reply.choices[0].finish_reason
    assert (text, finish) == ("Hello there! ", "stop")


@pytest.mark.parametrize("name", MODELS)
async def test_max_tokens_caps_the_answer_with_length(
    serve: Any, daemon: Daemon, openai_client: Any, name: str
) -> None:
    model = await serve(name)
    reply = await openai_client(daemon).chat.completions.create(
        model=model, messages=HI, max_tokens=3
    )
    assert reply.choices[0].message.content == ANSWER[:12]
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 3
    assert reply.usage.model_extra == {"estimated": True}


async def test_stop_and_max_tokens_are_left_to_an_openai_upstream(
    serve: Any, daemon: Daemon, openai_client: Any, upstream: tuple[Upstream, str]
) -> None:
    model = await serve("openai")
    await openai_client(daemon).chat.completions.create(
        model=model, messages=HI, stop=["How"], max_tokens=3
    )
    body = upstream[0].requests[-1][1]
    assert (body["stop"], body["max_tokens"]) == (["How"], 3)


@pytest.mark.parametrize("name", BACKENDS)
async def test_an_editor_that_goes_away_cancels_the_agents_work(
    serve: Any,
    daemon: Daemon,
    openai_client: Any,
    fake_cli: FakeCli,
    upstream: tuple[Upstream, str],
    name: str,
) -> None:
    model = await serve(name, delay=0.1, child=True)
    stream = await openai_client(daemon).chat.completions.create(
        model=model, messages=HI, stream=True
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    await stream.close()
    if name == "openai":
        await asyncio.wait_for(upstream[0].disconnected.wait(), 2)
    else:
        run = fake_cli.last()
        await until(lambda: not group_alive(run["pgid"]), timeout=2)
    await until(lambda: daemon.state.router.in_flight == 0)


async def test_an_openai_agent_can_serve_from_another_mcp_local_provider(
    start_daemon: StartDaemon, openai_client: Any
) -> None:
    upstream_daemon = await start_daemon()
    await upstream_daemon.start_agent()  # an echo agent behind the upstream daemon
    front = await start_daemon()
    backend = OpenAIBackend(BackendSettings(base_url=upstream_daemon.url + "/v1"))
    try:
        await front.start_agent(backend)
        assert [m.name for m in backend.models()] == ["echo"]  # listed by the upstream daemon
        api = openai_client(front)
        reply = await api.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "two hops"}]
        )
        assert reply.choices[0].message.content == "two hops"
        stream = await api.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "streamed over two hops"}],
            stream=True,
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "streamed over two hops"
    finally:
        await backend.close()


@pytest.mark.parametrize("name", ["claude", "openai"])
async def test_the_agent_command_connects_gets_approved_and_serves(
    daemon: Daemon,
    fake_cli: FakeCli,
    upstream: tuple[Upstream, str],
    openai_client: Any,
    tmp_path: Path,
    name: str,
) -> None:
    settings = fake_cli.settings("claude")
    env = "\n".join(f'{k} = "{v}"' for k, v in settings.env.items())
    (tmp_path / "agent.toml").write_text(
        f'bridge_token = "{BRIDGE_TOKEN}"\n'
        f'[agent]\nbackend = "{name}"\n'
        "[agent.backends.claude]\nwarm = false\n"
        f"[agent.backends.claude.env]\n{env}\n"
    )
    argv = ["agent", "--config", str(tmp_path / "agent.toml"), "--url", daemon.ws_url]
    if name == "openai":
        argv += ["--base-url", upstream[1]]
    args = build_parser().parse_args(argv)
    config = load_config(args.config)
    task = asyncio.create_task(agent_command.run(args, config))
    await until(lambda: bool(daemon.state.registry.in_state(SessionState.ACTIVE)))
    session = daemon.state.registry.in_state(SessionState.ACTIVE)[0]
    model = session.models[0].name
    reply = await openai_client(daemon).chat.completions.create(model=model, messages=HI)
    assert reply.choices[0].message.content == ANSWER
    await daemon.state.hub.revoke(session.id)
    assert await asyncio.wait_for(task, 5) == 0


@pytest.mark.parametrize(("stream", "frames"), [(False, 2), (True, 3)])
async def test_the_finish_rides_on_the_last_chunk_only_when_one_answer_was_asked_for(
    serve: Any,
    daemon: Daemon,
    openai_client: Any,
    upstream: tuple[Upstream, str],
    stream: bool,
    frames: int,
) -> None:
    """The upstream answers reasoning, text and finish at once. Asked for one answer, the
    agent sends the finish with the text (two frames); asked for a stream, every event goes
    out as it comes (three frames)."""
    model = await serve("openai")
    upstream[0].mode = "json"
    api = openai_client(daemon)
    if stream:
        chunks = [c async for c in await api.chat.completions.create(
            model=model, messages=HI, stream=True, stream_options={"include_usage": True}
        )]  # fmt: skip
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        usage = chunks[-1].usage
    else:
        reply = await api.chat.completions.create(model=model, messages=HI)
        text, finish, usage = (
            reply.choices[0].message.content,
            reply.choices[0].finish_reason,
            reply.usage,
        )
    assert (text, finish) == ("".join(WORDS), "stop")
    assert usage is not None and usage.total_tokens == USAGE["total_tokens"]
    [line] = [line for line in await audit_lines(daemon) if line["event"] == "request"]
    assert line["frames"] == frames
