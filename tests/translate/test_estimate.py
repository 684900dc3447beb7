"""The offline token estimate: never below what real tokenizers count, pure and exact.

The reference counts are the largest of five tokenizers (cl100k_base, o200k_base, Llama 3,
Qwen 3 and a reconstruction of Claude's), measured with ``benchmarks/token_estimate.py``'s
packages; see docs/dialects.md for the full sample.
"""

from __future__ import annotations

import math

import pytest

from mcp_local_provider.translate.estimate import (
    MARGIN,
    PER_IMAGE,
    PER_MESSAGE,
    PER_PROMPT,
    payload_tokens,
    text_tokens,
)

BASE64 = (
    "9bFlIkpYt5HfavHYMD5hzcS7hsPRxCcQPDRMQYnrDGzJ8X3Cq1LW0vO6mE2bNaUuTkRgSiV4yZf7eAhdWpo+KsQ/"
    "xj1Ilr9nc0bHt2mVwZyGa5u3ePqB"
)


@pytest.mark.parametrize(
    ("text", "largest_reference"),
    [
        ("The daemon listens on the loopback address only and relays each request to an "
         "approved agent.", 19),
        ('def payload(self, target: str | None = None) -> dict[str, Any]:\n        return '
         '{"kind": "chat", "model": target or self.model}\n', 38),
        ('{"type":"object","properties":{"city":{"type":"string","description":"City name"}},'
         '"required":["city"]}', 24),
        ("2026-12-03 10:32:23 1234567890 3.14159", 38),
        ("Die Konfiguration wird beim Start einmal geladen. Jede Einstellung hat einen "
         "Standardwert, der in der Datei überschrieben werden kann; Umgebungsvariablen haben "
         "Vorrang vor der Datei, und Befe", 56),
        ("Release notes 🎉🚀: faster streams ⚡, fewer hangs 🐛➡️✅, clearer errors 💬. "
         "Thanks to everyone 🙏👩‍💻👨‍💻 who tested the betas 🧪🧪🧪!", 66),
    ],
)  # fmt: skip
def test_text_is_never_counted_below_real_tokenizers(text: str, largest_reference: int) -> None:
    assert math.ceil(text_tokens(text) * MARGIN) >= largest_reference


def test_every_digit_counts_as_a_token() -> None:
    assert text_tokens("1234567890") == 10


def test_opaque_strings_cost_most_of_a_token_per_character() -> None:
    assert text_tokens(BASE64) == math.ceil(len(BASE64) / 1.25)


def test_a_payload_counts_template_messages_tools_and_images() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}}
    payload = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [image, {"type": "text", "text": "what is it"}]},
        ],
        "parameters": {"tools": tools},
    }
    body = text_tokens("be brief") + PER_IMAGE + text_tokens("what is it")
    tool_json = text_tokens('[{"type":"function","function":{"name":"f","parameters":{}}}]')
    expected = math.ceil((PER_PROMPT + 2 * PER_MESSAGE + body + tool_json) * MARGIN)
    assert payload_tokens(payload) == expected
