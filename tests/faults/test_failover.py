"""Never stranded: failover across sessions before the first byte, quota cool-down, fallback
models and routing, each against a real daemon with real WebSocket agents (library agents with
echo or fault-injecting backends, and hand-driven third-party agents)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mcp_local_provider.agent import Backend, BackendError, BackendEvent, InvokeRequest
from mcp_local_provider.agent.backends.echo import EchoBackend
from mcp_local_provider.agent.quota import QuotaError, QuotaSignal
from mcp_local_provider.core.config import ConfigError, load_config
from mcp_local_provider.core.registry import Session
from tests.conftest import StartDaemon
from tests.fakes import Daemon, until
from tests.faults.live import CHAT, chunk, metrics, next_of, raw_agent_at, total

MESSAGES = [{"role": "user", "content": "hello there"}]


class Refusing(EchoBackend):
    """Echoes, but raises ``error`` for its first ``times`` requests (then answers)."""

    def __init__(self, error: BackendError, times: int = 1_000_000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error
        self.times = times
        self.seen = 0

    async def run(self, request: InvokeRequest) -> AsyncIterator[BackendEvent]:
        self.seen += 1
        if self.seen <= self.times:
            raise self.error
        async for event in super().run(request):
            yield event


def quota(retry_after: float | None = 30.0) -> QuotaError:
    return QuotaError("the vendor says: usage limit reached", QuotaSignal(retry_after))


def session_of(daemon: Daemon, agent_id: str) -> Session:
    return next(s for s in daemon.state.registry if s.agent_id == agent_id)


async def ask(
    http: aiohttp.ClientSession,
    daemon: Daemon,
    model: str = "echo",
    *,
    stream: bool = False,
    path: str = CHAT,
    text: str = "hello there",
) -> tuple[int, dict[str, str], str]:
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}
    if path == "/v1/messages":
        body["max_tokens"] = 64
    async with http.post(daemon.url + path, json=body) as response:
        return response.status, dict(response.headers), await response.text()


async def two(
    daemon: Daemon, first: Backend, second: Backend | None = None
) -> tuple[Session, Session]:
    """Two library agents serving ``echo``: ``first`` connects first (the older session)."""
    await daemon.start_agent(first, agent_id="first")
    await daemon.start_agent(second or EchoBackend(), agent_id="second")
    return session_of(daemon, "first"), session_of(daemon, "second")


# -- failover before the first byte -----------------------------------------------------------


async def test_a_quota_refusal_moves_the_request_to_another_session_and_cools_the_first(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    first, second = await two(daemon, Refusing(quota(30)))
    status, headers, text = await ask(http, daemon)
    assert status == 200, text
    assert json.loads(text)["choices"][0]["message"]["content"] == "hello there"
    assert first.cooling_left(time.time()) > 25 and second.cooling_left(time.time()) == 0
    assert first.cooling_code == "rate_limited"
    # Routing skips the cooling session: the next request goes straight to the other one.
    await ask(http, daemon)
    assert (first.requests, second.requests) == (1, 2)
    samples = await metrics(http, daemon.url)
    assert total(samples, "failovers_total", reason="quota") == 1
    assert "X-MCP-Served-Model" not in headers  # the asked model served it


async def test_a_retryable_error_before_the_first_byte_is_retried_on_another_session(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    await two(daemon, Refusing(BackendError("the CLI is overloaded", "overloaded")))
    status, _, text = await ask(http, daemon, stream=True)
    assert status == 200
    assert "hello" in text and "error" not in text
    samples = await metrics(http, daemon.url)
    assert total(samples, "failovers_total", reason="retryable") == 1


async def test_an_ordinary_agent_error_is_not_retried(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    first, second = await two(daemon, Refusing(BackendError("bad prompt", "backend_error")))
    status, _, text = await ask(http, daemon)
    assert status == 502 and "bad prompt" in text
    assert second.requests == 0 and first.cooling_until is None


async def test_an_agent_that_drops_before_its_first_chunk_is_failed_over_invisibly(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    raw, _ = await raw_agent_at(http, daemon.url, model="echo")
    await daemon.start_agent(agent_id="second")
    second = session_of(daemon, "second")
    asking = asyncio.create_task(ask(http, daemon, stream=True))
    await next_of(raw, "model_invoke")
    await raw.ws.close()  # gone before answering (a plain close: it may come back)
    status, _, text = await asking
    assert status == 200 and "hello" in text and "error" not in text
    assert second.requests == 1
    samples = await metrics(http, daemon.url)
    assert total(samples, "failovers_total", reason="disconnected") == 1


async def test_nothing_is_retried_once_the_first_byte_was_sent(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    raw, _ = await raw_agent_at(http, daemon.url, model="echo")
    await daemon.start_agent(agent_id="second")
    second = session_of(daemon, "second")
    asking = asyncio.create_task(ask(http, daemon, stream=True))
    invoke = await next_of(raw, "model_invoke")
    await raw.send(chunk(invoke["id"], "Hel"))
    await raw.send(
        {
            "type": "model_result",
            "id": invoke["id"],
            "status": "error",
            "error": {"code": "rate_limited", "message": "limit", "retry_after": 60},
        }
    )
    status, _, text = await asking
    assert status == 200 and "Hel" in text and "limit" in text  # the in-band error stands
    assert second.requests == 0
    [first] = [s for s in daemon.state.registry if s.agent_id == "raw-agent"]
    assert first.cooling_left(time.time()) > 50  # the refusal still cools the session


async def test_a_request_the_editor_cancelled_is_never_retried(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    raw, _ = await raw_agent_at(http, daemon.url, model="echo")
    await daemon.start_agent(agent_id="second")
    second = session_of(daemon, "second")
    asking = asyncio.create_task(ask(http, daemon, stream=True))
    invoke = await next_of(raw, "model_invoke")
    asking.cancel()
    cancel = await next_of(raw, "model_cancel")
    assert cancel["id"] == invoke["id"]
    await raw.ws.close()
    await asyncio.sleep(0.1)
    assert second.requests == 0


async def test_failover_attempts_bound_the_retries(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(models={"failover_attempts": 1})
    overloaded = BackendError("overloaded", "overloaded")
    for name in ("a", "b", "c"):
        await daemon.start_agent(Refusing(overloaded), agent_id=name)
    status, _, text = await ask(http, daemon)
    assert status == 502 and "overloaded" in text
    assert sum(s.requests for s in daemon.state.registry) == 2  # the first and one more


# -- quota cool-down --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        (CHAT, lambda body: body["error"]["code"] == "quota_exhausted"),
        ("/v1/messages", lambda body: body["error"]["type"] == "rate_limit_error"),
        ("/api/chat", lambda body: "cooling down" in body["error"]),
    ],
)
async def test_with_nothing_left_the_editor_gets_429_with_retry_after_in_its_dialect(
    daemon: Daemon, http: aiohttp.ClientSession, path: str, shape: Any
) -> None:
    await daemon.start_agent(Refusing(quota(120)), agent_id="only")
    status, headers, text = await ask(http, daemon, path=path)
    assert status == 429, text
    assert 110 <= int(headers["Retry-After"]) <= 121
    assert shape(json.loads(text))


async def test_a_cooling_session_serves_again_after_its_reset(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    backend = Refusing(quota(0.3), times=1)
    await daemon.start_agent(backend, agent_id="only")
    status, headers, _ = await ask(http, daemon)
    assert status == 429 and headers["Retry-After"] == "1"
    status, _, _ = await ask(http, daemon)
    assert status == 429  # still cooling: the agent was not even asked
    assert backend.seen == 1
    only = session_of(daemon, "only")
    await until(lambda: only.cooling_left(time.time()) == 0)
    status, _, text = await ask(http, daemon)
    assert status == 200, text
    assert only.strikes == 0  # an answer resets the backoff


async def test_without_a_reset_time_the_cool_down_grows_with_each_refusal(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(models={"cooldown_initial": 0.2, "cooldown_max": 10})
    await daemon.start_agent(Refusing(quota(None)), agent_id="only")
    only = session_of(daemon, "only")
    lengths = []
    for _ in range(3):
        await until(lambda: only.cooling_left(time.time()) == 0)
        started = time.time()
        await ask(http, daemon)
        lengths.append((only.cooling_until or 0) - started)
    assert lengths[0] < lengths[1] < lengths[2]
    assert 0.15 < lengths[0] < 0.3 and 0.7 < lengths[2] < 0.9


async def test_cooling_shows_in_the_control_api_and_metrics(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    await daemon.start_agent(Refusing(quota(300)), agent_id="only")
    await ask(http, daemon)
    async with http.get(daemon.url + "/control/sessions", headers=daemon.auth) as response:
        [listed] = (await response.json())["sessions"]
    assert listed["cooling"] is True and 290 < listed["cooling_left"] <= 300
    assert listed["cooling_reason"] == "rate_limited"
    samples = await metrics(http, daemon.url)
    only = session_of(daemon, "only")
    left = total(samples, "session_cooling_seconds", session_id=only.id)
    assert 290 < left <= 300


# -- fallback models ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [CHAT, "/v1/messages", "/api/chat", "/v1/completions"])
async def test_a_model_no_session_serves_is_answered_by_its_fallback_which_the_answer_names(
    start_daemon: StartDaemon, http: aiohttp.ClientSession, path: str
) -> None:
    daemon = await start_daemon(models={"fallbacks": {"claude-code": ["codex", "echo"]}})
    await daemon.start_agent(agent_id="echo")
    async with http.get(daemon.url + "/v1/models") as response:
        listed = [m["id"] for m in (await response.json())["data"]]
    assert listed == ["echo", "claude-code"]  # offered while a fallback serves it
    for stream in (False, True):
        if path == "/v1/completions":
            body: dict[str, Any] = {"model": "claude-code", "prompt": "hi", "stream": stream}
            async with http.post(daemon.url + path, json=body) as response:
                status, headers, text = response.status, response.headers, await response.text()
        else:
            status, headers, text = await ask(http, daemon, "claude-code", stream=stream, path=path)
        assert status == 200, text
        assert headers["X-MCP-Served-Model"] == "echo"
        assert '"model":"echo"' in text.replace(" ", "")
        assert "claude-code" not in text


async def test_when_every_session_of_a_model_is_cooling_its_fallback_serves(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(models={"fallbacks": {"main": ["echo"]}})
    await daemon.start_agent(Refusing(quota(60), models=["main"]), agent_id="main")
    await daemon.start_agent(agent_id="spare")
    status, headers, text = await ask(http, daemon, "main")
    assert status == 200, text
    assert headers["X-MCP-Served-Model"] == "echo"
    assert json.loads(text)["model"] == "echo"
    audit = daemon.state.security.audit
    await audit.drain()
    text = await asyncio.to_thread(Path(audit.path).read_text)
    lines = [json.loads(line) for line in text.splitlines()]
    [failover] = [line for line in lines if line.get("event") == "failover"]
    assert failover["reason"] == "quota" and failover["model"] == "main"
    [request] = [line for line in lines if line.get("event") == "request"]
    assert request["model"] == "main" and request["served_model"] == "echo"
    assert request["failovers"] == 1


def test_a_fallback_loop_is_refused_at_start_up_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[models.fallbacks]\n"a" = ["b"]\n"b" = ["c"]\n"c" = ["a"]\n')
    with pytest.raises(ConfigError, match="a -> b -> c -> a"):
        load_config(path, environ={})


# -- choosing a session ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("routing", "expected"),
    [("round-robin", (3, 3)), ("fill-first", (6, 0)), ("least-busy", (3, 3))],
)
async def test_the_routing_policy_decides_which_free_session_serves(
    start_daemon: StartDaemon, http: aiohttp.ClientSession, routing: str, expected: tuple[int, int]
) -> None:
    daemon = await start_daemon(models={"routing": routing})
    first, second = await two(daemon, EchoBackend())
    for n in range(6):
        status, _, _ = await ask(http, daemon, text=f"question {n}")  # six conversations
        assert status == 200
    assert (first.requests, second.requests) == expected


async def test_a_conversation_stays_on_the_session_that_served_it(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(models={"routing": "round-robin"})
    first, second = await two(daemon, EchoBackend())
    for _ in range(4):
        assert (await ask(http, daemon, text="the same conversation"))[0] == 200
    assert sorted((first.requests, second.requests)) == [0, 4]
    # While its session cools down, the conversation moves on rather than waiting.
    served = first if first.requests else second
    served.cool(time.time(), 60, "rate_limited")
    assert (await ask(http, daemon, text="the same conversation"))[0] == 200
    assert sorted((first.requests, second.requests)) == [1, 4]
