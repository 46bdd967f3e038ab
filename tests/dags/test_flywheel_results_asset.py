"""The results Asset: every flywheel DAG's ``finalize`` task updates ``flywheel://<workload_id>/results``.

Parsing checks the outlet; one short run against the emulator checks the event that other DAGs
receive (its ``extra`` names the run, its status and the surfaced candidates).
"""

from __future__ import annotations

import pytest

from include.orchestration.factory import results_asset

pytestmark = pytest.mark.airflow

TOOLS_WORKLOAD = "customer-support-tools"
SAMPLE_WINDOW = {"log_window_start": "2026-11-17", "log_window_end": "2026-11-24"}


def test_results_asset_names_the_workload():
    asset = results_asset(TOOLS_WORKLOAD)
    assert asset.uri == f"flywheel://{TOOLS_WORKLOAD}/results"
    assert asset.name == f"flywheel_results__{TOOLS_WORKLOAD}"
    assert asset.group == "flywheel"


def test_only_finalize_updates_the_workloads_results_asset(flywheel_dags):
    assert flywheel_dags, "no flywheel DAG was parsed"
    for dag_id, dag in flywheel_dags.items():
        workload_id = dag_id.removeprefix("flywheel__")
        producers = {task.task_id: [outlet.uri for outlet in task.outlets] for task in dag.tasks if task.outlets}
        assert producers == {"finalize": [f"flywheel://{workload_id}/results"]}, dag_id


def _results_events(uri: str) -> list[dict]:
    from sqlalchemy import select

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = session.scalars(
            select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id).where(AssetModel.uri == uri)
        ).all()
        return [dict(event.extra or {}) for event in events]


def test_a_completed_run_emits_the_results_event(flywheel_env):
    candidate = "meta/llama-3.1-8b-instruct"  # the one without customization: the shortest run
    dag = flywheel_env.dags()[f"flywheel__{TOOLS_WORKLOAD}"]
    uri = results_asset(TOOLS_WORKLOAD).uri
    before = len(_results_events(uri))

    dag_run = dag.test(run_conf={**SAMPLE_WINDOW, "candidates": [candidate]})

    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    events = _results_events(uri)
    assert len(events) == before + 1
    extra = events[-1]
    assert extra["flywheel_run_id"] == f"{dag.dag_id}/{dag_run.run_id}"
    assert (extra["dag_id"], extra["run_id"], extra["workload_id"]) == (dag.dag_id, dag_run.run_id, TOOLS_WORKLOAD)
    assert extra["status"] == "completed"
    with flywheel_env.result_store() as store:
        stored = store.get_run(extra["flywheel_run_id"])
    assert stored["status"] == "completed"
    # The event carries what aggregate_results decided, not a second opinion.
    assert extra["surfaced"] == stored["summary"].get("surfaced", [])
