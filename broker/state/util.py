"""Small pieces every Redis-side module uses: loading a Lua script, decoding a reply."""

from __future__ import annotations

from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


def script(redis: Redis, name: str, *libs: str) -> AsyncScript:
    """`lua/<name>.lua` after the `lua/lib/<lib>.lua` it uses, registered on `redis`
    (EVALSHA, loaded again if flushed). Redis scripts cannot include each other."""
    folder = resources.files("broker.state").joinpath("lua")
    parts = [folder.joinpath(f"lib/{lib}.lua").read_text() for lib in libs]
    return redis.register_script("".join([*parts, folder.joinpath(f"{name}.lua").read_text()]))


def text(value: bytes | str) -> str:
    """A Redis reply item as text, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else value


def text_fields(raw: dict[bytes, bytes]) -> dict[str, str]:
    """A stream entry's fields (or any hash reply) as text."""
    return {text(k): text(v) for k, v in raw.items()}


def flat_fields(flat: list[Any]) -> dict[str, str]:
    """Fields given flat, [field, value, ...] (a raw reply: HGETALL's from a script,
    a stream entry's), as text."""
    pairs = iter(flat)
    return {text(k): text(v) for k, v in zip(pairs, pairs, strict=True)}
