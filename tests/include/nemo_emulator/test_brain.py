"""Tests for the emulator's model brain: the models compute from the data they are given.

The customer-support dataset below is built here (8 tools, 8 phrasings each, many of them
sharing no word with the tool's description); the assertions are relations between
models (customized > base, ICL >= base, ...), never fixed scores.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from include.nemo_emulator import brain
from include.nemo_emulator._brain_tools import calls_match, names_match, normalize_tool_calls

PROJECT_ROOT = Path(__file__).resolve().parents[3]
SMALL = "meta/llama-3.2-1b-instruct"
MEDIUM = "meta/llama-3.1-8b-instruct"
LARGE = "meta/llama-3.3-70b-instruct"
HYPERPARAMETERS = {"training_type": "sft", "finetuning_type": "lora", "epochs": 2, "batch_size": 16,
                   "learning_rate": 1e-4, "lora": {"adapter_dim": 32, "adapter_dropout": 0.1}}  # fmt: skip

# --------------------------------------------------------------------------------------
# A realistic customer-support tool-calling workload
# --------------------------------------------------------------------------------------

SYSTEM = "You are the customer support assistant of Acme Store. Use the tools when they help."
ORDER_ID = {"type": "string", "description": "The order identifier, e.g. ORD-12345."}


def _function(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


TOOLS = [
    _function(
        "get_order_status", "Get the current status of a customer's order.", {"order_id": ORDER_ID}, ["order_id"]
    ),
    _function(
        "cancel_order",
        "Cancel an order that has not shipped yet.",
        {
            "order_id": ORDER_ID,
            "reason": {
                "type": "string",
                "enum": ["changed_mind", "found_cheaper", "ordered_by_mistake", "too_slow"],
                "description": "Why the customer cancels.",
            },
        },
        ["order_id"],
    ),
    _function(
        "track_shipment",
        "Track a shipment with the carrier tracking number.",
        {"tracking_number": {"type": "string", "description": "Carrier tracking number, e.g. 1Z999AA10123456784."}},
        ["tracking_number"],
    ),
    _function(
        "request_refund",
        "Request a refund for an order.",
        {"order_id": ORDER_ID, "amount": {"type": "number", "description": "Refund amount in USD."}},
        ["order_id", "amount"],
    ),
    _function(
        "update_shipping_address",
        "Change the delivery address of an order.",
        {"order_id": ORDER_ID, "address": {"type": "string", "description": "The new street address."}},
        ["order_id", "address"],
    ),
    _function(
        "reset_password",
        "Send a password reset link to the account email.",
        {"email": {"type": "string", "format": "email", "description": "Email address of the account."}},
        ["email"],
    ),
    _function(
        "find_store",
        "Find the nearest physical store location.",
        {"zip_code": {"type": "string", "description": "5-digit ZIP code."}},
        ["zip_code"],
    ),
    _function(
        "check_product_availability",
        "Check whether a product is in stock.",
        {"product_id": {"type": "string", "description": "Product SKU, e.g. SKU-4411."}},
        ["product_id"],
    ),
]

PHRASINGS = {
    "get_order_status": [
        "What's the status of my order {order}?",
        "Can you check on order {order} for me?",
        "Where is my stuff? I bought it last week, number {order}.",
        "Has {order} been processed yet?",
        "Any update on {order}? It's been days.",
        "I placed a purchase ({order}) and haven't heard anything since.",
        "Is {order} still being prepared or is it on its way?",
        "Quick question about purchase {order}: what stage is it at?",
    ],
    "cancel_order": [
        "Please cancel my order {order}.",
        "I want to cancel {order}, I changed my mind.",
        "Cancel order {order} please, I found it cheaper elsewhere.",
        "I don't want {order} anymore, scrap it.",
        "Stop {order} from going out, I ordered it by mistake.",
        "Drop the purchase {order}, delivery is too slow.",
        "Never mind {order}, please call it off.",
        "Please void {order} before it leaves the warehouse.",
    ],
    "track_shipment": [
        "Track my shipment {track}.",
        "Where is my package? Tracking number {track}.",
        "The carrier gave me {track}, where is it now?",
        "Can you locate parcel {track}?",
        "My delivery {track} hasn't arrived, what's going on?",
        "Is {track} out for delivery today?",
        "Follow the box with code {track} please.",
        "When will {track} get here?",
    ],
    "request_refund": [
        "I'd like a refund of ${amount} for order {order}.",
        "Refund {order} please, ${amount}.",
        "Give me my money back for {order}, it was ${amount}.",
        "I was overcharged ${amount} on {order}, please reimburse me.",
        "The item from {order} arrived broken, I want ${amount} returned to my card.",
        "Can I get ${amount} back on {order}?",
        "Please credit ${amount} to my account for {order}.",
        "Requesting a refund for {order} ({amount} dollars).",
    ],
    "update_shipping_address": [
        "Change the shipping address for {order} to {address}.",
        "Please update the delivery address of {order}: {address}.",
        "I moved! Send {order} to {address} instead.",
        "Ship {order} to {address}, not my old place.",
        "Can {order} go to {address}?",
        "Redirect {order} to {address} please.",
        "New address for {order}: {address}.",
        "Wrong address on {order}, it should be {address}.",
    ],
    "reset_password": [
        "Reset my password, my email is {email}.",
        "I forgot my password. Account: {email}.",
        "Can't log in with {email}, help!",
        "Locked out of my account ({email}).",
        "Send a reset link to {email} please.",
        "I need new login credentials for {email}.",
        "My sign-in isn't working for {email}.",
        "How do I get back into my account? It's {email}.",
    ],
    "find_store": [
        "Find a store near {zip}.",
        "Where is the nearest store to {zip}?",
        "Is there a shop close to ZIP {zip}?",
        "I'm in {zip}, where can I visit you in person?",
        "Any locations around {zip}?",
        "Closest branch to {zip}?",
        "I want to pick something up in person near {zip}.",
        "Do you have an outlet in the {zip} area?",
    ],
    "check_product_availability": [
        "Is {sku} in stock?",
        "Check availability of product {sku}.",
        "Do you have {sku} available right now?",
        "Can I buy {sku} today or is it sold out?",
        "Is {sku} back yet?",
        "Any {sku} left?",
        "Are there units of {sku} on the shelves?",
        "I'd like to know if {sku} can be purchased.",
    ],
}
CANCEL_REASONS = {
    "changed my mind": "changed_mind",
    "found it cheaper": "found_cheaper",
    "by mistake": "ordered_by_mistake",
    "too slow": "too_slow",
}


def _values(rng: random.Random) -> dict[str, str]:
    return {
        "order": f"ORD-{rng.randint(10000, 99999)}",
        "track": f"1Z{rng.randint(100, 999)}{rng.choice('ABCDEFGH')}{rng.choice('ABCDEFGH')}"
        f"{rng.randint(10**9, 10**10 - 1)}",
        "email": f"{rng.choice(['ana', 'bob', 'chen', 'dee', 'eli'])}{rng.randint(1, 99)}@example.com",
        "zip": f"{rng.randint(10000, 99999)}",
        "sku": f"SKU-{rng.randint(1000, 9999)}",
        "amount": f"{rng.randint(5, 300)}.{rng.randint(0, 99):02d}",
        "address": f"{rng.randint(1, 999)} {rng.choice(['Baker', 'Maple', 'Oak', 'Cedar', 'Elm'])} "
        f"{rng.choice(['Street', 'Avenue', 'Road', 'Lane'])}",
    }


def _reference_arguments(tool: str, text: str, v: dict[str, str]) -> dict[str, Any]:
    if tool == "get_order_status":
        return {"order_id": v["order"]}
    if tool == "cancel_order":
        args: dict[str, Any] = {"order_id": v["order"]}
        args.update({"reason": reason for phrase, reason in CANCEL_REASONS.items() if phrase in text})
        return args
    if tool == "track_shipment":
        return {"tracking_number": v["track"]}
    if tool == "request_refund":
        return {"order_id": v["order"], "amount": float(v["amount"])}
    if tool == "update_shipping_address":
        return {"order_id": v["order"], "address": v["address"]}
    if tool == "reset_password":
        return {"email": v["email"]}
    if tool == "find_store":
        return {"zip_code": v["zip"]}
    return {"product_id": v["sku"]}


def support_records(count: int = 240, seed: int = 7) -> list[dict[str, Any]]:
    """Log records of the customer-support workload (a full OpenAI request + response each)."""
    rng = random.Random(seed)
    tools = sorted(PHRASINGS)
    records = []
    for i in range(count):
        tool = tools[i % len(tools)]
        values = _values(rng)
        text = rng.choice(PHRASINGS[tool]).format(**values)
        arguments = _reference_arguments(tool, text, values)
        call = {"id": f"call_{i}", "type": "function", "function": {"name": tool, "arguments": json.dumps(arguments)}}
        records.append(
            {
                "workload_id": "support-tools",
                "client_id": "acme",
                "timestamp": 1735689600 + 60 * i,
                "request": {
                    "model": LARGE,
                    "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
                    "tools": TOOLS,
                },
                "response": {
                    "id": f"chatcmpl-{i}",
                    "object": "chat.completion",
                    "model": LARGE,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "tool_calls",
                            "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                        }
                    ],
                },
            }
        )
    return records


def split(records: list[dict[str, Any]], eval_size: int, seed: int = 11) -> tuple[list[dict], list[dict]]:
    """(train, eval): a seeded random split, as the flywheel makes."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    held_out = set(order[:eval_size])
    return [r for i, r in enumerate(records) if i not in held_out], [r for i, r in enumerate(records) if i in held_out]


def training_row(record: dict[str, Any]) -> dict[str, Any]:
    """The flywheel's train/val row for a log record."""
    return {
        "messages": record["request"]["messages"] + [record["response"]["choices"][0]["message"]],
        "tools": record["request"].get("tools"),
    }


def user_text(record: dict[str, Any]) -> str:
    return "\n".join(m["content"] for m in record["request"]["messages"] if m["role"] == "user")


def example_block(number: int, record: dict[str, Any]) -> str:
    """One example in the shared ICL format."""
    message = record["response"]["choices"][0]["message"]
    if message.get("tool_calls"):
        calls = [
            {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
            for c in message["tool_calls"]
        ]
        answer = "Assistant tool calls: " + json.dumps(calls)
    else:
        answer = "Assistant: " + message["content"]
    return f"### Example {number}\nUser: {user_text(record)}\n{answer}"


def with_examples(record: dict[str, Any], examples: list[dict[str, Any]]) -> dict[str, Any]:
    """An ICL eval record: the examples appended to the system message (shared format)."""
    icl = copy.deepcopy(record)
    text = "Here are examples of how to respond:\n\n" + "\n\n".join(
        example_block(n, ex) for n, ex in enumerate(examples, start=1)
    )
    messages = icl["request"]["messages"]
    if not messages or messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": ""})
    existing = messages[0]["content"]
    messages[0]["content"] = f"{existing}\n\n{text}" if existing else text
    return icl


def semantic_icl(records: list[dict], pool: list[dict], k: int = 3) -> list[dict]:
    """ICL records whose examples are the ``k`` pool records nearest in embedding space."""
    pool_vectors = [brain.embed_text(user_text(p)) for p in pool]
    out = []
    for record in records:
        query = brain.embed_text(user_text(record))
        ranked = sorted(range(len(pool)), key=lambda i: (-sum(a * b for a, b in zip(query, pool_vectors[i])), i))
        out.append(with_examples(record, [pool[i] for i in ranked[:k]]))
    return out


def uniform_icl(records: list[dict], pool: list[dict], k: int = 3, seed: int = 5) -> list[dict]:
    """ICL records with ``k`` examples drawn at random (seeded) from the pool."""
    rng = random.Random(seed)
    return [with_examples(r, rng.sample(pool, k)) for r in records]


def tool_accuracy(model: brain.ChatModel, records: list[dict]) -> tuple[float, float]:
    """(function-name accuracy, name-and-arguments accuracy) of ``model`` on ``records``."""
    names = both = 0
    for record in records:
        message = model.complete(record["request"])["choices"][0]["message"]
        predicted = normalize_tool_calls(message.get("tool_calls"))
        expected = normalize_tool_calls(record["response"]["choices"][0]["message"].get("tool_calls"))
        name_ok = names_match(expected, predicted)
        names += name_ok
        both += name_ok and calls_match(expected, predicted)
    return names / len(records), both / len(records)


@pytest.fixture(scope="module")
def support_split() -> tuple[list[dict], list[dict]]:
    return split(support_records(), eval_size=64)


def _customize(train: list[dict], base: str = SMALL, **overrides: Any) -> brain.ChatModel:
    rows = [training_row(r) for r in train]
    cut = max(1, len(rows) // 10)
    return brain.customized_model(
        f"flywheel/{base.split('/')[-1]}-custom", base, rows[cut:], rows[:cut], {**HYPERPARAMETERS, **overrides}
    )


def _request(text: str, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
    return {"model": SMALL, "messages": messages, **extra}


# --------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def test_embed_text_is_normalised_deterministic_and_meaningful() -> None:
    first = brain.embed_text("Where is my package? Tracking number 1Z999AA1.")
    assert len(first) == 384
    assert math.isclose(math.sqrt(sum(v * v for v in first)), 1.0, rel_tol=1e-9)
    assert first == brain.embed_text("Where is my package? Tracking number 1Z999AA1.")
    assert len(brain.embed_text("hello", dimensions=16)) == 16
    # Ids do not matter, shared words do, unrelated text is far.
    same_intent = brain.embed_text("Where is my package? Tracking number 1Z123BB9.")
    related = brain.embed_text("Can you track the package I ordered?")
    unrelated = brain.embed_text("Reset my password please")
    assert _cos(first, same_intent) > _cos(first, related) > _cos(first, unrelated)
    empty = brain.embed_text("")
    assert math.isclose(math.sqrt(sum(v * v for v in empty)), 1.0, rel_tol=1e-9)


@pytest.mark.parametrize("dimensions", [0, -3, 2.5, True])
def test_embed_text_rejects_bad_dimensions(dimensions: Any) -> None:
    with pytest.raises(ValueError, match="dimensions"):
        brain.embed_text("hello", dimensions=dimensions)


def test_outputs_do_not_depend_on_the_hash_seed() -> None:
    script = (
        "import json\n"
        "from include.nemo_emulator import brain\n"
        "from tests.include.nemo_emulator.test_brain import support_records, split, training_row, _customize\n"
        "train, held = split(support_records(120), 24)\n"
        "model = _customize(train)\n"
        "out = [brain.embed_text('Any SKU-1 left in the shop?', 64)]\n"
        "out += [model.complete(r['request']) for r in held[:8]]\n"
        "out += [brain.base_model('meta/llama-3.2-3b-instruct').complete(r['request']) for r in held[:8]]\n"
        "print(json.dumps(out, sort_keys=True))\n"
    )
    outputs = []
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(PROJECT_ROOT)}
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]


# --------------------------------------------------------------------------------------
# Base model
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("meta/llama-3.2-1b-instruct", 1.0),
        ("meta/llama-3.2-3b-instruct", 3.0),
        ("meta/llama-3.1-8b-instruct", 8.0),
        ("meta/llama-3.3-70b-instruct", 70.0),
        ("mistralai/mixtral-8x7b-instruct-v0.1", 56.0),
        ("nvidia/llama-3.3-nemotron-super-49b-v1", 49.0),
        ("some/model-without-size", 8.0),
    ],
)
def test_model_size_is_parsed_from_the_name(name: str, size: float) -> None:
    assert brain.model_size_billions(name) == size


def test_completion_has_the_openai_shape() -> None:
    request = _request("Please cancel my order ORD-12345, I changed my mind.", tools=TOOLS)
    completion = brain.base_model(SMALL).complete(request)
    assert completion["object"] == "chat.completion"
    assert completion["id"].startswith("chatcmpl-") and completion["model"] == SMALL
    assert isinstance(completion["created"], int)
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert isinstance(call["function"]["arguments"], str)  # OpenAI sends a JSON string
    usage = completion["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert brain.base_model(SMALL).complete(request) == completion  # deterministic


def test_base_model_picks_the_matching_tool_and_extracts_arguments() -> None:
    model = brain.base_model(MEDIUM)
    cases = {
        "Please cancel my order ORD-12345, I changed my mind.": (
            "cancel_order", {"order_id": "ORD-12345", "reason": "changed_mind"}),
        "I'd like a refund of $49.99 for order ORD-55555.": (
            "request_refund", {"order_id": "ORD-55555", "amount": 49.99}),
        "Reset my password, my email is dee7@example.com.": ("reset_password", {"email": "dee7@example.com"}),
        "Find a store near 94107.": ("find_store", {"zip_code": "94107"}),
        "Change the shipping address for ORD-10001 to 12 Baker Street.": (
            "update_shipping_address", {"order_id": "ORD-10001", "address": "12 Baker Street"}),
    }  # fmt: skip
    for text, (name, arguments) in cases.items():
        message = model.complete(_request(text, tools=TOOLS))["choices"][0]["message"]
        assert normalize_tool_calls(message["tool_calls"]) == [{"name": name, "arguments": arguments}], text


def test_base_model_answers_in_text_when_no_tool_matches() -> None:
    completion = brain.base_model(LARGE).complete(_request("Who won the football game yesterday?", tools=TOOLS))
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]
    assert "football" in choice["message"]["content"]


def test_tool_choice_is_honoured() -> None:
    model = brain.base_model(LARGE)
    text = "Who won the football game yesterday?"
    required = model.complete(_request(text, tools=TOOLS, tool_choice="required"))["choices"][0]
    assert required["finish_reason"] == "tool_calls"
    none = model.complete(_request("Please cancel my order ORD-12345.", tools=TOOLS, tool_choice="none"))
    assert none["choices"][0]["finish_reason"] == "stop"
    forced = model.complete(
        _request("Please cancel my order ORD-12345.", tools=TOOLS,
                 tool_choice={"type": "function", "function": {"name": "get_order_status"}})
    )["choices"][0]["message"]["tool_calls"][0]["function"]  # fmt: skip
    assert forced["name"] == "get_order_status" and json.loads(forced["arguments"]) == {"order_id": "ORD-12345"}
    with pytest.raises(ValueError, match="not in request.tools"):
        model.complete(_request("hi", tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}}))


def test_generic_answer_is_prompt_derived_and_respects_max_tokens() -> None:
    model = brain.base_model(SMALL)
    answer = model.complete(_request("What is your return policy for shoes?"))["choices"][0]
    assert answer["finish_reason"] == "stop" and "return" in answer["message"]["content"]
    short = model.complete(_request("What is your return policy for shoes?", max_tokens=5))
    assert short["choices"][0]["finish_reason"] == "length" and short["usage"]["completion_tokens"] == 5


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ({"messages": []}, "request.messages"),
        ({"messages": "hello"}, "request.messages"),
        ({"messages": [{"content": "no role"}]}, "role"),
        ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, "function name"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    ],
)
def test_malformed_requests_are_rejected_clearly(request_body: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        brain.base_model(SMALL).complete(request_body)


def test_larger_base_models_are_not_worse(support_split: tuple[list[dict], list[dict]]) -> None:
    _, held_out = support_split
    small = tool_accuracy(brain.base_model(SMALL), held_out)
    large = tool_accuracy(brain.base_model(LARGE), held_out)
    assert large[0] >= small[0] and large[1] >= small[1]
    assert large != small  # capacity changes behaviour


# --------------------------------------------------------------------------------------
# In-context examples
# --------------------------------------------------------------------------------------


def test_icl_examples_are_parsed_from_the_shared_format() -> None:
    system = (
        "You are helpful.\n\nHere are examples of how to respond:\n\n"
        "### Example 1\nUser: What time do you open?\nSecond line\nAssistant: We open at 9am.\n"
        " Assistant: this line was escaped by the writer\n\n"
        "### Example 2\nUser: Cancel ORD-1\n"
        'Assistant tool calls: [{"name": "cancel_order", "arguments": {"order_id": "ORD-1"}}]'
    )
    examples = brain.parse_icl_examples(system)
    assert examples[0].user == "What time do you open?\nSecond line"
    assert examples[0].text == "We open at 9am.\nAssistant: this line was escaped by the writer"
    assert examples[1].calls == [{"name": "cancel_order", "arguments": {"order_id": "ORD-1"}}]
    assert brain.parse_icl_examples("No examples here.") == []


def _tool_record(text: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    call = {"id": "call_0", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
    return {
        "request": _request(text, tools=TOOLS),
        "response": {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [call]}}]},
    }


def test_icl_example_is_followed_with_arguments_from_the_current_request() -> None:
    example = _tool_record("Are there units of SKU-1111 on the shelves?", "check_product_availability",
                           {"product_id": "SKU-1111"})  # fmt: skip
    record = _tool_record("Are there units of SKU-2222 on the shelves?", "check_product_availability",
                          {"product_id": "SKU-2222"})  # fmt: skip
    far = _tool_record("Reset my password, my email is ana1@example.com.", "reset_password",
                       {"email": "ana1@example.com"})  # fmt: skip
    model = brain.base_model(SMALL)
    icl = model.complete(with_examples(record, [far, example])["request"])["choices"][0]["message"]
    assert normalize_tool_calls(icl["tool_calls"]) == [
        {"name": "check_product_availability", "arguments": {"product_id": "SKU-2222"}}
    ]
    # An example unlike the request is not followed.
    unrelated = model.complete(with_examples(record, [far])["request"])["choices"][0]["message"]
    assert "reset_password" not in json.dumps(unrelated)
    # An example whose tool is not offered in the request is ignored.
    no_tool = with_examples(record, [example])
    no_tool["request"]["tools"] = [t for t in TOOLS if t["function"]["name"] != "check_product_availability"]
    message = model.complete(no_tool["request"])["choices"][0]["message"]
    assert "check_product_availability" not in json.dumps(message)


def test_icl_text_example_is_adapted_to_the_current_request() -> None:
    example = {
        "request": {"messages": [{"role": "user", "content": "When will my order ORD-11111 ship?"}]},
        "response": {"choices": [{"message": {"role": "assistant",
                                              "content": "Order ORD-11111 ships within 2 business days."}}]},
    }  # fmt: skip
    record = {"request": {"messages": [{"role": "user", "content": "When will my order ORD-22222 ship?"}]}}
    icl = with_examples(record, [example])
    answer = brain.base_model(SMALL).complete(icl["request"])["choices"][0]["message"]["content"]
    assert answer == "Order ORD-22222 ships within 2 business days."
    plain = brain.base_model(SMALL).complete(record["request"])["choices"][0]["message"]["content"]
    assert plain != answer


# --------------------------------------------------------------------------------------
# Customized model
# --------------------------------------------------------------------------------------


def test_customized_beats_base_and_icl_helps(support_split: tuple[list[dict], list[dict]]) -> None:
    train, held_out = support_split
    semantic = semantic_icl(held_out, train)
    uniform = uniform_icl(held_out, train)
    figures = {}
    for name in (SMALL, MEDIUM):
        base = brain.base_model(name)
        figures[name] = {
            "base": tool_accuracy(base, held_out),
            "icl-uniform": tool_accuracy(base, uniform),
            "icl-semantic": tool_accuracy(base, semantic),
            "customized": tool_accuracy(_customize(train, base=name), held_out),
        }
    print(f"\nTool-calling accuracy on {len(held_out)} held-out records (train {len(train)}):")
    print(f"{'model':32} {'variant':14} {'function_name':>14} {'name_and_args':>14}")
    for name, rows in figures.items():
        for variant, (names, both) in rows.items():
            print(f"{name:32} {variant:14} {names:14.3f} {both:14.3f}")
    for name, rows in figures.items():
        assert rows["customized"][0] > rows["base"][0], name
        assert rows["customized"][1] > rows["base"][1], name
        assert rows["icl-semantic"][0] >= rows["base"][0] and rows["icl-semantic"][1] >= rows["base"][1], name
        assert rows["icl-uniform"][0] >= rows["base"][0], name


def test_customized_model_does_not_know_tools_it_was_not_trained_on(
    support_split: tuple[list[dict], list[dict]],
) -> None:
    train, held_out = support_split

    def tool_of(record: dict) -> str:
        return record["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["name"]

    unseen = "check_product_availability"
    model = _customize([r for r in train if tool_of(r) != unseen])
    base = brain.base_model(SMALL)
    unseen_rows = [r for r in held_out if tool_of(r) == unseen]
    seen_rows = [r for r in held_out if tool_of(r) != unseen]
    assert unseen_rows and seen_rows
    assert tool_accuracy(model, unseen_rows)[0] <= tool_accuracy(base, unseen_rows)[0]
    assert tool_accuracy(model, seen_rows)[0] > tool_accuracy(base, seen_rows)[0]


def test_customized_model_falls_back_to_its_base_when_nothing_is_near(
    support_split: tuple[list[dict], list[dict]],
) -> None:
    train, _ = support_split
    model = _customize(train)
    request = _request("Who won the football game yesterday?")
    base_message = brain.base_model(SMALL).complete(request)["choices"][0]["message"]
    assert model.complete(request)["choices"][0]["message"] == base_message
    assert model.complete(request)["model"] == model.name


def test_training_hyperparameters_and_summary(support_split: tuple[list[dict], list[dict]]) -> None:
    train, held_out = support_split
    untrained = _customize(train, epochs=0)
    assert tool_accuracy(untrained, held_out) == tool_accuracy(brain.base_model(SMALL), held_out)
    one_epoch = tool_accuracy(_customize(train, epochs=1), held_out)
    three_epochs = tool_accuracy(_customize(train, epochs=3), held_out)
    assert three_epochs[0] >= one_epoch[0]
    summary = _customize(train).training_summary
    assert summary["train_rows_used"] + summary["validation_rows"] == len(train)
    assert summary["train_rows_skipped"] == 0 and summary["validation_accuracy"] is not None
    with pytest.raises(ValueError, match="epochs"):
        _customize(train, epochs=-1)


def test_unusable_training_rows_are_counted_or_rejected() -> None:
    good = training_row(support_records(1)[0])
    bad = {"messages": [{"role": "user", "content": "no answer"}]}
    model = brain.customized_model("ns/m", SMALL, [good, bad, "junk"], [], HYPERPARAMETERS)
    assert model.training_summary["train_rows_used"] == 1
    assert model.training_summary["train_rows_skipped"] == 2
    with pytest.raises(ValueError, match="no usable training row"):
        brain.customized_model("ns/m", SMALL, [bad], [], HYPERPARAMETERS)


FAQ = {
    "returns": (
        ["What is your return policy?", "Can I send back an item I don't like?",
         "How many days do I have to return something?", "Do you accept returns on sale items?"],
        "You can return most items within 30 days of delivery for a full refund. Items must be unused and in "
        "their original packaging; start a return from the Orders page.",
    ),
    "hours": (
        ["What are your opening hours?", "When do your stores open on Sunday?", "Are you open late on weekdays?",
         "What time do your stores open?"],
        "Our stores are open Monday to Saturday from 9am to 9pm and on Sunday from 10am to 6pm.",
    ),
    "shipping": (
        ["How much does shipping cost?", "Is shipping free?", "What do you charge to ship an order?",
         "Do I pay for shipping on small orders?"],
        "Standard shipping is free on orders over $50; otherwise it costs $5.99. Express shipping is $14.99.",
    ),
    "warranty": (
        ["Do your products come with a warranty?", "What if my blender breaks after six months?",
         "How long is the warranty on electronics?", "Is there a warranty on appliances?"],
        "All electronics and appliances carry a one-year manufacturer warranty covering defects. Keep your "
        "receipt to make a claim.",
    ),
}  # fmt: skip


def faq_rows() -> list[dict[str, Any]]:
    """Generic (no tools) chat rows: (question, reference answer) per topic."""
    rows = []
    for questions, answer in FAQ.values():
        for question in questions:
            rows.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]})
    return rows


def similarity_prompt(reference: str, candidate: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Compare the candidate with the reference. Reply SIMILARITY: <1-10>."},
        {"role": "user", "content": f"Reference answer:\n{reference}\n\nCandidate answer:\n{candidate}\n\n"
                                    "How similar are they? Answer with SIMILARITY: <1-10>."},
    ]  # fmt: skip


def judge_text(messages: list[dict[str, str]]) -> str:
    return brain.judge_model(LARGE).complete({"messages": messages})["choices"][0]["message"]["content"]


def test_customized_model_learns_generic_answers() -> None:
    rows = faq_rows()
    held_out = rows[::4]
    train = [r for i, r in enumerate(rows) if i % 4]
    model = brain.customized_model("ns/faq", SMALL, train, [], HYPERPARAMETERS)
    base = brain.base_model(SMALL)

    def mean_similarity(chat: brain.ChatModel) -> float:
        total = 0
        for row in held_out:
            answer = chat.complete({"messages": row["messages"][:1]})["choices"][0]["message"]["content"]
            verdict = judge_text(similarity_prompt(row["messages"][1]["content"], answer))
            total += int(verdict.split("SIMILARITY: ")[1].split()[0])
        return total / len(held_out)

    assert mean_similarity(model) > mean_similarity(base)


# --------------------------------------------------------------------------------------
# Judge
# --------------------------------------------------------------------------------------


def test_judge_similarity_scale() -> None:
    reference = "Standard shipping is free on orders over $50; otherwise it costs $5.99."
    identical = judge_text(similarity_prompt(reference, reference))
    assert identical.startswith("SIMILARITY: 10\n")
    partial = judge_text(similarity_prompt(reference, "Shipping costs $5.99 unless your order is large."))
    unrelated = judge_text(similarity_prompt(reference, "Our CEO enjoys hiking in the Alps every summer."))
    score = {name: int(text.split()[1]) for name, text in (("partial", partial), ("unrelated", unrelated))}
    assert 10 > score["partial"] > score["unrelated"]
    assert score["unrelated"] <= 2


TOOL_JUDGE_SYSTEM = "Compare the expected and the assistant's tool calls. Reply RATING: 1 if correct, RATING: 0 if not."


def _tool_prompt(expected: Any, predicted: Any, style: str = "flywheel") -> list[dict[str, str]]:
    if style == "flywheel":
        user = f"Expected tool calls:\n{json.dumps(expected)}\n\nAssistant tool calls:\n{json.dumps(predicted)}\n\n" \
               "Is the assistant correct? Answer with RATING: 1 or RATING: 0."  # fmt: skip
    elif style == "blueprint":  # a template rendered without tojson: Python literals
        user = f"\n*Ground Truth*: {expected!r}\n*Prediction*: {predicted!r}\n"
    else:
        user = f"GROUND TRUTH: {json.dumps(expected)}\nPREDICTION: {json.dumps(predicted)}"
    return [{"role": "system", "content": TOOL_JUDGE_SYSTEM}, {"role": "user", "content": user}]


def _openai_call(name: str, arguments: Any) -> dict[str, Any]:
    return {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}


@pytest.mark.parametrize("style", ["flywheel", "blueprint", "plain"])
def test_judge_rates_tool_calls(style: str) -> None:
    expected = [_openai_call("cancel_order", json.dumps({"order_id": "ORD-1", "reason": "too_slow"}))]
    same = [_openai_call("cancel_order", {"reason": "too_slow", "order_id": "ord-1 "})]  # object args, case, space
    other_args = [_openai_call("cancel_order", json.dumps({"order_id": "ORD-2"}))]
    other_name = [_openai_call("get_order_status", json.dumps({"order_id": "ORD-1"}))]
    assert judge_text(_tool_prompt(expected, same, style)).startswith("RATING: 1\n")
    assert judge_text(_tool_prompt(expected, other_args, style)).startswith("RATING: 0\n")
    assert judge_text(_tool_prompt(expected, other_name, style)).startswith("RATING: 0\n")
    assert judge_text(_tool_prompt(expected, None, style)).startswith("RATING: 0\n")
    assert judge_text(_tool_prompt(None, None, style)).startswith("RATING: 1\n")


def test_judge_without_markers_answers_something_no_parser_reads() -> None:
    answer = judge_text([{"role": "user", "content": "Rate this answer: We open at 9am. Reply RATING: <0|1>."}])
    assert answer.startswith("Cannot judge")
    assert not any(ch.isdigit() for ch in answer)


def test_judge_reads_sections_in_several_styles() -> None:
    reference, candidate = "We open at 9am on weekdays.", "We open at 9am on weekdays."
    styles = [
        f"REFERENCE: {reference}\nCANDIDATE: {candidate}",
        f"**Reference:** {reference}\n**Candidate:** {candidate}",
        f"REFERENCE ANSWER\n<<<\n{reference}\n>>>\n\nCANDIDATE ANSWER\n<<<\n{candidate}\n>>>",
        f"<reference>{reference}</reference>\n<candidate>{candidate}</candidate>",
        f"## Ground truth\n```\n{reference}\n```\n## Prediction\n```\n{candidate}\n```",
    ]
    for text in styles:
        messages = [{"role": "system", "content": "Reply SIMILARITY: <1-10>."}, {"role": "user", "content": text}]
        assert judge_text(messages).startswith("SIMILARITY: 10"), text
