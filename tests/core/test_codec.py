"""The daemon's JSON codec: compact output, and text UTF-8 cannot hold still encodes."""

from __future__ import annotations

import json

from mcp_local_provider.core.codec import dumps, dumps_bytes


def test_output_is_compact_json_that_reads_back_the_same() -> None:
    value = {"model": "coder", "choices": [{"delta": {"content": "héllo\n"}}], "n": 1.5}
    assert dumps(value) == '{"model":"coder","choices":[{"delta":{"content":"héllo\\n"}}],"n":1.5}'
    assert json.loads(dumps_bytes(value)) == value


def test_a_lone_surrogate_is_escaped_instead_of_failing() -> None:
    # A header or URL with bytes that are not UTF-8 decodes to lone surrogates in Python; an
    # error message quoting one must still leave as JSON.
    value = {"error": {"message": "no session 'sess-\udcff'"}}
    assert json.loads(dumps(value)) == value
    assert json.loads(dumps_bytes(value)) == value
