"""The sample log generator and the bundled sample it wrote."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import re
import types
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from include.flywheel.logs import FileLogSource, epoch_seconds
from include.sample_data import catalog
from include.sample_data.generate import (
    RAW_LINE_KEY,
    SAMPLE_COUNTS,
    generate_records,
    main,
    to_jsonl_line,
    write_jsonl,
    write_sample,
)

UTC = timezone.utc
SAMPLE = Path(__file__).resolve().parents[3] / "include" / "sample_data" / "logs"
FIRST_DAY = datetime(2026, 11, 17, tzinfo=UTC)
DAYS = [FIRST_DAY + timedelta(days=n) for n in range(7)]
WEEK = (FIRST_DAY, FIRST_DAY + timedelta(days=7))


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return [line for path in sorted(SAMPLE.glob("*.jsonl")) for line in path.read_text("utf-8").splitlines()]


@pytest.fixture(scope="module")
def records(lines: list[str]) -> list[dict]:
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pass
    return parsed


def _user_text(record: dict) -> str:
    messages = (record.get("request") or {}).get("messages") or []
    return "\n".join(m["content"] for m in messages if m.get("role") == "user")


def _normalized(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _message(record: dict) -> dict | None:
    choices = (record.get("response") or {}).get("choices")
    return choices[0].get("message") if choices else None


def _arguments_parse(call: dict) -> bool:
    arguments = call["function"]["arguments"]
    if isinstance(arguments, dict):
        return True
    try:
        return isinstance(json.loads(arguments), dict)
    except ValueError:
        return False


# ------------------------------------------------------------------- the bundled sample


def test_regenerating_gives_byte_identical_files(tmp_path: Path) -> None:
    write_sample(tmp_path)

    assert [f"{day:%Y-%m-%d}.jsonl" for day in DAYS] == sorted(_digests(SAMPLE))
    assert _digests(tmp_path) == _digests(SAMPLE)


def test_about_two_thousand_records_over_seven_days(lines: list[str]) -> None:
    assert len(lines) == sum(SAMPLE_COUNTS.values()) == 2000
    for day in DAYS:
        count = len((SAMPLE / f"{day:%Y-%m-%d}.jsonl").read_text().splitlines())
        assert 250 <= count <= 320, (day, count)


def test_every_day_passes_the_minimum_after_the_usual_drops() -> None:
    """An independent check of the volume promise: per UTC day, after format checks, tool-call
    checks and dedup on normalized user turns, >= 150 tool-calling and >= 60 generic records."""
    source = FileLogSource(SAMPLE)
    for day in DAYS:
        for workload, minimum in (("customer-support-tools", 150), ("faq-chat", 60)):
            seen, kept = set(), 0
            for record in source.iter_records(workload, "acme-retail", day, day + timedelta(days=1)):
                message = _message(record)
                if not record["request"].get("messages") or not message:
                    continue
                if workload == "customer-support-tools":
                    calls = message.get("tool_calls")
                    if not calls or not all(c["type"] == "function" and _arguments_parse(c) for c in calls):
                        continue
                key = _normalized(_user_text(record))
                if key not in seen:
                    seen.add(key)
                    kept += 1
            assert kept >= minimum, (workload, day.date(), kept)


def test_the_sample_carries_every_defect(lines: list[str], records: list[dict]) -> None:
    malformed = [line for line in lines if not _parses_to_object(line)]
    bad_stamps = [r for r in records if epoch_seconds(r.get("timestamp")) is None]
    defects = {
        "malformed_json": len(malformed),
        "missing_workload_id": sum(1 for r in records if not r.get("workload_id")),
        "other_client": sum(1 for r in records if r.get("client_id") == "globex"),
        "empty_messages": sum(1 for r in records if r.get("request", {}).get("messages") == []),
        "no_choices": sum(1 for r in records if not r.get("response", {}).get("choices")),
        "unparseable_arguments": sum(
            1 for r in records if any(not _arguments_parse(c) for c in (_message(r) or {}).get("tool_calls") or [])
        ),
        "bad_timestamp": len(bad_stamps),
    }
    assert all(count > 0 for count in defects.values()), defects

    by_text = Counter(_user_text(r) for r in records if _user_text(r))
    by_normalized = Counter(_normalized(_user_text(r)) for r in records if _user_text(r))
    exact = sum(n - 1 for n in by_text.values())
    near = sum(n - 1 for n in by_normalized.values()) - exact
    assert exact >= 5 and near >= 5

    # About 3-5% of the lines are defects (natural duplicates aside).
    total = sum(defects.values()) + exact + near
    assert 0.03 * len(lines) <= total <= 0.06 * len(lines), (defects, exact, near)


def _parses_to_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_timestamps_come_as_epoch_and_as_iso_strings(records: list[dict]) -> None:
    kinds = Counter(type(r.get("timestamp")).__name__ for r in records)
    iso = [r["timestamp"] for r in records if isinstance(r.get("timestamp"), str) and epoch_seconds(r["timestamp"])]
    assert kinds["int"] > 1500
    assert any(s.endswith("Z") for s in iso) and any(re.search(r"[+-]\d\d:\d\d$", s) for s in iso)
    assert any(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", s) for s in iso)  # naive = UTC


def test_tool_calls_use_both_argument_encodings_and_content_forms(records: list[dict]) -> None:
    messages = [m for r in records if (m := _message(r)) and m.get("tool_calls")]
    encodings = Counter(type(c["function"]["arguments"]).__name__ for m in messages for c in m["tool_calls"])
    assert encodings["str"] > 300 and encodings["dict"] > 150
    assert sum(1 for m in messages if "content" in m and m["content"] is None) > 100
    assert sum(1 for m in messages if "content" not in m) > 100


def test_tools_are_a_realistic_catalogue(records: list[dict]) -> None:
    assert len(catalog.TOOLS) >= 8
    names = set()
    for tool in catalog.TOOLS:
        function = tool["function"]
        names.add(function["name"])
        assert tool["type"] == "function" and function["description"]
        schema = function["parameters"]
        assert schema["type"] == "object" and set(schema["required"]) <= set(schema["properties"])
        # At least one phrasing shares no word with the description: keyword matching is not enough.
        described = set(re.findall(r"[a-z]{3,}", function["description"].lower()))
        plain = [re.sub(r"\{\w+\}", "", t.lower()) for t, _ in catalog.TOOL_TEMPLATES[function["name"]]]
        assert any(not set(re.findall(r"[a-z]{3,}", t)) & described for t in plain), function["name"]
        assert len(catalog.TOOL_TEMPLATES[function["name"]]) >= 4
    tool_records = [r for r in records if r.get("workload_id") == "customer-support-tools"]
    assert all(r["request"]["tools"] == catalog.TOOLS for r in tool_records)
    assert all(r["request"]["tool_choice"] == "auto" and "temperature" in r["request"] for r in tool_records)

    used = Counter(
        c["function"]["name"] for r in tool_records if (m := _message(r)) for c in m.get("tool_calls") or []
    )
    assert set(used) == names  # every tool appears...
    assert used.most_common()[0][1] >= 8 * used.most_common()[-1][1]  # ...with a skewed frequency


def test_arguments_match_the_schemas(records: list[dict]) -> None:
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in catalog.TOOLS}
    checked = 0
    for record in records:
        for call in (_message(record) or {}).get("tool_calls") or []:
            if not _arguments_parse(call):
                continue
            arguments = call["function"]["arguments"]
            arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
            schema = schemas[call["function"]["name"]]
            assert set(schema["required"]) <= set(arguments) <= set(schema["properties"]), call
            for key, value in arguments.items():
                if "enum" in schema["properties"][key]:
                    assert value in schema["properties"][key]["enum"]
                if key == "order_id":
                    assert re.fullmatch(r"ORD-\d{5}", value)
            checked += 1
    assert checked > 1000


def test_conversations_are_varied(records: list[dict]) -> None:
    tool_records = [r for r in records if r.get("workload_id") == "customer-support-tools" and _message(r)]
    multi_turn = [r for r in tool_records if any(m["role"] == "tool" for m in r["request"]["messages"])]
    clarifying = [r for r in tool_records if not _message(r).get("tool_calls")]
    assert len(multi_turn) > 100 and len(clarifying) > 80
    assert all(_message(r)["content"].endswith("?") or "?" in _message(r)["content"] for r in clarifying)
    assert all(r["response"]["usage"]["total_tokens"] > 0 for r in tool_records)
    texts = {_normalized(_user_text(r)) for r in tool_records}
    assert len(texts) > 0.9 * len(tool_records)


def test_faq_answers_are_one_per_topic(records: list[dict]) -> None:
    answers = {topic["answer"] for topic in catalog.FAQ_TOPICS.values()}
    faq = [r for r in records if r.get("workload_id") == "faq-chat" and _message(r)]
    given = Counter(_message(r)["content"] for r in faq)
    assert set(given) <= answers and len(given) == len(answers)
    assert all("tools" not in r["request"] for r in faq)
    questions = {_normalized(_user_text(r)) for r in faq}
    assert len(questions) > 0.9 * len(faq)


# ------------------------------------------------------------------- the generator


def test_same_seed_same_records_other_seed_other_records() -> None:
    first = [to_jsonl_line(r) for r in generate_records(300, start=WEEK[0], end=WEEK[1])]
    again = [to_jsonl_line(r) for r in generate_records(300, start=WEEK[0], end=WEEK[1])]
    other = [to_jsonl_line(r) for r in generate_records(300, seed=8, start=WEEK[0], end=WEEK[1])]

    assert first == again and first != other


def test_it_streams_and_spreads_timestamps_over_the_window() -> None:
    start, end = datetime(2026, 1, 1, 6, tzinfo=UTC), datetime(2026, 1, 1, 7, tzinfo=UTC)
    records = generate_records(1_000_000, start=start, end=end, workload="generic")

    assert isinstance(records, types.GeneratorType)
    head = list(itertools.islice(records, 5))  # a million promised, five made
    assert [r["workload_id"] for r in head] == ["faq-chat"] * 5

    stamps = [epoch_seconds(r["timestamp"]) for r in generate_records(400, start=start, end=end, defects=False)]
    assert all(start.timestamp() <= s < end.timestamp() for s in stamps)
    assert stamps == sorted(stamps)
    assert stamps[0] < start.timestamp() + 60 and stamps[-1] > end.timestamp() - 60


def test_without_defects_every_record_is_clean() -> None:
    for record in generate_records(500, start=WEEK[0], end=WEEK[1], defects=False):
        assert RAW_LINE_KEY not in record and record["workload_id"] == "customer-support-tools"
        assert record["client_id"] == "acme-retail" and record["request"]["messages"]
        assert epoch_seconds(record["timestamp"]) is not None
        message = _message(record)
        assert message and all(_arguments_parse(c) for c in message.get("tool_calls") or [])


def test_yielded_records_can_be_changed_freely() -> None:
    # Changing a record must not leak into later ones (duplicates are copied, not shared).
    plain = [to_jsonl_line(r) for r in generate_records(2000, start=WEEK[0], end=WEEK[1])]
    changed = []
    for record in generate_records(2000, start=WEEK[0], end=WEEK[1]):
        changed.append(to_jsonl_line(record))
        if "request" in record:
            record["request"]["messages"] = ["changed"]
    assert changed == plain


def test_write_jsonl_plain_and_gzip(tmp_path: Path) -> None:
    items = list(generate_records(400, start=WEEK[0], end=WEEK[1]))
    raw = [r[RAW_LINE_KEY] for r in items if RAW_LINE_KEY in r]
    assert raw, "expected at least one malformed line among 400 items"

    assert write_jsonl(items, tmp_path / "a.jsonl") == 400
    assert write_jsonl(items, tmp_path / "a.jsonl.gz") == 400
    assert write_jsonl(items, tmp_path / "b.jsonl.gz") == 400

    text = (tmp_path / "a.jsonl").read_text("utf-8")
    assert gzip.decompress((tmp_path / "a.jsonl.gz").read_bytes()).decode() == text
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()
    assert all(line in text.splitlines() for line in raw)
    assert json.loads(text.splitlines()[0]) == items[0]


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        generate_records(1, start=datetime(2026, 1, 1), end=WEEK[1])
    with pytest.raises(ValueError, match="unknown workload"):
        generate_records(1, start=WEEK[0], end=WEEK[1], workload="chat")
    with pytest.raises(ValueError, match="must be after"):
        generate_records(1, start=WEEK[1], end=WEEK[0])


def test_command_line(tmp_path: Path, capsys) -> None:
    code = main(["--out", str(tmp_path), "--start", "2026-12-01", "--days", "2", "--tool-calling", "40",
                 "--generic", "20", "--no-defects"])

    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2026-12-01.jsonl", "2026-12-02.jsonl"]
    assert sum(len(p.read_text().splitlines()) for p in tmp_path.iterdir()) == 60
    assert "defects: {}" in capsys.readouterr().out
    assert main(["--out", str(tmp_path), "--days", "0"]) == 2
    assert "days must be >= 1" in capsys.readouterr().err
