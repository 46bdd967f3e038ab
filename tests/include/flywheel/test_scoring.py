"""Scoring: evaluator results -> score keys, intervals, history, the surfacing rule."""

from __future__ import annotations

import math
import random

import pytest

from include.flywheel.results import ScoreInterval
from include.flywheel.scoring import (
    ConfidenceInterval,
    ScoringError,
    SurfacingThresholds,
    bootstrap_ci,
    compare_with_history,
    extract_scores,
    normal_ci,
    scores_from_evaluation,
    summarize_distribution,
    surface,
)


def tool_calling_results(rows: list[dict] | None = None, **overrides: float) -> dict:
    """Evaluator results of the tool-calling config (task custom-tool-calling), optionally with rows."""
    values = {"function_name_accuracy": 0.75, "function_name_and_args_accuracy": 0.5, "rating": 0.5, **overrides}
    task = {
        "metrics": {
            "tool-calling-accuracy": {
                "scores": {
                    "function_name_accuracy": {"value": values["function_name_accuracy"], "stats": {"count": 4}},
                    "function_name_and_args_accuracy": {"value": values["function_name_and_args_accuracy"]},
                }
            },
            "correctness": {
                "scores": {"rating": {"value": values["rating"], "stats": {"count": 4, "mean": values["rating"],
                                                                           "nan_count": 1}}}
            },
        }
    }
    if rows is not None:
        task["rows"] = rows
    return {"id": "evaluation_result-1", "job": "eval-1", "tasks": {"custom-tool-calling": task}}


def binary(n: int, rate: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [1.0 if rng.random() < rate else 0.0 for _ in range(n)]


# -- evaluator results -> score keys ----------------------------------------------------------------


def test_tool_calling_scores_map_to_the_flywheel_keys() -> None:
    extracted = extract_scores(tool_calling_results(), "tool_calling")

    assert extracted.values() == {
        "function_name": 0.75,
        "function_name_and_args_accuracy": 0.5,
        "tool_calling_correctness": 0.5,
    }
    assert extracted.scores["tool_calling_correctness"].source == (
        "tasks.custom-tool-calling.metrics.correctness.scores.rating"
    )
    assert extracted.missing == ()
    # The judge answers that did not parse are counted, not scored as 0.
    assert extracted.counts()["tool_calling_correctness"] == {"scored": 4, "unscored": 1}


def test_generic_similarity_keeps_its_1_to_10_scale_and_reports_unmapped_scores() -> None:
    results = {
        "tasks": {
            "llm-as-judge": {
                "metrics": {
                    "llm-judge": {"scores": {"similarity": {"value": 10}}},
                    "bleu": {"scores": {"sentence": {"value": 0.31}}},
                }
            }
        }
    }
    extracted = extract_scores(results, "generic")
    assert extracted.values() == {"similarity": 10.0}
    assert extracted.unmapped == ("tasks.llm-as-judge.metrics.bleu.scores.sentence",)


def test_the_compact_summary_form_is_accepted() -> None:
    summary = {
        "tool-calling-accuracy": {"function_name_accuracy": 0.9, "function_name_and_args_accuracy": {"value": 0.8}}
    }
    extracted = extract_scores(summary, "tool_calling")
    assert extracted.values() == {"function_name": 0.9, "function_name_and_args_accuracy": 0.8}
    assert extracted.missing == ("tool_calling_correctness",)


def test_per_row_scores_are_read_and_unscored_rows_counted() -> None:
    accuracy = "tool-calling-accuracy"
    rows = [
        # Nested {metric: {score: value}}.
        {"index": 0, "scores": {accuracy: {"function_name_accuracy": 1.0, "function_name_and_args_accuracy": 1.0},
                                "correctness": {"rating": 1}}},
        # "metric.score" and bare score keys; a judge answer that did not parse (None).
        {"index": 1, "scores": {f"{accuracy}.function_name_accuracy": 1.0, "function_name_and_args_accuracy": 0.0,
                                "rating": None}},
        # {"value": v} leaves.
        {"index": 2, "scores": {accuracy: {"function_name_accuracy": {"value": 1.0},
                                           "function_name_and_args_accuracy": 1.0}, "correctness": {"rating": 0}}},
        {"index": 3, "scores": {accuracy: {"function_name_accuracy": 0.0, "function_name_and_args_accuracy": 0.0},
                                "correctness": {"rating": float("nan")}}},
    ]
    extracted = extract_scores(tool_calling_results(rows, rating=0.5), "tool_calling")

    assert extracted.scores["function_name"].rows == (1.0, 1.0, 1.0, 0.0)
    assert extracted.scores["tool_calling_correctness"].rows == (1.0, 0.0)
    assert extracted.counts()["tool_calling_correctness"] == {"scored": 2, "unscored": 2}
    intervals = extracted.intervals(seed=3)
    assert intervals["function_name"].method == "bootstrap"
    assert intervals["function_name"].n == 4


def test_rows_passed_separately_take_precedence() -> None:
    extracted = extract_scores(
        tool_calling_results(), "tool_calling", row_scores={"function_name_accuracy": [1.0, 1.0, 0.0, 1.0, None]}
    )
    assert extracted.scores["function_name"].rows == (1.0, 1.0, 0.0, 1.0)
    assert extracted.scores["function_name"].unscored == 1


@pytest.mark.parametrize(
    ("results", "workload_type", "message"),
    [
        (tool_calling_results(), "chat", r"workload_type 'chat' is unknown"),
        ({"tasks": {"t": {"metrics": {"m": {"value": 1}}}}}, "generic", r"tasks\.t\.metrics\.m has no 'scores'"),
        ({"tasks": {"t": {"score": 1}}}, "generic", r"tasks\.t has no 'metrics'"),
        ({"llm-judge": 7}, "generic", r"expected the evaluator's results"),
        ({"llm-judge": {"similarity": {"value": "7"}}}, "generic", r"similarity\.value is '7', not a finite number"),
        ({"llm-judge": {"similarity": 0.7}}, "generic", r"outside its range \[1, 10\]"),
        ({"a": {"rating": 1}, "b": {"rating": 0}}, "tool_calling", r"comes from both a\.rating and b\.rating"),
    ],
)
def test_malformed_results_are_rejected_clearly(results: dict, workload_type: str, message: str) -> None:
    with pytest.raises(ScoringError, match=message):
        extract_scores(results, workload_type)


def test_a_score_no_row_could_score_is_missing_and_counted() -> None:
    results = tool_calling_results()
    results["tasks"]["custom-tool-calling"]["metrics"]["correctness"]["scores"]["rating"] = {
        "value": None, "stats": {"count": 0, "sum": 0.0, "mean": None, "nan_count": 4}
    }
    extracted = extract_scores(results, "tool_calling")
    assert "tool_calling_correctness" not in extracted.values()
    assert extracted.missing == ("tool_calling_correctness",)
    assert extracted.counts()["tool_calling_correctness"] == {"scored": 0, "unscored": 4}
    assert extracted.values()["function_name"] == 0.75  # the other scores are still there


def test_rows_that_do_not_average_to_the_value_are_rejected() -> None:
    with pytest.raises(ScoringError, match=r"per-row values average 0\.25"):
        extract_scores(tool_calling_results(), "tool_calling", row_scores={"function_name": [1.0, 0.0, 0.0, 0.0]})


def test_stats_without_rows_give_a_normal_interval_within_the_score_range() -> None:
    results = {"llm-judge": {"similarity": {"value": 9.8, "stats": {"count": 20, "mean": 9.8, "stddev": 0.4}}}}
    interval = extract_scores(results, "generic").intervals()["similarity"]
    assert interval.method == "normal"
    assert interval.low < 9.8 < interval.high <= 10.0  # clipped to the 1-10 scale
    # No stddev and no rows: no interval rather than a made-up one.
    assert extract_scores({"llm-judge": {"similarity": 7}}, "generic").intervals() == {}


# -- bootstrap intervals ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize(("n", "rate"), [(5, 0.2), (20, 0.5), (200, 0.9)])
def test_the_interval_contains_the_mean(n: int, rate: float, seed: int) -> None:
    values = binary(n, rate, seed)
    interval = bootstrap_ci(values, seed=seed)
    assert interval.mean == pytest.approx(sum(values) / n)
    assert interval.low <= interval.mean <= interval.high
    assert 0.0 <= interval.low and interval.high <= 1.0
    ScoreInterval(**interval.as_dict())  # what the results store accepts


def test_skewed_small_samples_still_contain_the_mean() -> None:
    values = [0.0] * 9 + [100.0]
    for seed in range(20):
        interval = bootstrap_ci(values, seed=seed, resamples=100)
        assert interval.contains(interval.mean)


def test_the_interval_shrinks_as_rows_grow() -> None:
    widths = [bootstrap_ci(binary(n, 0.6, seed=11), seed=5).width for n in (25, 100, 400, 1600)]
    assert widths == sorted(widths, reverse=True)
    assert widths[-1] < widths[0] / 4  # about 1/sqrt(n): 64x the rows, ~1/8 the width


def test_the_same_seed_gives_the_same_interval_and_another_seed_may_not() -> None:
    values = binary(60, 0.55, seed=2)
    assert bootstrap_ci(values, seed=42) == bootstrap_ci(values, seed=42)
    others = {bootstrap_ci(values, seed=seed) for seed in range(5)}
    assert len(others) > 1  # the seed really drives the resampling


def test_a_higher_confidence_gives_a_wider_interval() -> None:
    values = binary(80, 0.5, seed=4)
    assert bootstrap_ci(values, confidence=0.99).width > bootstrap_ci(values, confidence=0.8).width


def test_degenerate_samples_give_a_point() -> None:
    assert bootstrap_ci([1.0] * 30) == ConfidenceInterval(mean=1.0, low=1.0, high=1.0, n=30)
    assert bootstrap_ci([7]).width == 0.0


@pytest.mark.parametrize(
    ("values", "kwargs", "message"),
    [
        ([], {}, r"no values"),
        ([1.0, float("nan")], {}, r"values\[1\] is nan"),
        ([1.0, "1"], {}, r"values\[1\] is '1'"),
        ([1.0, 0.0], {"confidence": 95}, r"confidence must be between 0 and 1"),
        ([1.0, 0.0], {"resamples": 10}, r"resamples must be an integer >= 100"),
    ],
)
def test_bad_bootstrap_input_is_rejected(values: list, kwargs: dict, message: str) -> None:
    with pytest.raises(ScoringError, match=message):
        bootstrap_ci(values, **kwargs)


def test_normal_interval_matches_the_textbook_formula() -> None:
    interval = normal_ci(0.5, 0.5, 100)  # population sd of a 50/50 binary sample
    half = 1.959964 * 0.5 * math.sqrt(100 / 99) / 10
    assert (interval.low, interval.high) == (pytest.approx(0.5 - half, abs=1e-6), pytest.approx(0.5 + half, abs=1e-6))
    with pytest.raises(ScoringError, match="at least 2 rows"):
        normal_ci(0.5, 0.1, 1)


def test_summarize_distribution() -> None:
    stats = summarize_distribution([100, 200, 300, 400, 1000])
    assert stats == {"n": 5, "mean": 400.0, "p50": 300.0, "p95": pytest.approx(880.0), "min": 100.0, "max": 1000.0}


# -- history ----------------------------------------------------------------------------------------


def ci(mean: float, half: float, n: int = 50) -> ConfidenceInterval:
    return ConfidenceInterval(mean=mean, low=mean - half, high=mean + half, n=n)


def test_a_drop_beyond_both_intervals_is_a_regression() -> None:
    [comparison] = compare_with_history(
        {"function_name": ci(0.60, 0.05)},
        [("run-3", {"function_name": ci(0.80, 0.05)}), ("run-2", {"function_name": ci(0.50, 0.05)})],
    )
    assert comparison.regression and not comparison.improvement
    assert (comparison.previous_run, comparison.basis) == ("run-3", "intervals")  # the most recent earlier run
    assert comparison.delta == pytest.approx(-0.20)
    assert "fell from 0.8 (run run-3) to 0.6" in comparison.reason


def test_a_drop_within_the_noise_is_not_a_regression() -> None:
    # Intervals overlap and each mean lies inside the other's interval.
    [comparison] = compare_with_history({"similarity": ci(7.6, 0.5)}, [("run-1", {"similarity": ci(7.9, 0.5)})])
    assert not comparison.regression and not comparison.improvement
    assert "within the noise" in comparison.reason


def test_a_mean_below_the_earlier_interval_but_with_the_earlier_mean_inside_ours_is_not_flagged() -> None:
    # c=0.70 < p_lo=0.72, but p=0.75 <= c_hi=0.80: the current interval is too wide to call it.
    [comparison] = compare_with_history({"function_name": ci(0.70, 0.10)}, [("r1", {"function_name": ci(0.75, 0.03)})])
    assert not comparison.regression


def test_a_rise_beyond_both_intervals_is_an_improvement() -> None:
    [comparison] = compare_with_history({"function_name": ci(0.9, 0.03)}, [("r1", {"function_name": ci(0.7, 0.03)})])
    assert comparison.improvement and not comparison.regression


def test_points_and_store_documents_work_as_history() -> None:
    earlier = {"scores": {"function_name": 0.8, "tool_calling_correctness": 0.7},
               "ci": {"function_name": ci(0.8, 0.05).as_dict()}}
    history = [("run-1", scores_from_evaluation(earlier))]
    by_key = {c.key: c for c in compare_with_history({"function_name": 0.7, "tool_calling_correctness": 0.69}, history)}
    assert (by_key["function_name"].regression, by_key["function_name"].basis) == (True, "previous_interval")
    assert (by_key["tool_calling_correctness"].regression, by_key["tool_calling_correctness"].basis) == (True, "points")
    tolerant = compare_with_history({"tool_calling_correctness": 0.69}, history, tolerance=0.02)
    assert not tolerant[0].regression
    assert compare_with_history({"similarity": 7.0}, history) == []  # no earlier run has it


# -- surfacing --------------------------------------------------------------------------------------


def test_overlapping_intervals_are_never_better_than_base() -> None:
    verdict = surface(
        {"function_name_and_args_accuracy": ci(0.80, 0.08)},
        {"function_name_and_args_accuracy": ci(0.70, 0.05)},
        workload_type="tool_calling",
        thresholds=SurfacingThresholds(require_better_than_base=False),
    )
    assert not verdict.better_than_base
    assert verdict.decision == "surface"  # no bar demands it; but it is not called better
    assert any("overlap: not better than base" in reason for reason in verdict.reasons)

    touching = surface({"similarity": ci(8.0, 0.5)}, {"similarity": ci(7.0, 0.5)}, workload_type="generic")
    assert (touching.better_than_base, touching.decision) == (False, "hold")


def test_a_candidate_clearly_above_base_is_surfaced_with_reasons() -> None:
    verdict = surface(
        {"function_name_and_args_accuracy": ci(0.90, 0.04), "function_name": ci(0.95, 0.03)},
        {"function_name_and_args_accuracy": ci(0.60, 0.06), "function_name": ci(0.90, 0.04)},
        workload_type="tool_calling",
        label="llama-3.2-1b customized-eval",
    )
    assert (verdict.decision, verdict.better_than_base) == ("surface", True)
    assert verdict.reasons[0].startswith(
        "function_name_and_args_accuracy: candidate 0.9 [0.86, 0.94] (n=50) is above base"
    )
    assert verdict.as_dict()["label"] == "llama-3.2-1b customized-eval"


@pytest.mark.parametrize(
    ("thresholds", "history", "expected_reason"),
    [
        (SurfacingThresholds(min_improvement=0.5), (), "less than min_improvement=0.5"),
        (SurfacingThresholds(min_score=0.9), (), "interval low 0.86 is below min_score=0.9"),
        (
            SurfacingThresholds(),
            compare_with_history({"function_name": ci(0.7, 0.02)}, [("r0", {"function_name": ci(0.9, 0.02)})]),
            "regression: function_name fell from 0.9 (run r0) to 0.7",
        ),
    ],
)
def test_thresholds_and_regressions_hold_a_better_candidate(thresholds, history, expected_reason: str) -> None:
    verdict = surface(
        {"function_name_and_args_accuracy": ci(0.90, 0.04)},
        {"function_name_and_args_accuracy": ci(0.60, 0.06)},
        workload_type="tool_calling",
        thresholds=thresholds,
        history=history,
    )
    assert verdict.decision == "hold"
    assert any(expected_reason in reason for reason in verdict.reasons), verdict.reasons


def test_a_regression_does_not_block_when_told_not_to() -> None:
    history = compare_with_history({"similarity": ci(6.0, 0.2)}, [("r0", {"similarity": ci(8.0, 0.2)})])
    verdict = surface({"similarity": ci(9.0, 0.2)}, {"similarity": ci(5.0, 0.2)}, workload_type="generic",
                      thresholds=SurfacingThresholds(block_on_regression=False), history=history)
    assert verdict.decision == "surface"
    assert any(reason.startswith("regression:") for reason in verdict.reasons)


def test_a_candidate_worse_on_a_secondary_score_is_held() -> None:
    verdict = surface(
        {"function_name_and_args_accuracy": ci(0.9, 0.03), "tool_calling_correctness": ci(0.5, 0.05)},
        {"function_name_and_args_accuracy": ci(0.6, 0.03), "tool_calling_correctness": ci(0.8, 0.05)},
        workload_type="tool_calling",
    )
    assert (verdict.decision, verdict.better_than_base) == ("hold", True)
    assert any(r.startswith("tool_calling_correctness: candidate 0.5") and "below base" in r for r in verdict.reasons)


def test_a_candidate_below_base_is_held() -> None:
    verdict = surface({"similarity": ci(5.0, 0.3)}, {"similarity": ci(7.0, 0.3)}, workload_type="generic",
                      thresholds=SurfacingThresholds(require_better_than_base=False))
    assert verdict.decision == "hold"
    assert "similarity: candidate 5 [4.7, 5.3] (n=50) is below base 7 [6.7, 7.3] (n=50)" in verdict.reasons


@pytest.mark.parametrize(
    ("candidate", "base", "reason"),
    [
        ({}, {"similarity": ci(7, 0.5)}, "the candidate has no 'similarity' score"),
        ({"similarity": 9.0}, {"similarity": ci(7, 0.5)}, "the candidate's similarity has no confidence interval"),
        ({"similarity": ci(9, 0.1)}, {"similarity": ci(7, 0.5, n=4)}, "rests on 4 rows, fewer than min_rows=10"),
    ],
)
def test_too_little_data_is_said_so(candidate: dict, base: dict, reason: str) -> None:
    verdict = surface(candidate, base, workload_type="generic")
    assert verdict.decision == "insufficient_data"
    assert verdict.better_than_base is False
    assert reason in verdict.reasons[0]


def test_from_evaluator_results_to_a_verdict() -> None:
    """End to end: per-row results of base and customized evals -> intervals -> verdict."""
    base_rows = binary(120, 0.55, seed=1)
    tuned_rows = binary(120, 0.92, seed=2)

    def results(rows: list[float]) -> dict:
        value = sum(rows) / len(rows)
        return {"tasks": {"custom-tool-calling": {
            "metrics": {"tool-calling-accuracy": {"scores": {"function_name_and_args_accuracy": {"value": value}}}},
            "rows": [{"index": i, "scores": {"tool-calling-accuracy": {"function_name_and_args_accuracy": v}}}
                     for i, v in enumerate(rows)],
        }}}

    base = extract_scores(results(base_rows), "tool_calling").intervals(seed=9)
    tuned = extract_scores(results(tuned_rows), "tool_calling").intervals(seed=9)
    verdict = surface(tuned, base, workload_type="tool_calling")
    assert (verdict.decision, verdict.better_than_base) == ("surface", True)
    # Six rows of each: fewer than min_rows, so no verdict either way.
    small = surface(
        extract_scores(results(tuned_rows[:6]), "tool_calling").intervals(seed=9),
        extract_scores(results(base_rows[:6]), "tool_calling").intervals(seed=9),
        workload_type="tool_calling",
    )
    assert small.decision == "insufficient_data"
