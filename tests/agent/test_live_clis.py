"""The real agent CLIs, one tiny prompt each. Marked ``live``: each runs only when its CLI is on
PATH (and signed in), e.g. ``python -m pytest -m live``."""

from __future__ import annotations

import shutil

import pytest

from mcp_local_provider.agent.backends import create
from mcp_local_provider.agent.check import check

pytestmark = pytest.mark.live

CLIS = [("claude", "claude"), ("cursor", "cursor-agent"), ("gemini", "gemini"), ("codex", "codex")]


@pytest.mark.parametrize(("name", "binary"), CLIS)
async def test_the_real_cli_answers_a_tiny_prompt(name: str, binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not on PATH")
    backend = create(name)
    lines: list[str] = []
    try:
        works = await check(backend, lines.append)
    finally:
        await backend.close()
    assert works, "\n".join(lines)
    assert backend.malformed_lines == 0, "\n".join(lines)  # type: ignore[attr-defined]
