"""Loading the one Config: built-in defaults, then the TOML file (``--config PATH``, else
``./mcp-local-provider.toml`` if present), then environment variables
``MCP_LOCAL_PROVIDER_<FIELD>``, then command-line flags, later ones winning. Every problem is
one ``ConfigError`` line naming the key, the value and what is allowed."""

from __future__ import annotations

import difflib
import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from mcp_local_provider.core.addresses import is_loopback_host
from mcp_local_provider.core.config.daemon import Config

ENV_PREFIX = "MCP_LOCAL_PROVIDER_"
DEFAULT_CONFIG_NAME = "mcp-local-provider.toml"


class ConfigError(Exception):
    """A setting is invalid; the message names the key, the value and what is allowed."""


#: A table with at most this many settings is listed in full after an unknown key.
_LISTED = 12


def _describe_error(
    err: dict[str, Any], source: Mapping[str, Any], origins: Mapping[str, str]
) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(config)"
    top = str(err["loc"][0]) if err["loc"] else ""
    origin = f" ({origins[top]})" if top in origins else ""
    if err["type"] == "extra_forbidden":
        return f"unknown setting {key!r}{origin}; {_known(err['loc'])}"
    value = err.get("input")
    if len(err["loc"]) == 1:
        value = source.get(top, value)
    if key in ("bridge_token", "api_keys") or key.startswith("api_keys."):
        value = "***"
    return f"{key} = {value!r}{origin}: {err['msg']}"


def _known(loc: tuple[Any, ...]) -> str:
    """What to say after an unknown key: the likely one, else the table's settings if few."""
    fields = sorted(_table_of(loc[:-1]).model_fields)
    likely = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6)
    if likely:
        return f"did you mean {likely[0]!r}?"
    if len(fields) <= _LISTED:
        return f"known settings: {', '.join(fields)}"
    return f"the example {DEFAULT_CONFIG_NAME} lists all {len(fields)} settings"


def _table_of(loc: tuple[Any, ...]) -> type[BaseModel]:
    """The settings model of the table at ``loc`` (e.g. ("agent", "backends", "claude"))."""
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            continue  # a key of a dict of tables, such as a backend's name
        inner = field.annotation
        if get_origin(inner) is dict:
            inner = get_args(inner)[1]
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            model = inner
    return model


def _is_table(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings from ``MCP_LOCAL_PROVIDER_<FIELD>`` variables (tables only from the file). A
    variable with the prefix that names no setting is an error, as the same key in the file
    is: a typo must not be ignored."""
    _check_env_names(environ)
    values: dict[str, Any] = {}
    for name, field in Config.model_fields.items():
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is None or raw == "":
            continue
        annotation = str(field.annotation)
        if "tuple" in annotation:
            values[name] = [part.strip() for part in raw.split(",") if part.strip()]
        else:
            values[name] = raw
    return values


def _check_env_names(environ: Mapping[str, str]) -> None:
    settable = {
        ENV_PREFIX + name.upper(): name
        for name, field in Config.model_fields.items()
        if not _is_table(field.annotation)
    }
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or variable in settable:
            continue
        name = variable[len(ENV_PREFIX) :].lower()
        field = Config.model_fields.get(name)
        if field is not None:  # a table ([models], [agent])
            raise ConfigError(
                f"{variable}: [{name}] is a table and can only be set in the config file"
            )
        likely = difflib.get_close_matches(name, list(settable.values()), n=1, cutoff=0.6)
        hint = (
            f"did you mean {ENV_PREFIX}{likely[0].upper()}?"
            if likely
            else f"the example {DEFAULT_CONFIG_NAME} lists every setting"
        )
        raise ConfigError(f"unknown setting {variable} (in the environment); {hint}")


def load_config(
    path: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Merge file, environment and overrides (flags) into one validated Config.

    Raises ConfigError with a one-line, human message on any problem.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if path is None:
        candidate = (cwd or Path.cwd()) / DEFAULT_CONFIG_NAME
        path = candidate if candidate.is_file() else None
    if path is not None:
        try:
            with open(path, "rb") as fh:
                values.update(tomllib.load(fh))
        except FileNotFoundError:
            raise ConfigError(f"config file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror}") from None
    from_env = _from_env(environ)
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    values.update(from_env)
    values.update(flags)
    values["config_file"] = path  # where the settings came from, whatever they claim
    # Where each top-level value came from, so an error can say which source to fix.
    origins = {key: f"from {ENV_PREFIX}{key.upper()}" for key in from_env}
    origins.update({key: f"from --{key.replace('_', '-')}" for key in flags})
    try:
        config = Config.model_validate(values)
    except ValidationError as exc:
        where = f" (in {path})" if path is not None else ""
        problems = "; ".join(
            _describe_error(e, values, origins)  # type: ignore[arg-type]
            for e in exc.errors()
        )
        raise ConfigError(f"invalid configuration{where}: {problems}") from None
    if config.default_ttl_seconds > config.max_ttl_seconds:
        raise ConfigError(
            f"default_ttl_seconds = {config.default_ttl_seconds} is more than "
            f"max_ttl_seconds = {config.max_ttl_seconds}"
        )
    check_exposure(config)
    return config


def check_exposure(config: Config) -> None:
    """Refuse a non-loopback ``host`` unless ``allow_remote`` is set, and then without keys."""
    if is_loopback_host(config.host):
        return
    if not config.allow_remote:
        raise ConfigError(
            f"host = {config.host!r} is not a loopback address: the daemon would be reachable "
            "from other machines. Set allow_remote = true (and api_keys) if that is intended"
        )
    if not config.keys_configured:
        raise ConfigError(
            f"host = {config.host!r} with allow_remote = true needs API keys: "
            "set api_keys or api_keys_file"
        )


def stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False
