"""Config: defaults, file, environment and flags merged once; bad values stop start-up."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from mcp_local_provider.cli.main import main
from mcp_local_provider.core.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_listen_on_loopback_11434(tmp_path: Path) -> None:
    config = load_config(environ={}, cwd=tmp_path)
    assert (config.host, config.port) == ("127.0.0.1", 11434)
    assert config.approval is None


def test_file_then_env_then_flags_override_in_that_order(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('port = 1000\nhost = "127.0.0.2"\nlog_level = "debug"\n')
    config = load_config(
        path,
        environ={"MCP_LOCAL_PROVIDER_PORT": "2000", "MCP_LOCAL_PROVIDER_HOST": "127.0.0.3"},
        overrides={"port": 3000, "host": None},
    )
    assert config.port == 3000  # flag beats env
    assert config.host == "127.0.0.3"  # env beats file; an unset flag overrides nothing
    assert config.log_level == "debug"  # file beats default


def test_config_file_in_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / "mcp-local-provider.toml").write_text("port = 4321\n")
    assert load_config(environ={}, cwd=tmp_path).port == 4321


def test_list_settings_come_from_comma_separated_env(tmp_path: Path) -> None:
    config = load_config(environ={"MCP_LOCAL_PROVIDER_ALLOWED_SCOPES": "inference"}, cwd=tmp_path)
    assert config.allowed_scopes == ("inference",)


def test_invalid_value_names_key_value_and_what_is_allowed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(environ={"MCP_LOCAL_PROVIDER_APPROVAL": "sometimes"}, cwd=tmp_path)
    message = str(raised.value)
    assert "approval" in message and "'sometimes'" in message
    assert "manual" in message and "auto" in message


def test_unknown_setting_is_refused_with_the_likely_one(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("prot = 1\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    message = str(raised.value)
    assert "unknown setting 'prot'; did you mean 'port'?" in message
    assert "allowed_origins" not in message  # not every setting


def test_unknown_setting_like_none_points_to_the_example_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("zzzz = 1\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert "the example mcp-local-provider.toml lists all" in str(raised.value)


def test_unknown_key_in_a_small_table_lists_that_table(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[models]\nzzzz = 1\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert "known settings: aliases, cooldown_initial, cooldown_max, default_context_length" in (
        str(raised.value)
    )


def test_a_bad_value_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(environ={"MCP_LOCAL_PROVIDER_PORT": "abc"}, cwd=tmp_path)
    assert "port = 'abc' (from MCP_LOCAL_PROVIDER_PORT)" in str(raised.value)


def test_a_bad_value_from_a_flag_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(overrides={"port": 0}, environ={}, cwd=tmp_path)
    assert "port = 0 (from --port)" in str(raised.value)


def test_broken_toml_is_reported_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("port = = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, environ={})


def test_bridge_token_value_is_never_echoed_in_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(overrides={"bridge_token": 12345678}, environ={}, cwd=tmp_path)
    assert "12345678" not in str(raised.value)


def test_example_file_lists_every_setting_with_its_default() -> None:
    text = (ROOT / "mcp-local-provider.toml").read_text()
    example = tomllib.loads(text)
    defaults = Config()
    for name, field in Config.model_fields.items():
        shown = f"{name} =" in text or f"[{name}]" in text  # a setting, or a table
        assert shown, f"{name} is missing from mcp-local-provider.toml"
        if name in example:
            value = getattr(defaults, name)
            expected = list(value) if isinstance(value, tuple) else value
            if isinstance(value, BaseModel):  # a table; its empty sub-tables may be left out
                expected = {
                    k: v for k, v in value.model_dump().items() if v != {} or k in example[name]
                }
            assert example[name] == expected, f"{name}: example {example[name]!r} != {expected!r}"
        else:
            assert field.default is None or field.default_factory is not None, name
    # The example, as shipped, is itself a valid configuration.
    Config.model_validate(example)


def test_serve_with_bad_config_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("port = 70000\n")
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "port = 70000" in err and "Traceback" not in err


def test_default_limits_last_a_working_week_of_autocomplete() -> None:
    """Autocomplete sends a request every few keystrokes: thousands a day. The defaults let one
    approval last a working day, an agent ask for a week, and no request limit end a session
    within that week (5 days of 8 hours at one request every 2 s is 72,000)."""
    config = Config()
    assert config.default_ttl_seconds >= 8 * 3600
    assert config.max_ttl_seconds >= 5 * 24 * 3600
    assert config.max_requests >= 5 * 8 * 3600 // 2


def test_the_config_records_the_file_it_was_read_from(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('config_file = "/somewhere/else.toml"\nport = 4321\n')
    config = load_config(path, environ={}, cwd=tmp_path)
    assert config.config_file == path
    assert load_config(environ={}, cwd=tmp_path).config_file is None


def test_an_unknown_variable_with_the_prefix_is_refused_with_the_likely_one(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(environ={"MCP_LOCAL_PROVIDER_PROT": "1"}, cwd=tmp_path)
    assert "MCP_LOCAL_PROVIDER_PROT" in str(raised.value)
    assert "did you mean MCP_LOCAL_PROVIDER_PORT?" in str(raised.value)


def test_a_table_set_from_the_environment_is_refused_pointing_at_the_file(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"\[models\] is a table .* config file"):
        load_config(environ={"MCP_LOCAL_PROVIDER_MODELS": "x"}, cwd=tmp_path)


def test_serve_with_an_unknown_variable_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MCP_LOCAL_PROVIDER_PROT", "1")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MCP_LOCAL_PROVIDER_PROT" in err
