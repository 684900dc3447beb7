"""Backend events as agent protocol frames."""

from __future__ import annotations

import json
from typing import Any

from mcp_local_provider.agent import Embeddings, Finish, ReasoningDelta, TextDelta, ToolCallDelta
from mcp_local_provider.agent.answer import AnswerFrames
from mcp_local_provider.core.protocol import Frame, encode


def wire(frame: Frame | None) -> Any:
    """The frame as the daemon reads it off the socket."""
    return None if frame is None else json.loads(encode(frame))


def test_chunks_are_numbered_and_empty_text_sends_nothing() -> None:
    frames = AnswerFrames("req-1")
    sent = [wire(frames.frame(e)) for e in (TextDelta("a"), TextDelta(""), ReasoningDelta("r"))]
    assert sent[1] is None
    assert [f["chunk_index"] for f in sent if f] == [0, 1]
    assert sent[0] == {
        "type": "model_stream_chunk", "id": "req-1", "chunk_index": 0,
        "delta": {"content": "a"}, "finish_reason": None, "usage": None,
    }  # fmt: skip
    assert sent[2] is not None and sent[2]["delta"] == {"reasoning_content": "r"}


def test_a_tool_call_sends_its_id_and_name_once_then_argument_fragments() -> None:
    frames = AnswerFrames("req-1")
    first = wire(frames.frame(ToolCallDelta(0, "call_1", "weather", "")))
    more = wire(frames.frame(ToolCallDelta(0, arguments='{"city":')))
    assert first is not None and more is not None
    assert first["delta"] == {"tool_calls": [
        {"index": 0, "id": "call_1", "type": "function",
         "function": {"arguments": "", "name": "weather"}},
    ]}  # fmt: skip
    assert more["delta"] == {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}


def test_finish_carries_reason_and_usage_and_embeddings_are_one_result() -> None:
    frames = AnswerFrames("req-1")
    usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    finish = wire(frames.frame(Finish("length", usage)))
    assert finish is not None
    assert (finish["finish_reason"], finish["usage"], finish["delta"]) == ("length", usage, {})
    result = wire(frames.frame(Embeddings([[0.5, 1.0]], None)))
    assert result == {
        "type": "model_result", "id": "req-1", "status": "ok",
        "result": {"data": [{"object": "embedding", "index": 0, "embedding": [0.5, 1.0]}],
                   "usage": None},
    }  # fmt: skip
