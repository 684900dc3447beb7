"""How a person learns of a pending agent and answers: a log line, and optionally a y/N
prompt in the terminal running ``serve``."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import deque
from typing import TextIO

import structlog

from mcp_local_provider.core.hub import Hub
from mcp_local_provider.core.names import printable
from mcp_local_provider.core.registry import Session, SessionState

log = structlog.get_logger("mcp_local_provider.consent")


def approve_command(session: Session) -> str:
    return f"mcp-local-provider sessions approve {session.id}"


def announce(session: Session) -> None:
    """One clear line per pending agent, with the exact command that approves it."""
    log.warning(
        "agent_requests_access",
        session_id=session.id,
        label_untrusted=printable(session.label),
        agent_id=session.agent_id,
        scopes=list(session.requested_scopes),
        ttl_seconds=session.ttl_seconds,
        reason_untrusted=printable(session.reason),
        approve_with=approve_command(session),
        deny_with=f"mcp-local-provider sessions deny {session.id}",
    )


class TerminalPrompt:
    """Asks y/N for each pending session, one at a time, reading stdin without threads."""

    def __init__(self, hub: Hub, out: TextIO | None = None, fd: int | None = None) -> None:
        self.hub = hub
        self.out = out or sys.stderr
        self.fd = sys.stdin.fileno() if fd is None else fd
        self._queue: deque[Session] = deque()
        self._asking: Session | None = None
        self._buffer = b""
        self._reading = False

    def __call__(self, session: Session) -> None:
        self._queue.append(session)
        if self._asking is None:
            self._next()

    def _next(self) -> None:
        while self._queue:
            session = self._queue.popleft()
            if session.state is SessionState.PENDING:
                self._asking = session
                self.out.write(
                    f"\nAgent {printable(session.label) or session.agent_id!r} "
                    f"(agent id {session.agent_id}, unverified) asks for "
                    f"{', '.join(session.requested_scopes)} for {int(session.ttl_seconds)} s.\n"
                    f"Approve {session.id}? [y/N] "
                )
                self.out.flush()
                self._listen()
                return
        self._asking = None
        self._stop_listening()

    def _listen(self) -> None:
        if not self._reading:
            asyncio.get_running_loop().add_reader(self.fd, self._on_input)
            self._reading = True

    def _stop_listening(self) -> None:
        if self._reading:
            asyncio.get_running_loop().remove_reader(self.fd)
            self._reading = False

    def _on_input(self) -> None:
        try:
            data = os.read(self.fd, 1024)
        except OSError:
            data = b""
        if not data:  # stdin closed: stop asking; manual approval still works
            self._stop_listening()
            return
        self._buffer += data
        while b"\n" in self._buffer and self._asking is not None:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self._answer(self._asking, line.decode(errors="replace").strip().lower())
            self._next()

    def _answer(self, session: Session, answer: str) -> None:
        if session.state is not SessionState.PENDING:
            self.out.write(f"{session.id} is already {session.state.value}.\n")
            return
        try:
            if answer in ("y", "yes"):
                self.hub.approve(session.id)
                self.out.write(f"Approved {session.id}.\n")
            else:
                self.hub.deny(session.id)
                self.out.write(f"Denied {session.id}.\n")
        except Exception as exc:  # the agent may have left meanwhile
            self.out.write(f"Could not decide {session.id}: {exc}\n")

    def close(self) -> None:
        self._stop_listening()
