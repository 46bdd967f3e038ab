"""In-context learning (ICL) eval set: few-shot examples from the train pool, within a token budget.

For each eval record, examples are chosen from the training records and appended to the
record's system message (a system message is inserted at index 0 when missing) in the
format the emulator's models parse (the shared contract)::

    Here are examples of how to respond:

    ### Example 1
    User: <the example's user turns, joined with "\\n">
    Assistant: <the example's assistant text>

    ### Example 2
    User: <...>
    Assistant tool calls: [{"name": "<function>", "arguments": {<parsed object>}}]

Selection (``icl.example_selection``):

* ``uniform_distribution``: round-robin over the labels (tools) of the train pool, in a
  seeded order, a seeded random example of each label in turn;
* ``semantic_similarity``: prompts are embedded (any object with ``embed(texts)``) and
  compared by cosine similarity; ``relevance_ratio`` of ``max_examples`` are the most
  similar examples, the rest are chosen for coverage: the most similar example of a tool
  not yet shown, then (all tools shown, or a generic workload) the example that adds most
  diversity (maximal marginal relevance).

Fitting: ``budget = max_context_length - reserved_tokens - tokens(prompt)``. Examples are
added in preference order while the appended text (counted exactly with tiktoken) fits the
budget, up to ``max_examples``; one that does not fit is skipped for the next. Records that
end with fewer than ``min_examples`` are reported with the reason.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import mul
from typing import Any

from include.flywheel.config import ExampleSelection, IclSettings
from include.flywheel.embeddings import Embedder
from include.flywheel.records import LogRecord, content_text
from include.flywheel.tokens import get_encoding

log = logging.getLogger(__name__)

HEADER = "Here are examples of how to respond:"
_MESSAGE_OVERHEAD_TOKENS = 4  # role and separators of a chat template, per message (OpenAI's estimate)
_REPLY_PRIMING_TOKENS = 3
# Lines that would end a block early for a parser of the format; indented by one space.
_RESERVED_LINE_STARTS = ("### Example", "Assistant:", "Assistant tool calls:", "User:")


def _escape(text: str) -> str:
    # The first line follows "User: " / "Assistant: " on the same line, so only later lines
    # can be mistaken for the start of a new part.
    if "\n" not in text:
        return text
    first, *rest = text.split("\n")
    return "\n".join([first] + [" " + line if line.startswith(_RESERVED_LINE_STARTS) else line for line in rest])


def assistant_line(record: LogRecord) -> str:
    """The answer line of an example: ``Assistant: <text>`` or ``Assistant tool calls: <JSON>``."""
    message = record.response_message
    calls = message.get("tool_calls")
    if calls:
        compact = [{"name": call["function"]["name"], "arguments": call["function"]["arguments"]} for call in calls]
        # json.dumps escapes newlines inside strings, so this stays on one line.
        return "Assistant tool calls: " + json.dumps(compact, ensure_ascii=False)
    return "Assistant: " + _escape(content_text(message.get("content")))


def format_example(number: int, record: LogRecord) -> str:
    """One example block (no trailing newline)."""
    return f"### Example {number}\nUser: {_escape(record.user_text)}\n{assistant_line(record)}"


def format_examples(records: Sequence[LogRecord]) -> str:
    """The text appended to the system message for these examples ("" for none)."""
    if not records:
        return ""
    blocks = [format_example(number, record) for number, record in enumerate(records, start=1)]
    return HEADER + "\n\n" + "\n\n".join(blocks)


def append_to_system_message(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """Return ``messages`` with ``text`` appended to the system message at index 0 (inserted if missing).

    Existing content and ``text`` are separated by one blank line. The input is not modified.
    """
    result = list(messages)
    if result and isinstance(result[0], dict) and result[0].get("role") == "system":
        system = dict(result[0])
    else:
        system = {"role": "system", "content": ""}
        result.insert(0, system)
    existing = system.get("content")
    if isinstance(existing, list):
        separator = "\n\n" if content_text(existing) else ""
        system["content"] = [*existing, {"type": "text", "text": separator + text}]
    else:
        existing = existing or ""
        system["content"] = f"{existing}\n\n{text}" if existing else text
    result[0] = system
    return result


def prompt_tokens(request: dict[str, Any], encoding: str = "cl100k_base") -> int:
    """Tokens the prompt of ``request`` takes in the context window (messages and tool schemas).

    Counted with tiktoken on the message texts (tool calls as JSON) plus a fixed overhead
    per message, as chat templates add roles and separators; tool schemas count as their JSON.
    """
    parts: list[str] = []
    messages = request.get("messages") or []
    for message in messages:
        parts.append(str(message.get("role", "")))
        parts.append(content_text(message.get("content")))
        calls = message.get("tool_calls")
        if calls:
            parts.append(json.dumps([call.get("function") for call in calls], ensure_ascii=False, default=str))
    tools = request.get("tools")
    if tools:
        parts.append(json.dumps(tools, ensure_ascii=False, default=str))
    text_tokens = len(get_encoding(encoding).encode("\n".join(parts), disallowed_special=()))
    return text_tokens + _MESSAGE_OVERHEAD_TOKENS * len(messages) + _REPLY_PRIMING_TOKENS


@dataclass
class IclOutcome:
    """What one eval record got."""

    prompt_hash: str
    examples: int
    labels: list[str]
    prompt_tokens: int
    budget: int
    example_tokens: int
    reason: str | None = None  # set when fewer than min_examples


@dataclass
class IclResult:
    """The ICL eval records (OpenAI format) and what each got."""

    records: list[dict[str, Any]]
    outcomes: list[IclOutcome]
    selection: str
    min_examples: int = 0
    pool_size: int = 0

    def examples_stats(self) -> dict[str, float]:
        """``{min, mean, max}`` examples per record (zeros when there are no records)."""
        counts = [outcome.examples for outcome in self.outcomes]
        if not counts:
            return {"min": 0, "mean": 0.0, "max": 0}
        return {"min": min(counts), "mean": round(sum(counts) / len(counts), 3), "max": max(counts)}

    def below_min(self) -> list[IclOutcome]:
        """Records that got fewer than ``min_examples`` examples (each with its reason)."""
        return [outcome for outcome in self.outcomes if outcome.examples < self.min_examples]


class _Fitter:
    """Adds examples while the appended text fits the budget, with a per-example token cache."""

    def __init__(self, encoding: str) -> None:
        self._encoding = get_encoding(encoding)
        self._block_tokens: dict[int, int] = {}

    def count(self, text: str) -> int:
        return len(self._encoding.encode(text, disallowed_special=()))

    def block_estimate(self, key: int, record: LogRecord) -> int:
        cached = self._block_tokens.get(key)
        if cached is None:
            cached = self._block_tokens[key] = self.count("\n\n" + format_example(1, record))
        return cached

    def fit(
        self,
        candidates: Iterable[int],
        pool: Sequence[LogRecord],
        *,
        budget: int,
        max_examples: int,
        separator: str,
    ) -> tuple[list[int], int]:
        chosen: list[int] = []
        used = 0
        header = self.count(separator + HEADER)
        for key in candidates:
            if len(chosen) >= max_examples:
                break
            record = pool[key]
            base = used if chosen else header
            # Cheap estimate first; BPE merges across the join can shift a count by a token or two.
            if base + self.block_estimate(key, record) > budget + 4:
                continue
            text = separator + format_examples([pool[index] for index in chosen] + [record])
            tokens = self.count(text)
            if tokens <= budget:
                chosen.append(key)
                used = tokens
        return chosen, used


def _lazy_shuffle(items: Sequence[int], rng: random.Random) -> Iterator[int]:
    """Yield ``items`` in a seeded random order, shuffling only as far as the caller reads."""
    pending = list(items)
    for position in range(len(pending)):
        swap = rng.randrange(position, len(pending))
        pending[position], pending[swap] = pending[swap], pending[position]
        yield pending[position]


def _round_robin_order(by_label: dict[str, list[int]], rng: random.Random) -> Iterator[int]:
    """Pool indices, one per label in turn (labels in a seeded order), each label's in a seeded order.

    Lazy: the fitting step usually needs a handful, so the pool is never shuffled whole.
    """
    labels = sorted(by_label)
    rng.shuffle(labels)
    queues = [_lazy_shuffle(by_label[label], rng) for label in labels]
    while queues:
        alive = []
        for queue in queues:
            index = next(queue, None)
            if index is not None:
                yield index
                alive.append(queue)
        queues = alive


def _normalize(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(value * value for value in vector))
    if norm == 0.0:
        return [0.0] * len(vector)
    return [value / norm for value in vector]


def _dot(left: Sequence[float], right: Sequence[float]) -> float:
    return sum(map(mul, left, right))


def semantic_pool(train: Sequence[LogRecord], pool_size: int, seed: int) -> list[int]:
    """Indices of up to ``pool_size`` train records to embed: round-robin over labels, seeded.

    Round-robin keeps every tool in the pool even when one tool dominates the train set.
    """
    by_label: dict[str, list[int]] = {}
    for index, record in enumerate(train):
        by_label.setdefault(record.label, []).append(index)
    order = _round_robin_order(by_label, random.Random(f"{seed}:semantic-pool"))
    return list(itertools.islice(order, pool_size))


def _semantic_order(
    query: Sequence[float],
    vectors: Sequence[Sequence[float]],
    pool: Sequence[LogRecord],
    *,
    max_examples: int,
    relevance_ratio: float,
) -> list[int]:
    similarity = [_dot(query, vector) for vector in vectors]
    by_similarity = sorted(range(len(pool)), key=lambda index: (-similarity[index], pool[index].prompt_hash))
    relevant = int(math.floor(relevance_ratio * max_examples + 0.5))
    picks = by_similarity[:relevant]
    picked = set(picks)
    covered = {pool[index].label for index in picks}
    while len(picks) < max_examples and len(picks) < len(pool):
        choice = next(
            (index for index in by_similarity if index not in picked and pool[index].label not in covered), None
        )
        if choice is None:
            # Every tool is shown (or there is one label): maximal marginal relevance.
            best_score = -math.inf
            for index in by_similarity:
                if index in picked:
                    continue
                redundancy = max((_dot(vectors[index], vectors[other]) for other in picks), default=0.0)
                score = similarity[index] - redundancy
                if score > best_score:
                    best_score, choice = score, index
        assert choice is not None
        picks.append(choice)
        picked.add(choice)
        covered.add(pool[choice].label)
    # Fallbacks if a pick does not fit the budget: the rest, most similar first.
    return picks + [index for index in by_similarity if index not in picked]


def build_icl_records(
    eval_records: Sequence[LogRecord],
    train_pool: Sequence[LogRecord],
    settings: IclSettings,
    *,
    seed: int,
    embedder: Embedder | None = None,
) -> IclResult:
    """Build the ICL eval records: each eval record with examples from ``train_pool`` in its system message.

    Args:
        eval_records: The eval set (normalized records).
        train_pool: Records examples are drawn from (the training split).
        settings: The ``icl`` settings.
        seed: Random seed (``data_split.random_seed``): same seed, same examples.
        embedder: Needed for ``semantic_similarity``.

    Returns:
        The records (OpenAI format, same order as ``eval_records``) and per-record outcomes.

    Raises:
        ValueError: semantic selection without an embedder, or embeddings of the wrong shape.
    """
    selection = ExampleSelection(settings.example_selection)
    fitter = _Fitter(settings.encoding)
    pool: list[LogRecord] = list(train_pool)
    vectors: list[list[float]] = []
    queries: list[list[float]] = []
    if selection is ExampleSelection.SEMANTIC:
        if embedder is None:
            raise ValueError(
                "icl.example_selection is semantic_similarity but no embedder was given: pass an EmbeddingClient "
                "(the embedding endpoint comes from the icl.similarity.embedding_conn_id connection), or set "
                "icl.example_selection to uniform_distribution"
            )
        pool = [pool[index] for index in semantic_pool(pool, settings.similarity.pool_size, seed)]
        if eval_records and pool and settings.max_examples:
            texts = [record.user_text for record in eval_records] + [record.user_text for record in pool]
            embedded = embedder.embed(texts)
            if len(embedded) != len(texts):
                raise ValueError(f"the embedder returned {len(embedded)} vectors for {len(texts)} texts")
            sizes = {len(vector) for vector in embedded}
            if len(sizes) != 1 or 0 in sizes:
                raise ValueError(f"the embedder returned vectors of inconsistent or zero size: {sorted(sizes)}")
            normalized = [_normalize(vector) for vector in embedded]
            queries, vectors = normalized[: len(eval_records)], normalized[len(eval_records) :]

    by_label: dict[str, list[int]] = {}
    for index, record in enumerate(pool):
        by_label.setdefault(record.label, []).append(index)

    records: list[dict[str, Any]] = []
    outcomes: list[IclOutcome] = []
    for position, record in enumerate(eval_records):
        openai_record = record.to_openai_record()
        messages = openai_record["request"]["messages"]
        tokens = prompt_tokens(openai_record["request"], settings.encoding)
        budget = settings.max_context_length - settings.reserved_tokens - tokens
        order: Iterable[int]
        if selection is ExampleSelection.SEMANTIC and queries:
            order = _semantic_order(
                queries[position],
                vectors,
                pool,
                max_examples=settings.max_examples,
                relevance_ratio=settings.similarity.relevance_ratio,
            )
        else:
            order = _round_robin_order(by_label, random.Random(f"{seed}:{record.prompt_hash}"))
        # Dedup makes it impossible, but an example must never be the eval prompt itself.
        digest = record.digest
        order = (index for index in order if pool[index].digest != digest)
        has_system_text = bool(messages and messages[0].get("role") == "system" and messages[0].get("content"))
        separator = "\n\n" if has_system_text else ""
        chosen: list[int] = []
        used = 0
        if budget > 0 and settings.max_examples > 0:
            chosen, used = fitter.fit(
                order, pool, budget=budget, max_examples=settings.max_examples, separator=separator
            )
        examples = [pool[index] for index in chosen]
        if examples:
            openai_record["request"]["messages"] = append_to_system_message(messages, format_examples(examples))
        reason = None
        if len(examples) < settings.min_examples:
            candidates = sum(1 for example in pool if example.digest != digest)
            if not candidates:
                reason = "the train pool has no examples to offer"
            elif budget <= 0:
                reason = (
                    f"the prompt takes {tokens} tokens, leaving no budget "
                    f"(max_context_length {settings.max_context_length} - reserved_tokens {settings.reserved_tokens})"
                )
            elif candidates < settings.min_examples:
                reason = f"the train pool has only {candidates} candidate example(s)"
            else:
                reason = f"only {len(examples)} example(s) fit the budget of {budget} tokens"
        records.append(openai_record)
        outcomes.append(
            IclOutcome(
                prompt_hash=record.prompt_hash,
                examples=len(examples),
                labels=[example.label for example in examples],
                prompt_tokens=tokens,
                budget=budget,
                example_tokens=used,
                reason=reason,
            )
        )
    result = IclResult(records, outcomes, selection.value, settings.min_examples, len(pool))
    short = result.below_min()
    if short:
        log.warning(
            "%s of %s ICL records got fewer than min_examples=%s examples; first reason: %s",
            len(short),
            len(outcomes),
            settings.min_examples,
            short[0].reason,
        )
    return result
