"""Scores of a flywheel run: evaluator results -> score keys, confidence intervals, history, verdicts.

Pure Python (no numpy, no Airflow), so the DAG's aggregate step, the UI and the benchmarks share it.

**Score keys.** The NeMo Evaluator reports ``tasks.<task>.metrics.<metric>.scores.<score>.value``
(plus ``stats``: count, mean, population stddev, ``nan_count``...). The flywheel keeps the
blueprint's keys:

================= =================================== ===========================================
workload          flywheel key                        evaluator score
================= =================================== ===========================================
generic           ``similarity`` (1-10)               llm-judge ``similarity``
tool_calling      ``function_name`` (0-1)             tool-calling ``function_name_accuracy``
tool_calling      ``function_name_and_args_accuracy`` tool-calling ``function_name_and_args_accuracy``
tool_calling      ``tool_calling_correctness`` (0-1)  llm-judge ``rating`` (0/1)
================= =================================== ===========================================

Scores the table does not map are listed in :attr:`ExtractedScores.unmapped` (reported, never
silently dropped); a mapped score outside its range is an error (a parser that read "10" as "1"
still passes, but a 0-1 value where 1-10 is expected does not).

**Intervals.** With per-row scores, :func:`bootstrap_ci` gives a seeded percentile bootstrap
interval of the mean (deterministic for a seed). Without rows, :func:`normal_ci` uses the
evaluator's ``stats`` (count and population stddev) and the normal approximation.

**History.** :func:`compare_with_history` flags a regression against the most recent earlier run
that has the same score; the rule is stated there precisely.

**Verdicts.** :func:`surface` decides whether a candidate (e.g. the customized model) is worth a
human's attention, with explicit reasons, and never calls it better than the base when their
intervals overlap.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

GENERIC = "generic"
TOOL_CALLING = "tool_calling"
WORKLOAD_TYPES = (GENERIC, TOOL_CALLING)

SCORE_KEYS: dict[str, tuple[str, ...]] = {
    GENERIC: ("similarity",),
    TOOL_CALLING: ("function_name", "function_name_and_args_accuracy", "tool_calling_correctness"),
}
# The score a verdict is decided on, unless the thresholds name another.
PRIMARY_SCORE: dict[str, str] = {GENERIC: "similarity", TOOL_CALLING: "function_name_and_args_accuracy"}
SCORE_RANGES: dict[str, tuple[float, float]] = {
    "similarity": (1.0, 10.0),
    "function_name": (0.0, 1.0),
    "function_name_and_args_accuracy": (0.0, 1.0),
    "tool_calling_correctness": (0.0, 1.0),
}
# Evaluator score name -> flywheel key, per workload type.
EVALUATOR_SCORE_NAMES: dict[str, dict[str, str]] = {
    GENERIC: {"similarity": "similarity"},
    TOOL_CALLING: {
        "function_name_accuracy": "function_name",
        "function_name_and_args_accuracy": "function_name_and_args_accuracy",
        "rating": "tool_calling_correctness",
    },
}

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
_MIN_RESAMPLES = 100
# Per-row values must average to the reported value within this (relative) tolerance.
_MEAN_TOLERANCE = 1e-6


class ScoringError(ValueError):
    """Evaluator results or scores cannot be used as given. The message names the score and the fix."""


# -- intervals --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfidenceInterval:
    """A confidence interval ``[low, high]`` of a score's mean over ``n`` rows.

    ``as_dict()`` is the ``ci`` entry of an evaluation document in the results store.
    """

    mean: float
    low: float
    high: float
    n: int
    confidence: float = DEFAULT_CONFIDENCE
    method: str = "bootstrap"

    @property
    def width(self) -> float:
        return self.high - self.low

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def overlaps(self, other: ConfidenceInterval) -> bool:
        """Closed intervals: touching counts as overlapping (the conservative reading)."""
        return self.low <= other.high and other.low <= self.high

    def as_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "n": self.n,
            "confidence": self.confidence,
            "method": self.method,
        }

    @classmethod
    def from_mapping(cls, value: Mapping[str, Any]) -> ConfidenceInterval:
        """Read an interval back from a results-store ``ci`` entry."""
        try:
            return cls(
                mean=float(value["mean"]),
                low=float(value["low"]),
                high=float(value["high"]),
                n=int(value["n"]),
                confidence=float(value.get("confidence", DEFAULT_CONFIDENCE)),
                method=str(value.get("method", "bootstrap")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ScoringError(f"not a confidence interval (need mean, low, high, n): {dict(value)!r}") from exc


def _finite_values(values: Iterable[Any], what: str) -> list[float]:
    result = []
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ScoringError(
                f"{what}[{index}] is {value!r}: per-row values must be finite numbers "
                "(leave unscored rows out and count them instead)"
            )
        result.append(float(value))
    if not result:
        raise ScoringError(f"{what}: no values; an interval needs at least one scored row")
    return result


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ScoringError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}")


def _quantile(sorted_values: Sequence[float], probability: float) -> float:
    """Linear interpolation between order statistics (the usual "type 7" sample quantile)."""
    position = (len(sorted_values) - 1) * probability
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    return sorted_values[lower] + (position - lower) * (sorted_values[upper] - sorted_values[lower])


def bootstrap_ci(
    values: Sequence[float],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> ConfidenceInterval:
    """A percentile bootstrap confidence interval of the mean of ``values``.

    ``resamples`` samples of size n are drawn with replacement by ``random.Random(seed)``; the
    interval runs between the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of
    their means. Same values, confidence, resamples and seed: same interval. The interval always
    contains the sample mean (on small skewed samples the percentile bounds can miss it; they are
    widened to it rather than reporting an interval of the mean that excludes the mean). With one
    row, or all rows equal, the interval is the single point: :func:`surface` asks for a minimum
    number of rows before it trusts one.

    Args:
        values: Per-row scores (finite numbers, unscored rows left out).
        confidence: The coverage, e.g. 0.95.
        resamples: Bootstrap resamples (at least 100).
        seed: Seed of the resampling.

    Raises:
        ScoringError: On no values, non-finite values, or bad parameters.
    """
    data = _finite_values(values, "values")
    _check_confidence(confidence)
    if not isinstance(resamples, int) or resamples < _MIN_RESAMPLES:
        raise ScoringError(f"resamples must be an integer >= {_MIN_RESAMPLES}, got {resamples!r}")
    n = len(data)
    mean = math.fsum(data) / n
    if n == 1 or min(data) == max(data):
        return ConfidenceInterval(mean=mean, low=mean, high=mean, n=n, confidence=confidence, method="bootstrap")
    rng = random.Random(seed)
    means = sorted(math.fsum(rng.choices(data, k=n)) / n for _ in range(resamples))
    tail = (1.0 - confidence) / 2.0
    low = min(_quantile(means, tail), mean)
    high = max(_quantile(means, 1.0 - tail), mean)
    return ConfidenceInterval(mean=mean, low=low, high=high, n=n, confidence=confidence, method="bootstrap")


def normal_ci(
    mean: float,
    stddev: float,
    n: int,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    population_stddev: bool = True,
    bounds: tuple[float, float] | None = None,
) -> ConfidenceInterval:
    """A normal-approximation interval of a mean from summary statistics (no per-row values).

    ``mean +- z * s / sqrt(n)``, with ``s`` the sample standard deviation (the evaluator reports
    the population one: ``s = stddev * sqrt(n / (n - 1))``), clipped to ``bounds`` when given.

    Raises:
        ScoringError: When ``n < 2`` (no spread can be estimated) or a value is not finite.
    """
    _check_confidence(confidence)
    if not isinstance(n, int) or n < 2:
        raise ScoringError(f"a normal interval needs at least 2 rows, got n={n!r}")
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in (mean, stddev)) or stddev < 0:
        raise ScoringError(f"mean and stddev must be finite (stddev >= 0), got mean={mean!r}, stddev={stddev!r}")
    sample_sd = stddev * math.sqrt(n / (n - 1)) if population_stddev else stddev
    half = NormalDist().inv_cdf(0.5 + confidence / 2.0) * sample_sd / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return ConfidenceInterval(mean=float(mean), low=low, high=high, n=n, confidence=confidence, method="normal")


def summarize_distribution(values: Sequence[float]) -> dict[str, float | int]:
    """``n``, ``mean``, ``p50``, ``p95``, ``min``, ``max`` of per-request values (latency, tokens).

    Raises:
        ScoringError: On no values or non-finite values.
    """
    data = sorted(_finite_values(values, "values"))
    return {
        "n": len(data),
        "mean": math.fsum(data) / len(data),
        "p50": _quantile(data, 0.5),
        "p95": _quantile(data, 0.95),
        "min": data[0],
        "max": data[-1],
    }


# -- evaluator results -> scores --------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """One flywheel score taken from the evaluator's results."""

    key: str
    value: float
    # Where it came from, e.g. "tasks.custom-tool-calling.metrics.correctness.scores.rating".
    source: str
    # Per-row values (unscored rows left out), when the results carry them.
    rows: tuple[float, ...] = ()
    # Rows the evaluator could not score (judge answers that did not parse, ...).
    unscored: int = 0
    stats: Mapping[str, Any] | None = None

    @property
    def scored(self) -> int | None:
        """How many rows the value averages (from the rows, else the stats' count)."""
        if self.rows:
            return len(self.rows)
        count = (self.stats or {}).get("count")
        return int(count) if isinstance(count, int | float) and not isinstance(count, bool) else None

    def interval(
        self,
        *,
        confidence: float = DEFAULT_CONFIDENCE,
        resamples: int = DEFAULT_RESAMPLES,
        seed: int = DEFAULT_SEED,
    ) -> ConfidenceInterval | None:
        """Bootstrap over the rows when present, else normal from the stats, else ``None``."""
        if self.rows:
            return bootstrap_ci(self.rows, confidence=confidence, resamples=resamples, seed=seed)
        stats = self.stats or {}
        n = self.scored
        if n is None or n < 2:
            return None
        mean = stats.get("mean", self.value)
        stddev = stats.get("stddev")
        if stddev is None and stats.get("variance") is not None:
            stddev = math.sqrt(max(float(stats["variance"]), 0.0))
        if stddev is None and stats.get("sum") is not None and stats.get("sum_squared") is not None:
            stddev = math.sqrt(max(float(stats["sum_squared"]) / n - (float(stats["sum"]) / n) ** 2, 0.0))
        if stddev is None:
            return None
        return normal_ci(float(mean), float(stddev), n, confidence=confidence, bounds=SCORE_RANGES.get(self.key))


@dataclass(frozen=True)
class ExtractedScores:
    """The flywheel scores of one evaluation, with what could not be mapped."""

    workload_type: str
    scores: dict[str, Score]
    # Evaluator scores the table does not map to a flywheel key (reported, never dropped silently).
    unmapped: tuple[str, ...] = ()
    # Keys of this workload type the results did not have, or had without a value.
    missing: tuple[str, ...] = ()
    # Keys the evaluator reported but could not score on any row (value null): rows left unscored.
    unscorable: dict[str, int] = field(default_factory=dict)
    # Numeric per-task usage the evaluator reported (latency, tokens), "<task>.<name>" when several tasks.
    usage: dict[str, float] = field(default_factory=dict)

    def values(self) -> dict[str, float]:
        """``{key: value}``: the ``scores`` of an evaluation document."""
        return {key: score.value for key, score in self.scores.items()}

    def counts(self) -> dict[str, dict[str, int]]:
        """``{key: {"scored": n, "unscored": m}}``: the ``counts`` of an evaluation document."""
        result = {key: {"scored": 0, "unscored": unscored} for key, unscored in self.unscorable.items()}
        for key, score in self.scores.items():
            entry = {"unscored": score.unscored}
            if score.scored is not None:
                entry["scored"] = score.scored
            result[key] = entry
        return result

    def intervals(
        self,
        *,
        confidence: float = DEFAULT_CONFIDENCE,
        resamples: int = DEFAULT_RESAMPLES,
        seed: int = DEFAULT_SEED,
    ) -> dict[str, ConfidenceInterval]:
        """Intervals of the keys that have rows or usable stats (keys without either are absent)."""
        result = {}
        for key, score in self.scores.items():
            interval = score.interval(confidence=confidence, resamples=resamples, seed=seed)
            if interval is not None:
                result[key] = interval
        return result


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScoringError(f"{where} is {value!r}, not a finite number")
    return float(value)


def _score_leaves(results: Mapping[str, Any]) -> tuple[list[tuple[str, str, str, Any]], dict[str, Any]]:
    """``[(task, metric, score name, score object)]`` and the tasks, from either accepted shape."""
    if "tasks" in results:
        tasks = results["tasks"]
        if not isinstance(tasks, Mapping):
            raise ScoringError(f"results.tasks must be an object, got {type(tasks).__name__}")
        leaves = []
        for task, body in tasks.items():
            metrics = body.get("metrics") if isinstance(body, Mapping) else None
            if not isinstance(metrics, Mapping):
                raise ScoringError(f"results.tasks.{task} has no 'metrics' object")
            for metric, metric_body in metrics.items():
                scores = metric_body.get("scores") if isinstance(metric_body, Mapping) else None
                if not isinstance(scores, Mapping):
                    raise ScoringError(f"results.tasks.{task}.metrics.{metric} has no 'scores' object")
                leaves.extend((task, metric, name, score) for name, score in scores.items())
        return leaves, dict(tasks)
    # The compact summary an operator may return instead: {metric: {score: value | {"value": v}}}.
    leaves = []
    for metric, scores in results.items():
        if not isinstance(scores, Mapping):
            raise ScoringError(
                f"results.{metric} is {type(scores).__name__}: expected the evaluator's results "
                "({'tasks': {task: {'metrics': ...}}}) or a summary {metric: {score: value}}"
            )
        leaves.extend(("", metric, name, score) for name, score in scores.items())
    return leaves, {}


def _row_value(row_scores: Mapping[str, Any], metric: str, name: str) -> Any:
    """A row's value of one score: nested ``{metric: {score: v}}``, ``"metric.score"`` or ``score``."""
    nested = row_scores.get(metric)
    if isinstance(nested, Mapping) and name in nested:
        value = nested[name]
    elif f"{metric}.{name}" in row_scores:
        value = row_scores[f"{metric}.{name}"]
    else:
        value = row_scores.get(name)
    return value.get("value") if isinstance(value, Mapping) else value


def _task_rows(task_body: Any, task: str, metric: str, name: str) -> tuple[list[float], int]:
    rows = task_body.get("rows") if isinstance(task_body, Mapping) else None
    if not rows:
        return [], 0
    if not isinstance(rows, list):
        raise ScoringError(f"results.tasks.{task}.rows must be a list of rows")
    values, unscored = [], 0
    for index, row in enumerate(rows):
        row_scores = row.get("scores") if isinstance(row, Mapping) else None
        if not isinstance(row_scores, Mapping):
            raise ScoringError(f"results.tasks.{task}.rows[{index}] has no 'scores' object")
        value = _row_value(row_scores, metric, name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            unscored += 1  # the evaluator could not score this row: counted, not scored as 0
            continue
        values.append(_number(value, f"results.tasks.{task}.rows[{index}].scores {metric}.{name}"))
    return values, unscored


def extract_scores(
    results: Mapping[str, Any],
    workload_type: str,
    *,
    row_scores: Mapping[str, Sequence[float | None]] | None = None,
) -> ExtractedScores:
    """Map the evaluator's results to the flywheel's score keys.

    Args:
        results: ``GET /v1/evaluation/jobs/{id}/results`` (``{"tasks": {task: {"metrics": {metric:
            {"scores": {score: {"value": v, "stats": {...}}}}}, "rows": [...]}}}``), or the compact
            summary ``{metric: {score: value}}``. Per-row values are read from ``tasks.<task>.rows``
            (each ``{"index", "scores": {metric: {score: v}}}``; ``"metric.score"`` or bare score
            keys work too) when present.
        workload_type: ``generic`` or ``tool_calling``.
        row_scores: Per-row values fetched separately, keyed by flywheel key or evaluator score
            name (``None`` entries are unscored rows); they take precedence over ``rows``.

    Returns:
        The mapped scores (value, source, rows, unscored count, stats), the unmapped evaluator
        scores, the keys this workload type expects but the results lack, and numeric usage.

    Raises:
        ScoringError: On an unknown workload type, a malformed results document, a score that is
            not a finite number or is outside its range, the same key from two places, or
            per-row values that do not average to the reported value. A score whose value is
            null (no row could be scored) is not an error: it is listed in ``missing`` and
            ``unscorable`` (with its unscored row count).
    """
    if workload_type not in WORKLOAD_TYPES:
        raise ScoringError(f"workload_type {workload_type!r} is unknown; use one of {list(WORKLOAD_TYPES)}")
    if not isinstance(results, Mapping):
        raise ScoringError(f"results must be an object, got {type(results).__name__}")
    names = EVALUATOR_SCORE_NAMES[workload_type]
    leaves, tasks = _score_leaves(results)
    scores: dict[str, Score] = {}
    unscorable: dict[str, int] = {}
    sources: dict[str, str] = {}
    unmapped = []
    for task, metric, name, score in leaves:
        source = f"tasks.{task}.metrics.{metric}.scores.{name}" if task else f"{metric}.{name}"
        key = names.get(name)
        if key is None:
            unmapped.append(source)
            continue
        if key in sources:
            raise ScoringError(
                f"score {key!r} comes from both {sources[key]} and {source}; "
                "evaluate one task per workload type or pass a single task's results"
            )
        sources[key] = source
        raw_value = score.get("value") if isinstance(score, Mapping) else score
        stats = score.get("stats") if isinstance(score, Mapping) and isinstance(score.get("stats"), Mapping) else None
        if raw_value is None:
            # No row could be scored (e.g. no judge answer parsed): no score, but say how many rows.
            nan_count = (stats or {}).get("nan_count")
            unscorable[key] = nan_count if isinstance(nan_count, int) else 0
            log.warning("Score %s (%s) has no value: %s rows could not be scored.", key, source, unscorable[key])
            continue
        value = _number(raw_value, f"results {source}.value")
        low, high = SCORE_RANGES[key]
        if not low <= value <= high:
            raise ScoringError(
                f"score {key!r} ({source}) is {value}, outside its range [{low:g}, {high:g}]; check the "
                "evaluator config's score parser and scale"
            )
        provided = None
        if row_scores is not None:
            provided = row_scores.get(key, row_scores.get(name))
        if provided is not None:
            rows = [v for v in provided if v is not None and not (isinstance(v, float) and math.isnan(v))]
            rows = _finite_values(rows, f"row_scores[{key!r}]") if rows else []
            unscored = len(provided) - len(rows)
        else:
            rows, unscored = _task_rows(tasks.get(task), task, metric, name) if task else ([], 0)
        if not rows and stats is not None and isinstance(stats.get("nan_count"), int):
            unscored = stats["nan_count"]
        if rows:
            mean = math.fsum(rows) / len(rows)
            if abs(mean - value) > _MEAN_TOLERANCE * max(1.0, abs(value)):
                raise ScoringError(
                    f"score {key!r} ({source}) is {value} but its {len(rows)} per-row values average {mean}; "
                    "the rows do not belong to this score (check the row/score mapping)"
                )
        scores[key] = Score(key=key, value=value, source=source, rows=tuple(rows), unscored=unscored, stats=stats)
    if unmapped:
        log.info("Evaluator scores without a flywheel key (kept out of the scores): %s", ", ".join(unmapped))
    missing = tuple(key for key in SCORE_KEYS[workload_type] if key not in scores)
    usage: dict[str, float] = {}
    for task, body in tasks.items():
        task_usage = body.get("usage") if isinstance(body, Mapping) else None
        if isinstance(task_usage, Mapping):
            for name, value in task_usage.items():
                if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                    usage[f"{task}.{name}" if len(tasks) > 1 else name] = float(value)
    return ExtractedScores(
        workload_type=workload_type,
        scores=scores,
        unmapped=tuple(unmapped),
        missing=missing,
        unscorable=unscorable,
        usage=usage,
    )


# -- history ----------------------------------------------------------------------------------------

ScoreLike = ConfidenceInterval | float | int | Mapping[str, Any]


def _as_estimate(value: ScoreLike, what: str) -> tuple[float, ConfidenceInterval | None]:
    if isinstance(value, ConfidenceInterval):
        return value.mean, value
    if isinstance(value, Mapping):
        interval = ConfidenceInterval.from_mapping(value)
        return interval.mean, interval
    return _number(value, what), None


def scores_from_evaluation(document: Mapping[str, Any]) -> dict[str, ScoreLike]:
    """An evaluation document's scores, as intervals where it has them (``ci``), else values."""
    scores = document.get("scores") or {}
    intervals = document.get("ci") or {}
    return {key: ConfidenceInterval.from_mapping(intervals[key]) if key in intervals else value
            for key, value in scores.items()}


@dataclass(frozen=True)
class HistoryComparison:
    """One score of the current run against the same score of an earlier run."""

    key: str
    previous_run: str
    current: float
    previous: float
    delta: float
    regression: bool
    improvement: bool
    # "intervals" (both have one), "current_interval", "previous_interval" or "points".
    basis: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "previous_run": self.previous_run,
            "current": self.current,
            "previous": self.previous,
            "delta": self.delta,
            "regression": self.regression,
            "improvement": self.improvement,
            "basis": self.basis,
            "reason": self.reason,
        }


def compare_with_history(
    current: Mapping[str, ScoreLike],
    history: Sequence[tuple[str, Mapping[str, ScoreLike]]],
    *,
    tolerance: float = 0.0,
) -> list[HistoryComparison]:
    """Compare each current score with the most recent earlier run that has it.

    The rule, for a score with current mean ``c`` (interval ``[c_lo, c_hi]``) and earlier mean
    ``p`` (interval ``[p_lo, p_hi]``):

    - **regression** when the current mean lies below the earlier interval **and** the earlier
      mean lies above the current interval: ``c < p_lo and p > c_hi`` (each run's estimate is
      outside the other's interval, on the worse side), and the drop ``p - c`` exceeds
      ``tolerance``. Overlapping intervals alone never flag a regression when each mean sits
      inside the other's interval;
    - **improvement**, symmetrically: ``c > p_hi and p < c_lo`` and ``c - p > tolerance``.

    When only one side has an interval, only that side's condition applies (``c < p_lo`` when
    only the earlier run has one; ``p > c_hi`` when only the current one has); with no
    interval on either side (bare values), any drop larger than ``tolerance`` is a regression.
    ``basis`` records which case applied.

    Args:
        current: This run's scores for one candidate and eval type: ``{key: interval | value}``
            (intervals as :class:`ConfidenceInterval` or a store ``ci`` mapping).
        history: Earlier runs' scores for the same candidate and eval type, **newest first**, as
            ``(run id, {key: interval | value})``.
        tolerance: Smallest change, in score units, that counts (>= 0).

    Returns:
        One comparison per current key that some earlier run has, in the order of ``current``.

    Raises:
        ScoringError: On a negative tolerance or a value that is not a number or an interval.
    """
    if tolerance < 0:
        raise ScoringError(f"tolerance must be >= 0, got {tolerance!r}")
    comparisons = []
    for key, value in current.items():
        c, c_interval = _as_estimate(value, f"current score {key!r}")
        earlier = next(((run, scores[key]) for run, scores in history if key in scores), None)
        if earlier is None:
            continue
        run, previous_value = earlier
        p, p_interval = _as_estimate(previous_value, f"score {key!r} of run {run}")
        below = [] if p_interval is None else [c < p_interval.low]
        above = [] if c_interval is None else [p > c_interval.high]
        regression_sides = below + above
        improvement_sides = ([] if p_interval is None else [c > p_interval.high]) + (
            [] if c_interval is None else [p < c_interval.low]
        )
        if p_interval is not None and c_interval is not None:
            basis = "intervals"
        elif c_interval is not None:
            basis = "current_interval"
        elif p_interval is not None:
            basis = "previous_interval"
        else:
            basis = "points"
        regression = (all(regression_sides) if regression_sides else True) and p - c > tolerance
        improvement = (all(improvement_sides) if improvement_sides else True) and c - p > tolerance
        if regression:
            reason = f"{key} fell from {p:.4g} (run {run}) to {c:.4g}" + _interval_note(c_interval, p_interval)
        elif improvement:
            reason = f"{key} rose from {p:.4g} (run {run}) to {c:.4g}" + _interval_note(c_interval, p_interval)
        else:
            reason = f"{key} {c:.4g} is within the noise of {p:.4g} (run {run})"
            reason += _interval_note(c_interval, p_interval)
        comparisons.append(
            HistoryComparison(
                key=key, previous_run=run, current=c, previous=p, delta=c - p,
                regression=regression, improvement=improvement, basis=basis, reason=reason,
            )
        )
    return comparisons


def _interval_note(current: ConfidenceInterval | None, previous: ConfidenceInterval | None) -> str:
    parts = []
    if current is not None:
        parts.append(f"now [{current.low:.4g}, {current.high:.4g}]")
    if previous is not None:
        parts.append(f"before [{previous.low:.4g}, {previous.high:.4g}]")
    return f" ({', '.join(parts)})" if parts else " (no intervals)"


# -- surfacing --------------------------------------------------------------------------------------


class SurfacingThresholds(BaseModel):
    """When a candidate is surfaced (shown as worth promoting) instead of held.

    Scores are in their own units (similarity 1-10, the others 0-1).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The score the decision rests on; default: similarity (generic) or
    # function_name_and_args_accuracy (tool calling).
    primary_score: str | None = None
    # Fewer scored rows than this on either side: too little data to decide.
    min_rows: int = Field(default=10, ge=1)
    # The candidate's mean must beat the base's by at least this much to count as better.
    min_improvement: float = Field(default=0.0, ge=0.0)
    # An absolute bar: the candidate's interval low end must reach it (None: no bar).
    min_score: float | None = None
    # Surface only candidates that are better than the base (intervals apart, candidate above).
    require_better_than_base: bool = True
    # A regression against the workload's earlier runs holds the candidate.
    block_on_regression: bool = True


Decision = Literal["surface", "hold", "insufficient_data"]


@dataclass(frozen=True)
class Verdict:
    """Whether to surface a candidate, and why (every check that decided it, in words)."""

    label: str
    decision: Decision
    better_than_base: bool
    primary_score: str
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "decision": self.decision,
            "better_than_base": self.better_than_base,
            "primary_score": self.primary_score,
            "reasons": list(self.reasons),
        }


def _fmt(interval: ConfidenceInterval) -> str:
    return f"{interval.mean:.4g} [{interval.low:.4g}, {interval.high:.4g}] (n={interval.n})"


def surface(
    candidate: Mapping[str, ScoreLike],
    base: Mapping[str, ScoreLike],
    *,
    workload_type: str,
    thresholds: SurfacingThresholds | None = None,
    history: Sequence[HistoryComparison] = (),
    label: str = "candidate",
) -> Verdict:
    """Decide whether a candidate is worth surfacing, against the base it should beat.

    ``candidate`` is e.g. the customized-eval (or icl-eval) scores of a model, ``base`` its
    base-eval scores in the same run. The rule, in order:

    1. **insufficient_data** when the primary score is missing on either side, lacks an interval
       on either side (a bare value says nothing about noise), or rests on fewer than
       ``min_rows`` rows on either side;
    2. the candidate is **better than base** only when the two primary intervals do not overlap
       (closed intervals: touching overlaps), the candidate's is the higher one, and its mean
       beats the base's by at least ``min_improvement``: overlapping intervals are never called
       better;
    3. **hold** when any of: the candidate is significantly worse than the base on the primary
       score or on any other score both sides have intervals for (intervals apart, candidate
       below); ``require_better_than_base`` and it is not better; ``min_score`` is set and the
       candidate's interval low end is below it; ``block_on_regression`` and ``history`` has a
       regression;
    4. **surface** otherwise.

    Args:
        candidate: ``{key: interval | value}`` of the candidate.
        base: ``{key: interval | value}`` of the base.
        workload_type: ``generic`` or ``tool_calling`` (picks the default primary score).
        thresholds: The configurable thresholds (defaults: :class:`SurfacingThresholds`).
        history: The candidate's comparisons with earlier runs (:func:`compare_with_history`).
        label: A name for the candidate in the verdict (e.g. ``"llama-3.2-1b customized-eval"``).

    Raises:
        ScoringError: On an unknown workload type or a value that is not a number or an interval.
    """
    if workload_type not in WORKLOAD_TYPES:
        raise ScoringError(f"workload_type {workload_type!r} is unknown; use one of {list(WORKLOAD_TYPES)}")
    thresholds = thresholds or SurfacingThresholds()
    key = thresholds.primary_score or PRIMARY_SCORE[workload_type]
    reasons: list[str] = []

    def insufficient(reason: str) -> Verdict:
        return Verdict(label=label, decision="insufficient_data", better_than_base=False, primary_score=key,
                       reasons=(reason,))

    for side, scores in (("candidate", candidate), ("base", base)):
        if key not in scores:
            return insufficient(f"the {side} has no {key!r} score")
    c_mean, c_interval = _as_estimate(candidate[key], f"candidate score {key!r}")
    b_mean, b_interval = _as_estimate(base[key], f"base score {key!r}")
    for side, interval in (("candidate", c_interval), ("base", b_interval)):
        if interval is None:
            return insufficient(f"the {side}'s {key} has no confidence interval (per-row scores or stats needed)")
        if interval.n < thresholds.min_rows:
            return insufficient(
                f"the {side}'s {key} rests on {interval.n} rows, fewer than min_rows={thresholds.min_rows}"
            )

    hold = False
    overlap = c_interval.overlaps(b_interval)
    gain = c_mean - b_mean
    if overlap:
        better = False
        reasons.append(f"{key}: candidate {_fmt(c_interval)} and base {_fmt(b_interval)} overlap: not better than base")
    elif c_interval.low > b_interval.high:
        better = gain >= thresholds.min_improvement
        if better:
            reasons.append(f"{key}: candidate {_fmt(c_interval)} is above base {_fmt(b_interval)}")
        else:
            reasons.append(
                f"{key}: candidate {_fmt(c_interval)} is above base {_fmt(b_interval)} but gains {gain:.4g}, "
                f"less than min_improvement={thresholds.min_improvement:g}"
            )
    else:
        better = False
        hold = True
        reasons.append(f"{key}: candidate {_fmt(c_interval)} is below base {_fmt(b_interval)}")

    for other, value in candidate.items():
        if other == key or other not in base:
            continue
        _, other_c = _as_estimate(value, f"candidate score {other!r}")
        _, other_b = _as_estimate(base[other], f"base score {other!r}")
        if other_c is not None and other_b is not None and other_c.high < other_b.low:
            hold = True
            reasons.append(f"{other}: candidate {_fmt(other_c)} is below base {_fmt(other_b)}")

    if thresholds.require_better_than_base and not better:
        hold = True
        reasons.append("require_better_than_base: the candidate is not better than base")
    if thresholds.min_score is not None:
        if c_interval.low < thresholds.min_score:
            hold = True
            reasons.append(f"{key}: interval low {c_interval.low:.4g} is below min_score={thresholds.min_score:g}")
        else:
            reasons.append(f"{key}: interval low {c_interval.low:.4g} reaches min_score={thresholds.min_score:g}")
    regressions = [comparison for comparison in history if comparison.regression]
    if regressions:
        reasons.extend(f"regression: {comparison.reason}" for comparison in regressions)
        if thresholds.block_on_regression:
            hold = True
    return Verdict(
        label=label,
        decision="hold" if hold else "surface",
        better_than_base=better,
        primary_score=key,
        reasons=tuple(reasons),
    )
