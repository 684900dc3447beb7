"""Each backend recognises its CLI's refusal for a rate limit or quota, from recordings of the
real CLIs whose model API answered 429 (tests/fixtures/*/rate_limited.*, made by
tests/record_quota.py), and the reset time reaches the editor as Retry-After."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from mcp_local_provider.agent import quota
from mcp_local_provider.agent.backends import create
from mcp_local_provider.agent.quota import QuotaError, QuotaSignal
from tests import real_clis
from tests.clis import FIXTURES, FakeCli, chat, collect
from tests.conftest import StartDaemon
from tests.model_api import model_api
from tests.record_quota import REFUSALS, RESETS_AT

#: The exit code and stderr each CLI ended the recorded run with.
EXITS = {"claude": (1, ""), "codex": (0, ""), "gemini": (1, "retryDelayMs: 1800000")}


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Codex words its reset in the machine's local time; the recording was made in UTC."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def recorded(name: str) -> list[dict[str, object]]:
    lines = (FIXTURES / name / "rate_limited.ndjson").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_the_recordings_are_refusals_the_cli_reports_as_plain_errors() -> None:
    # What the backends said before they knew the signal: an ordinary error.
    for name in EXITS:
        said = json.loads((FIXTURES / name / "rate_limited.error.json").read_text())
        assert said["code"] == "backend_error" and f"{name} reported an error" in said["message"]


async def test_claude_codes_rate_limit_result_is_a_quota_refusal(fake_cli: FakeCli) -> None:
    code, stderr = EXITS["claude"]
    backend = fake_cli.backend("claude", "rate_limited", exit=code, stderr=stderr)
    with pytest.raises(QuotaError) as raised:
        await collect(backend.serve(chat()))
    assert raised.value.code == "rate_limited"
    assert raised.value.retry_after is None  # Claude Code prints no reset time for a 429
    assert "429" in raised.value.message


@pytest.mark.usefixtures("utc")
async def test_codex_usage_limit_is_a_quota_refusal_until_the_time_it_names(
    fake_cli: FakeCli,
) -> None:
    code, stderr = EXITS["codex"]
    backend = fake_cli.backend("codex", "rate_limited", exit=code, stderr=stderr)
    with pytest.raises(QuotaError) as raised:
        await collect(backend.serve(chat()))
    assert raised.value.code == "rate_limited"
    left = RESETS_AT - time.time()
    assert raised.value.retry_after is not None
    assert left - 60 <= raised.value.retry_after <= left  # Codex says it to the minute


async def test_gemini_resource_exhausted_is_a_quota_refusal_for_the_suggested_delay(
    fake_cli: FakeCli,
) -> None:
    code, stderr = EXITS["gemini"]
    backend = fake_cli.backend("gemini", "rate_limited", exit=code, stderr=stderr)
    with pytest.raises(QuotaError) as raised:
        await collect(backend.serve(chat()))
    assert raised.value.code == "rate_limited"
    assert raised.value.retry_after == 1800


@pytest.mark.parametrize("name", ["claude", "codex", "gemini"])
async def test_an_ordinary_cli_error_is_not_taken_for_a_refusal(
    fake_cli: FakeCli, name: str
) -> None:
    exit_code = 1 if name == "gemini" else 0
    backend = fake_cli.backend(name, "error_result", exit=exit_code)
    with pytest.raises(Exception) as raised:
        await collect(backend.serve(chat()))
    assert not isinstance(raised.value, QuotaError)


def test_claude_rate_limit_event_rejected_gives_its_reset() -> None:
    event = {
        "type": "rate_limit_event",
        "rate_limit_info": {"status": "rejected", "resetsAt": 1_000_600},
    }
    assert quota.claude(event, now=lambda: 1_000_000.0) == QuotaSignal(600.0)
    allowed = {"type": "rate_limit_event", "rate_limit_info": {"status": "allowed"}}
    assert quota.claude(allowed) is None


def test_claude_usage_limit_text_gives_its_reset() -> None:
    text = "Claude AI usage limit reached|1900000300"
    event = {"type": "result", "is_error": True, "result": text}
    assert quota.claude(event, now=lambda: 1_900_000_000.0) == QuotaSignal(300.0)


def test_codex_try_again_in_a_duration() -> None:
    error = {"message": "You've hit your usage limit. Try again in 2 hours 5 minutes."}
    assert quota.codex(error) == QuotaSignal(2 * 3600 + 5 * 60)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "12"}, 12.0),
        ({"Retry-After": "Thu, 01 Jan 1970 00:16:50 GMT"}, 10.0),
        ({}, None),
    ],
)
def test_an_upstream_429_is_a_refusal_until_retry_after(
    headers: dict[str, str], expected: float | None
) -> None:
    assert quota.upstream(429, headers, now=lambda: 1000.0) == QuotaSignal(expected)
    assert quota.upstream(500, headers) is None


async def test_a_refusal_recorded_from_gemini_reaches_the_editor_as_429_with_retry_after(
    start_daemon: StartDaemon, fake_cli: FakeCli, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon()
    code, stderr = EXITS["gemini"]
    await daemon.start_agent(fake_cli.backend("gemini", "rate_limited", exit=code, stderr=stderr))
    body = {"model": "gemini-cli", "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(daemon.url + "/v1/chat/completions", json=body) as response:
        assert response.status == 429, await response.text()
        assert response.headers["Retry-After"] == "1800"
        assert (await response.json())["error"]["code"] == "quota_exhausted"
    [session] = list(daemon.state.registry)
    assert session.cooling_left(time.time()) > 1790


@pytest.mark.usefixtures("agent_clis", "utc")
@pytest.mark.parametrize("name", ["claude", "codex", "gemini"])
async def test_the_real_cli_refused_with_a_429_is_recognised_by_its_backend(
    name: str, tmp_path: Path
) -> None:
    """The installed CLI itself, its model API refusing as its vendor does: the backend
    reports a refusal, with the reset time where the CLI gives one."""
    async with model_api(REFUSALS[name]) as api:
        backend = create(name, settings=real_clis.settings(name, api, tmp_path / "home"))
        try:
            with pytest.raises(QuotaError) as raised:
                await collect(backend.serve(chat("Say hello.")))
        finally:
            await backend.close()
    expected = {"claude": None, "codex": RESETS_AT - time.time(), "gemini": 1800.0}[name]
    if expected is None:
        assert raised.value.retry_after is None
    else:
        assert raised.value.retry_after is not None
        assert expected - 60 <= raised.value.retry_after <= expected
