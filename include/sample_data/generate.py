"""Seeded generator of realistic LLM logs, and the script that writes the bundled sample.

Two kinds of traffic of the fictional store "Acme Retail" (client ``acme-retail``):

- ``tool_calling`` (workload ``customer-support-tools``): a support assistant with 12
  tools (orders, shipments, refunds, addresses, passwords, stores, stock, discounts,
  loyalty points, return pickups, hand-over to a human). Varied user phrasing, skewed tool
  frequencies, multi-turn conversations, clarifying questions without tool calls, tool-call
  arguments both as JSON strings (OpenAI) and as already-parsed objects.
- ``generic`` (workload ``faq-chat``): store FAQ questions with one reference answer per topic.

With ``defects=True`` about 4% of the records carry the defects real logs have (see
``DEFECT_KINDS`` and the README). Everything is drawn from ``random.Random`` seeded per
workload, so the same arguments always give the same records, and records are produced
one at a time: a million of them cost no memory.

Write the bundled sample (the defaults reproduce the committed files byte for byte)::

    python -m include.sample_data.generate --out include/sample_data/logs
"""

from __future__ import annotations

import argparse
import gzip
import heapq
import json
import math
import random
import re
import string
import sys
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO

from include.sample_data import catalog

CLIENT_ID = "acme-retail"
OTHER_CLIENT_ID = "globex"
#: Workload kind -> the workload id its records carry.
WORKLOAD_IDS: dict[str, str] = {"tool_calling": "customer-support-tools", "generic": "faq-chat"}

#: A defect of kind ``malformed_json`` is a line that is not JSON, so it cannot be a normal
#: record: it is yielded as ``{RAW_LINE_KEY: "<the raw line>"}``. :func:`to_jsonl_line` and
#: :func:`write_jsonl` write such an item as the raw line itself.
RAW_LINE_KEY = "__raw_line__"

#: Share of defect records when ``defects=True``.
DEFECT_RATE = 0.04
#: Defect kinds and their relative weights (``unparseable_arguments`` only for tool calling).
DEFECT_KINDS: dict[str, float] = {
    "malformed_json": 3,
    "missing_workload_id": 2,
    "other_client": 2,
    "exact_duplicate": 2,
    "near_duplicate": 2,
    "empty_messages": 1,
    "no_choices": 1,
    "unparseable_arguments": 2,
    "bad_timestamp": 1,
}

# The bundled sample: one week of logs, written as one file per UTC day.
SAMPLE_START = date(2026, 11, 17)
SAMPLE_DAYS = 7
SAMPLE_COUNTS: dict[str, int] = {"tool_calling": 1400, "generic": 600}
DEFAULT_OUT = Path(__file__).resolve().parent / "logs"

_FIELDS = string.Formatter()
_TYPO_WORD = re.compile(r"(?<![{A-Za-z_])[A-Za-z]{4,}(?![}A-Za-z_])")
_COMPACT = (",", ":")
_TOOLS_JSON = json.dumps(catalog.TOOLS, ensure_ascii=False, separators=_COMPACT)
_TOOLS_PLACEHOLDER = "\x00flywheel-sample-tools"
_TOOLS_PLACEHOLDER_JSON = json.dumps(_TOOLS_PLACEHOLDER)  # control characters are always escaped
# Timestamp renderings: mostly epoch seconds, some ISO 8601 strings (Z, an offset, naive UTC).
_STAMP_FORMATS = ("epoch", "iso_z", "iso_offset", "iso_naive")
_STAMP_WEIGHTS = (86, 6, 4, 4)
_OFFSETS = (timezone(timedelta(hours=-5)), timezone(timedelta(hours=1)), timezone(timedelta(hours=-8)))
# Multi-turn follow-ups: (user text, tool, fixed arguments).
_CANCEL_FOLLOW_UPS = [
    ("ok actually, please cancel it", {}),
    ("Can you cancel it then?", {}),
    ("hmm in that case I don't want it anymore, cancel please", {"reason": "changed_mind"}),
    ("Then cancel it, I found it cheaper", {"reason": "found_cheaper"}),
    ("too slow. cancel the order", {"reason": "delivery_too_slow"}),
]
_REFUND_FOLLOW_UPS = [
    ("It arrived but it's damaged. I want a refund.", "damaged"),
    ("The box was missing parts though. Can I get my money back?", "missing_parts"),
    ("yes it came but it's the wrong item", "wrong_item"),
    ("It arrived, but it's nothing like the description, refund please", "not_as_described"),
]


def generate_records(
    count: int,
    *,
    seed: int = 7,
    start: datetime,
    end: datetime,
    workload: str = "tool_calling",
    defects: bool = True,
) -> Iterator[dict]:
    """Yield ``count`` log records with timestamps spread over ``[start, end)``, in time order.

    Args:
        count: How many items to yield (defect items included).
        seed: Same seed, same records.
        start: Inclusive start of the time span, timezone-aware.
        end: Exclusive end, timezone-aware, after ``start``.
        workload: ``"tool_calling"`` (workload ``customer-support-tools``) or ``"generic"``
            (workload ``faq-chat``).
        defects: Mix in about 4% realistic defects. A ``malformed_json`` defect is yielded
            as ``{RAW_LINE_KEY: line}``: write items with :func:`write_jsonl` or
            :func:`to_jsonl_line` to get the raw line in the file.

    Returns:
        A lazy iterator of fresh dicts, except ``request["tools"]``, which is one list shared by
        every tool-calling record (as a client sends the same tool list each time): treat it as
        read-only.

    Raises:
        ValueError: a negative count, an unknown workload, or an invalid span.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if workload not in WORKLOAD_IDS:
        raise ValueError(f"unknown workload {workload!r}; expected one of {sorted(WORKLOAD_IDS)}")
    for name, moment in (("start", start), ("end", end)):
        if moment.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware (e.g. tzinfo=timezone.utc), got {moment.isoformat()}")
    if end <= start:
        raise ValueError(f"end {end.isoformat()} must be after start {start.isoformat()}")
    return (item[1] for item in _stream(count, seed, start, end, workload, defects))


def to_jsonl_line(record: dict) -> str:
    """One JSONL line (without the newline) for a generated item; raw for ``malformed_json`` defects."""
    if len(record) == 1 and RAW_LINE_KEY in record:
        return record[RAW_LINE_KEY]
    request = record.get("request")
    if type(request) is dict and request.get("tools") is catalog.TOOLS:
        # The shared tool list is most of a line: serialise it once and splice it in (same bytes,
        # several times faster when writing a million records).
        line = json.dumps(
            {**record, "request": {**request, "tools": _TOOLS_PLACEHOLDER}}, ensure_ascii=False, separators=_COMPACT
        )
        return line.replace(_TOOLS_PLACEHOLDER_JSON, _TOOLS_JSON, 1)
    return json.dumps(record, ensure_ascii=False, separators=_COMPACT)


def write_jsonl(records: Iterable[dict], path: Path | str) -> int:
    """Write items one per line to ``path`` (gzip-compressed if it ends in ``.gz``); return how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        # No name and mtime 0 in the gzip header: the same records give the same bytes.
        with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as packed:
            return _write_lines(records, _TextWriter(packed))
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        return _write_lines(records, handle)


def write_sample(
    out: Path | str = DEFAULT_OUT,
    *,
    seed: int = 7,
    start_day: date = SAMPLE_START,
    days: int = SAMPLE_DAYS,
    counts: dict[str, int] | None = None,
    defects: bool = True,
) -> dict[str, Any]:
    """Write both workloads, interleaved by time, as daily files ``out/YYYY-MM-DD.jsonl``.

    Days are UTC days. The defaults write the bundled sample.

    Returns:
        A summary: records per file, per workload and per defect kind.
    """
    counts = dict(SAMPLE_COUNTS if counts is None else counts)
    unknown = sorted(set(counts) - set(WORKLOAD_IDS))
    if unknown:
        raise ValueError(f"unknown workload(s) {unknown}; expected {sorted(WORKLOAD_IDS)}")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    start = datetime(start_day.year, start_day.month, start_day.day, tzinfo=timezone.utc)
    end = start + timedelta(days=days)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    streams = [_stream(count, seed, start, end, workload, defects) for workload, count in sorted(counts.items())]
    per_file: Counter[str] = Counter()
    per_workload: Counter[str] = Counter()
    per_defect: Counter[str] = Counter()
    handle: TextIO | None = None
    current = ""
    try:
        for epoch, record, workload, defect in heapq.merge(*streams, key=lambda item: item[0]):
            name = datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d") + ".jsonl"
            if name != current:
                if handle is not None:
                    handle.close()
                handle = open(out / name, "w", encoding="utf-8", newline="\n")
                current = name
            handle.write(to_jsonl_line(record) + "\n")
            per_file[name] += 1
            per_workload[workload] += 1
            if defect:
                per_defect[defect] += 1
    finally:
        if handle is not None:
            handle.close()
    return {"files": dict(per_file), "workloads": dict(per_workload), "defects": dict(sorted(per_defect.items()))}


# --------------------------------------------------------------------------- internals


class _TextWriter:
    """Just enough of a text file over a binary one (for gzip) for ``_write_lines``."""

    def __init__(self, binary: Any) -> None:
        self._binary = binary

    def write(self, text: str) -> None:
        self._binary.write(text.encode("utf-8"))


def _write_lines(records: Iterable[dict], handle: Any) -> int:
    written = 0
    for record in records:
        handle.write(to_jsonl_line(record) + "\n")
        written += 1
    return written


def _stream(
    count: int, seed: int, start: datetime, end: datetime, workload: str, defects: bool
) -> Iterator[tuple[float, dict, str, str | None]]:
    """Yield ``(epoch seconds, item, workload, defect kind or None)`` in time order."""
    # A string seed is hashed with SHA-512 by random.seed: stable across runs and platforms,
    # and independent streams for the two workloads.
    factory = _Factory(random.Random(f"flywheel-sample:{seed}:{workload}"), workload)
    lo, hi = start.timestamp(), end.timestamp()
    step = (hi - lo) / count if count else 0.0
    last = math.nextafter(hi, -math.inf)
    rng = factory.rng
    for index in range(count):
        moment = min(lo + (index + rng.random()) * step, last)
        whole = math.floor(moment)
        epoch = float(whole) if whole >= lo else moment
        wanted = factory.pick_defect() if defects and rng.random() < DEFECT_RATE else None
        record, defect = factory.record(epoch, wanted)
        yield epoch, record, workload, defect


class _Factory:
    """Builds the records of one workload from one random stream."""

    def __init__(self, rng: random.Random, workload: str) -> None:
        self.rng = rng
        self.workload = workload
        self.workload_id = WORKLOAD_IDS[workload]
        self.tools_chars = len(json.dumps(catalog.TOOLS, separators=_COMPACT))
        self.tool_names = list(catalog.TOOL_WEIGHTS)
        self.tool_weights = list(catalog.TOOL_WEIGHTS.values())
        self.properties = {
            tool["function"]["name"]: list(tool["function"]["parameters"]["properties"]) for tool in catalog.TOOLS
        }
        self.topics = list(catalog.FAQ_TOPICS)
        self.topic_weights = [topic["weight"] for topic in catalog.FAQ_TOPICS.values()]
        kinds = {k: w for k, w in DEFECT_KINDS.items() if workload == "tool_calling" or k != "unparseable_arguments"}
        self.defect_kinds, self.defect_weights = list(kinds), list(kinds.values())
        self.sized = [p for p in catalog.PRODUCTS if p[1] in ("shoe", "apparel")]
        self.gadgets = [p[0] for p in catalog.PRODUCTS if p[1] == "gadget"]
        self.field_cache: dict[str, set[str]] = {}
        # Records kept (as JSON) to be repeated later by a duplicate defect. Only a sampled few
        # are kept, so yielded records are never referenced again and may be changed freely.
        self.duplicate_sources: deque[str] = deque(maxlen=4)

    # ------------------------------------------------------------- top level

    def pick_defect(self) -> str:
        return self.rng.choices(self.defect_kinds, self.defect_weights)[0]

    def record(self, epoch: float, defect: str | None) -> tuple[dict, str | None]:
        """Build one record, damaged by ``defect`` if given; return it and the defect actually applied."""
        rng = self.rng
        if defect in ("exact_duplicate", "near_duplicate"):
            if not self.duplicate_sources:
                return self.record(epoch, None)  # nothing to repeat yet (start of the stream)
            record = json.loads(self.duplicate_sources.pop())
            record["timestamp"] = self._stamp(epoch)
            if defect == "near_duplicate":
                _perturb_last_user_turn(rng, record["request"]["messages"])
            return record, defect
        if self.workload == "tool_calling":
            request, message, finish = self._tool_exchange(epoch, needs_call=defect == "unparseable_arguments")
        else:
            request, message, finish = self._faq_exchange()
        response = {
            "id": f"chatcmpl-{rng.getrandbits(96):024x}",
            "object": "chat.completion",
            "created": int(epoch),
            "model": catalog.PRODUCTION_MODEL,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": self._usage(request, message),
        }
        record = {
            "workload_id": self.workload_id,
            "client_id": CLIENT_ID,
            "timestamp": self._stamp(epoch),
            "request": request,
            "response": response,
        }
        if defect is None:
            # Keep a few recent records to repeat (a little more often than duplicates are asked for).
            if rng.random() < DEFECT_RATE * 0.5:
                self.duplicate_sources.append(json.dumps(record, separators=_COMPACT))
            return record, None
        return self._damage(record, defect), defect

    # ------------------------------------------------------------- defects

    def _damage(self, record: dict, defect: str) -> dict:
        rng = self.rng
        if defect == "malformed_json":
            line = json.dumps(record, ensure_ascii=False, separators=_COMPACT)
            style = rng.random()
            if style < 0.7:  # cut off mid-write (a crashed writer, a full disk)
                return {RAW_LINE_KEY: line[: rng.randint(20, len(line) - 10)]}
            if style < 0.85:  # two records glued together without a newline
                return {RAW_LINE_KEY: line + line[: rng.randint(5, 60)]}
            return {RAW_LINE_KEY: f"WARN {int(record['response']['created'])} log shipper: connection reset by peer"}
        if defect == "missing_workload_id":
            if rng.random() < 0.7:
                del record["workload_id"]
            else:
                record["workload_id"] = None
        elif defect == "other_client":
            record["client_id"] = OTHER_CLIENT_ID
        elif defect == "empty_messages":
            record["request"]["messages"] = []
        elif defect == "no_choices":
            if rng.random() < 0.6:
                record["response"]["choices"] = []
            else:
                del record["response"]["choices"]
        elif defect == "unparseable_arguments":
            call = record["response"]["choices"][0]["message"]["tool_calls"][0]["function"]
            args = json.loads(call["arguments"]) if isinstance(call["arguments"], str) else call["arguments"]
            # Cut off at the end, or a Python repr (single quotes) from a logger that used str().
            call["arguments"] = json.dumps(args)[:-1] if rng.random() < 0.6 else str(args)
        elif defect == "bad_timestamp":
            record["timestamp"] = rng.choice(["", "not-a-date", "2026-13-45T25:61:00Z", None])
        return record

    # ------------------------------------------------------------- tool calling

    def _tool_exchange(self, epoch: float, needs_call: bool) -> tuple[dict, dict, str]:
        rng = self.rng
        roll = rng.random()
        as_string = rng.random() < 0.7  # OpenAI sends arguments as a JSON string; some loggers store objects
        history: list[dict] = []
        if roll < 0.1 and not needs_call:
            prompt, answer = rng.choice(catalog.CLARIFICATIONS)
            text = self._phrase(prompt, self._slots(self._fields(prompt), epoch))
            message = {"role": "assistant", "content": answer}
            return self._tool_request([{"role": "user", "content": text}]), message, "stop"
        if roll < 0.3:
            history, text, calls = self._multi_turn(epoch, as_string)
        elif roll < 0.32:
            text, calls = self._parallel(epoch)
        else:
            tool = rng.choices(self.tool_names, self.tool_weights)[0]
            text, args = self._tool_phrase(tool, epoch)
            calls = [(tool, args)]
        message = self._call_message(calls, as_string)
        return self._tool_request([*history, {"role": "user", "content": text}]), message, "tool_calls"

    def _tool_request(self, turns: list[dict]) -> dict:
        rng = self.rng
        messages = turns if rng.random() < 0.05 else [{"role": "system", "content": catalog.TOOL_SYSTEM_PROMPT}, *turns]
        return {
            "model": catalog.PRODUCTION_MODEL,
            "messages": messages,
            "tools": catalog.TOOLS,
            "tool_choice": "auto",
            "temperature": rng.choice((0.0, 0.1, 0.2, 0.3)),
            "max_tokens": 512,
        }

    def _tool_phrase(self, tool: str, epoch: float, greet: bool = True) -> tuple[str, dict]:
        template, fixed = self.rng.choice(catalog.TOOL_TEMPLATES[tool])
        fields = self._fields(template)
        slots = self._slots(fields, epoch)
        return self._phrase(template, slots, greet=greet), self._arguments(tool, slots, fixed)

    def _arguments(self, tool: str, slots: dict[str, Any], fixed: dict[str, Any]) -> dict:
        # Every slot filled for this phrasing (e.g. the ISO pickup_date behind a spoken date_text).
        args: dict[str, Any] = {arg: slots[slot] for arg, slot in catalog.ARG_SLOTS[tool].items() if slot in slots}
        for key, value in fixed.items():
            args[key] = value.format(**slots) if isinstance(value, str) else value
        if tool == "update_shipping_address":
            args["new_address"] = {
                "street": slots["street"], "city": slots["city"], "state": slots["state"], "zip_code": slots["zip"],
            }
        # Arguments in the schema's property order, as a model emits them.
        return {key: args[key] for key in self.properties[tool] if key in args}

    def _call_message(self, calls: list[tuple[str, dict]], as_string: bool) -> dict:
        rng = self.rng
        tool_calls = [
            {
                "id": f"call_{rng.getrandbits(96):024x}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args) if as_string else args},
            }
            for name, args in calls
        ]
        # content null (OpenAI) or absent (some SDKs drop nulls): both valid.
        if rng.random() < 0.6:
            return {"role": "assistant", "content": None, "tool_calls": tool_calls}
        return {"role": "assistant", "tool_calls": tool_calls}

    def _parallel(self, epoch: float) -> tuple[str, list[tuple[str, dict]]]:
        rng = self.rng
        tool = rng.choice(("get_order_status", "track_shipment"))
        first, second = self._order_id(), self._order_id()
        verb = "check the status of" if tool == "get_order_status" else "track"
        text = self._phrase(f"Can you {verb} {{order_id}} and {{other_order_id}}?",
                            {"order_id": first, "other_order_id": second})
        return text, [(tool, {"order_id": first}), (tool, {"order_id": second})]

    def _multi_turn(self, epoch: float, as_string: bool) -> tuple[list[dict], str, list[tuple[str, dict]]]:
        """An earlier exchange (tool call, tool result, answer, or a clarifying question), then the new turn."""
        rng = self.rng
        scenario = rng.choice(("cancel", "refund", "stock", "address", "clarified"))
        if scenario == "clarified":
            return self._clarified(epoch)
        first_tool = {"cancel": "get_order_status", "refund": "track_shipment", "stock": "find_nearest_store",
                      "address": "get_order_status"}[scenario]
        first_text, first_args = self._tool_phrase(first_tool, epoch)
        call = self._call_message([(first_tool, first_args)], as_string)
        call_id = call["tool_calls"][0]["id"]
        result, answer = self._tool_result(first_tool, first_args, epoch)
        history = [
            {"role": "user", "content": first_text},
            call,
            {"role": "tool", "tool_call_id": call_id, "content": json.dumps(result)},
            {"role": "assistant", "content": answer},
        ]
        slots: dict[str, Any] = {}
        if scenario == "cancel":
            text, fixed = rng.choice(_CANCEL_FOLLOW_UPS)
            calls = [("cancel_order", {"order_id": first_args["order_id"], **fixed})]
        elif scenario == "refund":
            text, reason = rng.choice(_REFUND_FOLLOW_UPS)
            calls = [("request_refund", {"order_id": first_args["order_id"], "reason": reason})]
        elif scenario == "stock":
            slots = self._slots({"product"}, epoch)
            if rng.random() < 0.5:
                slots["color"] = rng.choice(catalog.COLORS)
                text = "Do they have the {product} in {color}?"
                args = {"product_name": slots["product"], "color": slots["color"], "zip_code": first_args["zip_code"]}
            else:
                text = rng.choice(("Does that store have the {product}?", "is the {product} in stock there?"))
                args = {"product_name": slots["product"], "zip_code": first_args["zip_code"]}
            calls = [("check_product_availability", args)]
        else:
            slots = self._slots({"street", "city", "state", "zip"}, epoch)
            text = "Great. Can you ship it to {street}, {city}, {state} {zip} instead?"
            address = {"street": slots["street"], "city": slots["city"], "state": slots["state"],
                       "zip_code": slots["zip"]}
            calls = [("update_shipping_address", {"order_id": first_args["order_id"], "new_address": address})]
        # Slots are filled after typos and case changes, so values (ids, addresses) stay exact.
        return history, self._phrase(text, slots, greet=False), calls

    def _clarified(self, epoch: float) -> tuple[list[dict], str, list[tuple[str, dict]]]:
        rng = self.rng
        index = rng.choice((0, 1, 4, 5))  # return, where is my order, password, stores
        prompt, question = catalog.CLARIFICATIONS[index]
        history = [{"role": "user", "content": self._phrase(prompt, {})}, {"role": "assistant", "content": question}]
        if index == 0:
            slots = self._slots({"order_id", "product"}, epoch)
            text = "{order_id}, the {product} arrived broken"
            calls = [("request_refund", {"order_id": slots["order_id"], "reason": "damaged"})]
        elif index == 1:
            slots = {"order_id": self._order_id()}
            text = rng.choice(("it's {order_id}", "{order_id}", "Order number {order_id}"))
            calls = [("track_shipment", {"order_id": slots["order_id"]})]
        elif index == 4:
            slots = {"email": self._email()}
            text = rng.choice(("{email}", "it's {email}", "the email is {email}"))
            calls = [("reset_password", {"email": slots["email"]})]
        else:
            slots = self._slots({"zip"}, epoch)
            text = rng.choice(("{zip}", "zip is {zip}", "I'm at {zip}"))
            calls = [("find_nearest_store", {"zip_code": slots["zip"]})]
        return history, self._phrase(text, slots, greet=False), calls

    def _tool_result(self, tool: str, args: dict, epoch: float) -> tuple[dict, str]:
        rng = self.rng
        day = datetime.fromtimestamp(epoch, tz=timezone.utc).date()
        if tool == "get_order_status":
            ships = (day + timedelta(days=rng.randint(1, 3))).isoformat()
            result = {"order_id": args["order_id"], "status": "processing", "estimated_ship_date": ships}
            return result, f"Your order {args['order_id']} is being processed and should ship by {ships}."
        if tool == "track_shipment":
            carrier = rng.choice(catalog.CARRIERS)
            delivered = (day - timedelta(days=rng.randint(1, 4))).isoformat()
            result = {"order_id": args["order_id"], "carrier": carrier, "status": "delivered",
                      "tracking_number": f"{carrier[:2].upper()}{rng.getrandbits(40):012d}", "delivered_on": delivered}
            return result, f"Order {args['order_id']} was delivered by {carrier} on {delivered}."
        city = next((c for c in catalog.CITIES if args["zip_code"].startswith(c[2])), catalog.CITIES[0])
        miles = round(rng.uniform(0.6, 14.0), 1)
        street = self._street()
        name = f"Acme Retail {city[0]} {rng.choice(('Downtown', 'Mall', 'North', 'Riverside', 'Plaza'))}"
        result = {"stores": [{"name": name, "address": f"{street}, {city[0]}, {city[1]}", "distance_miles": miles}]}
        return result, f"The closest store is {name} at {street}, {miles} miles away."

    # ------------------------------------------------------------- generic

    def _faq_exchange(self) -> tuple[dict, dict, str]:
        rng = self.rng
        topic = catalog.FAQ_TOPICS[rng.choices(self.topics, self.topic_weights)[0]]
        turns: list[dict] = []
        if rng.random() < 0.15:  # an earlier question in the same chat
            earlier = catalog.FAQ_TOPICS[rng.choice(self.topics)]
            turns += [{"role": "user", "content": self._faq_question(earlier)},
                      {"role": "assistant", "content": earlier["answer"]}]
        turns.append({"role": "user", "content": self._faq_question(topic)})
        messages = turns if rng.random() < 0.05 else [{"role": "system", "content": catalog.FAQ_SYSTEM_PROMPT}, *turns]
        request = {
            "model": catalog.PRODUCTION_MODEL,
            "messages": messages,
            "temperature": rng.choice((0.2, 0.3, 0.5, 0.7)),
            "max_tokens": 256,
        }
        return request, {"role": "assistant", "content": topic["answer"]}, "stop"

    def _faq_question(self, topic: dict) -> str:
        template = self.rng.choice(topic["questions"])
        return self._phrase(template, self._slots(self._fields(template), 0.0))

    # ------------------------------------------------------------- text and values

    def _fields(self, template: str) -> set[str]:
        fields = self.field_cache.get(template)
        if fields is None:
            fields = {name for _, name, _, _ in _FIELDS.parse(template) if name}
            self.field_cache[template] = fields
        return fields

    def _phrase(self, template: str, slots: dict[str, Any], greet: bool = True) -> str:
        """Fill a template the way people type: greetings, sign-offs, typos, lowercase, no final punctuation."""
        rng = self.rng
        text = template
        if rng.random() < 0.12:
            text = _typo(rng, text)
        if rng.random() < 0.12:
            text = text.lower()
        if rng.random() < 0.08:
            text = text.rstrip(".?!")
        if greet:
            greeting = rng.choice(catalog.GREETINGS)
            # "Hi, can you..." / "hey can you...": no capital after a greeting that does not end a sentence.
            if greeting and greeting.rstrip()[-1] not in ".!:" and text[:1].isupper() and not text.startswith(
                ("I ", "I'")
            ):
                text = text[0].lower() + text[1:]
            text = greeting + text + rng.choice(catalog.SIGN_OFFS)
        return text.format(**slots) if slots else text

    def _slots(self, fields: set[str], epoch: float) -> dict[str, Any]:
        rng = self.rng
        slots: dict[str, Any] = {}
        if "order_id" in fields:
            slots["order_id"] = self._order_id()
        if "size" in fields:
            product, kind = rng.choice(self.sized)
            slots["product"] = product
            slots["size"] = rng.choice(catalog.SHOE_SIZES if kind == "shoe" else catalog.APPAREL_SIZES)
        elif "product" in fields:
            slots["product"] = rng.choice(catalog.PRODUCTS)[0]
        if "other_product" in fields:
            slots["other_product"] = rng.choice([p[0] for p in catalog.PRODUCTS if p[0] != slots["product"]])
        if "gadget" in fields:
            slots["gadget"] = rng.choice(self.gadgets)
        if "color" in fields:
            slots["color"] = rng.choice(catalog.COLORS)
        if "email" in fields:
            slots["email"] = self._email()
        if fields & {"city", "state", "zip", "street"}:
            city, state, prefix = rng.choice(catalog.CITIES)
            slots.update(city=city, state=state, zip=f"{prefix}{rng.randint(1, 99):02d}", street=self._street())
        if "radius" in fields:
            slots["radius"] = rng.choice((5, 10, 15, 20, 30, 50))
        if "code" in fields:
            slots["code"] = rng.choice(catalog.DISCOUNT_CODES)
        if "weekday" in fields:
            slots["weekday"] = rng.choice(catalog.WEEKDAYS)
        if "pickup_date" in fields or "date_text" in fields:
            day = datetime.fromtimestamp(epoch, tz=timezone.utc).date() + timedelta(days=rng.randint(1, 6))
            slots["pickup_date"] = day.isoformat()
            month = catalog.MONTHS[day.month - 1]
            slots["date_text"] = rng.choice((
                f"{catalog.WEEKDAYS[day.weekday()]}, {month} {day.day}",
                f"{month} {day.day}",
                day.isoformat(),
                f"{day.month}/{day.day}",
            ))
        for name, low, high in (("days", 3, 60), ("months", 2, 14), ("amount", 12, 400)):
            if name in fields:
                slots[name] = rng.randint(low, high)
        for name, pool in (("payment", catalog.PAYMENTS), ("country", catalog.COUNTRIES),
                           ("relative", catalog.RELATIVES)):
            if name in fields:
                slots[name] = rng.choice(pool)
        return slots

    def _order_id(self) -> str:
        return f"ORD-{self.rng.randint(10000, 99999)}"

    def _email(self) -> str:
        rng = self.rng
        first, last = rng.choice(catalog.FIRST_NAMES), rng.choice(catalog.LAST_NAMES)
        domain = rng.choice(catalog.EMAIL_DOMAINS)
        style = rng.randrange(3)
        if style == 0:
            return f"{first}.{last}@{domain}"
        if style == 1:
            return f"{first[0]}{last}{rng.randint(1, 99)}@{domain}"
        return f"{first}{rng.randint(70, 99)}@{domain}"

    def _street(self) -> str:
        rng = self.rng
        street = f"{rng.randint(10, 9999)} {rng.choice(catalog.STREET_NAMES)} {rng.choice(catalog.STREET_KINDS)}"
        return street + (f" Apt {rng.randint(1, 40)}" if rng.random() < 0.25 else "")

    def _stamp(self, epoch: float) -> Any:
        rng = self.rng
        style = rng.choices(_STAMP_FORMATS, _STAMP_WEIGHTS)[0]
        if style == "epoch":
            return int(epoch) if epoch == int(epoch) else epoch
        moment = datetime.fromtimestamp(epoch, tz=timezone.utc)
        if style == "iso_z":
            return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        if style == "iso_offset":
            return moment.astimezone(rng.choice(_OFFSETS)).isoformat(timespec="milliseconds")
        return moment.replace(tzinfo=None).isoformat(timespec="seconds")

    def _usage(self, request: dict, message: dict) -> dict:
        # Roughly 4 characters per token: plausible counts for cost and latency reports.
        prompt_chars = sum(len(m.get("content") or "") + 16 for m in request["messages"])
        if "tools" in request:
            prompt_chars += self.tools_chars
        completion = message.get("content") or json.dumps(message.get("tool_calls"), default=str)
        prompt, completion_tokens = prompt_chars // 4 + 3, len(completion) // 4 + 2
        return {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
                "total_tokens": prompt + completion_tokens}


def _typo(rng: random.Random, text: str) -> str:
    """One human typo (swapped, dropped or doubled letter) in a word of the template, never in a slot."""
    words = list(_TYPO_WORD.finditer(text))
    if not words:
        return text
    match = rng.choice(words)
    word = match.group()
    at = rng.randint(1, len(word) - 2)
    kind = rng.randrange(3)
    if kind == 0:
        word = word[:at] + word[at + 1] + word[at] + word[at + 2:]
    elif kind == 1:
        word = word[:at] + word[at + 1:]
    else:
        word = word[:at] + word[at] + word[at:]
    return text[: match.start()] + word + text[match.end():]


def _perturb_last_user_turn(rng: random.Random, messages: list[dict]) -> None:
    """Make a near duplicate: the same words with other case or whitespace."""
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            text = message["content"]
            style = rng.randrange(4)
            if style == 0:
                text = text.lower()
            elif style == 1:
                text = "  " + text.replace(" ", "  ", 2)
            elif style == 2:
                text = text + " \n"
            else:
                text = text.upper()
            message["content"] = text
            return


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """Write the bundled sample (or another one); print what was written."""
    parser = argparse.ArgumentParser(
        prog="python -m include.sample_data.generate",
        description="Write seeded sample LLM logs as daily JSONL files (UTC days).",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start", type=date.fromisoformat, default=SAMPLE_START, help="first day, YYYY-MM-DD")
    parser.add_argument("--days", type=int, default=SAMPLE_DAYS)
    parser.add_argument("--tool-calling", type=int, default=SAMPLE_COUNTS["tool_calling"],
                        help="tool-calling records over the whole span")
    parser.add_argument("--generic", type=int, default=SAMPLE_COUNTS["generic"], help="FAQ records over the span")
    parser.add_argument("--no-defects", action="store_true", help="write clean records only")
    args = parser.parse_args(argv)
    try:
        summary = write_sample(
            args.out,
            seed=args.seed,
            start_day=args.start,
            days=args.days,
            counts={"tool_calling": args.tool_calling, "generic": args.generic},
            defects=not args.no_defects,
        )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, count in sorted(summary["files"].items()):
        print(f"{args.out / name}: {count} records")
    print(f"workloads: {summary['workloads']}")
    print(f"defects: {summary['defects']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
