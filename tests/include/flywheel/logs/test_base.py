"""Shared parts of the log sources: timestamps, window checks, counters."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from include.flywheel.logs.base import ExtractionStats, check_window, epoch_seconds, parse_timestamp

UTC = timezone.utc
MOMENT = datetime(2026, 11, 18, 9, 30, 15, tzinfo=UTC)
SECONDS = MOMENT.timestamp()


@pytest.mark.parametrize(
    "value",
    [
        int(SECONDS),
        SECONDS,
        int(SECONDS) * 1000,  # epoch milliseconds
        float(SECONDS * 1000),
        str(int(SECONDS)),
        "2026-11-18T09:30:15Z",
        "2026-11-18T09:30:15+00:00",
        "2026-11-18T10:30:15+01:00",
        "2026-11-18T04:30:15.000-05:00",
        "2026-11-18T09:30:15",  # naive: UTC
        "2026-11-18 09:30:15",
        " 2026-11-18T09:30:15Z ",
    ],
)
def test_timestamp_forms(value) -> None:
    assert epoch_seconds(value) == SECONDS
    assert parse_timestamp(value) == MOMENT


def test_fractions_and_dates() -> None:
    assert epoch_seconds("2026-11-18T09:30:15.250Z") == SECONDS + 0.25
    assert epoch_seconds(1795000000123) == 1795000000.123
    assert epoch_seconds("2026-11-18") == datetime(2026, 11, 18, tzinfo=UTC).timestamp()
    # Below the millisecond threshold a number is seconds, even a small one.
    assert epoch_seconds(99_999_999_999) == 99_999_999_999.0


@pytest.mark.parametrize(
    "value", [None, "", "yesterday", "2026-13-45T25:61:00Z", True, False, float("nan"), float("inf"), "nan", [1], {}]
)
def test_not_timestamps(value) -> None:
    assert epoch_seconds(value) is None
    with pytest.raises(ValueError, match="not a timestamp"):
        parse_timestamp(value)


def test_check_window_converts_to_utc() -> None:
    start = datetime(2026, 11, 18, 1, tzinfo=timezone(timedelta(hours=1)))
    got_start, got_end = check_window("w", "c", start, start + timedelta(hours=1))
    assert got_start == datetime(2026, 11, 18, tzinfo=UTC) and got_start.tzinfo is UTC
    assert got_end - got_start == timedelta(hours=1)


@pytest.mark.parametrize(
    ("workload", "client", "start", "end", "message"),
    [
        ("", "c", MOMENT, MOMENT + timedelta(1), "workload_id must be a non-empty string"),
        ("w", None, MOMENT, MOMENT + timedelta(1), "client_id must be a non-empty string"),
        ("w", "c", MOMENT.replace(tzinfo=None), MOMENT + timedelta(1), "start .* has no timezone"),
        ("w", "c", MOMENT, (MOMENT + timedelta(1)).replace(tzinfo=None), "end .* has no timezone"),
        ("w", "c", MOMENT, MOMENT, "empty window"),
        ("w", "c", MOMENT, MOMENT - timedelta(1), "empty window"),
        ("w", "c", "2026-11-18", MOMENT, "must be a datetime"),
    ],
)
def test_check_window_rejects(workload, client, start, end, message) -> None:
    with pytest.raises(ValueError, match=message):
        check_window(workload, client, start, end)


def test_stats_dict_and_summary() -> None:
    stats = ExtractionStats(read=20, matched=12, out_of_window=4, other_workload=2, malformed=2)

    assert stats.as_dict() == {"read": 20, "matched": 12, "missing_workload_id": 0, "other_workload": 2,
                               "other_client": 0, "out_of_window": 4, "malformed": 2}
    assert stats.skipped == 8
    assert stats.summary() == "read 20, matched 12; skipped: 4 out of window, 2 of another workload, 2 malformed"
    assert ExtractionStats().summary() == "read 0, matched 0; skipped: none"
