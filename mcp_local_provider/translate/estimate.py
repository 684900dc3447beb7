"""A token count that errs high, computed offline from the payload an agent receives. No I/O.

The agent behind the daemon may be any model, with any tokenizer, so no single tokenizer is
right; what a client such as Claude Code needs is a count that is never too low (it decides
when to compact the conversation from it). The estimate splits text the way byte-level BPE
tokenizers pre-split it (letter runs, digit runs, punctuation, whitespace, opaque strings,
other scripts), charges each piece by rules calibrated with ``benchmarks/token_estimate.py``
against five real tokenizers, and adds a margin. On that sample it is never below the largest
of the five counts and typically about half again above it (docs/dialects.md, "How tokens are
counted").
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from mcp_local_provider.core.codec import dumps

_PIECES = re.compile(
    r"(?P<opaque>(?=[A-Za-z0-9+/=]{16})(?=[A-Za-z+/=]*[0-9])(?=[a-z0-9+/=]*[A-Z])"
    r"(?=[A-Z0-9+/=]*[a-z])[A-Za-z0-9+/=]+)"
    r"|(?P<letters>[A-Za-z]+)|(?P<digits>[0-9]+)|(?P<spaces>[ \t]+)|(?P<newlines>[\r\n]+)"
    r"|(?P<punctuation>[\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]+)|(?P<other>[^\x00-\x7f]+)"
    r"|(?P<control>.)",
    re.DOTALL,
)
#: A letter run split where its case changes: ``payloadTokens`` is ``payload`` + ``Tokens``;
#: random text (base64, ids) falls apart into many short pieces, as tokenizers split it.
_SUBWORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
#: Letters per token in a long word; common words up to this length are one token.
LETTERS_PER_TOKEN = 4
#: Characters per token in an opaque string (base64, API keys, random ids).
OPAQUE_PER_TOKEN = 1.25
#: Punctuation characters per token (tokenizers merge common pairs such as ``):``).
PUNCTUATION_PER_TOKEN = 3
#: Spaces or newlines per token in a run of them (indentation, blank lines).
WHITESPACE_PER_TOKEN = 16
#: The margin over the piece count, for tokenizers that split finer than the pieces.
MARGIN = 1.15
#: Tokens a chat template adds around each message (role markers, separators).
PER_MESSAGE = 6
#: Tokens for one image: the most the common vision models charge for one (about 1,600 for
#: Claude at its largest size; images are not decoded to measure them).
PER_IMAGE = 1600
_IMAGE_PARTS = ("image_url", "input_image", "image")
#: Tokens for the template around the whole prompt and the start of the answer.
PER_PROMPT = 8


def _char_weight(char: str) -> float:
    """Tokens per character outside ASCII, by script: tokenizers trained mostly on English
    spend a token or more on each Hangul, Arabic or CJK character and on emoji."""
    code = ord(char)
    if code >= 0x10000:
        return 2.5  # emoji and rare ideographs: several byte-level tokens each
    if 0xAC00 <= code <= 0xD7A3:
        return 1.4  # Hangul syllables
    if 0x0590 <= code <= 0x08FF:
        return 1.1  # Hebrew, Arabic, Syriac, Thaana
    if code >= 0x0800:
        return 1.0  # CJK, kana and other three-byte scripts
    if code >= 0x0370:
        return 0.6  # Greek, Cyrillic: parts of words
    return 1.0  # accented Latin letters split the words they are in


def text_tokens(text: str) -> int:
    """The estimate for one piece of text, without any margin."""
    count = 0.0
    for match in _PIECES.finditer(text):
        piece, kind = match.group(), match.lastgroup
        if kind == "opaque":
            # Base64, keys, random ids mixing cases and digits: no long merges in them.
            count += math.ceil(len(piece) / OPAQUE_PER_TOKEN)
        elif kind == "letters":
            for word in _SUBWORDS.findall(piece):
                count += math.ceil(len(word) / LETTERS_PER_TOKEN)
        elif kind == "digits":
            count += len(piece)  # some tokenizers give every digit its own token
        elif kind == "spaces":
            # One space joins the next word; longer runs (indentation) are a token or so.
            count += 0 if piece == " " else math.ceil(len(piece) / WHITESPACE_PER_TOKEN)
        elif kind == "newlines":
            count += math.ceil(len(piece) / WHITESPACE_PER_TOKEN)
        elif kind == "punctuation":
            count += math.ceil(len(piece) / PUNCTUATION_PER_TOKEN)
        elif kind == "other":
            count += sum(_char_weight(c) for c in piece)
        else:
            count += 1
    return math.ceil(count)


def content_tokens(content: Any) -> int:
    """A message's content: text parts by their text, images at a flat rate, other parts by
    their JSON."""
    if content is None:
        return 0
    if isinstance(content, str):
        return text_tokens(content)
    if not isinstance(content, list):
        return text_tokens(dumps(content))
    count = 0
    for part in content:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            count += text_tokens(part["text"])
        elif isinstance(part, dict) and part.get("type") in _IMAGE_PARTS:
            count += PER_IMAGE
        else:
            count += text_tokens(dumps(part))
    return count


def payload_tokens(payload: Mapping[str, Any]) -> int:
    """The estimate for a chat payload as the agent receives it: every message's text, its
    tool calls and tool results, the tool definitions, with template overhead and margin."""
    count = PER_PROMPT
    for message in payload.get("messages") or []:
        count += PER_MESSAGE + content_tokens(message.get("content"))
        if message.get("reasoning_content"):
            count += text_tokens(str(message["reasoning_content"]))
        if message.get("tool_calls"):
            count += text_tokens(dumps(message["tool_calls"]))
    tools = (payload.get("parameters") or {}).get("tools")
    if tools:
        count += text_tokens(dumps(tools))
    return math.ceil(count * MARGIN)


def output_tokens(text: str) -> int:
    """The estimate for generated text (when the agent reports no usage)."""
    return math.ceil(text_tokens(text) * MARGIN) if text else 0
