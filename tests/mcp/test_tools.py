"""The MCP server in tools mode: the SDK's client plays the host's agent, calling the tools in
the order an agent would, against a real daemon; the editor is the official openai SDK."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import StartDaemon
from tests.fakes import Daemon, until
from tests.mcp_fakes import call, mcp_host, next_request, wait_status

CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello"},
]


class Editor:
    """An editor streaming one chat request, keeping each piece as it arrives."""

    def __init__(self, client: openai.AsyncOpenAI, **request: Any) -> None:
        self.pieces: list[str] = []
        self.finish_reason: str | None = None
        request.setdefault("model", "mcp-agent")
        request.setdefault("messages", CHAT)
        self.task = asyncio.create_task(self._run(client, request))

    async def _run(self, client: openai.AsyncOpenAI, request: dict[str, Any]) -> None:
        stream = await client.chat.completions.create(stream=True, **request)
        async for chunk in stream:
            if chunk.choices:
                self.pieces.append(chunk.choices[0].delta.content or "")
                self.finish_reason = chunk.choices[0].finish_reason or self.finish_reason

    @property
    def text(self) -> str:
        return "".join(self.pieces)


async def test_agent_answers_a_chat_request_through_the_tools(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    async with mcp_host(daemon, tmp_path) as host:
        granted = await call(host, "request_local_provider_access", reason="help the editor")
        assert granted.status == "granted" and not granted.is_error
        assert granted.data["models"] == ["mcp-agent"]
        ask = asyncio.create_task(
            openai_client(daemon).chat.completions.create(model="mcp-agent", messages=CHAT)
        )
        request = await next_request(host)
        assert request.data["messages"] == [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello"},
        ]
        assert request.data["kind"] == "chat" and request.data["stream"] is False
        assert "Say hello" in request.text and request.data["request_id"] in request.text
        done = await call(host, "respond", request_id=request.data["request_id"], content="Hello!")
        assert done.status == "completed"
        reply = await ask
    assert reply.choices[0].message.content == "Hello!"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens > 0


async def test_partial_answers_reach_the_editor_before_the_agent_finishes(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    async with mcp_host(daemon, tmp_path) as host:
        await call(host, "request_local_provider_access")
        editor = Editor(openai_client(daemon))
        rid = (await next_request(host)).data["request_id"]
        assert (
            await call(host, "respond_partial", request_id=rid, content="Hello")
        ).status == "sent"
        await until(lambda: editor.text == "Hello")
        await call(host, "respond_partial", request_id=rid, content=", wide")
        await until(lambda: editor.text == "Hello, wide")
        await call(host, "respond", request_id=rid, content=" world")
        await editor.task
    assert editor.text == "Hello, wide world"
    assert editor.finish_reason == "stop"


async def test_non_streaming_editor_gets_the_partial_pieces_joined(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    async with mcp_host(daemon, tmp_path) as host:
        await call(host, "request_local_provider_access")
        ask = asyncio.create_task(
            openai_client(daemon).chat.completions.create(model="mcp-agent", messages=CHAT)
        )
        rid = (await next_request(host)).data["request_id"]
        await call(host, "respond_partial", request_id=rid, content="one ")
        await call(host, "respond_partial", request_id=rid, content="two")
        await call(host, "respond", request_id=rid, content="")
        reply = await ask
    assert reply.choices[0].message.content == "one two"


async def test_pending_access_gives_the_approve_command_and_next_request_waits_for_it(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon = await start_daemon(approval="manual")
    async with mcp_host(daemon, tmp_path) as host:
        pending = await call(host, "request_local_provider_access", reason="serve completions")
        sid = pending.data["session_id"]
        assert pending.status == "pending"
        assert pending.data["approve_with"] == f"mcp-local-provider sessions approve {sid}"
        assert pending.data["approve_with"] in pending.text
        waiting = await call(host, "next_request", wait_seconds=0.05)
        assert waiting.status == "waiting_for_approval"
        session = daemon.state.registry.get(sid)
        assert session.reason == "serve completions"
        daemon.state.hub.approve(sid)
        nothing = await call(host, "next_request", wait_seconds=0.05)
        assert nothing.status == "none"
        assert (await call(host, "provider_status")).status == "granted"


async def test_denied_access_is_reported(start_daemon: StartDaemon, tmp_path: Path) -> None:
    daemon = await start_daemon(approval="manual")
    async with mcp_host(daemon, tmp_path) as host:
        sid = (await call(host, "request_local_provider_access")).data["session_id"]
        daemon.state.hub.deny(sid)
        ended = await call(host, "next_request", wait_seconds=2)
    assert ended.status == "ended"
    assert ended.data["reason"] == "denied"
    assert "Stop serving" in ended.text


async def test_editor_cancel_is_reported_when_the_agent_responds(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    async with mcp_host(daemon, tmp_path) as host:
        await call(host, "request_local_provider_access")
        editor = Editor(openai_client(daemon))
        rid = (await next_request(host)).data["request_id"]
        assert (await call(host, "provider_status")).data["requests_held"] == [rid]
        editor.task.cancel()
        await asyncio.gather(editor.task, return_exceptions=True)
        await wait_until_not_held(host, rid)
        late = await call(host, "respond", request_id=rid, content="too late")
        again = await call(host, "respond_partial", request_id=rid, content="still")
    assert late.status == "cancelled" and not late.is_error
    assert "cancelled" in late.text and "editor" in late.text
    assert again.status == "cancelled"


async def wait_until_not_held(host: Any, rid: str) -> None:
    for _ in range(500):
        if rid not in (await call(host, "provider_status")).data["requests_held"]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{rid} still held")


async def test_decline_gives_the_editor_an_error_with_the_reason(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    async with mcp_host(daemon, tmp_path) as host:
        await call(host, "request_local_provider_access")
        ask = asyncio.create_task(
            openai_client(daemon).chat.completions.create(model="mcp-agent", messages=CHAT)
        )
        rid = (await next_request(host)).data["request_id"]
        declined = await call(host, "decline", request_id=rid, reason="out of my depth")
        assert declined.status == "declined"
        with pytest.raises(openai.APIStatusError) as raised:
            await ask
    assert raised.value.status_code == 502
    assert "out of my depth" in raised.value.message


async def test_stop_sequences_and_max_tokens_cut_the_agents_answer(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    editor = openai_client(daemon)
    async with mcp_host(daemon, tmp_path) as host:
        await call(host, "request_local_provider_access")
        stopped = Editor(editor, stop=["END"])
        request = await next_request(host)
        assert request.data["parameters"]["stop"] == ["END"]
        rid = request.data["request_id"]
        await call(host, "respond_partial", request_id=rid, content="keep this E")
        done = await call(host, "respond_partial", request_id=rid, content="ND drop this")
        assert done.status == "completed" and "stop sequences" in done.text
        await stopped.task
        short = asyncio.create_task(
            editor.chat.completions.create(model="mcp-agent", messages=CHAT, max_tokens=2)
        )
        rid = (await next_request(host)).data["request_id"]
        await call(host, "respond", request_id=rid, content="abcdefghijkl")
        reply = await short
    assert stopped.text == "keep this " and stopped.finish_reason == "stop"
    assert reply.choices[0].message.content == "abcdefgh"
    assert reply.choices[0].finish_reason == "length"


async def test_answers_to_unknown_or_finished_requests_are_errors(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    async with mcp_host(daemon, tmp_path) as host:
        await call(host, "request_local_provider_access")
        unknown = await call(host, "respond", request_id="req-nope", content="x")
        ask = asyncio.create_task(
            openai_client(daemon).chat.completions.create(model="mcp-agent", messages=CHAT)
        )
        rid = (await next_request(host)).data["request_id"]
        await call(host, "respond", request_id=rid, content="once")
        twice = await call(host, "respond", request_id=rid, content="twice")
        await ask
    assert unknown.is_error and unknown.status == "unknown"
    assert twice.is_error and twice.status == "finished"


async def test_next_request_without_access_says_to_request_it(
    daemon: Daemon, tmp_path: Path
) -> None:
    async with mcp_host(daemon, tmp_path) as host:
        answer = await call(host, "next_request", wait_seconds=0)
    assert answer.is_error and answer.status == "no_access"
    assert "request_local_provider_access" in answer.text


async def test_next_request_wait_is_cut_to_the_limit(daemon: Daemon, tmp_path: Path) -> None:
    async with mcp_host(daemon, tmp_path, config={"mcp_wait_limit": 0.1}) as host:
        tools = {tool.name: tool for tool in (await host.list_tools()).tools}
        await call(host, "request_local_provider_access")
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await call(host, "next_request", wait_seconds=50)
        waited = loop.time() - started
    assert answer.status == "none" and answer.data["waited_seconds"] == 0.1
    assert waited < 2
    assert "cut to 0.1 s" in (tools["next_request"].description or "")


async def test_release_access_ends_the_session_at_the_daemon(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    async with mcp_host(daemon, tmp_path) as host:
        sid = (await call(host, "request_local_provider_access")).data["session_id"]
        released = await call(host, "release_access")
        after = await call(host, "next_request", wait_seconds=0)
    assert released.status == "ended" and released.data["reason"] == "released"
    assert after.status == "ended"
    assert daemon.state.registry.get(sid).state.value == "revoked"
    with pytest.raises(openai.APIStatusError) as raised:
        await openai_client(daemon).chat.completions.create(model="mcp-agent", messages=CHAT)
    assert raised.value.status_code == 503


async def test_revoked_session_ends_the_loop(daemon: Daemon, tmp_path: Path) -> None:
    async with mcp_host(daemon, tmp_path) as host:
        sid = (await call(host, "request_local_provider_access")).data["session_id"]
        await daemon.state.hub.revoke(sid)
        ended = await call(host, "next_request", wait_seconds=2)
    assert ended.status == "ended" and ended.data["reason"] == "revoked"


async def test_access_can_be_requested_again_after_it_ended(daemon: Daemon, tmp_path: Path) -> None:
    async with mcp_host(daemon, tmp_path) as host:
        first = (await call(host, "request_local_provider_access")).data["session_id"]
        again = await call(host, "request_local_provider_access")
        assert again.data["session_id"] == first  # already granted: just reported
        await call(host, "release_access")
        renewed = await call(host, "request_local_provider_access", models=["my-agent"])
    assert renewed.status == "granted"
    assert renewed.data["session_id"] != first and renewed.data["models"] == ["my-agent"]


async def test_closing_the_host_connection_revokes_the_session(
    daemon: Daemon, tmp_path: Path
) -> None:
    async with mcp_host(daemon, tmp_path) as host:
        sid = (await call(host, "request_local_provider_access")).data["session_id"]
    assert daemon.state.registry.get(sid).state.value == "revoked"


async def test_scopes_other_than_inference_are_refused(daemon: Daemon, tmp_path: Path) -> None:
    async with mcp_host(daemon, tmp_path) as host:
        refused = await call(host, "request_local_provider_access", scopes=["embeddings"])
        bad_model = await call(host, "request_local_provider_access", models=["bad name!"])
    assert refused.is_error and "inference" in refused.text
    assert bad_model.is_error and "invalid model name" in bad_model.text
    assert list(daemon.state.registry) == []


async def test_unreachable_daemon_is_reported_with_a_hint(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon = await start_daemon()
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{probe.getsockname()[1]}/agent"
    async with mcp_host(daemon, tmp_path, options={"url": url}) as host:
        answer = await call(host, "request_local_provider_access")
    assert answer.is_error and answer.data["reason"] == "refused"
    assert "mcp-local-provider serve" in answer.text


async def test_tools_work_on_a_connection_of_the_newest_revision(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    async with mcp_host(daemon, tmp_path, mode="auto") as host:
        assert host.session.protocol_version == "2026-07-28"
        await call(host, "request_local_provider_access")
        ask = asyncio.create_task(
            openai_client(daemon).chat.completions.create(model="mcp-agent", messages=CHAT)
        )
        rid = (await next_request(host)).data["request_id"]
        await call(host, "respond", request_id=rid, content="modern hello")
        reply = await ask
    assert reply.choices[0].message.content == "modern hello"


async def test_prompt_explains_the_serving_loop(daemon: Daemon, tmp_path: Path) -> None:
    async with mcp_host(daemon, tmp_path) as host:
        prompts = [p.name for p in (await host.list_prompts()).prompts]
        prompt = await host.get_prompt("serve_as_local_model")
    text = prompt.messages[0].content.text  # type: ignore[union-attr]
    assert prompts == ["serve_as_local_model"]
    for step in (
        "request_local_provider_access",
        "next_request",
        "respond_partial",
        "respond(",
        "decline",
        "cancelled",
        "release_access",
    ):
        assert step in text


async def test_status_before_anything_says_to_request_access(
    daemon: Daemon, tmp_path: Path
) -> None:
    async with mcp_host(daemon, tmp_path) as host:
        status = await wait_status(host, "none")
    assert "request_local_provider_access" in status.text
    assert status.data["mode"] == "tools" and status.data["daemon"] == daemon.ws_url


async def test_tool_schemas_are_plain_and_declare_no_output_schema(
    daemon: Daemon, tmp_path: Path
) -> None:
    async with mcp_host(daemon, tmp_path) as host:
        tools = (await host.list_tools()).tools
    assert sorted(t.name for t in tools) == [
        "decline",
        "next_request",
        "provider_status",
        "release_access",
        "request_local_provider_access",
        "respond",
        "respond_partial",
    ]
    for tool in tools:
        assert tool.output_schema is None  # hosts would then demand structuredContent to match
        assert tool.description and len(tool.description) > 80
        text = json.dumps(tool.input_schema)
        for construct in ("$ref", "$defs", "anyOf", "oneOf", "allOf"):
            assert construct not in text, (tool.name, construct)
        for name, prop in tool.input_schema.get("properties", {}).items():
            assert prop.get("type") and prop.get("description"), (tool.name, name)


async def test_agent_fills_in_the_middle_for_a_completion_request(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    async with mcp_host(daemon, tmp_path) as host:
        await call(host, "request_local_provider_access")
        ask = asyncio.create_task(
            openai_client(daemon).completions.create(
                model="mcp-agent",
                prompt="def add(a, b):\n    ",
                suffix="\n\nprint(add(1, 2))",
                max_tokens=20,
            )
        )
        request = await next_request(host)
        assert request.data["kind"] == "completion"
        assert request.data["prompt"] == "def add(a, b):\n    "
        assert request.data["suffix"] == "\n\nprint(add(1, 2))"
        assert "text before the cursor" in request.text
        await call(host, "respond", request_id=request.data["request_id"], content="return a + b")
        reply = await ask
    assert reply.choices[0].text == "return a + b"


async def test_editor_offering_tools_gets_a_text_answer(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    tool = {"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}
    async with mcp_host(daemon, tmp_path) as host:
        await call(host, "request_local_provider_access")
        ask = asyncio.create_task(
            openai_client(daemon).chat.completions.create(
                model="mcp-agent",
                messages=CHAT,
                tools=[tool],  # type: ignore[list-item]
            )
        )
        request = await next_request(host)
        assert request.data["editor_tools"] == ["read_file"]
        await call(host, "respond", request_id=request.data["request_id"], content="no tools")
        reply = await ask
    assert reply.choices[0].message.content == "no tools"
    assert not reply.choices[0].message.tool_calls
