"""What the agent-CLI backends share: one CLI process per request (started ahead of it where the
CLI allows, ``agent/warm.py``), its output turned into events by a per-run ``OutputParser``, and
the emulated features the CLIs lack."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import ExitStack, aclosing, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import structlog

from mcp_local_provider.agent.backend import Backend, BackendError
from mcp_local_provider.agent.emulation import Prompt, flatten
from mcp_local_provider.agent.events import (
    BackendEvent,
    Finish,
    InvokeRequest,
    TextDelta,
    ToolCallDelta,
)
from mcp_local_provider.agent.held import Channel, HeldTurn, HeldTurns
from mcp_local_provider.agent.process import CliProcess, find_binary
from mcp_local_provider.agent.structured import OutputFormat, structured
from mcp_local_provider.agent.tools import EditorTools, call_problems, checked, offered
from mcp_local_provider.agent.warm import Launch, WarmPool
from mcp_local_provider.core.config import BackendSettings
from mcp_local_provider.core.protocol import ModelSpec, WarmStatus

log = structlog.get_logger("mcp_local_provider.agent.cli")

#: System text longer than this goes into the prompt instead of argv (Linux caps one argument
#: at 128 KiB).
SYSTEM_ARG_LIMIT = 64 * 1024
CAPABILITIES = ("chat", "completion", "fim", "structured")


def usage_from(prompt: Any, completion: Any, cached: Any = None) -> dict[str, Any] | None:
    """OpenAI-style usage from a CLI's counts, or None if it reported none."""
    if not isinstance(prompt, int) and not isinstance(completion, int):
        return None
    p, c = int(prompt or 0), int(completion or 0)
    usage: dict[str, Any] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
    if isinstance(cached, int) and cached:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage


def text_blocks(content: Any) -> str:
    """The text of a message's content blocks (``[{"type": "text", "text": ...}]``)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(
        str(block.get("text") or "")
        for block in content
        if isinstance(block, dict) and block.get("type") == "text"
    )


class OutputParser(ABC):
    """Turns one run's output events into backend events; pure, one instance per run.

    ``feed`` takes each event, ``end`` the exit code once the output is over. Both may raise
    BackendError. Unknown event types must be ignored.
    """

    cli = "the CLI"

    def __init__(self) -> None:
        #: All text sent so far, to reconcile message-level and final text against.
        self.sent = ""
        #: True once a terminal event (a result) has been handled.
        self.done = False
        self._last_message = ""

    @abstractmethod
    def feed(self, event: dict[str, Any]) -> list[BackendEvent]: ...

    def progress(self, event: dict[str, Any]) -> bool:
        """Whether ``event`` shows the run moving on (it resets the idle clock). A CLI retrying
        a failing model API is not: its retry events are logged and noted in ``stalled``."""
        return True

    #: Why the run is not moving on (the last retry), for the idle-timeout error.
    stalled: str | None = None
    #: The CLI was given the response format's schema (its own JSON mode): the parser sends
    #: the structured result as the answer, and no other text.
    structured = False

    def text(self, text: str) -> list[BackendEvent]:
        """A token-level delta."""
        if not text:
            return []
        self.sent += text
        return [TextDelta(text)]

    def message(self, text: str) -> list[BackendEvent]:
        """A whole message. A repeat of the previous one is dropped, and a message that extends
        the previous one sends only what is new (some CLIs repeat or accumulate messages)."""
        last, self._last_message = self._last_message, text
        if text == last:
            return []
        if last and text.startswith(last):
            return self.text(text[len(last) :])
        return self.text(text)

    def final(self, text: Any) -> list[BackendEvent]:
        """The final text of a result: send whatever part of it was not sent yet."""
        if not isinstance(text, str) or not text:
            return []
        if text.startswith(self.sent):
            return self.text(text[len(self.sent) :])
        log.info("cli_result_differs", cli=self.cli, sent=len(self.sent), final=len(text))
        return []

    def end(self, code: int, stderr: str) -> list[BackendEvent]:
        """The output is over and the CLI exited with ``code``."""
        if self.done:
            return []
        if code != 0:
            raise failure(f"{self.cli} exited with code {code} before finishing", stderr)
        if self.sent:
            return [Finish("stop")]
        raise failure(f"{self.cli} ended without an answer", stderr)


ParserT = TypeVar("ParserT", bound=OutputParser)


def stalled(error: BackendError, parser: OutputParser) -> BackendError:
    """``error``, saying why the run stalled if it timed out while the CLI was retrying."""
    if error.code != "timeout" or not parser.stalled:
        return error
    return BackendError(f"{error.message}: {parser.stalled}", error.code)


def failure(what: str, stderr: str, code: str = "backend_error") -> BackendError:
    """A BackendError for ``what`` with the end of the CLI's stderr appended."""
    return BackendError(f"{what}: {stderr}" if stderr else what, code)


class CliBackend(Backend):
    """A backend that runs an agent CLI once per request."""

    name = "cli"
    #: The CLI's usual executable name.
    binary_name = ""
    default_models: tuple[str, ...] = ()
    emulated = frozenset({"stop", "max_tokens", "usage"})

    def __init__(
        self, settings: BackendSettings | None = None, *, models: list[str] | None = None
    ) -> None:
        self.settings = settings or BackendSettings()
        chosen = list(models or self.settings.models)
        self._explicit_models = bool(chosen)
        self._models = chosen or list(self.default_models)
        self.binary = self.settings.binary or self.binary_name
        self.path: str | None = None
        #: Output lines skipped as malformed, over all runs.
        self.malformed_lines = 0
        #: Requests being served now, and at most how many at once (None: no limit known).
        self._serving = 0
        self._concurrency: int | None = None

    def models(self) -> list[ModelSpec]:
        # Fill-in-the-middle is emulated with an instruction (see emulation.flatten); tools
        # only by a backend that offers the editor's tools to its CLI; images and embeddings
        # are not offered.
        capabilities = (*CAPABILITIES, "tools") if self.editor_tools else CAPABILITIES
        return [ModelSpec(name=name, capabilities=capabilities) for name in self._models]

    async def start(self) -> None:
        self.path = await asyncio.to_thread(find_binary, self.binary)
        workdir = self.settings.workdir
        if workdir is not None:
            await asyncio.to_thread(Path(workdir).mkdir, parents=True, exist_ok=True)
        self.prime()

    def cli_model(self, request: InvokeRequest) -> str | None:
        """The model to ask the CLI for: the configured one, else the requested name when the
        user chose the advertised names, else None (the CLI's default)."""
        if self.settings.model:
            return self.settings.model
        if self._explicit_models and request.model in self._models:
            return request.model
        return None

    #: Whether the backend offers the editor's tools to its CLI (``agent/tools.py``).
    editor_tools = False
    #: How the CLI names the editor's tools to its model (``mcp__editor__`` for Claude Code).
    tool_prefix = ""
    #: Whether the CLI has a JSON-schema output mode of its own (``native_format``).
    native_output = False

    def native_format(
        self, request: InvokeRequest, tools: EditorTools | None
    ) -> OutputFormat | None:
        """The response format this run hands to the CLI's own JSON mode, if any."""
        if not self.native_output or tools is not None:
            return None
        return OutputFormat.of(request)

    @abstractmethod
    def argv(
        self, request: InvokeRequest, prompt: Prompt, tools: EditorTools | None = None
    ) -> list[str]:
        """The command line, starting with ``self.path``; never the prompt itself. With
        ``tools``, the CLI loads the editor's tools and none of its own."""

    def stdin_text(self, prompt: Prompt) -> str:
        """What goes on stdin; by default system text and prompt together."""
        return prompt.inline()

    async def begin(self, proc: CliProcess, prompt: Prompt, tools: EditorTools | None) -> None:
        """Give the run's process its request: by default ``stdin_text``, then end of input."""
        await proc.send(self.stdin_text(prompt).encode())

    @abstractmethod
    def parser(self, tools: EditorTools | None = None) -> OutputParser:
        """A fresh parser for one run (``tools``: the editor's tools offered in it)."""

    def workdir(self, tools: EditorTools | None = None) -> Path | None:
        """The CLI's working folder: the configured one, else (None) a scratch folder."""
        return None if self.settings.workdir is None else Path(self.settings.workdir)

    def environment(self, tools: EditorTools | None = None) -> dict[str, str]:
        """Environment variables for the CLI: the configured ones."""
        return dict(self.settings.env)

    def prepare(self, tools: EditorTools) -> None:
        """Write the files a run with the editor's ``tools`` needs (into ``tools.folder``)
        before ``argv``, ``workdir`` and ``environment`` are asked for, which write nothing."""

    # -- processes: started ahead where the CLI allows it (agent/warm.py) ------------------

    #: Whether the CLI can be started before its prompt is known: it then waits for its
    #: input, after its start-up and ``warm_up``.
    warmable = False
    _pool: WarmPool | None = None

    def warm(self, tools: EditorTools | None) -> bool:
        """Whether this run's process may come from, and be refilled into, the warm pool (which
        ``start`` makes; not with the editor's tools, whose files are the run's own)."""
        return self._pool is not None and tools is None

    async def warm_up(self, proc: CliProcess) -> None:
        """Take a started process through the CLI's handshake, up to where a request's own
        part begins (Codex: ``initialize``)."""

    def launch(self, request: InvokeRequest, prompt: Prompt, tools: EditorTools | None) -> Launch:
        """What the run's process is: command line, environment and working folder."""
        env = tuple(sorted(self.environment(tools).items()))
        return Launch(tuple(self.argv(request, prompt, tools)), env, self.workdir(tools))

    def _process(self, launch: Launch) -> CliProcess:
        s = self.settings
        return CliProcess(
            launch.argv,
            close_stdin=False,
            workdir=launch.workdir,
            env=dict(launch.env),
            idle_timeout=s.idle_timeout,
            timeout=s.timeout,
            cancel_grace=s.cancel_grace,
        )

    # -- held tool turns (agent/held.py) --------------------------------------------------

    #: Whether the CLI's MCP tool call can wait for the editor's result, and its turn then go
    #: on (its tool server is started with ``hold`` and the run does not end at the call).
    holds_turns = False
    #: The longest the CLI itself lets an MCP call wait (seconds), if it has a limit that
    #: cannot be set: a turn is held no longer than that, whatever ``tool_result_timeout`` says.
    max_tool_wait: float | None = None
    _held: HeldTurns | None = None

    @property
    def holding(self) -> bool:
        """Whether runs with the editor's tools hold their turn for the results."""
        return self.holds_turns and self.settings.tool_result_timeout > 0

    def held_turns(self) -> int:
        """How many turns are held now, waiting for the editor's results."""
        return 0 if self._held is None else len(self._held)

    def limit(self, concurrency: int) -> None:
        # A held turn takes one of the agent's slots: requests being served plus turns held
        # stay within ``concurrency`` (see ``run``).
        self._concurrency = concurrency

    def pool_status(self) -> WarmStatus | None:
        """The warm pool's processes (ready, starting, busy), or None without one."""
        return None if self._pool is None else self._pool.status()

    def prime(self) -> None:
        """Make the warm pool (if the CLI and the settings allow one) and start the process a
        plain request with no system text would take."""
        if not (self.warmable and self.settings.warm) or self._pool is not None:
            return
        self._pool = WarmPool(
            self._process,
            self.warm_up,
            max_idle=self.settings.warm_max_idle,
            max_memory=self.settings.warm_max_memory << 20,
            warm_up_timeout=self.settings.idle_timeout,
        )
        request = InvokeRequest(id="prime", kind="chat", model=self._models[0])
        self._pool.fill(self.launch(request, Prompt("", ""), None))

    @asynccontextmanager
    async def running(
        self, launch: Launch, parser: OutputParser, warm: bool
    ) -> AsyncIterator[CliProcess]:
        """The run's process, through ``warm_up``: with ``warm`` a ready one from the pool if
        there is one, else one started now; stopped (and its scratch folder removed) on
        leaving."""
        pool = self._pool if warm else None
        proc = await pool.take(launch) if pool is not None else None
        if pool is not None:
            pool.busy += 1
        try:
            if proc is None:
                proc = self._process(launch)
                await proc.start()
                await self.warm_up(proc)
            proc.progress = parser.progress
            yield proc
        finally:
            try:
                if proc is not None:
                    await proc.close()
            finally:
                if pool is not None:
                    pool.busy -= 1
                    pool.fill(launch)

    def _refill(self, launch: Launch, tools: EditorTools | None) -> None:
        if self._pool is not None and self.warm(tools):
            self._pool.fill(launch)

    def _kept(self, launch: Launch, tools: EditorTools | None) -> None:
        """The run's process stays with its held turn: the pool gets another in its place."""
        asyncio.get_running_loop().call_soon(self._refill, launch, tools)

    def _resumed(self, proc: CliProcess, parser: ParserT) -> ParserT:
        """A held turn goes on in ``proc``: its output from here is read by ``parser`` (fresh),
        and the request's clocks start again."""
        self.malformed_lines += proc.malformed
        proc.malformed = 0
        proc.progress = parser.progress
        proc.begin()
        return parser

    async def close(self) -> None:
        if self._held is not None:
            await self._held.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    # -- one run ----------------------------------------------------------------------------

    async def _ready(self, request: InvokeRequest) -> Prompt:
        if request.kind not in ("chat", "completion"):
            raise BackendError(
                f"the {self.name} backend serves chat and completions only", "unsupported"
            )
        if self.path is None:
            self.path = await asyncio.to_thread(find_binary, self.binary)
        return flatten(request)

    async def run(self, request: InvokeRequest) -> AsyncIterator[BackendEvent]:
        self._serving += 1
        try:
            async with aclosing(self._serve(request)) as events:
                async for event in events:
                    yield event
        finally:
            self._serving -= 1

    async def _serve(self, request: InvokeRequest) -> AsyncGenerator[BackendEvent, None]:
        prompt = await self._ready(request)
        if self.holding and self._held is None:
            wait = self.settings.tool_result_timeout
            self._held = HeldTurns(min(wait, self.max_tool_wait or wait))
        taken = self._held.take(request) if self._held is not None else None
        if taken is None and self._held is not None and self._concurrency is not None:
            # A held turn keeps its slot until a request that does not continue it needs one:
            # the oldest turns held end then, so holding never makes a request wait.
            self._held.make_room(self._concurrency - self._serving)
        if taken is not None:
            turn, results = taken
            log.info("held_turn_continued", request_id=request.id, calls=len(results))
            async with (
                aclosing(turn.resume(results)) as resumed,
                aclosing(self._hand_over(turn, resumed, request, None)) as continued,
            ):
                async for event in continued:
                    yield event
            return
        with ExitStack() as stack:
            tools = stack.enter_context(offered(request)) if self.editor_tools else None
            if tools is not None:
                self.prepare(tools)
                prompt = prompt.with_system(tools.instructions(self.tool_prefix))
            events: AsyncGenerator[BackendEvent, None]
            wanted = OutputFormat.of(request) if tools is None else None
            if wanted is not None:
                events = structured(lambda p: self._run(request, p, None), prompt, wanted)
            elif tools is None:
                events = self._run(request, prompt, None)
            elif self._held is not None:
                events = self._held_run(request, prompt, tools, stack)
            else:
                events = checked(lambda p: self._run(request, p, tools), prompt, tools)
            async with aclosing(events):
                async for event in events:
                    yield event

    async def _held_run(
        self, request: InvokeRequest, prompt: Prompt, tools: EditorTools, stack: ExitStack
    ) -> AsyncGenerator[BackendEvent, None]:
        """A run with the editor's tools whose turn is held when it hands calls over; an
        answer whose calls are invalid is run again the usual way (``checked``)."""
        channel = Channel(tools.folder)
        await channel.open()
        turn = HeldTurn(self._holding(request, prompt, tools, channel), channel, tools)
        invalid: list[str] = []
        async with aclosing(self._hand_over(turn, turn.events, request, stack, invalid)) as events:
            async for event in events:
                yield event
        if invalid:
            repeat = checked(lambda p: self._run(request, p, tools), prompt, tools, invalid)
            async with aclosing(repeat) as again:
                async for event in again:
                    yield event

    def _holding(
        self, request: InvokeRequest, prompt: Prompt, tools: EditorTools, channel: Channel
    ) -> AsyncGenerator[BackendEvent, None]:
        """The events of a run whose turn is held at each hand-over (``_loop`` with ``hold``;
        ``channel`` is where its tool server asks for the results)."""
        return self._loop(request, prompt, tools, hold=True)

    async def _hand_over(
        self,
        turn: HeldTurn,
        events: AsyncIterator[BackendEvent],
        request: InvokeRequest,
        stack: ExitStack | None,
        invalid: list[str] | None = None,
    ) -> AsyncGenerator[BackendEvent, None]:
        """The turn's events to its next Finish, tool calls held back to the end and checked
        (see ``checked``). Valid calls handed over hold the turn (``stack``: what the tools
        folder's removal is to be taken from); any other end closes it."""
        assert self._held is not None
        held = False
        calls: list[ToolCallDelta] = []
        dropped: list[ToolCallDelta] = []
        try:
            async for event in events:
                if isinstance(event, ToolCallDelta):
                    handed = turn.tools is None or turn.tools.handed_over(event)
                    (calls if handed else dropped).append(event)
                    continue
                if isinstance(event, Finish) and turn.tools is not None:
                    wrong = call_problems(turn.tools, calls)
                    if wrong:
                        if invalid is None:
                            raise BackendError(
                                "the agent's tool call is invalid: " + "; ".join(wrong),
                                "invalid_tool_call",
                            )
                        invalid += wrong
                        return
                    if calls and event.reason == "tool_calls":
                        turn.handed(calls, request, dropped)
                        if stack is not None:
                            turn.release = stack.pop_all().close
                        self._held.hold(turn)
                        held = True
                    for call in calls:
                        yield call
                    yield event
                    return
                yield event
        finally:
            if not held:
                await turn.close()

    def _run(
        self, request: InvokeRequest, prompt: Prompt, tools: EditorTools | None
    ) -> AsyncGenerator[BackendEvent, None]:
        """The run loop every CLI backend shares: the process, the prompt on stdin, each output
        event through the parser, the exit code at the end."""
        return self._loop(request, prompt, tools)

    async def _loop(
        self,
        request: InvokeRequest,
        prompt: Prompt,
        tools: EditorTools | None,
        hold: bool = False,
    ) -> AsyncGenerator[BackendEvent, None]:
        """``_run``'s loop. With ``hold``, a Finish that hands tool calls over does not end it:
        once resumed (the results given to the waiting calls, ``agent/held.py``), the turn's
        output goes on with a fresh parser and clock."""
        parser = self.parser(tools)
        parser.structured = self.native_format(request, tools) is not None
        launch = self.launch(request, prompt, tools)
        async with self.running(launch, parser, self.warm(tools)) as proc:
            try:
                await self.begin(proc, prompt, tools)
                resumed = True
                while resumed:
                    resumed = False
                    async for raw in proc.events():
                        for event in parser.feed(raw):
                            handed = isinstance(event, Finish) and event.reason == "tool_calls"
                            if hold and handed:
                                self._kept(launch, tools)
                            elif isinstance(event, Finish):
                                proc.finished = True
                            yield event
                            if hold and handed:
                                resumed = True
                                break
                            if proc.finished:
                                return
                        if resumed:
                            break
                    if resumed:
                        parser = self._resumed(proc, self.parser(tools))
                code = await proc.wait()
                for event in parser.end(code, proc.stderr_tail()):
                    yield event
            except BackendError as exc:
                raise stalled(exc, parser) from None
            finally:
                self.malformed_lines += proc.malformed
