"""The one Config: every setting and its default, loaded once.

Sources, later ones winning: built-in defaults, the TOML file (``--config PATH``, else
``./mcp-local-provider.toml`` if present), environment variables
``MCP_LOCAL_PROVIDER_<FIELD>``, then command-line flags.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from mcp_local_provider.core.addresses import (
    LOOPBACK_ORIGINS,
    check_host_entry,
    check_origin_entry,
    is_loopback_host,
)
from mcp_local_provider.core.protocol import MODEL_NAME_PATTERN

ENV_PREFIX = "MCP_LOCAL_PROVIDER_"
DEFAULT_CONFIG_NAME = "mcp-local-provider.toml"
Scope = Literal["inference", "embeddings"]
KNOWN_SCOPES: tuple[Scope, ...] = ("inference", "embeddings")


def default_state_dir() -> Path:
    """Where the bridge token lives: ``$XDG_STATE_HOME/mcp-local-provider``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mcp-local-provider"


class ConfigError(Exception):
    """A setting is invalid; the message names the key, the value and what is allowed."""


class ModelsConfig(BaseModel):
    """The ``[models]`` table: how model names editors ask for map onto agents' models."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    aliases: dict[str, str] = Field(
        default_factory=dict,
        description="extra model names, each mapped onto a model an agent serves",
    )
    default_context_length: int = Field(
        32768, ge=256, description="context length shown for models whose agent gives none"
    )

    @field_validator("aliases")
    @classmethod
    def _alias_names(cls, value: dict[str, str]) -> dict[str, str]:
        for alias, target in value.items():
            for name in (alias, target):
                if not MODEL_NAME_PATTERN.match(name):
                    raise ValueError(
                        f"{name!r} is not a model name (1-200 letters, digits and . _ : @ / + -)"
                    )
        return value


class BackendSettings(BaseModel):
    """One ``[agent.backends.NAME]`` table: how the agent runs that backend."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str | None = Field(
        None,
        description="backend implementation (echo, openai, claude, cursor, gemini, codex); "
        "unset: the table's name",
    )
    binary: str | None = Field(
        None, description="the CLI to run, a name on PATH or a path; unset: the CLI's usual name"
    )
    args: tuple[str, ...] = Field((), description="extra arguments for the CLI's command line")
    env: dict[str, str] = Field(
        default_factory=dict, description="extra environment variables for the CLI"
    )
    models: tuple[str, ...] = Field(
        (), description="model names to advertise; unset: the backend's own (openai: upstream's)"
    )
    model: str | None = Field(
        None,
        description="model passed to the CLI or upstream for every request; unset: the "
        "requested name if `models` is set (always for openai), else the tool's default",
    )
    workdir: Path | None = Field(
        None, description="working directory of the CLI; unset: a fresh scratch directory per run"
    )
    timeout: float = Field(600, gt=0, description="longest run of one request, start to end")
    idle_timeout: float = Field(120, gt=0, description="longest silence from the CLI or upstream")
    cancel_grace: float = Field(
        0.5, gt=0, le=1.0, description="on cancel, how long the CLI has to stop before SIGKILL"
    )
    base_url: str | None = Field(
        None, description="openai: the upstream's base URL, e.g. http://127.0.0.1:8000/v1"
    )
    api_key_env: str | None = Field(
        None, description="openai: environment variable holding the upstream's API key"
    )
    api_key_file: Path | None = Field(
        None, description="openai: file holding the upstream's API key"
    )

    @field_validator("workdir", "api_key_file")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None


class AgentSettings(BaseModel):
    """The ``[agent]`` table: defaults of ``mcp-local-provider agent`` and its backends."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: str = Field("echo", description="backend served when --backend is not given")
    max_concurrency: int = Field(4, ge=1, description="requests the agent serves at once")
    backends: dict[str, BackendSettings] = Field(
        default_factory=dict, description="settings per backend, by name"
    )

    def settings_for(self, name: str) -> BackendSettings:
        """The table for ``name``, or the defaults."""
        return self.backends.get(name) or BackendSettings()


class Config(BaseModel):
    """Every setting of the daemon and its CLI, with its default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Listening
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(11434, ge=1, le=65535, description="port to listen on")
    allow_remote: bool = Field(
        False, description="allow a non-loopback host; API keys are then required"
    )
    ipv6_loopback: bool = Field(
        True, description="with a loopback host, also listen on [::1] where available"
    )
    allowed_hosts: tuple[str, ...] = Field(
        (), description="Host header names accepted besides localhost, 127.0.0.1 and [::1]"
    )
    allowed_origins: tuple[str, ...] = Field(
        LOOPBACK_ORIGINS, description="browser origins allowed to call the API (no '*')"
    )
    api_keys: tuple[SecretStr, ...] = Field(
        (), description="API keys for the editor API (or sha256:<hex> digests of them)"
    )
    api_keys_file: Path | None = Field(
        None, description="file with one API key (or sha256:<hex> digest) per line"
    )

    # Connection and input limits
    max_connections: int = Field(256, ge=1, description="open HTTP connections, at most")
    max_in_flight: int = Field(128, ge=1, description="HTTP requests handled at once, at most")
    keepalive_timeout: float = Field(
        30, gt=0, description="idle connections (and slow request headers) are closed after this"
    )
    body_timeout: float = Field(30, gt=0, description="time a client has to send a request body")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="largest request body")
    max_messages: int = Field(100, ge=1, description="messages (or inputs) per request")
    max_message_chars: int = Field(1_000_000, ge=1, description="characters per message")
    max_request_chars: int = Field(4_000_000, ge=1, description="characters per request")

    # Consent and the bridge token
    approval: Literal["manual", "prompt", "auto"] | None = Field(
        None, description="how pending agents are approved; unset: prompt on a TTY, else manual"
    )
    bridge_token: SecretStr | None = Field(
        None, description="token agents and the CLI authenticate with; unset: read token_file"
    )
    token_file: Path | None = Field(
        None, description="file holding the bridge token; unset: <state_dir>/bridge-token"
    )
    state_dir: Path = Field(default_factory=default_state_dir, description="per-user state")

    # Sessions
    allowed_scopes: tuple[Scope, ...] = Field(
        KNOWN_SCOPES, description="scopes an agent may be granted"
    )
    default_ttl_seconds: float = Field(3600, gt=0, description="session lifetime if unasked")
    max_ttl_seconds: float = Field(86400, gt=0, description="longest lifetime granted")
    max_requests: int = Field(1000, ge=1, description="requests a session may serve")
    max_concurrency: int = Field(4, ge=1, description="concurrent requests per session, at most")
    requests_per_minute: int = Field(600, ge=0, description="requests per session per minute")
    tokens_per_minute: int = Field(
        1_000_000, ge=0, description="tokens per session per minute, as reported by the agent"
    )
    max_queued_requests: int = Field(
        16, ge=0, description="requests that may wait for a busy session, per session"
    )

    # Agent socket timings (seconds)
    hello_timeout: float = Field(10, gt=0, description="time an agent has to send hello")
    approval_timeout: float = Field(120, gt=0, description="time the user has to approve")
    reconnect_grace: float = Field(5, ge=0, description="how long requests wait for an agent")
    heartbeat: float = Field(15, gt=0, description="WebSocket ping interval")
    max_frame_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="largest agent frame")
    auth_failures_per_minute: int = Field(
        10, ge=1, description="bridge-token failures a peer may make per minute before 429"
    )
    max_pending_per_token: int = Field(
        4, ge=1, description="agents awaiting approval at once, per bridge token"
    )
    max_pending: int = Field(16, ge=1, description="agents awaiting approval at once, in all")

    # Request timings (seconds)
    first_chunk_timeout: float = Field(120, gt=0, description="wait for the agent's first chunk")
    idle_timeout: float = Field(60, gt=0, description="longest gap between chunks")
    total_timeout: float = Field(600, gt=0, description="longest request, start to end")

    # Model names
    models: ModelsConfig = Field(
        default_factory=ModelsConfig, description="model aliases and defaults ([models] table)"
    )

    # The MCP server (``mcp-local-provider mcp``)
    mcp_models: tuple[str, ...] = Field(
        ("mcp-agent",), description="models an MCP host's agent serves unless it names its own"
    )
    mcp_wait_limit: float = Field(
        45, gt=0, le=55, description="longest next_request wait (hosts drop calls after 60 s)"
    )
    mcp_sampling_max_tokens: int = Field(
        4096, ge=1, description="maxTokens asked of the host when the editor sets no limit"
    )

    # Audit log
    audit_log: Path | None = Field(
        None, description="audit log (JSON lines); unset: <state_dir>/audit.jsonl"
    )
    audit_key_file: Path | None = Field(
        None, description="secret for prompt digests; unset: <state_dir>/audit-key"
    )
    audit_max_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="size at which the audit log is rotated"
    )
    audit_backups: int = Field(5, ge=0, description="rotated audit logs kept")
    audit_retry_interval: float = Field(
        1.0, gt=0, description="how often a failed audit log is tried again"
    )

    # Housekeeping
    sweep_interval: float = Field(1.0, gt=0, description="how often expired sessions are ended")
    shutdown_grace: float = Field(10, ge=0, description="time in-flight requests get on stop")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    log_format: Literal["auto", "console", "json"] = Field(
        "auto", description="auto: console on a TTY, JSON otherwise"
    )
    access_log: bool = Field(
        True, description="log one line per HTTP request (health and metrics at debug level)"
    )

    # The agent command (a TOML table; not settable from the environment)
    agent: AgentSettings = Field(
        default_factory=AgentSettings, description="mcp-local-provider agent and its backends"
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_host_entry(entry) for entry in value)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_origin_entry(entry) for entry in value)

    def resolved_token_file(self) -> Path:
        return self.token_file or self.state_dir / "bridge-token"

    def resolved_audit_log(self) -> Path:
        return self.audit_log or self.state_dir / "audit.jsonl"

    def resolved_audit_key_file(self) -> Path:
        return self.audit_key_file or self.state_dir / "audit-key"

    @property
    def keys_configured(self) -> bool:
        return bool(self.api_keys) or self.api_keys_file is not None

    def resolved_approval(self, stdin_is_tty: bool) -> Literal["manual", "prompt", "auto"]:
        if self.approval is not None:
            return self.approval
        return "prompt" if stdin_is_tty else "manual"


def _describe_error(err: dict[str, Any], source: Mapping[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(config)"
    top = err["loc"][0] if err["loc"] else None
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(_table_of(err["loc"][:-1]).model_fields))
        return f"unknown setting {key!r}; known settings: {allowed}"
    value = err.get("input")
    if len(err["loc"]) == 1:
        value = source.get(str(top), value)
    if key in ("bridge_token", "api_keys") or key.startswith("api_keys."):
        value = "***"
    return f"{key} = {value!r}: {err['msg']}"


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
    values: dict[str, Any] = {}
    for name, field in Config.model_fields.items():
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is None or raw == "":
            continue
        annotation = str(field.annotation)
        if _is_table(field.annotation):
            continue  # a table ([models], [agent]): set it in the file
        if "tuple" in annotation:
            values[name] = [part.strip() for part in raw.split(",") if part.strip()]
        else:
            values[name] = raw
    return values


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
    values.update(_from_env(environ))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        config = Config.model_validate(values)
    except ValidationError as exc:
        where = f" (in {path})" if path is not None else ""
        problems = "; ".join(_describe_error(e, values) for e in exc.errors())  # type: ignore[arg-type]
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


def base_url(host: str, port: int) -> str:
    """The daemon's own URL for a listening address (a wildcard address means loopback)."""
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False
