"""Record validation, normalization, labels and prompt hashes."""

from __future__ import annotations

import copy
import json

import pytest

from include.flywheel.records import (
    NO_TOOL,
    DropReason,
    LogRecord,
    RecordRejected,
    WorkloadType,
    detect_workload_type,
    parse_arguments,
    parse_record,
    require_tool_calls,
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def tool_record(arguments: object = '{"city": "Paris"}', *, content: object = None, drop_content: bool = False) -> dict:
    message: dict = {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
        ],
    }
    if drop_content:
        del message["content"]
    return {
        "workload_id": "w",
        "client_id": "c",
        "timestamp": 1700000000,
        "request": {
            "model": "m",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}],
            "tools": [WEATHER_TOOL],
        },
        "response": {"choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]},
    }


def text_record(user: str = "What is 2+2?", answer: str = "4") -> dict:
    return {
        "workload_id": "w",
        "client_id": "c",
        "timestamp": "2026-01-01T00:00:00Z",
        "request": {"model": "m", "messages": [{"role": "user", "content": user}]},
        "response": {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]},
    }


def rejected(raw: object) -> RecordRejected:
    with pytest.raises(RecordRejected) as caught:
        parse_record(raw)
    return caught.value


def mutate(raw: dict, path: str, value: object) -> dict:
    raw = copy.deepcopy(raw)
    target = raw
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is DELETE:
        del target[int(last) if last.isdigit() else last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return raw


DELETE = object()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (["not", "a", "dict"], DropReason.NOT_AN_OBJECT),
        (mutate(text_record(), "request", DELETE), DropReason.MISSING_REQUEST),
        (mutate(text_record(), "request", "text"), DropReason.MISSING_REQUEST),
        (mutate(text_record(), "request.messages", DELETE), DropReason.MISSING_MESSAGES),
        (mutate(text_record(), "request.messages", {"role": "user"}), DropReason.MISSING_MESSAGES),
        (mutate(text_record(), "request.messages", []), DropReason.EMPTY_MESSAGES),
        (mutate(text_record(), "request.messages.0", "hello"), DropReason.INVALID_MESSAGE),
        (mutate(text_record(), "request.messages.0.role", "robot"), DropReason.INVALID_MESSAGE),
        (mutate(text_record(), "request.messages.0.content", None), DropReason.INVALID_MESSAGE),
        (mutate(text_record(), "request.messages.0.content", 42), DropReason.INVALID_MESSAGE),
        (mutate(text_record(), "request.messages.0.role", "system"), DropReason.NO_USER_MESSAGE),
        (mutate(tool_record(), "request.tools", {"name": "x"}), DropReason.INVALID_TOOLS),
        (mutate(tool_record(), "request.tools.0", "get_weather"), DropReason.INVALID_TOOLS),
        (mutate(tool_record(), "request.tools.0.type", "retrieval"), DropReason.INVALID_TOOLS),
        (mutate(tool_record(), "request.tools.0.function.name", ""), DropReason.INVALID_TOOLS),
        (mutate(tool_record(), "request.tools.0.function.parameters", "city"), DropReason.INVALID_TOOLS),
        (mutate(text_record(), "response", DELETE), DropReason.MISSING_RESPONSE),
        (mutate(text_record(), "response.choices", []), DropReason.MISSING_CHOICES),
        (mutate(text_record(), "response.choices", DELETE), DropReason.MISSING_CHOICES),
        (mutate(text_record(), "response.choices.0.message", DELETE), DropReason.MISSING_RESPONSE_MESSAGE),
        (mutate(text_record(), "response.choices.0", "4"), DropReason.MISSING_RESPONSE_MESSAGE),
        (mutate(text_record(), "response.choices.0.message.role", "user"), DropReason.INVALID_RESPONSE_MESSAGE),
        (mutate(text_record(), "response.choices.0.message.content", 4), DropReason.INVALID_RESPONSE_MESSAGE),
        (mutate(text_record(), "response.choices.0.message.content", "  "), DropReason.EMPTY_RESPONSE),
        (mutate(text_record(), "response.choices.0.message.content", None), DropReason.EMPTY_RESPONSE),
        (mutate(tool_record(), "response.choices.0.message.tool_calls", {"a": 1}), DropReason.INVALID_TOOL_CALL),
        (mutate(tool_record(), "response.choices.0.message.tool_calls.0", "x"), DropReason.INVALID_TOOL_CALL),
        (
            mutate(tool_record(), "response.choices.0.message.tool_calls.0.function", DELETE),
            DropReason.INVALID_TOOL_CALL,
        ),
        (
            mutate(tool_record(), "response.choices.0.message.tool_calls.0.function.name", None),
            DropReason.INVALID_TOOL_CALL,
        ),
        (
            mutate(tool_record(), "response.choices.0.message.tool_calls.0.type", "code_interpreter"),
            DropReason.TOOL_CALL_NOT_FUNCTION,
        ),
        (tool_record('{"city": "Par'), DropReason.UNPARSEABLE_ARGUMENTS),
        (tool_record("[1, 2]"), DropReason.UNPARSEABLE_ARGUMENTS),
        (tool_record(42), DropReason.UNPARSEABLE_ARGUMENTS),
        (
            mutate(tool_record(), "response.choices.0.message.tool_calls.0.function.name", "book_flight"),
            DropReason.UNKNOWN_TOOL,
        ),
    ],
)
def test_each_drop_reason(raw, reason):
    error = rejected(raw)
    assert error.reason is reason
    assert error.detail  # says where


def test_drop_reason_codes_are_stable_snake_case():
    for reason in DropReason:
        assert reason.value == reason.value.lower()
        assert " " not in reason.value
        assert reason.value == reason.name.lower()


def test_detail_names_the_failing_field():
    error = rejected(mutate(text_record(), "request.messages.0.role", "robot"))
    assert "request.messages[0].role" in error.detail
    assert "'robot'" in error.detail


@pytest.mark.parametrize("arguments", ['{"city": "Paris"}', {"city": "Paris"}])
def test_both_argument_encodings_normalize_to_a_parsed_object(arguments):
    record = parse_record(tool_record(arguments))
    call = record.response_message["tool_calls"][0]
    assert call["function"]["arguments"] == {"city": "Paris"}

    openai = record.to_openai_record()
    sent = openai["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert isinstance(sent, str)
    assert json.loads(sent) == {"city": "Paris"}

    parsed_row = record.to_training_row(parse_function_arguments=True)
    assert parsed_row["messages"][-1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    string_row = record.to_training_row(parse_function_arguments=False)
    assert json.loads(string_row["messages"][-1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}


def test_empty_argument_string_means_no_arguments():
    assert parse_arguments("") == {}
    assert parse_arguments("  ") == {}
    assert parse_record(tool_record("")).response_message["tool_calls"][0]["function"]["arguments"] == {}


@pytest.mark.parametrize("drop_content", [False, True])
def test_tool_call_answer_may_have_null_or_absent_content(drop_content):
    record = parse_record(tool_record(drop_content=drop_content))
    assert record.response_message["content"] is None
    assert record.has_tool_calls
    # OpenAI format keeps null; training uses an empty string (chat templates concatenate text).
    assert record.to_openai_record()["response"]["choices"][0]["message"]["content"] is None
    assert record.to_training_row()["messages"][-1]["content"] == ""


def test_history_assistant_tool_calls_are_normalized_too():
    raw = tool_record()
    raw["request"]["messages"][1:1] = [
        {"role": "user", "content": "first"},
        {
            "role": "assistant",
            "tool_calls": [{"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "a", "content": "sunny"},
    ]
    record = parse_record(raw)
    assert record.messages[2]["tool_calls"][0]["function"]["arguments"] == {}
    assert record.messages[2]["content"] is None
    openai_history = record.to_openai_record()["request"]["messages"][2]
    assert openai_history["tool_calls"][0]["function"]["arguments"] == "{}"
    assert openai_history["content"] is None
    training_history = record.to_training_row()["messages"][2]
    assert training_history["tool_calls"][0]["function"]["arguments"] == {}
    assert training_history["content"] == ""
    # the raw record is not modified
    assert raw["request"]["messages"][2]["tool_calls"][0]["function"]["arguments"] == "{}"


def test_unparseable_history_arguments_are_dropped():
    raw = tool_record()
    raw["request"]["messages"].insert(
        1,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"type": "function", "function": {"name": "x", "arguments": "{"}}],
        },
    )
    assert rejected(raw).reason is DropReason.UNPARSEABLE_ARGUMENTS


def test_tool_name_check_is_skipped_without_request_tools():
    raw = tool_record()
    del raw["request"]["tools"]
    assert parse_record(raw).label == "get_weather"


def test_label_is_first_tool_name_or_no_tool():
    raw = tool_record()
    raw["request"]["tools"].append({"type": "function", "function": {"name": "get_time"}})
    raw["response"]["choices"][0]["message"]["tool_calls"].insert(
        0, {"type": "function", "function": {"name": "get_time", "arguments": {}}}
    )
    record = parse_record(raw)
    assert record.label == "get_time"
    assert record.tool_names == ("get_time", "get_weather")
    assert parse_record(text_record()).label == NO_TOOL


def test_workload_type_detection():
    text = parse_record(text_record())
    tool = parse_record(tool_record())
    assert detect_workload_type([text, text]) is WorkloadType.GENERIC
    assert detect_workload_type([text, tool]) is WorkloadType.TOOL_CALLING
    require_tool_calls(tool)
    with pytest.raises(RecordRejected) as caught:
        require_tool_calls(text)
    assert caught.value.reason is DropReason.NO_TOOL_CALLS


def test_prompt_hash_ignores_whitespace_and_case_but_not_words():
    base = parse_record(text_record("What is  2+2?"))
    same = parse_record(text_record("  what IS 2+2?\n", answer="four"))
    other = parse_record(text_record("What is 2+3?"))
    assert base.prompt_hash == same.prompt_hash
    assert base.dedup_key == same.dedup_key
    assert base.prompt_hash != other.prompt_hash


def test_prompt_hash_is_stable_across_runs():
    # Pinned: the hash keys leakage checks against earlier runs' training sets, so it must
    # never drift (blake2b-128 of the normalized user turns, not Python's salted hash()).
    assert parse_record(text_record("Hello   There")).prompt_hash == "622798f37f6038550a1d0f38f084ea5a"


def test_prompt_hash_uses_only_user_turns_in_order():
    two_turns = text_record()
    two_turns["request"]["messages"] = [
        {"role": "system", "content": "A"},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "two"},
    ]
    other_system = copy.deepcopy(two_turns)
    other_system["request"]["messages"][0]["content"] = "B"
    swapped = copy.deepcopy(two_turns)
    swapped["request"]["messages"][1]["content"], swapped["request"]["messages"][3]["content"] = "two", "one"
    assert parse_record(two_turns).prompt_hash == parse_record(other_system).prompt_hash
    assert parse_record(two_turns).prompt_hash != parse_record(swapped).prompt_hash
    assert parse_record(two_turns).user_text == "one\ntwo"


def test_content_part_lists_are_accepted():
    raw = text_record()
    raw["request"]["messages"][0]["content"] = [{"type": "text", "text": "What is 2+2?"}]
    assert parse_record(raw).prompt_hash == parse_record(text_record()).prompt_hash


def test_only_the_first_choice_is_kept():
    raw = text_record()
    raw["response"]["choices"].append({"index": 1, "message": {"role": "assistant", "content": "four"}})
    record = parse_record(raw)
    assert len(record.to_openai_record()["response"]["choices"]) == 1


def test_openai_record_keeps_top_level_fields_and_is_json():
    raw = tool_record()
    raw["latency_ms"] = 120
    record = parse_record(raw)
    openai = record.to_openai_record()
    assert openai["latency_ms"] == 120
    assert openai["workload_id"] == "w"
    assert openai["request"]["tools"] == [WEATHER_TOOL]
    json.dumps(openai)


def test_training_row_shape():
    row = parse_record(tool_record()).to_training_row()
    assert set(row) == {"messages", "tools"}
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    assert set(parse_record(text_record()).to_training_row()) == {"messages"}


def test_training_row_is_a_copy():
    record = parse_record(tool_record())
    row = record.to_training_row()
    row["messages"][-1]["tool_calls"][0]["function"]["arguments"]["city"] = "Rome"
    assert record.response_message["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}


def test_log_record_repr_is_short():
    assert "get_weather" in repr(parse_record(tool_record()))
    assert isinstance(parse_record(tool_record()), LogRecord)


def test_compact_shares_equal_tool_lists_and_keeps_the_record_intact():
    first, second = parse_record(tool_record()), parse_record(tool_record('{"city": "Rome"}'))
    assert first.tools is not second.tools
    before = first.to_openai_record()
    first.compact()
    second.compact()
    assert first.tools is second.tools  # one copy of the schemas for both
    assert first.to_openai_record() == before
    assert first.raw["request"] is None and first.raw["workload_id"] == "w"
    assert second.response_message["tool_calls"][0]["function"]["arguments"] == {"city": "Rome"}
