"""Any OpenAI-compatible upstream (a hosted API with your key, Ollama, vLLM, llama.cpp, another
mcp-local-provider): requests are passed through and the upstream's stream is relayed as it
arrives, content, tool calls, usage and finish reasons included. A request for one answer is
asked of the upstream as one answer: a stream would only be joined again, at a cost per chunk.

The API key comes from an environment variable or a file, never from the command line.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from mcp_local_provider.agent import quota
from mcp_local_provider.agent.backend import Backend, BackendError
from mcp_local_provider.agent.events import (
    BackendEvent,
    Embeddings,
    Finish,
    InvokeRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
)
from mcp_local_provider.core.config import BackendSettings
from mcp_local_provider.core.names import MODEL_NAME_PATTERN
from mcp_local_provider.core.protocol import ModelSpec

#: What an upstream model can do is unknown here: everything is passed on, and the upstream
#: answers what it cannot do with an error.
CAPABILITIES = ("chat", "completion", "fim", "tools", "embedding", "structured")
#: Parameters the backend sets itself rather than passing through.
_OWN = frozenset({"stream", "stream_options", "model"})


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(
        self,
        settings: BackendSettings | None = None,
        *,
        models: list[str] | None = None,
        base_url: str | None = None,
    ) -> None:
        self.settings = settings or BackendSettings()
        self.base_url = (base_url or self.settings.base_url or "").rstrip("/")
        self._models = list(models or self.settings.models)
        self._headers: dict[str, str] = {}
        self._http: aiohttp.ClientSession | None = None

    def models(self) -> list[ModelSpec]:
        return [ModelSpec(name=name, capabilities=CAPABILITIES) for name in self._models]

    async def start(self) -> None:
        if not self.base_url:
            raise BackendError(
                "the openai backend needs the upstream's URL: --base-url URL or `base_url` in "
                "[agent.backends.openai]", "backend_unavailable",
            )  # fmt: skip
        if not self.base_url.startswith(("http://", "https://")):
            raise BackendError(
                f"base_url {self.base_url!r} is not an http(s) URL", "backend_unavailable"
            )
        key = await self._api_key()
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        if self._http is None:
            # No cap of its own on connections (aiohttp's default is 100): the agent's
            # max_concurrency already bounds the requests in flight to the upstream.
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        if not self._models:
            self._models = await self._upstream_models()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _api_key(self) -> str | None:
        s = self.settings
        if s.api_key_env:
            key = os.environ.get(s.api_key_env, "").strip()
            if not key:
                raise BackendError(
                    f"the environment variable {s.api_key_env} (api_key_env) is not set",
                    "backend_unavailable",
                )
            return key
        if s.api_key_file:
            path = Path(s.api_key_file)
            try:
                key = (await asyncio.to_thread(path.read_text)).strip()
            except OSError as exc:
                raise BackendError(
                    f"cannot read api_key_file {str(path)!r}: {exc.strerror}", "backend_unavailable"
                ) from None
            if not key:
                raise BackendError(f"api_key_file {str(path)!r} is empty", "backend_unavailable")
            return key
        return None

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=self.settings.timeout, sock_read=self.settings.idle_timeout
        )

    async def _upstream_models(self) -> list[str]:
        assert self._http is not None
        url = self.base_url + "/models"
        try:
            async with self._http.get(
                url, headers=self._headers, timeout=self._timeout()
            ) as response:
                if response.status >= 400:
                    raise _upstream_error(response.status, await response.read(), response.headers)
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise BackendError(
                f"cannot list the upstream's models at {url}: {exc or type(exc).__name__}; "
                "set `models` to skip this", "backend_unavailable",
            ) from None  # fmt: skip
        data = body.get("data") if isinstance(body, dict) else None
        names = [str(m.get("id")) for m in data or () if isinstance(m, dict) and m.get("id")]
        usable = [n for n in names if MODEL_NAME_PATTERN.match(n)]
        if not usable:
            raise BackendError(
                f"the upstream at {url} lists no models; set `models`", "backend_unavailable"
            )
        return usable

    # -- requests ---------------------------------------------------------------------------

    def _body(self, request: InvokeRequest) -> tuple[str, dict[str, Any]]:
        model = self.settings.model or request.model
        extra = {k: v for k, v in request.parameters.items() if v is not None and k not in _OWN}
        if request.kind == "embedding":
            return "/embeddings", {"model": model, "input": request.input}
        streaming: dict[str, Any] = (
            {"stream": True, "stream_options": {"include_usage": True}}
            if request.stream
            else {"stream": False}
        )
        if request.kind == "completion":
            body = {"model": model, "prompt": request.prompt or "", **extra, **streaming}
            if request.suffix is not None:
                body["suffix"] = request.suffix
            return "/completions", body
        return "/chat/completions", {
            "model": model,
            "messages": request.messages,
            **extra,
            **streaming,
        }

    async def run(self, request: InvokeRequest) -> AsyncIterator[BackendEvent]:
        if self._http is None:
            await self.start()
        assert self._http is not None
        path, body = self._body(request)
        try:
            async with self._http.post(
                self.base_url + path, json=body, headers=self._headers, timeout=self._timeout()
            ) as response:
                if response.status >= 400:
                    raise _upstream_error(response.status, await response.read(), response.headers)
                if response.content_type != "text/event-stream":
                    for event in _whole(await response.json(content_type=None), request.kind):
                        yield event
                    return
                relay = _StreamRelay()
                async for line in response.content:
                    for event in relay.line(line):
                        yield event
                    if relay.done:
                        break
                yield relay.finish()
        except TimeoutError:
            raise BackendError("the upstream did not answer in time", "timeout") from None
        except aiohttp.ClientError as exc:
            raise BackendError(
                f"the upstream failed: {exc or type(exc).__name__}", "upstream_error"
            ) from None
        except ValueError:
            raise BackendError(
                "the upstream's answer is not valid JSON", "upstream_error"
            ) from None


class _StreamRelay:
    """Server-sent events of ``chat.completion.chunk`` or ``text_completion`` into events."""

    def __init__(self) -> None:
        self.done = False
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    def line(self, raw: bytes) -> list[BackendEvent]:
        if not raw.startswith(b"data:"):
            return []  # blank lines, comments, "event:" and "id:" fields
        data = raw[5:].strip()
        if data == b"[DONE]":
            self.done = True
            return []
        chunk = json.loads(data)
        if not isinstance(chunk, dict):
            return []
        if chunk.get("error") is not None:
            raise BackendError(
                f"the upstream failed mid-stream: {_message(chunk['error'])}", "upstream_error"
            )
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        choices = chunk.get("choices") or ()
        if not choices or not isinstance(choices[0], dict):
            return []
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        events: list[BackendEvent] = []
        delta = choice.get("delta")
        if not isinstance(delta, dict):  # the legacy completions stream
            if choice.get("text"):
                events.append(TextDelta(str(choice["text"])))
            return events
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            events.append(ReasoningDelta(reasoning))
        if delta.get("content"):
            events.append(TextDelta(str(delta["content"])))
        for call in delta.get("tool_calls") or ():
            events.append(_tool_call(call))
        return events

    def finish(self) -> Finish:
        return Finish(self.finish_reason or "stop", self.usage)


def _tool_call(call: dict[str, Any], index: int = 0) -> ToolCallDelta:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if arguments is not None and not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    return ToolCallDelta(
        index=int(call.get("index", index)),
        id=call.get("id"),
        name=function.get("name"),
        arguments=arguments or "",
    )


def _whole(body: Any, kind: str) -> list[BackendEvent]:
    """Events for an upstream that answered with one JSON body instead of a stream."""
    if not isinstance(body, dict):
        raise BackendError("the upstream's answer is not a JSON object", "upstream_error")
    if body.get("error") is not None:
        raise BackendError(f"the upstream failed: {_message(body['error'])}", "upstream_error")
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else None
    if kind == "embedding":
        data = sorted(body.get("data") or (), key=lambda d: d.get("index", 0))
        return [Embeddings([list(d.get("embedding") or ()) for d in data], usage)]
    choice = (body.get("choices") or [{}])[0]
    events: list[BackendEvent] = []
    message = choice.get("message") or {}
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        events.append(ReasoningDelta(reasoning))
    text = choice.get("text") if kind == "completion" else message.get("content")
    if text:
        events.append(TextDelta(str(text)))
    for index, call in enumerate(message.get("tool_calls") or ()):
        events.append(_tool_call(call, index))
    events.append(Finish(str(choice.get("finish_reason") or "stop"), usage))
    return events


def _message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def _upstream_error(status: int, body: bytes, headers: Mapping[str, str]) -> BackendError:
    try:
        parsed = json.loads(body)
        detail = _message(parsed.get("error", parsed)) if isinstance(parsed, dict) else str(parsed)
    except ValueError:
        detail = body[:500].decode(errors="replace").strip() or "no details"
    code = {401: "upstream_unauthorized", 403: "upstream_forbidden", 404: "upstream_not_found",
            429: "upstream_rate_limited"}.get(status, "upstream_error")  # fmt: skip
    message = f"the upstream answered {status}: {detail}"
    return quota.refused(quota.upstream(status, headers), message, code)
