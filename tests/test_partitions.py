"""Partition arithmetic: keys, bounds, shifts and the mapping between granularities, in
timezones with DST (Europe/Berlin, America/New_York), a 30-minute DST shift
(Australia/Lord_Howe) and a +05:45 offset (Asia/Kathmandu)."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core.partitions import (
    Calendar,
    Granularity,
    PartitionError,
    can_map,
    contract_keys_for_input,
    partition_bounds,
    required_input_keys,
)

HOURLY, DAILY, WEEKLY, MONTHLY = (
    Granularity.HOURLY, Granularity.DAILY, Granularity.WEEKLY, Granularity.MONTHLY
)  # fmt: skip
STATIC, NONE = Granularity.STATIC, Granularity.NONE
TIME = [HOURLY, DAILY, WEEKLY, MONTHLY]
TZS = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"]
# (finer, coarser): the finer always lies inside one coarser partition.
NESTED = [(HOURLY, DAILY), (HOURLY, WEEKLY), (HOURLY, MONTHLY), (DAILY, WEEKLY), (DAILY, MONTHLY)]
# (contract, input) pairs that can be mapped: same, finer input, coarser input.
MAPPABLE = [(g, g) for g in TIME] + NESTED + [(c, f) for f, c in NESTED]
TICK = timedelta(microseconds=1)

PROPERTY = settings(deadline=None, max_examples=150)


@cache
def clock_changes(tz: str, year: int) -> list[datetime]:
    """The instants in `year` when `tz` changes its UTC offset, found by bisection."""
    zone = ZoneInfo(tz)

    def offset(t: datetime) -> timedelta | None:
        return t.astimezone(zone).utcoffset()

    changes = []
    t, step = datetime(year, 1, 1, tzinfo=UTC), timedelta(hours=6)
    while t.year == year:
        lo, hi = t, t + step
        if offset(lo) != offset(hi):
            while hi - lo > TICK:
                mid = lo + (hi - lo) // 2
                lo, hi = (mid, hi) if offset(mid) == offset(lo) else (lo, mid)
            changes.append(hi)
        t += step
    return changes


@st.composite
def instants(draw: st.DrawFn, tz: str) -> datetime:
    """Instants from 1970 to 2100, most of them near a clock change or a local midnight
    (where a UTC hour would straddle two Kathmandu days)."""
    year = draw(st.integers(1970, 2100))
    near = draw(st.sampled_from(["change", "midnight", "anywhere"]))
    changes = clock_changes(tz, year)
    if near == "change" and changes:
        base = draw(st.sampled_from(changes))
        return base + timedelta(seconds=draw(st.integers(-2 * 86400, 2 * 86400)))
    micros = timedelta(microseconds=draw(st.sampled_from([0, 1, 999_999])))
    if near == "midnight":
        day = draw(st.dates(datetime(year, 1, 1).date(), datetime(year, 12, 31).date()))
        midnight = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz)).astimezone(UTC)
        return midnight + timedelta(seconds=draw(st.integers(-7200, 7200))) + micros
    seconds = draw(st.integers(0, 365 * 86400))
    return datetime(year, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds) + micros


@st.composite
def calendars_and_instants(
    draw: st.DrawFn, granularities: list[Granularity] = TIME
) -> tuple[Calendar, datetime]:
    tz = draw(st.sampled_from(TZS))
    return Calendar(draw(st.sampled_from(granularities)), tz), draw(instants(tz))


def bounds(cal: Calendar, key: str) -> tuple[datetime, datetime]:
    start, end = partition_bounds(cal, key)
    assert start is not None and end is not None
    return start, end


def offset_minutes(instant: datetime, zone: ZoneInfo) -> int:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset // timedelta(minutes=1)


# --- keys and bounds ------------------------------------------------------------------


@PROPERTY
@given(calendars_and_instants())
def test_every_instant_lies_in_the_partition_its_key_names(case: tuple[Calendar, datetime]) -> None:
    cal, instant = case
    key = cal.key_of(instant)
    start, end = bounds(cal, key)
    assert start <= instant < end
    assert cal.key_of(start) == key
    assert cal.key_of(end - TICK) == key
    assert cal.containing(instant).key == key
    assert cal.is_valid(key)


@PROPERTY
@given(calendars_and_instants(), st.integers(-3, 3))
def test_consecutive_partitions_tile_time_without_gaps_or_overlaps(
    case: tuple[Calendar, datetime], n: int
) -> None:
    cal, instant = case
    key = cal.shift(cal.key_of(instant), n)
    start, end = bounds(cal, key)
    assert bounds(cal, cal.shift(key, 1))[0] == end
    assert bounds(cal, cal.shift(key, -1))[1] == start
    assert cal.key_of(end) == cal.shift(key, 1)
    assert cal.key_of(start - TICK) == cal.shift(key, -1)


@PROPERTY
@given(calendars_and_instants(), st.integers(-60, 60), st.integers(-60, 60))
def test_shifts_add_up_and_undo_each_other(case: tuple[Calendar, datetime], n: int, m: int) -> None:
    cal, instant = case
    key = cal.key_of(instant)
    assert cal.shift(cal.shift(key, n), -n) == key
    assert cal.shift(cal.shift(key, n), m) == cal.shift(key, n + m)
    moved = bounds(cal, cal.shift(key, n))[0]
    assert (moved > bounds(cal, key)[0]) == (n > 0)
    assert cal.shift(key, 0) == key


@PROPERTY
@given(calendars_and_instants(), st.integers(0, 40), st.sampled_from([0.0, 0.3, 1.0]))
def test_keys_between_lists_the_partitions_starting_in_the_window(
    case: tuple[Calendar, datetime], partitions: int, fraction: float
) -> None:
    cal, instant = case
    first = cal.key_of(instant)
    span = bounds(cal, cal.shift(first, partitions))[0] - instant
    end = instant + span + (bounds(cal, first)[1] - bounds(cal, first)[0]) * fraction
    keys = cal.keys_between(instant, end)
    starts = [bounds(cal, k)[0] for k in keys]
    assert all(instant <= s < end for s in starts)
    assert all(cal.shift(a, 1) == b for a, b in pairwise(keys))
    before = cal.shift(keys[0], -1) if keys else cal.key_of(instant)
    assert bounds(cal, before)[0] < instant or not keys
    after = cal.shift(keys[-1], 1) if keys else cal.shift(cal.key_of(instant), 1)
    assert bounds(cal, after)[0] >= end


@PROPERTY
@given(st.sampled_from(TIME), st.sampled_from(TZS), st.data())
def test_a_key_that_parses_is_its_own_canonical_spelling(
    granularity: Granularity, tz: str, data: st.DataObject
) -> None:
    shapes = {
        HOURLY: r"\d{4}-\d{2}-\d{2}T\d{2}([+-]\d{2}:\d{2}(:\d{2})?)?",
        DAILY: r"\d{4}-\d{2}-\d{2}",
        WEEKLY: r"\d{4}-W\d{2}",
        MONTHLY: r"\d{4}-\d{2}",
    }
    near = st.from_regex(rf"\A{shapes[granularity]}\n?\Z")
    key = data.draw(st.one_of(near, st.text(max_size=20)), label="key")
    cal = Calendar(granularity, tz)
    try:
        start, end = bounds(cal, key)
    except PartitionError:
        return
    assert start < end
    assert cal.key_of(start) == key


@PROPERTY
@given(st.sampled_from(TZS), st.data())
def test_an_hour_has_one_spelling_and_each_spelling_one_hour(tz: str, data: st.DataObject) -> None:
    cal, zone = Calendar(HOURLY, tz), ZoneInfo(tz)
    instant = data.draw(instants(tz))
    key = cal.key_of(instant)
    minutes = {offset_minutes(instant + timedelta(hours=h), zone) for h in range(-24, 25, 3)}
    spellings = {key[:13]} | {
        f"{key[:13]}{'-' if m < 0 else '+'}{abs(m) // 60:02d}:{abs(m) % 60:02d}" for m in minutes
    }
    parsed = {s: bounds(cal, s) for s in spellings if cal.is_valid(s)}
    assert key in parsed
    assert len(set(parsed.values())) == len(parsed), parsed


# --- DST and odd offsets, by example --------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "day", "hours"),
    [
        ("Europe/Berlin", "2026-03-29", 23),
        ("Europe/Berlin", "2026-10-25", 25),
        ("Europe/Berlin", "2026-11-23", 24),
        ("America/New_York", "2026-03-08", 23),
        ("America/New_York", "2026-11-01", 25),
        ("America/New_York", "2026-07-04", 24),
        ("Australia/Lord_Howe", "2026-10-04", 24),  # 02:30-03:00 is a half-hour partition
        ("Australia/Lord_Howe", "2026-04-05", 25),  # the second 01:30-02:00 is its own key
        ("Asia/Kathmandu", "2026-11-23", 24),
        ("UTC", "2026-03-29", 24),
        ("America/Santiago", "2026-09-06", 23),  # midnight is skipped: the day starts at 01:00
        ("America/Santiago", "2026-04-04", 25),  # 23:00 repeats, after the first midnight
        ("America/Havana", "2026-11-01", 25),  # midnight repeats: T00, then T00-05:00
        ("America/Toronto", "1919-03-31", 24),  # 23:30 -> 00:30: the day starts at 00:30
    ],
)
def test_a_daily_contract_needs_every_local_hour_of_its_day(tz: str, day: str, hours: int) -> None:
    keys = required_input_keys(Calendar(DAILY, tz), day, Calendar(HOURLY, tz))
    assert len(keys) == hours
    assert len(set(keys)) == hours
    assert bounds(Calendar(HOURLY, tz), keys[0])[0] == bounds(Calendar(DAILY, tz), day)[0]
    assert bounds(Calendar(HOURLY, tz), keys[-1])[1] == bounds(Calendar(DAILY, tz), day)[1]


def test_the_repeated_hour_is_keyed_plain_then_with_its_offset() -> None:
    berlin = Calendar(HOURLY, "Europe/Berlin")
    keys = berlin.keys_between(
        datetime(2026, 10, 24, 23, tzinfo=UTC), datetime(2026, 10, 25, 3, tzinfo=UTC)
    )
    assert keys == ["2026-10-25T01", "2026-10-25T02", "2026-10-25T02+01:00", "2026-10-25T03"]
    assert bounds(berlin, "2026-10-25T02") == (
        datetime(2026, 10, 25, 0, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC)
    )  # fmt: skip
    assert bounds(berlin, "2026-10-25T02+01:00")[0] == datetime(2026, 10, 25, 1, tzinfo=UTC)
    second_pass = datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Berlin"))
    assert berlin.key_of(second_pass) == "2026-10-25T02+01:00"
    new_york = Calendar(HOURLY, "America/New_York")
    assert bounds(new_york, "2026-11-01T01-05:00")[0] == datetime(2026, 11, 1, 6, tzinfo=UTC)
    assert new_york.shift("2026-11-01T01", 1) == "2026-11-01T01-05:00"


def test_a_half_hour_clock_change_makes_half_hour_partitions() -> None:
    lord_howe = Calendar(HOURLY, "Australia/Lord_Howe")
    assert bounds(lord_howe, "2026-10-04T02") == (
        datetime(2026, 10, 3, 15, 30, tzinfo=UTC), datetime(2026, 10, 3, 16, tzinfo=UTC)
    )  # fmt: skip
    assert bounds(lord_howe, "2026-04-05T01") == (
        datetime(2026, 4, 4, 14, tzinfo=UTC), datetime(2026, 4, 4, 15, tzinfo=UTC)
    )  # fmt: skip
    assert bounds(lord_howe, "2026-04-05T01+10:30") == (
        datetime(2026, 4, 4, 15, tzinfo=UTC), datetime(2026, 4, 4, 15, 30, tzinfo=UTC)
    )  # fmt: skip


def test_kathmandu_hours_nest_in_kathmandu_days() -> None:
    day = bounds(Calendar(DAILY, "Asia/Kathmandu"), "2026-11-23")
    assert day[0] == datetime(2026, 11, 22, 18, 15, tzinfo=UTC)
    assert bounds(Calendar(HOURLY, "Asia/Kathmandu"), "2026-11-23T00")[0] == day[0]
    assert contract_keys_for_input(
        Calendar(DAILY, "Asia/Kathmandu"), Calendar(HOURLY, "Asia/Kathmandu"), "2026-11-22T23"
    ) == ["2026-11-22"]


def test_a_day_whose_midnight_is_skipped_starts_when_the_clocks_jump() -> None:
    santiago = Calendar(DAILY, "America/Santiago")
    assert bounds(santiago, "2026-09-06")[0] == datetime(2026, 9, 6, 4, tzinfo=UTC)
    toronto = Calendar(HOURLY, "America/Toronto")
    assert bounds(toronto, "1919-03-31T00") == (
        datetime(1919, 3, 31, 4, 30, tzinfo=UTC), datetime(1919, 3, 31, 5, tzinfo=UTC)
    )  # fmt: skip
    assert (
        bounds(Calendar(DAILY, "America/Toronto"), "1919-03-31")[0]
        == bounds(toronto, "1919-03-31T00")[0]
    )


@pytest.mark.parametrize(
    ("tz", "key"),
    [
        ("Europe/Berlin", "2026-03-29T02"),  # skipped
        ("America/New_York", "2026-03-08T02"),  # skipped
        ("Europe/Berlin", "2026-10-25T02+02:00"),  # the first pass has no offset
        ("Europe/Berlin", "2026-11-23T05+01:00"),  # not a repeated hour
        ("UTC", "2026-11-23T05+00:00"),
        ("Pacific/Apia", "2011-12-30T05"),  # Samoa skipped the whole day
    ],
)
def test_an_hour_that_does_not_exist_or_is_spelled_twice_is_rejected(tz: str, key: str) -> None:
    with pytest.raises(PartitionError):
        Calendar(HOURLY, tz).parse(key)


@pytest.mark.parametrize(
    ("granularity", "key"),
    [
        (DAILY, "2026-11-23\n"),
        (DAILY, "\u0662\u0660\u0662\u0666-\u0661\u0661-\u0662\u0663"),  # Arabic-Indic digits
        (DAILY, "2026-02-29"),
        (DAILY, "9999-12-31"),  # its end is past year 9999
        (MONTHLY, "0001-01"),  # its start in Berlin is before year 1 UTC
        (WEEKLY, "2026-W54"),
        (WEEKLY, "2025-W53"),
        (HOURLY, "2026-11-23T24"),
        (MONTHLY, "2026-13"),
        (STATIC, "eu\n"),
        (STATIC, "a" * 129),
        (STATIC, ""),
    ],
)
def test_malformed_or_out_of_range_keys_are_partition_errors(
    granularity: Granularity, key: str
) -> None:
    cal = Calendar(granularity, "Europe/Berlin")
    assert not cal.is_valid(key)
    with pytest.raises(PartitionError):
        cal.parse(key)


def test_offsets_count_the_days_a_zone_has_across_a_skipped_date() -> None:
    apia = Calendar(DAILY, "Pacific/Apia")  # Samoa went from 29 to 31 December 2011
    assert apia.shift("2011-12-29", 1) == "2011-12-31"
    assert apia.shift("2011-12-31", -1) == "2011-12-29"
    assert apia.shift("2011-12-28", 3) == "2012-01-01"
    assert required_input_keys(apia, "2011-12-31", apia, offset=-1) == ["2011-12-29"]
    assert contract_keys_for_input(apia, apia, "2011-12-29", offset=-1) == ["2011-12-31"]
    assert bounds(apia, "2011-12-29")[1] == bounds(apia, "2011-12-31")[0]


def test_shifting_past_year_9999_is_a_partition_error() -> None:
    with pytest.raises(PartitionError):
        Calendar(MONTHLY).shift("9999-11", 5)


def test_utc_hourly_keys_are_utc_hours() -> None:
    assert bounds(Calendar(HOURLY), "2026-11-23T05")[0] == datetime(2026, 11, 23, 5, tzinfo=UTC)


# --- offsets across year boundaries ----------------------------------------------------


@pytest.mark.parametrize(
    ("granularity", "key", "previous"),
    [
        (HOURLY, "2026-01-01T00", "2025-12-31T23"),
        (DAILY, "2026-01-01", "2025-12-31"),
        (DAILY, "2028-03-01", "2028-02-29"),
        (WEEKLY, "2026-W01", "2025-W52"),
        (WEEKLY, "2027-W01", "2026-W53"),
        (WEEKLY, "2021-W01", "2020-W53"),
        (MONTHLY, "2026-01", "2025-12"),
    ],
)
def test_offset_minus_one_is_the_previous_partition(
    granularity: Granularity, key: str, previous: str
) -> None:
    for tz in TZS:
        cal = Calendar(granularity, tz)
        assert required_input_keys(cal, key, cal, offset=-1) == [previous]
        assert contract_keys_for_input(cal, cal, previous, offset=-1) == [key]


def test_offset_shifts_whole_partitions_of_the_coarser_side() -> None:
    day, hour, week = Calendar(DAILY), Calendar(HOURLY), Calendar(WEEKLY)
    yesterday = required_input_keys(day, "2026-01-01", hour, offset=-1)
    assert yesterday[0] == "2025-12-31T00"
    assert yesterday[-1] == "2025-12-31T23"
    # 2027-01-01 is in ISO week 2026-W53; the week before is 2026-W52.
    assert required_input_keys(day, "2027-01-01", week, offset=-1) == ["2026-W52"]


# --- mapping between granularities ----------------------------------------------------


@PROPERTY
@given(st.sampled_from(NESTED), st.sampled_from(TZS), st.data())
def test_every_finer_partition_lies_inside_exactly_one_coarser_one(
    pair: tuple[Granularity, Granularity], tz: str, data: st.DataObject
) -> None:
    finer, coarser = Calendar(pair[0], tz), Calendar(pair[1], tz)
    key = finer.key_of(data.draw(instants(tz)))
    start, end = bounds(finer, key)
    outer = coarser.key_of(start)
    assert coarser.key_of(end - TICK) == outer
    outer_start, outer_end = bounds(coarser, outer)
    assert outer_start <= start < end <= outer_end
    assert required_input_keys(finer, key, coarser) == [outer]
    assert key in required_input_keys(coarser, outer, finer)


@PROPERTY
@given(st.sampled_from(NESTED), st.sampled_from(TZS), st.integers(-3, 3), st.data())
def test_a_finer_input_must_cover_the_contract_window_exactly(
    pair: tuple[Granularity, Granularity], tz: str, offset: int, data: st.DataObject
) -> None:
    finer, coarser = Calendar(pair[0], tz), Calendar(pair[1], tz)
    key = coarser.key_of(data.draw(instants(tz)))
    keys = required_input_keys(coarser, key, finer, offset)
    window = bounds(coarser, coarser.shift(key, offset))
    spans = [bounds(finer, k) for k in keys]
    assert spans[0][0] == window[0]
    assert spans[-1][1] == window[1]
    assert all(a[1] == b[0] for a, b in pairwise(spans))


@PROPERTY
@given(st.sampled_from(TZS), st.data())
def test_weeks_have_seven_days_and_months_their_calendar_days(tz: str, data: st.DataObject) -> None:
    instant = data.draw(instants(tz))
    week = Calendar(WEEKLY, tz).key_of(instant)
    assert len(required_input_keys(Calendar(WEEKLY, tz), week, Calendar(DAILY, tz))) == 7
    month = Calendar(MONTHLY, tz).key_of(instant)
    days = required_input_keys(Calendar(MONTHLY, tz), month, Calendar(DAILY, tz))
    year, number = (int(x) for x in month.split("-"))
    assert len(days) == calendar.monthrange(year, number)[1]
    assert days[0] == f"{month}-01"


@settings(PROPERTY, max_examples=400)  # the property the matcher relies on
@given(st.sampled_from(MAPPABLE), st.sampled_from(TZS), st.integers(-3, 3), st.data())
def test_an_input_feeds_a_contract_partition_iff_that_partition_needs_it(
    pair: tuple[Granularity, Granularity], tz: str, offset: int, data: st.DataObject
) -> None:
    """What the matcher routes (contract_keys_for_input) and what the condition waits for
    (required_input_keys) must agree, or an event lands where nobody waits for it."""
    contract, input = Calendar(pair[0], tz), Calendar(pair[1], tz)
    instant = data.draw(instants(tz), label="instant")
    key = contract.key_of(instant)
    needed = required_input_keys(contract, key, input, offset)
    for input_key in needed:
        assert key in contract_keys_for_input(contract, input, input_key, offset)
    some_input = input.shift(input.key_of(instant), data.draw(st.integers(-5, 5)))
    fed = contract_keys_for_input(contract, input, some_input, offset)
    for contract_key in fed:
        assert some_input in required_input_keys(contract, contract_key, input, offset)
    assert (key in fed) == (some_input in needed)


@PROPERTY
@given(st.sampled_from(TIME), st.sampled_from(TIME))
def test_weeks_and_months_do_not_map_onto_each_other(a: Granularity, b: Granularity) -> None:
    assert can_map(a, b) == ((a, b) in MAPPABLE)
    if not can_map(a, b):
        with pytest.raises(PartitionError):
            required_input_keys(
                Calendar(a), Calendar(a).key_of(datetime(2026, 11, 23, tzinfo=UTC)), Calendar(b)
            )


# --- static and unpartitioned ---------------------------------------------------------


def test_static_keys_have_no_time_and_no_offset() -> None:
    region = Calendar(STATIC)
    assert region.parse("eu").start is None
    assert partition_bounds(region, "eu") == (None, None)
    assert region.shift("eu", 0) == "eu"
    with pytest.raises(PartitionError):
        region.shift("eu", -1)
    with pytest.raises(PartitionError):
        region.key_of(datetime(2026, 11, 23, tzinfo=UTC))
    assert required_input_keys(region, "eu", region) == ["eu"]
    assert contract_keys_for_input(region, region, "eu") == ["eu"]
    with pytest.raises(PartitionError):
        required_input_keys(region, "eu", Calendar(DAILY))


def test_unpartitioned_has_the_one_key_and_callers_handle_the_mapping() -> None:
    none, day = Calendar(NONE), Calendar(DAILY)
    assert none.parse("").start is None
    assert not none.is_valid("2026-11-23")
    assert none.shift("", 0) == ""
    assert required_input_keys(day, "2026-11-23", none) == [""]
    assert required_input_keys(Calendar(STATIC), "eu", none) == [""]
    with pytest.raises(ValueError, match="unpartitioned contract"):
        required_input_keys(none, "", day)
    with pytest.raises(ValueError, match="unpartitioned contract"):
        contract_keys_for_input(none, day, "2026-11-23")
    with pytest.raises(ValueError, match="global input"):
        contract_keys_for_input(day, none, "")


def test_utc_the_default_reads_as_any_zone_without_offsets_does() -> None:
    """UTC skips the timezone arithmetic (`_local_midnight`, `_day_of`): it answers as
    Etc/UTC, the same clock taken the long way, for keys, bounds, shifts and floors."""
    instants = [datetime(1900, 1, 1, tzinfo=UTC) + timedelta(hours=37 * i, minutes=i % 60)
                for i in range(0, 40_000, 97)]  # fmt: skip
    for grain in (Granularity.HOURLY, Granularity.DAILY, Granularity.WEEKLY, Granularity.MONTHLY):
        fast, slow = Calendar(grain, "UTC"), Calendar(grain, "Etc/UTC")
        for at in instants:
            key = fast.key_of(at)
            assert key == slow.key_of(at), (grain, at)
            assert fast.parse(key) == slow.parse(key), (grain, key)
            assert fast.shift(key, 3) == slow.shift(key, 3) and fast.shift(key, -2) == slow.shift(
                key, -2
            )
