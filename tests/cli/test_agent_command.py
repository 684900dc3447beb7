"""``mcp-local-provider agent``: --check, choosing a backend, and refusing bad set-ups."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from mcp_local_provider.cli.main import main
from mcp_local_provider.core.config import Config
from tests.clis import FakeCli
from tests.fakes import BRIDGE_TOKEN

AGENTS_DOC = Path(__file__).resolve().parents[2] / "docs" / "agents.md"


def config_file(tmp_path: Path, fake: FakeCli, backend: str, **knobs: object) -> Path:
    settings = fake.settings(backend, **knobs)  # type: ignore[arg-type]
    env = "\n".join(f'{k} = "{v}"' for k, v in settings.env.items())
    path = tmp_path / "agent.toml"
    path.write_text(
        f'bridge_token = "{BRIDGE_TOKEN}"\n[agent]\nbackend = "{backend}"\n'
        f"[agent.backends.{backend}]\nwarm = false\n"
        f"[agent.backends.{backend}.env]\n{env}\n"
    )
    return path


def test_check_reports_each_step_and_succeeds(
    fake_cli: FakeCli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(tmp_path, fake_cli, "gemini")
    assert main(["agent", "--config", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "checking the gemini backend" in out
    assert re.search(r"ok {4}found .*fake-bin/gemini", out)
    assert "ok    models: gemini-cli" in out
    assert "'Hello there! How are you today?'" in out
    assert "finish: stop; 12 prompt + 9 completion tokens (reported)" in out
    assert out.strip().endswith("the gemini backend works")
    assert "Reply with the single word: pong" in fake_cli.last()["stdin"]


def test_check_fails_with_the_clis_own_words(
    fake_cli: FakeCli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(tmp_path, fake_cli, "claude", fixture="no_result", exit=1,
                       stderr="Invalid API key. Please run /login")  # fmt: skip
    assert main(["agent", "--config", str(path), "--check"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  prompt: claude exited with code 1 before finishing: Invalid API key" in out


def test_check_names_a_missing_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["agent", "--backend", "codex", "--binary", str(tmp_path / "nope"), "--check"])
    assert code == 1
    assert "FAIL  start: " in capsys.readouterr().out


def test_an_unknown_backend_is_a_configuration_error_in_one_line_with_the_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["agent", "--backend", "nope", "--check"]) == 2
    err = capsys.readouterr().err
    assert "unknown backend 'nope'; available: echo, openai, claude, cursor, gemini, codex" in err
    assert err.count("\n") == 1


def test_an_openai_upstream_that_is_the_daemon_itself_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'bridge_token = "{BRIDGE_TOKEN}"\nport = 11500\n')
    argv = ["agent", "--config", str(path), "--backend", "openai",
            "--base-url", "http://localhost:11500/v1"]  # fmt: skip
    assert main(argv) == 1
    assert "requests would loop" in capsys.readouterr().err


def test_there_is_no_flag_for_an_api_key(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["agent", "--backend", "openai", "--api-key", "sk-secret"])
    assert "unrecognized arguments" in capsys.readouterr().err


def test_the_settings_example_in_the_docs_is_a_valid_config() -> None:
    text = AGENTS_DOC.read_text(encoding="utf-8")
    [block] = re.findall(r"```toml\n(.*?)```", text, re.S)
    config = Config.model_validate(tomllib.loads(block))
    assert config.agent.backend == "claude"
    assert config.agent.backends["work"].kind == "openai"
    assert config.agent.settings_for("claude").models == ("sonnet", "opus")
