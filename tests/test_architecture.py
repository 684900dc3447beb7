"""The layout's rules, checked: the layering contracts, imports at module level, and one module
that builds every agent-protocol frame (see docs/architecture.md)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mcp_local_provider"
#: Modules allowed an import inside a function, and why.
LATE_IMPORTS = {
    "cli/main.py": "each command's module is imported when it runs (start-up speed)",
    "cli/mcp.py": "the MCP SDK is an optional extra",
}
FRAME_TYPES = {
    "hello",
    "session_pending",
    "session_granted",
    "session_denied",
    "session_ended",
    "model_invoke",
    "model_cancel",
    "model_result",
    "model_stream_chunk",
}  # not "error": HTTP dialects have error bodies of that type too


def modules(*roots: Path) -> Iterator[tuple[str, ast.Module]]:
    for root in roots or (PACKAGE,):
        for path in sorted(root.rglob("*.py")):
            yield path.relative_to(root).as_posix(), ast.parse(path.read_text(), str(path))


def test_the_import_contracts_in_pyproject_hold() -> None:
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    assert code == 0, "an import breaks a layering contract: run lint-imports to see which"


def _late_imports(tree: ast.Module) -> Iterator[int]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    yield inner.lineno


def test_imports_are_at_module_level_except_where_documented() -> None:
    found = {
        f"{name}:{line}"
        for name, tree in modules()
        if name not in LATE_IMPORTS
        for line in _late_imports(tree)
    }
    assert not found, f"imports inside functions: {sorted(found)}"


def test_the_documented_late_imports_still_exist() -> None:
    late = {name for name, tree in modules() if any(_late_imports(tree))}
    assert late == set(LATE_IMPORTS)


def _frame_literals(tree: ast.Module) -> Iterator[int]:
    for node in ast.walk(tree):
        if not isinstance(node, ast.Dict):
            continue
        for key, value in zip(node.keys, node.values, strict=True):
            if (
                isinstance(key, ast.Constant)
                and key.value == "type"
                and isinstance(value, ast.Constant)
                and value.value in FRAME_TYPES
            ):
                yield node.lineno


def test_only_the_protocol_module_builds_frames() -> None:
    found = {
        f"{name}:{line}"
        for name, tree in modules(PACKAGE, ROOT / "benchmarks")
        if name != "core/protocol.py"
        for line in _frame_literals(tree)
    }
    assert not found, f"frame literals outside core/protocol.py: {sorted(found)}"
