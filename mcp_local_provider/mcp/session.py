"""Access: this MCP server's one agent session, from the request to its end.

It dials the daemon with ``AgentClient`` (so consent, scopes, TTL, cancel and resume are those
of every agent) and keeps a state the tools report: ``none`` -> ``connecting`` -> ``pending``
-> ``granted`` -> ``ended`` (with a reason: revoked, expired, shutdown, released, denied,
refused, failed).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import aiohttp
import structlog

from mcp_local_provider.agent import AgentClient, AgentRefused
from mcp_local_provider.core.protocol import CloseCode, ModelSpec
from mcp_local_provider.mcp.common import ServingBackend, Signal

log = structlog.get_logger("mcp_local_provider.mcp")

#: After ``session_pending``, how long a request waits for an approval that comes at once (an
#: auto-approving daemon) before answering "pending".
GRANT_GRACE = 0.5

_ENDINGS = {
    "revoked": "the user revoked the session",
    "expired": "the session reached the end of its lifetime",
    "shutdown": "the daemon shut down",
    "stopped": "access was released",
    "released": "access was released",
}


class AccessError(Exception):
    """The request for access cannot even be made (bad arguments, no token)."""


def agent_id_for(host_name: str | None) -> str:
    """A valid agent id naming the MCP host (``mcp-cursor``, ``mcp-visual-studio-code``)."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", (host_name or "host").lower()).strip("-._")
    return f"mcp-{slug or 'host'}"[:128]


def control_url(agent_url: str) -> str:
    """The daemon's HTTP base from its agent socket URL."""
    base = re.sub(r"^ws", "http", agent_url, count=1).rstrip("/")
    return base.removesuffix("/agent")


class Access:
    def __init__(
        self,
        url: str,
        token: Callable[[], str],
        backend: ServingBackend,
        signal: Signal,
        *,
        connect_timeout: float = 10.0,
        heartbeat: float = 15.0,
    ) -> None:
        self.url = url
        self._token = token
        self.backend = backend
        self.signal = signal
        self.connect_timeout = connect_timeout
        self.heartbeat = heartbeat
        self.state = "none"
        self.session_id: str | None = None
        self.approve_with: str | None = None
        self.granted: dict[str, Any] | None = None
        self.requested: dict[str, Any] = {}
        self.ended_reason: str | None = None
        self.message: str | None = None
        self._client: AgentClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._releasing = False
        backend.why_ending = self._why_ending

    @property
    def active(self) -> bool:
        return self.state in ("connecting", "pending", "granted")

    # -- requesting ----------------------------------------------------------------------------

    async def request(
        self,
        *,
        scopes: list[str],
        reason: str,
        ttl_seconds: float | None,
        models: list[str],
        agent_id: str,
        label: str,
    ) -> None:
        """Dial in (unless already in) and wait briefly for the daemon's first answer."""
        if self.active:
            return
        for name in models:
            try:
                ModelSpec(name=name)
            except ValueError:
                raise AccessError(
                    f"invalid model name {name!r}: use 1-200 letters, digits and . _ : @ / + -"
                ) from None
        token = self._token()
        self.backend.model_names = list(models)
        self.requested = {"scopes": scopes, "models": models, "ttl_seconds": ttl_seconds}
        self.state = "connecting"
        self.session_id = self.approve_with = None
        self.granted = None
        self.ended_reason = self.message = None
        self._releasing = False
        client = AgentClient(
            self.url,
            token,
            self.backend,
            agent_id=agent_id,
            label=label[:200],
            scopes=tuple(scopes),
            ttl_seconds=ttl_seconds,
            reason=reason[:200],
            heartbeat=self.heartbeat,
            on_pending=self._on_pending,
            on_granted=self._on_granted,
        )
        self._client = client
        self._task = asyncio.create_task(self._serve(client))
        await self.wait(lambda: self.state != "connecting", self.connect_timeout)
        if self.state == "pending":
            await self.wait(lambda: self.state != "pending", GRANT_GRACE)

    async def wait(self, done: Callable[[], bool], within: float) -> bool:
        """Wait until ``done()``, at most ``within`` seconds; True if ``done()``."""
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while not done():
            left = end - loop.time()
            if left <= 0:
                return False
            await self.signal.wait(left)
        return True

    def _on_pending(self, frame: dict[str, Any]) -> None:
        self.state = "pending"
        self.session_id = frame.get("session_id")
        self.approve_with = frame.get("approve_with")
        log.info("mcp_access_pending", session_id=self.session_id, approve_with=self.approve_with)
        self.signal.notify()

    def _on_granted(self, frame: dict[str, Any]) -> None:
        self.state = "granted"
        self.session_id = frame.get("session_id")
        self.granted = frame
        log.info("mcp_access_granted", session_id=self.session_id, models=frame.get("models"))
        self.signal.notify()

    async def _serve(self, client: AgentClient) -> None:
        try:
            reason = await client.run()
            self._end("released" if self._releasing else reason, None)
        except AgentRefused as exc:
            if self._releasing:
                self._end("released", None)
            elif exc.code == CloseCode.DENIED:
                self._end("denied", str(exc))
            else:
                self._end("refused", str(exc))
        except Exception as exc:  # a bug must not pass silently: the tools report it
            log.exception("mcp_access_failed")
            self._end("failed", f"{type(exc).__name__}: {exc}")

    def _end(self, reason: str, message: str | None) -> None:
        self.state = "ended"
        self.ended_reason = "released" if reason == "stopped" else reason
        self.message = message or _ENDINGS.get(reason, reason)
        log.info("mcp_access_ended", session_id=self.session_id, reason=self.ended_reason)
        self.signal.notify()

    def _why_ending(self) -> str | None:
        client = self._client
        if self._releasing:
            return "access was released"
        if client is not None and client.granted is not None and client.session_token is None:
            return "the session ended"
        return None

    # -- ending --------------------------------------------------------------------------------

    async def release(self, grace: float = 5.0) -> None:
        """End the session for good: revoke it at the daemon, then hang up."""
        client, task = self._client, self._task
        if client is None or task is None or task.done():
            return
        self._releasing = True
        if self.session_id is not None:
            await self._revoke(self.session_id, grace)
        await client.stop()
        with suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await asyncio.shield(task)
        if not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            self._end("released", None)

    async def _revoke(self, session_id: str, grace: float) -> None:
        url = f"{control_url(self.url)}/control/sessions/{session_id}/revoke"
        try:
            headers = {"Authorization": f"Bearer {self._token()}"}
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=grace)) as http,
                http.post(url, headers=headers) as response,
            ):
                await response.read()
        except Exception as exc:  # best effort: hanging up still ends our part
            log.info("mcp_revoke_failed", session_id=session_id, error=str(exc))

    def snapshot(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.state}
        if self.session_id:
            data["session_id"] = self.session_id
        if self.state == "pending":
            data["approve_with"] = self.approve_with
        if self.state == "granted" and self.granted is not None:
            data["expires_at"] = self.granted.get("expires_at")
            data["models"] = self.granted.get("models")
            data["scopes"] = self.granted.get("allowed_scopes")
        if self.state == "ended":
            data["reason"] = self.ended_reason
            data["message"] = self.message
        return data
