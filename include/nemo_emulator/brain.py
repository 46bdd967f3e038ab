"""The emulator's "model brain": chat models, embeddings and the LLM judge.

This is an EMULATOR of NIM models for tests and demos, not NeMo and not a language model.
Its models compute their answers from the request and from the data they were given, so
evaluation scores mean something (a customized model beats its base model when its
training data covers the requests; in-context examples help when they resemble the
request), and every output is a deterministic function of the inputs.

Models:
    * ``base_model(name)``: answers from the prompt alone. With ``tools``, it calls the tool
      whose name and description (and, for larger models, parameter docs) best match the
      user turns (word overlap, widened by a small general-purpose synonym table, plus
      feature cosine), filling arguments with the values of the right kind found in the
      user text (enum values named, ids, emails, dates, amounts, ZIP codes, addresses);
      with nothing matching well, it answers in text. Without tools, it restates the
      question with generic help. Capacity comes from the parameter count in the name
      ("1b", "8b", "70b", "8x7b"): larger models read more of each description, know more
      synonyms, use parameter descriptions as format hints, fill optional parameters and
      rank tools with less (deterministic) noise.
    * In-context examples: when a system message carries examples in the flywheel's ICL
      format (``### Example <n>`` / ``User:`` / ``Assistant:`` or ``Assistant tool calls:``),
      the model compares the user turns with each example's user text and follows the
      nearest one when it is close enough (same tool, arguments re-extracted from the
      current text; or the example answer with its ids/numbers replaced).
    * ``customized_model(...)``: nearest neighbours (TF-IDF vectors of the user turns, IDF
      from its training rows) in its training rows; the closest neighbours vote for a
      behaviour (tool + arguments re-extracted from the current text, the trained value
      where the text has none; or the trained answer) and it falls back to its base model
      when no training row is near. More epochs / a larger adapter lower the similarity it
      needs a little. It knows nothing its training rows did not show.
    * ``judge_model(name)``: reads a judge prompt (see "Judge prompt markers" below) and
      answers ``SIMILARITY: <1-10>`` for answer-similarity prompts or ``RATING: <0|1>`` for
      tool-call correctness prompts, with a one-line reason.

Judge prompt markers:
    The judge looks, in the last user message first and then in the whole prompt, for a
    *reference* section and a *candidate* section. A section starts on a line that begins
    with a label (case-insensitive; Markdown decoration such as ``*``, ``**``, ``#`` around
    it is fine), followed by ``:`` and the text, or alone on its line with the text on the
    next lines; it runs until the next labelled line or the end of the message. Trailing
    instruction lines that mention RATING / SIMILARITY / SCORE are dropped, and text
    wrapped in ``<<<`` ... ``>>>`` or Markdown code fences is unwrapped. XML-style tags
    (``<reference>...</reference>``, ``<candidate>...</candidate>``) work too.

    * reference labels: ``REFERENCE``, ``GROUND TRUTH`` (or ``GROUND_TRUTH``),
      ``EXPECTED``, ``GOLD`` alone, or any of these or ``IDEAL`` / ``CORRECT`` /
      ``TARGET`` followed by a qualifier: ``ANSWER``, ``RESPONSE``, ``OUTPUT``,
      ``RESULT``, ``TEXT``, ``TOOL CALLS``, ``TOOL CALL``, ``CALLS``, ``FUNCTION CALLS``
      (e.g. ``Reference answer:``, ``Expected tool calls:``, ``*Ground Truth*:``);
    * candidate labels: ``CANDIDATE``, ``PREDICTION``, ``PREDICTED``, ``ACTUAL`` alone,
      or any of these or ``MODEL`` / ``GENERATED`` / ``ASSISTANT`` followed by a
      qualifier (e.g. ``Candidate answer:``, ``Assistant tool calls:``, ``*Prediction*:``),
      and ``ANSWER TO EVALUATE``;
    * other labels that only end a section: ``TASK``, ``TASK / QUESTION``, ``QUESTION``,
      ``CONTEXT``, ``CONVERSATION``, ``INSTRUCTIONS``, ``TOOLS``, ``RATING``,
      ``SIMILARITY``, ``SCORE``, ``EXPLANATION``, ``REASON``.

    The flywheel's prompts (``include/nemo/payloads.py``) use ``Expected tool calls:`` /
    ``Assistant tool calls:`` and ``Reference answer:`` / ``Candidate answer:``.

    The answer format follows the prompt: ``SIMILARITY: n`` (1..10) when the prompt
    mentions SIMILARITY, ``RATING: n`` (0 or 1) when it mentions RATING, the bare integer
    otherwise. When both sections parse as tool calls (JSON, or a Python literal from a
    template rendered without ``tojson``), they are compared as calls: same names and
    same arguments after normalisation (case, whitespace, 1 == 1.0) -> 1 (similarity 10),
    else 0 (similarity 1). Otherwise the texts are compared (mean of token-set F1 and
    feature cosine, mapped to 1..10; a rating is 1 from similarity 0.8). Without both
    sections the judge answers a "Cannot judge" sentence with no number in it, which a
    score parser will not parse (the evaluation counts it as unparsed).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from include.nemo_emulator._brain_text import (
    STOPWORDS,
    content_stems,
    cosine,
    count_tokens,
    dense_embedding,
    expand_stems,
    features,
    idf_table,
    stable_id,
    stable_unit,
    text_similarity,
    vector,
    weighted_vector,
    words,
)
from include.nemo_emulator._brain_tools import (
    ToolSpec,
    adapt_arguments,
    calls_match,
    extract_arguments,
    find_entities,
    name_words,
    names_match,
    normalize_tool_calls,
    parse_json_or_literal,
    parse_tools,
)

log = logging.getLogger(__name__)

__all__ = [
    "ChatModel",
    "base_model",
    "customized_model",
    "embed_text",
    "judge_model",
    "model_size_billions",
    "parse_icl_examples",
]

# Fixed "created" timestamp (2025-01-01T00:00:00Z): completions must be a deterministic
# function of the request; the HTTP layer may stamp the real time if it wants to.
CREATED = 1735689600

# A tool whose match score stays under this is not called ("nothing matches well").
TOOL_MATCH_THRESHOLD = 0.2
# An in-context example is followed when its user text is at least this similar
# (lowered a little for larger models, which follow examples more readily).
ICL_THRESHOLD = 0.5
# Customized models follow their training neighbours from this similarity (before the
# hyperparameters sharpen it); up to CUSTOM_NEIGHBOURS neighbours at least VOTE_MARGIN
# times as similar as the nearest one vote.
CUSTOM_THRESHOLD = 0.45
CUSTOM_NEIGHBOURS = 3
VOTE_MARGIN = 0.85
# Validation rows scored for training_summary (the rest are only counted).
MAX_VALIDATION_SCORED = 256


@runtime_checkable
class ChatModel(Protocol):
    """Anything that answers OpenAI chat requests (the emulator's served models)."""

    name: str

    def complete(self, request: dict) -> dict:
        """Answer an OpenAI chat request with an OpenAI ``chat.completion`` dict."""
        ...


def embed_text(text: str, dimensions: int = 384) -> list[float]:
    """Deterministic L2-normalised embedding of ``text`` (hashed word, bigram, char n-grams).

    Texts that share words (after stop-word removal and light stemming) or spellings get a
    high cosine; ids and numbers are ignored, so requests that differ only by an order
    number embed alike. Every output has norm 1 (an empty text has its own vector).

    Raises:
        ValueError: when ``dimensions`` is not a positive integer.
    """
    if not isinstance(text, str):
        raise ValueError(f"embed_text expects a string, got {type(text).__name__}.")
    return dense_embedding(text, dimensions)


def model_size_billions(name: str) -> float:
    """Parameter count (billions) parsed from a model name; 8.0 when the name has none.

    ``meta/llama-3.2-1b-instruct`` -> 1, ``llama-3.3-70b`` -> 70, ``mixtral-8x7b`` -> 56.
    """
    lowered = (name or "").lower()
    moe = re.search(r"(?<![\d.])(\d+)x(\d+(?:\.\d+)?)b(?![a-z])", lowered)
    if moe:
        return float(moe.group(1)) * float(moe.group(2))
    match = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)b(?![a-z])", lowered)
    return float(match.group(1)) if match else 8.0


def _capacity(name: str) -> float:
    """0 for a 1B model, about 0.5 for 8B, 1 for 70B and larger (log scale)."""
    size = max(model_size_billions(name), 1.0)
    return min(1.0, math.log(size) / math.log(70.0))


# --------------------------------------------------------------------------------------
# Reading a chat request
# --------------------------------------------------------------------------------------


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return str(content)


@dataclass(frozen=True)
class Example:
    """One in-context example parsed from a system message."""

    user: str
    text: str | None = None
    calls: list[dict[str, Any]] | None = None


_EXAMPLE_HEADER_RE = re.compile(r"^### Example \d+[ \t]*$", re.MULTILINE)
_EXAMPLE_BODY_RE = re.compile(
    r"\A\s*User:[ \t]?(?P<user>.*?)\n(?P<kind>Assistant tool calls:|Assistant:)[ \t]?(?P<rest>.*)\Z", re.DOTALL
)
_RESERVED_LINE_RE = re.compile(r"^ (?=### Example|Assistant:|Assistant tool calls:|User:)", re.MULTILINE)


def _unescape(text: str) -> str:
    # The writer indents example lines that would look like block markers by one space.
    return _RESERVED_LINE_RE.sub("", text)


def parse_icl_examples(system_text: str) -> list[Example]:
    """Parse the flywheel's ICL examples (``### Example <n>`` blocks) from a system message.

    Malformed blocks are skipped (and logged at debug level): a prompt that merely looks
    like it has examples must not break the model.
    """
    examples: list[Example] = []
    headers = list(_EXAMPLE_HEADER_RE.finditer(system_text or ""))
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(system_text)
        body = system_text[header.end() : end]
        match = _EXAMPLE_BODY_RE.match(body)
        if not match:
            log.debug("Skipping ICL block %d: no 'User:' / 'Assistant:' lines.", index + 1)
            continue
        user = _unescape(match.group("user")).strip()
        rest = _unescape(match.group("rest"))
        if match.group("kind") == "Assistant tool calls:":
            line = rest.strip().splitlines()[0] if rest.strip() else ""
            try:
                calls = normalize_tool_calls(json.loads(line))
            except (ValueError, json.JSONDecodeError):
                log.debug("Skipping ICL block %d: tool calls are not a JSON array.", index + 1)
                continue
            examples.append(Example(user=user, calls=calls))
        else:
            examples.append(Example(user=user, text=rest.strip()))
    return examples


@dataclass
class ParsedRequest:
    """The parts of a chat request the models look at."""

    messages: list[dict[str, Any]]
    user_text: str
    system_text: str
    tools: list[ToolSpec]
    tool_choice: Any
    max_tokens: int | None
    examples: list[Example] = field(default_factory=list)

    @property
    def forced_tool(self) -> str | None:
        choice = self.tool_choice
        if isinstance(choice, dict):
            function = choice.get("function")
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                return function["name"]
        return None

    @property
    def may_call_tools(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"

    @property
    def must_call_tool(self) -> bool:
        return bool(self.tools) and (self.tool_choice == "required" or self.forced_tool is not None)

    def tool(self, name: str) -> ToolSpec | None:
        return next((t for t in self.tools if t.name == name), None)


def parse_request(request: Any) -> ParsedRequest:
    """Validate and read an OpenAI chat request.

    Raises:
        ValueError: naming the field that is wrong (the HTTP layer answers 400/422).
    """
    if not isinstance(request, dict):
        raise ValueError(f"The chat request must be a JSON object, got {type(request).__name__}.")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("request.messages must be a non-empty list of {role, content} messages.")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ValueError(f"request.messages[{index}] must be an object with a string 'role'.")
    tools = parse_tools(request.get("tools"))
    max_tokens = request.get("max_tokens", request.get("max_completion_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise ValueError(f"request.max_tokens must be a positive integer, got {max_tokens!r}.")
    user_text = "\n".join(_content_text(m.get("content")) for m in messages if m["role"] == "user").strip()
    system_texts = [_content_text(m.get("content")) for m in messages if m["role"] in ("system", "developer")]
    return ParsedRequest(
        messages=messages,
        user_text=user_text,
        system_text="\n\n".join(system_texts),
        tools=tools,
        tool_choice=request.get("tool_choice", "auto"),
        max_tokens=max_tokens,
        # Per message: an example's answer runs to the end of its own system message.
        examples=[example for text in system_texts for example in parse_icl_examples(text)],
    )


# --------------------------------------------------------------------------------------
# Building a completion
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Behaviour:
    """What a model decided to answer: tool calls or text."""

    calls: tuple[tuple[str, str], ...] = ()  # (name, canonical JSON arguments)
    text: str = ""
    source: str = "base"  # base | icl | trained: why (kept for debugging, not returned)

    @staticmethod
    def call(calls: list[tuple[str, dict[str, Any]]], source: str) -> Behaviour:
        return Behaviour(calls=tuple((n, json.dumps(a, ensure_ascii=False)) for n, a in calls), source=source)


def _prompt_tokens(request: dict[str, Any]) -> int:
    total = 0
    for message in request.get("messages") or []:
        if isinstance(message, dict):
            total += count_tokens(_content_text(message.get("content"))) + 4
            if message.get("tool_calls"):
                total += count_tokens(json.dumps(message["tool_calls"], sort_keys=True, default=str))
    if request.get("tools"):
        total += count_tokens(json.dumps(request["tools"], sort_keys=True, default=str))
    return total


def _completion(model: str, request: dict[str, Any], parsed: ParsedRequest, behaviour: Behaviour) -> dict[str, Any]:
    key = json.dumps(request, sort_keys=True, default=str)
    finish = "stop"
    message: dict[str, Any] = {"role": "assistant"}
    if behaviour.calls:
        message["content"] = None
        message["tool_calls"] = [
            {
                "id": stable_id("call_", model, key, str(index), length=16),
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            for index, (name, arguments) in enumerate(behaviour.calls)
        ]
        finish = "tool_calls"
        completion_tokens = count_tokens(json.dumps(message["tool_calls"]))
    else:
        text = behaviour.text
        if parsed.max_tokens is not None and count_tokens(text) > parsed.max_tokens:
            # Cut at a token boundary, as a real server would when the budget runs out.
            spans = list(re.finditer(r"\w+|[^\w\s]", text))
            text = text[: spans[parsed.max_tokens - 1].end()]
            finish = "length"
        message["content"] = text
        completion_tokens = count_tokens(text)
    prompt_tokens = _prompt_tokens(request)
    return {
        "id": stable_id("chatcmpl-", model, key),
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


# --------------------------------------------------------------------------------------
# Base model
# --------------------------------------------------------------------------------------

_GENERIC_HELP = (
    "In general, the details depend on your account and the specific item, so please check the "
    "relevant page of our help center or contact support with any reference numbers you have.",
    "Typically this is handled through your account settings, and our support team can assist "
    "further if you share the relevant details.",
    "As a general guideline, most requests like this can be resolved online, and customer service "
    "is available if you need more help.",
    "Usually the best next step is to review the information in your account and reach out to "
    "support if anything looks wrong.",
)


def _topic_words(text: str, limit: int) -> list[str]:
    seen: list[str] = []
    for word in words(text):
        if word not in STOPWORDS and len(word) > 2 and word not in seen:
            seen.append(word)
        if len(seen) >= limit:
            break
    return seen


def _adapt_text(answer: str, example_user: str, current_user: str) -> str:
    """Reuse an example answer, swapping the example's values for the current request's."""
    current = [e for e in find_entities(current_user) if e.kind in ("code", "email", "date", "money", "number")]
    adapted = answer
    for entity in find_entities(example_user):
        if entity.kind not in ("code", "email", "date", "money", "number") or entity.raw not in adapted:
            continue
        same_kind = [e for e in current if e.kind == entity.kind]
        if same_kind:
            replacement = same_kind.pop(0)
            current.remove(replacement)
            adapted = adapted.replace(entity.raw, replacement.raw)
    return adapted


class BaseChatModel:
    """A base (not customized) model: answers from the prompt alone. See the module doc."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("A model needs a non-empty name.")
        self.name = name
        self.capacity = _capacity(name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    def complete(self, request: dict) -> dict:
        """Answer an OpenAI chat request (see the module doc for how)."""
        parsed = parse_request(request)
        return _completion(self.name, request, parsed, self.decide(parsed))

    # The decision is split from the completion so a customized model can fall back to it.
    def decide(self, parsed: ParsedRequest) -> Behaviour:
        """Choose what to answer for a parsed request."""
        following = self._follow_examples(parsed)
        if following is not None:
            return following
        if parsed.may_call_tools:
            ranked = self.rank_tools(parsed)
            forced = parsed.forced_tool
            if forced is not None:
                tool = parsed.tool(forced)
                if tool is None:
                    raise ValueError(f"tool_choice names function {forced!r}, which is not in request.tools.")
                return Behaviour.call([(tool.name, self._arguments(tool, parsed.user_text))], "base")
            best_score, best_tool = ranked[0]
            if best_score >= TOOL_MATCH_THRESHOLD or parsed.must_call_tool:
                return Behaviour.call([(best_tool.name, self._arguments(best_tool, parsed.user_text))], "base")
            topic = ", ".join(_topic_words(parsed.user_text, 4)) or "your request"
            return Behaviour(
                text=f"I can help with that. Could you share a few more details about {topic}?", source="base"
            )
        return Behaviour(text=self._generic_answer(parsed.user_text), source="base")

    @property
    def use_descriptions(self) -> bool:
        """Whether parameter descriptions are read for format hints (not by 1B-class models)."""
        return self.capacity >= 0.2

    def _tool_text(self, tool: ToolSpec) -> str:
        # Smaller models "read" less of each description: fewer words, no parameter docs.
        limit = 8 + int(self.capacity * 40)
        description = " ".join(tool.description.split()[:limit])
        parts = [name_words(tool.name), name_words(tool.name), description]
        if self.capacity >= 0.35:
            for prop, schema in tool.properties.items():
                parts.append(name_words(prop))
                parts.append(" ".join(str(schema.get("description") or "").split()[:12]))
        return " ".join(parts)

    def rank_tools(self, parsed: ParsedRequest) -> list[tuple[float, ToolSpec]]:
        """Tools scored against the user turns, best first (ties broken by name)."""
        user_vec = vector(parsed.user_text)
        own_stems = content_stems(parsed.user_text)
        # What the model "understands" of the user: the words plus the synonyms it knows.
        user_stems = set(expand_stems(own_stems, self.capacity))
        own_count = len(set(own_stems))
        noise_amplitude = 0.12 * (1.0 - self.capacity)
        scored: list[tuple[float, ToolSpec]] = []
        for tool in parsed.tools:
            name_stems = set(content_stems(name_words(tool.name)))
            tool_text = self._tool_text(tool)
            tool_stems = set(content_stems(tool_text))
            name_hit = len(user_stems & name_stems) / len(name_stems) if name_stems else 0.0
            overlap = min(1.0, len(user_stems & tool_stems) / own_count) if own_count else 0.0
            cos = max(0.0, cosine(user_vec, vector(tool_text)))
            noise = (stable_unit(self.name, tool.name, parsed.user_text) - 0.5) * 2.0 * noise_amplitude
            scored.append((0.4 * name_hit + 0.3 * overlap + 0.3 * cos + noise, tool))
        scored.sort(key=lambda pair: (-pair[0], pair[1].name))
        return scored

    def _arguments(self, tool: ToolSpec, text: str) -> dict[str, Any]:
        # 1B-class models fill only the required parameters (when the schema says which).
        only = list(tool.required) if self.capacity < 0.2 and tool.required else None
        return extract_arguments(tool, text, use_descriptions=self.use_descriptions, only=only)

    def _generic_answer(self, text: str) -> str:
        topic = _topic_words(text, 3 + int(4 * self.capacity))
        help_text = _GENERIC_HELP[int(stable_unit(self.name, text) * len(_GENERIC_HELP))]
        if not topic:
            return "Thanks for your message. How can I help you today?"
        return f"Thanks for your question about {' '.join(topic)}. {help_text}"

    def _follow_examples(self, parsed: ParsedRequest) -> Behaviour | None:
        """Follow the nearest in-context example when it is close enough, else ``None``."""
        if not parsed.examples or not parsed.user_text:
            return None
        threshold = ICL_THRESHOLD - 0.1 * self.capacity
        user_vec = vector(parsed.user_text)
        ranked = sorted(
            ((cosine(user_vec, vector(ex.user)), -i, ex) for i, ex in enumerate(parsed.examples)),
            key=lambda t: (t[0], t[1]),
            reverse=True,
        )
        for similarity, _, example in ranked:
            if similarity < threshold:
                return None
            if example.calls is not None:
                if not example.calls:
                    continue
                tools = [parsed.tool(call["name"]) for call in example.calls]
                if not parsed.may_call_tools or any(t is None for t in tools):
                    continue  # the example's tool is not offered here: ignore the example
                if parsed.forced_tool and any(call["name"] != parsed.forced_tool for call in example.calls):
                    continue
                calls = []
                for call, tool in zip(example.calls, tools):
                    learned = call["arguments"] if isinstance(call["arguments"], dict) else {}
                    arguments = adapt_arguments(learned, tool, parsed.user_text, use_descriptions=self.use_descriptions)
                    calls.append((call["name"], arguments))
                return Behaviour.call(calls, "icl")
            if example.text is not None and not parsed.must_call_tool:
                return Behaviour(text=_adapt_text(example.text, example.user, parsed.user_text), source="icl")
        return None


def base_model(name: str) -> ChatModel:
    """A base model answering from the prompt alone; capacity parsed from ``name``.

    Raises:
        ValueError: when ``name`` is empty.
    """
    return BaseChatModel(name)


# --------------------------------------------------------------------------------------
# Customized model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TrainedRow:
    user: str
    vec: dict[str, float]
    calls: tuple[dict[str, Any], ...] | None
    text: str | None
    tools: tuple[ToolSpec, ...]

    @property
    def label(self) -> str:
        if self.calls is not None:
            return "tools:" + ",".join(sorted(c["name"] for c in self.calls))
        return "text"


def _read_training_row(row: Any) -> tuple[_TrainedRow | None, str | None]:
    """A training row -> (row, None), or (None, why it cannot be used)."""
    if not isinstance(row, dict):
        return None, "not an object"
    messages = row.get("messages")
    if not isinstance(messages, list) or len(messages) < 2:
        return None, "messages missing or shorter than 2"
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant":
        return None, "last message is not the assistant's"
    user = "\n".join(
        _content_text(m.get("content")) for m in messages[:-1] if isinstance(m, dict) and m.get("role") == "user"
    ).strip()
    if not user:
        return None, "no user turn"
    try:
        tools = tuple(parse_tools(row.get("tools")))
    except ValueError:
        return None, "tools malformed"
    calls: tuple[dict[str, Any], ...] | None = None
    text: str | None = None
    if last.get("tool_calls"):
        try:
            calls = tuple(normalize_tool_calls(last["tool_calls"]))
        except ValueError:
            return None, "assistant tool_calls malformed"
    else:
        text = _content_text(last.get("content"))
        if not text.strip():
            return None, "assistant message empty"
    return _TrainedRow(user=user, vec=vector(user), calls=calls, text=text, tools=tools), None


def _sharpness(hyperparameters: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """How much training sharpened the model (0..1) from epochs and adapter size."""
    if not isinstance(hyperparameters, dict):
        raise ValueError("hyperparameters must be an object such as {'epochs': 2, 'lora': {'adapter_dim': 32}}.")
    epochs = hyperparameters.get("epochs", 1)
    if not isinstance(epochs, (int, float)) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"hyperparameters.epochs must be a number >= 0, got {epochs!r}.")
    lora = hyperparameters.get("lora") or {}
    if not isinstance(lora, dict):
        raise ValueError("hyperparameters.lora must be an object such as {'adapter_dim': 32}.")
    adapter_dim = lora.get("adapter_dim", 32)
    if not isinstance(adapter_dim, (int, float)) or isinstance(adapter_dim, bool) or adapter_dim <= 0:
        raise ValueError(f"hyperparameters.lora.adapter_dim must be a positive number, got {adapter_dim!r}.")
    full = str(hyperparameters.get("finetuning_type", "lora")).lower() in ("all_weights", "full")
    adapter_factor = 1.0 if full else min(1.0, (float(adapter_dim) / 32.0) ** 0.25)
    sharpness = (1.0 - 0.5 ** float(epochs)) * adapter_factor
    return sharpness, {"epochs": epochs, "adapter_dim": adapter_dim, "finetuning_type": "full" if full else "lora"}


class CustomizedChatModel:
    """A base model plus what it learned from its training rows. See the module doc."""

    def __init__(
        self,
        name: str,
        base_model_name: str,
        training_rows: list[dict],
        validation_rows: list[dict],
        hyperparameters: dict,
    ) -> None:
        if not isinstance(training_rows, list) or not isinstance(validation_rows, list):
            raise ValueError("training_rows and validation_rows must be lists of {messages, tools} rows.")
        self.name = name
        self.base = BaseChatModel(base_model_name)
        if not isinstance(name, str) or not name.strip():
            raise ValueError("A customized model needs a non-empty name.")
        sharpness, used_params = _sharpness(hyperparameters)
        self.sharpness = sharpness
        # Trained more (more epochs, bigger adapter) -> trusts its neighbours from lower similarity.
        self.threshold = CUSTOM_THRESHOLD - 0.3 * sharpness
        self.rows: list[_TrainedRow] = []
        skipped: dict[str, int] = {}
        for row in training_rows:
            trained, reason = _read_training_row(row)
            if trained is None:
                skipped[reason or "unknown"] = skipped.get(reason or "unknown", 0) + 1
            else:
                self.rows.append(trained)
        if not self.rows:
            raise ValueError(
                f"Customized model {name!r}: no usable training row among {len(training_rows)} "
                f"(skipped: {skipped or 'none given'}). Each row needs user messages and a final assistant message."
            )
        # TF-IDF over the training set: what the fine-tune learned to attend to.
        self._idf, self._unseen_idf = idf_table([features(row.user) for row in self.rows])
        self.rows = [dataclasses.replace(row, vec=self._vector(row.user)) for row in self.rows]
        if skipped:
            log.warning("Customized model %s skipped %d training rows: %s", name, sum(skipped.values()), skipped)
        # Inverted index feature -> [(row, weight)] so a lookup touches only rows sharing a feature.
        self._index: dict[str, list[tuple[int, float]]] = {}
        for position, trained in enumerate(self.rows):
            for feature, weight in trained.vec.items():
                self._index.setdefault(feature, []).append((position, weight))
        self.training_summary: dict[str, Any] = {
            "base_model": base_model_name,
            "train_rows_used": len(self.rows),
            "train_rows_skipped": sum(skipped.values()),
            "skip_reasons": skipped,
            "similarity_threshold": round(self.threshold, 4),
            **used_params,
        }
        self.training_summary.update(self._validate(validation_rows))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base={self.base.name!r}, rows={len(self.rows)})"

    def _vector(self, text: str) -> dict[str, float]:
        return weighted_vector(text, self._idf, self._unseen_idf)

    def _neighbours(self, text: str) -> list[tuple[float, int]]:
        scores: dict[int, float] = {}
        for feature, weight in self._vector(text).items():
            for position, row_weight in self._index.get(feature, ()):
                scores[position] = scores.get(position, 0.0) + weight * row_weight
        ranked = sorted(((s, p) for p, s in scores.items()), key=lambda t: (-t[0], t[1]))
        return ranked[: max(CUSTOM_NEIGHBOURS * 4, 12)]

    def _recall(self, parsed: ParsedRequest) -> Behaviour | None:
        """The behaviour the training rows suggest for this request, or ``None``."""
        if self.sharpness <= 0.0:
            return None  # zero epochs: nothing was learned
        near = [(s, p) for s, p in self._neighbours(parsed.user_text) if s >= self.threshold]
        if not near:
            return None
        # Only neighbours about as close as the nearest vote: many loosely similar rows must
        # not outvote one row that clearly matches.
        near = [(s, p) for s, p in near if s >= VOTE_MARGIN * near[0][0]]
        votes: dict[str, float] = {}
        best_row: dict[str, tuple[float, int]] = {}
        for similarity, position in near[:CUSTOM_NEIGHBOURS]:
            label = self.rows[position].label
            votes[label] = votes.get(label, 0.0) + similarity
            best_row.setdefault(label, (similarity, position))
        for label in sorted(votes, key=lambda lab: (-votes[lab], -best_row[lab][0], lab)):
            row = self.rows[best_row[label][1]]
            if row.calls is not None:
                if not row.calls or not parsed.may_call_tools:
                    continue
                if any(parsed.tool(c["name"]) is None for c in row.calls):
                    continue  # learned tool not offered in this request
                if parsed.forced_tool and any(c["name"] != parsed.forced_tool for c in row.calls):
                    continue
                calls = []
                for call in row.calls:
                    tool = parsed.tool(call["name"])
                    learned = call["arguments"] if isinstance(call["arguments"], dict) else {}
                    calls.append(
                        (call["name"], adapt_arguments(learned, tool, parsed.user_text, use_descriptions=True))
                    )
                return Behaviour.call(calls, "trained")
            if parsed.must_call_tool:
                continue
            return Behaviour(text=_adapt_text(row.text or "", row.user, parsed.user_text), source="trained")
        return None

    def decide(self, parsed: ParsedRequest) -> Behaviour:
        """Trained behaviour when a training row is near, else the base model's."""
        return self._recall(parsed) or self.base.decide(parsed)

    def complete(self, request: dict) -> dict:
        """Answer an OpenAI chat request (see the module doc for how)."""
        parsed = parse_request(request)
        return _completion(self.name, request, parsed, self.decide(parsed))

    def _validate(self, validation_rows: list[dict]) -> dict[str, Any]:
        """Accuracy of the learned behaviour on the validation rows (for status reports).

        Scores the first ``MAX_VALIDATION_SCORED`` usable rows: enough for a status figure,
        and it keeps a customization over a large dataset fast.
        """
        total = scored = correct = unusable = 0
        for row in validation_rows:
            trained, _ = _read_training_row(row)
            if trained is None:
                unusable += 1
                continue
            total += 1
            if scored >= MAX_VALIDATION_SCORED:
                continue
            scored += 1
            parsed = ParsedRequest(
                messages=[], user_text=trained.user, system_text="", tools=list(trained.tools),
                tool_choice="auto", max_tokens=None,
            )  # fmt: skip
            behaviour = self.decide(parsed)
            if trained.calls is not None:
                predicted = [{"name": n, "arguments": json.loads(a)} for n, a in behaviour.calls]
                correct += int(bool(behaviour.calls) and names_match(list(trained.calls), predicted))
            else:
                correct += int(not behaviour.calls and text_similarity(trained.text or "", behaviour.text) >= 0.8)
        return {
            "validation_rows": total,
            "validation_rows_skipped": unusable,
            "validation_rows_scored": scored,
            "validation_accuracy": round(correct / scored, 4) if scored else None,
        }


def customized_model(
    name: str,
    base_model_name: str,
    training_rows: list[dict],
    validation_rows: list[dict],
    hyperparameters: dict,
) -> ChatModel:
    """A model fine-tuned (emulated) on ``training_rows``: nearest neighbours over its data.

    Args:
        name: the output model name (what ``model`` says in completions).
        base_model_name: the base model, used when no training row is near.
        training_rows: ``{"messages": [..., {"role": "assistant", ...}], "tools": [...] | None}``.
        validation_rows: same shape; used only for ``training_summary["validation_accuracy"]``.
        hyperparameters: the customization job's ``hyperparameters`` (``epochs``,
            ``finetuning_type``, ``lora.adapter_dim``); more training sharpens slightly.

    Returns:
        The model; its ``training_summary`` dict counts used/skipped rows and reports the
        validation accuracy.

    Raises:
        ValueError: when no training row is usable or the hyperparameters are invalid.
    """
    return CustomizedChatModel(name, base_model_name, training_rows, validation_rows, hyperparameters)


# --------------------------------------------------------------------------------------
# Judge
# --------------------------------------------------------------------------------------

# A label is a head word, optionally followed by a qualifier ("Reference answer", "Expected
# tool calls", "Assistant tool calls"). Heads that are too common alone ("assistant",
# "model") count only with a qualifier.
_QUALIFIERS = (
    "answer", "answers", "response", "output", "result", "text", "tool calls", "tool call", "calls", "call",
    "function calls", "function call", "tool_calls",
)  # fmt: skip
_REFERENCE_HEADS = ("reference", "ground truth", "ground_truth", "expected", "gold", "ideal", "correct", "target")
_REFERENCE_BARE = ("reference", "ground truth", "ground_truth", "expected", "gold")
_CANDIDATE_HEADS = (
    "candidate", "prediction", "predicted", "model", "model's", "generated", "actual", "assistant", "assistant's",
)  # fmt: skip
_CANDIDATE_BARE = ("candidate", "prediction", "predicted", "actual")
_OTHER_LABELS = (
    "task / question", "task", "question", "context", "conversation", "instructions", "tools", "rating",
    "similarity", "score", "explanation", "reason",
)  # fmt: skip


def _labels(heads: tuple[str, ...], bare: tuple[str, ...]) -> list[str]:
    return list(bare) + [f"{head} {qualifier}" for head in heads for qualifier in _QUALIFIERS]


_REFERENCE_LABELS = frozenset(_labels(_REFERENCE_HEADS, _REFERENCE_BARE))
_CANDIDATE_LABELS = frozenset(_labels(_CANDIDATE_HEADS, _CANDIDATE_BARE) + ["answer to evaluate"])
_ALL_LABELS = sorted(_REFERENCE_LABELS | _CANDIDATE_LABELS | frozenset(_OTHER_LABELS), key=lambda x: (-len(x), x))
_MARKER_RE = re.compile(
    r"^[ \t]*(?:[#>*_\-\[(]+[ \t]*)?(?P<label>"
    + "|".join(re.escape(label).replace(r"\ ", r"[ \t]+") for label in _ALL_LABELS)
    + r")[ \t]*[*_\])]*[ \t]*(?:(?P<colon>:)[ \t]*[*_]*[ \t]*(?P<rest>.*?)|)[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_TAG_RE = re.compile(
    r"<(?P<tag>reference|ground_truth|expected|candidate|prediction|response)>(?P<body>.*?)</(?P=tag)>",
    re.IGNORECASE | re.DOTALL,
)
CANNOT_JUDGE = (
    "Cannot judge: the prompt has no reference and candidate answer to compare. Put them on lines "
    "starting with 'REFERENCE:' and 'CANDIDATE:' (or 'GROUND TRUTH:' and 'PREDICTION:')."
)


def _unwrap(text: str) -> str:
    body = text.strip()
    match = re.fullmatch(r"<<<\s*(.*?)\s*>>>", body, re.DOTALL)
    if match:
        body = match.group(1)
    match = re.fullmatch(r"```[\w-]*\s*(.*?)\s*```", body, re.DOTALL)
    if match:
        body = match.group(1)
    return body.strip()


_SCORE_WORD_RE = re.compile(r"\b(?:RATING|SIMILARITY|SCORE)\b")


def _strip_instructions(body: str) -> str:
    """Drop trailing instructions ("Answer with SIMILARITY: <1-10>.") from a section."""
    paragraphs = re.split(r"\n[ \t]*\n", body.strip())
    while len(paragraphs) > 1 and _SCORE_WORD_RE.search(paragraphs[-1]):
        paragraphs.pop()
    lines = "\n\n".join(paragraphs).split("\n")
    while len(lines) > 1 and (not lines[-1].strip() or _SCORE_WORD_RE.search(lines[-1])):
        lines.pop()
    return "\n".join(lines).strip()


def find_judge_sections(text: str) -> tuple[str | None, str | None]:
    """The reference and candidate sections of a judge prompt (see the module doc)."""
    reference = candidate = None
    for match in _TAG_RE.finditer(text):
        tag = match.group("tag").lower()
        if tag in ("reference", "ground_truth", "expected"):
            reference = _unwrap(match.group("body"))
        else:
            candidate = _unwrap(match.group("body"))
    if reference is not None and candidate is not None:
        return reference, candidate
    reference = candidate = None
    markers = list(_MARKER_RE.finditer(text))
    for index, marker in enumerate(markers):
        label = " ".join(marker.group("label").lower().split())
        body_end = markers[index + 1].start() if index + 1 < len(markers) else len(text)
        first_line = marker.group("rest") or ""
        body = _unwrap(_strip_instructions(first_line + text[marker.end() : body_end]))
        label = label.replace("_", " ") if label not in _REFERENCE_LABELS | _CANDIDATE_LABELS else label
        if label in _REFERENCE_LABELS:
            reference = body
        elif label in _CANDIDATE_LABELS:
            candidate = body
    return reference, candidate


def _as_tool_calls(text: str) -> list[dict[str, Any]] | None:
    """The tool calls ``text`` holds (``[]`` for null/empty), or ``None`` if it is not tool calls."""
    stripped = text.strip()
    if stripped in ("", "null", "None", "[]"):
        return []
    try:
        value = parse_json_or_literal(stripped)
    except ValueError:
        try:  # a JSON value followed by stray text
            value, _ = json.JSONDecoder().raw_decode(stripped)
        except json.JSONDecodeError:
            return None
    if value is None:
        return []
    if isinstance(value, dict) and ("function" in value or "name" in value):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, dict) and ("function" in v or "name" in v) for v in value):
        return None
    try:
        return normalize_tool_calls(value)
    except ValueError:
        return None


class JudgeChatModel:
    """A deterministic LLM judge. See "Judge prompt markers" in the module doc."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("A judge model needs a non-empty name.")
        self.name = name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    def complete(self, request: dict) -> dict:
        """Judge the reference/candidate pair found in the prompt."""
        parsed = parse_request(request)
        return _completion(self.name, request, parsed, Behaviour(text=self.judge(parsed.messages), source="judge"))

    def judge(self, messages: list[dict[str, Any]]) -> str:
        """The judge's answer text for a list of chat messages."""
        texts = [_content_text(m.get("content")) for m in messages]
        whole = "\n\n".join(texts)
        reference = candidate = None
        for role_text in [_content_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"]:
            reference, candidate = find_judge_sections(role_text)
            if reference is not None and candidate is not None:
                break
        if reference is None or candidate is None:
            reference, candidate = find_judge_sections(whole)
        if reference is None or candidate is None:
            return CANNOT_JUDGE
        upper = whole.upper()
        wants_similarity = "SIMILARITY" in upper
        wants_rating = re.search(r"\bRATING\b", upper) is not None
        ref_calls = _as_tool_calls(reference)
        cand_calls = _as_tool_calls(candidate)
        if ref_calls is not None and (cand_calls is not None or wants_rating):
            if cand_calls is None:
                match, reason = False, "the candidate is not a valid tool call"
            elif not names_match(ref_calls, cand_calls):
                match, reason = False, "the function names differ"
            elif not calls_match(ref_calls, cand_calls, loose=True):
                match, reason = False, "the function names match but the arguments differ"
            else:
                match, reason = True, "the function names and arguments match"
            similarity = 1.0 if match else 0.0
            rating = int(match)
        else:
            similarity = text_similarity(reference, candidate)
            rating = int(similarity >= 0.8)
            reason = f"token overlap and wording similarity is {similarity:.2f}"
        score = 1 + int(9 * similarity + 0.5)
        if wants_rating and not (wants_similarity and ref_calls is None):
            return f"RATING: {rating}\nEXPLANATION: {reason}."
        if wants_similarity:
            return f"SIMILARITY: {score}\nREASON: {reason}."
        return str(score)


def judge_model(name: str) -> ChatModel:
    """A deterministic LLM judge answering ``SIMILARITY: n`` or ``RATING: n`` (module doc).

    Raises:
        ValueError: when ``name`` is empty.
    """
    return JudgeChatModel(name)
