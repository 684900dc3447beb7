"""``Config``: every setting of the daemon and its commands, with its default and its bounds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from mcp_local_provider.core.addresses import (
    LOOPBACK_ORIGINS,
    check_host_entry,
    check_origin_entry,
)
from mcp_local_provider.core.config.agent import AgentSettings
from mcp_local_provider.core.config.models import ModelsConfig

Scope = Literal["inference", "embeddings"]
KNOWN_SCOPES: tuple[Scope, ...] = ("inference", "embeddings")


def default_state_dir() -> Path:
    """Where the bridge token lives: ``$XDG_STATE_HOME/mcp-local-provider``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mcp-local-provider"


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
    # One approval per working day by default, and a week at most when the agent asks; enough
    # requests for a week of autocomplete (thousands a day), so no limit ends a session mid-task.
    default_ttl_seconds: float = Field(28800, gt=0, description="session lifetime if unasked")
    max_ttl_seconds: float = Field(604800, gt=0, description="longest lifetime granted")
    max_requests: int = Field(100_000, ge=1, description="requests a session may serve")
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
    away_timeout: float = Field(
        600, gt=0, description="an active session whose agent is gone this long ends (left)"
    )
    heartbeat: float = Field(15, gt=0, description="WebSocket ping interval")
    max_frame_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="largest agent frame")
    max_buffered_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="answer bytes held for a client that is not reading; past it, it is dropped",
    )
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
    stream_ping_interval: float = Field(
        10, gt=0, description="a ping event on Anthropic streams after this much agent silence"
    )

    # Model names
    models: ModelsConfig = Field(
        default_factory=ModelsConfig, description="model aliases and defaults ([models] table)"
    )

    usage_retention_days: int = Field(
        90, ge=1, le=3650, description="days of usage (requests, tokens, per session) kept"
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

    # The web page (``/ui``)
    ui: bool = Field(True, description="serve the web page at /ui (log in with the ui command)")
    ui_session_ttl: float = Field(
        43200, gt=0, description="seconds a browser stays logged in to the web page, at most"
    )
    ui_login_ttl: float = Field(
        300, gt=0, description="seconds a login link printed by the ui command stays good"
    )
    #: Set by loading to the file it read (shown on the web page); not a setting.
    config_file: Path | None = Field(None, description="the config file read (set on load)")

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


def base_url(host: str, port: int) -> str:
    """The daemon's own URL for a listening address (a wildcard address means loopback)."""
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"
