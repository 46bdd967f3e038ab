"""prepare_datasets end to end on small in-memory streams."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from include.flywheel.config import WorkloadSettings
from include.flywheel.partition import InsufficientDataError
from include.flywheel.pipeline import PreparedDatasets, prepare_datasets
from include.flywheel.records import WorkloadType, parse_record

TOOLS = ["lookup_order", "track_parcel", "refund", "reset_password"]
WEIGHTS = [50, 30, 15, 5]
SCHEMAS = [{"type": "function", "function": {"name": name, "parameters": {"type": "object"}}} for name in TOOLS]


def tool_record(index: int, tool: str, *, as_string: bool = True) -> dict:
    arguments = {"id": index}
    return {
        "workload_id": "support",
        "client_id": "acme",
        "timestamp": 1_700_000_000 + index,
        "request": {
            "model": "big-model",
            "messages": [
                {"role": "system", "content": "You help customers."},
                {"role": "user", "content": f"Please {tool.replace('_', ' ')} number {index}"},
            ],
            "tools": SCHEMAS,
        },
        "response": {
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": f"call_{index}",
                                "type": "function",
                                "function": {
                                    "name": tool,
                                    "arguments": json.dumps(arguments) if as_string else arguments,
                                },
                            }
                        ],
                    },
                    "finish_reason": "tool_calls",
                }
            ]
        },
    }


def text_record(index: int) -> dict:
    return {
        "workload_id": "support",
        "client_id": "acme",
        "timestamp": 1_700_000_000 + index,
        "request": {"model": "big-model", "messages": [{"role": "user", "content": f"Question {index}?"}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": f"Answer {index}."}}]},
    }


def tool_stream(count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [tool_record(i, rng.choices(TOOLS, WEIGHTS)[0], as_string=i % 2 == 0) for i in range(count)]


def workload(**data_split) -> WorkloadSettings:
    split = {"eval_size": 10, "val_ratio": 0.2, "min_total_records": 20, "limit": None, "random_seed": 42}
    split.update(data_split)
    return WorkloadSettings(
        workload_id="support",
        client_id="acme",
        data_split=split,
        icl={"max_examples": 2, "min_examples": 1},
    )


def accounted(prepared: PreparedDatasets) -> None:
    report = prepared.report
    assert report.read == sum(report.dropped.values()) + report.duplicates + report.unique
    assert report.unique == report.sampled_out + report.eval_size + report.train_size + report.val_size


def test_prepares_all_datasets_and_accounts_for_every_record():
    records = tool_stream(200)
    records.insert(5, {"no": "request"})
    records.insert(6, "not even a dict")
    bad_arguments = tool_record(900, "refund")
    bad_arguments["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = "{oops"
    records.insert(7, bad_arguments)
    records.insert(8, text_record(1))  # a text answer in a tool-calling workload
    records.append(dict(records[20]))  # an exact duplicate
    other = tool_record(901, "refund")
    other["workload_id"] = "someone-else"
    records.append(other)

    prepared = prepare_datasets(iter(records), workload())

    report = prepared.report
    assert prepared.workload_type is WorkloadType.TOOL_CALLING
    assert report.read == 206
    assert report.dropped == {
        "missing_request": 1,
        "no_tool_calls": 1,
        "not_an_object": 1,
        "unparseable_arguments": 1,
        "workload_mismatch": 1,
    }
    assert report.duplicates == 1
    assert report.unique == 200
    assert (report.eval_size, report.val_size, report.train_size) == (10, 38, 152)
    accounted(prepared)
    assert len(prepared.eval_records) == len(prepared.icl_records) == 10
    assert len(prepared.train_rows) == 152 and len(prepared.val_rows) == 38
    assert report.drop_examples["unparseable_arguments"][0].startswith("record #")
    assert report.leakage["eval_in_train_or_val"] == 0
    assert report.icl_examples["min"] >= 1
    json.dumps(report.model_dump(mode="json"))


def test_output_forms():
    prepared = prepare_datasets(iter(tool_stream(60)), workload())
    eval_call = prepared.eval_records[0]["response"]["choices"][0]["message"]["tool_calls"][0]
    assert isinstance(eval_call["function"]["arguments"], str)  # OpenAI format for the evaluator
    row = prepared.train_rows[0]
    assert set(row) == {"messages", "tools"}
    assert isinstance(row["messages"][-1]["tool_calls"][0]["function"]["arguments"], dict)
    unparsed = prepare_datasets(iter(tool_stream(60)), workload(parse_function_arguments=False))
    assert isinstance(unparsed.train_rows[0]["messages"][-1]["tool_calls"][0]["function"]["arguments"], str)
    system = prepared.icl_records[0]["request"]["messages"][0]["content"]
    assert system.startswith("You help customers.\n\nHere are examples of how to respond:\n\n### Example 1\n")


def test_generic_workload():
    prepared = prepare_datasets((text_record(i) for i in range(40)), workload())
    assert prepared.workload_type is WorkloadType.GENERIC
    assert prepared.report.labels == {"no_tool": 40}
    assert "Assistant: Answer" in prepared.icl_records[0]["request"]["messages"][0]["content"]
    accounted(prepared)


def test_text_records_before_the_first_tool_call_are_dropped_as_no_tool_calls():
    records = [text_record(i) for i in range(15)] + tool_stream(30)
    prepared = prepare_datasets(iter(records), workload())
    assert prepared.workload_type is WorkloadType.TOOL_CALLING
    assert prepared.report.dropped == {"no_tool_calls": 15}
    assert prepared.report.unique == 30
    accounted(prepared)


def test_dedup_first_occurrence_wins_with_normalized_prompts():
    records = tool_stream(30)
    variant = json.loads(json.dumps(records[3]))
    variant["request"]["messages"][1]["content"] = "  " + variant["request"]["messages"][1]["content"].upper()
    variant["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["name"] = "refund"
    records.append(variant)
    prepared = prepare_datasets(iter(records), workload())
    assert prepared.report.duplicates == 1
    original = parse_record(records[3])
    assert parse_record(variant).prompt_hash == original.prompt_hash
    # The kept record is the first one: it calls the original tool, not the variant's "refund".
    calls = {}
    for digest, record in zip(prepared.eval_prompt_hashes, prepared.eval_records):
        calls[digest] = record["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["name"]
    for digest, row in zip(prepared.train_prompt_hashes, prepared.train_rows + prepared.val_rows):
        calls[digest] = row["messages"][-1]["tool_calls"][0]["function"]["name"]
    assert calls[original.prompt_hash] == original.label
    assert original.label != "refund"


def test_min_total_records_error_is_clear():
    records = tool_stream(12) + [{"bad": 1}] * 5
    with pytest.raises(InsufficientDataError) as caught:
        prepare_datasets(iter(records), workload())
    message = str(caught.value)
    assert "12 remain of 17 read" in message
    assert "min_total_records needs 20" in message
    assert "missing_request 5" in message


def test_limit_sampling_keeps_the_label_mix():
    records = tool_stream(2000, seed=3)
    full = Counter(parse_record(record).label for record in records)
    prepared = prepare_datasets(iter(records), workload(limit=200))
    assert prepared.report.sampled_out == 1800
    sample = prepared.report.labels
    assert sum(sample.values()) == 200
    for label, count in full.items():
        # Within one record of the exact proportional share (largest-remainder quotas).
        assert abs(sample[label] - 200 * count / 2000) < 1.0
    accounted(prepared)


def test_eval_split_is_stratified():
    records = tool_stream(1000, seed=5)
    prepared = prepare_datasets(iter(records), workload(eval_size=50, min_total_records=50))
    labels = Counter(
        row["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["name"] for row in prepared.eval_records
    )
    total = prepared.report.labels
    for label, count in total.items():
        assert abs(labels[label] - 50 * count / 1000) < 1.0


def test_deterministic_for_a_seed_and_different_for_another():
    records = tool_stream(300)
    first = prepare_datasets(iter(records), workload(limit=100))
    again = prepare_datasets(iter(records), workload(limit=100))
    other = prepare_datasets(iter(records), workload(limit=100, random_seed=7))
    assert first.eval_records == again.eval_records
    assert first.train_rows == again.train_rows
    assert first.icl_records == again.icl_records
    assert first.eval_prompt_hashes != other.eval_prompt_hashes
    assert set(first.train_prompt_hashes) != set(other.train_prompt_hashes)


def test_earlier_training_prompts_are_kept_out_of_eval():
    records = tool_stream(100)
    earlier = prepare_datasets(iter(records), workload())
    previous = set(earlier.train_prompt_hashes)
    prepared = prepare_datasets(iter(records), workload(random_seed=99), previous_train_hashes=previous)
    assert not set(prepared.eval_prompt_hashes) & previous
    assert prepared.report.eval_excluded_previous_training == len(previous)
    assert prepared.report.eval_size == 10
    assert prepared.report.leakage["checked_previous"] == len(previous)


def test_semantic_icl_without_embedder_fails_before_reading():
    def stream():
        raise AssertionError("the input must not be read")
        yield  # pragma: no cover

    settings = workload().with_overrides({"icl": {"example_selection": "semantic_similarity"}})
    with pytest.raises(ValueError, match="no embedder"):
        prepare_datasets(stream(), settings)


def test_semantic_icl_with_an_embedder():
    class LengthEmbedder:
        def embed(self, texts):
            return [[float(len(text)), 1.0] for text in texts]

    settings = workload().with_overrides({"icl": {"example_selection": "semantic_similarity"}})
    prepared = prepare_datasets(iter(tool_stream(60)), settings, embedder=LengthEmbedder())
    assert prepared.report.icl_selection == "semantic_similarity"
    assert prepared.report.icl_examples["max"] == 2


def test_all_tool_calls_broken_still_means_tool_calling():
    records = [text_record(i) for i in range(30)]
    for index in range(5):
        broken = tool_record(index, "refund")
        broken["response"]["choices"][0]["message"]["tool_calls"][0]["type"] = "code"
        records.append(broken)
    with pytest.raises(InsufficientDataError, match="no_tool_calls 30"):
        prepare_datasets(iter(records), workload())


def test_summary_is_a_readable_table():
    prepared = prepare_datasets(iter(tool_stream(80)), workload())
    summary = prepared.report.summary()
    assert summary.splitlines()[0] == "Dataset preparation for workload 'support' (tool_calling, seed 42)"
    for needle in ("read", "duplicates", "unique", "eval", "train", "validation", "lookup_order", "ICL examples"):
        assert needle in summary
