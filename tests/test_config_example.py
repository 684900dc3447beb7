"""The example config at the repo root lists every setting with its default."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from mcp_local_provider.config import Config

EXAMPLE = Path(__file__).resolve().parent.parent / "mcp-local-provider.toml"


def test_every_setting_is_in_the_example_with_its_default() -> None:
    text = EXAMPLE.read_text()
    values = tomllib.loads(text)
    for name, field in Config.model_fields.items():
        assert re.search(rf"^(# )?{name} = ", text, re.MULTILINE), f"{name} is not in the example"
        if name in values:
            default = field.get_default(call_default_factory=True)
            shown = values[name]
            if isinstance(default, tuple):
                default = list(default)
            assert shown == default, (name, shown, default)
    assert Config.model_validate(values)
