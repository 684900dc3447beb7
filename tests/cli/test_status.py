"""``mcp-local-provider status`` and ``GET /control/status``: what a person sees at a glance."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mcp_local_provider.cli import status
from mcp_local_provider.cli.main import main
from mcp_local_provider.obs.traffic import WINDOW_SECONDS, Traffic
from tests.fakes import BRIDGE_TOKEN, Daemon, make_config, until
from tests.readings import CHAT, chat


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "bridge-token"
    path.write_text(BRIDGE_TOKEN + "\n")
    path.chmod(0o600)
    return path


async def run_cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def some_requests(daemon: Daemon, http: aiohttp.ClientSession) -> None:
    for body in (chat("echo"), chat("echo", stream=True)):
        async with http.post(daemon.url + CHAT, json=body) as response:
            assert response.status == 200
    async with http.post(daemon.url + CHAT, data=b"nope") as response:
        assert response.status == 400


async def test_control_status_needs_the_bridge_token(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.get(daemon.url + "/control/status") as response:
        assert response.status == 401


async def test_control_status_reports_traffic_and_sessions(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    await some_requests(echo_daemon, http)
    async with http.get(echo_daemon.url + "/control/status", headers=echo_daemon.auth) as r:
        body = await r.json()
    assert body["agents_connected"] == 1 and body["sessions_active"] == 1
    assert body["traffic"]["recent"]["requests"] == 3
    assert body["traffic"]["recent"]["client_errors"] == 1
    assert body["traffic"]["total"]["requests"] == 3  # control and health calls are not traffic
    (session,) = body["sessions"]
    assert session["requests"] == 2 and session["models"] == ["echo"]


async def test_status_prints_a_table_for_a_person(
    echo_daemon: Daemon,
    http: aiohttp.ClientSession,
    token_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await some_requests(echo_daemon, http)
    code = await run_cli("status", "--url", echo_daemon.url, "--token-file", str(token_file))
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"mcp-local-provider 0.1.0 at {echo_daemon.url}, up ")
    assert "agents connected 1, sessions 1 active and 0 pending" in out
    assert "3 requests, 1 error (1 client, 0 server), 0 cancelled" in out
    header, row = out.strip().splitlines()[-2:]
    assert header.split() == [
        "SESSION", "STATE", "AGENT", "LABEL", "MODELS", "EXPIRES", "IN", "REQUESTS", "IN", "FLIGHT",
        "TOKENS", "TODAY", "COOLING", "WARM", "R/S/B",
    ]  # fmt: skip
    assert row.split()[1:3] == ["active", "test-agent"] and "2/100000" in row
    # Today's tokens of the two answered requests (input/output), and no cool-down.
    tokens, cooling, warm = row.split()[-3:]
    assert cooling == "-" and warm == "-"  # the echo agent starts no processes ahead
    took_in, took_out = (int(n) for n in tokens.rstrip("*").split("/"))
    assert took_in > 0 and took_out > 0


async def test_status_json_is_the_control_status_document(
    echo_daemon: Daemon, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run_cli(
        "status", "--json", "--url", echo_daemon.url, "--token-file", str(token_file)
    )
    assert code == 0
    body = json.loads(capsys.readouterr().out)
    assert body["version"] == "0.1.0" and body["sessions"][0]["state"] == "active"


async def test_status_without_a_daemon_is_a_one_line_error(
    token_file: Path, capsys: pytest.CaptureFixture[str], unused_tcp_port: int
) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}"
    assert await run_cli("status", "--url", url, "--token-file", str(token_file)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mcp-local-provider: cannot reach the daemon at {url}")
    assert err.count("\n") == 1


def test_watch_needs_a_positive_interval(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["status", "--watch", "0"])
    assert exited.value.code == 2
    assert "expected seconds between 0 and 3600" in capsys.readouterr().err


async def test_watch_refreshes_and_keeps_trying_when_the_daemon_is_away(
    echo_daemon: Daemon, tmp_path: Path, unused_tcp_port: int
) -> None:
    config = make_config(tmp_path)
    for url, expected in (
        (echo_daemon.url, "agents connected 1"),
        (f"http://127.0.0.1:{unused_tcp_port}", "(retrying)"),
    ):
        out = io.StringIO()
        args = argparse.Namespace(url=url, json=False, watch=0.01)
        watching = asyncio.create_task(status.run(args, config, out))
        await until(lambda: out.getvalue().count("refreshing every 0.01 s") >= 2)  # noqa: B023
        watching.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watching
        assert out.getvalue().count(expected) >= 2


def test_traffic_keeps_the_last_minute_and_totals_since_start() -> None:
    now = [1000.0]
    traffic = Traffic(clock=lambda: now[0])
    for code in (200, 200, 404, 502, 499):
        traffic.record(code)
    first = traffic.snapshot()
    assert first["recent"] == {
        "requests": 5,
        "client_errors": 1,
        "server_errors": 1,
        "cancelled": 1,
        "per_second": 5.0,  # one second of uptime so far
    }
    now[0] += WINDOW_SECONDS + 1
    traffic.record(200)
    later = traffic.snapshot()
    assert later["recent"]["requests"] == 1
    assert later["recent"]["per_second"] == round(1 / WINDOW_SECONDS, 3)
    assert later["total"] == {
        "requests": 6,
        "client_errors": 1,
        "server_errors": 1,
        "cancelled": 1,
    }


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5.9, "5s"), (249, "4m 09s"), (7500, "2h 05m"), (3 * 86400 + 4 * 3600 + 5, "3d 4h")],
)
def test_uptime_reads_like_a_person_would_say_it(seconds: float, text: str) -> None:
    assert status.duration(seconds) == text


def test_plain_view_hides_ended_sessions_and_says_so() -> None:
    def session(sid: str, state: str) -> dict[str, Any]:
        return {
            "session_id": sid,
            "state": state,
            "connected": state == "active",
            "agent_id": "a",
            "label": "",
            "models": [],
            "expires_in": None,
            "requests": 0,
            "max_requests": 1,
            "in_flight": 0,
            "max_concurrency": 1,
        }

    text = status.render(
        {"sessions": [session("sess-live", "active"), session("sess-gone", "revoked")]},
        "http://127.0.0.1:11434",
    )
    assert "sess-live" in text and "sess-gone" not in text
    assert "(1 ended session(s) not shown" in text


def test_status_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["status", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "--watch" in out and "--json" in out
