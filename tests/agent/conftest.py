"""Fixtures of the agent tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mcp_local_provider.agent.process import CliProcess


@pytest.fixture
def processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[CliProcess]]:
    """Every CliProcess started during the test."""
    started: list[CliProcess] = []
    original = CliProcess.start

    async def start(self: CliProcess) -> None:
        started.append(self)
        await original(self)

    monkeypatch.setattr(CliProcess, "start", start)
    yield started
