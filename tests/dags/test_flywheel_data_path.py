"""End to end with `dag.test()`: the data path from the bundled sample logs to staged datasets."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.airflow

TOOLS_DAG = "flywheel__customer-support-tools"
FAQ_DAG = "flywheel__faq-chat"
DATA_TASKS = ("extract_logs", "prepare_datasets")


def run_data_path(env, dag, conf: dict) -> dict:
    """Run only the data tasks of the DAG and return the preparation report it staged."""
    partial = dag.partial_subset(task_ids=list(DATA_TASKS), include_upstream=True, include_downstream=False)
    dag_run = partial.test(run_conf=conf)
    assert dag_run.state == "success", [(ti.task_id, ti.state) for ti in dag_run.get_task_instances()]
    from include.flywheel.runs import run_key

    report = env.staging / dag.dag_id / run_key(dag_run.run_id) / "datasets" / "preparation_report.json"
    return json.loads(report.read_text())


def read_jsonl(uri_dir: str, relative: str) -> list[dict]:
    path = Path(urlparse(uri_dir).path) / relative
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tool_calling_workload_one_day_window(flywheel_config):
    result = run_data_path(
        flywheel_config,
        flywheel_config.dags()[TOOLS_DAG], {"log_window_start": "2026-11-18", "log_window_end": "2026-11-19"}
    )
    assert result["workload_type"] == "tool_calling"
    assert result["window"]["start"].startswith("2026-11-18T00:00:00")
    extraction, report = result["extraction"], result["report"]
    # Other workloads, other clients and other days of the sample are counted, not mixed in.
    assert extraction["matched"] > 0
    assert extraction["other_workload"] > 0 and extraction["out_of_window"] > 0
    datasets = result["datasets"]
    assert datasets["eval"]["total_records"] == 20
    assert datasets["icl"]["total_records"] == 20
    eval_rows = read_jsonl(datasets["eval"]["uri"], "eval_data.jsonl")
    for row in eval_rows:
        stamp = row["timestamp"]
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")) if isinstance(stamp, str) else datetime.utcfromtimestamp(stamp)
        assert moment.strftime("%Y-%m-%d") == "2026-11-18"
    train = datasets["train"]
    assert train["total_records"] > 0
    assert report["eval_size"] == 20
    assert report["read"] == extraction["matched"]
    # Every record read is accounted for once.
    assert report["read"] == sum(report["dropped"].values()) + report["duplicates"] + report["unique"]
    assert report["eval_size"] + report["train_size"] + report["val_size"] <= report["unique"]
    assert report["icl_examples"]["min"] >= 1
    icl_rows = read_jsonl(datasets["icl"]["uri"], "eval_data.jsonl")
    assert all("### Example 1" in row["request"]["messages"][0]["content"] for row in icl_rows)


def test_generic_workload_runs_and_override_changes_eval_size(flywheel_config):
    result = run_data_path(
        flywheel_config,
        flywheel_config.dags()[FAQ_DAG],
        {"log_window_start": "2026-11-17", "log_window_end": "2026-11-24", "eval_size": 15},
    )
    assert result["workload_type"] == "generic"
    assert result["datasets"]["eval"]["total_records"] == 15


def test_too_few_records_fails_with_a_clear_error(flywheel_config):
    dag = flywheel_config.dags()[TOOLS_DAG]
    partial = dag.partial_subset(task_ids=list(DATA_TASKS), include_upstream=True, include_downstream=False)
    # One hour of logs cannot reach min_total_records.
    dag_run = partial.test(
        run_conf={"log_window_start": "2026-11-18T10:00:00Z", "log_window_end": "2026-11-18T11:00:00Z"}
    )
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["extract_logs"] == "success"
    assert states["prepare_datasets"] == "failed"
