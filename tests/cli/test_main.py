"""The command line against a real daemon: help, sessions, the agent command, serve."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mcp_local_provider.cli.main import main
from tests.conftest import StartDaemon
from tests.fakes import BRIDGE_TOKEN, Daemon, until


def token_file(tmp_path: Path) -> str:
    path = tmp_path / "token"
    path.write_text(BRIDGE_TOKEN + "\n")
    return str(path)


async def run_cli(*argv: str) -> int:
    # main() runs its own event loop, so it gets a thread of its own.
    return await asyncio.to_thread(main, list(argv))


@pytest.mark.parametrize(
    "argv",
    [[], ["serve"], ["sessions"], ["sessions", "list"], ["sessions", "approve"], ["agent"]],
)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    assert "usage: mcp-local-provider" in capsys.readouterr().out


async def test_sessions_list_and_approve_drive_a_pending_agent(
    start_daemon: StartDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = await start_daemon(approval="manual")
    pending: list[dict[str, Any]] = []
    client, _ = await daemon.start_agent(wait=False, on_pending=pending.append)
    await until(lambda: bool(pending))
    common = ["--url", daemon.url, "--token-file", token_file(tmp_path)]
    assert await run_cli("sessions", "list", *common) == 0
    listing = capsys.readouterr().out
    assert pending[0]["session_id"] in listing and "pending" in listing
    assert await run_cli("sessions", "approve", pending[0]["session_id"], *common) == 0
    assert "is now active" in capsys.readouterr().out
    await asyncio.wait_for(client.wait_ready(), 5)
    assert await run_cli("sessions", "list", "--json", *common) == 0
    sessions = json.loads(capsys.readouterr().out)["sessions"]
    assert [(s["state"], s["connected"]) for s in sessions] == [("active", True)]


async def test_sessions_revoke_ends_the_agent(
    echo_daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client, task = echo_daemon.agents[0]
    session_id = client.session_id
    assert session_id is not None
    common = ["--url", echo_daemon.url, "--token-file", token_file(tmp_path)]
    assert await run_cli("sessions", "revoke", session_id, *common) == 0
    assert await asyncio.wait_for(task, 5) == "revoked"


async def test_sessions_errors_are_one_line_with_nonzero_exit(
    daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--url", daemon.url, "--token-file", token_file(tmp_path)]
    assert await run_cli("sessions", "approve", "sess-missing", *common) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "404" in err and "sess-missing" in err
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-token")
    assert await run_cli("sessions", "list", "--url", daemon.url, "--token-file", str(wrong)) == 1
    assert "401" in capsys.readouterr().err


def test_sessions_without_a_daemon_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(
        [
            "sessions",
            "list",
            "--url",
            f"http://127.0.0.1:{port}",
            "--token-file",
            token_file(tmp_path),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "cannot reach the daemon" in err
    assert "nothing is listening there; start it with `mcp-local-provider serve`" in err
    assert "ssl:default" not in err


def test_agent_without_a_daemon_says_to_start_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"ws://127.0.0.1:{free_port()}/agent"
    code = main(["agent", "--url", url, "--token-file", token_file(tmp_path)])
    assert code == 1
    [line] = capsys.readouterr().err.splitlines()
    assert f"cannot reach the daemon at {url}: nothing is listening there" in line


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["serve", "--prot", "1"], "usage: mcp-local-provider serve"),
        (["sessions", "list", "--bogus"], "usage: mcp-local-provider sessions list"),
        (["agent", "--modle", "x"], "usage: mcp-local-provider agent"),
    ],
)
def test_an_unknown_option_shows_the_usage_of_its_command(
    argv: list[str], usage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage)
    assert (
        f"unrecognized arguments: {' '.join(argv[-2:] if argv[-1] != '--bogus' else argv[-1:])}"
        in err
    )


def test_status_watch_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_LOCAL_PROVIDER_")}
    argv = [sys.executable, "-m", "mcp_local_provider", "status", "--watch", "0.05"]
    argv += ["--url", f"http://127.0.0.1:{free_port()}", "--token-file", token_file(tmp_path)]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert b"cannot reach the daemon" in proc.stdout.readline()
        proc.stdout.close()  # like `| head -1`
        _, err = proc.communicate(timeout=20)
    assert b"Traceback" not in err, err.decode()
    assert proc.returncode == 0


def test_missing_token_file_is_explained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["sessions", "list", "--token-file", str(tmp_path / "absent")])
    assert code == 1
    assert "start `mcp-local-provider serve` first" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daemon_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_LOCAL_PROVIDER_")}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env["MCP_LOCAL_PROVIDER_SHUTDOWN_GRACE"] = "5"
    return env


async def wait_healthy(
    http: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes]
) -> None:
    for _ in range(400):
        if proc.poll() is not None:
            raise AssertionError(f"serve exited early with {proc.returncode}")
        try:
            async with http.get(url + "/health") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.025)
    raise AssertionError("serve did not come up")


async def test_serve_creates_a_private_token_and_shuts_down_gracefully(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mcp_local_provider",
            "serve",
            "--port",
            str(port),
            "--approval",
            "auto",
        ],
        env=daemon_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        await wait_healthy(http, url, proc)
        token_path = tmp_path / "state" / "mcp-local-provider" / "bridge-token"
        assert token_path.stat().st_mode & 0o777 == 0o600
        token = token_path.read_text().strip()
        ws = await http.ws_connect(
            f"ws://127.0.0.1:{port}/agent", headers={"Authorization": f"Bearer {token}"}
        )
        await ws.send_json({"type": "hello", "protocol": 1, "agent_id": "a", "models": ["m"]})
        assert (await ws.receive_json())["type"] == "session_pending"
        assert (await ws.receive_json())["type"] == "session_granted"
        request = asyncio.create_task(
            http.post(
                url + "/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
            )
        )
        invoke = await ws.receive_json()
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)  # the daemon is draining; the request is still answered
        await ws.send_json(
            {
                "type": "model_stream_chunk",
                "id": invoke["id"],
                "delta": {"content": "finished in time"},
                "finish_reason": "stop",
            }
        )
        response = await request
        answer = await response.json()
        assert answer["choices"][0]["message"]["content"] == "finished in time", answer
        ended = await ws.receive_json()
        assert ended["type"] == "session_ended" and ended["reason"] == "shutdown"
        closing = await ws.receive()
        assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1001
        await ws.close()
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out, err = proc.communicate()
    logs = out.decode() + err.decode()
    assert token not in logs  # the token is never printed in full
    assert "listening" in logs
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    listening = [e for e in _json_lines(logs) if e.get("event") == "listening"]
    assert [e["loop"] for e in listening] == [loop]  # the event loop in use is named
    assert "AUTO_APPROVAL_ON" in logs  # auto approval is announced loudly


async def test_serve_on_a_busy_port_exits_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "mcp_local_provider", "serve", "--port", str(port)],
            env=daemon_env(tmp_path),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
        )
    assert proc.returncode == 1
    assert b"already in use" in proc.stderr and b"Traceback" not in proc.stderr


async def test_agent_command_serves_until_revoked(
    daemon: Daemon, tmp_path: Path, http: aiohttp.ClientSession, openai_client: Any
) -> None:
    env = daemon_env(tmp_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mcp_local_provider",
        "agent",
        "--backend",
        "echo",
        "--url",
        daemon.ws_url,
        "--token-file",
        token_file(tmp_path),
        "--model",
        "echo-cli",
        "--label",
        "CLI echo",
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        await until(lambda: any(s.connected for s in daemon.state.registry), timeout=20)
        reply = await openai_client(daemon).chat.completions.create(
            model="echo-cli", messages=[{"role": "user", "content": "from a process"}]
        )
        assert reply.choices[0].message.content == "from a process"
        session = next(iter(daemon.state.registry))
        assert session.label == "CLI echo"
        async with http.post(
            f"{daemon.url}/control/sessions/{session.id}/revoke", headers=daemon.auth
        ):
            pass
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = (await proc.stderr.read()).decode() if proc.stderr else ""
    assert "Session ended (revoked)" in stderr


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
