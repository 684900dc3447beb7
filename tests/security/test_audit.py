"""The audit log: one line per routed request with its terminal outcome, one per session
event, keyed prompt digests (never the prompt), unforgeable lines, 0600, rotation, and
fail-closed when it cannot be written."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import random
import shutil
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from mcp_local_provider.http.state import STATE
from mcp_local_provider.policy.audit import AuditLog, render
from mcp_local_provider.policy.digest import PREFIX, PromptDigester, canonical
from mcp_local_provider.translate.openai.request import ChatRequest
from tests.fakes import Daemon, until
from tests.readings import Meter
from tests.security.helpers import audit_lines, chat_body, granted_raw_agent

JSON = {"Content-Type": "application/json"}
PROMPT = "audit-canary-prompt do not log me"

REQUEST_FIELDS = {
    "ts", "event", "request_id", "session_id", "agent_id", "route", "model", "served_model",
    "failovers", "kind", "stream",
    "status", "outcome", "error", "duration_ms", "first_chunk_ms", "bytes_in", "bytes_out",
    "frames", "prompt_tokens", "completion_tokens", "total_tokens", "client_key", "peer",
    "prompt_digest", "digest_alg", "digest_key_id",
}  # fmt: skip


async def requests_of(daemon: Daemon) -> list[dict[str, Any]]:
    return [line for line in await audit_lines(daemon) if line["event"] == "request"]


async def test_a_request_line_has_every_field_and_no_prompt(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        echo_daemon.url + "/v1/chat/completions", data=chat_body(PROMPT), headers=JSON
    ) as response:
        assert response.status == 200
        text = await response.text()
    [line] = await requests_of(echo_daemon)
    assert set(line) == REQUEST_FIELDS
    assert line["route"] == "POST /v1/chat/completions"
    assert (line["outcome"], line["status"], line["error"]) == ("ok", 200, None)
    assert line["model"] == "echo" and line["kind"] == "chat" and line["stream"] is False
    assert line["session_id"].startswith("sess-") and line["agent_id"] == "test-agent"
    assert line["bytes_in"] == len(chat_body(PROMPT)) and line["bytes_out"] == len(text)
    # Five words, the last carrying the finish (the request was not streamed).
    assert line["total_tokens"] == 10 and line["frames"] == 5
    assert line["digest_alg"] == "hmac-sha256"
    raw = echo_daemon.app[STATE].security.audit.path.read_text()
    assert "audit-canary" not in raw and "canary" not in raw


async def test_outcomes_one_line_per_request(
    start_daemon: Any, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(first_chunk_timeout=0.3, max_messages=2)
    agent = await raw_agent(daemon)
    await granted_raw_agent(agent)
    url = daemon.url + "/v1/chat/completions"

    async def post(body: bytes) -> int:
        async with http.post(url, data=body, headers=JSON) as response:
            await response.read()
            return response.status

    # timeout: the agent never answers
    assert await post(chat_body("wait", model="raw")) == 504
    invoke = await agent.recv()
    assert (await agent.recv())["type"] == "model_cancel"
    # agent_error
    task = asyncio.create_task(post(chat_body("err", model="raw")))
    invoke = await agent.recv()
    await agent.send({"type": "model_result", "id": invoke["id"], "status": "error",
                      "error": {"message": "no"}})  # fmt: skip
    assert await task == 502
    # rejected by an input limit
    too_many = json.dumps({"model": "raw", "messages": [{"role": "user", "content": "x"}] * 3})
    assert await post(too_many.encode()) == 400
    # not routed at all (invalid JSON): no line
    assert await post(b"{not json") == 400
    # client_disconnected: the client goes away mid-request
    task = asyncio.create_task(post(chat_body("bye", model="raw")))
    invoke = await agent.recv()
    task.cancel()
    assert (await agent.recv())["type"] == "model_cancel"
    # agent_disconnected
    task = asyncio.create_task(post(chat_body("gone", model="raw")))
    invoke = await agent.recv()
    await agent.ws.close()
    assert await task == 502
    await until(lambda: daemon.state.router.in_flight == 0)
    lines = await requests_of(daemon)
    assert [(x["outcome"], x["status"], x["error"]) for x in lines] == [
        ("timeout", 504, "timeout"),
        ("agent_error", 502, "agent_error"),
        ("rejected", 400, "invalid_request"),
        ("client_disconnected", 499, "client_disconnected"),
        ("agent_disconnected", 502, "agent_disconnected"),
    ]
    assert len({x["request_id"] for x in lines}) == 5
    assert all(x["prompt_digest"] for x in lines)


async def test_session_events_are_audited(
    start_daemon: Any, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(approval="manual")
    agent = await raw_agent(daemon)
    pending = await agent.hello()
    daemon.state.hub.approve(pending["session_id"])
    assert (await agent.recv())["type"] == "session_granted"
    await daemon.state.hub.revoke(pending["session_id"])
    assert await agent.closed() == 4408
    denied = await raw_agent(daemon)
    other = await denied.hello(agent_id="second")
    daemon.state.hub.deny(other["session_id"])
    assert await denied.closed() == 4403
    lines = [x for x in await audit_lines(daemon) if x["event"] == "session"]
    first = [
        (x["action"], x.get("code")) for x in lines if x["session_id"] == pending["session_id"]
    ]
    assert first == [("pending", None), ("approved", None), ("revoked", None), ("closed", 4408)]
    assert [x["action"] for x in lines if x["session_id"] == other["session_id"]] == [
        "pending",
        "denied",
    ]
    assert all(x["label"] == "Raw agent" and x["agent_id"] for x in lines)


async def test_lines_cannot_be_forged_through_claimed_fields(
    daemon: Daemon, raw_agent: Any
) -> None:
    forged = '"}\n{"event":"request","outcome":"ok"}\u2028\r{"x":"'
    agent = await raw_agent(daemon)
    await granted_raw_agent(agent, label=forged, reason=forged)
    await audit_lines(daemon)
    raw = daemon.app[STATE].security.audit.path.read_bytes()
    assert raw.isascii()
    lines = raw.split(b"\n")
    assert lines[-1] == b""
    parsed = [json.loads(line) for line in lines[:-1]]
    assert [x["action"] for x in parsed] == ["pending", "approved"]
    assert all(x["event"] == "session" for x in parsed)


def test_a_line_has_the_same_bytes_whichever_encoder_writes_it() -> None:
    """The fast encoder takes plain lines; every line must read as the standard library's
    encoder writes it (ASCII only, its float and escape forms), or be refused as it is."""
    standard = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    rng = random.Random(7)
    alphabet = [chr(c) for c in range(0x80)] + ["\u00e9", "\u2028", "\U0001f600", "0.0000"]
    values: list[Any] = [None, True, False, 0, -1, 2**70, 0.0, -0.0, 0.4, 1e-05, 9.99e-05]
    values += [1e16, 1.5e300, float("nan"), float("inf"), ["a", 1], {"k": 0.5}, (1, 2)]
    for _ in range(3000):
        record: dict[str, Any] = {"ts": "2026-01-01T00:00:00.000Z", "event": "request"}
        for index in range(rng.randint(0, 6)):
            if rng.random() < 0.5:
                text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
                record[f"s{index}"] = text
            else:
                record[f"v{index}"] = rng.choice(values)
        try:
            expected = standard.encode(record).encode("ascii") + b"\n"
        except ValueError:
            with pytest.raises(ValueError):
                render(record)
            continue
        assert render(record) == expected, record


def assert_rotated(path: Path) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Path(f"{path}.1").exists() and Path(f"{path}.2").exists()
    assert not Path(f"{path}.3").exists()
    for candidate in (path, Path(f"{path}.1"), Path(f"{path}.2")):
        assert stat.S_IMODE(candidate.stat().st_mode) == 0o600
        assert candidate.stat().st_size <= 1024
        assert all(json.loads(line) for line in candidate.read_text().splitlines())


async def test_file_is_0600_and_rotates_by_size(
    start_daemon: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(audit_max_bytes=1024, audit_backups=2)
    await daemon.start_agent()
    for _ in range(12):
        async with http.post(
            daemon.url + "/v1/chat/completions", data=chat_body(), headers=JSON
        ) as response:
            assert response.status == 200
    await audit_lines(daemon)
    assert_rotated(daemon.app[STATE].security.audit.path)
    assert daemon.app[STATE].security.audit.lost == 0


async def test_an_existing_loose_file_is_tightened_to_0600(
    start_daemon: Any, tmp_path: Path
) -> None:
    path = tmp_path / "loose" / "audit.jsonl"
    path.parent.mkdir()
    path.write_text("")
    os.chmod(path, 0o644)
    daemon = await start_daemon(audit_log=path)
    daemon.app[STATE].security.audit.event({"event": "probe"})
    await audit_lines(daemon)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_fails_closed_and_recovers(
    start_daemon: Any, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    daemon = await start_daemon(audit_log=tmp_path / "a" / "audit.jsonl", audit_retry_interval=0.05)
    await daemon.start_agent()
    audit = daemon.app[STATE].security.audit
    url = daemon.url + "/v1/chat/completions"

    async def status() -> int:
        async with http.post(url, data=chat_body(), headers=JSON) as response:
            await response.read()
            return response.status

    assert await status() == 200
    await audit.drain()
    with capture_logs() as logs:
        audit.path.unlink()
        audit.path.mkdir()  # the log's place is taken: it cannot be written
        assert await status() == 200  # served before the failure was known
        await until(lambda: not audit.healthy)
        async with http.post(url, data=chat_body(), headers=JSON) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "5"
            assert (await response.json())["error"]["code"] == "audit_unavailable"
        async with http.get(daemon.url + "/health/deep") as response:
            assert response.status == 503
            assert (await response.json())["components"]["audit"]["status"] == "unhealthy"
        try:
            await http.ws_connect(daemon.ws_url, headers=daemon.auth)
            raise AssertionError("an agent was admitted without an audit log")
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 503
        shutil.rmtree(audit.path)
        await until(lambda: audit.healthy)
        assert await status() == 200
    events = [entry["event"] for entry in logs]
    assert "AUDIT_LOG_FAILED" in events and "AUDIT_LOG_RECOVERED" in events
    outcomes = [x["outcome"] for x in await requests_of(daemon)]
    # The first line went with the deleted file; the lines of the request served meanwhile
    # and of the refused one were kept and written on recovery.
    assert outcomes == ["ok", "rejected", "ok"]
    assert audit.lost == 0
    # Both lines that could not be written when due are counted.
    assert Meter(daemon)("audit_write_failures_total") == 2


async def test_the_digest_is_the_documented_keyed_hmac(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        echo_daemon.url + "/v1/chat/completions",
        data=json.dumps(
            {
                "model": "echo",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "héllo "},
                            {"type": "text", "text": "wörld"},
                        ],
                    },
                ],
            }
        ).encode(),
        headers=JSON,
    ) as response:
        assert response.status == 200
    [line] = await requests_of(echo_daemon)
    key = bytes.fromhex((echo_daemon.state.config.state_dir / "audit-key").read_text().strip())
    form = {"kind": "chat", "messages": [["system", "be brief"], ["user", "héllo wörld"]]}
    data = (
        PREFIX
        + json.dumps(form, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )
    assert line["prompt_digest"] == hmac.new(key, data, hashlib.sha256).hexdigest()
    assert line["digest_key_id"] == PromptDigester(key).key_id
    assert key.hex() not in line["digest_key_id"]


def test_the_same_prompt_digests_the_same_on_openai_and_ollama_payloads() -> None:
    digester = PromptDigester(b"k" * 32)
    openai_payload = ChatRequest.model_validate(
        {"model": "echo", "messages": [{"role": "user", "content": "same words"}],
         "temperature": 0.2}
    ).payload()  # fmt: skip
    # What an Ollama /api/chat request becomes: same kind and messages, its own extras.
    ollama_payload = {
        "kind": "chat",
        "model": "echo:latest",
        "messages": [{"role": "user", "content": "same words", "images": []}],
        "parameters": {"num_ctx": 4096, "stream": True},
    }
    assert digester.digest(openai_payload) == digester.digest(ollama_payload)
    ollama_payload["messages"][0]["content"] = "other words"
    assert digester.digest(openai_payload) != digester.digest(ollama_payload)
    completion = {"kind": "completion", "prompt": "def f(", "suffix": ")", "model": "m"}
    assert canonical(completion) == PREFIX + (
        b'{"kind":"completion","prompt":"def f(","suffix":")","system":""}'
    )
    assert canonical({"kind": "embedding", "input": "one"}) == canonical(
        {"kind": "embedding", "input": ["one"]}
    )
    assert PromptDigester(b"j" * 32).digest(openai_payload) != digester.digest(openai_payload)


async def test_a_drained_line_is_in_the_file_at_once(daemon: Daemon) -> None:
    audit = daemon.app[STATE].security.audit
    for n in range(3):
        audit.event({"event": "probe", "n": n})
        await audit.drain()
        # Another reader sees the line at once: nothing is held in a buffer.
        assert json.loads(audit.path.read_text().splitlines()[-1])["n"] == n


async def test_the_same_prompt_digests_the_same_through_both_route_families(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    prompt = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "same"}]
    asks = [
        ("/v1/chat/completions", {"model": "echo", "messages": prompt}),
        ("/api/chat", {"model": "echo:latest", "stream": False,
                       "messages": [dict(m, images=[]) for m in prompt]}),
        ("/v1/completions", {"model": "echo", "prompt": "def f(", "suffix": ")"}),
        ("/api/generate", {"model": "echo", "prompt": "def f(", "suffix": ")", "stream": False}),
        ("/v1/chat/completions", {"model": "echo", "messages": prompt[1:]}),
    ]  # fmt: skip
    for path, body in asks:
        async with http.post(echo_daemon.url + path, json=body) as response:
            assert response.status == 200, await response.text()
    lines = await requests_of(echo_daemon)
    assert [x["route"] for x in lines] == [f"POST {path}" for path, _ in asks]
    digests = [x["prompt_digest"] for x in lines]
    assert digests[0] == digests[1]  # chat: OpenAI and Ollama
    assert digests[2] == digests[3]  # fill-in-the-middle: OpenAI and Ollama
    assert len({digests[0], digests[2], digests[4]}) == 3


def _writer(path: Path, **options: Any) -> AuditLog:
    options.setdefault("retry_interval", 0.01)
    return AuditLog(path, PromptDigester(b"k" * 32), max_bytes=1 << 20, backups=1, **options)


async def _writing_then_resting(audit: AuditLog) -> None:
    """Start the writer and let it write one line: it then rests for ``batch_interval``."""
    audit.start()
    audit.event({"event": "probe", "n": -1})
    await until(lambda: audit.written == 1)


async def test_lines_that_queue_up_together_are_written_in_order_with_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit = _writer(tmp_path / "audit.jsonl", batch_interval=0.3)
    await _writing_then_resting(audit)
    writes: list[int] = []
    real_write = os.write

    def counting_write(fd: int, data: Any) -> int:
        writes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr("mcp_local_provider.policy.audit.os.write", counting_write)
    for n in range(20):
        audit.event({"event": "probe", "n": n})
    await audit.drain()
    await audit.stop()
    lines = audit.path.read_text().splitlines()
    assert [json.loads(line)["n"] for line in lines] == list(range(-1, 20))
    assert len(writes) == 1


async def test_a_write_cut_short_by_the_disk_writes_no_line_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit = _writer(tmp_path / "audit.jsonl", batch_interval=0.3)
    await _writing_then_resting(audit)
    real_write = os.write
    calls = 0

    def failing_write(fd: int, data: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:  # the first line and a little of the second get through
            return real_write(fd, bytes(data[: bytes(data).index(b"\n") + 6]))
        if calls == 2:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr("mcp_local_provider.policy.audit.os.write", failing_write)
    for n in range(3):
        audit.event({"event": "probe", "n": n})
    await until(lambda: audit.written == 4)
    await audit.stop()
    lines = audit.path.read_text().splitlines()
    whole = [json.loads(line)["n"] for line in lines if line.endswith("}")]
    assert whole == [-1, 0, 1, 2]
    assert len(lines) == 5  # the torn start of line 1 stays on a line of its own
    assert audit.lost == 0 and audit.failures == 1
