"""End to end with `dag.test()`: a second run whose customized model got worse is flagged against the first.

Two runs of the tool-calling DAG over the same sample window, with one customizing candidate.
The second run keeps only 5% of the training records for training (``val_ratio`` 0.95: the rest
go to validation), so the emulator's customized model, a nearest-neighbour model over its
training rows, has far fewer rows to recall from and its scores drop for a computed reason.
The eval set is the same in both runs (same records, same seed), so the drop is the model's.
"""

from __future__ import annotations

from typing import Any

import pytest

from include.flywheel.scoring import PRIMARY_SCORE
from include.nemo.payloads import slugify
from include.orchestration.candidates import candidate_group_id

pytestmark = pytest.mark.airflow

TOOLS_DAG = "flywheel__customer-support-tools"
MODEL = "meta/llama-3.2-1b-instruct"
PRIMARY = PRIMARY_SCORE["tool_calling"]
# Most records go to validation: the customized model trains on a few dozen rows instead of ~1000.
STARVED_TRAINING = {"val_ratio": 0.95}


def report_xcom(run) -> Any:
    """The ``report`` task's return value, as the Airflow UI's XCom tab shows it."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(
            XComModel.get_many(run_id=run.dag_run.run_id, dag_ids=TOOLS_DAG, task_ids="report", key="return_value")
        ).all()
        assert len(rows) == 1, rows
        return XComModel.deserialize_value(rows[0])


def test_second_run_with_a_worse_customized_model_is_flagged_as_a_regression(flywheel_env):
    dag = flywheel_env.dags()[TOOLS_DAG]
    first = flywheel_env.run(dag, {"candidates": [MODEL]})
    second = flywheel_env.run(dag, {"candidates": [MODEL], **STARVED_TRAINING})
    print(f"\n===== report of the first run =====\n{first.report}")
    print(f"===== report of the second run =====\n{second.report}")

    assert first.state == second.state == "success", (first.states, second.states)
    first_counts = first.document["record_counts"]["preparation"]
    second_counts = second.document["record_counts"]["preparation"]
    # The cause is real and visible in the counts: far fewer training rows, same eval set.
    assert second_counts["train_size"] * 10 < first_counts["train_size"], (first_counts, second_counts)
    assert second_counts["eval_size"] == first_counts["eval_size"]
    assert first.evaluations(MODEL)["base-eval"]["scores"] == second.evaluations(MODEL)["base-eval"]["scores"]

    before = first.evaluations(MODEL)["customized-eval"]
    after = second.evaluations(MODEL)["customized-eval"]
    # The drop is beyond both intervals: each run's mean lies outside the other's interval.
    assert after["scores"][PRIMARY] < before["ci"][PRIMARY]["low"], (before["ci"], after["ci"])
    assert before["scores"][PRIMARY] > after["ci"][PRIMARY]["high"], (before["ci"], after["ci"])

    # The first run had nothing to compare with: no flag anywhere.
    for evaluation in first.evaluations(MODEL).values():
        assert evaluation["extra"]["regressions"] == [] and evaluation["extra"]["compared_with"] == []
    assert first.document["summary"]["regressed"] == []
    assert "REGRESSION" not in first.report
    assert "nothing to compare with" in first.report

    # The second run: flagged in the evaluation document, the run summary, the verdict and the report.
    flagged = {r["key"]: r for r in after["extra"]["regressions"]}
    assert PRIMARY in flagged, after["extra"]
    regression = flagged[PRIMARY]
    assert regression["previous_run"] == first.dag_run.run_id
    assert regression["regression"] is True and regression["delta"] < 0
    assert regression["previous_interval"] == before["ci"][PRIMARY]
    assert regression["current_interval"] == after["ci"][PRIMARY]
    assert after["extra"]["compared_with"] == [first.dag_run.run_id]
    # Base and ICL did not change: compared, not flagged.
    for eval_type in ("base-eval", "icl-eval"):
        evaluation = second.evaluations(MODEL)[eval_type]
        assert evaluation["extra"] == {"regressions": [], "compared_with": [first.dag_run.run_id]}, eval_type
    summary = second.document["summary"]
    assert summary["regressed"] and summary["regressed"][0].startswith(f"{MODEL} (customized-eval: ")
    entry = next(e for e in summary["leaderboard"] if e["model"] == MODEL)
    assert entry["verdicts"]["customized-eval"]["decision"] == "hold"
    assert any(reason.startswith("regression: ") for reason in entry["verdicts"]["customized-eval"]["reasons"])
    # The first run surfaced its customized model; the regressed one is held.
    assert first.document["summary"]["surfaced"] == [f"{MODEL} (customized-eval)"]
    assert summary["surfaced"] == []

    assert "## Compared with earlier runs" in second.report
    line = next(line for line in second.report.splitlines() if f"`{PRIMARY}`" in line and "REGRESSION" in line)
    assert MODEL in line and "customized-eval" in line and first.dag_run.run_id in line
    low, high = before["ci"][PRIMARY]["low"], before["ci"][PRIMARY]["high"]
    assert f"[{low:.4g}, {high:.4g}]" in line, line

    # The report is attached to the run: the report task's XCom carries the markdown too.
    attached = report_xcom(second)
    assert attached["markdown"] == second.report
    assert attached["uri"].endswith("report.md")


def test_each_step_records_its_result_when_it_finishes(flywheel_env):
    """Without aggregate_results (a run stopped after the evaluations), the store already shows each step."""
    from include.flywheel.results import flywheel_run_id

    group = candidate_group_id(slugify(MODEL))
    dag = flywheel_env.dags()[TOOLS_DAG]
    partial = dag.partial_subset(
        task_ids=[f"{group}.base_eval", f"{group}.customize"], include_upstream=True, include_downstream=False
    )
    assert "aggregate_results" not in partial.task_dict and f"{group}.shutdown_nim" not in partial.task_dict
    dag_run = partial.test(run_conf={"log_window_start": "2026-11-17", "log_window_end": "2026-11-24",
                                     "candidates": [MODEL]})
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert set(states.values()) == {"success"}, states

    with flywheel_env.result_store() as store:
        run = store.get_run(flywheel_run_id(TOOLS_DAG, dag_run.run_id))
    nim = next(n for n in run["nims"] if n["model_name"] == MODEL)
    assert nim["status"] == "running-evals" and nim["deployment_name"], nim
    evaluations = {e["eval_type"]: e for e in run["evaluations"] if e["model_name"] == MODEL}
    assert sorted(evaluations) == ["base-eval"]
    base = evaluations["base-eval"]
    assert base["status"] == "completed" and base["job_id"].startswith("eval-"), base
    assert base["progress"] == 100.0
    # Scores in the flywheel's keys, from the operator's summary (intervals come with aggregate).
    assert set(base["scores"]) == {"function_name", "function_name_and_args_accuracy", "tool_calling_correctness"}
    assert base["ci"] == {}
    assert base["latency"]["mean_ms"] is not None and base["tokens"]["mean_total"] > 0
    customization = next(c for c in run["customizations"] if c["model_name"] == MODEL)
    assert customization["status"] == "completed" and customization["job_id"], customization
    assert customization["customized_model"].startswith("flywheel/fw-customized-"), customization
    assert customization["epochs"] == 2
