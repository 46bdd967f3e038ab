"""Dataset preparation end to end: raw log records in, eval / ICL / train / val datasets out.

:func:`prepare_datasets` reads its input once, as a stream (it may be millions of records),
and applies DESIGN section 4's preparation steps in order, counting every record it leaves
out under exactly one reason:

1. format validation (:func:`include.flywheel.records.parse_record`);
2. workload type: ``tool_calling`` if any response carries tool calls, else ``generic``;
3. tool-calling quality (checked per record; in a tool-calling workload a response without
   tool calls is dropped as ``no_tool_calls``);
4. dedup on the prompt hash (first occurrence wins);
5. the ``min_total_records`` check (:class:`~include.flywheel.partition.InsufficientDataError`);
6. sampling to ``limit`` keeping the label mix;
7. the stratified eval / train / val split;
8. the leakage check (this run, and earlier runs' training sets when given).

Then the ICL eval set is built from the eval records and the training split.

Memory: the workload type is only known at the end of the stream, and step 3 depends on it,
so records with and without tool calls are tracked apart until the first tool call shows up
(from then on, text-only records are just counted). Each track holds its dedup index (one
int per unique prompt) and its bounded sample (about ``1.1 * limit`` records): memory does
not grow with the stream beyond the dedup index.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from include.flywheel.config import ExampleSelection, WorkloadSettings
from include.flywheel.embeddings import Embedder
from include.flywheel.icl import build_icl_records
from include.flywheel.partition import (
    Deduplicator,
    LabelMixSampler,
    check_leakage,
    check_minimum,
    digest_priority,
    seed_mask,
    stratified_split,
)
from include.flywheel.records import DropReason, LogRecord, RecordRejected, WorkloadType, parse_record

log = logging.getLogger(__name__)

# Rejections that prove the workload calls tools even though the record itself is unusable.
_TOOL_CALL_REASONS = frozenset(
    {
        DropReason.INVALID_TOOL_CALL,
        DropReason.TOOL_CALL_NOT_FUNCTION,
        DropReason.UNPARSEABLE_ARGUMENTS,
        DropReason.UNKNOWN_TOOL,
    }
)
_EXAMPLES_PER_REASON = 3


class PreparationReport(BaseModel):
    """What preparation read, dropped and produced (for the task log and the results store).

    Every record read is accounted for once: ``read == sum(dropped) + duplicates + unique``.
    """

    workload_id: str
    workload_type: WorkloadType
    read: int = 0
    dropped: dict[str, int] = Field(default_factory=dict)
    drop_examples: dict[str, list[str]] = Field(default_factory=dict)
    duplicates: int = 0
    unique: int = 0
    limit: int | None = None
    sampled_out: int = 0
    sample_shortfall: int = 0
    labels: dict[str, int] = Field(default_factory=dict)
    pooled_labels: list[str] = Field(default_factory=list)
    eval_size: int = 0
    train_size: int = 0
    val_size: int = 0
    eval_excluded_previous_training: int = 0
    leakage: dict[str, Any] = Field(default_factory=dict)
    icl_selection: str = ""
    icl_examples: dict[str, float] = Field(default_factory=dict)
    icl_below_min: list[dict[str, Any]] = Field(default_factory=list)
    seed: int = 0

    @property
    def dropped_total(self) -> int:
        """All drops (duplicates excluded)."""
        return sum(self.dropped.values())

    def summary(self) -> str:
        """A readable multi-line table for the task log."""
        width = 40

        def row(name: str, value: Any, note: str = "") -> str:
            text = f"{value:,}" if isinstance(value, int) else str(value)
            return f"  {name:<{width}}{text:>12}{note}".rstrip()

        kind = self.workload_type.value
        lines = [f"Dataset preparation for workload {self.workload_id!r} ({kind}, seed {self.seed})"]
        lines.append(row("read", self.read))
        lines.append(row("dropped", self.dropped_total))
        for reason, count in sorted(self.dropped.items(), key=lambda item: (-item[1], item[0])):
            examples = self.drop_examples.get(reason) or [""]
            example = examples[0] if len(examples[0]) <= 100 else examples[0][:97] + "..."
            lines.append(row(f"  {reason}", count, f"   e.g. {example}" if example else ""))
        lines.append(row("duplicates", self.duplicates))
        lines.append(row("unique", self.unique))
        limit = "none" if self.limit is None else f"{self.limit:,}"
        lines.append(row(f"sampled out (limit {limit})", self.sampled_out))
        lines.append(row("eval", self.eval_size))
        lines.append(row("train", self.train_size))
        lines.append(row("validation", self.val_size))
        if self.eval_excluded_previous_training:
            lines.append(row("kept out of eval (earlier training)", self.eval_excluded_previous_training))
        sample = sum(self.labels.values())
        lines.append(f"  labels in the sample ({len(self.labels)}):")
        for label, count in sorted(self.labels.items(), key=lambda item: (-item[1], item[0])):
            share = f"{100.0 * count / sample:.1f}%" if sample else "-"
            lines.append(row(f"  {label}", count, f" {share:>7}"))
        if self.pooled_labels:
            lines.append(f"  rare labels pooled for stratification: {', '.join(self.pooled_labels)}")
        if self.icl_examples:
            stats = self.icl_examples
            lines.append(f"  ICL examples per record ({self.icl_selection}):")
            figures = f"{stats.get('min', 0):g} / {stats.get('mean', 0):g} / {stats.get('max', 0):g}"
            lines.append(row("  min / mean / max", figures))
        for item in self.icl_below_min[:5]:
            lines.append(f"    below min_examples: {item['prompt_hash'][:12]} got {item['examples']}: {item['reason']}")
        if len(self.icl_below_min) > 5:
            lines.append(f"    ... and {len(self.icl_below_min) - 5} more below min_examples")
        leaks = self.leakage.get("eval_in_train_or_val", 0) + self.leakage.get("eval_in_previous_training", 0)
        lines.append(row("leakage (eval prompts in training sets)", leaks))
        return "\n".join(lines)


@dataclass
class PreparedDatasets:
    """The prepared datasets (rows ready to write) and the report.

    Attributes:
        workload_type: Detected over the whole stream.
        eval_records: Full log records in OpenAI format (tool-call arguments as JSON strings).
        icl_records: The same records with in-context examples in the system message.
        train_rows: ``{"messages", "tools"}`` rows; argument form per ``parse_function_arguments``.
        val_rows: Same shape as ``train_rows``.
        report: Counts and outcomes.
        eval_prompt_hashes: Prompt hashes of the eval records.
        train_prompt_hashes: Prompt hashes of train and validation rows (store them: they are
            the ``previous_train_hashes`` of later runs).
    """

    workload_type: WorkloadType
    eval_records: list[dict[str, Any]]
    icl_records: list[dict[str, Any]]
    train_rows: list[dict[str, Any]]
    val_rows: list[dict[str, Any]]
    report: PreparationReport
    eval_prompt_hashes: list[str] = field(default_factory=list)
    train_prompt_hashes: list[str] = field(default_factory=list)


class _Track:
    """Dedup index and sample of one population (records with, or without, tool calls)."""

    __slots__ = ("dedup", "sampler", "_mask")

    def __init__(self, limit: int | None, seed: int, min_label_count: int) -> None:
        self.dedup = Deduplicator()
        self.sampler: LabelMixSampler[LogRecord] = LabelMixSampler(limit, seed, min_per_label=min_label_count)
        self._mask = seed_mask(seed)

    def offer(self, record: LogRecord) -> None:
        if self.dedup.is_new(record.dedup_key):
            priority = digest_priority(record.digest, self._mask)
            if self.sampler.add(record.dedup_key, record.label, record, priority=priority):
                record.compact()


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while datasets are prepared.

    The stream allocates millions of short-lived containers while the sample holds a large,
    stable set of objects, which every full collection re-scans: measured, that was about
    half of the preparation time. Parsed JSON has no reference cycles, so reference counting
    frees each record as soon as it is dropped; the collector is back on when preparation
    returns or raises.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def prepare_datasets(
    records: Iterable[dict[str, Any]],
    workload: WorkloadSettings,
    *,
    embedder: Embedder | None = None,
    previous_train_hashes: Iterable[str] = (),
) -> PreparedDatasets:
    """Prepare the eval, ICL, train and validation datasets of one run.

    Args:
        records: Raw log records of the workload and window (consumed once, lazily).
        workload: The run's effective settings (``data_split`` and ``icl`` are used).
        embedder: Needed when ``icl.example_selection`` is ``semantic_similarity``.
        previous_train_hashes: Prompt hashes of earlier runs' training sets: such prompts
            are kept out of the eval set, and the leakage check covers them.

    Returns:
        The :class:`PreparedDatasets`.

    Raises:
        InsufficientDataError: too few usable records (the message says why and what to do).
        LeakageError: an eval prompt is in a training set (cannot happen unless hashing breaks,
            or there are not enough fresh prompts to keep earlier training prompts out of eval).
        ValueError: semantic ICL selection without an embedder.
    """
    with _cyclic_gc_paused():
        return _prepare(records, workload, embedder, previous_train_hashes)


def _prepare(
    records: Iterable[dict[str, Any]],
    workload: WorkloadSettings,
    embedder: Embedder | None,
    previous_train_hashes: Iterable[str],
) -> PreparedDatasets:
    split_settings = workload.data_split
    icl_settings = workload.icl
    if (
        ExampleSelection(icl_settings.example_selection) is ExampleSelection.SEMANTIC
        and icl_settings.max_examples > 0
        and embedder is None
    ):
        # Checked before reading anything: failing after a million records would waste the run.
        raise ValueError(
            f"workload {workload.workload_id!r}: icl.example_selection is semantic_similarity but no embedder "
            "was given: pass an EmbeddingClient for the icl.similarity embedding endpoint, or set "
            "icl.example_selection to uniform_distribution"
        )
    seed = split_settings.random_seed
    limit = split_settings.limit
    min_label_count = split_settings.min_label_count
    expected_workload = workload.workload_id

    read = 0
    dropped: Counter[str] = Counter()
    drop_examples: dict[str, list[str]] = {}
    text_track: _Track | None = _Track(limit, seed, min_label_count)
    tool_track = _Track(limit, seed, min_label_count)
    text_valid = 0  # text-only records, valid, seen (before or after the switch to tool mode)
    text_examples: list[str] = []  # where the first ones are, in case they become no_tool_calls drops
    tool_mode = False
    parse = parse_record
    mismatch = DropReason.WORKLOAD_MISMATCH

    for raw in records:
        read += 1
        try:
            if type(raw) is dict:
                workload_id = raw.get("workload_id")
                if workload_id is not None and workload_id != expected_workload:
                    raise RecordRejected(
                        mismatch, f"workload_id is {workload_id!r}, this run prepares {expected_workload!r}"
                    )
            record = parse(raw)
        except RecordRejected as exc:
            reason = exc.reason.value
            dropped[reason] += 1
            examples = drop_examples.setdefault(reason, [])
            if len(examples) < _EXAMPLES_PER_REASON:
                examples.append(f"record #{read}: {exc.detail}")
            if not tool_mode and exc.reason in _TOOL_CALL_REASONS:
                tool_mode, text_track = True, None
            continue
        if record.tool_names:
            if not tool_mode:
                # From now on text-only records are step-3 drops: free their dedup index and sample.
                tool_mode, text_track = True, None
            tool_track.offer(record)
        else:
            text_valid += 1
            if len(text_examples) < _EXAMPLES_PER_REASON:
                text_examples.append(f"record #{read}: the response answers with text and calls no tool")
            if text_track is not None:
                text_track.offer(record)

    if tool_mode:
        workload_type = WorkloadType.TOOL_CALLING
        track = tool_track
        if text_valid:
            # Step 3 in a tool-calling workload: the workload type was only known at the end.
            dropped[DropReason.NO_TOOL_CALLS.value] += text_valid
            drop_examples[DropReason.NO_TOOL_CALLS.value] = text_examples
    else:
        workload_type = WorkloadType.GENERIC
        assert text_track is not None
        track = text_track
    del text_track
    duplicates = track.dedup.duplicates
    unique = len(track.dedup)
    dropped_sorted = dict(sorted(dropped.items()))
    log.info(
        "Workload %s: read %s records, %s dropped, %s duplicates, %s unique (%s).",
        workload.workload_id,
        read,
        sum(dropped.values()),
        duplicates,
        unique,
        workload_type.value,
    )

    check_minimum(
        unique,
        split_settings.min_total_records,
        read=read,
        dropped=dropped_sorted,
        duplicates=duplicates,
        workload_id=workload.workload_id,
        eval_size=split_settings.eval_size,
    )

    sample = track.sampler.result()
    shortfall = track.sampler.shortfall
    track.dedup = Deduplicator()  # the index is no longer needed: release it before building rows
    previous = set(previous_train_hashes)
    labels = [record.label for record in sample]
    eligible = [record.prompt_hash not in previous for record in sample] if previous else None
    split = stratified_split(
        labels,
        eval_size=split_settings.eval_size,
        val_ratio=split_settings.val_ratio,
        seed=seed,
        stratify=split_settings.stratify,
        min_label_count=min_label_count,
        eval_eligible=eligible,
    )
    eval_set = [sample[index] for index in split.eval]
    train_set = [sample[index] for index in split.train]
    val_set = [sample[index] for index in split.val]
    if len(eval_set) < split_settings.eval_size:
        log.warning(
            "Eval set has %s records instead of %s: %s prompts were in earlier training sets and kept out of eval.",
            len(eval_set),
            split_settings.eval_size,
            split.not_eval_eligible,
        )
    leakage = check_leakage(
        [record.prompt_hash for record in eval_set],
        [record.prompt_hash for record in train_set + val_set],
        previous,
    )

    parse_arguments = split_settings.parse_function_arguments
    icl = build_icl_records(eval_set, train_set, icl_settings, seed=seed, embedder=embedder)
    report = PreparationReport(
        workload_id=workload.workload_id,
        workload_type=workload_type,
        read=read,
        dropped=dropped_sorted,
        drop_examples={reason: drop_examples[reason] for reason in sorted(drop_examples)},
        duplicates=duplicates,
        unique=unique,
        limit=limit,
        sampled_out=unique - len(sample),
        sample_shortfall=shortfall,
        labels=dict(sorted(Counter(labels).items())),
        pooled_labels=split.pooled_labels,
        eval_size=len(eval_set),
        train_size=len(train_set),
        val_size=len(val_set),
        eval_excluded_previous_training=split.not_eval_eligible,
        leakage=leakage.as_dict(),
        icl_selection=icl.selection,
        icl_examples=icl.examples_stats(),
        icl_below_min=[
            {"prompt_hash": outcome.prompt_hash, "examples": outcome.examples, "reason": outcome.reason}
            for outcome in icl.below_min()
        ],
        seed=seed,
    )
    log.info("%s", report.summary())
    return PreparedDatasets(
        workload_type=workload_type,
        eval_records=[record.to_openai_record() for record in eval_set],
        icl_records=icl.records,
        train_rows=[record.to_training_row(parse_arguments) for record in train_set],
        val_rows=[record.to_training_row(parse_arguments) for record in val_set],
        report=report,
        eval_prompt_hashes=[record.prompt_hash for record in eval_set],
        train_prompt_hashes=[record.prompt_hash for record in train_set + val_set],
    )
