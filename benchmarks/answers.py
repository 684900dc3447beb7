"""What every arm is asked and must answer: one spec, the same text, checked the same way.

A request carries its spec at the start of its last user message, ``bench:CHUNKS:SIZE:PACE|``,
optionally followed by padding. The bench agent and the plain server both answer with CHUNKS
pieces of SIZE characters (PACE milliseconds apart when streaming), so an answer can be checked
byte for byte whichever way it travelled.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

SPEC_PREFIX = "bench:"


class WrongAnswer(Exception):
    """An answer that is not the one the spec asks for."""


@dataclass(frozen=True)
class Spec:
    chunks: int = 64
    size: int = 16
    pace_ms: float = 0.0

    def prompt(self, padding: int = 0) -> str:
        """The user message asking for this answer, padded to about ``padding`` extra bytes."""
        return f"{SPEC_PREFIX}{self.chunks}:{self.size}:{self.pace_ms:g}|" + "p" * padding

    def chunk(self, index: int) -> str:
        return chunk_text(index, self.size)

    def text(self) -> str:
        return answer_text(self.chunks, self.size)


@lru_cache(maxsize=64)
def answer_text(chunks: int, size: int) -> str:
    """A whole answer, made once per spec: the servers under test do no work of their own."""
    return "".join(chunk_text(i, size) for i in range(chunks))


@lru_cache(maxsize=8192)
def chunk_text(index: int, size: int) -> str:
    """Piece ``index`` of an answer: its number, then filler, exactly ``size`` characters."""
    head = f"<{index}>"
    return (head + "x" * max(0, size - len(head)))[:size]


def parse_spec(prompt: str) -> Spec:
    if not prompt.startswith(SPEC_PREFIX):
        raise ValueError("not a benchmark prompt")
    chunks, size, pace = prompt[len(SPEC_PREFIX) : prompt.index("|")].split(":")
    return Spec(int(chunks), int(size), float(pace))


def spec_of_messages(messages: Any) -> Spec:
    """The spec in the last message of an OpenAI ``messages`` list."""
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        raise ValueError("no messages")
    content = messages[-1].get("content")
    if not isinstance(content, str):
        raise ValueError("the last message has no text")
    return parse_spec(content)


def request_body(model: str, spec: Spec, *, stream: bool, padding: int = 0) -> bytes:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": spec.prompt(padding)}],
        "stream": stream,
    }
    return json.dumps(body).encode()


# -- what a plain OpenAI server sends (the plain arm and the mock upstream) ---------------------


def usage(spec: Spec) -> dict[str, int]:
    return {"prompt_tokens": 8, "completion_tokens": spec.chunks, "total_tokens": 8 + spec.chunks}


def completion(model: str, spec: Spec) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": spec.text()},
                "finish_reason": "stop",
            }
        ],
        "usage": usage(spec),
    }


def stream_chunk(
    model: str, delta: dict[str, Any], finish: str | None = None, *, usage_: Any = None
) -> bytes:
    chunk: dict[str, Any] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage_ is not None:
        chunk["choices"] = []
        chunk["usage"] = usage_
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


# -- checking what came back ---------------------------------------------------------------------


def check_whole(body: bytes, spec: Spec) -> None:
    """Raise WrongAnswer unless ``body`` is a chat completion with exactly the spec's text."""
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise WrongAnswer(f"not a chat completion: {body[:200]!r}") from exc
    if content != spec.text():
        raise WrongAnswer(f"wrong content: {str(content)[:80]!r}")


class StreamCheck:
    """An SSE chat stream as it arrived: the bytes of each read and when. Parsing waits until
    the stream is over, so that the client spends as little as it can while chunks arrive;
    a chunk's arrival is the read that completed its line."""

    def __init__(self, spec: Spec, started: float) -> None:
        self.spec = spec
        self.started = started
        self.reads: list[tuple[float, bytes]] = []
        self.arrivals: list[float] = []

    def read(self, data: bytes, now: float) -> None:
        self.reads.append((now, data))

    def verify(self) -> None:
        """Parse the stream; raise WrongAnswer unless it holds exactly the spec's text, a
        finish reason and ``[DONE]``."""
        parts: list[str] = []
        finished = done = False
        pending = b""
        for now, data in self.reads:
            pending += data
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                if not raw.startswith(b"data:"):
                    continue
                payload = raw[5:].strip()
                if payload == b"[DONE]":
                    done = True
                    continue
                try:
                    chunk = json.loads(payload)
                except ValueError as exc:
                    raise WrongAnswer(f"a stream line is not JSON: {payload[:200]!r}") from exc
                if "error" in chunk:
                    raise WrongAnswer(f"the stream failed: {chunk['error']}")
                for choice in chunk.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        parts.append(content)
                        self.arrivals.append(now)
                    if choice.get("finish_reason"):
                        finished = True
        if not (finished and done):
            raise WrongAnswer("the stream ended without a finish reason and [DONE]")
        if "".join(parts) != self.spec.text():
            raise WrongAnswer("the streamed text is not the expected text")

    @property
    def first_chunk_s(self) -> float:
        return self.arrivals[0] - self.started

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]
