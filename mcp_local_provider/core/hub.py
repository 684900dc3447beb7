"""The hub runs the life of agent sessions: admission and consent, approval, revocation,
expiry and shutdown, telling the agent and the router each time. No aiohttp: agents are
reached through ``AgentLink``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any

import structlog

from mcp_local_provider.core import errors
from mcp_local_provider.core.protocol import (
    ACCEPTED_AGENT_FRAMES,
    ENDED_CLOSE_CODES,
    CloseCode,
    Hello,
    SessionGranted,
    session_denied_frame,
    session_ended_frame,
    session_granted_frame,
    session_pending_frame,
)
from mcp_local_provider.core.registry import (
    AgentLink,
    InvalidToken,
    Registry,
    Session,
    SessionError,
    SessionState,
    UnknownSession,
)
from mcp_local_provider.core.router import Router

log = structlog.get_logger("mcp_local_provider.hub")


class AdmissionRefused(Exception):
    """The agent may not serve: its token is invalid, or the user denied it."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def granted_frame(session: Session, token: str) -> SessionGranted:
    return session_granted_frame(
        session_id=session.id,
        session_token=token,
        allowed_scopes=list(session.scopes),
        models=[m.name for m in session.models],
        expires_at=session.expires_at_iso(),
        max_requests=session.max_requests,
        max_concurrency=session.max_concurrency,
        accepts=list(ACCEPTED_AGENT_FRAMES),
    )


class Hub:
    def __init__(
        self,
        registry: Registry,
        router: Router,
        *,
        approval: str,
        approval_timeout: float,
        away_timeout: float = 600.0,
        observers: Iterable[Callable[[str, Session, dict[str, Any]], None]] = (),
    ) -> None:
        self.registry = registry
        self.router = router
        self.approval = approval
        self.approval_timeout = approval_timeout
        #: An active session whose agent is gone this long ends, so a killed agent does not
        #: stay "active (away)" for the rest of its lifetime.
        self.away_timeout = away_timeout
        self._decisions: dict[str, asyncio.Future[str | None]] = {}
        self._goodbyes: set[asyncio.Task[None]] = set()
        #: Called with every session event (``pending``, ``approved``, ``denied``,
        #: ``registered``, ``resumed``, ``disconnected``, ``left``, ``revoked``, ``expired``,
        #: ``closed``) and its details: metrics and the audit log. Must not raise or block.
        self._observers = tuple(observers)
        #: The consent front-ends (the log line, the terminal prompt) that want to hear of each
        #: new pending session. They subscribe after the hub exists, since a prompt answers
        #: through it (``subscribe_pending``).
        self._on_pending: list[Callable[[Session], None]] = []

    def subscribe_pending(self, notify: Callable[[Session], None]) -> None:
        """Call ``notify`` with each new pending session (not when approval is ``auto``)."""
        self._on_pending.append(notify)

    def emit(self, action: str, session: Session, **details: Any) -> None:
        for observe in self._observers:
            observe(action, session, details)

    # -- admission ---------------------------------------------------------------------------

    async def admit(self, hello: Hello, link: AgentLink) -> Session:
        """Grant ``link``'s agent a session, waiting for the user's consent if needed.

        Raises AdmissionRefused (after telling the agent why, where the protocol says so).
        """
        if hello.session_token is not None:
            return await self._resume(hello.session_token, link)
        session = self.registry.create_pending(
            agent_id=hello.agent_id,
            label=hello.label,
            models=hello.models,
            scopes=hello.requested_scopes,
            ttl_seconds=hello.ttl_seconds,
            max_concurrency=hello.max_concurrency,
            reason=hello.reason,
        )
        session.link = link
        log.info(
            "session_pending",
            session_id=session.id,
            agent_id=session.agent_id,
            label=session.label,
            scopes=list(session.requested_scopes),
            ttl_seconds=session.ttl_seconds,
        )
        self.emit("pending", session)
        decision: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._decisions[session.id] = decision
        try:
            await link.send(session_pending_frame(session.id))
            if self.approval == "auto":
                self.approve(session.id)
            else:
                for notify in self._on_pending:
                    notify(session)
            try:
                async with asyncio.timeout(self.approval_timeout):
                    token = await decision
            except TimeoutError:
                self.registry.end(session.id, SessionState.DENIED, "approval timed out")
                log.info("session_denied", session_id=session.id, reason="approval timed out")
                self.emit("denied", session, reason="approval timed out")
                token = None
        except BaseException:
            # Cancelled (the agent hung up) after an approval landed: the session is active,
            # but its socket is gone, so it must not look connected.
            self.detach(session, link)
            raise
        finally:
            self._decisions.pop(session.id, None)
            if session.state is SessionState.PENDING:
                # The agent went away (or the wait was cancelled) before a decision.
                self.registry.end(session.id, SessionState.DENIED, "agent left before approval")
                session.link = None
                self.emit("denied", session, reason="agent left before approval")
        if token is None:
            session.link = None
            reason = session.end_reason or "denied"
            await link.send(session_denied_frame(reason))
            raise AdmissionRefused(CloseCode.DENIED, reason)
        try:
            await link.send(granted_frame(session, token))
        except BaseException:
            self.detach(session, link)  # never leave an active session on a dead socket
            raise
        self.router.sessions_changed()
        return session

    async def _resume(self, token: str, link: AgentLink) -> Session:
        try:
            session = self.registry.claim(token)
        except InvalidToken as exc:
            raise AdmissionRefused(CloseCode.UNAUTHORIZED, str(exc)) from None
        old = session.link
        if old is not None and old is not link:
            self.detach(session, old)
            with suppress(ConnectionError, RuntimeError):
                await old.close(CloseCode.NORMAL, "replaced by a new connection")
        session.link = link
        log.info("session_resumed", session_id=session.id, agent_id=session.agent_id)
        self.emit("resumed", session)
        await link.send(granted_frame(session, token))
        self.router.sessions_changed()
        return session

    def detach(self, session: Session, link: AgentLink) -> None:
        """``link`` closed. Calls in flight on it fail now; the session lives on until expiry,
        offered to editors for ``reconnect_grace`` more seconds (see ``Registry.serving``)."""
        if session.link is not link:
            return
        session.link = None
        session.away_since = self.registry.clock()
        self.router.fail_session(
            session, errors.AgentDisconnected("the agent disconnected mid-request")
        )
        self.router.sessions_changed()
        if session.state is SessionState.ACTIVE:
            log.info("agent_disconnected", session_id=session.id, agent_id=session.agent_id)
            self.emit("disconnected", session)

    async def leave(self, session: Session, link: AgentLink) -> None:
        """The agent behind ``link`` said goodbye (closed with 1001): end its session now, so
        its models leave the lists and requests for them fail at once."""
        if session.link is not link or session.state is not SessionState.ACTIVE:
            return
        self.detach(session, link)
        await self.end(session, SessionState.LEFT, "left")

    # -- the user's decisions ----------------------------------------------------------------

    def approve(self, session_id: str) -> Session:
        session, token = self._decide(session_id)
        future = self._decisions.get(session_id)
        if future is None or future.done():
            # Nobody is waiting (the agent left); undo so the token is not left live.
            self.registry.end(session_id, SessionState.DENIED, "agent left before approval")
            raise errors.Conflict(f"session {session_id} has no agent waiting for approval")
        future.set_result(token)
        log.info("session_approved", session_id=session.id, agent_id=session.agent_id)
        self.emit("approved", session)
        return session

    def _decide(self, session_id: str) -> tuple[Session, str]:
        try:
            return self.registry.approve(session_id)
        except SessionError as exc:
            raise _control_error(exc) from None

    def deny(self, session_id: str, reason: str = "denied by the user") -> Session:
        try:
            session = self.registry.end(session_id, SessionState.DENIED, reason)
        except SessionError as exc:
            raise _control_error(exc) from None
        future = self._decisions.get(session_id)
        if future is not None and not future.done():
            future.set_result(None)
        log.info("session_denied", session_id=session_id, reason=reason)
        self.emit("denied", session, reason=reason)
        return session

    def register(self, **kwargs: Any) -> tuple[Session, str]:
        """Pre-register an active session that an agent later claims with the token."""
        session, token = self.registry.register(**kwargs)
        log.info("session_registered", session_id=session.id, agent_id=session.agent_id)
        self.emit("registered", session)
        return session, token

    async def revoke(self, session_id: str) -> Session:
        try:
            session = self.registry.get(session_id)
        except SessionError as exc:
            raise _control_error(exc) from None
        if session.state is SessionState.PENDING:
            return self.deny(session_id, "revoked before approval")
        return await self.end(session, SessionState.REVOKED, "revoked")

    async def end(self, session: Session, state: SessionState, reason: str) -> Session:
        """End an active session: its calls fail at once, its agent is told and closed."""
        try:
            self.registry.end(session.id, state, reason)
        except SessionError as exc:
            raise _control_error(exc) from None
        log.info("session_ended", session_id=session.id, reason=reason)
        self.emit(state.value, session, reason=reason)
        self.router.fail_session(session, errors.SessionEnded(f"the agent session was {reason}"))
        self.router.sessions_changed()
        link, session.link = session.link, None
        if link is not None:
            # Telling the agent must not hold up the caller (the closing handshake waits for
            # the agent's answer), so it runs on its own.
            task = asyncio.create_task(self._goodbye(session, link, reason))
            self._goodbyes.add(task)
            task.add_done_callback(self._goodbyes.discard)
        return session

    async def _goodbye(self, session: Session, link: AgentLink, reason: str) -> None:
        with suppress(ConnectionError, RuntimeError):
            await link.send(session_ended_frame(session.id, reason))
            await link.close(ENDED_CLOSE_CODES.get(reason, CloseCode.NORMAL), reason)

    # -- housekeeping ------------------------------------------------------------------------

    async def sweep(self) -> None:
        for session in self.registry.due_to_expire():
            await self.end(session, SessionState.EXPIRED, "expired")
        now = self.registry.clock()
        for session in self.registry.in_state(SessionState.ACTIVE):
            away = session.away_since
            if session.link is None and away is not None and now - away >= self.away_timeout:
                await self.end(session, SessionState.LEFT, "away too long")
        self.registry.forget_ended(older_than=3600)

    async def shutdown(self) -> None:
        """Tell every connected agent the daemon is going away and close it with 1001."""
        for future in self._decisions.values():
            if not future.done():
                future.set_result(None)
        closing = []
        for session in self.registry:
            link, session.link = session.link, None
            if link is None:
                continue
            self.router.fail_session(session, errors.ShuttingDown("the daemon is shutting down"))
            if session.state is SessionState.ACTIVE:
                closing.append(self._goodbye(session, link, "shutdown"))
            else:
                closing.append(link.close(CloseCode.GOING_AWAY, "shutdown"))
        await asyncio.gather(*closing, *self._goodbyes, return_exceptions=True)


def _control_error(exc: SessionError) -> errors.ProviderError:
    if isinstance(exc, UnknownSession):
        return errors.NotFound(str(exc))
    return errors.Conflict(str(exc))
