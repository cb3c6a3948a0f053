"""Partition arithmetic: keys, bounds, offsets and mapping between granularities. Pure.

Keys: hourly `2026-11-23T05` (always a UTC hour, so unambiguous across DST), daily
`2026-11-23`, ISO weekly `2026-W48`, monthly `2026-11` (calendar units in the
contract's timezone), static (any safe key such as `eu`), none (the key "").

Nesting: hourly ⊂ daily ⊂ weekly, daily ⊂ monthly; weeks and months do not nest.
`offset` counts whole partitions of the coarser of the two sides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo


class Granularity(StrEnum):
    NONE = "none"
    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    STATIC = "static"


class PartitionError(ValueError):
    """A key that does not fit its granularity, or a mapping that cannot be made."""


_FORMATS = {
    Granularity.HOURLY: (re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2})$"), "YYYY-MM-DDTHH, UTC"),
    Granularity.DAILY: (re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"), "YYYY-MM-DD"),
    Granularity.WEEKLY: (re.compile(r"^(\d{4})-W(\d{2})$"), "YYYY-Www"),
    Granularity.MONTHLY: (re.compile(r"^(\d{4})-(\d{2})$"), "YYYY-MM"),
    Granularity.STATIC: (re.compile(r"^[A-Za-z0-9_.:+~-]{1,128}$"), "1-128 of A-Z a-z 0-9 _.:+~-"),
}
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
    """A granularity in a timezone; all the arithmetic lives here."""

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
        if self.granularity == Granularity.NONE:
            if key:
                raise PartitionError(f"partition {key!r} given for an unpartitioned dataset")
            return Partition(self.granularity, key, None, None)
        pattern, shape = _FORMATS[self.granularity]
        match = pattern.match(key)
        if not match:
            raise PartitionError(f"partition {key!r} is not a {self.granularity} key ({shape})")
        if self.granularity == Granularity.STATIC:
            return Partition(self.granularity, key, None, None)
        try:
            start = self._start(tuple(int(g) for g in match.groups()))
        except ValueError as exc:
            raise PartitionError(
                f"partition {key!r} is not a real {self.granularity} key: {exc}"
            ) from exc
        return Partition(self.granularity, key, start, self._next(start))

    def _start(self, parts: tuple[int, ...]) -> datetime:
        g = self.granularity
        if g == Granularity.HOURLY:
            return datetime(parts[0], parts[1], parts[2], parts[3], tzinfo=UTC)
        if g == Granularity.DAILY:
            day = date(parts[0], parts[1], parts[2])
        elif g == Granularity.WEEKLY:
            day = date.fromisocalendar(parts[0], parts[1], 1)
        else:
            day = date(parts[0], parts[1], 1)
        return _local_midnight(day, self.zone)

    def _next(self, start: datetime) -> datetime:
        """The start of the following partition (its exclusive end)."""
        g = self.granularity
        if g == Granularity.HOURLY:
            return start + timedelta(hours=1)
        local = start.astimezone(self.zone).date()
        if g == Granularity.DAILY:
            following = local + timedelta(days=1)
        elif g == Granularity.WEEKLY:
            following = local + timedelta(days=7)
        else:
            following = _add_months(local, 1)
        return _local_midnight(following, self.zone)

    def key_of(self, instant: datetime) -> str:
        """The key of the partition holding an aware instant."""
        g = self.granularity
        if g == Granularity.HOURLY:
            return instant.astimezone(UTC).strftime("%Y-%m-%dT%H")
        local = instant.astimezone(self.zone).date()
        if g == Granularity.DAILY:
            return local.isoformat()
        if g == Granularity.WEEKLY:
            year, week, _ = local.isocalendar()
            return f"{year}-W{week:02d}"
        if g == Granularity.MONTHLY:
            return f"{local.year}-{local.month:02d}"
        raise PartitionError(f"{g} partitions have no time")

    def containing(self, instant: datetime) -> Partition:
        return self.parse(self.key_of(instant))

    def shift(self, key: str, n: int) -> str:
        part = self.parse(key)
        if n == 0:
            return key
        if not self.is_time or part.start is None:
            raise PartitionError(f"{self.granularity} partitions cannot be offset")
        g = self.granularity
        if g == Granularity.HOURLY:
            return self.key_of(part.start + timedelta(hours=n))
        local = part.start.astimezone(self.zone).date()
        if g == Granularity.DAILY:
            return (local + timedelta(days=n)).isoformat()
        if g == Granularity.WEEKLY:
            return self.key_of(_local_midnight(local + timedelta(weeks=n), self.zone))
        moved = _add_months(local, n)
        return f"{moved.year}-{moved.month:02d}"

    def keys_between(self, start: datetime, end: datetime) -> list[str]:
        """Keys of the partitions starting in [start, end), in order."""
        keys = []
        part = self.containing(start)
        if part.start is not None and part.start < start:
            part = self.parse(self.shift(part.key, 1))
        while part.start is not None and part.start < end:
            keys.append(part.key)
            part = self.parse(self.shift(part.key, 1))
        return keys


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    # fold=0 and normalising through UTC picks the real instant even if midnight is
    # skipped by a DST change in that zone.
    local = datetime.combine(day, time(0), tzinfo=zone)
    return local.astimezone(UTC).astimezone(zone).astimezone(UTC)


def _add_months(day: date, n: int) -> date:
    months = day.year * 12 + (day.month - 1) + n
    return date(months // 12, months % 12 + 1, 1)


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
