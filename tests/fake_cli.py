"""A stand-in for an agent CLI, installed by the tests first on PATH under the real name
(``claude``, ``cursor-agent``, ``gemini``, ``codex``). Standard library only.

It records each run (argv, stdin, working directory, process group) as JSON in
``$FAKE_CLI_RECORD/<pid>.json`` and replays the NDJSON lines of ``$FAKE_CLI_FIXTURE`` on stdout,
one every ``$FAKE_CLI_DELAY`` seconds. Other knobs: ``FAKE_CLI_STDERR`` (text written to
stderr), ``FAKE_CLI_EXIT`` (exit code), ``FAKE_CLI_CHILD=1`` (start a long-lived child in the
same process group), ``FAKE_CLI_IGNORE_SIGINT=1`` (only SIGKILL stops it), ``FAKE_CLI_HANG=1``
(stay silent after the fixture instead of exiting).

Under the name ``codex`` it plays ``codex app-server``: it answers ``initialize``,
``thread/start`` and ``turn/start`` (``FAKE_CODEX_FAIL=<method>`` makes that call fail), then
replays the fixture's notifications, answering ``turn/start`` only after the fixture's
``turn/started`` (the real server's order can be that too); ``turn/interrupt`` ends the turn
as ``interrupted``.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ENV = os.environ
NAME = Path(sys.argv[0]).name
DELAY = float(ENV.get("FAKE_CLI_DELAY") or 0)
RECORD: dict[str, Any] = {
    "name": NAME,
    "started": time.time(),
    "argv": sys.argv[1:],
    "cwd": os.getcwd(),
    "pid": os.getpid(),
    "pgid": os.getpgid(0),
    "sid": os.getsid(0),
    "stdin_isatty": sys.stdin.isatty(),
    "stdout_isatty": sys.stdout.isatty(),
    "env": {
        k: v
        for k, v in ENV.items()
        if k.startswith(("FAKE_", "MCP_LOCAL_PROVIDER_")) or k in ("NO_COLOR", "TERM")
    },
}


def save() -> None:
    folder = ENV.get("FAKE_CLI_RECORD")
    if folder:
        path = Path(folder) / f"{os.getpid()}.json"
        path.write_text(json.dumps(RECORD))


def fixture_lines() -> list[str]:
    path = ENV.get("FAKE_CLI_FIXTURE")
    return Path(path).read_text().splitlines() if path else []


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def start() -> None:
    if ENV.get("FAKE_CLI_IGNORE_SIGINT"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if ENV.get("FAKE_CLI_CHILD"):
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"], stdin=subprocess.DEVNULL
        )
        RECORD["child"] = child.pid
    save()


def finish() -> None:
    if ENV.get("FAKE_CLI_STDERR"):
        sys.stderr.write(ENV["FAKE_CLI_STDERR"] + "\n")
        sys.stderr.flush()
    sys.exit(int(ENV.get("FAKE_CLI_EXIT") or 0))


def single_prompt() -> None:
    """claude, cursor-agent, gemini: the prompt on stdin, events on stdout, then exit."""
    RECORD["stdin"] = sys.stdin.read()
    start()
    for line in fixture_lines():
        if DELAY:
            time.sleep(DELAY)
        emit(line)
    if ENV.get("FAKE_CLI_HANG"):
        time.sleep(3600)
    finish()


def app_server() -> None:
    """codex app-server: JSON-RPC over stdio."""
    inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def read() -> None:
        for raw in sys.stdin:
            if raw.strip():
                inbox.put(json.loads(raw))
        inbox.put(None)

    threading.Thread(target=read, daemon=True).start()
    RECORD["calls"] = []
    start()
    fail = ENV.get("FAKE_CODEX_FAIL")

    def reply(message: dict[str, Any], result: dict[str, Any]) -> None:
        if message["method"] == fail:
            emit(
                json.dumps(
                    {"id": message["id"], "error": {"code": -32600, "message": f"{fail} refused"}}
                )
            )
        else:
            emit(json.dumps({"id": message["id"], "result": result}))

    def receive(timeout: float | None = None) -> dict[str, Any] | None:
        """The next message (None if none came within ``timeout``); exits when stdin ends."""
        try:
            message = inbox.get(timeout=timeout) if timeout != 0 else inbox.get_nowait()
        except queue.Empty:
            return None
        if message is None:
            finish()
        RECORD["calls"].append(message)
        save()
        return message

    turn = None
    while turn is None:
        message = receive()
        assert message is not None
        method = message.get("method")
        if method == "initialize":
            reply(message, {"userAgent": "fake-codex/0.0.0"})
        elif method == "thread/start":
            reply(message, {"thread": {"id": "thr_1"}})
        elif method == "turn/start":
            turn = message
    lines = fixture_lines()
    started = [json.loads(line) for line in lines if '"turn/started"' in line]
    turn_id = started[0]["params"]["turn"]["id"] if started else "turn_1"
    # The real server may announce the turn before it answers turn/start: so does the fake.
    answered = False

    def answer_turn() -> None:
        nonlocal answered
        answered = True
        result = {"turn": {"id": turn_id, "status": "inProgress", "items": [], "error": None}}
        reply(turn, result)

    if not started:
        answer_turn()
    for line in lines:
        message = receive(timeout=DELAY)
        if message is not None and message.get("method") == "turn/interrupt":
            RECORD["interrupted"] = True
            save()
            emit(json.dumps({"id": message["id"], "result": {}}))
            completed = {
                "threadId": "thr_1",
                "turn": {"id": turn_id, "status": "interrupted", "items": [], "error": None},
            }
            emit(json.dumps({"method": "turn/completed", "params": completed}))
            break
        emit(line)
        if not answered and '"turn/started"' in line:
            answer_turn()
    if int(ENV.get("FAKE_CLI_EXIT") or 0):
        finish()
    while True:  # like the real server: serve until stdin closes
        receive()


if __name__ == "__main__":
    if NAME == "codex":
        app_server()
    else:
        single_prompt()
