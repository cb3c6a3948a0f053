"""The raw baseline for event -> dispatch latency: the same hops with no Baton in them.

    python -m benchmarks.rawpath REDIS_URL STREAM SINK_URL

A bare consumer reads the stream in a consumer group (XREADGROUP BLOCK), POSTs each
entry's `sent` time to the sink with aiohttp and XACKs it: one read, one call, one ack,
on uvloop, in its own process, as Baton's worker is. Whatever latency this path has on
the machine (process wake-ups, loopback, the sink), Baton's figure has too; the
difference between the two is what Baton adds.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import aiohttp
import redis.asyncio as redis


async def main(url: str, stream: str, sink: str) -> None:
    client = redis.Redis.from_url(url)
    await client.xgroup_create(stream, "raw", id="0", mkstream=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            reply = await client.xreadgroup("raw", "c", {stream: ">"}, count=100, block=200)
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    sent = json.loads(fields[b"e"])["sent"]
                    body = json.dumps({"sent": sent}).encode()
                    async with session.post(sink, data=body) as response:
                        await response.read()
                    await client.xack(stream, "raw", entry_id)
    await client.aclose()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(*sys.argv[1:4]))
