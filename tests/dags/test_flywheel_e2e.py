"""End to end with `dag.test()` against the NeMo emulator: the whole flywheel, and how it fails.

Each test runs a flywheel DAG over the bundled sample window against a fresh emulator (fixture
``flywheel_env``) and checks what the run left behind: task states, the results store, the
emulator's jobs and deployments, and the report. The emulator is not NeMo: its scores only
behave plausibly (a customized model learned from its training rows), see docs/emulator.md.
"""

from __future__ import annotations

from typing import Any

import pytest

from include.flywheel.config import CandidateSettings, load_config
from include.flywheel.scoring import PRIMARY_SCORE
from include.nemo.payloads import deployment_name, slugify
from include.orchestration.candidates import candidate_group_id

pytestmark = pytest.mark.airflow

TOOLS_WORKLOAD = "customer-support-tools"
FAQ_WORKLOAD = "faq-chat"
TOOL_SCORES = ("function_name", "function_name_and_args_accuracy", "tool_calling_correctness")
MODEL_1B = "meta/llama-3.2-1b-instruct"
MODEL_3B = "meta/llama-3.2-3b-instruct"
MODEL_8B = "meta/llama-3.1-8b-instruct"
EVAL_TYPES = ("base-eval", "icl-eval", "customized-eval")


def candidates_of(workload_id: str, names: list[str] | None = None) -> list[CandidateSettings]:
    """The workload's configured candidates (the test settings file), optionally only ``names``."""
    candidates = load_config().workload(workload_id).candidates
    return [c for c in candidates if names is None or c.model_name in names]


def customizes(candidate: CandidateSettings) -> bool:
    return candidate.customization_enabled and candidate.customizer is not None


def group_of(model_name: str) -> str:
    return candidate_group_id(slugify(model_name))


def emulator_list(env, path: str) -> list[dict[str, Any]]:
    """Every object of an emulator collection (``GET path?page_size=1000``)."""
    response = env.emulator.client.get(path, params={"page_size": 1000})
    response.raise_for_status()
    return response.json()["data"]


def customization_jobs_of(env, model_name: str) -> list[dict[str, Any]]:
    """Customization jobs whose name carries the candidate's slug (``fw-customization-<slug>-<hash>``)."""
    prefix = f"fw-customization-{slugify(model_name)}-"
    return [job for job in emulator_list(env, "/v1/customization/jobs") if job["name"].startswith(prefix)]


def assert_scored(evaluation: dict[str, Any], keys: tuple[str, ...], eval_size: int) -> None:
    """A completed evaluation with every score and a confidence interval around it over the eval set."""
    label = f"{evaluation['model_name']} {evaluation['eval_type']}"
    assert evaluation["status"] == "completed", label
    assert evaluation["job_id"], label
    assert set(keys) <= set(evaluation["scores"]), (label, evaluation["scores"])
    for key in keys:
        interval = evaluation["ci"][key]
        assert interval["low"] <= evaluation["scores"][key] <= interval["high"], (label, key, interval)
        assert interval["n"] == eval_size, (label, key, interval)


def assert_no_deployment_left(env, run) -> None:
    """Every deployment was deleted: the emulator counts none and lists none."""
    assert run.emulator_state["deployments"]["total"] == 0, run.emulator_state["deployments"]
    assert emulator_list(env, "/v1/deployment/model-deployments") == []


def primary(run, model_name: str, eval_type: str, key: str) -> float:
    return run.evaluations(model_name)[eval_type]["scores"][key]


# -- 1. the tool-calling workload, every candidate --------------------------------------------------------


def test_tool_calling_workload_full_run(flywheel_env):
    dag = flywheel_env.dags()[f"flywheel__{TOOLS_WORKLOAD}"]
    run = flywheel_env.run(dag)

    assert run.state == "success", run.states
    assert set(run.states.values()) == {"success"}, run.states
    candidates = candidates_of(TOOLS_WORKLOAD)
    customizing = [c for c in candidates if customizes(c)]
    assert len(candidates) == 3 and len(customizing) == 2  # the bundled settings this test is written for
    key = PRIMARY_SCORE["tool_calling"]
    document = run.document
    assert document["status"] == "completed" and document["error"] is None
    assert document["workload_type"] == "tool_calling"
    eval_size = document["record_counts"]["preparation"]["eval_size"]

    for candidate in candidates:
        model = candidate.model_name
        evaluations = run.evaluations(model)
        expected = EVAL_TYPES if customizes(candidate) else EVAL_TYPES[:2]
        assert sorted(evaluations) == sorted(expected), (model, sorted(evaluations))
        for evaluation in evaluations.values():
            assert_scored(evaluation, TOOL_SCORES, eval_size)
        assert run.nim(model)["status"] == "completed", run.nim(model)
        if customizes(candidate):
            assert primary(run, model, "customized-eval", key) > primary(run, model, "base-eval", key), evaluations
            stored = run.customization(model)
            jobs = customization_jobs_of(flywheel_env, model)
            # Exactly one training job per customizing candidate, and it is the one recorded.
            assert [job["id"] for job in jobs] == [stored["job_id"]], (jobs, stored)
            assert stored["status"] == "completed" and stored["customized_model"] == jobs[0]["output_model"]
        else:
            assert run.customization(model) is None
            assert customization_jobs_of(flywheel_env, model) == []

    emulator = run.emulator_state
    assert_no_deployment_left(flywheel_env, run)
    assert emulator["requests"]["DELETE /v1/deployment/model-deployments/{namespace}/{name}"] >= len(candidates)
    assert emulator["customization_jobs"] == {"total": len(customizing), "by_status": {"completed": len(customizing)}}
    expected_evals = 2 * len(candidates) + len(customizing)
    assert emulator["evaluation_jobs"] == {"total": expected_evals, "by_status": {"completed": expected_evals}}
    assert emulator["faults_injected"] == {}

    assert run.report is not None
    assert f"Leaderboard ({key}" in run.report
    for candidate in candidates:
        assert candidate.model_name in run.report
    assert "Failed candidates" not in run.report


# -- 2. the generic workload ------------------------------------------------------------------------------


def test_generic_workload_full_run(flywheel_env):
    dag = flywheel_env.dags()[f"flywheel__{FAQ_WORKLOAD}"]
    # One customizing candidate is enough to compare customized with base on a generic workload.
    run = flywheel_env.run(dag, {"candidates": [MODEL_1B]})

    assert run.state == "success", run.states
    document = run.document
    assert document["status"] == "completed"
    assert document["workload_type"] == "generic"
    key = PRIMARY_SCORE["generic"]
    assert key == "similarity"
    evaluations = run.evaluations(MODEL_1B)
    assert sorted(evaluations) == sorted(EVAL_TYPES)
    eval_size = document["record_counts"]["preparation"]["eval_size"]
    for evaluation in evaluations.values():
        assert_scored(evaluation, (key,), eval_size)
        assert 1.0 <= evaluation["scores"][key] <= 10.0
    assert primary(run, MODEL_1B, "customized-eval", key) > primary(run, MODEL_1B, "base-eval", key), evaluations
    # Deselected candidates are skipped and not recorded.
    assert {n["model_name"] for n in document["nims"]} == {MODEL_1B}
    assert run.group_states(group_of(MODEL_8B))["plan"] == "skipped"
    assert run.emulator_state["evaluation_jobs"]["total"] == 3
    assert_no_deployment_left(flywheel_env, run)
    assert MODEL_1B in run.report and "similarity" in run.report


# -- 3. a customization that fails ------------------------------------------------------------------------


def test_failed_customization_is_recorded_and_spares_the_other_candidates(flywheel_env):
    dag = flywheel_env.dags()[f"flywheel__{TOOLS_WORKLOAD}"]
    # The 1B candidate's jobs are named fw-customization-meta-llama-3-2-1b-instruct-<hash>.
    flywheel_env.emulator.set_faults(fail_customizations=[slugify(MODEL_1B)])
    run = flywheel_env.run(dag, {"candidates": [MODEL_1B, MODEL_3B]})

    failing = run.group_states(group_of(MODEL_1B))
    assert failing["customize"] == "failed", failing
    assert failing["wait_model_synced"] == failing["customized_eval"] == "upstream_failed", failing
    assert failing["deploy_nim"] == failing["base_eval"] == failing["icl_eval"] == "success", failing
    # The deployment is freed whatever happened upstream.
    assert failing["shutdown_nim"] == "success", failing
    other = run.group_states(group_of(MODEL_3B))
    assert set(other.values()) == {"success"}, other
    assert run.states["aggregate_results"] == run.states["report"] == "success", run.states
    assert run.states["finalize"] == "failed"
    assert run.state == "failed"

    document = run.document
    assert document["status"] == "completed_with_errors"
    assert f"{group_of(MODEL_1B)}.customize" in document["error"]
    nim = run.nim(MODEL_1B)
    assert nim["status"] == "failed", nim
    assert nim["error"].startswith("customize: ") and "Customization job" in nim["error"], nim
    customization = run.customization(MODEL_1B)
    assert customization["status"] == "failed", customization
    assert customization["error"].startswith("customize: "), customization
    key = PRIMARY_SCORE["tool_calling"]
    eval_size = document["record_counts"]["preparation"]["eval_size"]
    failed_evals = run.evaluations(MODEL_1B)
    for eval_type in ("base-eval", "icl-eval"):
        assert_scored(failed_evals[eval_type], TOOL_SCORES, eval_size)
    assert "customized-eval" not in failed_evals or failed_evals["customized-eval"]["status"] != "completed"

    assert run.nim(MODEL_3B)["status"] == "completed"
    for evaluation in run.evaluations(MODEL_3B).values():
        assert_scored(evaluation, TOOL_SCORES, eval_size)
    assert sorted(run.evaluations(MODEL_3B)) == sorted(EVAL_TYPES)
    assert primary(run, MODEL_3B, "customized-eval", key) > primary(run, MODEL_3B, "base-eval", key)
    assert run.customization(MODEL_3B)["status"] == "completed"

    jobs_1b = customization_jobs_of(flywheel_env, MODEL_1B)
    assert jobs_1b and {job["status"] for job in jobs_1b} == {"failed"}, jobs_1b
    assert [job["status"] for job in customization_jobs_of(flywheel_env, MODEL_3B)] == ["completed"]
    assert_no_deployment_left(flywheel_env, run)
    assert f"Failed candidates: {MODEL_1B}" in run.report


# -- 4. a deployment that never becomes ready -------------------------------------------------------------


def test_stuck_deployment_hits_its_deadline_and_is_cleaned_up(flywheel_env):
    dag = flywheel_env.dags(waits={"deployment_timeout": 3})[f"flywheel__{TOOLS_WORKLOAD}"]
    stuck_name = deployment_name(MODEL_8B)
    flywheel_env.emulator.set_faults(stuck_deployments=[stuck_name])
    run = flywheel_env.run(dag, {"candidates": [MODEL_1B, MODEL_8B]})

    stuck = run.group_states(group_of(MODEL_8B))
    assert stuck["deploy_nim"] == "failed", stuck
    assert stuck["base_eval"] == stuck["icl_eval"] == "upstream_failed", stuck
    assert stuck["shutdown_nim"] == "success", stuck
    other = run.group_states(group_of(MODEL_1B))
    assert set(other.values()) == {"success"}, other
    assert run.state == "failed" and run.states["finalize"] == "failed"

    nim = run.nim(MODEL_8B)
    assert nim["status"] == "failed", nim
    # The operator's message names the step, the deployment, and that the deadline passed.
    assert nim["error"].startswith("deploy_nim: "), nim
    assert f"Deployment flywheel/{stuck_name} did not become usable" in nim["error"], nim
    assert "deadline" in nim["error"], nim
    assert run.evaluations(MODEL_8B) == {}
    assert run.document["status"] == "completed_with_errors"

    key = PRIMARY_SCORE["tool_calling"]
    assert sorted(run.evaluations(MODEL_1B)) == sorted(EVAL_TYPES)
    assert primary(run, MODEL_1B, "customized-eval", key) > primary(run, MODEL_1B, "base-eval", key)
    # The stuck deployment is gone (deleted on timeout, and shutdown_nim ran): no GPU stays held.
    assert_no_deployment_left(flywheel_env, run)
    assert run.emulator_state["evaluation_jobs"]["total"] == 3


# -- 5. a burst of 5xx answers ----------------------------------------------------------------------------

# Every service the run talks to refuses a few requests; two POSTs lose their answer after the job
# was created (``when: after``), so a blind retry would start a second job.
BURSTS = [
    {"count": 1, "status": 503, "path_prefix": "/v1/hf"},
    {"count": 2, "status": 502, "path_prefix": "/v1/deployment"},
    {"count": 1, "status": 503, "path_prefix": "/v1/customization/jobs", "method": "POST", "when": "after"},
    {"count": 1, "status": 500, "path_prefix": "/v1/customization"},
    {"count": 1, "status": 503, "path_prefix": "/v1/evaluation/jobs", "method": "POST", "when": "after"},
    {"count": 2, "status": 503, "path_prefix": "/v1/evaluation"},
    {"count": 2, "status": 503, "path_prefix": "/nim"},
]


def test_bursts_of_5xx_are_survived_by_the_hooks_retries(flywheel_env):
    dag = flywheel_env.dags()[f"flywheel__{TOOLS_WORKLOAD}"]
    flywheel_env.emulator.set_faults(bursts=BURSTS)
    run = flywheel_env.run(dag, {"candidates": [MODEL_1B]})

    assert run.state == "success", run.states
    # The hooks absorbed the errors: no task needed a second Airflow try.
    ran = {task: tries for task, tries in run.tries.items() if run.states[task] != "skipped"}
    assert set(ran.values()) == {1}, ran
    injected = run.emulator_state["faults_injected"]
    expected: dict[str, int] = {}
    for burst in BURSTS:
        expected[str(burst["status"])] = expected.get(str(burst["status"]), 0) + burst["count"]
    assert injected == expected
    assert flywheel_env.emulator.client.get("/emulator/faults").json()["bursts"] == []
    # Lost answers were recovered by finding the job, not by submitting it again.
    assert run.emulator_state["customization_jobs"]["total"] == 1
    assert run.emulator_state["evaluation_jobs"] == {"total": 3, "by_status": {"completed": 3}}
    assert run.document["status"] == "completed"
    key = PRIMARY_SCORE["tool_calling"]
    assert primary(run, MODEL_1B, "customized-eval", key) > primary(run, MODEL_1B, "base-eval", key)
    assert_no_deployment_left(flywheel_env, run)
