"""A plain aiohttp server answering the benchmark's requests itself: the baseline arm, and the
mock OpenAI upstream behind the ``openai`` backend agent (and LiteLLM).

    python -m benchmarks.plain_server PORT

Prints ``ready`` on stdout once it listens on 127.0.0.1:PORT.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aiohttp import web

from .answers import completion, spec_of_messages, stream_chunk, usage


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = json.loads(await request.read())
    try:
        spec = spec_of_messages(body.get("messages"))
    except ValueError as exc:
        return web.json_response({"error": {"message": str(exc)}}, status=400)
    model = str(body.get("model"))
    if not body.get("stream"):
        return web.Response(
            body=json.dumps(completion(model, spec)).encode(), content_type="application/json"
        )
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    pace = spec.pace_ms / 1000
    started = time.monotonic()
    for index in range(spec.chunks):
        if pace and index:
            await asyncio.sleep(max(0.0, started + index * pace - time.monotonic()))
        await response.write(stream_chunk(model, {"content": spec.chunk(index)}))
    tail = stream_chunk(model, {}, "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        tail += stream_chunk(model, {}, usage_=usage(spec))
    await response.write(tail + b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def models(_: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "bench", "object": "model"}]})


async def serve(port: int) -> None:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
