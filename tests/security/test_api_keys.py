"""API keys for the editor API: off by default (any Bearer value ignored), and when on,
required as ``Authorization: Bearer`` or ``x-api-key``, kept and compared as digests."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from mcp_local_provider.http.state import STATE
from mcp_local_provider.policy.keys import ApiKeys, key_digest, keys_from_text
from tests.fakes import Daemon
from tests.security.helpers import audit_lines, chat_body

KEY = "sk-test-key-0123456789"
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("bearer", ["noop", "", "anything at all", "Bearer"])
async def test_with_keys_off_any_bearer_value_is_ignored(
    echo_daemon: Daemon, http: aiohttp.ClientSession, bearer: str
) -> None:
    async with http.post(
        echo_daemon.url + "/v1/chat/completions",
        data=chat_body(),
        headers={**JSON, "Authorization": f"Bearer {bearer}"},
    ) as response:
        assert response.status == 200


@pytest.fixture
async def keyed(start_daemon: Any) -> Daemon:
    daemon: Daemon = await start_daemon(api_keys=[KEY])
    await daemon.start_agent()
    return daemon


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer noop"}, {"x-api-key": "wrong"}, {"Authorization": KEY}],
)
async def test_with_keys_on_a_missing_or_wrong_key_is_401(
    keyed: Daemon, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    async with http.post(
        keyed.url + "/v1/chat/completions", data=chat_body(), headers={**JSON, **headers}
    ) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        body = await response.json()
    assert body["error"]["type"] == "authentication_error"


async def test_401_on_the_ollama_routes_has_the_ollama_shape(
    keyed: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.get(keyed.url + "/api/tags") as response:
        assert response.status == 401
        assert isinstance((await response.json())["error"], str)


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {KEY}"}, {"x-api-key": KEY}])
async def test_with_keys_on_the_right_key_is_accepted_and_audited_by_id(
    keyed: Daemon, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    async with http.post(
        keyed.url + "/v1/chat/completions", data=chat_body(), headers={**JSON, **headers}
    ) as response:
        assert response.status == 200
    [line] = [x for x in await audit_lines(keyed) if x["event"] == "request"]
    assert line["client_key"] == "key-" + hashlib.sha256(KEY.encode()).hexdigest()[:8]
    assert KEY not in repr(line)


async def test_the_openai_sdk_works_with_the_key(keyed: Daemon, openai_client: Any) -> None:
    client = openai_client(keyed, api_key=KEY)
    reply = await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content == "hi"
    with pytest.raises(openai.AuthenticationError):
        await openai_client(keyed, api_key="wrong").models.list()


async def test_liveness_routes_stay_open_and_metrics_needs_the_key(
    keyed: Daemon, http: aiohttp.ClientSession
) -> None:
    for path in ("/", "/health", "/health/deep", "/health/ready"):
        async with http.get(keyed.url + path) as response:
            assert response.status in (200, 503)
    async with http.get(keyed.url + "/metrics") as response:
        assert response.status == 401


async def test_bridge_token_routes_do_not_take_api_keys(
    keyed: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.get(
        keyed.url + "/control/sessions", headers={"Authorization": f"Bearer {KEY}"}
    ) as response:
        assert response.status == 401
    async with http.get(keyed.url + "/control/sessions", headers=keyed.auth) as response:
        assert response.status == 200


async def test_keys_file_with_plain_keys_and_digests(
    start_daemon: Any, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    second = "second-key"
    keys = tmp_path / "keys"
    keys.write_text(
        f"# editor keys\n{KEY}\n\nsha256:{hashlib.sha256(second.encode()).hexdigest()}\n"
    )
    daemon = await start_daemon(api_keys_file=keys)
    assert len(daemon.app[STATE].security.keys) == 2
    for key, status in ((KEY, 200), (second, 200), ("third", 401)):
        async with http.get(daemon.url + "/v1/models", headers={"x-api-key": key}) as response:
            assert response.status == status


def test_keys_are_held_only_as_digests() -> None:
    keys = ApiKeys([key_digest(KEY)])
    assert KEY not in repr(vars(keys))
    assert keys.match(KEY) is not None
    assert keys.match(KEY + "x") is None
    assert keys.match("") is None
    assert keys_from_text("#c\n\n a \n") == [hashlib.sha256(b"a").hexdigest()]


def test_keys_are_compared_with_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    from mcp_local_provider.policy import keys as key_module

    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(key_module.hmac, "compare_digest", spy)
    keys = ApiKeys([key_digest("one"), key_digest("two")])
    assert keys.match("one") is not None
    assert len(calls) == 2  # every digest is compared, whether or not one matched already
    assert all(len(a) == len(b) == 64 for a, b in calls)


def test_key_values_are_never_echoed_in_configuration_errors(tmp_path: Path) -> None:
    from mcp_local_provider.core.config import ConfigError, load_config

    with pytest.raises(ConfigError) as raised:
        load_config(overrides={"api_keys": [KEY, 12345]}, environ={}, cwd=tmp_path)
    assert KEY not in str(raised.value) and "12345" not in str(raised.value)
