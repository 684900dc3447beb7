"""Editor requests as the host's agent reads them, and as sampling parameters."""

from __future__ import annotations

from typing import Any

from mcp_local_provider.agent.events import InvokeRequest
from mcp_local_provider.core.protocol import ModelInvoke
from mcp_local_provider.mcp.render import request_data, request_text
from mcp_local_provider.mcp.sampling import sampling_params


def invoke(frame: dict[str, Any]) -> InvokeRequest:
    return InvokeRequest.from_invoke(ModelInvoke.model_validate({"type": "model_invoke", **frame}))


def chat(**payload: object) -> InvokeRequest:
    return invoke({"id": "req-1", "payload": {"kind": "chat", **payload}})


def test_completion_request_shows_the_text_around_the_cursor() -> None:
    request = invoke(
        {
            "id": "req-2",
            "payload": {
                "kind": "completion",
                "model": "m",
                "prompt": "def add(a, b):\n    ",
                "suffix": "\n\nprint(add(1, 2))",
                "parameters": {"max_tokens": 16, "stop": ["\n\n"]},
            },
        }
    )
    data = request_data(request, answer_within=12.34)
    text = request_text(data)
    assert data["prompt"] == "def add(a, b):\n    " and data["suffix"] == "\n\nprint(add(1, 2))"
    assert data["answer_within_seconds"] == 12.3
    assert data["parameters"] == {"max_tokens": 16, "stop": ["\n\n"]}
    assert "=== text before the cursor ===\ndef add(a, b):" in text
    assert "=== text after the cursor ===" in text
    assert "only the text that belongs between" in text
    assert 'respond(request_id="req-2"' in text


def test_tool_calls_and_results_are_spelled_out() -> None:
    request = chat(
        model="m",
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "rain"},
        ],
        parameters={"tools": [{"type": "function", "function": {"name": "get_weather"}}]},
    )
    data = request_data(request, answer_within=60)
    assert data["messages"][1] == {
        "role": "assistant",
        "content": '[called tool get_weather with {"city": "Oslo"}]',
    }
    assert data["messages"][2] == {"role": "tool result (c1)", "content": "rain"}
    assert data["editor_tools"] == ["get_weather"]
    assert "relays text only" in request_text(data)


def test_content_parts_are_joined_into_text() -> None:
    request = chat(
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "one "}, {"type": "text", "text": "two"}],
            }
        ]
    )
    assert request_data(request, 1)["messages"] == [{"role": "user", "content": "one two"}]


def test_sampling_merges_system_messages_and_consecutive_turns() -> None:
    request = chat(
        model="m",
        messages=[
            {"role": "system", "content": "A"},
            {"role": "user", "content": "x"},
            {"role": "user", "content": "y"},
            {"role": "developer", "content": "B"},
            {"role": "assistant", "content": "z"},
        ],
        parameters={"temperature": 0},
    )
    params = sampling_params(request, default_max_tokens=99)
    assert params.system_prompt == "A\n\nB"
    assert [(m.role, m.content.text) for m in params.messages] == [  # type: ignore[union-attr]
        ("user", "x\n\ny"),
        ("assistant", "z"),
    ]
    assert params.max_tokens == 99 and params.temperature == 0.0
    assert params.stop_sequences is None


def test_sampling_a_completion_asks_for_the_text_at_the_cursor() -> None:
    request = invoke(
        {"id": "r", "payload": {"kind": "completion", "prompt": "Hello, ", "parameters": {}}}
    )
    [message] = sampling_params(request, default_max_tokens=10).messages
    assert message.role == "user"
    assert "only the continuation" in message.content.text  # type: ignore[union-attr]
    assert "<text>\nHello, \n</text>" in message.content.text  # type: ignore[union-attr]
