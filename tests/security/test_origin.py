"""Origin and body type: browsers may only reach the API from allowed origins; CORS preflight
is answered only for them; bodies must be JSON and uncompressed."""

from __future__ import annotations

import gzip
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from mcp_local_provider.core.addresses import check_origin_entry
from mcp_local_provider.core.config import ConfigError, load_config
from mcp_local_provider.policy.hosts import OriginPolicy
from tests.fakes import Daemon
from tests.readings import Meter
from tests.security.helpers import CountingEcho, audit_lines, chat_body

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "origin",
    ["https://attacker.example", "null", "http://localhost.attacker.example", "file://", "*"],
)
async def test_foreign_origin_is_403_before_anything_is_relayed_or_logged(
    daemon: Daemon, http: aiohttp.ClientSession, origin: str
) -> None:
    backend = CountingEcho()
    await daemon.start_agent(backend)
    with capture_logs() as logs:
        async with http.post(
            daemon.url + "/v1/chat/completions",
            data=chat_body("secret prompt"),
            headers={**JSON, "Origin": origin},
        ) as response:
            body = await response.json()
            assert response.status == 403
            assert "Access-Control-Allow-Origin" not in response.headers
    assert body["error"]["code"] == "forbidden"
    assert backend.served == 0
    assert Meter(daemon)("rejected_total", reason="origin") == 1
    assert [line for line in await audit_lines(daemon) if line["event"] == "request"] == []
    assert not [entry for entry in logs if "secret prompt" in repr(entry)]


async def test_no_origin_is_allowed(echo_daemon: Daemon, http: aiohttp.ClientSession) -> None:
    async with http.post(
        echo_daemon.url + "/v1/chat/completions", data=chat_body(), headers=JSON
    ) as response:
        assert response.status == 200
        assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    "origin", ["http://localhost:5173", "http://127.0.0.1", "https://[::1]:8443"]
)
async def test_loopback_origin_is_allowed_and_echoed_never_star(
    echo_daemon: Daemon, http: aiohttp.ClientSession, origin: str
) -> None:
    async with http.post(
        echo_daemon.url + "/v1/chat/completions",
        data=chat_body(),
        headers={**JSON, "Origin": origin},
    ) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == origin
        assert "Origin" in response.headers.getall("Vary")


async def test_preflight_is_answered_for_allowed_origins(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.options(
        daemon.url + "/v1/chat/completions",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization, bad header",
        },
    ) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        assert response.headers["Access-Control-Allow-Headers"] == "content-type, authorization"
        assert "POST" in response.headers["Access-Control-Allow-Methods"]


async def test_preflight_from_a_foreign_origin_is_403(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.options(
        daemon.url + "/api/chat",
        headers={"Origin": "https://attacker.example", "Access-Control-Request-Method": "POST"},
    ) as response:
        assert response.status == 403
        assert "Access-Control-Allow-Origin" not in response.headers
        assert isinstance((await response.json())["error"], str)  # the Ollama shape


async def test_preflight_on_the_control_api_is_403_even_for_allowed_origins(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.options(
        daemon.url + "/control/sessions",
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"},
    ) as response:
        assert response.status == 403


async def test_configured_origin_is_allowed_and_others_are_not(
    start_daemon: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(allowed_origins=["vscode-webview://abc"])
    for origin, status in (("vscode-webview://abc", 200), ("http://localhost:3000", 403)):
        async with http.get(daemon.url + "/v1/models", headers={"Origin": origin}) as response:
            assert response.status == status


async def test_agent_socket_with_a_foreign_origin_is_403(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(
            daemon.ws_url, headers={**daemon.auth, "Origin": "https://attacker.example"}
        )
    assert refused.value.status == 403
    assert len(daemon.state.registry) == 0


async def test_agent_socket_with_an_allowed_origin_connects(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(daemon.ws_url, headers={**daemon.auth, "Origin": "http://localhost"})
    await ws.close()


@pytest.mark.parametrize(
    "value", ["*", "null", "https://*.example.com", "not an origin", "http://"]
)
def test_wildcard_and_bad_origins_are_refused_at_start_up(tmp_path: Any, value: str) -> None:
    with pytest.raises(ConfigError, match="allowed_origins"):
        load_config(overrides={"allowed_origins": [value]}, environ={}, cwd=tmp_path)
    with pytest.raises(ValueError):
        check_origin_entry(value)


def test_origin_policy_matching() -> None:
    policy = OriginPolicy(["http://localhost:*", "https://app.example:8443", "https://b.example"])
    assert policy.allows("http://localhost")
    assert policy.allows("http://LOCALHOST:9999")
    assert not policy.allows("https://localhost:9999")
    assert policy.allows("https://app.example:8443")
    assert not policy.allows("https://app.example")
    assert policy.allows("https://b.example:443")
    assert not policy.allows("https://b.example/path")
    assert not policy.allows("null")


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/json",
    ],
)
async def test_non_json_content_type_from_a_page_is_415(
    echo_daemon: Daemon, http: aiohttp.ClientSession, content_type: str
) -> None:
    async with http.post(
        echo_daemon.url + "/v1/chat/completions",
        data=chat_body(),
        headers={"Content-Type": content_type, "Origin": "http://localhost:5173"},
    ) as response:
        assert response.status == 415
        assert (await response.json())["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize("path", ["/api/generate", "/v1/chat/completions"])
async def test_form_labelled_json_without_an_origin_is_read_as_json(
    echo_daemon: Daemon, http: aiohttp.ClientSession, path: str
) -> None:
    # curl -d '{...}', as Ollama's documentation writes it, labels the body as a form; no
    # browser page can send a request without an Origin, so the label is not a CSRF sign.
    body = (
        b'{"model": "echo", "prompt": "hello", "stream": false}'
        if path == "/api/generate"
        else chat_body()
    )
    async with http.post(
        echo_daemon.url + path,
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as response:
        assert response.status == 200, await response.text()
        answer = await response.json()
    text = answer["response"] if path == "/api/generate" else answer["choices"][0]["message"]
    assert "hello" in str(text)


@pytest.mark.parametrize(
    "content_type",
    # application/octet-stream: what aiohttp's client labels bytes with; a browser cannot send
    # it cross-origin without a preflight, so it is treated like no label at all.
    ["application/json; charset=utf-8", "application/vnd.x+json", "application/octet-stream"],
)
async def test_json_content_types_are_accepted(
    echo_daemon: Daemon, http: aiohttp.ClientSession, content_type: str
) -> None:
    async with http.post(
        echo_daemon.url + "/v1/chat/completions",
        data=chat_body(),
        headers={"Content-Type": content_type},
    ) as response:
        assert response.status == 200


async def test_missing_content_type_is_tolerated(echo_daemon: Daemon) -> None:
    # litellm posts JSON with no Content-Type at all; aiohttp's client would add one for
    # bytes, so this goes through a raw socket.
    from tests.security.helpers import port_of, raw_request

    response = await raw_request(
        port_of(echo_daemon), "POST", "/v1/chat/completions", body=chat_body()
    )
    assert response.status == 200
    assert response.json()["choices"][0]["message"]["content"] == "hello"


async def test_compressed_request_body_is_415(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        echo_daemon.url + "/v1/chat/completions",
        data=gzip.compress(chat_body()),
        headers={**JSON, "Content-Encoding": "gzip"},
    ) as response:
        assert response.status == 415
        assert "Content-Encoding" in (await response.json())["error"]["message"]


async def test_content_type_is_checked_on_control_posts_too(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        daemon.url + "/control/revoke",
        data="session_id=sess-0000000000000000",
        headers={**daemon.auth, "Content-Type": "application/x-www-form-urlencoded"},
    ) as response:
        assert response.status == 415
