"""Anthropic Messages requests (``/v1/messages``, ``/v1/messages/count_tokens``) -> the agent
protocol's chat payload. Pure: no I/O.

The agent receives OpenAI-shaped messages: ``system`` (a string or text blocks) and any
``role: "system"`` message become system messages; ``tool_use`` blocks become an assistant's
``tool_calls`` (``input`` as a JSON string); ``tool_result`` blocks become ``tool`` messages;
``thinking`` blocks become ``reasoning_content``; images become ``image_url`` parts. Fields the
agent cannot honour (``cache_control``, ``context_management``, ``metadata``, beta features,
server tools) are dropped and named in ``ignored`` for a debug log, never refused.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mcp_local_provider.core import errors
from mcp_local_provider.core.codec import dumps
from mcp_local_provider.core.names import MODEL_NAME_PATTERN
from mcp_local_provider.core.protocol import InvokePayload
from mcp_local_provider.translate.common import as_parameters, check_tool_choice

#: Tool types that are the client's own tools (given to the model as functions); the others
#: (``web_search_20250305``, ``bash_20250124``, ...) run on Anthropic's servers.
CLIENT_TOOL_TYPES = (None, "custom")
#: Body fields read here; any other field is reported as ignored.
_READ = frozenset(
    {
        "model", "messages", "system", "max_tokens", "stream", "tools", "tool_choice",
        "stop_sequences", "temperature", "top_p", "top_k", "thinking", "output_config",
    }
)  # fmt: skip


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["user", "assistant", "system"]
    content: str | list[dict[str, Any]]


class CountRequest(BaseModel):
    """``POST /v1/messages/count_tokens``: a Messages request without ``max_tokens``."""

    #: The request's structured output field, as errors name it.
    format_param: ClassVar[str] = "output_format"

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[Message]
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if not MODEL_NAME_PATTERN.match(value):
            raise ValueError("must be 1-200 letters, digits and . _ : @ / + -")
        return value

    @property
    def ignored(self) -> list[str]:
        """Fields, tools and blocks dropped on the way to the agent (for a debug log)."""
        names = sorted(set(self.model_extra or {}) - _READ)
        names += [f"tools.{t.get('name') or t.get('type')}" for t in self.server_tools()]
        return names

    def client_tools(self) -> list[dict[str, Any]]:
        return [t for t in self.tools or [] if t.get("type") in CLIENT_TOOL_TYPES]

    def server_tools(self) -> list[dict[str, Any]]:
        return [t for t in self.tools or [] if t.get("type") not in CLIENT_TOOL_TYPES]

    @property
    def offers_tools(self) -> bool:
        return bool(self.client_tools()) and (self.tool_choice or {}).get("type") != "none"

    @property
    def forces_tools(self) -> bool:
        """``tool_choice`` any or tool: an answer without a tool call would be wrong."""
        return (self.tool_choice or {}).get("type") in ("any", "tool")

    def needs(self, tools_optional: bool = False) -> list[str]:
        """Capabilities the model must declare. With ``tools_optional``, tools are left out
        unless ``tool_choice`` forces a call: Claude Code always offers tools, and an agent
        without them can still answer in text."""
        needs = ["chat"]
        if self.offers_tools and (self.forces_tools or not tools_optional):
            needs.append("tools")
        if any(_has_image(m.content) for m in self.messages):
            needs.append("vision")
        return needs

    def agent_messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        system = system_text(self.system)
        if system:
            messages.append({"role": "system", "content": system})
        for index, message in enumerate(self.messages):
            messages.extend(to_agent(index, message))
        return messages

    def parameters(self, with_tools: bool = True) -> dict[str, Any]:
        parameters: dict[str, Any] = {}
        if with_tools and self.offers_tools:
            parameters["tools"] = [function_tool(t) for t in self.client_tools()]
            if self.tool_choice is not None:
                choice, parallel = tool_choice(self.tool_choice)
                names = [str(t.get("name") or "") for t in self.client_tools()]
                parameters["tool_choice"] = check_tool_choice(choice, names, "tool_choice.name")
                if parallel is not None:
                    parameters["parallel_tool_calls"] = parallel
        if (self.thinking or {}).get("type") in ("enabled", "adaptive"):
            parameters["think"] = True
        return parameters

    def payload(self, target: str | None = None, with_tools: bool = True) -> InvokePayload:
        """The agent's payload; ``target`` is the agent's name for the model; without
        ``with_tools`` the tools are left out (the model does not declare them)."""
        return {
            "kind": "chat",
            "model": target or self.model,
            "messages": self.agent_messages(),
            "parameters": as_parameters(self.parameters(with_tools)),
        }


class MessagesRequest(CountRequest):
    """``POST /v1/messages``."""

    max_tokens: int = Field(ge=1)
    stream: bool | None = False
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    output_config: dict[str, Any] | None = None

    def parameters(self, with_tools: bool = True) -> dict[str, Any]:
        parameters: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop_sequences or None,
            "stream": bool(self.stream),
        }
        if self.top_k is not None:
            parameters["top_k"] = self.top_k
        effort = (self.output_config or {}).get("effort")
        if isinstance(effort, str) and effort in ("low", "medium", "high"):
            parameters["reasoning_effort"] = effort
        parameters.update(super().parameters(with_tools))
        return parameters


def system_text(system: str | list[dict[str, Any]] | None) -> str:
    """The ``system`` field as one string: text blocks joined by blank lines."""
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    return "\n\n".join(str(b.get("text") or "") for b in system if b.get("type") == "text")


def _has_image(content: str | list[dict[str, Any]]) -> bool:
    if isinstance(content, str):
        return False
    return any(
        block.get("type") == "image"
        or (block.get("type") == "tool_result" and _has_image(block.get("content") or ""))
        for block in content
    )


def function_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic tool definition as an OpenAI function tool."""
    function: dict[str, Any] = {"name": str(tool.get("name") or "")}
    if tool.get("description"):
        function["description"] = tool["description"]
    schema = tool.get("input_schema")
    function["parameters"] = schema if isinstance(schema, dict) else {"type": "object"}
    return {"type": "function", "function": function}


def tool_choice(choice: dict[str, Any]) -> tuple[Any, bool | None]:
    """Anthropic's ``tool_choice`` as (OpenAI tool_choice, parallel_tool_calls or None)."""
    kind = choice.get("type")
    parallel = False if choice.get("disable_parallel_tool_use") else None
    if kind == "any":
        return "required", parallel
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise errors.BadRequest(
                'tool_choice.name is required when tool_choice.type is "tool"',
                param="tool_choice.name",
            )
        return {"type": "function", "function": {"name": name}}, parallel
    if kind in ("auto", "none"):
        return kind, parallel
    raise errors.BadRequest(
        f"tool_choice.type must be auto, any, tool or none, not {kind!r}",
        param="tool_choice.type",
    )


def image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    """An ``image`` block (base64 or URL source) as an OpenAI ``image_url`` part."""
    source = block.get("source") or {}
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        mime = source.get("media_type") or "image/png"
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{source['data']}"}}
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise errors.BadRequest(
        f"{where}.source: images must have a base64 or url source", param=f"{where}.source"
    )


def _parts(blocks: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """Text and image blocks as OpenAI content parts (other blocks are dropped)."""
    parts: list[dict[str, Any]] = []
    for index, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text") or "")})
        elif kind == "image":
            parts.append(image_part(block, f"{where}.{index}"))
    return parts


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Parts as a plain string when they are all text (what most agents expect)."""
    if all(p["type"] == "text" for p in parts):
        return "\n\n".join(p["text"] for p in parts)
    return parts


def tool_result_content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return _content(_parts(content, where))
    return dumps(content)


def to_agent(index: int, message: Message) -> list[dict[str, Any]]:
    """One Anthropic message as the agent's messages (a user turn with tool results becomes
    the ``tool`` messages, then the rest of the user's content)."""
    where = f"messages.{index}.content"
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    if message.role == "assistant":
        return [_assistant(message.content)]
    out: list[dict[str, Any]] = []
    for position, block in enumerate(message.content):
        if block.get("type") == "tool_result":
            tool: dict[str, Any] = {
                "role": "tool",
                "tool_call_id": str(block.get("tool_use_id") or ""),
                "content": tool_result_content(block.get("content"), f"{where}.{position}"),
            }
            if block.get("is_error"):
                tool["is_error"] = True
            out.append(tool)
    parts = _parts(message.content, where)
    if parts or not out:
        out.append({"role": message.role, "content": _content(parts)})
    return out


def _assistant(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "thinking":
            thinking.append(str(block.get("thinking") or ""))
        elif kind == "tool_use":
            arguments = block.get("input")
            calls.append(
                {
                    "id": str(block.get("id") or ""),
                    "type": "function",
                    "function": {
                        "name": str(block.get("name") or ""),
                        "arguments": dumps(arguments if arguments is not None else {}),
                    },
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    if calls:
        message["tool_calls"] = calls
    return message
