"""How the offline token estimate compares with real tokenizers: ``python
benchmarks/token_estimate.py``.

Builds a sample of realistic prompts (long system prompts, source files, tool definitions,
shell output as tool results, JSON, numbers, several languages, base64), turns each into the
payload an agent receives (through the Anthropic Messages translation), and counts it with the
daemon's estimate and with real tokenizers shipped inside PyPI packages (no download at run
time): ``quicktok-v1`` (cl100k_base, o200k_base, Llama 3, Qwen 3) and ``anthropic-tokenizer``
(an unofficial reconstruction of Claude's). Install them first:

    pip install quicktok-v1 anthropic-tokenizer

The reference count of a payload is each message's role and text, its tool calls, the tool
definitions as JSON, and 4 tokens of template per message; the estimate must never be below
the largest reference count. Prints one line per sample and a summary.
"""

from __future__ import annotations

import base64
import json
import random
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anthropic_tokenizer
import quicktok

from mcp_local_provider.core.codec import dumps
from mcp_local_provider.core.config import Config
from mcp_local_provider.core.protocol import InvokePayload
from mcp_local_provider.translate.anthropic.request import MessagesRequest
from mcp_local_provider.translate.estimate import payload_tokens

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mcp_local_provider"

MULTILINGUAL = {
    "german": "Die Konfiguration wird beim Start einmal geladen. Jede Einstellung hat einen "
    "Standardwert, der in der Datei überschrieben werden kann; Umgebungsvariablen haben Vorrang "
    "vor der Datei, und Befehlszeilenoptionen haben Vorrang vor beiden. Fehlerhafte Werte werden "
    "mit einer Meldung abgelehnt, die den Schlüssel, den Wert und die erlaubten Werte nennt.",
    "french": "Le démon écoute uniquement sur l'adresse de bouclage. Chaque requête est "
    "transmise à un agent approuvé, qui répond par morceaux ; si le client se déconnecte, "
    "l'agent reçoit une annulation et libère sa place. Les erreurs ont toujours la forme "
    "attendue par le client, jamais une trace de pile.",
    "russian": "Демон принимает запросы только с локального адреса. Каждый запрос передаётся "
    "одобренному агенту, который отвечает по частям; если клиент отключается, агент получает "
    "отмену и освобождает место. Ошибки всегда имеют ожидаемую клиентом форму.",
    "japanese": "デーモンはループバックアドレスでのみ待ち受けます。各リクエストは承認された"
    "エージェントに転送され、エージェントは少しずつ応答します。クライアントが切断すると、"
    "エージェントはキャンセルを受け取り、枠を解放します。エラーは常にクライアントが期待する"
    "形式で返されます。",
    "chinese": "守护进程只在回环地址上监听。每个请求都会转发给已批准的代理，代理分块作答；"
    "如果客户端断开连接，代理会收到取消通知并释放名额。错误总是以客户端期望的格式返回，"
    "从不返回堆栈跟踪。",
    "korean": "데몬은 루프백 주소에서만 요청을 받습니다. 각 요청은 승인된 에이전트에게 전달되며, "
    "에이전트는 조각으로 응답합니다. 클라이언트 연결이 끊기면 에이전트는 취소를 받고 자리를 "
    "비웁니다.",
    "arabic": "يستمع البرنامج الخفي على عنوان الاسترجاع فقط. يتم تمرير كل طلب إلى وكيل معتمد، "
    "والذي يجيب على أجزاء؛ إذا انقطع اتصال العميل، يتلقى الوكيل إلغاءً ويحرر مكانه.",
    "emoji": "Release notes 🎉🚀: faster streams ⚡, fewer hangs 🐛➡️✅, clearer errors 💬. "
    "Thanks to everyone 🙏👩‍💻👨‍💻 who tested the betas 🧪🧪🧪!",
}


def text_of(path: Path, limit: int = 60_000) -> str:
    return path.read_text(encoding="utf-8")[:limit]


def shell(*args: str) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False)
    except OSError:
        return ""
    return done.stdout[:40_000]


def tools_from_schemas() -> list[dict[str, Any]]:
    """Tool definitions as large as Claude Code's: JSON schemas of real pydantic models."""
    schema = Config.model_json_schema()
    tools = [
        {
            "name": "Configure",
            "description": "Change the daemon's settings.",
            "input_schema": schema,
        }
    ]
    for name, field in list(schema["properties"].items())[:20]:
        tools.append(
            {
                "name": f"set_{name}",
                "description": str(field.get("description") or name),
                "input_schema": {"type": "object", "properties": {"value": field}},
            }
        )
    return tools


def samples() -> list[tuple[str, InvokePayload]]:
    rng = random.Random(7)
    docs = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
    code = sorted(PACKAGE.rglob("*.py"), key=lambda p: -p.stat().st_size)[:12]
    tests = sorted((ROOT / "tests").rglob("test_*.py"), key=lambda p: -p.stat().st_size)[:4]
    out: list[tuple[str, dict[str, Any]]] = []
    for doc in docs:
        out.append((f"system:{doc.name}", {"system": text_of(doc), "messages": "Summarise."}))
    for source in code + tests:
        out.append((f"code:{source.name}", {"messages": "Review this:\n\n" + text_of(source)}))
    out.append(
        (
            "tools:claude-code-like",
            {"system": text_of(ROOT / "README.md", 7000), "messages": "hi",
             "tools": tools_from_schemas()},
        )
    )  # fmt: skip
    for name, args in (
        ("git-log", ("git", "-C", str(ROOT), "log", "--stat", "-n", "40")),
        ("ls-usr-lib", ("ls", "-la", "/usr/lib")),
        ("ps", ("ps", "aux")),
        ("pip-list", (sys.executable, "-m", "pip", "list")),
    ):
        output = shell(*args)
        if output:
            out.append((f"tool-result:{name}", {"tool_result": output}))
    config_json = json.dumps(Config.model_json_schema(), indent=2)
    out.append(("json:config-schema", {"messages": config_json}))
    rows = [",".join(f"{rng.uniform(-1e4, 1e4):.4f}" for _ in range(8)) for _ in range(300)]
    out.append(("numbers:csv", {"messages": "a,b,c,d,e,f,g,h\n" + "\n".join(rows)}))
    out.append(
        ("numbers:ids", {"messages": " ".join(str(rng.randrange(10**12)) for _ in range(800))})
    )
    blob = base64.b64encode(rng.randbytes(12_000)).decode()
    out.append(("base64", {"messages": "Decode this:\n" + blob}))
    hashes = "\n".join(f"{rng.getrandbits(256):064x}  file{i}.txt" for i in range(200))
    out.append(("hex-hashes", {"messages": hashes}))
    for language, text in MULTILINGUAL.items():
        out.append((f"lang:{language}", {"messages": (text + "\n") * 8}))
    return [(name, request_body(parts)) for name, parts in out]


def request_body(parts: dict[str, Any]) -> InvokePayload:
    messages: list[dict[str, Any]] = []
    if "messages" in parts:
        messages.append({"role": "user", "content": parts["messages"]})
    if "tool_result" in parts:
        messages += [
            {"role": "user", "content": "Run it."},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "run"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": parts["tool_result"]}]},
        ]  # fmt: skip
    body: dict[str, Any] = {"model": "m", "max_tokens": 1000, "messages": messages}
    if "system" in parts:
        body["system"] = parts["system"]
    if "tools" in parts:
        body["tools"] = parts["tools"]
    return MessagesRequest.model_validate(body).payload()


def reference(count: Callable[[str], int], payload: Mapping[str, Any]) -> int:
    total = 3
    for message in payload["messages"]:
        content = message.get("content")
        text = content if isinstance(content, str) else dumps(content)
        total += 4 + count(message["role"]) + count(text)
        if message.get("tool_calls"):
            total += count(dumps(message["tool_calls"]))
    tools = payload["parameters"].get("tools")
    if tools:
        total += count(dumps(tools))
    return total


def main() -> None:
    counters: dict[str, Callable[[str], int]] = {
        name: (lambda enc: lambda text: len(enc.encode(text)))(quicktok.get_encoding(name))
        for name in ("cl100k_base", "o200k_base", "llama3", "qwen3")
    }
    counters["claude"] = anthropic_tokenizer.count_tokens
    ratios: list[float] = []
    print(f"{'sample':34} {'estimate':>8} " + " ".join(f"{n:>11}" for n in counters) + "  ratio")
    for name, payload in samples():
        estimate = payload_tokens(payload)
        counts = {n: reference(c, payload) for n, c in counters.items()}
        ratio = estimate / max(counts.values())
        ratios.append(ratio)
        flag = "  UNDER" if ratio < 1 else ""
        print(
            f"{name:34} {estimate:8} " + " ".join(f"{counts[n]:11}" for n in counters)
            + f"  {ratio:.2f}{flag}"
        )  # fmt: skip
    print(
        f"\n{len(ratios)} samples; estimate / largest reference count: min {min(ratios):.2f}, "
        f"median {statistics.median(ratios):.2f}, max {max(ratios):.2f}; "
        f"under: {sum(r < 1 for r in ratios)}"
    )


if __name__ == "__main__":
    main()
