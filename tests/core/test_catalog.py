"""Model names: ``foo`` is ``foo:latest``, aliases from the config, capabilities, and routing
only to sessions that serve the model asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from mcp_local_provider.agent.backends.echo import EchoBackend
from mcp_local_provider.core import errors
from mcp_local_provider.core.catalog import Catalog, capability, name_key, tagged
from mcp_local_provider.core.config import ConfigError, load_config
from mcp_local_provider.core.protocol import ModelSpec
from mcp_local_provider.core.registry import Registry, SessionLimits, SessionState
from tests.backends import thinking
from tests.conftest import StartDaemon
from tests.fakes import Daemon

LIMITS = SessionLimits(("inference", "embeddings"), 60, 60, 10, 2)


def catalog_with(*specs: ModelSpec, aliases: dict[str, str] | None = None) -> Catalog:
    registry = Registry(LIMITS, clock=lambda: 1000.0)
    registry.register(
        agent_id="a",
        label="",
        models=specs,
        scopes=["inference"],
        ttl_seconds=None,
        max_concurrency=None,
    )
    return Catalog(registry, aliases or {}, default_context_length=4096)


def test_a_name_without_tag_is_the_latest_tag() -> None:
    assert name_key("Foo:latest") == name_key("foo") == "foo"
    assert name_key("foo:7b") != name_key("foo")
    assert tagged("foo") == "foo:latest"
    assert tagged("foo:7b") == "foo:7b"
    assert tagged("ns/foo") == "ns/foo:latest"


def test_capability_synonyms_are_one_capability() -> None:
    assert capability("insert") == capability("FIM") == "fim"
    assert capability("embeddings") == "embedding"


def test_resolve_finds_the_agent_name_whatever_the_tag() -> None:
    catalog = catalog_with(ModelSpec(name="coder"))
    assert catalog.resolve("coder:latest").target == "coder"
    assert catalog.resolve("CODER").target == "coder"


def test_unknown_model_names_what_is_served() -> None:
    catalog = catalog_with(ModelSpec(name="coder"))
    with pytest.raises(errors.ModelNotFound, match="models served now: coder"):
        catalog.resolve("other")


def test_no_session_at_all_is_no_active_session_not_404() -> None:
    catalog = Catalog(Registry(LIMITS), {}, 4096)
    with pytest.raises(errors.NoActiveSession):
        catalog.resolve("anything")


def test_alias_maps_onto_the_agent_model_and_is_listed() -> None:
    catalog = catalog_with(
        ModelSpec(name="coder", capabilities=("chat", "fim"), context_length=32768),
        aliases={"qwen2.5-coder:7b": "coder"},
    )
    entry = catalog.resolve("qwen2.5-coder:7b")
    assert (entry.name, entry.target, entry.alias) == ("qwen2.5-coder:7b", "coder", True)
    assert entry.supports("fim") and entry.context_length == 32768
    assert [e.name for e in catalog.entries()] == ["coder", "qwen2.5-coder:7b"]
    assert entry.digest == catalog.resolve("coder").digest


def test_alias_of_a_model_nobody_serves_is_not_listed_and_404_says_why() -> None:
    catalog = catalog_with(ModelSpec(name="coder"), aliases={"big": "absent"})
    assert [e.name for e in catalog.entries()] == ["coder"]
    with pytest.raises(errors.ModelNotFound, match="alias of 'absent'"):
        catalog.resolve("big")


def test_missing_capability_is_a_400_naming_it() -> None:
    catalog = catalog_with(ModelSpec(name="coder", capabilities=("chat",)))
    with pytest.raises(errors.Unsupported, match="fill-in-the-middle"):
        catalog.resolve("coder", ["fim"])


def test_unstated_context_length_uses_the_configured_default() -> None:
    assert catalog_with(ModelSpec(name="coder")).resolve("coder").context_length == 4096


def test_aliases_load_from_the_models_table(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[models]\ndefault_context_length = 8192\n[models.aliases]\n"qwen2.5-coder:7b" = "claude"\n'
    )
    config = load_config(path, environ={})
    assert config.models.aliases == {"qwen2.5-coder:7b": "claude"}
    assert config.models.default_context_length == 8192


def test_a_bad_alias_name_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[models.aliases]\n"bad name" = "claude"\n')
    with pytest.raises(ConfigError, match="bad name"):
        load_config(path, environ={})


# -- end to end -------------------------------------------------------------------------------


async def test_alias_is_listed_and_served_by_its_target(
    start_daemon: StartDaemon, http: aiohttp.ClientSession, openai_client: Any
) -> None:
    daemon = await start_daemon(models={"aliases": {"qwen2.5-coder:7b": "echo"}})
    await daemon.start_agent()
    async with http.get(daemon.url + "/api/tags") as response:
        names = [m["name"] for m in (await response.json())["models"]]
    assert sorted(names) == ["echo:latest", "qwen2.5-coder:7b"]
    listed = await openai_client(daemon).models.list()
    assert sorted(m.id for m in listed.data) == ["echo", "qwen2.5-coder:7b"]
    reply = await openai_client(daemon).chat.completions.create(
        model="qwen2.5-coder:7b", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.model == "qwen2.5-coder:7b" and reply.choices[0].message.content == "hi"


async def test_requests_go_only_to_sessions_serving_the_model(
    daemon: Daemon, openai_client: Any
) -> None:
    backend = thinking()
    await daemon.start_agent(backend, agent_id="thinker-agent")
    await daemon.start_agent(EchoBackend(models=["echo"]), agent_id="echo-agent")
    client = openai_client(daemon)
    for _ in range(4):
        reply = await client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "to echo"}]
        )
        assert reply.choices[0].message.content == "to echo"
    assert backend.requests == []
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(
            model="unknown", messages=[{"role": "user", "content": "x"}]
        )


def test_an_unknown_key_in_the_models_table_names_the_likely_one(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[models]\nalias = {}\n")
    with pytest.raises(
        ConfigError, match=r"unknown setting 'models\.alias'; did you mean 'aliases'"
    ):
        load_config(path, environ={})


def test_the_catalog_follows_sessions_joining_and_leaving() -> None:
    catalog = catalog_with(ModelSpec(name="coder"))
    registry = catalog.registry
    assert catalog.find("writer") is None  # the names served are now cached
    session, _ = registry.register(
        agent_id="b",
        label="",
        models=[ModelSpec(name="writer", capabilities=["chat", "tools"])],
        scopes=["inference"],
        ttl_seconds=None,
        max_concurrency=None,
    )
    assert catalog.resolve("writer", ["tools"]).target == "writer"
    registry.end(session.id, SessionState.REVOKED)
    with pytest.raises(errors.ModelNotFound, match="models served now: coder"):
        catalog.resolve("writer")
