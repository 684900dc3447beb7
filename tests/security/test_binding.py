"""Binding: loopback only by default (127.0.0.1 and [::1]), non-loopback hosts refused unless
allow_remote is set with API keys, and a port in use is a clear failure, never a fallback."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mcp_local_provider.core.addresses import is_loopback_host
from mcp_local_provider.core.config import ConfigError, load_config
from tests.security.helpers import ipv6_available


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_loopback_hosts_are_recognised(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_non_loopback_host_is_refused_without_allow_remote(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not a loopback address.*allow_remote"):
        load_config(overrides={"host": "0.0.0.0"}, environ={}, cwd=tmp_path)


def test_allow_remote_without_api_keys_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs API keys"):
        load_config(overrides={"host": "0.0.0.0", "allow_remote": True}, environ={}, cwd=tmp_path)


def test_allow_remote_with_api_keys_is_accepted(tmp_path: Path) -> None:
    config = load_config(
        overrides={"host": "0.0.0.0", "allow_remote": True, "api_keys": ["k-123"]},
        environ={},
        cwd=tmp_path,
    )
    assert config.allow_remote and config.keys_configured


async def test_default_listens_on_ipv4_and_ipv6_loopback(daemon_process: Any) -> None:
    if not ipv6_available():
        pytest.skip("no IPv6 loopback on this machine")
    daemon = await daemon_process()
    async with aiohttp.ClientSession() as http:
        for base in (f"http://127.0.0.1:{daemon.port}", f"http://[::1]:{daemon.port}"):
            async with http.get(base + "/health") as response:
                assert response.status == 200


async def test_serve_with_bad_host_exits_2_with_a_clear_message(daemon_process: Any) -> None:
    daemon = await daemon_process("--host", "0.0.0.0", wait=False)
    assert await daemon.exit_code() == 2
    assert "not a loopback address" in daemon.log_text()


async def test_remote_host_warns_loudly_before_listening(daemon_process: Any) -> None:
    # 192.0.2.1 is a documentation address: binding it fails, so nothing is ever exposed,
    # but the warning comes first.
    daemon = await daemon_process(
        "--host", "192.0.2.1", wait=False, allow_remote="true", api_keys="canary-key-1"
    )
    assert await daemon.exit_code() == 1
    text = daemon.log_text()
    assert "WARNING: listening on 192.0.2.1" in text
    assert "cannot listen on 192.0.2.1" in text
    assert "canary-key-1" not in text


async def test_port_in_use_exits_1_and_says_so(daemon_process: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = await daemon_process("--port", str(port), wait=False)
        assert await daemon.exit_code() == 1
    assert "already in use" in daemon.log_text()


async def test_ipv6_loopback_in_use_is_an_error_not_a_silent_fallback(
    daemon_process: Any,
) -> None:
    if not ipv6_available():
        pytest.skip("no IPv6 loopback on this machine")
    with socket.socket(socket.AF_INET6) as taken:
        taken.bind(("::1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                pytest.skip("the port is taken on IPv4 too")
        daemon = await daemon_process("--port", str(port), wait=False)
        assert await daemon.exit_code() == 1
    text = daemon.log_text()
    assert f"[::1]:{port} is already in use" in text
    assert "ipv6_loopback = false" in text
