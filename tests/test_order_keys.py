"""Order keys sort events by when they occurred, then by arrival, in the Lua that
compares them (lua/lib/kept.lua), whichever layout wrote them: this Baton's compact one
or an earlier Baton's ISO text with a zero-padded arrival."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from importlib import resources

from redis.asyncio import Redis

from broker.core.events import Event
from broker.matching.matcher import order_key

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LATER = (
    resources.files("broker.state").joinpath("lua/lib/kept.lua").read_text()
    + """
local out = {}
for i = 1, #ARGV, 2 do out[#out + 1] = later(ARGV[i], ARGV[i + 1]) and 1 or 0 end
return out
"""
)


def legacy_key(occurred: datetime, stream_id: str) -> str:
    """The order key as an earlier Baton wrote it."""
    when = occurred.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    ms, _, seq = stream_id.partition("-")
    return f"{when}|{int(ms):015d}-{int(seq):010d}"


def sample(rng: random.Random) -> tuple[datetime, str]:
    """When an event occurred and its stream id: often as it arrived (to the ms), often
    close to another, sometimes long ago (before 1970 too) or far ahead."""
    ms = rng.choice([1_796_652_397_991, 1_796_652_397_992, rng.randrange(0, 2**42)])
    arrived = EPOCH + timedelta(milliseconds=ms)
    occurred = rng.choice([
        arrived,
        arrived + timedelta(microseconds=rng.choice([-1, 1, 999, 1000])),
        datetime(1900, 3, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(10**9)),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
    ])  # fmt: skip
    return occurred, f"{ms}-{rng.choice([0, 1, 2, 10**9])}"


def sort_key(occurred: datetime, stream_id: str) -> tuple[datetime, int, int]:
    ms, _, seq = stream_id.partition("-")
    return occurred, int(ms), int(seq)


def key(occurred: datetime, stream_id: str) -> str:
    return order_key(Event(dataset="d", occurred_at=occurred), stream_id)


async def test_order_keys_of_either_layout_sort_as_their_times_and_arrivals(
    redis_url: str,
) -> None:
    rng = random.Random(14)
    pairs = [(sample(rng), sample(rng)) for _ in range(3000)]
    pairs += [(a, a) for a, _ in pairs[:50]]  # the same event: not later than itself
    args, expected = [], []
    for a, b in pairs:
        make_a, make_b = rng.choice([(key, key), (key, legacy_key), (legacy_key, key)])
        args += [make_a(*a), make_b(*b)]
        expected.append(int(sort_key(*a) > sort_key(*b)))
    redis = Redis.from_url(redis_url)
    try:
        got = await redis.eval(LATER, 0, *args)
    finally:
        await redis.aclose()
    answers = zip(got, expected, strict=True)
    wrong = [(args[2 * i], args[2 * i + 1]) for i, (g, e) in enumerate(answers) if g != e]
    assert not wrong, f"{len(wrong)} of {len(pairs)} compared wrong, e.g. {wrong[:3]}"
    assert 0 < sum(expected) < len(pairs)  # both answers were asked for


def test_an_event_that_occurred_as_it_arrived_keeps_only_its_arrival() -> None:
    arrived = EPOCH + timedelta(milliseconds=1_796_652_397_991)
    assert key(arrived, "1796652397991-150") == "|1796652397991-150"
    assert key(arrived + timedelta(microseconds=5), "1796652397991-0") == (
        "1796652397.991005|1796652397991-0"
    )
    assert key(datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC), "7-1") == "-1.500000|7-1"
