"""Held tool turns: a CLI turn kept open while the editor runs the tools its model called.

When a run hands the editor's tool calls to the editor, a backend that can hold its turn keeps
the CLI process running, its MCP tool calls waiting in the tool server (``agent/tool_server.py``
with ``--hold``, which asks the run's result channel, a Unix socket in the tools folder). The
turn is registered under the ids of the calls it handed over, with a digest of the conversation
before them. A request whose messages end with the results of exactly those calls, after the
same conversation, continues the turn: each waiting call gets its result and the CLI's output
becomes the answer to that request. No new process, no re-rendered history.

Anything else ends the held turn (its process stopped): no result within
``tool_result_timeout``, a request that answers the calls after a changed history, the agent's
shutdown.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncGenerator, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import structlog

from mcp_local_provider.agent.events import BackendEvent, Finish, InvokeRequest, ToolCallDelta
from mcp_local_provider.agent.tools import EditorTools

log = structlog.get_logger("mcp_local_provider.agent.held")

#: The result channel's socket, next to the tools file the tool server reads.
SOCKET = "results.sock"
#: The answer to a call the editor was not given (one call per answer was asked for).
NOT_HANDED = "This call was not run: the editor takes one tool call per answer."


def digest(messages: list[dict[str, Any]], tools: Any) -> str:
    """A digest of a conversation and the tools it offers, to tell the same one again."""
    text = json.dumps([messages, tools], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def results_of(request: InvokeRequest) -> tuple[dict[str, str], str] | None:
    """The tool results a request's messages end with (``{call id: result text}``), and the
    digest of the conversation before the assistant message that made those calls; None if the
    messages do not end with results."""
    messages = request.messages
    end = len(messages)
    while end > 0 and messages[end - 1].get("role") == "tool":
        end -= 1
    if end == len(messages) or end == 0:
        return None
    call_message = messages[end - 1]
    if call_message.get("role") != "assistant" or not call_message.get("tool_calls"):
        return None
    results = {str(m.get("tool_call_id")): _text(m.get("content")) for m in messages[end:]}
    return results, digest(messages[: end - 1], request.parameters.get("tools"))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(b.get("text") or "") for b in content if isinstance(b, dict) and "text" in b
        )
    return "" if content is None else json.dumps(content)


class Channel:
    """The run's end of the tool server's result requests: a Unix socket server. Each waiting
    MCP call is one connection: a JSON line ``{"name", "arguments"}``, answered with one JSON
    line ``{"text", "isError"}``."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / SOCKET
        self.waiting: asyncio.Queue[tuple[dict[str, Any], asyncio.StreamWriter]] = asyncio.Queue()
        #: Calls asked for that were not among those being answered: a later answer's, kept
        #: for the next ``answer``.
        self._early: list[tuple[dict[str, Any], asyncio.StreamWriter]] = []
        #: Each call as it comes (``{"name", "arguments"}``), for a backend that learns of the
        #: calls here rather than from its CLI's output; the calls stay waiting for ``answer``.
        self.arrivals: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._server: asyncio.Server | None = None
        self._closed = False
        #: Every connection accepted, closed with the channel at the latest.
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_unix_server(self._connected, path=str(self.path))

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            call = json.loads(await reader.readline())
        except (ValueError, ConnectionError):
            writer.close()
            return
        if self._closed:  # the turn ended while the call was asking
            writer.close()
            return
        call = call if isinstance(call, dict) else {}
        await self.waiting.put((call, writer))
        self.arrivals.put_nowait(call)

    async def answer(
        self,
        calls: dict[str, tuple[str, str]],
        results: dict[str, str],
        dropped: list[tuple[str, str]] | None = None,
    ) -> None:
        """Give each of ``calls`` (id -> name, arguments) its result as the CLI asks for it
        (the server asks one call at a time, in any order), matched by name and arguments.
        ``dropped`` (name, arguments) are calls of the same answer the editor was not given (a
        second call where one was allowed): answered with an error, so the turn does not wait
        for them. A call asked for once all of ``calls`` are answered is a later answer's, left
        for the next ``answer``."""
        left = dict(calls)
        refused = [(n, _json(a)) for n, a in dropped or ()]
        early, self._early = self._early, []
        while left or refused:
            call, writer = early.pop(0) if early else await self.waiting.get()
            name, arguments = str(call.get("name")), _json(call.get("arguments"))
            found = next(
                (i for i, (n, a) in left.items() if n == name and _json(a) == arguments), None
            )
            if found is None and (name, arguments) in refused:
                reply = {"text": NOT_HANDED, "isError": True}
                refused.remove((name, arguments))
            elif found is None and not left:
                self._early.append((call, writer))
                continue
            else:
                # While some of this answer's calls wait, no later answer's call can come (the
                # model answers again only once it has every result): one whose arguments read
                # differently is this answer's, by name if it can be told.
                found = found or next((i for i, (n, _) in left.items() if n == name), None)
                found = found or next(iter(left))
                reply = {"text": results[found], "isError": False}
                del left[found]
            try:
                writer.write(json.dumps(reply).encode() + b"\n")
                with suppress(ConnectionError):
                    await writer.drain()
            finally:
                writer.close()

    async def close(self) -> None:
        self._closed = True
        if self._server is not None:
            self._server.close()
        while not self.waiting.empty():
            self.waiting.get_nowait()
        self._early.clear()
        for writer in self._writers:
            writer.close()
        self._writers.clear()


def _calls(deltas: list[ToolCallDelta]) -> dict[str, tuple[str, str]]:
    """An answer's calls from their deltas: id -> (name, arguments)."""
    calls: dict[int, list[str]] = {}
    for d in deltas:
        entry = calls.setdefault(d.index, ["", "", ""])
        entry[0] = d.id or entry[0]
        entry[1] = d.name or entry[1]
        entry[2] += d.arguments
    return {i: (n, a) for i, n, a in calls.values()}


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value or "{}")
        except ValueError:
            return value
    return value


class HeldTurn:
    """One turn waiting for the editor's results: its run's events, suspended at the answer
    that handed the calls over."""

    def __init__(
        self,
        events: AsyncGenerator[BackendEvent, None],
        channel: Channel,
        tools: EditorTools,
    ) -> None:
        self.events = events
        self.channel = channel
        self.tools = tools
        #: Removes the tools folder, once the turn owns it (it is held).
        self.release: Callable[[], Any] = lambda: None
        self.calls: dict[str, tuple[str, str]] = {}
        #: Calls of the same answer not handed over (name, arguments).
        self.dropped: list[tuple[str, str]] = []
        self.digest = ""
        #: When the turn was held (the event loop's clock).
        self.since = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def handed(
        self,
        deltas: list[ToolCallDelta],
        request: InvokeRequest,
        dropped: list[ToolCallDelta] | None = None,
    ) -> None:
        """The calls of the answer just given (the conversation being ``request``'s), and
        those of its calls that were not handed over."""
        self.calls = _calls(deltas)
        self.dropped = list(_calls(dropped or []).values())
        self.digest = digest(request.messages, request.parameters.get("tools"))

    async def resume(self, results: dict[str, str]) -> AsyncGenerator[BackendEvent, None]:
        """The turn's events after each waiting call gets its result, to its next Finish."""
        answering = asyncio.create_task(self.channel.answer(self.calls, results, self.dropped))
        try:
            async for event in self.events:
                yield event
                if isinstance(event, Finish):
                    return
        finally:
            answering.cancel()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        try:
            await self.events.aclose()
        finally:
            await self.channel.close()
            self.release()


class HeldTurns:
    """The turns held by one backend, by the ids of the calls each waits on."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._turns: dict[str, HeldTurn] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len({id(t) for t in self._turns.values()})

    def make_room(self, room: int) -> None:
        """End the oldest held turns until at most ``room`` are left."""
        turns = list({id(t): t for t in self._turns.values()}.values())
        turns.sort(key=lambda t: t.since)
        for turn in turns[: max(0, len(turns) - max(0, room))]:
            log.info("held_turn_ended", why="its slot is needed by another request")
            self._end(turn)

    def hold(self, turn: HeldTurn) -> None:
        for call_id in turn.calls:
            older = self._turns.get(call_id)
            if older is not None and older is not turn:
                # The same id from another turn (ids should be unique): the older one ends.
                self._end(older)
            self._turns[call_id] = turn
        loop = asyncio.get_running_loop()
        turn.since = loop.time()
        turn._timer = loop.call_later(self.timeout, self._expire, turn)

    def _expire(self, turn: HeldTurn) -> None:
        log.info("held_turn_expired", calls=len(turn.calls))
        self._end(turn)

    def _end(self, turn: HeldTurn) -> None:
        self._forget(turn)
        task = asyncio.create_task(turn.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _forget(self, turn: HeldTurn) -> None:
        for call_id in turn.calls:
            if self._turns.get(call_id) is turn:
                del self._turns[call_id]
        if turn._timer is not None:
            turn._timer.cancel()

    def take(self, request: InvokeRequest) -> tuple[HeldTurn, dict[str, str]] | None:
        """The held turn ``request`` continues (removed from the table), with the results for
        its calls; a turn whose calls the request answers after another history is ended."""
        found = results_of(request)
        if found is None:
            return None
        results, before = found
        turn = next((self._turns[i] for i in results if i in self._turns), None)
        if turn is None:
            return None
        if set(results) != set(turn.calls) or before != turn.digest:
            log.info("held_turn_abandoned", why="the conversation changed")
            self._end(turn)
            return None
        self._forget(turn)
        return turn, results

    async def close(self) -> None:
        for turn in {id(t): t for t in self._turns.values()}.values():
            self._end(turn)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
