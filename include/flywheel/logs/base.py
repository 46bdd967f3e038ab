"""What every log source shares: the extraction counters, the ``LogSource`` protocol, timestamps.

A log source yields the raw log records (plain dicts, one per logged LLM call) of one
workload and one client inside one half-open time window ``[start, end)``. It never
drops a record silently: every record it reads and does not yield is counted in
``stats`` under exactly one reason, so the run report can say what was left out and why.

Timestamps in the logs come in several shapes (see :func:`epoch_seconds`); sources compare
them as float epoch seconds, which keeps the per-record cost of the hot path low.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

# Epoch values at or above this are read as milliseconds. 1e11 seconds is the year 5138,
# while 1e11 milliseconds is March 1973: no real log has either, so the cut is unambiguous.
MILLIS_THRESHOLD = 1e11


class LogSourceError(RuntimeError):
    """A log source cannot be read (missing path, unknown index, unreachable server...).

    The message names the source (path, or index and connection) and says what to do.
    """


@dataclass
class ExtractionStats:
    """Counters of one extraction, filled by the source while the caller iterates.

    For the file source every line read is counted once: either ``matched`` (yielded) or
    under the first reason that excluded it, checked in the order ``malformed``,
    ``out_of_window``, ``missing_workload_id``, ``other_workload``, ``other_client``; so
    ``read == matched + skipped``. The Elasticsearch source filters on the server: ``read``
    is the number of hits fetched, and ``missing_workload_id`` / ``other_workload`` /
    ``other_client`` are counts of the neighbouring records in the same window (see
    :class:`~include.flywheel.logs.elasticsearch.ElasticsearchLogSource`).
    """

    read: int = 0
    matched: int = 0
    missing_workload_id: int = 0
    other_workload: int = 0
    other_client: int = 0
    out_of_window: int = 0
    # Unparseable lines, JSON that is not an object, a missing or unparseable timestamp.
    malformed: int = 0

    @property
    def skipped(self) -> int:
        """Records read but not yielded, all reasons together."""
        return (
            self.missing_workload_id + self.other_workload + self.other_client + self.out_of_window + self.malformed
        )

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict (for XCom, the results store and the task log)."""
        return asdict(self)

    def summary(self) -> str:
        """One line for the task log, e.g. ``read 120, matched 100; skipped: 15 out of window, 5 malformed``."""
        reasons = [
            (self.out_of_window, "out of window"),
            (self.missing_workload_id, "without workload_id"),
            (self.other_workload, "of another workload"),
            (self.other_client, "of another client"),
            (self.malformed, "malformed"),
        ]
        skipped = ", ".join(f"{count} {label}" for count, label in reasons if count)
        return f"read {self.read}, matched {self.matched}; skipped: {skipped or 'none'}"


@runtime_checkable
class LogSource(Protocol):
    """A place log records are read from (JSONL files, Elasticsearch, ...)."""

    #: Counters of the latest :meth:`iter_records` call, updated while the caller iterates.
    stats: ExtractionStats

    def iter_records(self, workload_id: str, client_id: str, start: datetime, end: datetime) -> Iterator[dict]:
        """Yield the records of one workload and client whose timestamp is in ``[start, end)``.

        Args:
            workload_id: Keep records whose ``workload_id`` equals this.
            client_id: Keep records whose ``client_id`` equals this.
            start: Inclusive window start, timezone-aware.
            end: Exclusive window end, timezone-aware, after ``start``.

        Returns:
            A lazy iterator (records are streamed, never loaded all at once). ``stats`` is
            reset when this is called and filled as the iterator is consumed.
        """
        ...


def check_window(workload_id: str, client_id: str, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """Validate the arguments of ``iter_records`` and return the window in UTC.

    Raises:
        ValueError: an empty id, a naive datetime, or ``end`` not after ``start``.
    """
    for name, value in (("workload_id", workload_id), ("client_id", client_id)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, datetime):
            raise ValueError(f"window {name} must be a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"window {name} {value.isoformat()} has no timezone: pass a timezone-aware datetime "
                "(e.g. the data interval of the DAG run, or datetime(..., tzinfo=timezone.utc))"
            )
    start, end = start.astimezone(timezone.utc), end.astimezone(timezone.utc)
    if end <= start:
        raise ValueError(f"empty window: end {end.isoformat()} must be after start {start.isoformat()}")
    return start, end


def epoch_seconds(value: Any) -> float | None:
    """Read a log timestamp as float epoch seconds, or ``None`` if it is not a timestamp.

    Accepted: epoch seconds (int or float), epoch milliseconds (numbers of 1e11 and more,
    which cannot be seconds of any real log), the same as numeric strings, and ISO 8601
    strings with ``Z``, an offset, or neither (a naive time is UTC), with or without time.
    Booleans, NaN, infinities and anything else give ``None``.
    """
    # Exact type checks first: this runs once per record on the extraction hot path.
    kind = type(value)
    if kind is int or kind is float:
        seconds = float(value)
    elif kind is str:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            return _iso_seconds(text)
    else:
        return None
    if not math.isfinite(seconds):
        return None
    return seconds / 1000.0 if abs(seconds) >= MILLIS_THRESHOLD else seconds


def _iso_seconds(text: str) -> float | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def parse_timestamp(value: Any) -> datetime:
    """Read a log timestamp (any form :func:`epoch_seconds` accepts) as an aware UTC datetime.

    Raises:
        ValueError: the value is not a timestamp; the message shows it.
    """
    seconds = epoch_seconds(value)
    if seconds is None:
        raise ValueError(
            f"not a timestamp: {value!r} (expected epoch seconds or milliseconds, or an ISO 8601 string)"
        )
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"timestamp out of range: {value!r}") from exc
