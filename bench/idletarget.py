"""A keep-alive HTTP target that closes a connection idle for `idle` seconds, exactly.

For the router's idle-close race (bench/routerload.py): a dyno that closes an idle connection
just as the router sends a request on it fails that request, unless the router closed it
first. The target counts the connections it had to close itself and the longest a connection
lay idle before the router sent on it again or closed it; `python -m bench.idletarget ADDRESS
PORT IDLE STATS` writes those to STATS (JSON) when terminated.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from typing import Any

STATS: dict[str, Any] = {"requests": 0, "closed_by_target": 0, "idle_max_reused": 0.0}
STATS["idle_max_closed_by_router"] = 0.0


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, idle: float) -> None:
    last = time.monotonic()
    try:
        while True:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), idle)
            except TimeoutError:
                STATS["closed_by_target"] += 1
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                gap = time.monotonic() - last
                STATS["idle_max_closed_by_router"] = max(STATS["idle_max_closed_by_router"], gap)
                return
            STATS["idle_max_reused"] = max(STATS["idle_max_reused"], time.monotonic() - last)
            STATS["requests"] += 1
            await reader.readexactly(_length(head))
            close = b"connection: close" in head.lower()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                + (b"Connection: close\r\n" if close else b"")
                + b"\r\nok\n"
            )
            await writer.drain()
            if close:
                return
            last = time.monotonic()
    except asyncio.CancelledError:
        # The harness is ending (SIGTERM): asyncio.run cancels the open connections, and a
        # handler that ends cancelled is printed as a failed callback. Neither side closed it.
        return
    finally:
        writer.close()


def _length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


async def main(address: str, port: int, idle: float, stats: str) -> None:
    server = await asyncio.start_server(lambda r, w: serve(r, w, idle), address, port)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()
    with open(stats, "w") as out:
        json.dump(STATS, out)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]))
