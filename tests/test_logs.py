"""Baton's log handler: the lines of one event-loop turn go out in one write, in order;
a warning, a line from another thread, or a flush writes at once."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Iterator

import pytest

from broker.cli.logs import FORMAT, Lines, TurnLines


class Writes(io.StringIO):
    """A real text stream that also keeps each write apart (a spy)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, Writes]]:
    handler = TurnLines()
    stream = Writes()
    handler.setStream(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test-turn-lines")
    logger.propagate, logger.level = False, logging.INFO
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


async def test_a_turns_lines_go_in_one_write_by_the_next_turn(
    logged: tuple[logging.Logger, Writes],
) -> None:
    logger, stream = logged
    for i in range(100):
        logger.info("dispatched %d", i)
    assert stream.writes == []  # still this turn
    await asyncio.sleep(0)
    assert len(stream.writes) == 1
    assert stream.getvalue().splitlines() == [f"INFO dispatched {i}" for i in range(100)]
    logger.info("the next turn's")
    await asyncio.sleep(0)
    assert stream.writes[1:] == ["INFO the next turn's\n"]


async def test_a_warning_goes_at_once_after_the_lines_before_it(
    logged: tuple[logging.Logger, Writes],
) -> None:
    logger, stream = logged
    logger.info("first")
    logger.warning("then this")
    assert stream.getvalue().splitlines() == ["INFO first", "WARNING then this"]
    await asyncio.sleep(0)
    assert len(stream.writes) == 1  # nothing was left to write at the turn's end


async def test_a_line_from_another_thread_or_a_flush_goes_at_once(
    logged: tuple[logging.Logger, Writes],
) -> None:
    logger, stream = logged
    logger.info("on the loop")
    thread = threading.Thread(target=logger.info, args=("from a thread",))
    thread.start()
    thread.join()
    assert stream.getvalue().splitlines() == ["INFO on the loop", "INFO from a thread"]
    logger.info("waiting")
    logger.handlers[0].flush()  # as logging.shutdown() does at exit
    assert stream.getvalue().splitlines()[-1] == "INFO waiting"


def test_baton_s_format_shows_no_field_it_no_longer_gathers() -> None:
    shown = {"%(process", "%(thread", "%(filename", "%(lineno", "%(funcName", "%(module"}
    assert not [field for field in shown if field in FORMAT]


def test_a_line_says_its_time_as_logging_itself_writes_it() -> None:
    """The time's text is made once a second: each line's is still its own."""
    ours, theirs = Lines(), logging.Formatter(FORMAT)
    for created in (1_800_000_000.0, 1_800_000_000.25, 1_800_000_000.999, 1_800_000_001.5,
                    1_799_999_999.001, 1_800_086_400.0):  # fmt: skip
        record = logging.makeLogRecord({"msg": "m", "levelname": "INFO", "name": "baton"})
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.format(record) == theirs.format(record), created
