"""OpenAI Responses requests (``POST /v1/responses``) -> the agent protocol's chat payload.
Pure: no I/O.

The daemon is stateless: ``input`` (a string or a list of items) is the whole conversation, and
``previous_response_id`` is refused. Items become OpenAI chat messages: ``message`` items keep
their role (``developer`` included) with ``input_text``/``output_text`` parts as text and
``input_image`` as ``image_url``; ``function_call`` items become an assistant's ``tool_calls``;
``function_call_output`` items become ``tool`` messages; ``reasoning`` items become the next
assistant message's ``reasoning_content``. ``instructions`` comes first, as a system message.
Function tools are passed on as chat tools; other tool types (``web_search``, ``namespace``,
...) and fields the agent cannot honour are dropped and named in ``ignored``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mcp_local_provider.core import errors
from mcp_local_provider.core.codec import dumps
from mcp_local_provider.core.names import MODEL_NAME_PATTERN
from mcp_local_provider.core.protocol import InvokePayload
from mcp_local_provider.translate.common import as_parameters, check_tool_choice

_READ = frozenset(
    {
        "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls",
        "max_output_tokens", "temperature", "top_p", "stream", "previous_response_id",
        "reasoning", "text",
    }
)  # fmt: skip
_TEXT_PARTS = ("input_text", "output_text", "text", "summary_text", "reasoning_text")
MESSAGE_ROLES = ("user", "assistant", "system", "developer")


class ResponsesRequest(BaseModel):
    #: The request's structured output field, as errors name it.
    format_param: ClassVar[str] = "text.format"
    model_config = ConfigDict(extra="allow")

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stream: bool | None = False
    previous_response_id: str | None = None
    reasoning: dict[str, Any] | None = None
    text: dict[str, Any] | None = None

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if not MODEL_NAME_PATTERN.match(value):
            raise ValueError("must be 1-200 letters, digits and . _ : @ / + -")
        return value

    @model_validator(mode="after")
    def _stateless(self) -> ResponsesRequest:
        if self.previous_response_id:
            raise ValueError(
                "previous_response_id is not supported: this server is stateless and stores "
                "no responses; send the whole conversation in input (as with store: false)"
            )
        return self

    @property
    def ignored(self) -> list[str]:
        """Fields and tools dropped on the way to the agent (for a debug log)."""
        names = sorted(set(self.model_extra or {}) - _READ)
        names += [f"tools.{t.get('type')}" for t in self.tools or [] if t.get("type") != "function"]
        return names

    def function_tools(self) -> list[dict[str, Any]]:
        return [t for t in self.tools or [] if t.get("type") == "function"]

    @property
    def offers_tools(self) -> bool:
        return bool(self.function_tools()) and self.tool_choice != "none"

    @property
    def forces_tools(self) -> bool:
        """``tool_choice`` required or a named function: a text answer would be wrong."""
        return self.tool_choice == "required" or isinstance(self.tool_choice, dict)

    def needs(self, tools_optional: bool = False) -> list[str]:
        """Capabilities the model must declare. With ``tools_optional``, tools are left out
        unless ``tool_choice`` forces a call: Codex always offers tools, and an agent without
        them can still answer in text."""
        needs = ["chat"]
        if self.offers_tools and (self.forces_tools or not tools_optional):
            needs.append("tools")
        if isinstance(self.input, list) and any(_has_image(i) for i in self.input):
            needs.append("vision")
        return needs

    def agent_messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if self.instructions:
            messages.append({"role": "system", "content": self.instructions})
        if isinstance(self.input, str):
            messages.append({"role": "user", "content": self.input})
            return messages
        reasoning: list[str] = []
        for index, item in enumerate(self.input):
            _add_item(messages, reasoning, item, f"input.{index}")
        return messages

    def parameters(self, with_tools: bool = True) -> dict[str, Any]:
        parameters: dict[str, Any] = {
            "max_tokens": self.max_output_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": None,
            "stream": bool(self.stream),
        }
        if with_tools and self.offers_tools:
            parameters["tools"] = [chat_tool(t) for t in self.function_tools()]
            if self.tool_choice is not None:
                names = [str(t.get("name") or "") for t in self.function_tools()]
                parameters["tool_choice"] = check_tool_choice(tool_choice(self.tool_choice), names)
            if self.parallel_tool_calls is not None:
                parameters["parallel_tool_calls"] = self.parallel_tool_calls
        effort = (self.reasoning or {}).get("effort")
        if isinstance(effort, str):
            parameters["reasoning_effort"] = effort
        text_format = (self.text or {}).get("format") or {}
        if text_format.get("type") == "json_schema":
            schema = {k: v for k, v in text_format.items() if k != "type"}
            parameters["response_format"] = {"type": "json_schema", "json_schema": schema}
        elif text_format.get("type") == "json_object":
            parameters["response_format"] = {"type": "json_object"}
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


def chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A Responses function tool (flat) as a chat completions tool (nested)."""
    function: dict[str, Any] = {"name": str(tool.get("name") or "")}
    if tool.get("description"):
        function["description"] = tool["description"]
    parameters = tool.get("parameters")
    function["parameters"] = parameters if isinstance(parameters, dict) else {"type": "object"}
    if tool.get("strict") is not None:
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def tool_choice(choice: str | dict[str, Any]) -> Any:
    if isinstance(choice, str):
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    return "auto"  # hosted-tool choices name tools the agent does not have


def _has_image(item: dict[str, Any]) -> bool:
    content = item.get("content")
    return isinstance(content, list) and any(
        isinstance(p, dict) and p.get("type") == "input_image" for p in content
    )


def _parts(content: list[Any], where: str) -> str | list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        if not isinstance(part, dict):
            raise errors.BadRequest(f"{where}.{index}: must be an object", param=where)
        kind = part.get("type")
        if kind in _TEXT_PARTS:
            parts.append({"type": "text", "text": str(part.get("text") or "")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(part.get("refusal") or "")})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise errors.BadRequest(
                    f"{where}.{index}: images need an image_url (a URL or data: URL); "
                    "file_id needs the Files API, which this server does not have",
                    param=f"{where}.{index}",
                )
            parts.append({"type": "image_url", "image_url": {"url": url}})
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _last_assistant(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant message tool calls attach to: the last message if it is one."""
    if messages and messages[-1]["role"] == "assistant":
        return messages[-1]
    message: dict[str, Any] = {"role": "assistant", "content": ""}
    messages.append(message)
    return message


def _add_item(
    messages: list[dict[str, Any]], reasoning: list[str], item: dict[str, Any], where: str
) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in MESSAGE_ROLES:
            raise errors.BadRequest(
                f"{where}.role: must be one of {', '.join(MESSAGE_ROLES)}", param=f"{where}.role"
            )
        content = item.get("content")
        text = content if isinstance(content, str) else _parts(content or [], f"{where}.content")
        message: dict[str, Any] = {"role": role, "content": text}
        if role == "assistant" and reasoning:
            message["reasoning_content"] = "".join(reasoning)
            reasoning.clear()
        messages.append(message)
    elif kind == "function_call":
        assistant = _last_assistant(messages)
        if reasoning:
            assistant["reasoning_content"] = "".join(reasoning)
            reasoning.clear()
        arguments = item.get("arguments")
        assistant.setdefault("tool_calls", []).append(
            {
                "id": str(item.get("call_id") or item.get("id") or ""),
                "type": "function",
                "function": {
                    "name": str(item.get("name") or ""),
                    "arguments": arguments if isinstance(arguments, str) else dumps(arguments),
                },
            }
        )
    elif kind == "function_call_output":
        output = item.get("output")
        if isinstance(output, list):
            output = _parts(output, f"{where}.output")
        elif not isinstance(output, str):
            output = dumps(output)
        messages.append(
            {"role": "tool", "tool_call_id": str(item.get("call_id") or ""), "content": output}
        )
    elif kind == "reasoning":
        parts = [*(item.get("summary") or []), *(item.get("content") or [])]
        text = _parts(parts, f"{where}.summary")
        if isinstance(text, str) and text:
            reasoning.append(text)
    # Other items (item_reference, web_search_call, ...) carry nothing the agent can use.
