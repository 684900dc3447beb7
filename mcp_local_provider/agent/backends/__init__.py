"""Backends an agent can serve with, by name."""

from __future__ import annotations

from mcp_local_provider.agent.backend import Backend
from mcp_local_provider.agent.backends.claude import ClaudeBackend
from mcp_local_provider.agent.backends.codex import CodexBackend
from mcp_local_provider.agent.backends.cursor import CursorBackend
from mcp_local_provider.agent.backends.echo import EchoBackend
from mcp_local_provider.agent.backends.gemini import GeminiBackend
from mcp_local_provider.agent.backends.openai import OpenAIBackend
from mcp_local_provider.core.config import BackendSettings

#: Backends that run an agent CLI.
CLI_BACKENDS: dict[str, type[ClaudeBackend | CursorBackend | GeminiBackend | CodexBackend]] = {
    "claude": ClaudeBackend,
    "cursor": CursorBackend,
    "gemini": GeminiBackend,
    "codex": CodexBackend,
}


def available() -> list[str]:
    return ["echo", "openai", *CLI_BACKENDS]


def create(
    name: str,
    *,
    models: list[str] | None = None,
    settings: BackendSettings | None = None,
    **options: object,
) -> Backend:
    """Build the backend called ``name``; raises ValueError for an unknown name.

    ``settings`` is the ``[agent.backends.NAME]`` table; its ``kind`` lets a table with any
    name use one of the built-in backends (two OpenAI upstreams, say).
    """
    kind = settings.kind if settings is not None and settings.kind else name
    if kind == "echo":
        return EchoBackend(models=models or None)
    if kind == "openai":
        base_url = options.get("base_url")
        return OpenAIBackend(
            settings, models=models, base_url=base_url if isinstance(base_url, str) else None
        )
    cli_backend = CLI_BACKENDS.get(kind)
    if cli_backend is not None:
        return cli_backend(settings, models=models)
    raise ValueError(f"unknown backend {name!r}; available: {', '.join(available())}")
