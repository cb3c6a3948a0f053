"""Partition arithmetic: keys, bounds, offsets and mapping between granularities. Pure.

Keys name calendar units in the contract's timezone: hourly `2026-11-23T05`, daily
`2026-11-23`, ISO weekly `2026-W48`, monthly `2026-11`; static keys are any safe key such
as `eu` (no time, no offset); an unpartitioned dataset has the one key "". A time
partition runs from its start to the next one's start, so partitions tile time, and each
lies inside exactly one partition of every coarser granularity, in any timezone
(Asia/Kathmandu's +05:45 included: a day there is 24 of its own local hours).

Daylight saving time. A day runs from the first instant of its date to the first of the
next: 23 or 25 hours when clocks change (23.5 or 24.5 in Australia/Lord_Howe, which
shifts by 30 minutes), starting at 01:00 where midnight is skipped (America/Santiago).
An hourly key is the local wall-clock hour, and names one stretch of real time:
  - clocks go forward: a skipped hour has no key (Europe/Berlin `2026-03-29T02` is
    rejected; that day has 23 hourly keys). An hour skipped only in part keeps its key
    for what is left (Lord_Howe `2026-10-04T02` is 02:30-03:00).
  - clocks go back: the first pass through the repeated hour has the plain key, the
    second pass adds its UTC offset as ISO 8601 writes it. In Europe/Berlin
    `2026-10-25T02` is 02:00-03:00 CEST (00:00Z-01:00Z) and `2026-10-25T02+01:00` is
    02:00-03:00 CET (01:00Z-02:00Z): 25 keys that day. Lord_Howe repeats half an hour:
    `2026-04-05T01+10:30` is the second 01:30-02:00.
  Only a second pass carries an offset, and any other spelling is rejected, so an hour
  has exactly one key. In UTC (the default timezone) every key is plain.

Nesting: hourly ⊂ daily ⊂ weekly, daily ⊂ monthly; weeks and months do not nest.
`offset` counts whole partitions of the coarser of the two sides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from enum import StrEnum
from functools import lru_cache
from types import TracebackType
from zoneinfo import ZoneInfo

from broker.core.wallclock import (
    HOUR,
    TICK,
    first_reading,
    hour_end,
    hour_floor,
    hour_key,
    local_midnight,
    offset_at,
)


class Granularity(StrEnum):
    NONE = "none"
    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    STATIC = "static"


class PartitionError(ValueError):
    """A key that does not fit its granularity, or a mapping that cannot be made."""


_OFFSET = r"(?:([+-])(\d{2}):(\d{2})(?::(\d{2}))?)?"
# fullmatch with ASCII digits: "2026-11-23\n" or Arabic-Indic digits are not keys.
_FORMATS = {
    Granularity.HOURLY: (rf"(\d{{4}})-(\d{{2}})-(\d{{2}})T(\d{{2}}){_OFFSET}", "YYYY-MM-DDTHH"),
    Granularity.DAILY: (r"(\d{4})-(\d{2})-(\d{2})", "YYYY-MM-DD"),
    Granularity.WEEKLY: (r"(\d{4})-W(\d{2})", "YYYY-Www"),
    Granularity.MONTHLY: (r"(\d{4})-(\d{2})", "YYYY-MM"),
    Granularity.STATIC: (r"[A-Za-z0-9_.:+~-]{1,128}", "1-128 of A-Z a-z 0-9 _.:+~-"),
}
_PATTERNS = {g: re.compile(pattern, re.ASCII) for g, (pattern, _) in _FORMATS.items()}
_TIME = (Granularity.HOURLY, Granularity.DAILY, Granularity.WEEKLY, Granularity.MONTHLY)
# What each time granularity contains (transitively).
_CONTAINS = {
    Granularity.HOURLY: set(),
    Granularity.DAILY: {Granularity.HOURLY},
    Granularity.WEEKLY: {Granularity.HOURLY, Granularity.DAILY},
    Granularity.MONTHLY: {Granularity.HOURLY, Granularity.DAILY},
}


@dataclass(frozen=True, slots=True)
class Partition:
    granularity: Granularity
    key: str
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True, slots=True)
class Calendar:
    """A granularity in a timezone; all the arithmetic lives here. Instants it returns
    are in UTC."""

    granularity: Granularity
    tz: str = "UTC"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def is_time(self) -> bool:
        return self.granularity in _TIME

    def is_valid(self, key: str) -> bool:
        try:
            self.parse(key)
        except PartitionError:
            return False
        return True

    def parse(self, key: str) -> Partition:
        """The partition `key` names, with its bounds; raises PartitionError if it names
        none. Pure, and asked for the same keys over and over (every event of a day,
        every input of a contract): kept for the last 65,536 (calendar, key) pairs."""
        return _parse(self, key)

    def _parse(self, key: str) -> Partition:
        g = self.granularity
        if g == Granularity.NONE:
            if key:
                raise PartitionError(f"partition {key!r} given for an unpartitioned dataset")
            return Partition(g, key, None, None)
        match = _PATTERNS[g].fullmatch(key)
        if not match:
            raise PartitionError(f"partition {key!r} is not a {g} key ({_FORMATS[g][1]})")
        if g == Granularity.STATIC:
            return Partition(g, key, None, None)
        with _InRange(g, key):
            start = self._start(match.groups())
            canonical, end = self._key_at(start), self._next(start)
        if canonical == key:
            return Partition(g, key, start, end)
        if key[13:]:  # an hourly key with an offset
            raise PartitionError(
                f"partition {key!r} is not a key in {self.tz}: only the second pass through"
                f" a repeated hour has an offset (this time is {canonical!r})"
            )
        raise PartitionError(f"partition {key!r} does not exist in {self.tz}: clocks skip it")

    def _start(self, groups: tuple[str | None, ...]) -> datetime:
        """Where the partition named by `groups` starts, if it is the canonical key."""
        # (year, month, day, hour), (year, week) or (year, month); a missing part is 1
        y, m, d, h = [int(x or 1) for x in groups[:4]] + [1] * (4 - len(groups[:4]))
        g = self.granularity
        if g == Granularity.HOURLY and groups[4] is None:  # the first pass, if repeated
            return first_reading(datetime(y, m, d, h), self.zone)
        if g == Granularity.HOURLY:  # the second pass: from its last microsecond, back
            hh, mm, ss = (int(x or 0) for x in groups[5:8])
            offset = timedelta(hours=hh, minutes=mm, seconds=ss)
            at = timezone(-offset if groups[4] == "-" else offset)
            last = datetime(y, m, d, h, tzinfo=at).astimezone(UTC) + HOUR - TICK
            return hour_floor(last, self.zone)
        day = date.fromisocalendar(y, m, 1) if g == Granularity.WEEKLY else date(y, m, d)
        return local_midnight(day, self.zone)

    def _floor(self, instant: datetime) -> datetime:
        """The start of the partition holding `instant`."""
        if self.granularity == Granularity.HOURLY:
            return hour_floor(instant.astimezone(UTC), self.zone)
        day = self._day_of(instant)
        if self.granularity == Granularity.WEEKLY:
            day -= timedelta(days=day.weekday())
        elif self.granularity == Granularity.MONTHLY:
            day = day.replace(day=1)
        return local_midnight(day, self.zone)

    def _next(self, start: datetime) -> datetime:
        """The start of the following partition (the exclusive end of this one)."""
        if self.granularity == Granularity.HOURLY:
            return hour_end(start, self.zone)
        return local_midnight(self._later(self._day_of(start), 1), self.zone)

    def _later(self, day: date, n: int) -> date:
        """The first day of the day, week or month `n` after the one starting on `day`."""
        if self.granularity == Granularity.DAILY:
            return day + timedelta(days=n)
        if self.granularity == Granularity.WEEKLY:
            return day + timedelta(weeks=n)
        months = day.year * 12 + (day.month - 1) + n
        return date(months // 12, months % 12 + 1, 1)

    def _key_at(self, start: datetime) -> str:
        """The key of the partition starting at `start`."""
        if self.granularity == Granularity.HOURLY:
            return hour_key(start, self.zone)
        return self._label(self._day_of(start))

    def _day_of(self, instant: datetime) -> date:
        """The date the clocks in this calendar's timezone read at `instant`."""
        if instant.tzinfo is UTC and self.tz == "UTC":  # the default: no conversion
            return instant.date()
        return instant.astimezone(self.zone).date()

    def _label(self, day: date) -> str:
        if self.granularity == Granularity.DAILY:
            return day.isoformat()
        if self.granularity == Granularity.WEEKLY:
            year, week, _ = day.isocalendar()
            return f"{year:04d}-W{week:02d}"
        return f"{day.year:04d}-{day.month:02d}"

    def key_of(self, instant: datetime) -> str:
        """The key of the partition holding an aware instant."""
        if not self.is_time:
            raise PartitionError(f"{self.granularity} partitions have no time")
        with _InRange(self.granularity, instant):
            return self._key_at(self._floor(instant))

    def containing(self, instant: datetime) -> Partition:
        return self.parse(self.key_of(instant))

    def shift(self, key: str, n: int) -> str:
        """The key `n` partitions after `key` (before it when `n` is negative)."""
        part = self.parse(key)
        if n == 0:
            return key
        if part.start is None:
            raise PartitionError(f"{self.granularity} partitions cannot be offset")
        with _InRange(self.granularity, f"{key} {n:+d}"):
            return self._shifted(part.start, n)

    def _shifted(self, start: datetime, n: int) -> str:
        if self.granularity != Granularity.HOURLY:  # by the calendar, when it has no holes
            moved = self._later(start.astimezone(self.zone).date(), n)
            there = local_midnight(moved, self.zone)
            key = self._key_at(self._floor(there))
            jump = abs(offset_at(there, self.zone) - offset_at(start, self.zone))
            if key == self._label(moved) and jump < timedelta(days=1):
                return key
        # Hours are not all 60 minutes long, and a zone may skip a whole date (Pacific/Apia,
        # 2011-12-30): count partitions one by one.
        for _ in range(abs(n)):
            start = self._next(start) if n > 0 else self._floor(start - TICK)
        return self._key_at(start)

    def keys_between(self, start: datetime, end: datetime) -> list[str]:
        """Keys of the partitions starting in [start, end), in order."""
        if not self.is_time:
            raise PartitionError(f"{self.granularity} partitions have no time")
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        keys = []
        with _InRange(self.granularity, start, end):
            at = self._floor(start)
            at = at if at >= start else self._next(at)
            while at < end:
                keys.append(self._key_at(at))
                at = self._next(at)
        return keys


class _InRange:
    """Turns dates past year 1 or 9999 into a PartitionError, which callers handle. A
    class rather than @contextmanager: it is on every event's path."""

    __slots__ = ("args", "granularity")

    def __init__(self, granularity: Granularity, *args: object) -> None:
        self.granularity, self.args = granularity, args

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, ValueError | OverflowError) and not isinstance(exc, PartitionError):
            where = ", ".join(map(str, self.args))
            raise PartitionError(f"no {self.granularity} partition for {where}: {exc}") from exc


@lru_cache(maxsize=65536)
def _parse(calendar: Calendar, key: str) -> Partition:
    return calendar._parse(key)


def can_map(contract: Granularity, input: Granularity) -> bool:
    """Whether an input of granularity `input` can ever feed a contract of `contract`."""
    if contract == input or Granularity.NONE in (contract, input):
        return True
    if contract not in _TIME or input not in _TIME:
        return False
    return input in _CONTAINS[contract] or contract in _CONTAINS[input]


def _relation(contract: Calendar, input: Calendar) -> str:
    if contract.granularity == input.granularity:
        return "same"
    if not can_map(contract.granularity, input.granularity):
        raise PartitionError(
            f"a {input.granularity} input cannot feed a {contract.granularity} contract"
        )
    return "finer" if input.granularity in _CONTAINS[contract.granularity] else "coarser"


def required_input_keys(
    contract: Calendar, contract_key: str, input: Calendar, offset: int = 0
) -> list[str]:
    """The input partitions that contract partition `contract_key` needs, all of them."""
    if contract.granularity == Granularity.NONE:
        raise ValueError("an unpartitioned contract has no partition to map")
    if input.granularity == Granularity.NONE:
        return [""]
    relation = _relation(contract, input)
    if relation == "same":
        return [contract.shift(contract_key, offset)]
    if relation == "finer":
        window = contract.parse(contract.shift(contract_key, offset))
        assert window.start is not None and window.end is not None
        return input.keys_between(window.start, window.end)
    start = contract.parse(contract_key).start
    assert start is not None
    return [input.shift(input.key_of(start), offset)]


def contract_keys_for_input(
    contract: Calendar, input: Calendar, input_key: str, offset: int = 0
) -> list[str]:
    """The contract partitions an event for `input_key` feeds (inverse of the above)."""
    if contract.granularity == Granularity.NONE:
        raise ValueError("an unpartitioned contract has no partition to map")
    if input.granularity == Granularity.NONE:
        raise ValueError("a global input feeds every partition; the caller handles it")
    relation = _relation(contract, input)
    if relation == "same":
        return [contract.shift(input_key, -offset)]
    if relation == "finer":
        start = input.parse(input_key).start
        assert start is not None
        return [contract.shift(contract.key_of(start), -offset)]
    window = input.parse(input.shift(input_key, -offset))
    assert window.start is not None and window.end is not None
    return contract.keys_between(window.start, window.end)


def partition_bounds(cal: Calendar, key: str) -> tuple[datetime | None, datetime | None]:
    part = cal.parse(key)
    return part.start, part.end
