"""What the names agents and editors send may look like: agent ids, model names, scopes, and
untrusted text made safe to show. No I/O."""

from __future__ import annotations

import re

# Ids and labels an agent claims are untrusted: keep them short and printable.
AGENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")
# Model names may hold single "/" separators (namespace/model) but nothing path-like:
# no "..", no "//", no leading or trailing "/".
MODEL_NAME_PATTERN = re.compile(r"^(?!.*\.\.)(?!.*//)[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,199}(?<!/)$")
SCOPE_PATTERN = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")


def printable(text: str) -> str:
    """Untrusted text made safe for a terminal or a log: control and format characters
    (newlines, escape codes, bidi overrides) are shown as escapes."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
