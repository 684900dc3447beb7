"""What the usage panel reads: any store with ``rows(since_days)`` returning one row per
(day, session, model). Duck-typed, so the page needs nothing from the store but this shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class UsageRowLike(Protocol):
    """One day of one session's use of one model."""

    @property
    def day(self) -> str: ...  # ISO date
    @property
    def session(self) -> str: ...  # the session's label
    @property
    def model(self) -> str: ...
    @property
    def requests(self) -> int: ...
    @property
    def errors(self) -> int: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def estimated(self) -> bool: ...  # some tokens were estimated, not reported by the agent
    @property
    def failovers(self) -> int: ...
    @property
    def cooling_seconds(self) -> float: ...


class UsageSource(Protocol):
    async def rows(self, since_days: int) -> Sequence[UsageRowLike]: ...
