"""A zone's wall clock, as partitions (partitions.py) read it: where a day or an hour
starts in a timezone, through skipped and repeated times. Instants are aware, in UTC.

Hourly partitions start where the wall clock reads a whole hour or changes its offset;
tzdata changes a zone's offset at most once in any hour, and on whole seconds.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

HOUR = timedelta(hours=1)
TICK = timedelta(microseconds=1)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """Where `day` starts in `zone`."""
    if zone is _UTC_ZONE:  # no offset, ever: midnight is midnight (the default timezone)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    return first_reading(datetime.combine(day, time(0)), zone)


_UTC_ZONE = ZoneInfo("UTC")  # ZoneInfo keeps one object per key


def first_reading(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first instant the clocks in `zone` read the naive `wall` time, or, if they skip
    it, the instant they jump over it (Toronto, 1919-03-30: 23:30 -> 00:30)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)  # the first pass
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # Skipped: fold=0 reads it with the offset before the jump and fold=1 with the one
    # after, which puts the jump between the two.
    return first_change(wall.replace(tzinfo=zone, fold=1).astimezone(UTC), first, zone)


def offset_at(instant: datetime, zone: ZoneInfo) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always knows it
    return offset


def _since_hour(local: datetime) -> timedelta:
    return timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)


def hour_floor(instant: datetime, zone: ZoneInfo) -> datetime:
    local = instant.astimezone(zone)
    floor = instant - _since_hour(local)
    if offset_at(floor, zone) == local.utcoffset():
        return floor
    return first_change(floor, instant, zone)


def hour_end(start: datetime, zone: ZoneInfo) -> datetime:
    local = start.astimezone(zone)
    end = start + HOUR - _since_hour(local)
    if offset_at(end - TICK, zone) == local.utcoffset():
        return end
    return first_change(start, end - TICK, zone)


def first_change(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The first instant in (before, after] whose UTC offset differs from `before`'s."""
    base = offset_at(before, zone)
    while after - before > TICK:
        middle = before + (after - before) // 2
        if offset_at(middle, zone) == base:
            before = middle
        else:
            after = middle
    return after


def hour_key(start: datetime, zone: ZoneInfo) -> str:
    local = start.astimezone(zone)
    key = f"{local.year:04d}-{local.month:02d}-{local.day:02d}T{local.hour:02d}"
    on_the_hour = not (local.fold or local.minute or local.second or local.microsecond)
    hour = datetime(local.year, local.month, local.day, local.hour)
    if on_the_hour or first_reading(hour, zone) == start:  # the first pass
        return key
    offset = offset_at(start, zone)
    sign, seconds = ("-" if offset < timedelta(0) else "+"), abs(int(offset.total_seconds()))
    hours, minutes, seconds = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{key}{sign}{hours:02d}:{minutes:02d}" + (f":{seconds:02d}" if seconds else "")
