"""FileLogSource: JSONL files, gzip, directories of daily files, filters, counters, streaming."""

from __future__ import annotations

import gzip
import json
import logging
import types
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from include.flywheel.logs import FileLogSource, LogSource, LogSourceError

UTC = timezone.utc
START = datetime(2026, 11, 18, tzinfo=UTC)
END = START + timedelta(days=1)
T0 = int(START.timestamp())
T_END = int(END.timestamp())
WORKLOAD, CLIENT = "customer-support-tools", "acme-retail"


def rec(n: int, timestamp, workload=WORKLOAD, client=CLIENT) -> dict:
    """A record; ``...`` for workload or client leaves that key out."""
    record = {"n": n, "timestamp": timestamp}
    if workload is not ...:
        record["workload_id"] = workload
    if client is not ...:
        record["client_id"] = client
    return record


def write(path: Path, lines: list, gz: bool = False) -> Path:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def numbers(source: FileLogSource, start: datetime = START, end: datetime = END) -> list[int]:
    return [r["n"] for r in source.iter_records(WORKLOAD, CLIENT, start, end)]


# One line per case: what is yielded, and which counter each skipped line lands in.
MIXED = [
    rec(1, T0),  # epoch seconds at the inclusive start
    rec(2, "2026-11-18T12:00:00Z"),
    rec(3, "2026-11-18T13:00:00+01:00"),
    rec(4, "2026-11-18T23:59:59.999999"),  # naive ISO = UTC, last microsecond of the window
    rec(5, (T0 + 3600) * 1000),  # epoch milliseconds
    rec(6, T0 + 0.5),
    rec(50, T_END),  # out of window: the end is exclusive
    rec(51, T0 - 1),  # out of window: before
    rec(52, "2026-11-19T00:00:00Z"),  # out of window: end, ISO
    rec(60, T0 + 10, workload=...),  # missing workload_id
    rec(61, T0 + 10, workload=None),
    rec(62, T0 + 10, workload=""),
    rec(70, T0 + 10, workload="faq-chat"),  # another workload
    rec(80, T0 + 10, client="globex"),  # another client
    rec(81, T0 + 10, client=...),
    "{not json",  # malformed: not JSON
    "[1, 2, 3]",  # malformed: not an object
    '"just a string"',
    rec(90, "yesterday"),  # malformed: bad timestamp
    rec(91, None),
    {"n": 92, "workload_id": WORKLOAD, "client_id": CLIENT},  # malformed: no timestamp
    "",  # blank lines are not records
    "   ",
]
EXPECTED_STATS = {
    "read": 21,
    "matched": 6,
    "out_of_window": 3,
    "missing_workload_id": 3,
    "other_workload": 1,
    "other_client": 2,
    "malformed": 6,
}


def test_plain_file_filters_and_counts_every_reason(tmp_path: Path) -> None:
    source = FileLogSource(write(tmp_path / "logs.jsonl", MIXED))

    assert numbers(source) == [1, 2, 3, 4, 5, 6]
    assert source.stats.as_dict() == EXPECTED_STATS
    assert source.stats.read == source.stats.matched + source.stats.skipped
    assert isinstance(source, LogSource)


def test_out_of_window_is_checked_before_ids(tmp_path: Path) -> None:
    # A record of another workload outside the window counts as out of window (the ids
    # counters describe the window, as the Elasticsearch counts do).
    source = FileLogSource(write(tmp_path / "logs.jsonl", [rec(1, T0 - 5, workload="faq-chat"), rec(2, T0 - 5)]))

    assert numbers(source) == []
    assert source.stats.out_of_window == 2 and source.stats.other_workload == 0


def test_gzip_file_gives_the_same_result(tmp_path: Path) -> None:
    source = FileLogSource(write(tmp_path / "logs.jsonl.gz", MIXED, gz=True))

    assert numbers(source) == [1, 2, 3, 4, 5, 6]
    assert source.stats.as_dict() == EXPECTED_STATS


def test_gzip_is_recognised_by_content_not_name(tmp_path: Path) -> None:
    source = FileLogSource(write(tmp_path / "misnamed.jsonl", [rec(1, T0)], gz=True))

    assert numbers(source) == [1]
    assert source.stats.malformed == 0


def test_truncated_gzip_is_an_error_naming_the_file(tmp_path: Path) -> None:
    data = gzip.compress("".join(json.dumps(rec(i, T0 + i)) + "\n" for i in range(2000)).encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(LogSourceError, match=r"cut\.jsonl\.gz \(after line \d+\)"):
        numbers(FileLogSource(path))


def test_directory_reads_files_in_name_order(tmp_path: Path) -> None:
    write(tmp_path / "b.jsonl", [rec(3, T0 + 3)])
    write(tmp_path / "a.jsonl.gz", [rec(1, T0 + 100), rec(2, T0 + 1)], gz=True)
    write(tmp_path / "c.ndjson", [rec(4, T0)])
    write(tmp_path / "notes.txt", ["not a log"])  # ignored: not a log file name
    write(tmp_path / "sub" / "d.jsonl", [rec(5, T0)])  # sub-folders are not read
    source = FileLogSource(tmp_path)

    assert numbers(source) == [1, 2, 3, 4]
    assert source.stats.read == 4


def test_daily_files_far_from_the_window_are_skipped(tmp_path: Path) -> None:
    for day in range(10, 27):
        write(tmp_path / f"2026-11-{day}.jsonl", [rec(day, int(datetime(2026, 11, day, 12, tzinfo=UTC).timestamp()))])
    # A broken line in a file far from the window proves that file is never opened.
    write(tmp_path / "2026-11-10.jsonl", ["{broken", rec(10, int(datetime(2026, 11, 10, 12, tzinfo=UTC).timestamp()))])
    source = FileLogSource(tmp_path)

    assert numbers(source) == [18]
    # Only the window's day and its neighbours (the one-day margin) are read.
    assert source.stats.read == 3 and source.stats.out_of_window == 2 and source.stats.malformed == 0

    unskipped = FileLogSource(tmp_path, skip_dated_files=False)
    assert numbers(unskipped) == [18]
    assert unskipped.stats.read == 18 and unskipped.stats.malformed == 1


@pytest.mark.parametrize(
    ("file_day", "stamp", "start", "end"),
    [
        # Written late: a record of 00:30 on the 19th still in the file of the 18th.
        ("2026-11-18", "2026-11-19T00:30:00Z", datetime(2026, 11, 19, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC)),
        # Named by a writer's local day (UTC-8): the 17th's file holds the 18th's early hours.
        ("2026-11-17", "2026-11-17T22:00:00-08:00", START, END),
        # Named by a writer's local day (UTC+14): the 19th's file holds the 18th's last hours.
        ("2026-11-19", "2026-11-19T09:00:00+14:00", START, END),
        # An hourly window at the very end of a day, file of the next day.
        ("2026-11-19", "2026-11-18T23:59:59Z", datetime(2026, 11, 18, 23, tzinfo=UTC), END),
        # A window that starts mid-day and ends on the next.
        ("2026-11-19", "2026-11-19T05:00:00Z", datetime(2026, 11, 18, 18, tzinfo=UTC),
         datetime(2026, 11, 19, 6, tzinfo=UTC)),
    ],
)
def test_daily_file_skipping_never_loses_records_near_the_boundaries(tmp_path, file_day, stamp, start, end) -> None:
    for day in range(12, 25):
        write(tmp_path / f"2026-11-{day}.jsonl", [])
    write(tmp_path / f"{file_day}.jsonl", [rec(1, stamp)])

    assert numbers(FileLogSource(tmp_path), start, end) == [1]


def test_names_that_only_look_like_dates_are_read(tmp_path: Path) -> None:
    write(tmp_path / "2026-13-45.jsonl", [rec(1, T0)])  # not a real date
    write(tmp_path / "2020-01-01-extra.jsonl", [rec(2, T0)])  # not exactly a date

    assert numbers(FileLogSource(tmp_path)) == [2, 1]  # name order


def test_it_streams(tmp_path: Path) -> None:
    path = write(tmp_path / "logs.jsonl", [rec(1, T0), rec(2, T0), "{broken"])
    source = FileLogSource(path)

    records = source.iter_records(WORKLOAD, CLIENT, START, END)

    assert isinstance(records, types.GeneratorType)
    assert next(records)["n"] == 1
    # Only the first line has been read: the broken third line is not reached yet.
    assert source.stats.read == 1 and source.stats.malformed == 0
    assert [r["n"] for r in records] == [2]
    assert source.stats.malformed == 1


def test_stats_are_reset_by_each_call(tmp_path: Path) -> None:
    source = FileLogSource(write(tmp_path / "logs.jsonl", [rec(1, T0), rec(2, T0 - 1)]))

    numbers(source)
    first = source.stats
    assert numbers(source, START - timedelta(hours=1), END) == [1, 2]
    assert source.stats.as_dict()["matched"] == 2 and first.matched == 1


def test_malformed_lines_are_logged_with_file_and_line(tmp_path: Path, caplog) -> None:
    lines = [rec(1, T0)] + ["{bad"] * 7 + [rec(2, "never")]
    path = write(tmp_path / "logs.jsonl", lines)
    caplog.set_level(logging.DEBUG, logger="include.flywheel.logs.files")

    assert numbers(FileLogSource(path)) == [1]

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert [w.split(": ")[0] for w in warnings[:5]] == [f"Malformed log line {path}:{n}" for n in range(2, 7)]
    assert f"{path}:2: not valid JSON" in warnings[0]
    assert "8 malformed lines in total" in warnings[5]
    assert f"Malformed log line {path}:9: unparseable timestamp 'never'." in debug
    assert len(debug) == 3
    summary = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("read 9, matched 1; skipped: 8 malformed" in line for line in summary)


def test_bad_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(LogSourceError, match=r"log path .*missing does not exist.*logs\.path"):
        FileLogSource(tmp_path / "missing").iter_records(WORKLOAD, CLIENT, START, END)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("no logs here")
    with pytest.raises(LogSourceError, match="holds no log files"):
        FileLogSource(tmp_path / "empty").iter_records(WORKLOAD, CLIENT, START, END)


def test_window_and_ids_are_checked_at_the_call(tmp_path: Path) -> None:
    source = FileLogSource(write(tmp_path / "logs.jsonl", [rec(1, T0)]))

    with pytest.raises(ValueError, match="no timezone"):
        source.iter_records(WORKLOAD, CLIENT, START.replace(tzinfo=None), END)
    with pytest.raises(ValueError, match="empty window"):
        source.iter_records(WORKLOAD, CLIENT, END, START)
    with pytest.raises(ValueError, match="workload_id"):
        source.iter_records("", CLIENT, START, END)


# ----------------------------------------------------------------- repeated tools shortcut

TOOLS = [{"type": "function", "function": {"name": "get_order_status", "parameters": {"type": "object"}}}]
OTHER_TOOLS = [{"type": "function", "function": {"name": "reset_password", "parameters": {"type": "object"}}}]


def tool_line(n: int, tools=TOOLS, content: str = "hi", space: bool = False, **extra) -> str:
    record = {"n": n, "workload_id": WORKLOAD, "client_id": CLIENT, "timestamp": T0 + n,
              "request": {"messages": [{"role": "user", "content": content}], "tools": tools}, **extra}
    return json.dumps(record, ensure_ascii=False, separators=(", ", ": ") if space else (",", ":"))


def both_ways(path: Path) -> tuple[list[dict], list[dict], FileLogSource, FileLogSource]:
    shared, plain = FileLogSource(path), FileLogSource(path, share_repeated_tools=False)
    window = (WORKLOAD, CLIENT, START, END)
    return list(shared.iter_records(*window)), list(plain.iter_records(*window)), shared, plain


def test_repeated_tools_are_parsed_once_and_shared(tmp_path: Path) -> None:
    path = write(tmp_path / "logs.jsonl", [tool_line(n) for n in range(5)])

    shared, plain, *_ = both_ways(path)

    assert shared == plain
    tools = [r["request"]["tools"] for r in shared]
    # Learnt from the first line (which keeps its own list), then shared by the next ones.
    assert tools[1] is tools[2] is tools[3] is tools[4] and tools[0] is not tools[1]
    assert plain[1]["request"]["tools"] is not plain[2]["request"]["tools"]


def test_repeated_tools_shortcut_gives_exactly_json_loads(tmp_path: Path) -> None:
    sentinel = "\x00flywheel-shared-tools"
    lines = [
        tool_line(1),
        tool_line(2),
        tool_line(3, space=True),  # "tools": [...] with a space
        tool_line(4, tools=OTHER_TOOLS),  # another tool list
        tool_line(5, content="ünïcödé ✓ before the tools"),
        tool_line(6, content='a user pasting {"tools":' + json.dumps(TOOLS) + "}"),  # escaped inside a string
        tool_line(7, content=sentinel),  # the sentinel itself, as data
        tool_line(8, tools=sentinel),
        # The known tools text first under another key: the shortcut must not misplace it.
        json.dumps({"meta": {"tools": TOOLS}, "n": 9, "workload_id": WORKLOAD, "client_id": CLIENT,
                    "timestamp": T0 + 9, "request": {"tools": OTHER_TOOLS}}, separators=(",", ":")),
        # Two "tools" keys: JSON keeps the last one.
        tool_line(10)[:-2] + ',"tools":"last"}}',
        tool_line(11).replace('"request":{', '"request":{"tools":' + json.dumps(TOOLS, separators=(",", ":")) + ",", 1),
        tool_line(12)[:-3],  # cut off after the tools: malformed
        tool_line(13, tools=[]),
        tool_line(14),
        tool_line(15, space=True),
        # The known text under another key first, and the sentinel as data at request.tools.
        json.dumps({"meta": {"tools": TOOLS}, "n": 16, "workload_id": WORKLOAD, "client_id": CLIENT,
                    "timestamp": T0 + 16, "request": {"tools": sentinel}}, separators=(",", ":")),
        tool_line(17, space=True),
    ]
    path = write(tmp_path / "logs.jsonl", lines)

    shared, plain, shared_source, plain_source = both_ways(path)

    assert [r["n"] for r in plain] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17]
    assert shared == plain
    by_n = {r["n"]: r for r in shared}
    assert by_n[14]["request"]["tools"] is by_n[2]["request"]["tools"]  # the shortcut did work
    # "tools": [...] with a space is learnt too (from 3) and shared by the next such lines.
    assert by_n[15]["request"]["tools"] is by_n[17]["request"]["tools"] is not by_n[3]["request"]["tools"]
    assert by_n[16]["meta"]["tools"] == TOOLS and by_n[16]["request"]["tools"] == sentinel
    assert shared_source.stats.as_dict() == plain_source.stats.as_dict()
    assert shared_source.stats.malformed == 1
    assert plain[8]["request"]["tools"] == OTHER_TOOLS and plain[9]["request"]["tools"] == "last"
    assert plain[6]["request"]["messages"][0]["content"] == sentinel


def test_repeated_tools_shortcut_on_the_bundled_sample(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[4] / "include" / "sample_data" / "logs"
    window = ("customer-support-tools", "acme-retail", datetime(2026, 11, 17, tzinfo=UTC),
              datetime(2026, 11, 24, tzinfo=UTC))
    shared, plain = FileLogSource(sample), FileLogSource(sample, share_repeated_tools=False)

    assert list(shared.iter_records(*window)) == list(plain.iter_records(*window))
    assert shared.stats.as_dict() == plain.stats.as_dict() and shared.stats.matched > 1000
