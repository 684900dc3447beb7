"""One load process for a machine without ``wrk``: ``CONNECTIONS`` clients posting the body in
``BODY_FILE`` back to back for ``SECONDS`` once a line arrives on stdin.

    python -m benchmarks.load_process URL HEADERS_JSON CONNECTIONS SECONDS BODY_FILE

Prints ``ready`` once connected, then ``{"requests": N}`` at the end; any answer that is not
a 200 ends it with a non-zero exit. The answers' bytes are checked by the caller, by sampling.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp


async def run(url: str, headers: dict[str, str], connections: int, seconds: float,
              body: bytes) -> int:  # fmt: skip
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def once() -> None:
            async with http.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}")

        await asyncio.gather(*(once() for _ in range(connections)))  # connect before the clock
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        count = 0
        stop_at = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal count
            while time.perf_counter() < stop_at:
                await once()
                count += 1

        await asyncio.gather(*(client() for _ in range(connections)))
        return count


def main() -> None:
    url, headers, connections, seconds, body_file = sys.argv[1:6]
    count = asyncio.run(run(url, json.loads(headers), int(connections), float(seconds),
                            Path(body_file).read_bytes()))  # fmt: skip
    print(json.dumps({"requests": count}), flush=True)


if __name__ == "__main__":
    main()
