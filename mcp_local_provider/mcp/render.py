"""Editor requests in the words a model reads: for next_request and for sampling. Pure."""

from __future__ import annotations

import json
from typing import Any

from mcp_local_provider.agent.events import InvokeRequest, text_of

# Parameters worth showing to the model that answers; the rest (stream, user, seed, ...) only
# matter to the daemon or cannot be honoured by an agent.
_SHOWN_PARAMETERS = ("max_tokens", "temperature", "top_p", "stop", "response_format")

FILL_IN_THE_MIDDLE = (
    "Write only the text that belongs between the text before the cursor and the text after "
    "it: no explanation, no code fences, nothing repeated from either side."
)
CONTINUE_TEXT = (
    "Write only the continuation of the text, exactly as it should follow: no explanation, no "
    "code fences, nothing repeated from the text."
)
CHAT_ANSWER = (
    "Write the assistant's next message, exactly as a model would: only the message text, with "
    "no remarks about this bridge or its tools."
)


def shown_parameters(request: InvokeRequest) -> dict[str, Any]:
    shown = {k: request.parameters[k] for k in _SHOWN_PARAMETERS if request.parameters.get(k)}
    if request.stop:
        shown["stop"] = request.stop
    return shown


def offered_tools(request: InvokeRequest) -> list[str]:
    tools = request.parameters.get("tools")
    if not isinstance(tools, list):
        return []
    names = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("name"):
            names.append(str(function["name"]))
    return names


def message_text(message: dict[str, Any]) -> str:
    """One message as plain text, with its tool calls spelled out."""
    parts = [text_of(message.get("content"))]
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            name = function.get("name", "?")
            parts.append(f"[called tool {name} with {function.get('arguments', '')}]")
    return "\n".join(part for part in parts if part)


def role_of(message: dict[str, Any]) -> str:
    role = str(message.get("role") or "user")
    if role == "tool":
        call_id = message.get("tool_call_id")
        return f"tool result ({call_id})" if call_id else "tool result"
    return role


def completion_instruction(request: InvokeRequest) -> str:
    return FILL_IN_THE_MIDDLE if request.suffix else CONTINUE_TEXT


def completion_prompt(request: InvokeRequest) -> str:
    """A completion request as one user message (for sampling)."""
    if request.suffix:
        return (
            f"{FILL_IN_THE_MIDDLE}\n\n<before_cursor>\n{request.prompt or ''}\n</before_cursor>\n"
            f"<after_cursor>\n{request.suffix}\n</after_cursor>"
        )
    return f"{CONTINUE_TEXT}\n\n<text>\n{request.prompt or ''}\n</text>"


def request_data(request: InvokeRequest, answer_within: float) -> dict[str, Any]:
    """next_request's structured answer."""
    data: dict[str, Any] = {
        "status": "request",
        "request_id": request.id,
        "kind": request.kind,
        "model": request.model,
        "stream": request.stream,
        "answer_within_seconds": round(max(answer_within, 0.0), 1),
        "parameters": shown_parameters(request),
    }
    if request.kind == "completion":
        data["prompt"] = request.prompt or ""
        data["suffix"] = request.suffix or ""
        data["instructions"] = completion_instruction(request)
    else:
        data["messages"] = [
            {"role": role_of(m), "content": message_text(m)} for m in request.messages
        ]
        data["instructions"] = CHAT_ANSWER
    tools = offered_tools(request)
    if tools:
        data["editor_tools"] = tools
    return data


def request_text(data: dict[str, Any]) -> str:
    """next_request's answer as the model reads it."""
    rid = data["request_id"]
    mode = "streaming" if data["stream"] else "not streaming"
    lines = [
        f"Request {rid}: {data['kind']} for model {data['model']!r} ({mode}). "
        f"Answer within {data['answer_within_seconds']:g} s.",
    ]
    if data["parameters"]:
        shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in data["parameters"].items())
        lines.append(f"Parameters: {shown}")
    if data["kind"] == "completion":
        if data["suffix"]:
            lines += ["", "=== text before the cursor ===", data["prompt"]]
            lines += ["=== text after the cursor ===", data["suffix"], "=== end ==="]
        else:
            lines += ["", "=== text ===", data["prompt"], "=== end ==="]
    else:
        for message in data["messages"]:
            lines += ["", f"=== {message['role']} ===", message["content"]]
        lines.append("=== end ===")
    if data.get("editor_tools"):
        lines += [
            "",
            "The editor offered tools (" + ", ".join(data["editor_tools"]) + "); this bridge "
            "relays text only, so answer in text.",
        ]
    lines += [
        "",
        data["instructions"],
        f'Then call respond(request_id="{rid}", content=<your answer>). For a long answer, '
        "send pieces with respond_partial as you go and finish with respond. If you cannot "
        "answer, call decline.",
    ]
    max_tokens = data["parameters"].get("max_tokens")
    if max_tokens:
        lines.append(f"Keep it under about {max_tokens} tokens; longer answers are cut.")
    return "\n".join(lines)
