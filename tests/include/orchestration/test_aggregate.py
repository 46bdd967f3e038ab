"""The pure parts of aggregate_results and the report: per-request compute and the history section."""

from __future__ import annotations

from typing import Any

import pytest

from include.flywheel.config import load_config
from include.flywheel.scoring import ConfidenceInterval, compare_with_history
from include.orchestration.aggregate import (
    _regression_entry,
    history_lines,
    leaderboard_lines,
    per_request_usage,
    render_report,
)

MODEL = "meta/llama-3.2-1b-instruct"
PRIMARY = "function_name_and_args_accuracy"
EARLIER = "scheduled__2026-11-18T02:00:00+00:00"


def results_with_rows(latencies: list[float], totals: list[int], extra_rows: list[dict] | None = None) -> dict:
    rows: list[dict[str, Any]] = [
        {"index": i, "scores": {}, "usage": {"latency_ms": latency, "prompt_tokens": total - 10,
                                             "completion_tokens": 10, "total_tokens": total}}
        for i, (latency, total) in enumerate(zip(latencies, totals, strict=True))
    ]
    rows += extra_rows or []
    return {"tasks": {"t": {"metrics": {}, "rows": rows, "usage": {"mean_latency_ms": 999.0}}}}


def test_latency_p95_and_tokens_come_from_the_rows():
    # 20 requests: 19 fast, one slow. The mean hides the tail; the 95th percentile shows it.
    latencies = [10.0] * 19 + [1010.0]
    latency, tokens = per_request_usage(results_with_rows(latencies, [100] * 10 + [200] * 10))
    assert latency["n"] == tokens["n"] == 20
    assert latency["mean_ms"] == pytest.approx(60.0)
    # Type-7 quantile: position 0.95 * 19 = 18.05, between 10 and 1010.
    assert latency["p95_ms"] == pytest.approx(10.0 + 0.05 * 1000.0)
    assert tokens["mean_total"] == 150.0 and tokens["mean_completion"] == 10.0 and tokens["mean_prompt"] == 140.0
    assert tokens["p95_total"] == 200.0
    assert "rows_without_usage" not in latency


def test_rows_without_usage_are_counted_not_hidden():
    latency, tokens = per_request_usage(results_with_rows([5.0, 7.0], [50, 70], extra_rows=[{"index": 2, "scores": {}}]))
    assert latency["n"] == 2 and latency["rows_without_usage"] == tokens["rows_without_usage"] == 1
    assert latency["mean_ms"] == 6.0


def test_without_per_row_usage_the_task_means_are_kept_and_p95_is_unknown():
    results = {"tasks": {"t": {"metrics": {}, "rows": [], "usage": {
        "mean_latency_ms": 12.5, "mean_prompt_tokens": 90.0, "mean_completion_tokens": 8.0, "mean_total_tokens": 98.0}}}}
    latency, tokens = per_request_usage(results)
    assert latency == {"mean_ms": 12.5, "p95_ms": None, "n": 0}
    assert tokens == {"mean_prompt": 90.0, "mean_completion": 8.0, "mean_total": 98.0, "p95_total": None, "n": 0}


def regression(before: ConfidenceInterval, after: ConfidenceInterval) -> dict[str, Any]:
    [comparison] = compare_with_history({PRIMARY: after}, [(EARLIER, {PRIMARY: before})])
    assert comparison.regression
    return _regression_entry(comparison, {PRIMARY: after}, {PRIMARY: before})


def summary_with(regressions: list[dict], compared: list[str]) -> dict[str, Any]:
    entry = {
        "model": MODEL, "status": "completed", "failed_steps": [],
        "scores": {"customized-eval": {PRIMARY: 0.4}},
        "intervals": {"customized-eval": {PRIMARY: {"mean": 0.4, "low": 0.2, "high": 0.6, "n": 20}}},
        "verdicts": {}, "regressions": {"customized-eval": regressions}, "compared_with": {"customized-eval": compared},
    }
    return {"primary_score": PRIMARY, "leaderboard": [entry], "surfaced": [], "failed": [], "confidence": 0.9}


def test_report_names_each_regression_with_both_intervals():
    before = ConfidenceInterval(mean=0.75, low=0.55, high=0.95, n=20)
    after = ConfidenceInterval(mean=0.4, low=0.2, high=0.6, n=20)
    flagged = regression(before, after)
    assert flagged["previous_interval"] == before.as_dict() and flagged["current_interval"] == after.as_dict()
    settings = load_config().workload("customer-support-tools")
    report = render_report(settings, {"run_id": "manual__x", "summary": summary_with([flagged], [EARLIER])})
    assert "## Compared with earlier runs" in report
    [line] = [line for line in report.splitlines() if "REGRESSION" in line]
    assert line == (
        f"- **REGRESSION** {MODEL} customized-eval `{PRIMARY}`: 0.75 [0.55, 0.95] in run `{EARLIER}` "
        "-> 0.4 [0.2, 0.6] now (-0.35, beyond both intervals)"
    )
    # The configured confidence labels the leaderboard.
    assert "mean [90% CI]" in report


def test_report_says_when_nothing_regressed_or_nothing_was_compared():
    compared = history_lines(summary_with([], [EARLIER]))
    assert any(line.startswith("No regression") and EARLIER in line for line in compared)
    assert not any("REGRESSION" in line for line in compared)
    first = history_lines(summary_with([], []))
    assert any("nothing to compare with" in line for line in first)


def test_leaderboard_header_shows_the_confidence():
    assert leaderboard_lines([], PRIMARY)[0] == f"Leaderboard ({PRIMARY}, mean [95% CI])"
    assert leaderboard_lines([], PRIMARY, confidence=0.975)[0] == f"Leaderboard ({PRIMARY}, mean [97.5% CI])"


def test_report_has_latency_p95_and_tokens_per_evaluation():
    settings = load_config().workload("customer-support-tools")
    evaluations = [
        {"model_name": MODEL, "eval_type": "base-eval", "latency": {"mean_ms": 12.25, "p95_ms": 30.5, "n": 20},
         "tokens": {"mean_prompt": 900.0, "mean_completion": 21.0, "mean_total": 921.0}},
        {"model_name": MODEL, "eval_type": "icl-eval", "status": "failed"},
    ]
    report = render_report(settings, {"summary": summary_with([], []), "evaluations": evaluations})
    assert "## Test-time compute per request" in report
    assert f"| {MODEL} | base-eval | 12.2 | 30.5 | 900 + 21 = 921 |" in report
    assert "| icl-eval |" not in report  # nothing measured: no row
