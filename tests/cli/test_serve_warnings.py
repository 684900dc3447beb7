"""What ``serve`` says at start-up about a configuration that loads but is likely wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcp_local_provider.cli.serve import unknown_alias_targets
from mcp_local_provider.core.config import load_config


def config_with(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_config(path, environ={})


def test_an_alias_of_a_model_nothing_serves_is_a_warning_with_the_likely_name(
    tmp_path: Path,
) -> None:
    config = config_with(tmp_path, '[models.aliases]\n"qwen" = "ecko"\n')
    [warning] = unknown_alias_targets(config)
    assert "'qwen' points at 'ecko'" in warning and "did you mean 'echo'?" in warning


def test_aliases_of_built_in_and_configured_models_are_not_warned_about(
    tmp_path: Path,
) -> None:
    config = config_with(
        tmp_path,
        '[models.aliases]\n"a" = "echo"\n"b" = "claude-code:latest"\n"c" = "gpt-local"\n'
        '[agent.backends.up]\nkind = "openai"\nmodels = ["gpt-local"]\n',
    )
    assert unknown_alias_targets(config) == []


async def test_serve_warns_about_the_alias_at_start_up(daemon_process: Any, tmp_path: Path) -> None:
    (tmp_path / "mcp-local-provider.toml").write_text('[models.aliases]\n"qwen" = "ecko"\n')
    daemon = await daemon_process()
    assert "alias 'qwen' points at 'ecko'" in daemon.log_text()
