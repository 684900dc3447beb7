"""What the web page keeps: who is logged in (``PageAccess``), where usage comes from, and
where the daemon listens. No aiohttp, so ``http/state.py`` can hold it under ``PAGE``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from mcp_local_provider.core.config import Config
from mcp_local_provider.http.ui.usage import UsageSource
from mcp_local_provider.obs.traffic import Passed
from mcp_local_provider.policy.page_access import PageAccess

#: Event streams (live traffic) open at once, at most; each is one browser tab.
MAX_STREAMS = 16
#: Days of usage the panel shows.
USAGE_DAYS = 7


@dataclass
class PageState:
    access: PageAccess
    #: The usage store; None when usage is not recorded (the panel says so).
    usage: UsageSource | None = None
    #: The addresses ``serve`` listens on, once it does (``http://127.0.0.1:11434``, ...).
    listening: list[str] = field(default_factory=list)
    #: The queue of each open event stream; None put in one ends that stream.
    streams: set[asyncio.Queue[Passed | None]] = field(default_factory=set)

    def close_streams(self) -> None:
        """End every event stream now (the daemon is stopping)."""
        for queue in self.streams:
            while queue.full():
                queue.get_nowait()
            queue.put_nowait(None)


def page_state(config: Config, usage: UsageSource | None = None) -> PageState:
    access = PageAccess(session_ttl=config.ui_session_ttl, code_ttl=config.ui_login_ttl)
    return PageState(access, usage)
