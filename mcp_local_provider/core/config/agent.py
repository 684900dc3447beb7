"""The ``[agent]`` table and its ``[agent.backends.NAME]`` tables: how ``mcp-local-provider
agent`` runs each backend."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
    agent_tools: tuple[str, ...] = Field(
        (),
        description="the CLI's own tools the agent may use by itself, by the CLI's names "
        "(claude: Read, WebSearch, ...; gemini: read_file, google_web_search, ...; codex: shell, "
        "web_search, multi_agent, goals); unset: none",
    )
    timeout: float = Field(600, gt=0, description="longest run of one request, start to end")
    idle_timeout: float = Field(
        120,
        gt=0,
        description="longest wait for progress from the CLI or upstream (retries are none)",
    )
    cancel_grace: float = Field(
        0.5, gt=0, le=1.0, description="on cancel, how long the CLI has to stop before SIGKILL"
    )
    warm: bool = Field(
        True,
        description="start the CLI's next process ahead of its request (claude, codex, gemini), "
        "so no request waits for a CLI start-up; false: one start per request",
    )
    warm_max_idle: float = Field(
        900,
        gt=0,
        description="a process started ahead and unused this long (seconds) is replaced when "
        "taken, so it never serves with stale credentials or settings",
    )
    warm_max_memory: int = Field(
        2048,
        gt=0,
        description="a process started ahead whose memory (MiB, with its child processes) grew "
        "past this while it waited is replaced when taken",
    )
    tool_result_timeout: float = Field(
        120,
        ge=0,
        description="claude, codex, gemini: how long a turn that called the editor's tools is "
        "held open (its process running) for the editor's results, so the tool loop continues "
        "one live turn; 0: never held, each result is served by a fresh process",
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
