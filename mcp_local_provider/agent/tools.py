"""The editor's tools, offered to an agent CLI as the tools of a small MCP server.

When a request carries ``tools``, a backend that supports it starts the CLI with an MCP server
(``agent/tool_server.py``, run as its own process by the CLI over stdio) whose tools are the
editor's: same names, descriptions and JSON schemas. The model calls one as it would any MCP
tool; the backend sees the call in the CLI's output and hands it to the editor as a tool call,
so the editor runs the tool. The result comes back in the next request's messages: it continues
the held turn (``agent/held.py``) where the backend holds them, else it is rendered into a new
prompt with the rest of the conversation.

The server needs nothing but the standard library and starts in tens of milliseconds.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from jsonschema import Draft202012Validator, SchemaError
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for

from mcp_local_provider.agent import tool_server
from mcp_local_provider.agent.backend import BackendError
from mcp_local_provider.agent.emulation import Prompt
from mcp_local_provider.agent.events import BackendEvent, Finish, InvokeRequest, ToolCallDelta

log = structlog.get_logger("mcp_local_provider.agent.tools")

#: The MCP server's name, as the CLIs prefix it to the tool names their model sees.
SERVER = tool_server.SERVER


@dataclass(frozen=True)
class EditorTools:
    """The tools of one request, and what ``tool_choice`` / ``parallel_tool_calls`` ask."""

    tools: tuple[dict[str, Any], ...]  # {"name", "description", "input_schema"}
    required: bool  # a call is required (tool_choice required or a named function)
    named: str | None  # the one function tool_choice names
    parallel: bool  # more than one call per answer is allowed
    folder: Path  # where the server's tools file and the CLI's MCP config are written

    @property
    def names(self) -> list[str]:
        return [t["name"] for t in self.tools]

    def handed_over(self, call: ToolCallDelta) -> bool:
        """Whether ``call`` (a delta of one answer's calls) goes to the editor: every call, or
        only the first when one call per answer is allowed."""
        return self.parallel or call.index == 0

    def schema(self, name: str) -> dict[str, Any] | None:
        """The JSON schema of tool ``name``'s arguments, or None if there is no such tool."""
        return next((t["input_schema"] for t in self.tools if t["name"] == name), None)

    @property
    def tools_file(self) -> Path:
        return self.folder / "tools.json"

    def server_command(self, hold: bool = False) -> list[str]:
        """The command that runs the tool server over stdio; with ``hold`` a call is never
        answered (for a CLI that would otherwise go on to its next model turn at once)."""
        # The file itself, in isolated mode: importing the package would cost a start-up.
        command = [sys.executable, "-I", str(Path(tool_server.__file__))]
        return [*command, *(["--hold"] if hold else []), str(self.tools_file)]

    def mcp_servers(self, hold: bool = False) -> dict[str, Any]:
        """The ``mcpServers`` entry a CLI's MCP config needs (Claude Code, Gemini CLI)."""
        command, *args = self.server_command(hold)
        return {SERVER: {"type": "stdio", "command": command, "args": args}}

    def instructions(self, prefix: str) -> str:
        """What the agent is told about the tools (``prefix``: how its CLI names them)."""
        lines = [
            f"The tools named {prefix}NAME are the user's editor's tools; in the conversation "
            f"below they appear as NAME. Calling one hands the call to the editor, which runs it "
            "and sends the result in the next message.",
        ]
        if self.named:
            lines.append(f"You must answer by calling the tool {prefix}{self.named}.")
        elif self.required:
            lines.append("You must answer by calling one of these tools.")
        if not self.parallel:
            lines.append("Call at most one tool.")
        return " ".join(lines)


def function_tools(request: InvokeRequest) -> list[dict[str, Any]]:
    """The request's function tools as MCP tools (``name``, ``description``,
    ``input_schema``); tools without a name are skipped."""
    tools: list[dict[str, Any]] = []
    for tool in request.parameters.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            continue
        schema = function.get("parameters")
        if not isinstance(schema, dict) or not schema:
            schema = {"type": "object", "properties": {}}
        tools.append(
            {
                "name": str(function["name"]),
                "description": str(function.get("description") or ""),
                "input_schema": schema,
            }
        )
    return tools


@contextmanager
def offered(request: InvokeRequest) -> Iterator[EditorTools | None]:
    """The request's tools, written for the tool server into a fresh folder removed afterwards;
    None when the request carries no function tools or ``tool_choice`` is ``none``."""
    choice = request.parameters.get("tool_choice")
    tools = function_tools(request)
    if not tools or choice == "none":
        yield None
        return
    named = None
    if isinstance(choice, dict):
        named = str((choice.get("function") or {}).get("name") or "") or None
        tools = [t for t in tools if t["name"] == named] or tools
    with tempfile.TemporaryDirectory(prefix="mcp-local-provider-tools-") as folder:
        offer = EditorTools(
            tools=tuple(tools),
            required=choice == "required" or named is not None,
            named=named,
            parallel=request.parameters.get("parallel_tool_calls") is not False,
            folder=Path(folder),
        )
        offer.tools_file.write_text(json.dumps(list(offer.tools)))
        yield offer


def schema_error(schema: dict[str, Any], value: Any) -> str | None:
    """Why ``value`` does not match JSON schema ``schema`` (the most relevant error, with
    where it is), or None if it matches. A schema that is itself invalid checks nothing."""
    validator = validator_for(schema, default=Draft202012Validator)
    try:
        validator.check_schema(schema)
    except SchemaError:
        return None
    error = best_match(validator(schema).iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message} (at {where})" if where else error.message


def call_error(tools: EditorTools, name: str, arguments: str) -> str | None:
    """Why a call of ``name`` with ``arguments`` (a JSON string) cannot be made, or None."""
    schema = tools.schema(name)
    if schema is None:
        return f"there is no tool named {name!r}; the tools are {', '.join(tools.names)}"
    try:
        value = json.loads(arguments or "{}")
    except ValueError as exc:
        return f"the arguments of {name} are not JSON ({exc})"
    problem = schema_error(schema, value)
    return (
        None if problem is None else f"the arguments of {name} do not match its schema: {problem}"
    )


def call_problems(tools: EditorTools, held: list[ToolCallDelta]) -> list[str]:
    """What is wrong with an answer's tool calls (none, if they can be handed over)."""
    calls: dict[int, list[str]] = {}
    for delta in held:
        name_and_arguments = calls.setdefault(delta.index, ["", ""])
        name_and_arguments[0] = delta.name or name_and_arguments[0]
        name_and_arguments[1] += delta.arguments
    if not calls and tools.required:
        wanted = f"the tool {tools.named}" if tools.named else "one of the tools"
        return [f"the answer called no tool, but it must call {wanted}"]
    found = (call_error(tools, name, arguments) for name, arguments in calls.values())
    return [problem for problem in found if problem]


REPAIR = (
    "<correction>\nYour previous answer could not be used: {problems}. Answer again, and call "
    "the tool with arguments that match its schema.\n</correction>"
)


async def checked(
    run: Callable[[Prompt], AsyncGenerator[BackendEvent, None]],
    prompt: Prompt,
    tools: EditorTools,
    failed: list[str] | None = None,
) -> AsyncGenerator[BackendEvent, None]:
    """``run(prompt)``'s events, with its tool calls held back until the answer ends and
    checked then: calls of the editor's tools with arguments that match their JSON schemas
    (and a call at all when ``tool_choice`` requires one). A bad answer gets one repair round,
    ``run`` again with the problems named; a second bad answer is a BackendError. With
    ``failed``, the first answer was checked elsewhere and had those problems."""
    attempts: tuple[int, ...] = (1, 2)
    if failed:  # a first answer, run elsewhere, had these problems: the repair round
        log.info("tool_call_repair", problems=failed)
        prompt = prompt.followed_by(REPAIR.format(problems="; ".join(failed)))
        attempts = (2,)
    for attempt in attempts:
        held: list[ToolCallDelta] = []
        problems: list[str] = []
        async with aclosing(run(prompt)) as events:
            async for event in events:
                if isinstance(event, ToolCallDelta):
                    if tools.handed_over(event):
                        held.append(event)
                    continue
                if isinstance(event, Finish):
                    problems = call_problems(tools, held)
                    if not problems:
                        for call in held:
                            yield call
                        yield event
                        return
                    break
                yield event
        if not problems:  # the run ended without a Finish: nothing left to check
            return
        if attempt == 2:
            raise BackendError(
                "the agent's tool call is invalid, even after a repair round: "
                + "; ".join(problems),
                "invalid_tool_call",
            )
        log.info("tool_call_repair", problems=problems)
        prompt = prompt.followed_by(REPAIR.format(problems="; ".join(problems)))
