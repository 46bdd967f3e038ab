"""JSONL log files: the embedded default log source.

The path is one JSONL file (one JSON object per line, optionally gzip-compressed) or a
directory of them, read in name order. Daily files named ``YYYY-MM-DD.jsonl[.gz]`` whose
day is far outside the window are not opened at all (see :class:`FileLogSource`).

This is the hot path of extraction (benchmarked on a million records), so the loop works
on bytes, calls ``json.loads`` once per line and keeps the per-record work to a few
comparisons; everything unusual (blank lines, malformed lines, logging) is off that path.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import zlib
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

from include.flywheel.logs.base import MILLIS_THRESHOLD, ExtractionStats, LogSourceError, check_window, epoch_seconds

log = logging.getLogger(__name__)

#: Names of the files read from a directory (anything else there is listed in the log and ignored).
DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")
_DAILY_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(?:jsonl|ndjson)(?:\.gz)?$")
_GZIP_MAGIC = b"\x1f\x8b"
# How many malformed lines are logged at WARNING (with file:line); the others go to DEBUG.
_WARN_FIRST = 5
_READ_BUFFER = 1 << 16


class FileLogSource:
    """Stream log records from a JSONL file, a ``.jsonl.gz`` file, or a directory of them.

    Records are read line by line and never held in memory; each line read is counted in
    :attr:`stats` (see :class:`~include.flywheel.logs.base.ExtractionStats`). Blank lines
    are not records and are not counted.

    Daily files (``2026-11-18.jsonl``) let a run skip most of a long history. The date in
    the name is read as a UTC day, but writers roll files late, or by their local day, so a
    file may hold records a few hours from its day: a file is only skipped when its day,
    widened by ``date_margin`` on both sides, does not touch the window. That never loses a
    record as long as records are within ``date_margin`` of their file's day; set
    ``skip_dated_files=False`` when files are named by dates that do not follow that rule.

    Tool-calling logs repeat the same ``request.tools`` list, verbatim, in every line, and
    parsing it is most of the cost of a line. With ``share_repeated_tools`` (the default) the
    source parses each distinct tools text once: records that carry the same text share one
    parsed list, so treat ``request["tools"]`` as read-only (copy it before changing it).
    The records are otherwise exactly what ``json.loads`` gives for the line.

    Args:
        path: A file or a directory (relative paths are taken as they are; the settings
            resolve them against the project root).
        skip_dated_files: Skip daily files dated well outside the window.
        date_margin: How far from its day a daily file may hold records.
        share_repeated_tools: Parse a repeated ``request.tools`` text once (see above).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        skip_dated_files: bool = True,
        date_margin: timedelta = timedelta(days=1),
        share_repeated_tools: bool = True,
    ) -> None:
        self.path = Path(path)
        self.skip_dated_files = skip_dated_files
        self.date_margin = date_margin
        self.share_repeated_tools = share_repeated_tools
        self.stats = ExtractionStats()

    def __repr__(self) -> str:
        return f"FileLogSource({str(self.path)!r})"

    def iter_records(self, workload_id: str, client_id: str, start: datetime, end: datetime) -> Iterator[dict]:
        """Yield the records of ``workload_id`` and ``client_id`` with a timestamp in ``[start, end)``.

        The arguments and the path are checked at once (so errors surface at the call);
        the files are read lazily as the returned iterator is consumed.

        Raises:
            ValueError: invalid ids or window (see :func:`~include.flywheel.logs.base.check_window`).
            LogSourceError: the path does not exist, a directory holds no log files, or a
                file cannot be read (raised while iterating, naming the file and line).
        """
        start, end = check_window(workload_id, client_id, start, end)
        files = self._files()
        selected = [path for path in files if not self._dated_outside(path, start, end)]
        if len(selected) < len(files):
            log.info(
                "Reading %d of %d log files in %s: %d daily files are dated outside %s .. %s.",
                len(selected),
                len(files),
                self.path,
                len(files) - len(selected),
                start.isoformat(),
                end.isoformat(),
            )
        self.stats = ExtractionStats()
        return self._iterate(selected, workload_id, client_id, start.timestamp(), end.timestamp(), self.stats)

    def _files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        if not self.path.exists():
            raise LogSourceError(
                f"log path {self.path} does not exist: set logs.path to a JSONL file or a directory of "
                "JSONL files (relative paths are resolved against the project root)"
            )
        if not self.path.is_dir():
            raise LogSourceError(f"log path {self.path} is neither a file nor a directory")
        files, ignored = [], []
        for entry in sorted(self.path.iterdir()):
            if entry.is_file() and entry.name.endswith(DATA_SUFFIXES) and not entry.name.startswith("."):
                files.append(entry)
            else:
                ignored.append(entry.name)
        if ignored:
            # Not records, but say so: a misnamed file (``.json``, a sub-folder) would otherwise vanish unseen.
            log.info("Ignoring %d entries of %s that are not %s files: %s", len(ignored), self.path,
                     "/".join(DATA_SUFFIXES), ignored[:10])
        if not files:
            raise LogSourceError(
                f"log directory {self.path} holds no log files (expected names ending in {', '.join(DATA_SUFFIXES)})"
            )
        return files

    def _dated_outside(self, path: Path, start: datetime, end: datetime) -> bool:
        if not self.skip_dated_files or path == self.path:
            return False
        match = _DAILY_NAME.match(path.name)
        if not match:
            return False
        try:
            day = date.fromisoformat(match.group(1))
        except ValueError:  # e.g. 2026-13-45: not a date after all, so read it
            return False
        day_start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        # The file may hold records in [day - margin, day + 1 day + margin); skip it only when
        # that span and the window [start, end) do not overlap.
        earliest = day_start - self.date_margin
        latest = day_start + timedelta(days=1) + self.date_margin
        return latest <= start or earliest >= end

    def _iterate(
        self,
        files: list[Path],
        workload_id: str,
        client_id: str,
        lo: float,
        hi: float,
        stats: ExtractionStats,
    ) -> Iterator[dict]:
        loads = _RepeatedToolsDecoder().loads if self.share_repeated_tools else json.loads
        millis = MILLIS_THRESHOLD
        try:
            for path in files:
                lineno = 0
                try:
                    with _open(path) as handle:
                        for lineno, line in enumerate(handle, 1):
                            try:
                                record = loads(line)
                            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
                                if not line.strip():
                                    continue
                                stats.read += 1
                                self._malformed(stats, path, lineno, f"not valid JSON ({exc})")
                                continue
                            stats.read += 1
                            if type(record) is not dict:
                                self._malformed(stats, path, lineno, f"a JSON {type(record).__name__}, not an object")
                                continue
                            stamp = record.get("timestamp")
                            # Fast path for the usual epoch seconds; everything else goes through the parser.
                            if type(stamp) is int and 0 <= stamp < millis:
                                seconds: float | None = stamp
                            else:
                                seconds = epoch_seconds(stamp)
                                if seconds is None:
                                    self._malformed(stats, path, lineno, _bad_timestamp(stamp))
                                    continue
                            if not lo <= seconds < hi:
                                stats.out_of_window += 1
                                continue
                            found = record.get("workload_id")
                            if found != workload_id:
                                if found is None or found == "":
                                    stats.missing_workload_id += 1
                                else:
                                    stats.other_workload += 1
                                continue
                            if record.get("client_id") != client_id:
                                stats.other_client += 1
                                continue
                            stats.matched += 1
                            yield record
                except (OSError, EOFError, zlib.error) as exc:
                    # A truncated or corrupt .gz file, or an I/O error: stop loudly rather than
                    # pretend the file ended. (gzip.BadGzipFile is an OSError.)
                    raise LogSourceError(
                        f"cannot read log file {path} (after line {lineno}): {exc}; "
                        "fix or remove the file, then rerun the task"
                    ) from exc
        finally:
            # Also runs when the caller stops early, so the log always has the counts.
            log.info("Log extraction from %s: %s", self.path, stats.summary())
            if stats.malformed > _WARN_FIRST:
                log.warning(
                    "%d malformed lines in total under %s (the first %d are shown above; all at DEBUG).",
                    stats.malformed,
                    self.path,
                    _WARN_FIRST,
                )

    @staticmethod
    def _malformed(stats: ExtractionStats, path: Path, lineno: int, reason: str) -> None:
        stats.malformed += 1
        if stats.malformed <= _WARN_FIRST:
            log.warning("Malformed log line %s:%d: %s. Counted as malformed and skipped.", path, lineno, reason)
        else:
            log.debug("Malformed log line %s:%d: %s.", path, lineno, reason)


class _RepeatedToolsDecoder:
    """``json.loads`` for log lines, parsing a repeated ``request.tools`` text only once.

    When a line has ``"tools":`` followed by a tools text seen before, that text is swapped
    for a sentinel string, the (much shorter) rest is parsed, and the sentinel is replaced
    by the list parsed earlier. The swap is kept only if the sentinel ends up exactly at
    ``request.tools`` (and the line held no sentinel of its own); anything else falls back
    to parsing the whole line, so the result always equals ``json.loads(line)``. The
    unescaped bytes ``"tools":[`` cannot occur inside a JSON string (its quotes would be
    escaped), which is why a byte search finds a structural key.

    Texts are learnt from lines parsed in full (a few variants, a bounded number of tries),
    and the shortcut switches itself off if it keeps missing, so logs without repeated
    tools pay next to nothing.
    """

    _KEY = b'"tools":'
    _SENTINEL = "\x00flywheel-shared-tools"
    _SENTINEL_JSON = b'"\\u0000flywheel-shared-tools"'
    _VARIANTS = 4

    def __init__(self) -> None:
        self.variants: list[tuple[bytes, list]] = []
        self.learn_budget = 32
        self.misses_left = 16
        self.decoder = json.JSONDecoder()

    def loads(self, line: bytes) -> Any:
        at = line.find(self._KEY)
        if at < 0:
            return json.loads(line)
        start = at + len(self._KEY)
        if line[start : start + 1] == b" ":
            start += 1
        for text, value in self.variants:
            if line.startswith(text, start):
                record = self._swapped(line, start, text, value)
                if record is not None:
                    return record
                break
        record = json.loads(line)  # a ValueError here is the caller's "malformed"
        if self.learn_budget > 0:
            self._learn(line, start, record)
        return record

    def _swapped(self, line: bytes, start: int, text: bytes, value: list) -> Any:
        if self._SENTINEL_JSON in line:
            return None
        try:
            record = json.loads(line[:start] + self._SENTINEL_JSON + line[start + len(text) :])
        except ValueError:  # a broken line: the full parse will say so
            return None
        request = record.get("request") if type(record) is dict else None
        if type(request) is dict and request.get("tools") == self._SENTINEL:
            request["tools"] = value
            return record
        # Valid JSON, but the text was not at request.tools.
        self.misses_left -= 1
        if self.misses_left <= 0:  # not the layout this shortcut is for: stop trying
            self.variants.clear()
            self.learn_budget = 0
        return None

    def _learn(self, line: bytes, start: int, record: Any) -> None:
        request = record.get("request") if type(record) is dict else None
        tools = request.get("tools") if type(request) is dict else None
        if type(tools) is not list or not tools:
            return
        self.learn_budget -= 1
        try:
            text = line.decode("utf-8")
            offset = len(line[:start].decode("utf-8"))
            value, end = self.decoder.raw_decode(text, offset)
        except ValueError:  # not UTF-8 (json.loads also reads UTF-16/32), or not at a value
            return
        blob = text[offset:end].encode("utf-8")
        if value != tools or any(blob == known for known, _ in self.variants):
            return
        # Cache a separate parse, so the record just read keeps a list of its own.
        self.variants.insert(0, (blob, value))
        del self.variants[self._VARIANTS :]


def _open(path: Path) -> IO[bytes]:
    # Sniff the gzip magic rather than trust the suffix: compressed files are sometimes
    # misnamed, and a .gz read as text would turn every line into a "malformed" count.
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == _GZIP_MAGIC:
        return gzip.open(path, "rb")
    return open(path, "rb", buffering=_READ_BUFFER)


def _bad_timestamp(value: object) -> str:
    if value is None:
        return "no timestamp"
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"unparseable timestamp {shown}"
