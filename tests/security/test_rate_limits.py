"""Per-session rate limits: requests per minute, tokens per minute (from reported usage),
max_requests, and the concurrency cap with a bounded wait queue. Every relayed response says
where the session stands (X-RateLimit-*); a refusal is 429 with Retry-After."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

from mcp_local_provider.agent.backends.echo import EchoBackend
from mcp_local_provider.core import errors
from mcp_local_provider.http.middleware.errors import error_response
from mcp_local_provider.http.state import STATE
from mcp_local_provider.policy.rate_limits import TokenBucket, usage_tokens
from tests.fakes import until
from tests.security.helpers import audit_lines, chat_body

JSON = {"Content-Type": "application/json"}


async def chat(http: aiohttp.ClientSession, url: str, text: str = "hi", **extra: Any) -> Any:
    async with http.post(
        url + "/v1/chat/completions", data=chat_body(text, **extra), headers=JSON
    ) as response:
        return response.status, dict(response.headers), await response.read()


async def test_requests_per_minute_then_429_with_retry_after(
    start_daemon: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(requests_per_minute=2)
    await daemon.start_agent()
    first, second, third = [await chat(http, daemon.url) for _ in range(3)]
    assert first[0] == second[0] == 200
    assert first[1]["X-RateLimit-Limit"] == "2"
    assert (first[1]["X-RateLimit-Remaining"], second[1]["X-RateLimit-Remaining"]) == ("1", "0")
    assert int(second[1]["X-RateLimit-Reset"]) in range(55, 61)
    status, headers, body = third
    assert status == 429
    assert int(headers["Retry-After"]) in range(25, 31)
    assert headers["X-RateLimit-Remaining"] == "0"
    error = json.loads(body)["error"]
    assert (error["code"], error["type"]) == ("rate_limited", "rate_limit_error")
    outcomes = [line["outcome"] for line in await audit_lines(daemon) if line["event"] == "request"]
    assert outcomes == ["ok", "ok", "rate_limited"]


async def test_streamed_responses_carry_the_rate_limit_headers(
    start_daemon: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(requests_per_minute=50, tokens_per_minute=1000)
    await daemon.start_agent()
    status, headers, body = await chat(http, daemon.url, "one two", stream=True)
    assert status == 200 and body.endswith(b"data: [DONE]\n\n")
    assert headers["X-RateLimit-Limit"] == "50"
    assert headers["X-RateLimit-Remaining"] == "49"
    assert headers["X-RateLimit-Limit-Tokens"] == "1000"


async def test_errors_after_a_session_was_chosen_carry_the_headers_too(
    start_daemon: Any, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(requests_per_minute=5)
    agent = await raw_agent(daemon)
    frame = await agent.hello()
    if frame["type"] == "session_pending":
        await agent.recv()
    request = asyncio.create_task(chat(http, daemon.url, model="raw"))
    invoke = await agent.recv()
    await agent.send(
        {"type": "model_result", "id": invoke["id"], "status": "error",
         "error": {"code": "x", "message": "backend broke"}}
    )  # fmt: skip
    status, headers, _ = await request
    assert status == 502
    assert headers["X-RateLimit-Remaining"] == "4"


async def test_tokens_per_minute_from_reported_usage(
    start_daemon: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(tokens_per_minute=10)
    await daemon.start_agent()
    status, headers, _ = await chat(http, daemon.url, "a b c d e f")  # echo reports 12 tokens
    assert status == 200
    await until(lambda: daemon.state.router.in_flight == 0)
    status, headers, _ = await chat(http, daemon.url)
    assert status == 429
    assert headers["X-RateLimit-Remaining-Tokens"] == "0"
    assert int(headers["Retry-After"]) >= 12  # 2 tokens in debt and 1 needed, at 10 a minute


async def test_max_requests_over_the_session_life(
    start_daemon: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(max_requests=1)
    await daemon.start_agent()
    assert (await chat(http, daemon.url))[0] == 200
    status, _, body = await chat(http, daemon.url)
    assert status == 429 and b"session_limit_reached" in body


async def test_concurrency_cap_with_a_bounded_wait_queue(
    start_daemon: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(max_concurrency=1, max_queued_requests=1)
    await daemon.start_agent(EchoBackend(delay=0.05))
    router = daemon.state.router
    running = asyncio.create_task(chat(http, daemon.url, "one two three four"))
    await until(lambda: router.in_flight == 1)
    queued = asyncio.create_task(chat(http, daemon.url, "five six"))
    await until(lambda: router.waiting == 1)
    status, headers, body = await chat(http, daemon.url)
    assert status == 429
    assert headers["Retry-After"] == "1"
    assert b"wait queue is full" in body
    assert (await running)[0] == 200
    assert (await queued)[0] == 200


def test_429_in_the_ollama_shape_has_retry_after() -> None:
    request = make_mocked_request("POST", "/api/chat")
    error = errors.RateLimited("slow down", retry_after=2.2, headers={"X-RateLimit-Limit": "3"})
    response = error_response(request, error)
    assert response.status == 429
    assert response.headers["Retry-After"] == "3"
    assert response.headers["X-RateLimit-Limit"] == "3"
    assert response.body is not None and json.loads(bytes(response.body)) == {"error": "slow down"}


def test_token_bucket_refills_and_allows_debt() -> None:
    bucket = TokenBucket(60, 60.0, now=0.0)
    assert bucket.delay(0.0) == 0
    bucket.take(0.0, 60)
    assert bucket.delay(0.0) == pytest.approx(1.0)
    assert bucket.remaining(0.5) == 0
    assert bucket.remaining(10.0) == 10
    bucket.take(10.0, 30)  # reported after the fact: the level may go below zero
    assert bucket.delay(10.0) == pytest.approx(21.0)
    assert bucket.full_in(100.0) == 0


@pytest.mark.parametrize(
    ("usage", "tokens"),
    [
        ({"total_tokens": 7}, 7),
        ({"prompt_tokens": 3, "completion_tokens": 4}, 7),
        ({"total_tokens": "7"}, 0),
        ({"total_tokens": True}, 0),
        ({"total_tokens": -5}, 0),
        (None, 0),
    ],
)
def test_usage_tokens(usage: Any, tokens: int) -> None:
    assert usage_tokens(usage) == tokens


async def test_a_limited_session_does_not_hold_up_another(
    start_daemon: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(requests_per_minute=1)
    await daemon.start_agent(agent_id="first")
    await daemon.start_agent(agent_id="second")
    statuses = [(await chat(http, daemon.url))[0] for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert daemon.app[STATE].security.throttle.requests_per_minute == 1


async def test_429_on_an_ollama_route_is_in_the_ollama_shape(
    start_daemon: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(requests_per_minute=1)
    await daemon.start_agent()
    body = {"model": "echo", "stream": False, "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(daemon.url + "/api/chat", json=body) as response:
        assert response.status == 200
        assert response.headers["X-RateLimit-Remaining"] == "0"
    async with http.post(daemon.url + "/api/chat", json=body) as response:
        assert response.status == 429
        assert int(response.headers["Retry-After"]) >= 50
        error = (await response.json())["error"]
    assert isinstance(error, str) and "rate limit" in error
