"""Commands packed by hiredis are the bytes redis-py packs, for every kind of argument
Baton sends, over every kind of connection its URL can name, against a real Redis."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from broker.state.packing import packed_by_hiredis

ARGS = [
    ("EVALSHA", "a" * 40, 2, "baton:p:report:2026-11-23", b"raw\x00bytes", "é ✓", -7,
     0.1 + 0.2, 1e20, 2**70, ""),
    ("CONFIG GET", "maxmemory"),  # a subcommand in the name goes as its own argument
    (b"CLIENT SETNAME", b"worker"),
    ("XADD", "baton:events", "*", "e", '{"dataset": "x", "partition": "2026"}'),
]  # fmt: skip


@pytest.mark.parametrize("args", ARGS, ids=[str(a[0]) for a in ARGS])
def test_hiredis_packs_what_redis_py_packs(args: tuple[object, ...]) -> None:
    client = packed_by_hiredis(Redis())
    ours = client.connection_pool.connection_class()
    assert b"".join(ours.pack_command(*args)) == b"".join(Connection().pack_command(*args))


@pytest.mark.parametrize(
    ("url", "base"),
    [("redis://localhost:1", Connection), ("rediss://localhost:1", SSLConnection),
     ("unix:///tmp/nowhere.sock", UnixDomainSocketConnection)],
)  # fmt: skip
def test_the_connection_the_url_names_is_kept(url: str, base: type) -> None:
    pool = packed_by_hiredis(Redis.from_url(url)).connection_pool
    assert issubclass(pool.connection_class, base)


async def test_a_real_redis_answers_and_what_neither_packs_is_a_data_error(
    redis_url: str,
) -> None:
    client = packed_by_hiredis(Redis.from_url(redis_url))
    try:
        await client.set("packing:k", "é ✓")
        assert await client.get("packing:k") == "é ✓".encode()
        async with client.pipeline(transaction=False) as pipe:
            pipe.hset("packing:h", mapping={"a": 1, "b": 2.5})
            pipe.hgetall("packing:h")
            assert (await pipe.execute())[1] == {b"a": b"1", b"b": b"2.5"}
        for bad in (None, True):
            with pytest.raises(DataError):
                await client.set("packing:bad", bad)  # type: ignore[arg-type]
        assert await client.ping()  # the connection is still good
    finally:
        await client.delete("packing:k", "packing:h")
        await client.aclose()
