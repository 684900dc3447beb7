from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from mcp_local_provider.http.app import create_app
from mcp_local_provider.http.listeners import runner_options
from tests import real_clis
from tests.clis import FakeCli
from tests.fakes import BRIDGE_TOKEN, Daemon, RawAgent, make_config
from tests.model_api import ModelApi

StartDaemon = Callable[..., Awaitable[Daemon]]


@pytest.fixture(autouse=True, scope="session")
def _logs_through_stdlib_logging() -> None:
    """Daemons run in the test process: send their log lines to stdlib logging, which pytest
    shows for a failing test, instead of stdout, where they would mix with CLI output."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )


@pytest.fixture
async def start_daemon(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[StartDaemon]:
    """Start a real daemon on a loopback port: ``await start_daemon(approval=..., **config)``
    (``usage=``: the source the web page's usage panel reads)."""
    daemons: list[Daemon] = []

    async def start(approval: str = "auto", usage: Any = None, **overrides: Any) -> Daemon:
        config = make_config(tmp_path, **overrides)
        app = create_app(config, bridge_token=BRIDGE_TOKEN, approval=approval, usage=usage)
        # TestServer cancels handlers on disconnect, as serve does, and gets serve's options.
        server = await aiohttp_server(app, **runner_options(config))
        daemon = Daemon(server=server, app=app)
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        await daemon.stop_agents()


@pytest.fixture
async def daemon(start_daemon: StartDaemon) -> Daemon:
    """A daemon that approves agents at once."""
    return await start_daemon()


@pytest.fixture
async def echo_daemon(daemon: Daemon) -> Daemon:
    """A daemon with an approved echo agent connected."""
    await daemon.start_agent()
    return daemon


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def raw_agent(
    http: aiohttp.ClientSession,
) -> AsyncIterator[Callable[[Daemon], Awaitable[RawAgent]]]:
    opened: list[aiohttp.ClientWebSocketResponse] = []

    async def connect(daemon: Daemon, token: str = BRIDGE_TOKEN) -> RawAgent:
        ws = await http.ws_connect(daemon.ws_url, headers={"Authorization": f"Bearer {token}"})
        opened.append(ws)
        return RawAgent(ws)

    yield connect
    for ws in opened:  # a socket left open would be reported as an unclosed connection
        await ws.close()


@pytest.fixture
async def openai_client() -> AsyncIterator[Callable[[Daemon], Any]]:
    """``openai_client(daemon)``: the official async SDK pointed at the daemon, closed after."""
    import openai

    clients: list[openai.AsyncOpenAI] = []

    def make(daemon: Daemon, **options: Any) -> openai.AsyncOpenAI:
        options.setdefault("api_key", "noop")
        options.setdefault("max_retries", 0)
        made = openai.AsyncOpenAI(base_url=daemon.url + "/v1", **options)
        clients.append(made)
        return made

    yield make
    for made in clients:
        await made.close()


@pytest.fixture
async def ollama_client() -> AsyncIterator[Callable[[Daemon], Any]]:
    """``ollama_client(daemon)``: the official async ollama client pointed at the daemon."""
    import ollama

    clients: list[ollama.AsyncClient] = []

    def make(daemon: Daemon) -> ollama.AsyncClient:
        made = ollama.AsyncClient(host=daemon.url)
        clients.append(made)
        return made

    yield make
    for made in clients:
        await made.close()


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCli:
    """Fake agent CLIs first on PATH, replaying tests/fixtures (see tests/clis.py)."""
    return FakeCli.install(tmp_path, monkeypatch)


@pytest.fixture
async def daemon_process(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await daemon_process(*args, wait=True, **env)``: the real ``serve`` in a child process
    on a free loopback port; env keys are config names (``max_connections=2``)."""
    from tests.security.helpers import DaemonProcess, free_port

    started: list[DaemonProcess] = []

    async def start(*args: str, wait: bool = True, **config: Any) -> DaemonProcess:
        env = {f"MCP_LOCAL_PROVIDER_{k.upper()}": str(v) for k, v in config.items()}
        process = DaemonProcess(tmp_path, free_port(), env, list(args))
        started.append(process)
        await process.start(wait=wait)
        return process

    yield start
    for process in started:
        await process.stop()


@pytest.fixture(scope="session")
def agent_clis() -> Path:
    """The real agent CLIs, installed from tests/agent_clis with ``npm ci`` the first time
    (skipped when node or npm is missing); returns the folder of their executables."""
    reason = real_clis.install()
    if reason is not None:
        pytest.skip(reason)
    return real_clis.BIN


@pytest.fixture
async def model_api() -> AsyncIterator[ModelApi]:
    """A mock model API on a loopback port for the real agent CLIs (tests/model_api.py)."""
    api = await ModelApi().start()
    yield api
    await api.stop()
