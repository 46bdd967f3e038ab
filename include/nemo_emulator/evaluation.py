"""The emulator's evaluation runner: runs an inline NeMo Evaluator config against a model.

Supported (what the flywheel submits, see DESIGN section 5):
    * config ``{"type": "custom", "tasks": {...}}`` with tasks of type ``chat-completion``;
    * ``dataset.files_url`` ``hf://datasets/<ns>/<name>/<path>`` (optional ``dataset.limit``);
    * ``params.template``: each string value is rendered with Jinja (``item`` = the row) and
      parsed back with ``json.loads`` when it renders to a JSON list/object/null (``messages``,
      ``tools``); other values (``tool_choice``, ``max_tokens``) pass through;
    * metrics ``tool-calling`` (``function_name_accuracy``, ``function_name_and_args_accuracy``),
      ``llm-judge`` (any scores with ``int``/``float`` type and a ``regex`` parser) and
      ``string-check`` (``params.check = [left, op, right]``, score ``string-check``).

Templates run in a strict environment: an undefined name or attribute fails the
evaluation with a ``ValueError`` naming the row and template, except that ``tojson`` of a
missing optional field (e.g. ``message.tool_calls`` of an answer without tool calls) gives
``null``, as the reference's "called no tool".

Results: ``{"tasks": {task: {"metrics": {metric: {"scores": {score: {"value", "stats":
{"count", "sum", "mean", "nan_count"}}}}}, "rows": [...], "usage": {...}}}}``. ``value``
and ``mean`` are ``None`` when no row could be scored. A row whose judge answer does not
parse is counted in ``nan_count`` and left out of the mean; ``rows`` keeps each row's
output, scores and the reason a score is missing, for divergent-case inspection.
``usage`` has the mean tokens per request and the mean measured latency (the only
wall-clock figure in the results); each row's ``usage`` has that request's ``latency_ms``,
``prompt_tokens``, ``completion_tokens`` and ``total_tokens``, so percentiles (p95) can be
computed from the data.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from include.nemo_emulator._brain_tools import calls_match, names_match, normalize_tool_calls
from include.nemo_emulator.brain import ChatModel

log = logging.getLogger(__name__)

__all__ = ["run_evaluation", "render_template_value"]

SUPPORTED_TASK_TYPES = ("chat-completion",)
SUPPORTED_METRIC_TYPES = ("tool-calling", "llm-judge", "string-check")
_FILES_URL_RE = re.compile(r"^hf://datasets/[^/\s]+/[^/\s]+/\S+$")


class _LenientJsonUndefined(jinja2.StrictUndefined):
    """Strict everywhere, except that ``tojson`` turns it into ``null`` (see module doc)."""


def _tojson(value: Any, indent: int | None = None) -> str:
    if isinstance(value, jinja2.Undefined):
        return "null"
    # Plain JSON: no HTML escaping, this is not an HTML context.
    return json.dumps(value, ensure_ascii=False, indent=indent, default=str)


def _environment() -> jinja2.Environment:
    env = SandboxedEnvironment(undefined=_LenientJsonUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters["tojson"] = _tojson
    return env


_ENV = _environment()


@functools.lru_cache(maxsize=256)
def _compile_source(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def _compile(source: str, where: str) -> jinja2.Template:
    try:
        return _compile_source(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"{where}: invalid Jinja template ({exc.message}, line {exc.lineno}).") from exc


def _render(template: jinja2.Template, context: dict[str, Any], where: str) -> str:
    try:
        return template.render(**context)
    except jinja2.UndefinedError as exc:
        raise ValueError(
            f"{where}: the template uses a missing field ({exc.message}). Fix the template or the dataset."
        ) from exc
    except jinja2.TemplateError as exc:
        raise ValueError(f"{where}: the template failed ({exc}).") from exc
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
        raise ValueError(f"{where}: the template failed ({type(exc).__name__}: {exc}).") from exc


def render_template_value(value: Any, context: dict[str, Any], where: str) -> Any:
    """Render one ``params.template`` value; renderings that are JSON come back parsed.

    Strings with Jinja markup render with ``context``; a rendering that is valid JSON is
    parsed back (``messages``, ``tools``, numbers), anything else stays text; strings
    without markup (``"auto"``) and non-strings pass through unchanged. Lists and dicts are
    rendered element by element.

    Raises:
        ValueError: naming ``where`` when the template is invalid or uses a missing field.
    """
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        rendered = _render(_compile(value, where), context, where)
        stripped = rendered.strip()
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as exc:
            if stripped[:1] in ("[", "{"):
                raise ValueError(f"{where}: rendered to invalid JSON ({exc.msg} at char {exc.pos}).") from exc
        return rendered
    if isinstance(value, list):
        return [render_template_value(v, context, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: render_template_value(v, context, f"{where}.{k}") for k, v in value.items()}
    return value


# --------------------------------------------------------------------------------------
# Config validation
# --------------------------------------------------------------------------------------


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _validate_config(config: Any) -> dict[str, dict[str, Any]]:
    _require(isinstance(config, dict), "The evaluation config must be a JSON object with 'tasks'.")
    if config.get("type") not in (None, "custom"):
        raise ValueError(
            f"Evaluation config type {config.get('type')!r} is not supported by the emulator; use 'custom'."
        )
    tasks = config.get("tasks")
    _require(isinstance(tasks, dict) and bool(tasks), "config.tasks must be a non-empty object of named tasks.")
    for task_name, task in tasks.items():
        where = f"config.tasks.{task_name}"
        _require(isinstance(task, dict), f"{where} must be an object.")
        task_type = task.get("type", "chat-completion")
        _require(
            task_type in SUPPORTED_TASK_TYPES,
            f"{where}.type {task_type!r} is not supported; the emulator runs {', '.join(SUPPORTED_TASK_TYPES)}.",
        )
        dataset = task.get("dataset")
        _require(isinstance(dataset, dict), f"{where}.dataset must be an object with files_url.")
        files_url = dataset.get("files_url")
        _require(
            isinstance(files_url, str) and bool(_FILES_URL_RE.match(files_url)),
            f"{where}.dataset.files_url must look like hf://datasets/<namespace>/<name>/<file>, got {files_url!r}.",
        )
        limit = dataset.get("limit")
        _require(
            limit is None or (isinstance(limit, int) and not isinstance(limit, bool) and limit > 0),
            f"{where}.dataset.limit must be a positive integer, got {limit!r}.",
        )
        params = task.get("params") or {}
        _require(isinstance(params, dict), f"{where}.params must be an object.")
        template = params.get("template")
        _require(
            isinstance(template, dict) and "messages" in template,
            f"{where}.params.template must be an object with at least 'messages'.",
        )
        for key, value in template.items():
            if isinstance(value, str):
                _compile(value, f"{where}.params.template.{key}")
        metrics = task.get("metrics")
        _require(isinstance(metrics, dict) and bool(metrics), f"{where}.metrics must be a non-empty object.")
        for metric_name, metric in metrics.items():
            _validate_metric(metric, f"{where}.metrics.{metric_name}")
    return tasks


def _validate_metric(metric: Any, where: str) -> None:
    _require(isinstance(metric, dict), f"{where} must be an object with a type.")
    metric_type = metric.get("type")
    _require(
        metric_type in SUPPORTED_METRIC_TYPES,
        f"{where}.type {metric_type!r} is not supported; the emulator runs {', '.join(SUPPORTED_METRIC_TYPES)}.",
    )
    params = metric.get("params") or {}
    _require(isinstance(params, dict), f"{where}.params must be an object.")
    if metric_type == "tool-calling":
        ground_truth = params.get("tool_calls_ground_truth")
        _require(
            isinstance(ground_truth, str) and bool(ground_truth.strip()),
            f"{where}.params.tool_calls_ground_truth must be a template string such as "
            "'{{ item.response.choices[0].message.tool_calls | tojson }}'.",
        )
        _compile(ground_truth, f"{where}.params.tool_calls_ground_truth")
    elif metric_type == "llm-judge":
        _require(params.get("model") is not None, f"{where}.params.model must name the judge model.")
        template = params.get("template")
        messages = template.get("messages") if isinstance(template, dict) else None
        _require(
            isinstance(messages, list) and bool(messages),
            f"{where}.params.template.messages must be a non-empty list of {{role, content}} messages.",
        )
        for index, message in enumerate(messages):
            _require(
                isinstance(message, dict)
                and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str),
                f"{where}.params.template.messages[{index}] must have string 'role' and 'content'.",
            )
            _compile(message["content"], f"{where}.params.template.messages[{index}].content")
        scores = params.get("scores")
        _require(isinstance(scores, dict) and bool(scores), f"{where}.params.scores must be a non-empty object.")
        for score_name, score in scores.items():
            swhere = f"{where}.params.scores.{score_name}"
            _require(isinstance(score, dict), f"{swhere} must be an object with type and parser.")
            _require(score.get("type", "int") in ("int", "float"), f"{swhere}.type must be 'int' or 'float'.")
            parser = score.get("parser")
            _require(
                isinstance(parser, dict)
                and parser.get("type", "regex") == "regex"
                and isinstance(parser.get("pattern"), str),
                f"{swhere}.parser must be {{'type': 'regex', 'pattern': '...'}}.",
            )
            try:
                re.compile(parser["pattern"])
            except re.error as exc:
                raise ValueError(f"{swhere}.parser.pattern is not a valid regex ({exc}).") from exc
    elif metric_type == "string-check":
        check = params.get("check")
        _require(
            isinstance(check, list) and len(check) == 3 and all(isinstance(c, str) for c in check),
            f"{where}.params.check must be [left template, operation, right template].",
        )
        _require(
            check[1] in _STRING_OPS,
            f"{where}.params.check operation {check[1]!r} is not one of {', '.join(sorted(_STRING_OPS))}.",
        )


_STRING_OPS: dict[str, Callable[[str, str], bool]] = {
    "equals": lambda a, b: a == b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "not equals": lambda a, b: a != b,
    "contains": lambda a, b: b in a,
    "not contains": lambda a, b: b not in a,
    "startswith": lambda a, b: a.startswith(b),
    "endswith": lambda a, b: a.endswith(b),
}


# --------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------


class _Score:
    """Running stats of one score; ``None`` values are counted as unparsed (nan)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0
        self.nan_count = 0

    def add(self, value: float | None) -> None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            self.nan_count += 1
        else:
            self.total += value
            self.count += 1

    def result(self) -> dict[str, Any]:
        mean = self.total / self.count if self.count else None
        return {
            "value": mean,
            "stats": {"count": self.count, "sum": self.total, "mean": mean, "nan_count": self.nan_count},
        }


def _sample_tool_calls(sample: dict[str, Any]) -> Any:
    choices = sample["response"].get("choices") or [{}]
    message = choices[0].get("message") or {}
    return message.get("tool_calls")


def _score_tool_calling(
    metric: dict[str, Any], context: dict[str, Any], where: str
) -> tuple[dict[str, float], str | None]:
    template = metric["params"]["tool_calls_ground_truth"]
    rendered = render_template_value(template, context, f"{where}.tool_calls_ground_truth")
    try:
        expected = normalize_tool_calls(rendered)
    except ValueError as exc:
        raise ValueError(f"{where}: the ground truth is not a list of tool calls ({exc}).") from exc
    try:
        predicted = normalize_tool_calls(_sample_tool_calls(context["sample"]))
    except ValueError:
        # A malformed prediction is a wrong prediction, not an evaluation error.
        return {"function_name_accuracy": 0.0, "function_name_and_args_accuracy": 0.0}, "prediction malformed"
    name_ok = names_match(expected, predicted)
    return {
        "function_name_accuracy": float(name_ok),
        "function_name_and_args_accuracy": float(name_ok and calls_match(expected, predicted)),
    }, None


def _parse_score(text: str, score: dict[str, Any]) -> float | int | None:
    match = re.search(score["parser"]["pattern"], text)
    if not match:
        return None
    raw = match.group(1) if match.groups() else match.group(0)
    if raw is None:
        return None
    try:
        if score.get("type", "int") == "int":
            return int(raw.strip())
        value = float(raw.strip())
        return value if math.isfinite(value) else None
    except ValueError:
        return None


def _score_llm_judge(
    metric: dict[str, Any], context: dict[str, Any], where: str, judge: ChatModel
) -> tuple[dict[str, float | None], str | None]:
    params = metric["params"]
    messages = []
    for index, message in enumerate(params["template"]["messages"]):
        mwhere = f"{where}.messages[{index}]"
        content = _render(_compile(message["content"], mwhere), context, mwhere)
        messages.append({"role": message["role"], "content": content})
    response = judge.complete({"model": judge.name, "messages": messages, "temperature": 0.0})
    answer = ((response.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
    scores: dict[str, float | None] = {}
    missing = []
    for score_name, score in params["scores"].items():
        scores[score_name] = _parse_score(answer, score)
        if scores[score_name] is None:
            missing.append(score_name)
    note = None
    if missing:
        note = f"judge answer did not parse for {', '.join(missing)}: {answer[:200]!r}"
    return scores, note


def _score_string_check(metric: dict[str, Any], context: dict[str, Any], where: str) -> tuple[dict[str, float], None]:
    left, op, right = metric["params"]["check"]
    left_text = _render(_compile(left, f"{where}.check[0]"), context, f"{where}.check[0]")
    right_text = _render(_compile(right, f"{where}.check[2]"), context, f"{where}.check[2]")
    return {"string-check": float(_STRING_OPS[op](left_text.strip(), right_text.strip()))}, None


# --------------------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------------------


def _build_request(task: dict[str, Any], row: dict[str, Any], target: ChatModel, where: str) -> dict[str, Any]:
    request: dict[str, Any] = {"model": target.name}
    for key, value in task["params"]["template"].items():
        rendered = render_template_value(value, {"item": row}, f"{where}.params.template.{key}")
        if rendered is None and key != "messages":
            continue  # e.g. tools of a row that has none: leave the field out
        request[key] = rendered
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError(
            f"{where}: params.template.messages must render to a non-empty JSON list, got {messages!r:.80}."
        )
    if request.get("tools") is None or request.get("tools") == []:
        request.pop("tools", None)
        if request.get("tool_choice") in ("auto", "required", "none"):
            request.pop("tool_choice")  # OpenAI rejects tool_choice without tools
    return request


def _output_of(response: dict[str, Any]) -> dict[str, Any]:
    message = ((response.get("choices") or [{}])[0].get("message")) or {}
    output: dict[str, Any] = {"content": message.get("content")}
    if message.get("tool_calls"):
        output["tool_calls"] = message["tool_calls"]
    return output


def run_evaluation(
    config: dict,
    target: ChatModel,
    resolve_model: Callable[[dict | str], ChatModel],
    load_rows: Callable[[str], list[dict]],
    on_progress: Callable[[float], None],
) -> dict:
    """Run an inline evaluation config against ``target`` and return the results body.

    All datasets are loaded and validated before the first model call, so a bad config or
    dataset fails fast without partial work.

    Args:
        config: the inline evaluation config (see the module doc).
        target: the model under evaluation.
        resolve_model: turns a judge spec (``{"api_endpoint": {...}}`` or ``"ns/name"``) into a model.
        load_rows: returns the JSONL rows behind a ``hf://datasets/...`` files_url.
        on_progress: called with the percentage done (0..100) after each row.

    Returns:
        ``{"tasks": {...}}`` as described in the module doc.

    Raises:
        ValueError: on a bad config, template or dataset, naming what is wrong.
    """
    tasks = _validate_config(config)
    datasets: dict[str, list[dict]] = {}
    judges: dict[str, dict[str, ChatModel]] = {}
    for task_name, task in tasks.items():
        files_url = task["dataset"]["files_url"]
        rows = load_rows(files_url)
        if not isinstance(rows, list):
            raise ValueError(f"config.tasks.{task_name}: the dataset {files_url} did not load as a list of rows.")
        bad = [i for i, row in enumerate(rows) if not isinstance(row, dict)]
        if bad:
            raise ValueError(f"config.tasks.{task_name}: dataset {files_url} rows {bad[:5]} are not JSON objects.")
        limit = task["dataset"].get("limit")
        rows = rows[:limit] if limit else rows
        if not rows:
            raise ValueError(f"config.tasks.{task_name}: dataset {files_url} has no rows to evaluate.")
        datasets[task_name] = rows
        judges[task_name] = {
            name: resolve_model(metric["params"]["model"])
            for name, metric in task["metrics"].items()
            if metric["type"] == "llm-judge"
        }
    total_rows = sum(len(rows) for rows in datasets.values())
    done = 0
    on_progress(0.0)
    results: dict[str, Any] = {"tasks": {}}
    for task_name, task in tasks.items():
        rows = datasets[task_name]
        stats = {m: {} for m in task["metrics"]}  # metric -> score -> _Score
        row_reports: list[dict[str, Any]] = []
        latency_total = 0.0
        tokens = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        for index, row in enumerate(rows):
            where = f"config.tasks.{task_name} row {index}"
            request = _build_request(task, row, target, f"config.tasks.{task_name} row {index}")
            started = time.perf_counter()
            response = target.complete(request)
            latency = time.perf_counter() - started
            latency_total += latency
            usage = response.get("usage") or {}
            row_usage: dict[str, Any] = {"latency_ms": round(1000.0 * latency, 3)}
            for key in tokens:
                row_usage[key] = int(usage.get(key) or 0)
                tokens[key] += row_usage[key]
            message = ((response.get("choices") or [{}])[0].get("message")) or {}
            sample = {"output_text": message.get("content") or "", "response": response}
            context = {"item": row, "sample": sample}
            row_scores: dict[str, dict[str, Any]] = {}
            notes: list[str] = []
            for metric_name, metric in task["metrics"].items():
                mwhere = f"{where}, metric {metric_name}"
                if metric["type"] == "tool-calling":
                    scores, note = _score_tool_calling(metric, context, mwhere)
                elif metric["type"] == "llm-judge":
                    scores, note = _score_llm_judge(metric, context, mwhere, judges[task_name][metric_name])
                else:
                    scores, note = _score_string_check(metric, context, mwhere)
                for score_name, value in scores.items():
                    stats[metric_name].setdefault(score_name, _Score()).add(value)
                row_scores[metric_name] = scores
                if note:
                    notes.append(f"{metric_name}: {note}")
            report: dict[str, Any] = {
                "index": index,
                "output": _output_of(response),
                "scores": row_scores,
                "usage": row_usage,
            }
            if notes:
                report["notes"] = notes
            row_reports.append(report)
            done += 1
            on_progress(round(100.0 * done / total_rows, 2))
        count = len(rows)
        task_result = {
            "metrics": {
                metric_name: {"scores": {name: score.result() for name, score in scores.items()}}
                for metric_name, scores in stats.items()
            },
            "rows": row_reports,
            "usage": {
                "requests": count,
                "mean_prompt_tokens": tokens["prompt_tokens"] / count,
                "mean_completion_tokens": tokens["completion_tokens"] / count,
                "mean_total_tokens": tokens["total_tokens"] / count,
                "mean_latency_ms": round(1000.0 * latency_total / count, 3),
            },
        }
        unparsed = {
            f"{m}.{s}": score.nan_count for m, scores in stats.items() for s, score in scores.items() if score.nan_count
        }
        if unparsed:
            task_result["unparsed"] = unparsed
            log.warning("Task %s: %s rows had unparsed scores: %s", task_name, sum(unparsed.values()), unparsed)
        results["tasks"][task_name] = task_result
    return results
