"""Golden tests: the exact bytes of stream framing (Ollama NDJSON, OpenAI SSE) for a fixed
sequence of agent frames and a fixed clock. Any change to the framing shows up here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mcp_local_provider.core import errors
from mcp_local_provider.core.protocol import ModelResult, ModelStreamChunk
from mcp_local_provider.translate.ollama.errors import error_line
from mcp_local_provider.translate.ollama.reply import OllamaReply, rfc3339
from mcp_local_provider.translate.openai.errors import stream_error
from mcp_local_provider.translate.openai.reply import ChatReply, CompletionReply

USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
WALL = 1_700_000_000_123_400_000  # ns


def chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> ModelStreamChunk:
    return ModelStreamChunk(
        type="model_stream_chunk", id="req-1", delta=delta, finish_reason=finish, usage=usage
    )


def ticks(*values: int) -> Iterator[int]:
    yield from values


def reply(shape: Any, *monotonic: int) -> OllamaReply:
    clock = ticks(*monotonic)
    return OllamaReply(
        "echo:latest", shape, started=0, clock=lambda: WALL, ticks=lambda: next(clock)
    )


def test_rfc3339_trims_trailing_zeros_like_go() -> None:
    assert rfc3339(WALL) == "2023-11-14T22:13:20.1234Z"
    assert rfc3339(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"


def test_ollama_chat_stream_bytes() -> None:
    r = reply("chat", 1000, 5000)  # first frame at 1 us, end at 5 us
    wire = r.encode(chunk({"role": "assistant", "content": "Hi"}))
    wire += r.encode(chunk({"content": " there"}, "stop", USAGE))
    wire += r.finish()
    assert wire == (
        b'{"model":"echo:latest","created_at":"2023-11-14T22:13:20.1234Z",'
        b'"message":{"role":"assistant","content":"Hi"},"done":false}\n'
        b'{"model":"echo:latest","created_at":"2023-11-14T22:13:20.1234Z",'
        b'"message":{"role":"assistant","content":" there"},"done":false}\n'
        b'{"model":"echo:latest","created_at":"2023-11-14T22:13:20.1234Z",'
        b'"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop",'
        b'"total_duration":5000,"prompt_eval_count":3,"prompt_eval_duration":1000,'
        b'"eval_count":2,"eval_duration":4000}\n'
    )


def test_ollama_generate_stream_bytes_with_length_reason() -> None:
    r = reply("generate", 10, 30)
    wire = r.encode(chunk({"content": "x"})) + r.encode(chunk({}, "length")) + r.finish()
    assert wire == (
        b'{"model":"echo:latest","created_at":"2023-11-14T22:13:20.1234Z","response":"x",'
        b'"done":false}\n'
        b'{"model":"echo:latest","created_at":"2023-11-14T22:13:20.1234Z","response":"",'
        b'"done":true,"done_reason":"length","total_duration":30,"prompt_eval_duration":10,'
        b'"eval_duration":20}\n'
    )


def test_ollama_tool_call_is_one_whole_line_before_done() -> None:
    r = reply("chat", 1, 2)
    assert (
        r.encode(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a":'},
                        }
                    ]
                }
            )
        )
        == b""
    )
    assert (
        r.encode(
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}, "tool_calls")
        )
        == b""
    )
    assert r.finish() == (
        b'{"model":"echo:latest","created_at":"2023-11-14T22:13:20.1234Z",'
        b'"message":{"role":"assistant","content":"","tool_calls":[{"id":"call_1",'
        b'"function":{"index":0,"name":"f","arguments":{"a":1}}}]},"done":false}\n'
        b'{"model":"echo:latest","created_at":"2023-11-14T22:13:20.1234Z",'
        b'"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop",'
        b'"total_duration":2,"prompt_eval_duration":1,"eval_duration":1}\n'
    )


def test_ollama_error_line() -> None:
    assert error_line(errors.AgentFailed("boom")) == b'{"error":"boom"}\n'


def test_ollama_whole_result_becomes_lines_then_done() -> None:
    r = reply("chat", 1, 2)
    result = ModelResult(
        type="model_result",
        id="req-1",
        result={
            "choices": [
                {"message": {"role": "assistant", "content": "all"}, "finish_reason": "stop"}
            ],
            "usage": USAGE,
        },
    )
    wire = r.encode(result) + r.finish()
    assert wire.count(b"\n") == 2
    assert wire.startswith(
        b'{"model":"echo:latest","created_at":"2023-11-14T22:13:20.1234Z",'
        b'"message":{"role":"assistant","content":"all"},"done":false}\n'
    )
    assert b'"done":true,"done_reason":"stop"' in wire


def fixed(stream: Any) -> Any:
    stream.id, stream.created = "chatcmpl-1", 1700000000
    return stream


def test_openai_chat_sse_bytes_with_usage() -> None:
    s = fixed(ChatReply("echo", want_usage=True))
    wire = s.encode(chunk({"content": "Hi"})) + s.encode(chunk({}, "stop", USAGE)) + s.finish()
    head = (
        b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,'
        b'"model":"echo","choices":'
    )
    assert wire == (
        head + b'[{"index":0,"delta":{"role":"assistant","content":"Hi"},"logprobs":null,'
        b'"finish_reason":null}]}\n\n'
        + head
        + b'[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}\n\n'
        + head
        + b'[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert b"event:" not in wire


def test_openai_tool_call_sse_sends_id_and_name_once() -> None:
    s = fixed(ChatReply("m", want_usage=False))
    fragment = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": '{"a":'},
    }
    wire = s.encode(chunk({"tool_calls": [fragment]}))
    wire += s.encode(
        chunk({"tool_calls": [{**fragment, "function": {"name": "f", "arguments": " 1}"}}]})
    )
    wire += s.encode(chunk({}, "stop")) + s.finish()
    head = (
        b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,'
        b'"model":"m","choices":'
    )
    assert wire == (
        head + b'[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,'
        b'"id":"call_1","type":"function","function":{"name":"f","arguments":"{\\"a\\":"}}]},'
        b'"logprobs":null,"finish_reason":null}]}\n\n'
        + head
        + b'[{"index":0,"delta":{"tool_calls":[{"index":0,"function":'
        b'{"arguments":" 1}"}}]},"logprobs":null,"finish_reason":null}]}\n\n'
        + head
        + b'[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}\n\n'
        b"data: [DONE]\n\n"
    )


def test_openai_error_event_bytes() -> None:
    assert stream_error(errors.AgentFailed("boom")) == (
        b'data: {"error":{"message":"boom","type":"server_error","param":null,'
        b'"code":"agent_error"}}\n\n'
    )


def test_openai_completion_sse_bytes() -> None:
    r = CompletionReply("echo", want_usage=False)
    r.id, r.created = "cmpl-1", 1700000000
    wire = r.encode(chunk({"content": "x"})) + r.encode(chunk({}, "stop")) + r.finish()
    head = (
        b'data: {"id":"cmpl-1","object":"text_completion","created":1700000000,'
        b'"model":"echo","choices":'
    )
    assert wire == (
        head
        + b'[{"text":"x","index":0,"logprobs":null,"finish_reason":null}]}\n\n'
        + head
        + b'[{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
