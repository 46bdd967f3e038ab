"""Dedup, minimum check, label-mix sampling, stratified split and leakage checks."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from include.flywheel.partition import (
    RARE_LABELS,
    Deduplicator,
    InsufficientDataError,
    LabelMixSampler,
    LeakageError,
    apportion,
    check_leakage,
    check_minimum,
    deduplicate,
    pool_rare,
    sample_priority,
    stratified_split,
)


def test_dedup_keeps_first_occurrence_and_counts_the_rest():
    items = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5), ("a", 6)]
    kept, duplicates = deduplicate(items, key=lambda item: item[0])
    assert kept == [("a", 1), ("b", 2), ("c", 4)]
    assert duplicates == 3

    dedup = Deduplicator()
    assert [dedup.is_new(key) for key in (1, 2, 1, 1)] == [True, True, False, False]
    assert dedup.duplicates == 2
    assert len(dedup) == 2


def test_minimum_check_passes_with_enough_records():
    check_minimum(50, 50, read=60, dropped={"empty_messages": 10}, duplicates=0, eval_size=20)


def test_minimum_check_error_says_how_many_why_and_what_to_do():
    with pytest.raises(InsufficientDataError) as caught:
        check_minimum(
            12,
            50,
            read=100,
            dropped={"no_tool_calls": 70, "empty_messages": 3},
            duplicates=15,
            workload_id="support",
        )
    error = caught.value
    message = str(error)
    assert "12 remain of 100 read" in message
    assert "min_total_records needs 50" in message
    assert "no_tool_calls 70 (70% of read)" in message
    assert "duplicates 15" in message
    assert message.index("no_tool_calls") < message.index("duplicates")  # dominant first
    assert "widen the log window" in message
    assert "'support'" in message
    assert (error.found, error.needed, error.read, error.duplicates) == (12, 50, 100, 15)
    assert error.dropped == {"no_tool_calls": 70, "empty_messages": 3}


def test_minimum_check_with_nothing_dropped_blames_the_source():
    with pytest.raises(InsufficientDataError, match="the log source returned too few records"):
        check_minimum(3, 50, read=3, dropped={}, duplicates=0)


def test_minimum_check_requires_something_left_after_eval():
    with pytest.raises(InsufficientDataError, match="eval_size \\(20\\) would take all of them"):
        check_minimum(20, 20, read=20, dropped={}, duplicates=0, eval_size=20)


def test_apportion_is_proportional_and_sums_to_total():
    shares = apportion(10, {"a": 50, "b": 30, "c": 20})
    assert shares == {"a": 5, "b": 3, "c": 2}
    # More than there is: every group gets its cap (its size by default), never more.
    assert apportion(7, {"a": 1, "b": 1, "c": 1}) == {"a": 1, "b": 1, "c": 1}
    # Ties on the remainder go to the larger group, then by name: deterministic.
    assert apportion(1, {"x": 1, "y": 1}) == {"x": 1, "y": 0}
    shares = apportion(4, {"a": 10, "b": 10, "c": 10}, caps={"a": 0, "b": 10, "c": 10})
    assert shares == {"a": 0, "b": 2, "c": 2}


def test_sample_priority_is_seeded_and_stable():
    assert sample_priority(123, 1) == sample_priority(123, 1)
    assert sample_priority(123, 1) != sample_priority(123, 2)
    assert sample_priority("abc", 1) != sample_priority("abd", 1)


def _stream(counts: dict[str, int], seed: int = 3) -> list[tuple[int, str]]:
    rng = random.Random(seed)
    items = [(rng.getrandbits(64), label) for label, count in counts.items() for _ in range(count)]
    rng.shuffle(items)
    return items


def test_limit_sampling_keeps_the_label_mix():
    counts = {"a": 6000, "b": 2500, "c": 1000, "d": 450, "e": 50}
    total = sum(counts.values())
    sampler: LabelMixSampler[int] = LabelMixSampler(1000, seed=42)
    for key, label in _stream(counts):
        sampler.add(key, label, key)
    sample = sampler.result()
    assert len(sample) == 1000
    labels = {key: label for key, label in _stream(counts)}
    got = Counter(labels[key] for key in sample)
    # Tolerance: quotas are apportioned from the stream's exact counts by largest remainder,
    # so each label is within one item of its exact proportional share; a shortfall (none
    # expected for a steady mix) would be reported and could move a label by that much more.
    assert sampler.shortfall == 0
    for label, count in counts.items():
        assert abs(got[label] - 1000 * count / total) < 1.0
    # Memory stays near limit * 1.1 plus a small reserve per label, not the stream size.
    assert sampler.held <= 1000 * 1.1 + 32 * len(counts) + len(counts)


def test_limit_sampling_keeps_at_least_min_per_label():
    counts = {"big": 5000, "tiny": 2}
    sampler: LabelMixSampler[int] = LabelMixSampler(100, seed=1, min_per_label=2)
    stream = _stream(counts)
    for key, label in stream:
        sampler.add(key, label, key)
    labels = dict(stream)
    got = Counter(labels[key] for key in sampler.result())
    assert got == {"big": 98, "tiny": 2}


def test_limit_sampling_is_order_independent_and_seeded():
    stream = _stream({"a": 3000, "b": 1000})

    def run(items, seed):
        sampler: LabelMixSampler[int] = LabelMixSampler(200, seed=seed)
        for key, label in items:
            sampler.add(key, label, key)
        return sampler.result()

    first = run(stream, 7)
    assert run(stream, 7) == first
    assert set(run(list(reversed(stream)), 7)) == set(first)
    assert set(run(stream, 8)) != set(first)


def test_no_limit_keeps_everything_in_priority_order():
    sampler: LabelMixSampler[int] = LabelMixSampler(None, seed=1)
    for key in range(50):
        sampler.add(key, "x", key)
    result = sampler.result()
    assert sorted(result) == list(range(50))
    assert result == sorted(range(50), key=lambda key: sample_priority(key, 1))


def test_pool_rare_labels():
    assert pool_rare(["a", "a", "b", "c", "c", "c"], 2) == ["a", "a", RARE_LABELS, "c", "c", "c"]


def _labels(counts: dict[str, int]) -> list[str]:
    return [label for label, count in counts.items() for _ in range(count)]


def test_split_sizes_and_disjointness():
    labels = _labels({"a": 500, "b": 300, "c": 200})
    split = stratified_split(labels, eval_size=100, val_ratio=0.1, seed=1)
    assert len(split.eval) == 100
    assert len(split.val) == 90
    assert len(split.train) == 810
    assert set(split.eval) | set(split.train) | set(split.val) == set(range(1000))
    assert not (set(split.eval) & set(split.train)) and not (set(split.eval) & set(split.val))


def test_split_is_stratified_at_both_steps():
    counts = {"a": 600, "b": 300, "c": 90, "d": 10}
    labels = _labels(counts)
    split = stratified_split(labels, eval_size=100, val_ratio=0.2, seed=5)
    eval_counts = Counter(labels[i] for i in split.eval)
    assert eval_counts == {"a": 60, "b": 30, "c": 9, "d": 1}
    rest = Counter(labels[i] for i in split.train + split.val)
    val_counts = Counter(labels[i] for i in split.val)
    for label, count in rest.items():
        assert abs(val_counts[label] - 0.2 * count) < 1.0


def test_split_handles_a_class_of_one_and_pools_rare_labels():
    labels = _labels({"a": 30, "b": 20}) + ["lonely"] + ["pair", "pair"]
    split = stratified_split(labels, eval_size=10, val_ratio=0.1, seed=3, min_label_count=3)
    assert sorted(split.pooled_labels) == ["lonely", "pair"]
    assert len(split.eval) == 10
    assert len(split.eval) + len(split.train) + len(split.val) == len(labels)


@pytest.mark.parametrize("stratify", [True, False])
def test_split_never_crashes_on_tiny_inputs(stratify):
    for labels in (["x"], ["x", "y"], ["x", "y", "z"], ["x"] * 3):
        split = stratified_split(labels, eval_size=1, val_ratio=0.5, seed=0, stratify=stratify)
        assert len(split.eval) == 1
        assert len(split.eval) + len(split.train) + len(split.val) == len(labels)
        if len(labels) > 1:
            assert split.train, "at least one training item remains"


def test_split_is_deterministic_for_a_seed_and_changes_with_another():
    labels = _labels({"a": 200, "b": 100, "c": 50})
    first = stratified_split(labels, eval_size=30, val_ratio=0.1, seed=11)
    again = stratified_split(labels, eval_size=30, val_ratio=0.1, seed=11)
    other = stratified_split(labels, eval_size=30, val_ratio=0.1, seed=12)
    assert (first.eval, first.train, first.val) == (again.eval, again.train, again.val)
    assert first.eval != other.eval


def test_unstratified_split_is_a_seeded_shuffle():
    labels = ["a"] * 95 + ["b"] * 5
    first = stratified_split(labels, eval_size=10, val_ratio=0.1, seed=1, stratify=False)
    assert first == stratified_split(labels, eval_size=10, val_ratio=0.1, seed=1, stratify=False)
    assert first.eval != stratified_split(labels, eval_size=10, val_ratio=0.1, seed=2, stratify=False).eval
    assert len(first.eval) == 10 and len(first.val) == 9 and len(first.train) == 81
    assert first.pooled_labels == []


def test_split_keeps_ineligible_items_out_of_eval():
    labels = _labels({"a": 50, "b": 50})
    eligible = [index % 2 == 0 for index in range(100)]
    for stratify in (True, False):
        split = stratified_split(
            labels, eval_size=20, val_ratio=0.1, seed=4, stratify=stratify, eval_eligible=eligible
        )
        assert len(split.eval) == 20
        assert all(eligible[index] for index in split.eval)
        assert split.not_eval_eligible == 50


def test_split_rejects_bad_arguments():
    with pytest.raises(ValueError, match="val_ratio"):
        stratified_split(["a"], eval_size=1, val_ratio=1.0, seed=0)
    with pytest.raises(ValueError, match="eval_eligible"):
        stratified_split(["a", "b"], eval_size=1, val_ratio=0.1, seed=0, eval_eligible=[True])


def test_leakage_check_passes_on_disjoint_sets():
    report = check_leakage(["e1", "e2"], ["t1", "t2"], ["p1"])
    assert report.leaks == 0
    assert report.as_dict()["checked_eval"] == 2


def test_leakage_check_catches_an_injected_leak():
    with pytest.raises(LeakageError, match="1 eval prompt\\(s\\) also in this run's train/val"):
        check_leakage(["e1", "leaked"], ["t1", "leaked"])


def test_leakage_check_catches_earlier_training_sets():
    with pytest.raises(LeakageError, match="earlier run's training set"):
        check_leakage(["e1", "old"], ["t1"], previous_train_hashes={"old"})
    report = check_leakage(["e1", "old"], ["t1"], previous_train_hashes={"old"}, raise_on_leak=False)
    assert report.eval_in_previous_training == ["old"]
    assert report.as_dict()["eval_in_previous_training"] == 1


def test_val_count_respects_ratio_rounding():
    labels = ["a"] * 21
    split = stratified_split(labels, eval_size=1, val_ratio=0.25, seed=0)
    assert len(split.val) == math.floor(20 * 0.25 + 0.5)
    assert stratified_split(labels, eval_size=1, val_ratio=0.0, seed=0).val == []
