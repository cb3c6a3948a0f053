"""A polling duty looks every BUSY_S while it finds work or has some to watch, and backs
off to IDLE_S while it finds none (followup/duties.py)."""

from __future__ import annotations

from broker.followup.duties import BUSY_S, IDLE_S, polling


async def test_a_duty_that_finds_nothing_backs_off_and_one_that_finds_work_looks_again_soon() -> (
    None
):
    found = [0, 0, 0, 0, 0, 3, 0, 0]
    watched = [False] * 8
    rests = []

    async def round_() -> int:
        return found[len(rests)]

    timed = polling(round_, lambda: watched[len(rests)])
    for _ in range(6):
        rests.append(await timed())
    assert rests == [2 * BUSY_S, 4 * BUSY_S, IDLE_S, IDLE_S, IDLE_S, BUSY_S]
    watched[6] = True  # nothing found, but something to watch (a deadline on the clock)
    rests.append(await timed())
    rests.append(await timed())  # and nothing again: backing off from BUSY_S
    assert rests[6:] == [BUSY_S, 2 * BUSY_S]
