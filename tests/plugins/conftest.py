"""Fixtures of the results-page tests: a results store filled like a demo run, and Airflow auth.

The store is filled only through the ResultStore's public methods, as the DAG's tasks fill it:
workload ``customer-support-tools`` has two completed runs (two candidates, three eval types
each; the second run flags a regression), workload ``faq-chat`` one run that failed while
preparing its data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_CONFIG = PROJECT_ROOT / "include" / "config" / "flywheel.yaml"

TOOLS = "customer-support-tools"
FAQ = "faq-chat"
TOOLS_DAG = f"flywheel__{TOOLS}"
FAQ_DAG = f"flywheel__{FAQ}"
SMALL = "meta/llama-3.2-1b-instruct"
MEDIUM = "meta/llama-3.2-3b-instruct"
FIRST_RUN = "scheduled__2026-11-18T02:00:00+00:00"
SECOND_RUN = "scheduled__2026-11-19T02:00:00+00:00"
FAILED_RUN = "manual__2026-11-19T09:30:00+00:00"
PRIMARY = "function_name_and_args_accuracy"
# A prompt that must be shown as text, never run.
HOSTILE_PROMPT = "Where is my order? <script>alert('x')</script>"


@dataclass
class DemoResults:
    """What the filled store holds (ids the tests look up)."""

    config_path: Path
    results_path: Path
    first_run: str
    second_run: str
    failed_run: str


def _interval(mean: float, half: float, n: int = 20) -> dict[str, Any]:
    return {"mean": mean, "low": max(0.0, mean - half), "high": min(1.0, mean + half), "n": n}


# Per run, model and eval type: (function_name, function_name_and_args_accuracy, tool_calling_correctness).
SCORES = {
    FIRST_RUN: {
        SMALL: {"base-eval": (0.55, 0.40, 0.50), "icl-eval": (0.70, 0.55, 0.65), "customized-eval": (0.95, 0.90, 0.90)},
        MEDIUM: {"base-eval": (0.65, 0.50, 0.60), "icl-eval": (0.85, 0.75, 0.80), "customized-eval": (0.90, 0.85, 0.85)},
    },
    SECOND_RUN: {
        SMALL: {"base-eval": (0.60, 0.45, 0.55), "icl-eval": (0.75, 0.60, 0.70), "customized-eval": (0.95, 0.95, 0.90)},
        MEDIUM: {"base-eval": (0.65, 0.50, 0.60), "icl-eval": (0.55, 0.30, 0.45), "customized-eval": (0.90, 0.80, 0.85)},
    },
}
KEYS = ("function_name", PRIMARY, "tool_calling_correctness")


def _verdict(model: str, eval_type: str, decision: str, reason: str) -> dict[str, Any]:
    return {
        "label": f"{model} {eval_type}",
        "decision": decision,
        "better_than_base": decision == "surface",
        "primary_score": PRIMARY,
        "reasons": [reason],
    }


def _record_run(store, run_id: str, started: datetime, *, previous: str | None) -> str:
    run = store.upsert_run(
        TOOLS_DAG,
        run_id,
        workload_id=TOOLS,
        client_id="acme-retail",
        status="running",
        stage="extract_logs",
        started_at=started,
        log_window={"start": started - timedelta(days=1, hours=2), "end": started - timedelta(hours=2), "source": "files"},
        workload_type="tool_calling",
        num_records=240,
        record_counts={"preparation": {"read": 240, "eval_size": 20, "train_size": 180, "val_size": 20,
                                       "dropped": {"invalid_format": 3}, "duplicates": 17}},
    )["flywheel_run_id"]
    store.upsert_judge_run(run, model_name="meta/llama-3.3-70b-instruct", type="remote", status="ready")
    leaderboard = []
    for model, evaluations in SCORES[run_id].items():
        store.upsert_nim(run, model, status="running-evals", deployment_status="ready", started_at=started)
        entry: dict[str, Any] = {"model": model, "scores": {}, "intervals": {}, "failed_steps": [], "verdicts": {},
                                 "status": "completed"}
        for index, (eval_type, values) in enumerate(evaluations.items()):
            scores = dict(zip(KEYS, values, strict=True))
            cases = [
                {
                    "index": 3,
                    "prompt": HOSTILE_PROMPT if eval_type == "base-eval" else "Cancel order 1182, please.",
                    "reference": [{"type": "function", "function": {"name": "cancel_order",
                                                                    "arguments": '{"order_id": "1182"}'}}],
                    "output": [{"type": "function", "function": {"name": "get_order_status",
                                                                 "arguments": '{"order_id": "1182"}'}}],
                    "scores": {"function_name": 0.0, PRIMARY: 0.0},
                }
            ]
            store.upsert_evaluation(
                run, model, eval_type,
                status="completed",
                job_id=f"eval-{run_id[-14:-6]}-{model.split('/')[-1]}-{eval_type}",
                started_at=started + timedelta(minutes=10 + index),
                finished_at=started + timedelta(minutes=20 + index),
                scores=scores,
                ci={key: _interval(value, 0.12) for key, value in scores.items()},
                counts={key: {"scored": 20, "unscored": 0} for key in scores},
                latency={"mean_ms": 380.0 + 40 * index, "p95_ms": 910.0 + 60 * index, "n": 20},
                tokens={"mean_prompt": 612.0 + 900 * (eval_type == "icl-eval"), "mean_completion": 38.0,
                        "mean_total": 650.0 + 900 * (eval_type == "icl-eval")},
                divergent_cases=cases,
            )
            entry["scores"][eval_type] = scores
            entry["intervals"][eval_type] = {key: _interval(value, 0.12) for key, value in scores.items()}
        store.upsert_customization(run, model, status="completed", job_id=f"cust-{model.split('/')[-1]}",
                                   customized_model=f"flywheel/{model.split('/')[-1]}-ft", progress=100.0, epochs=2)
        entry["verdicts"]["icl-eval"] = _verdict(model, "icl-eval", "hold",
                                                 "its 95% interval overlaps the base model's: not called better")
        surfaced = model == SMALL
        entry["verdicts"]["customized-eval"] = _verdict(
            model, "customized-eval", "surface" if surfaced else "hold",
            "interval above the base model's" if surfaced else "interval overlaps the base model's",
        )
        if previous and model == MEDIUM:
            entry["regressions"] = {"icl-eval": [{
                "key": PRIMARY, "previous_run": previous, "current": 0.30, "previous": 0.75, "delta": -0.45,
                "regression": True, "improvement": False, "basis": "intervals",
                "reason": "dropped from 0.75 [0.63, 0.87] to 0.30 [0.18, 0.42]: the intervals do not overlap",
            }]}
        store.upsert_nim(run, model, status="completed", finished_at=started + timedelta(minutes=40))
        leaderboard.append(entry)
    store.update_run(
        run,
        status="completed",
        stage="finalize",
        finished_at=started + timedelta(minutes=45),
        summary={"primary_score": PRIMARY, "leaderboard": leaderboard,
                 "surfaced": [f"{SMALL} (customized-eval)"], "failed": []},
    )
    return run


def fill_demo_results(store) -> tuple[str, str, str]:
    """Fill ``store`` like two demo runs of the tool-calling workload and a failed generic run."""
    first = _record_run(store, FIRST_RUN, datetime(2026, 11, 18, 2, 0, tzinfo=timezone.utc), previous=None)
    second = _record_run(store, SECOND_RUN, datetime(2026, 11, 19, 2, 0, tzinfo=timezone.utc), previous=FIRST_RUN)
    failed = store.upsert_run(FAQ_DAG, FAILED_RUN, workload_id=FAQ, client_id="acme-retail", status="running",
                              stage="prepare_datasets",
                              started_at=datetime(2026, 11, 19, 9, 30, tzinfo=timezone.utc))["flywheel_run_id"]
    store.update_run(failed, status="failed", error="only 12 usable records, min_total_records is 50")
    return first, second, failed


def write_settings(directory: Path, results_path: Path) -> Path:
    """The bundled settings with ``results.sqlite_path`` pointing at ``results_path``."""
    raw = yaml.safe_load(BUNDLED_CONFIG.read_text())
    raw["results"]["sqlite_path"] = str(results_path)
    path = directory / "flywheel.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def make_demo_results(directory: Path) -> DemoResults:
    from include.flywheel.results import SqliteResultStore

    results_path = directory / "results.sqlite3"
    with SqliteResultStore(results_path) as store:
        first, second, failed = fill_demo_results(store)
    return DemoResults(write_settings(directory, results_path), results_path, first, second, failed)


@pytest.fixture
def demo_results(tmp_path, monkeypatch) -> DemoResults:
    """A filled results store that the flywheel settings (``$FLYWHEEL_CONFIG``) point at."""
    demo = make_demo_results(tmp_path)
    monkeypatch.setenv("FLYWHEEL_CONFIG", str(demo.config_path))
    return demo


@pytest.fixture(scope="session")
def auth_manager():
    """Airflow's configured auth manager (SimpleAuthManager), initialized as the api-server does.

    Validating a token looks up revoked tokens in the metadata DB, so the DB is created
    (``initdb`` keeps an existing one).
    """
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.utils import db

    db.initdb()
    manager = create_auth_manager()
    manager.init()
    return manager


@pytest.fixture(scope="session")
def tokens(auth_manager) -> dict[str, str]:
    """Valid Airflow JWTs: ``admin``, ``viewer`` and ``nobody`` (a user without a role)."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return {
        name: auth_manager.generate_jwt(SimpleAuthManagerUser(username=name, role=role))
        for name, role in (("admin", "admin"), ("viewer", "viewer"), ("nobody", None))
    }

