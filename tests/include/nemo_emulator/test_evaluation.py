"""Tests for the emulator's evaluation runner, with the real brain as target and judge."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from include.nemo_emulator import brain
from include.nemo_emulator.evaluation import render_template_value, run_evaluation
from tests.include.nemo_emulator.test_brain import (
    FAQ,
    HYPERPARAMETERS,
    LARGE,
    SMALL,
    semantic_icl,
    split,
    support_records,
    training_row,
)

FILES_URL = "hf://datasets/flywheel/flywheel-eval-support-1/eval_data.jsonl"
JUDGE_SPEC = {"api_endpoint": {"url": "http://127.0.0.1:9/v1/chat/completions", "model_id": LARGE}}

# The judge prompts the flywheel submits (include/nemo/payloads.py), restated here so this
# test pins the contract rather than importing another module's constants.
TOOL_JUDGE_SYSTEM = (
    "You grade whether an assistant called the right tools. You get the expected tool calls and the "
    "assistant's tool calls, both as JSON. Reply with one line: RATING: 1 if correct, RATING: 0 if not."
)
TOOL_JUDGE_USER = (
    "Expected tool calls:\n{{ item.response.choices[0].message.tool_calls | tojson }}\n\n"
    "Assistant tool calls:\n{{ sample.response.choices[0].message.tool_calls | tojson }}\n\n"
    "Is the assistant correct? Answer with RATING: 1 or RATING: 0."
)
GENERIC_JUDGE_SYSTEM = (
    "You compare a candidate answer with a reference answer to the same request. "
    "Reply with one line: SIMILARITY: <an integer from 1 (unrelated) to 10 (equivalent)>."
)
GENERIC_JUDGE_USER = (
    "Reference answer:\n{{ item.response.choices[0].message.content }}\n\n"
    "Candidate answer:\n{{ sample.output_text }}\n\n"
    "How similar is the candidate to the reference? Answer with SIMILARITY: <1-10>."
)


def tool_calling_config(files_url: str = FILES_URL) -> dict[str, Any]:
    return {
        "type": "custom",
        "namespace": "flywheel",
        "tasks": {
            "custom-tool-calling": {
                "type": "chat-completion",
                "dataset": {"files_url": files_url},
                "params": {
                    "template": {
                        "messages": "{{ item.request.messages | tojson }}",
                        "tools": "{{ item.request.tools | tojson }}",
                        "tool_choice": "auto",
                    }
                },
                "metrics": {
                    "tool-calling-accuracy": {
                        "type": "tool-calling",
                        "params": {
                            "tool_calls_ground_truth": "{{ item.response.choices[0].message.tool_calls | tojson }}"
                        },
                    },
                    "correctness": {
                        "type": "llm-judge",
                        "params": {
                            "model": JUDGE_SPEC,
                            "template": {
                                "messages": [
                                    {"role": "system", "content": TOOL_JUDGE_SYSTEM},
                                    {"role": "user", "content": TOOL_JUDGE_USER},
                                ]
                            },
                            "scores": {
                                "rating": {"type": "int", "parser": {"type": "regex", "pattern": r"RATING: (\d+)"}}
                            },
                        },
                    },
                },
            }
        },
    }


def generic_config(files_url: str = FILES_URL) -> dict[str, Any]:
    return {
        "type": "custom",
        "namespace": "flywheel",
        "tasks": {
            "llm-as-judge": {
                "type": "chat-completion",
                "dataset": {"files_url": files_url},
                "params": {"template": {"messages": "{{ item.request.messages | tojson }}", "max_tokens": 512}},
                "metrics": {
                    "llm-judge": {
                        "type": "llm-judge",
                        "params": {
                            "model": JUDGE_SPEC,
                            "template": {
                                "messages": [
                                    {"role": "system", "content": GENERIC_JUDGE_SYSTEM},
                                    {"role": "user", "content": GENERIC_JUDGE_USER},
                                ]
                            },
                            "scores": {
                                "similarity": {
                                    "type": "int", "parser": {"type": "regex", "pattern": r"SIMILARITY: (\d+)"}
                                }
                            },
                        },
                    }
                },
            }
        },
    }


def faq_records() -> list[dict[str, Any]]:
    records = []
    for questions, answer in FAQ.values():
        for question in questions:
            records.append(
                {
                    "workload_id": "faq-chat",
                    "request": {"model": LARGE, "messages": [{"role": "user", "content": question}]},
                    "response": {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]},
                }
            )
    return records


class Recorder:
    """The evaluation's collaborators: a dataset store, a model resolver, a progress log."""

    def __init__(self, rows: list[dict[str, Any]], judge: brain.ChatModel | None = None) -> None:
        self.rows = rows
        self.judge = judge or brain.judge_model(LARGE)
        self.progress: list[float] = []
        self.resolved: list[Any] = []
        self.loaded: list[str] = []

    def load_rows(self, files_url: str) -> list[dict[str, Any]]:
        self.loaded.append(files_url)
        return copy.deepcopy(self.rows)

    def resolve_model(self, spec: dict | str) -> brain.ChatModel:
        self.resolved.append(spec)
        return self.judge

    def run(self, config: dict[str, Any], target: brain.ChatModel) -> dict[str, Any]:
        return run_evaluation(config, target, self.resolve_model, self.load_rows, self.progress.append)


class FixedAnswer:
    """A model that always answers the same text (to pin the score parser)."""

    def __init__(self, text: str) -> None:
        self.name = "test/fixed"
        self.text = text

    def complete(self, request: dict) -> dict:
        return {"id": "x", "object": "chat.completion", "created": 0, "model": self.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}  # fmt: skip


def _scores(results: dict[str, Any], task: str, metric: str) -> dict[str, Any]:
    return results["tasks"][task]["metrics"][metric]["scores"]


@pytest.fixture(scope="module")
def support() -> tuple[list[dict], list[dict]]:
    return split(support_records(160), eval_size=40)


def test_tool_calling_evaluation_ranks_customized_above_base(support: tuple[list[dict], list[dict]]) -> None:
    train, held_out = support
    rows = [training_row(r) for r in train]
    customized = brain.customized_model("flywheel/custom", SMALL, rows[8:], rows[:8], HYPERPARAMETERS)
    recorder = Recorder(held_out)
    base_results = recorder.run(tool_calling_config(), brain.base_model(SMALL))
    custom_results = recorder.run(tool_calling_config(), customized)
    icl_results = Recorder(semantic_icl(held_out, train)).run(tool_calling_config(), brain.base_model(SMALL))

    def figures(results: dict[str, Any]) -> dict[str, float]:
        tool = _scores(results, "custom-tool-calling", "tool-calling-accuracy")
        judge = _scores(results, "custom-tool-calling", "correctness")
        return {
            "function_name_accuracy": tool["function_name_accuracy"]["value"],
            "function_name_and_args_accuracy": tool["function_name_and_args_accuracy"]["value"],
            "rating": judge["rating"]["value"],
        }

    base, custom, icl = figures(base_results), figures(custom_results), figures(icl_results)
    for key in base:
        assert custom[key] > base[key], key
        assert icl[key] >= base[key], key
    # The judge's 0/1 rating agrees with the exact name-and-arguments check on this data.
    assert custom["rating"] == custom["function_name_and_args_accuracy"]
    stats = _scores(custom_results, "custom-tool-calling", "correctness")["rating"]["stats"]
    assert stats["count"] == len(held_out) and stats["nan_count"] == 0
    assert stats["sum"] == pytest.approx(stats["mean"] * stats["count"])
    task = custom_results["tasks"]["custom-tool-calling"]
    assert [row["index"] for row in task["rows"]] == list(range(len(held_out)))
    assert set(task["rows"][0]["scores"]) == {"tool-calling-accuracy", "correctness"}
    assert task["usage"]["requests"] == len(held_out) and task["usage"]["mean_prompt_tokens"] > 0
    assert recorder.resolved == [JUDGE_SPEC, JUDGE_SPEC] and recorder.loaded == [FILES_URL, FILES_URL]
    # Progress (two runs): one 0, then one report per row, ending at 100.
    first, second = recorder.progress[: len(held_out) + 1], recorder.progress[len(held_out) + 1 :]
    assert first == second and first[0] == 0.0 and first[-1] == 100.0 and first == sorted(first)
    assert len(first) == len(held_out) + 1


def test_generic_evaluation_parses_the_whole_similarity_integer() -> None:
    records = faq_records()
    answers = {
        r["request"]["messages"][-1]["content"]: r["response"]["choices"][0]["message"]["content"] for r in records
    }

    class Oracle:
        """Answers exactly the reference: the judge must say 10, and 10 must parse as 10."""

        name = "test/oracle"

        def complete(self, request: dict) -> dict:
            return FixedAnswer(answers[request["messages"][-1]["content"]]).complete(request)

    results = Recorder(records).run(generic_config(), Oracle())
    score = _scores(results, "llm-as-judge", "llm-judge")["similarity"]
    assert score["value"] == 10.0 and score["stats"]["count"] == len(records)
    base = Recorder(records).run(generic_config(), brain.base_model(SMALL))
    assert 1.0 <= _scores(base, "llm-as-judge", "llm-judge")["similarity"]["value"] < 10.0


@pytest.mark.parametrize(
    ("answer", "pattern", "kind", "expected"),
    [
        ("RATING: 10", r"RATING: (\d+)", "int", 10),
        ("RATING: 1\nEXPLANATION: ok", r"RATING: (\d+)", "int", 1),
        ("rating: 1", r"RATING: (\d+)", "int", None),
        ("RATING: 0", r"RATING:\s*(\d+)", "int", 0),
        ("Score 7.5 of 10", r"(\d+(?:\.\d+)?) of", "float", 7.5),
        ("SIMILARITY: 8", r"SIMILARITY: \d+", "int", None),  # no group: the whole match is not a number
        ("42", r"\d+", "int", 42),
        ("Cannot judge: no markers.", r"RATING: (\d+)", "int", None),
    ],
)
def test_judge_answers_are_parsed_with_the_configured_regex(
    answer: str, pattern: str, kind: str, expected: float | None
) -> None:
    records = faq_records()[:3]
    config = generic_config()
    config["tasks"]["llm-as-judge"]["metrics"]["llm-judge"]["params"]["scores"] = {
        "score": {"type": kind, "parser": {"type": "regex", "pattern": pattern}}
    }
    results = Recorder(records, judge=FixedAnswer(answer)).run(config, brain.base_model(SMALL))
    score = _scores(results, "llm-as-judge", "llm-judge")["score"]
    if expected is None:
        assert score["value"] is None and score["stats"]["count"] == 0 and score["stats"]["nan_count"] == 3
        assert results["tasks"]["llm-as-judge"]["unparsed"] == {"llm-judge.score": 3}
        assert "did not parse" in results["tasks"]["llm-as-judge"]["rows"][0]["notes"][0]
    else:
        assert score["value"] == expected and score["stats"]["nan_count"] == 0


def test_unparsed_rows_are_excluded_from_the_mean_not_scored_zero() -> None:
    records = faq_records()[:4]

    class Flaky:
        name = "test/flaky"

        def __init__(self) -> None:
            self.calls = 0

        def complete(self, request: dict) -> dict:
            self.calls += 1
            return FixedAnswer("SIMILARITY: 8" if self.calls % 2 else "I refuse.").complete(request)

    results = Recorder(records, judge=Flaky()).run(generic_config(), brain.base_model(SMALL))
    score = _scores(results, "llm-as-judge", "llm-judge")["similarity"]
    assert score["value"] == 8.0
    assert score["stats"] == {"count": 2, "sum": 16.0, "mean": 8.0, "nan_count": 2}


def test_reference_without_tool_calls_counts_as_no_call() -> None:
    record = faq_records()[0]
    record["request"]["tools"] = support_records(1)[0]["request"]["tools"]
    results = Recorder([record]).run(tool_calling_config(), brain.base_model(LARGE))
    scores = _scores(results, "custom-tool-calling", "tool-calling-accuracy")
    # The reference answered in text and so did the model (nothing matched a tool).
    assert scores["function_name_accuracy"]["value"] == 1.0
    assert scores["function_name_and_args_accuracy"]["value"] == 1.0


def test_arguments_compare_as_parsed_json() -> None:
    record = support_records(1)[0]
    call = record["response"]["choices"][0]["message"]["tool_calls"][0]["function"]
    call["arguments"] = json.loads(call["arguments"])  # some instrumentations store parsed objects
    results = Recorder([record]).run(tool_calling_config(), brain.base_model(LARGE))
    row = results["tasks"]["custom-tool-calling"]["rows"][0]
    assert json.loads(row["output"]["tool_calls"][0]["function"]["arguments"]) == call["arguments"]
    assert row["scores"]["tool-calling-accuracy"]["function_name_and_args_accuracy"] == 1.0


def test_string_check_metric_and_dataset_limit() -> None:
    records = faq_records()
    config = generic_config()
    task = config["tasks"]["llm-as-judge"]
    task["dataset"]["limit"] = 5
    task["metrics"] = {
        "mentions-question": {
            "type": "string-check", "params": {"check": ["{{ sample.output_text | lower }}", "contains", "your"]}
        }
    }
    results = Recorder(records).run(config, FixedAnswer("Here is YOUR answer"))
    score = _scores(results, "llm-as-judge", "mentions-question")["string-check"]
    assert score["value"] == 1.0 and score["stats"]["count"] == 5


def test_evaluation_is_deterministic(support: tuple[list[dict], list[dict]]) -> None:
    train, held_out = support

    def run() -> dict[str, Any]:
        model = brain.customized_model("flywheel/custom", SMALL, [training_row(r) for r in train], [], HYPERPARAMETERS)
        results = Recorder(held_out).run(tool_calling_config(), model)
        for task in results["tasks"].values():
            task["usage"].pop("mean_latency_ms")  # the only wall-clock figures
            for row in task["rows"]:
                row["usage"].pop("latency_ms")
        return results

    assert json.dumps(run(), sort_keys=True) == json.dumps(run(), sort_keys=True)


def test_each_row_reports_its_own_latency_and_tokens(support: tuple[list[dict], list[dict]]) -> None:
    _, held_out = support
    results = Recorder(held_out).run(tool_calling_config(), brain.base_model(SMALL))
    task = results["tasks"]["custom-tool-calling"]
    rows = task["rows"]
    assert len(rows) == len(held_out)
    for row in rows:
        usage = row["usage"]
        assert set(usage) == {"latency_ms", "prompt_tokens", "completion_tokens", "total_tokens"}, usage
        assert usage["latency_ms"] >= 0.0
        assert usage["prompt_tokens"] > 0
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # The task's means are the means of its rows: percentiles computed from the rows agree with them.
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert task["usage"][f"mean_{key}"] == pytest.approx(sum(r["usage"][key] for r in rows) / len(rows))
    row_mean = sum(r["usage"]["latency_ms"] for r in rows) / len(rows)
    assert task["usage"]["mean_latency_ms"] == pytest.approx(row_mean, abs=0.01)


def _broken(mutate: Any) -> dict[str, Any]:
    config = tool_calling_config()
    mutate(config["tasks"]["custom-tool-calling"])
    return config


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (_broken(lambda t: t["params"]["template"].update(messages="{{ item.request.messages | tojson")),
         r"params\.template\.messages: invalid Jinja template"),
        (_broken(lambda t: t["params"]["template"].update(messages="{{ item.reqest.messages | tojson }}")),
         r"row 0.*missing field"),
        (_broken(lambda t: t["params"]["template"].update(messages="{{ item.workload_id }}")),
         r"messages must render to a non-empty JSON list"),
        (_broken(lambda t: t["metrics"]["tool-calling-accuracy"]["params"].update(
            tool_calls_ground_truth="{{ item.workload_id | tojson }}")), r"ground truth is not a list of tool calls"),
        (_broken(lambda t: t["metrics"].update(bleu={"type": "bleu"})), r"'bleu' is not supported"),
        (_broken(lambda t: t.update(type="completion")), r"'completion' is not supported"),
        (_broken(lambda t: t["dataset"].update(files_url="s3://bucket/x.jsonl")), r"files_url must look like"),
        (_broken(lambda t: t["metrics"]["correctness"]["params"]["scores"]["rating"]["parser"].update(pattern="(")),
         r"not a valid regex"),
        (_broken(lambda t: t["metrics"]["correctness"]["params"].pop("model")), r"must name the judge model"),
        ({"type": "custom"}, r"config\.tasks must be a non-empty object"),
    ],
)  # fmt: skip
def test_bad_configs_fail_with_a_clear_value_error(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Recorder(support_records(2)).run(config, brain.base_model(SMALL))


def test_bad_datasets_fail_with_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="has no rows"):
        Recorder([]).run(tool_calling_config(), brain.base_model(SMALL))
    with pytest.raises(ValueError, match="are not JSON objects"):
        Recorder(["not a row"]).run(tool_calling_config(), brain.base_model(SMALL))  # type: ignore[list-item]


def test_template_values_are_rendered_and_parsed() -> None:
    item = {"request": {"messages": [{"role": "user", "content": "hi <b>&</b>"}], "n": 3}}
    context = {"item": item}
    assert render_template_value("{{ item.request.messages | tojson }}", context, "t") == item["request"]["messages"]
    assert render_template_value("{{ item.request.tools | tojson }}", context, "t") is None  # missing optional field
    assert render_template_value("{{ item.request.n }}", context, "t") == 3
    assert render_template_value("auto", context, "t") == "auto"
    assert render_template_value(512, context, "t") == 512
    with pytest.raises(ValueError, match="missing field"):
        render_template_value("{{ item.request.nope }}", context, "t")
