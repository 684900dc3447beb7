"""Structured output through the real agent CLIs (installed from npm into tests/agent_clis)
against the mock model API: the answer is checked against the schema, repaired once, and
reaches the official ``openai`` and ``ollama`` clients as valid JSON. Skipped with the reason
when node or npm is missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcp_local_provider.agent import Backend, BackendError, Finish, TextDelta
from mcp_local_provider.agent.backends import create
from tests import real_clis
from tests.clis import chat, collect
from tests.conftest import StartDaemon
from tests.model_api import ModelApi, Reply

pytestmark = pytest.mark.usefixtures("agent_clis")

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "celsius": {"type": "number"}},
    "required": ["city", "celsius"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "weather", "schema": SCHEMA}}
GOOD = {"city": "Tokyo", "celsius": 24}


def answer(name: str, value: dict[str, Any], fenced: bool = False) -> Reply:
    """The model answering ``value``: through Claude Code's StructuredOutput tool (its own JSON
    mode, which the backend uses), as text for the other CLIs (in a code fence if ``fenced``)."""
    if name == "claude":
        return Reply(tool_call=("StructuredOutput", value))
    body = json.dumps(value)
    return Reply.text(f"```json\n{body}\n```" if fenced else body, pieces=3)


def cli(name: str, api: ModelApi, root: Path) -> Backend:
    return create(name, settings=real_clis.settings(name, api, root / "home"))


def text(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.mark.parametrize("name", real_clis.NAMES)
async def test_an_answer_matching_the_schema_arrives_as_bare_json(
    name: str, model_api: ModelApi, tmp_path: Path
) -> None:
    model_api.default = answer(name, GOOD, fenced=True)
    events = await collect(
        cli(name, model_api, tmp_path).serve(chat("Weather?", response_format=FORMAT))
    )
    assert json.loads(text(events)) == GOOD
    assert isinstance(events[-1], Finish) and events[-1].reason == "stop"
    (seen,) = model_api.answering()
    assert '\\"required\\": [\\"city\\", \\"celsius\\"]' in json.dumps(seen.body)  # schema asked
    if name == "claude":  # natively: the schema is the StructuredOutput tool's
        assert "StructuredOutput" in seen.tool_names()


@pytest.mark.parametrize("name", real_clis.NAMES)
async def test_an_answer_breaking_the_schema_gets_one_repair_round(
    name: str, model_api: ModelApi, tmp_path: Path
) -> None:
    model_api.script(answer(name, {"city": "Tokyo"}), answer(name, GOOD))
    events = await collect(
        cli(name, model_api, tmp_path).serve(chat("Weather?", response_format=FORMAT))
    )
    assert json.loads(text(events)) == GOOD
    first, second = model_api.answering()
    # Claude Code checks the StructuredOutput input itself and ends its one turn without a
    # result; the other CLIs' answers are checked by the backend, which names the problem.
    problem = "<correction>" if name == "claude" else "'celsius' is a required property"
    assert problem in json.dumps(second.body)
    assert problem not in json.dumps(first.body)


async def test_two_answers_that_are_not_json_are_a_clear_error(
    model_api: ModelApi, tmp_path: Path
) -> None:
    model_api.default = Reply.text("It is sunny.")
    request = chat("Weather?", response_format={"type": "json_object"})
    with pytest.raises(BackendError) as raised:
        await collect(cli("claude", model_api, tmp_path).serve(request))
    assert "even after a repair round: it is not JSON" in raised.value.message
    assert len(model_api.answering()) == 2


async def test_openai_and_ollama_clients_get_schema_valid_json_from_a_cli(
    model_api: ModelApi,
    tmp_path: Path,
    start_daemon: StartDaemon,
    openai_client: Any,
    ollama_client: Any,
) -> None:
    daemon = await start_daemon(first_chunk_timeout=30, idle_timeout=30, total_timeout=60)
    model_api.default = answer("claude", GOOD)
    agent = cli("claude", model_api, tmp_path)
    await daemon.start_agent(agent)
    model = agent.models()[0].name
    ask = [{"role": "user", "content": "Weather in Tokyo?"}]
    reply = await openai_client(daemon).chat.completions.create(
        model=model, messages=ask, response_format=FORMAT
    )
    assert json.loads(reply.choices[0].message.content or "") == GOOD
    answered = await ollama_client(daemon).chat(
        model=model, messages=ask, format=SCHEMA, stream=False
    )
    assert json.loads(answered.message.content or "") == GOOD
    await agent.close()
