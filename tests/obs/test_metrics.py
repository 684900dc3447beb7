"""Metrics move by the right amount for real requests (answered, refused, timed out, cancelled,
cut off by the agent), read through the registry each app owns."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import prometheus_client
import pytest
from aiohttp import web

from mcp_local_provider.core import errors
from mcp_local_provider.http.app import create_app
from mcp_local_provider.http.state import SCOPE, STATE
from mcp_local_provider.obs.labels import REJECT_REASONS
from mcp_local_provider.obs.metrics import Metrics
from tests.fakes import BRIDGE_TOKEN, Daemon, RawAgent, make_config, until
from tests.readings import CHAT, Meter, chat, granted_raw_agent

RawAgentFactory = Callable[[Daemon], Awaitable[RawAgent]]


async def post(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, bytes]:
    async with http.post(url, json=body) as response:
        return response.status, await response.read()


async def answer(agent: RawAgent, *, chunks: list[str], usage: dict[str, int] | None = None) -> str:
    """Read one invoke and stream ``chunks`` back, the last one finishing the answer."""
    invoke = await agent.recv()
    assert invoke["type"] == "model_invoke", invoke
    for index, text in enumerate(chunks):
        last = index == len(chunks) - 1
        await agent.send(
            {
                "type": "model_stream_chunk",
                "id": invoke["id"],
                "delta": {"content": text},
                "finish_reason": "stop" if last else None,
                "usage": usage if last else None,
            }
        )
    return str(invoke["id"])


async def test_answered_stream_counts_request_call_chunks_and_tokens(
    daemon: Daemon, raw_agent: RawAgentFactory, http: aiohttp.ClientSession
) -> None:
    meter = Meter(daemon)
    agent = await raw_agent(daemon)
    await granted_raw_agent(agent)
    labels = {"family": "openai", "route": CHAT, "method": "POST", "model": "raw"}
    before = {
        "requests": meter("requests_total", **labels, status="200"),
        "calls": meter("relay_calls_total", model="raw", outcome="ok"),
        "chunks": meter("stream_chunks_total", model="raw"),
        "prompt": meter("prompt_tokens_total", model="raw"),
        "completion": meter("completion_tokens_total", model="raw"),
        "duration": meter("request_duration_seconds_count", family="openai", route=CHAT),
    }
    request = asyncio.create_task(post(http, daemon.url + CHAT, chat(stream=True)))
    await answer(agent, chunks=["a", "b", "c"], usage={"prompt_tokens": 11, "completion_tokens": 7})
    status, body = await request
    assert status == 200 and body.endswith(b"data: [DONE]\n\n")
    assert meter("requests_total", **labels, status="200") - before["requests"] == 1
    assert meter("relay_calls_total", model="raw", outcome="ok") - before["calls"] == 1
    assert meter("stream_chunks_total", model="raw") - before["chunks"] == 3
    assert meter("prompt_tokens_total", model="raw") - before["prompt"] == 11
    assert meter("completion_tokens_total", model="raw") - before["completion"] == 7
    duration = meter("request_duration_seconds_count", family="openai", route=CHAT)
    assert duration - before["duration"] == 1


async def test_unknown_models_are_labelled_other_and_aliases_count_as_their_model(
    start_daemon: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(models={"aliases": {"fast-coder": "echo"}})
    await daemon.start_agent()
    meter = Meter(daemon)
    status, _ = await post(http, daemon.url + CHAT, chat(model="made-up-model-4711"))
    assert status == 404
    labels = {"family": "openai", "route": CHAT, "method": "POST"}
    assert meter("requests_total", **labels, model="other", status="404") == 1
    status, _ = await post(http, daemon.url + CHAT, chat(model="fast-coder"))
    assert status == 200
    assert meter("requests_total", **labels, model="echo", status="200") == 1
    assert meter("relay_calls_total", model="echo", outcome="ok") == 1
    text = prometheus_client.generate_latest(daemon.state.metrics.registry).decode()
    assert "made-up-model-4711" not in text


async def test_no_active_session_is_a_503_without_a_relay_call(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    meter = Meter(daemon)
    status, _ = await post(http, daemon.url + CHAT, chat(model="echo"))
    assert status == 503
    labels = {"family": "openai", "route": CHAT, "method": "POST", "model": "other"}
    assert meter("requests_total", **labels, status="503") == 1
    assert meter("relay_calls_total", model="other", outcome="ok") == 0
    assert sum(meter("rejected_total", reason=r) for r in REJECT_REASONS) == 0


async def test_invalid_json_is_a_validation_rejection(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    meter = Meter(daemon)
    async with http.post(daemon.url + CHAT, data=b"{not json") as response:
        assert response.status == 400
    assert meter("rejected_total", reason="validation") == 1
    labels = {"family": "openai", "route": CHAT, "method": "POST", "model": "other"}
    assert meter("requests_total", **labels, status="400") == 1


async def test_missing_bridge_token_is_an_auth_rejection_on_control_and_agent(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    meter = Meter(daemon)
    async with http.get(daemon.url + "/control/sessions") as response:
        assert response.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(daemon.ws_url, headers={"Authorization": "Bearer wrong"})
    assert meter("rejected_total", reason="auth") == 2
    assert (
        meter(
            "requests_total",
            family="agent",
            route="/agent",
            method="GET",
            model="other",
            status="401",
        )
        == 1
    )


async def test_oversized_body_is_a_size_rejection(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    meter = Meter(daemon)
    body = b'{"model": "echo", "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    async with http.post(daemon.url + CHAT, data=io.BytesIO(body)) as response:
        assert response.status == 413
    assert meter("rejected_total", reason="size") == 1


async def test_guard_that_reports_its_rejection_is_counted_once(
    aiohttp_server: Any, tmp_path: Any, http: aiohttp.ClientSession
) -> None:
    app = create_app(make_config(tmp_path), bridge_token=BRIDGE_TOKEN, approval="auto")

    @web.middleware
    async def host_guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("X-Test-Refuse"):
            request.app[STATE].metrics.rejected("host", request[SCOPE])
            raise errors.Unauthorized("refused by the test guard")
        return await handler(request)

    app.middlewares.append(host_guard)
    server = await aiohttp_server(app)
    async with http.get(server.make_url("/v1/models"), headers={"X-Test-Refuse": "1"}) as r:
        assert r.status == 401
    meter = Meter(Daemon(server=server, app=app))
    assert meter("rejected_total", reason="host") == 1
    assert meter("rejected_total", reason="auth") == 0  # the 401 is not counted a second time


def test_rejected_refuses_an_unknown_reason() -> None:
    metrics = Metrics(prometheus_client.CollectorRegistry(), process=False)
    with pytest.raises(ValueError, match="unknown rejection reason"):
        metrics.rejected("because")


def test_audit_write_failures_are_counted_through_the_hook() -> None:
    registry = prometheus_client.CollectorRegistry()
    metrics = Metrics(registry, process=False)
    assert (
        registry.get_sample_value("mcp_local_provider_audit_write_failures_total") == 0
    )  # exported before the first failure, so alerts can use it
    metrics.audit_write_failed()
    metrics.audit_write_failed()
    assert registry.get_sample_value("mcp_local_provider_audit_write_failures_total") == 2


async def test_first_chunk_timeout_is_counted_by_phase(
    start_daemon: Any, raw_agent: RawAgentFactory, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(first_chunk_timeout=0.2)
    meter = Meter(daemon)
    agent = await raw_agent(daemon)
    await granted_raw_agent(agent)
    request = asyncio.create_task(post(http, daemon.url + CHAT, chat()))
    assert (await agent.recv())["type"] == "model_invoke"  # and never answer
    status, _ = await request
    assert status == 504
    assert meter("timeouts_total", phase="first_chunk") == 1
    assert meter("timeouts_total", phase="idle") == 0
    assert meter("relay_calls_total", model="raw", outcome="timeout") == 1


async def test_idle_timeout_mid_stream_is_counted_by_phase(
    start_daemon: Any, raw_agent: RawAgentFactory, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(idle_timeout=0.2)
    meter = Meter(daemon)
    agent = await raw_agent(daemon)
    await granted_raw_agent(agent)
    request = asyncio.create_task(post(http, daemon.url + CHAT, chat(stream=True)))
    invoke = await agent.recv()
    await agent.send({"type": "model_stream_chunk", "id": invoke["id"], "delta": {"content": "x"}})
    status, body = await request
    assert status == 200 and b'"code":"timeout"' in body  # reported in-band
    assert meter("timeouts_total", phase="idle") == 1
    assert meter("relay_calls_total", model="raw", outcome="timeout") == 1
    assert meter("stream_chunks_total", model="raw") == 1


async def test_queue_timeout_is_counted_when_every_slot_is_busy(
    start_daemon: Any, raw_agent: RawAgentFactory, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(first_chunk_timeout=0.3)
    meter = Meter(daemon)
    agent = await raw_agent(daemon)
    await granted_raw_agent(agent, max_concurrency=1)
    first = asyncio.create_task(post(http, daemon.url + CHAT, chat(stream=True)))
    invoke = await agent.recv()
    chunk = {"type": "model_stream_chunk", "id": invoke["id"], "delta": {"content": "x"}}
    await agent.send(chunk)  # the first call is streaming, so it holds the only slot
    status, _ = await post(http, daemon.url + CHAT, chat())
    assert status == 504
    assert meter("timeouts_total", phase="queue") == 1
    await agent.send({**chunk, "finish_reason": "stop"})
    assert (await first)[0] == 200
    assert meter("timeouts_total", phase="first_chunk") == 0
    assert meter("relay_calls_total", model="raw", outcome="timeout") == 0  # it never ran
    assert meter("relay_calls_total", model="raw", outcome="ok") == 1


async def test_client_disconnect_is_counted_as_cancelled(
    daemon: Daemon, raw_agent: RawAgentFactory
) -> None:
    meter = Meter(daemon)
    agent = await raw_agent(daemon)
    await granted_raw_agent(agent)
    async with aiohttp.ClientSession() as client:
        sending = asyncio.create_task(client.post(daemon.url + CHAT, json=chat(stream=True)))
        invoke = await agent.recv()
        await agent.send(
            {"type": "model_stream_chunk", "id": invoke["id"], "delta": {"content": "x"}}
        )
        response = await sending
        assert response.status == 200
        await response.content.readany()
        response.close()  # hang up mid-stream
    cancel = await agent.recv()
    assert cancel == {"type": "model_cancel", "id": invoke["id"], "reason": "client_disconnected"}
    await until(lambda: meter("requests_cancelled_total", family="openai") == 1)
    assert meter("relay_calls_total", model="raw", outcome="client_disconnected") == 1
    labels = {"family": "openai", "route": CHAT, "method": "POST", "model": "raw"}
    assert meter("requests_total", **labels, status="499") == 1
    assert meter("requests_in_flight", family="openai") == 0


async def test_agent_disconnect_fails_the_call_and_is_counted(
    daemon: Daemon, raw_agent: RawAgentFactory, http: aiohttp.ClientSession
) -> None:
    meter = Meter(daemon)
    agent = await raw_agent(daemon)
    await granted_raw_agent(agent)
    request = asyncio.create_task(post(http, daemon.url + CHAT, chat()))
    assert (await agent.recv())["type"] == "model_invoke"
    await agent.ws.close()
    status, _ = await request
    assert status == 502
    assert meter("relay_calls_total", model="raw", outcome="agent_disconnected") == 1
    assert meter("session_events_total", event="disconnected") == 1
    await until(lambda: meter("agent_connections_closed_total", code="1000") == 1)
    assert meter("agents_connected") == 0
    assert meter("sessions", state="active") == 1  # the session outlives the connection


async def test_in_flight_gauges_follow_a_request(
    daemon: Daemon, raw_agent: RawAgentFactory, http: aiohttp.ClientSession
) -> None:
    meter = Meter(daemon)
    agent = await raw_agent(daemon)
    await granted_raw_agent(agent)
    request = asyncio.create_task(post(http, daemon.url + CHAT, chat()))
    invoke = await agent.recv()
    assert meter("requests_in_flight", family="openai") == 1
    assert meter("relay_calls_in_flight") == 1
    await agent.send(
        {"type": "model_result", "id": invoke["id"], "result": {"choices": [{"message": {}}]}}
    )
    assert (await request)[0] == 200
    assert meter("requests_in_flight", family="openai") == 0
    assert meter("relay_calls_in_flight") == 0


async def test_timings_split_agent_time_from_daemon_overhead(
    daemon: Daemon, raw_agent: RawAgentFactory, http: aiohttp.ClientSession
) -> None:
    meter = Meter(daemon)
    agent = await raw_agent(daemon)
    await granted_raw_agent(agent)
    request = asyncio.create_task(post(http, daemon.url + CHAT, chat(stream=True)))
    invoke = await agent.recv()
    await asyncio.sleep(0.2)  # the agent "thinks"
    await agent.send(
        {
            "type": "model_stream_chunk",
            "id": invoke["id"],
            "delta": {"content": "x"},
            "finish_reason": "stop",
        }
    )
    assert (await request)[0] == 200
    assert meter("time_to_first_token_seconds_count", model="raw") == 1
    assert meter("time_to_first_token_seconds_sum", model="raw") >= 0.2
    assert meter("agent_duration_seconds_sum", model="raw") >= 0.2
    assert meter("relay_overhead_seconds_count", family="openai") == 1
    overhead = meter("relay_overhead_seconds_sum", family="openai")
    total = meter("request_duration_seconds_sum", family="openai", route=CHAT)
    assert 0 < overhead < 0.1 < total  # the agent's 0.2 s is not the daemon's cost
    assert meter("queue_wait_seconds_count") == 1


async def test_failed_calls_record_no_relay_overhead(
    start_daemon: Any, raw_agent: RawAgentFactory, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(first_chunk_timeout=0.1)
    meter = Meter(daemon)
    agent = await raw_agent(daemon)
    await granted_raw_agent(agent)
    status, _ = await post(http, daemon.url + CHAT, chat())
    assert status == 504
    assert meter("relay_overhead_seconds_count", family="openai") == 0


async def test_session_gauges_are_read_at_scrape_time(
    start_daemon: Any, raw_agent: RawAgentFactory
) -> None:
    daemon = await start_daemon(approval="manual")
    meter = Meter(daemon)
    assert meter("sessions", state="pending") == 0
    agent = await raw_agent(daemon)
    pending = await agent.hello()
    assert meter("sessions", state="pending") == 1
    assert meter("agents_connected") == 0
    daemon.state.hub.approve(pending["session_id"])
    assert (await agent.recv())["type"] == "session_granted"
    assert meter("sessions", state="pending") == 0
    assert meter("sessions", state="active") == 1
    assert meter("agents_connected") == 1


async def test_session_events_are_counted(
    start_daemon: Any, raw_agent: RawAgentFactory, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(approval="manual")
    meter = Meter(daemon)
    denied, approved = await raw_agent(daemon), await raw_agent(daemon)
    denied_id = (await denied.hello())["session_id"]
    approved_id = (await approved.hello())["session_id"]
    assert meter("session_events_total", event="pending") == 2
    async with http.post(
        f"{daemon.url}/control/sessions/{denied_id}/deny", headers=daemon.auth
    ) as r:
        assert r.status == 200
    assert await denied.closed() == 4403
    async with http.post(
        f"{daemon.url}/control/sessions/{approved_id}/approve", headers=daemon.auth
    ) as r:
        assert r.status == 200
    assert (await approved.recv())["type"] == "session_granted"
    async with http.post(
        f"{daemon.url}/control/sessions/{approved_id}/revoke", headers=daemon.auth
    ) as r:
        assert r.status == 200
    assert await approved.closed() == 4408
    async with http.post(
        daemon.url + "/control/register",
        json={"agent_id": "pre", "ttl_seconds": 0.05},
        headers=daemon.auth,
    ) as r:
        assert r.status == 201
    await until(lambda: meter("session_events_total", event="expired") == 1)
    assert [
        meter("session_events_total", event=e)
        for e in ("approved", "denied", "revoked", "registered")
    ] == [1, 1, 1, 1]
    await until(lambda: meter("agent_connections_closed_total", code="4408") == 1)
    assert meter("agent_connections_closed_total", code="4403") == 1  # the denied agent


async def test_each_app_has_its_own_registry_and_the_global_one_stays_clean(
    tmp_path: Any,
) -> None:
    one = create_app(make_config(tmp_path), bridge_token=BRIDGE_TOKEN)
    two = create_app(make_config(tmp_path), bridge_token=BRIDGE_TOKEN)
    one[STATE].metrics.rejected("host")
    assert one[STATE].metrics.registry is not two[STATE].metrics.registry
    read = "mcp_local_provider_rejected_total"
    assert one[STATE].metrics.registry.get_sample_value(read, {"reason": "host"}) == 1
    assert two[STATE].metrics.registry.get_sample_value(read, {"reason": "host"}) == 0
    assert prometheus_client.REGISTRY.get_sample_value(read, {"reason": "host"}) is None


async def test_ollama_routes_are_counted_in_their_own_family(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    meter = Meter(echo_daemon)
    body = {"model": "echo", "messages": [{"role": "user", "content": "one two three"}]}
    async with http.post(echo_daemon.url + "/api/chat", json=body) as response:
        assert response.status == 200
        lines = (await response.read()).splitlines()
    labels = {"family": "ollama", "route": "/api/chat", "method": "POST", "model": "echo"}
    assert meter("requests_total", **labels, status="200") == 1
    assert meter("relay_calls_total", model="echo", outcome="ok") == 1
    assert meter("stream_chunks_total", model="echo") == len(lines)  # one NDJSON line a frame
    assert meter("relay_overhead_seconds_count", family="ollama") == 1
