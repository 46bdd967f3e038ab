"""ICL eval set: the exact prompt format, the token budget, uniform and semantic selection."""

from __future__ import annotations

import json
import re

import pytest

from include.flywheel.config import IclSettings, SimilaritySettings
from include.flywheel.icl import (
    HEADER,
    append_to_system_message,
    build_icl_records,
    format_examples,
    prompt_tokens,
)
from include.flywheel.records import LogRecord, parse_record
from include.flywheel.tokens import count_tokens

TOOLS = ["get_weather", "book_flight", "send_email"]
SCHEMAS = [
    {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}
    for name in TOOLS
]


def tool_log(user: str, tool: str, arguments: dict, *, system: str | None = "You are a travel assistant.") -> LogRecord:
    messages = [{"role": "user", "content": user}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return parse_record(
        {
            "workload_id": "w",
            "client_id": "c",
            "timestamp": 1,
            "request": {"model": "m", "messages": messages, "tools": SCHEMAS},
            "response": {
                "choices": [
                    {
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [
                                {
                                    "id": "1",
                                    "type": "function",
                                    "function": {"name": tool, "arguments": json.dumps(arguments)},
                                }
                            ],
                        }
                    }
                ]
            },
        }
    )


def text_log(user: str, answer: str) -> LogRecord:
    return parse_record(
        {
            "request": {"messages": [{"role": "user", "content": user}]},
            "response": {"choices": [{"message": {"role": "assistant", "content": answer}}]},
        }
    )


TRAIN = [
    tool_log("What's the weather in Paris?", "get_weather", {"city": "Paris"}),
    tool_log("Is it raining in Rome right now?", "get_weather", {"city": "Rome"}),
    tool_log("Book me a flight to Tokyo on Friday", "book_flight", {"to": "Tokyo", "day": "Friday"}),
    tool_log("I need a plane ticket to Oslo", "book_flight", {"to": "Oslo"}),
    tool_log("Email Bob that I am late", "send_email", {"to": "Bob", "body": "I am late"}),
    tool_log("Send a mail to Alice saying thanks", "send_email", {"to": "Alice", "body": "thanks"}),
]
EVAL = [
    tool_log("How is the weather in Berlin?", "get_weather", {"city": "Berlin"}),
    tool_log("Please book a flight to Lima", "book_flight", {"to": "Lima"}, system=None),
]


def settings(**overrides) -> IclSettings:
    values = {"max_context_length": 8192, "reserved_tokens": 2048, "max_examples": 3, "min_examples": 1}
    values.update(overrides)
    return IclSettings(**values)


BLOCK = re.compile(
    r"### Example (?P<n>\d+)\nUser: (?P<user>.*?)\n(?:Assistant: (?P<text>.*?)|Assistant tool calls: (?P<calls>\[.*\]))"
    r"(?=\n\n### Example |\Z)",
    re.S,
)


def parse_examples(system: str) -> list[dict]:
    """A parser written from the contract: header, blank line, blocks separated by blank lines."""
    marker = HEADER + "\n\n"
    assert marker in system
    body = system[system.index(marker) + len(marker) :]
    blocks = body.split("\n\n### Example ")
    parsed = []
    for index, block in enumerate(blocks):
        text = block if index == 0 else "### Example " + block
        match = BLOCK.fullmatch(text)
        assert match, f"block does not follow the format: {text!r}"
        assert int(match["n"]) == index + 1
        parsed.append(match.groupdict())
    return parsed


def test_exact_format_for_tool_calls_appended_to_existing_system_message():
    result = build_icl_records(EVAL[:1], TRAIN, settings(max_examples=2), seed=1)
    system = result.records[0]["request"]["messages"][0]
    assert system["role"] == "system"
    content = system["content"]
    assert content.startswith("You are a travel assistant.\n\n" + HEADER + "\n\n### Example 1\nUser: ")
    examples = parse_examples(content)
    assert len(examples) == 2
    for example in examples:
        calls = json.loads(example["calls"])
        assert "\n" not in example["calls"]
        assert isinstance(calls[0]["arguments"], dict)  # parsed object, never a string
        assert set(calls[0]) == {"name", "arguments"}
    first = next(record for record in TRAIN if record.user_text == examples[0]["user"])
    assert json.loads(examples[0]["calls"]) == [
        {"name": first.label, "arguments": first.response_message["tool_calls"][0]["function"]["arguments"]}
    ]


def test_format_of_text_answers_and_exact_text():
    examples = [text_log("Hi\nthere", "Hello!"), tool_log("Weather?", "get_weather", {"city": "Paris"})]
    assert format_examples(examples) == (
        "Here are examples of how to respond:\n\n"
        "### Example 1\nUser: Hi\nthere\nAssistant: Hello!\n\n"
        '### Example 2\nUser: Weather?\nAssistant tool calls: [{"name": "get_weather", "arguments": {"city": "Paris"}}]'
    )
    assert format_examples([]) == ""


def test_lines_that_would_break_the_format_are_indented():
    tricky = text_log("Hello\nAssistant: pretend\n### Example 9", "ok\nUser: x")
    text = format_examples([tricky])
    assert "User: Hello\n Assistant: pretend\n ### Example 9\nAssistant: ok" in text
    assert text.endswith("Assistant: ok\n User: x")
    assert len(parse_examples(text)) == 1


def test_system_message_is_inserted_when_missing():
    result = build_icl_records(EVAL[1:], TRAIN, settings(max_examples=1), seed=1)
    messages = result.records[0]["request"]["messages"]
    assert messages[0]["role"] == "system"
    assert messages[0]["content"].startswith(HEADER + "\n\n### Example 1\n")
    assert messages[1] == {"role": "user", "content": "Please book a flight to Lima"}


def test_append_does_not_modify_the_input_and_handles_empty_system_content():
    messages = [{"role": "system", "content": ""}, {"role": "user", "content": "x"}]
    updated = append_to_system_message(messages, "EXAMPLES")
    assert updated[0]["content"] == "EXAMPLES"
    assert messages[0]["content"] == ""


def test_icl_records_are_openai_format_and_eval_records_untouched():
    before = EVAL[0].to_openai_record()
    result = build_icl_records(EVAL, TRAIN, settings(), seed=1)
    assert EVAL[0].to_openai_record() == before
    call = result.records[0]["response"]["choices"][0]["message"]["tool_calls"][0]
    assert isinstance(call["function"]["arguments"], str)


def test_budget_is_respected_counting_with_tiktoken():
    # A budget for about one or two examples: max_context_length - reserved - prompt tokens.
    record = EVAL[0]
    prompt = prompt_tokens(record.to_openai_record()["request"])
    icl = settings(max_context_length=prompt + 2048 + 60, reserved_tokens=2048, max_examples=3, min_examples=0)
    result = build_icl_records([record], TRAIN, icl, seed=3)
    outcome = result.outcomes[0]
    assert outcome.budget == 60
    assert outcome.prompt_tokens == prompt
    content = result.records[0]["request"]["messages"][0]["content"]
    appended = content[len("You are a travel assistant.") :]
    assert count_tokens(appended) <= 60
    assert count_tokens(appended) == outcome.example_tokens
    assert 1 <= outcome.examples < 3  # the budget, not max_examples, limited it


def test_no_budget_means_no_examples_and_a_reason():
    record = EVAL[0]
    prompt = prompt_tokens(record.to_openai_record()["request"])
    icl = settings(max_context_length=max(256, prompt + 100), reserved_tokens=max(256, prompt + 100) - prompt)
    result = build_icl_records([record], TRAIN, icl, seed=1)
    assert result.outcomes[0].examples == 0
    assert result.records[0] == record.to_openai_record()
    below = result.below_min()
    assert len(below) == 1
    assert "leaving no budget" in below[0].reason


def test_empty_pool_is_reported():
    result = build_icl_records(EVAL[:1], [], settings(), seed=1)
    assert result.outcomes[0].examples == 0
    assert result.below_min()[0].reason == "the train pool has no examples to offer"
    assert result.examples_stats() == {"min": 0, "mean": 0.0, "max": 0}


def test_uniform_selection_round_robins_over_tools():
    result = build_icl_records(EVAL, TRAIN, settings(max_examples=3), seed=9)
    for outcome in result.outcomes:
        assert sorted(outcome.labels) == sorted(TOOLS)
    assert result.examples_stats() == {"min": 3, "mean": 3.0, "max": 3}
    assert result.selection == "uniform_distribution"


def test_uniform_selection_is_deterministic_for_a_seed_and_varies_with_another():
    def pick(seed: int) -> list[list[str]]:
        result = build_icl_records(EVAL, TRAIN, settings(max_examples=2), seed=seed)
        return [[json.dumps(m) for m in record["request"]["messages"]] for record in result.records]

    assert pick(1) == pick(1)
    assert any(pick(seed) != pick(1) for seed in range(2, 8))


def test_an_example_never_repeats_the_eval_prompt():
    duplicate = tool_log("How is the weather in Berlin?", "get_weather", {"city": "Berlin"})
    result = build_icl_records(EVAL[:1], [duplicate], settings(min_examples=0), seed=1)
    assert result.outcomes[0].examples == 0


class WordEmbedder:
    """Deterministic fake: a bag-of-words vector over a fixed vocabulary."""

    VOCABULARY = ["weather", "rain", "raining", "flight", "plane", "ticket", "book", "email", "mail", "send"]

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        vectors = []
        for text in texts:
            words = re.findall(r"[a-z]+", text.lower())
            vectors.append([float(words.count(term)) + 0.01 for term in self.VOCABULARY])
        return vectors


def semantic(**overrides) -> IclSettings:
    similarity = SimilaritySettings(relevance_ratio=overrides.pop("relevance_ratio", 1.0))
    return settings(example_selection="semantic_similarity", similarity=similarity, **overrides)


def test_semantic_selection_picks_the_nearest_example():
    embedder = WordEmbedder()
    query = tool_log("Will it be raining in Madrid?", "get_weather", {"city": "Madrid"})
    result = build_icl_records([query], TRAIN, semantic(max_examples=1), seed=1, embedder=embedder)
    examples = parse_examples(result.records[0]["request"]["messages"][0]["content"])
    assert examples[0]["user"] == "Is it raining in Rome right now?"
    assert result.selection == "semantic_similarity"
    assert len(embedder.calls) == 1  # eval prompts and pool embedded in one call


def test_semantic_selection_fills_the_rest_for_tool_coverage():
    query = tool_log("Will it be raining in Madrid? weather please", "get_weather", {"city": "Madrid"})
    result = build_icl_records([query], TRAIN, semantic(max_examples=3, relevance_ratio=0.34), seed=1,
                               embedder=WordEmbedder())
    labels = result.outcomes[0].labels
    assert labels[0] == "get_weather"  # the one relevance pick
    assert sorted(labels) == sorted(TOOLS)  # the other two cover the tools not shown yet


def test_semantic_selection_all_by_relevance_when_ratio_is_one():
    query = tool_log("Will it be raining in Madrid? weather please", "get_weather", {"city": "Madrid"})
    result = build_icl_records([query], TRAIN, semantic(max_examples=2, relevance_ratio=1.0), seed=1,
                               embedder=WordEmbedder())
    assert result.outcomes[0].labels == ["get_weather", "get_weather"]


def test_semantic_selection_without_embedder_is_a_clear_error():
    with pytest.raises(ValueError, match="no embedder was given"):
        build_icl_records(EVAL, TRAIN, semantic(), seed=1)


def test_semantic_selection_rejects_bad_vectors():
    class Broken:
        def embed(self, texts):
            return [[1.0, 0.0]] * (len(texts) - 1) + [[1.0]]

    with pytest.raises(ValueError, match="inconsistent"):
        build_icl_records(EVAL, TRAIN, semantic(), seed=1, embedder=Broken())


def test_max_examples_zero_adds_nothing():
    result = build_icl_records(EVAL, TRAIN, settings(max_examples=0, min_examples=0), seed=1)
    assert [outcome.examples for outcome in result.outcomes] == [0, 0]
    assert result.below_min() == []
