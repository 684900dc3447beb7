"""The command line's options: the same spelling on every command, and the README's command
table listing each of them."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from mcp_local_provider.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = [
    ["serve"],
    ["sessions", "list"],
    ["sessions", "approve", "sess-x"],
    ["status"],
    ["agent"],
    ["mcp"],
    ["usage"],
    ["ui"],
]


@pytest.mark.parametrize(
    ("argv", "flag"),
    [(argv, "--config") for argv in COMMANDS] + [(["mcp"], "--config-file")],
    ids=lambda v: " ".join(v[:2]) if isinstance(v, list) else v,
)
def test_every_command_takes_its_config_file_as_config(argv: list[str], flag: str) -> None:
    args = build_parser().parse_args([*argv[:2], flag, "my.toml", *argv[2:]])
    assert args.config == Path("my.toml")


def test_the_top_level_help_names_every_api() -> None:
    description = build_parser().description or ""
    for api in ("OpenAI", "Anthropic", "Ollama"):
        assert api in description


def _subparser(parser: argparse.ArgumentParser, path: list[str]) -> argparse.ArgumentParser:
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _readme_row(command: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Commands", 1)[1].split("\n## ", 1)[0]
    rows = [
        line for line in section.splitlines() if line.startswith(f"| `mcp-local-provider {command}")
    ]
    assert len(rows) == 1, f"the README's command table has no single row for {command}"
    return rows[0]


@pytest.mark.parametrize(
    "path",
    [["serve"], ["sessions", "list"], ["status"], ["agent"], ["mcp"], ["usage"], ["ui"]],
    ids=str,
)
def test_the_readme_command_table_lists_every_option(path: list[str]) -> None:
    parser = _subparser(build_parser(), path)
    row = _readme_row(path[0])
    listed = set(re.findall(r"--[a-z][a-z-]*", row))
    options = {
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }
    assert options <= listed, f"missing from the README: {sorted(options - listed)}"
