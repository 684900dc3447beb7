"""Logs: one JSON event per line off a TTY, request and session ids on every line about a
request, uvicorn-style access lines without query strings, and never a prompt or a token."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from mcp_local_provider.obs.logs import BoundOnce, configure
from tests.fakes import BRIDGE_TOKEN, Daemon, RawAgent, make_config
from tests.readings import CHAT, granted_raw_agent

PROMPT_CANARY = "CANARY-PROMPT-5b1e"
KEY_CANARY = "CANARY-KEY-77d0"
QUERY_CANARY = "CANARY-QUERY-c4a2"

Capture = Callable[..., io.StringIO]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def capture_logs(tmp_path: Path) -> Iterator[Capture]:
    """``capture_logs(**config)``: route every log line to a buffer; restored afterwards."""
    root = logging.getLogger()
    level = root.level
    before = structlog.get_config()
    handlers: list[logging.Handler] = []

    def start(tty: bool = False, **overrides: Any) -> io.StringIO:
        stream: io.StringIO = _Tty() if tty else io.StringIO()
        handlers.append(configure(make_config(tmp_path, **overrides), stream))
        return stream

    yield start
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger("mcp_local_provider").setLevel(logging.NOTSET)
    logging.getLogger("aiohttp.access").setLevel(logging.NOTSET)
    structlog.configure(**before)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def access_lines(stream: io.StringIO, path: str) -> list[dict[str, Any]]:
    return [
        e
        for e in lines(stream)
        if e.get("logger") == "mcp_local_provider.access" and e.get("path") == path
    ]


async def test_access_line_is_uvicorn_style_json_with_ids_and_no_query(
    echo_daemon: Daemon, capture_logs: Capture, http: aiohttp.ClientSession
) -> None:
    out = capture_logs(log_format="json")
    async with http.post(
        f"{echo_daemon.url}{CHAT}?trace={QUERY_CANARY}",
        json={"model": "echo", "messages": [{"role": "user", "content": PROMPT_CANARY}]},
        headers={"Authorization": f"Bearer {KEY_CANARY}"},
    ) as response:
        assert response.status == 200
        request_id = response.headers["X-Request-Id"]
    (line,) = access_lines(out, CHAT)
    assert re.fullmatch(
        r'127\.0\.0\.1:\d+ - "POST /v1/chat/completions HTTP/1\.1" 200', line["event"]
    )
    assert line["request_id"] == request_id
    (active,) = [s for s in echo_daemon.state.registry if s.connected]
    assert line["session_id"] == active.id
    assert line["status"] == 200 and line["method"] == "POST" and line["model"] == "echo"
    assert line["duration_ms"] > 0 and line["level"] == "info"
    assert {"timestamp", "logger"} <= line.keys()


async def test_logs_never_carry_prompts_keys_or_tokens(
    echo_daemon: Daemon, capture_logs: Capture, http: aiohttp.ClientSession
) -> None:
    out = capture_logs(log_format="json", log_level="debug")
    for stream in (False, True):
        async with http.post(
            f"{echo_daemon.url}{CHAT}?q={QUERY_CANARY}",
            json={
                "model": "echo",
                "stream": stream,
                "messages": [{"role": "user", "content": PROMPT_CANARY}],
            },
            headers={"Authorization": f"Bearer {KEY_CANARY}"},
        ) as response:
            assert PROMPT_CANARY in await response.text()  # the agent did see it
    async with http.post(echo_daemon.url + CHAT, data=b'{"model": "' + PROMPT_CANARY.encode()):
        pass  # a request so broken that only its raw bytes could leak the canary
    client, _ = echo_daemon.agents[0]
    text = out.getvalue()
    assert len(access_lines(out, CHAT)) == 3
    for secret in (PROMPT_CANARY, KEY_CANARY, QUERY_CANARY, BRIDGE_TOKEN, client.session_token):
        assert secret and secret not in text


async def test_every_line_about_a_call_shares_the_request_and_session_ids(
    daemon: Daemon,
    capture_logs: Capture,
    raw_agent: Callable[[Daemon], Any],
    http: aiohttp.ClientSession,
) -> None:
    out = capture_logs(log_format="json", log_level="debug")
    agent: RawAgent = await raw_agent(daemon)
    session_id = await granted_raw_agent(agent)

    async def ask() -> str:
        async with http.post(
            daemon.url + CHAT, json={"model": "raw", "messages": [{"role": "user", "content": "x"}]}
        ) as response:
            assert response.status == 200
            return response.headers["X-Request-Id"]

    asking = asyncio.create_task(ask())
    invoke = await agent.recv()
    await agent.send({"type": "model_result", "id": invoke["id"], "result": {"choices": []}})
    request_id = await asking
    assert invoke["id"] == request_id  # the agent, the logs and the client share one id
    about = [e for e in lines(out) if e.get("request_id") == request_id]
    assert {e["event"].split(" ")[0] for e in about} >= {"call_settled"}
    assert len(about) == 2  # the settled call and the access line
    assert all(e["session_id"] == session_id for e in about)


async def test_library_records_become_single_json_lines(capture_logs: Capture) -> None:
    out = capture_logs(log_format="json")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("aiohttp.server").exception("Error handling request")
    logging.getLogger("aiohttp.server").info("below the library threshold")
    (line,) = lines(out)
    assert line["event"] == "Error handling request" and line["level"] == "error"
    assert line["logger"] == "aiohttp.server"
    assert "RuntimeError: boom" in line["exception"]


async def test_console_format_on_a_terminal_and_level_from_config(capture_logs: Capture) -> None:
    out = capture_logs(tty=True, log_level="warning")
    log = structlog.get_logger("mcp_local_provider.test")
    log.info("quiet_event")
    log.warning("loud_event", session_id="sess-1")
    text = out.getvalue()
    assert "quiet_event" not in text
    assert "loud_event" in text and "sess-1" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


async def test_sensitive_fields_are_redacted(capture_logs: Capture) -> None:
    out = capture_logs(log_format="json")
    structlog.get_logger("mcp_local_provider.test").info(
        "careless", prompt=PROMPT_CANARY, session_token=KEY_CANARY, model="echo"
    )
    (line,) = lines(out)
    assert line["prompt"] == line["session_token"] == "[redacted]"
    assert line["model"] == "echo"


async def test_probes_log_at_debug_and_access_lines_can_be_turned_off(
    start_daemon: Any, capture_logs: Capture, http: aiohttp.ClientSession
) -> None:
    quiet = await start_daemon(access_log=False)
    out = capture_logs(log_format="json")
    async with http.get(quiet.url + "/v1/models") as response:
        assert response.status == 200
    assert access_lines(out, "/v1/models") == []
    loud = await start_daemon()
    for path, status in (("/health", 200), ("/health/ready", 503), ("/metrics", 200)):
        async with http.get(loud.url + path) as response:
            assert response.status == status  # no agent yet: not ready
    async with http.get(loud.url + "/v1/models") as response:
        assert response.status == 200
    for probe in ("/health", "/health/ready", "/metrics"):
        assert access_lines(out, probe) == [], probe
    assert len(access_lines(out, "/v1/models")) == 1
    debug = capture_logs(log_format="json", log_level="debug")
    async with http.get(loud.url + "/health/ready") as response:
        assert response.status == 503
    (line,) = access_lines(debug, "/health/ready")
    assert line["level"] == "debug" and line["status"] == 503


def test_a_logger_bound_once_follows_a_new_configuration(capture_logs: Capture) -> None:
    logger = BoundOnce("mcp_local_provider.access")
    first = capture_logs(log_format="json")
    logger.get().info("one")
    second = capture_logs(log_format="json", log_level="warning")
    logger.get().info("below the level")
    logger.get().warning("two")
    assert [e["event"] for e in lines(first)] == ["one"]
    assert [e["event"] for e in lines(second)] == ["two"]


@pytest.mark.parametrize("tty", [False, True])
def test_a_logger_bound_once_emits_the_line_its_bound_logger_would(
    capture_logs: Capture, tty: bool
) -> None:
    logger = BoundOnce("mcp_local_provider.access")
    stream = capture_logs(tty=tty, log_format="auto")
    structlog.contextvars.bind_contextvars(request_id="req-1", session_id="sess-1", extra="x")
    try:
        logger.get().info("GET /v1/models", method="GET", status=200, duration_ms=1.5)
        logger.emit("info", "GET /v1/models", {"method": "GET", "status": 200, "duration_ms": 1.5})
    finally:
        structlog.contextvars.clear_contextvars()
    stamp = r"\d{4}-\d\d-\d\dT[\d:.]+Z"
    first, second = (re.sub(stamp, "T", line) for line in stream.getvalue().splitlines())
    assert first == second and "sess-1" in first and "duration_ms" in first


def test_a_logger_bound_once_emits_to_a_captured_configuration() -> None:
    logger = BoundOnce("mcp_local_provider.access")
    with structlog.testing.capture_logs() as captured:
        logger.emit("warning", "refused", {"status": 403})
    assert captured == [{"event": "refused", "status": 403, "log_level": "warning"}]


async def test_a_value_the_fast_encoder_refuses_still_gives_one_json_line(
    capture_logs: Capture,
) -> None:
    stream = capture_logs(log_format="json")
    log = structlog.get_logger("mcp_local_provider.test")
    log.info("odd_values", raw=b"\xff\xfe", ratio=0.5, items={3, 1})
    [line] = [entry for entry in lines(stream) if entry["event"] == "odd_values"]
    assert line["raw"] == repr(b"\xff\xfe") and line["ratio"] == 0.5
    assert line["items"] == repr({1, 3})  # the whole line went through the fallback
