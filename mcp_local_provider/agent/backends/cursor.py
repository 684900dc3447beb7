"""Cursor's CLI in print mode (``cursor-agent -p --output-format stream-json --mode ask``).

It streams whole assistant messages (its partial-output mode is known to repeat and accumulate
text), so each message is one delta, reconciled against the final result. It reports no token
usage: usage is estimated.
"""

from __future__ import annotations

from typing import Any

from mcp_local_provider.agent.backend import BackendError
from mcp_local_provider.agent.backends.cli import CliBackend, OutputParser, text_blocks
from mcp_local_provider.agent.emulation import Prompt
from mcp_local_provider.agent.events import BackendEvent, Finish, InvokeRequest
from mcp_local_provider.agent.tools import EditorTools


class CursorParser(OutputParser):
    cli = "cursor-agent"

    def feed(self, event: dict[str, Any]) -> list[BackendEvent]:
        kind = event.get("type")
        if kind == "assistant":
            message = event.get("message") or {}
            return self.message(text_blocks(message.get("content")))
        if kind == "result":
            self.done = True
            if event.get("is_error") or event.get("subtype") not in (None, "success"):
                detail = event.get("result") or event.get("subtype") or "unknown error"
                raise BackendError(f"cursor-agent reported an error: {detail}")
            return [*self.final(event.get("result")), Finish("stop")]
        return []


class CursorBackend(CliBackend):
    name = "cursor"
    binary_name = "cursor-agent"
    default_models = ("cursor-agent",)

    async def start(self) -> None:
        if self.settings.agent_tools:
            raise BackendError(
                "cursor-agent has no switch for its own tools: it runs read-only (--mode ask); "
                "remove `agent_tools`",
                "backend_unavailable",
            )
        await super().start()

    def argv(
        self, request: InvokeRequest, prompt: Prompt, tools: EditorTools | None = None
    ) -> list[str]:
        assert self.path is not None
        argv = [self.path, "-p", "--output-format", "stream-json", "--mode", "ask"]
        model = self.cli_model(request)
        if model:
            argv += ["--model", model]
        return argv + list(self.settings.args)

    def parser(self, tools: EditorTools | None = None) -> OutputParser:
        parser = CursorParser()
        parser.cli = self.binary.rsplit("/", 1)[-1]
        return parser
