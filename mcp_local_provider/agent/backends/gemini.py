"""Gemini CLI in headless mode (``gemini -o stream-json``), the prompt on stdin.

Assistant messages marked ``delta`` are token deltas; the result event carries the status and
token stats. The exit code decides when there is no usable result: 53 (turn limit) ends with
``length``, 130 means it was interrupted, anything else non-zero is an error.
"""

from __future__ import annotations

from typing import Any

from mcp_local_provider.agent.backend import BackendError
from mcp_local_provider.agent.backends.cli import CliBackend, OutputParser, failure, usage_from
from mcp_local_provider.agent.emulation import Prompt
from mcp_local_provider.agent.events import BackendEvent, Finish, InvokeRequest

EXIT_MEANINGS = {
    41: ("gemini is not signed in (exit 41); run `gemini` once to sign in", "backend_unavailable"),
    42: ("gemini rejected its input (exit 42)", "backend_error"),
    52: ("gemini's configuration is invalid (exit 52)", "backend_unavailable"),
    54: ("a gemini tool failed (exit 54)", "backend_error"),
    130: ("gemini was interrupted (exit 130)", "cancelled"),
}
EXIT_TURN_LIMIT = 53


class GeminiParser(OutputParser):
    cli = "gemini"

    def __init__(self) -> None:
        super().__init__()
        self.error: str | None = None
        self.usage: dict[str, Any] | None = None

    def feed(self, event: dict[str, Any]) -> list[BackendEvent]:
        kind = event.get("type")
        if kind == "message" and event.get("role") == "assistant":
            content = str(event.get("content") or "")
            return self.text(content) if event.get("delta") else self.message(content)
        if kind == "error":
            if event.get("severity") != "warning":
                self.error = str(event.get("message") or "unknown error")
            return []
        if kind == "result":
            stats = event.get("stats") or {}
            self.usage = usage_from(
                stats.get("input_tokens"), stats.get("output_tokens"), stats.get("cached")
            )
            if event.get("status") == "success":
                self.done = True
                return [Finish("stop", self.usage)]
            # The exit code says whether this was the turn limit: decide in ``end``.
            error = event.get("error") or {}
            message = error.get("message") if isinstance(error, dict) else error
            self.error = str(message or self.error or "unknown error")
        return []

    def end(self, code: int, stderr: str) -> list[BackendEvent]:
        if self.done:
            return []
        if code == EXIT_TURN_LIMIT:
            return [Finish("length", self.usage)]
        if code in EXIT_MEANINGS:
            what, kind = EXIT_MEANINGS[code]
            raise failure(what, self.error or stderr, kind)
        if self.error is not None:
            raise BackendError(f"gemini reported an error: {self.error}")
        return super().end(code, stderr)


class GeminiBackend(CliBackend):
    name = "gemini"
    binary_name = "gemini"
    default_models = ("gemini-cli",)

    def argv(self, request: InvokeRequest, prompt: Prompt) -> list[str]:
        assert self.path is not None
        # ``-p`` forces headless mode; its text is appended to what stdin carries, so it stays
        # empty and the prompt never appears in argv.
        argv = [self.path, "-o", "stream-json"]
        model = self.cli_model(request)
        if model:
            argv += ["-m", model]
        return [*argv, *self.settings.args, "-p", ""]

    def parser(self) -> OutputParser:
        return GeminiParser()
