"""Claude Code in headless mode (``claude -p --output-format stream-json``), one turn with its
tools off (``--tools ""``) unless ``agent_tools`` names some. Token deltas come from the wrapped
stream events; usage and the stop reason from the result event.

When its model API fails, Claude Code retries (ten times over minutes by default) and prints a
``system/api_retry`` event before each retry. Those are logged, and are not progress: the idle
timeout still ends a run that only retries.
"""

from __future__ import annotations

from typing import Any

import structlog

from mcp_local_provider.agent.backend import BackendError
from mcp_local_provider.agent.backends.cli import (
    SYSTEM_ARG_LIMIT,
    CliBackend,
    OutputParser,
    text_blocks,
    usage_from,
)
from mcp_local_provider.agent.emulation import Prompt
from mcp_local_provider.agent.events import BackendEvent, Finish, InvokeRequest, ReasoningDelta

log = structlog.get_logger("mcp_local_provider.agent.claude")

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
}


class ClaudeParser(OutputParser):
    cli = "claude"

    def __init__(self) -> None:
        super().__init__()
        self.stop_reason: str | None = None
        # Text streamed since the last whole assistant message (which repeats it).
        self._streamed = False

    def progress(self, event: dict[str, Any]) -> bool:
        if event.get("type") != "system" or event.get("subtype") != "api_retry":
            return True
        status = event.get("error_status") or event.get("error") or "no response"
        self.stalled = (
            f"its model API failed ({status}); retry {event.get('attempt')} of "
            f"{event.get('max_retries')} was pending"
        )
        log.warning(
            "cli_model_retry",
            cli=self.cli,
            attempt=event.get("attempt"),
            max_retries=event.get("max_retries"),
            retry_delay_ms=event.get("retry_delay_ms"),
            error_status=event.get("error_status"),
            error=event.get("error"),
        )
        return False

    def feed(self, event: dict[str, Any]) -> list[BackendEvent]:
        kind = event.get("type")
        if kind == "stream_event":
            return self._stream_event(event.get("event") or {})
        if kind == "assistant":
            if event.get("is_api_error_message"):
                return []  # the model API's error as a message; the result reports it
            message = event.get("message") or {}
            if self._streamed:
                self._streamed = False
                return []
            return self.message(text_blocks(message.get("content")))
        if kind == "result":
            return self._result(event)
        return []

    def _stream_event(self, event: dict[str, Any]) -> list[BackendEvent]:
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                self._streamed = True
                return self.text(str(delta.get("text") or ""))
            if delta.get("type") == "thinking_delta" and delta.get("thinking"):
                return [ReasoningDelta(str(delta["thinking"]))]
        elif kind == "message_delta":
            reason = (event.get("delta") or {}).get("stop_reason")
            if reason:
                self.stop_reason = str(reason)
        return []

    def _result(self, event: dict[str, Any]) -> list[BackendEvent]:
        self.done = True
        subtype = str(event.get("subtype") or "")
        if subtype == "error_max_turns":
            return [*self.final(event.get("result")), Finish("length", _usage(event))]
        if event.get("is_error") or subtype.startswith("error"):
            detail = event.get("result") or subtype or "unknown error"
            raise BackendError(f"claude reported an error: {detail}")
        events = self.final(event.get("result"))
        reason = str(event.get("stop_reason") or self.stop_reason or "end_turn")
        return [*events, Finish(FINISH_REASONS.get(reason, "stop"), _usage(event))]


def _usage(event: dict[str, Any]) -> dict[str, Any] | None:
    usage = event.get("usage")
    if not isinstance(usage, dict):
        return None
    cached = usage.get("cache_read_input_tokens")
    fresh = usage.get("input_tokens")
    prompt = None
    if isinstance(fresh, int):
        prompt = fresh + int(usage.get("cache_creation_input_tokens") or 0) + int(cached or 0)
    return usage_from(prompt, usage.get("output_tokens"), cached)


class ClaudeBackend(CliBackend):
    name = "claude"
    binary_name = "claude"
    default_models = ("claude-code",)

    def argv(self, request: InvokeRequest, prompt: Prompt) -> list[str]:
        assert self.path is not None
        tools = ",".join(self.settings.agent_tools)
        argv = [
            self.path, "-p",
            "--output-format", "stream-json", "--verbose", "--include-partial-messages",
            "--tools", tools,
        ]  # fmt: skip
        if tools:
            # Headless, nobody can approve a tool: the chosen ones are approved beforehand, and
            # the agent gets the turns to use them.
            argv += ["--allowedTools", tools]
        else:
            argv += ["--max-turns", "1"]
        if prompt.system and len(prompt.system.encode()) <= SYSTEM_ARG_LIMIT:
            argv += ["--system-prompt", prompt.system]
        model = self.cli_model(request)
        if model:
            argv += ["--model", model]
        return argv + list(self.settings.args)

    def stdin_text(self, prompt: Prompt) -> str:
        if prompt.system and len(prompt.system.encode()) <= SYSTEM_ARG_LIMIT:
            return prompt.text
        return prompt.inline()

    def parser(self) -> OutputParser:
        return ClaudeParser()
