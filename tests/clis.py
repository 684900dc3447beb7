"""Fake agent CLIs on PATH for the CLI backends' tests (the script is tests/fake_cli.py)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcp_local_provider.agent import Backend, BackendEvent, InvokeRequest
from mcp_local_provider.agent.backends import create
from mcp_local_provider.core.config import BackendSettings

FIXTURES = Path(__file__).parent / "fixtures"
FAKE_SCRIPT = Path(__file__).parent / "fake_cli.py"
#: The text every happy-path fixture answers with.
ANSWER = "Hello there! How are you today?"
#: Backend name -> the binary name the fake is installed under.
BINARIES = {"claude": "claude", "cursor": "cursor-agent", "gemini": "gemini", "codex": "codex"}


@dataclass
class FakeCli:
    bin: Path
    records: Path

    @classmethod
    def install(cls, root: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCli:
        bin_dir, records = root / "fake-bin", root / "fake-records"
        bin_dir.mkdir()
        records.mkdir()
        source = FAKE_SCRIPT.read_text()
        for name in [*BINARIES.values(), "agent"]:
            path = bin_dir / name
            path.write_text(f"#!{sys.executable}\n{source}")
            path.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        return cls(bin_dir, records)

    def settings(
        self,
        backend: str,
        fixture: str = "happy",
        *,
        delay: float = 0,
        exit: int = 0,
        stderr: str | None = None,
        child: bool = False,
        ignore_sigint: bool = False,
        hang: bool = False,
        env: dict[str, str] | None = None,
        **fields: Any,
    ) -> BackendSettings:
        """Settings that make ``backend`` run the fake replaying fixtures/<backend>/<fixture>."""
        knobs = {
            "FAKE_CLI_FIXTURE": str(FIXTURES / backend / f"{fixture}.ndjson"),
            "FAKE_CLI_RECORD": str(self.records),
            "FAKE_CLI_DELAY": str(delay),
            "FAKE_CLI_EXIT": str(exit),
        }
        if stderr is not None:
            knobs["FAKE_CLI_STDERR"] = stderr
        if child:
            knobs["FAKE_CLI_CHILD"] = "1"
        if hang:
            knobs["FAKE_CLI_HANG"] = "1"
        if ignore_sigint:
            knobs["FAKE_CLI_IGNORE_SIGINT"] = "1"
        fields.setdefault("cancel_grace", 0.3)
        # The fake replays one run per process and reads a plain prompt: the processes started
        # ahead are tested with the real CLIs (tests/agent/test_warm.py).
        fields.setdefault("warm", False)
        return BackendSettings(env={**knobs, **(env or {})}, **fields)

    def backend(self, name: str, fixture: str = "happy", **knobs: Any) -> Backend:
        models = knobs.pop("models", None)
        return create(name, models=models, settings=self.settings(name, fixture, **knobs))

    def runs(self) -> list[dict[str, Any]]:
        """What each run of a fake recorded, oldest first."""
        found = [json.loads(p.read_text()) for p in self.records.glob("*.json")]
        return sorted(found, key=lambda r: float(r["started"]))

    def last(self) -> dict[str, Any]:
        runs = self.runs()
        assert runs, "the fake CLI never ran"
        return runs[-1]


def chat(text: str = "hi", **parameters: Any) -> InvokeRequest:
    return InvokeRequest(
        id="req-1",
        kind="chat",
        model=parameters.pop("model", "m"),
        messages=parameters.pop("messages", None) or [{"role": "user", "content": text}],
        parameters=parameters,
    )


async def collect(events: AsyncIterator[BackendEvent]) -> list[BackendEvent]:
    return [event async for event in events]


def group_alive(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group ``pgid``."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            alive.append(int(entry.name))
    return alive


def have(binary: str) -> bool:
    return shutil.which(binary) is not None
