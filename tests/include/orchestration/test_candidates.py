"""What a candidate's NeMo steps record when they succeed (the on_success_callback's documents)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from include.orchestration.candidates import step_documents

EVAL_OUTPUT = {
    "job_id": "eval-123",
    "status": "completed",
    "results": {
        "tool-calling-accuracy": {"function_name_accuracy": 0.9, "function_name_and_args_accuracy": 0.75},
        "correctness": {"rating": 0.75},
    },
    "usage": {"custom-tool-calling": {"requests": 20, "mean_latency_ms": 3.5, "mean_prompt_tokens": 900.0,
                                      "mean_completion_tokens": 20.0, "mean_total_tokens": 920.0}},
    "started_at": "2026-11-25T15:00:00+00:00",
    "finished_at": "2026-11-25T15:00:02Z",
}


def test_deployment_marks_the_nim_running_evals():
    documents = step_documents("deploy_nim", {"namespace": "flywheel", "name": "meta-llama", "model": "m"},
                               workload_type="tool_calling", epochs=2)
    assert documents == {"nim": {"status": "running-evals", "deployment_name": "meta-llama",
                                 "deployment_status": "ready"}}


@pytest.mark.parametrize(("step", "eval_type"), [("base_eval", "base-eval"), ("icl_eval", "icl-eval"),
                                                 ("customized_eval", "customized-eval")])
def test_an_evaluation_records_its_job_scores_usage_and_timing(step, eval_type):
    documents = step_documents(step, EVAL_OUTPUT, workload_type="tool_calling", epochs=2)
    fields = documents["evaluations"][eval_type]
    assert fields["status"] == "completed" and fields["job_id"] == "eval-123" and fields["progress"] == 100.0
    # Evaluator names mapped to the flywheel's keys.
    assert fields["scores"] == {"function_name": 0.9, "function_name_and_args_accuracy": 0.75,
                                "tool_calling_correctness": 0.75}
    assert fields["latency"] == {"mean_ms": 3.5}
    assert fields["tokens"] == {"mean_prompt": 900.0, "mean_completion": 20.0, "mean_total": 920.0}
    assert fields["started_at"] == datetime(2026, 11, 25, 15, 0, tzinfo=timezone.utc)
    assert fields["finished_at"] == datetime(2026, 11, 25, 15, 0, 2, tzinfo=timezone.utc)


def test_an_evaluation_without_workload_type_or_timestamps_leaves_them_out():
    output = {**EVAL_OUTPUT, "started_at": "2026-11-25T15:00:00", "finished_at": None, "usage": {}}
    fields = step_documents("base_eval", output, workload_type=None, epochs=None)["evaluations"]["base-eval"]
    assert "scores" not in fields and "latency" not in fields and "started_at" not in fields
    # A naive job timestamp is not guessed at: the store stamps the time it learned of the finish.
    assert fields["finished_at"].tzinfo is not None


def test_customization_records_the_job_and_customized_model():
    output = {"job_id": "cust-1", "output_model": "flywheel/fw-customized-x", "status": "completed"}
    assert step_documents("customize", output, workload_type="tool_calling", epochs=3) == {
        "customization": {"status": "completed", "job_id": "cust-1", "customized_model": "flywheel/fw-customized-x",
                          "progress": 100.0, "epochs": 3}
    }


def test_other_steps_record_nothing():
    assert step_documents("wait_model_synced", {"model": "x"}, workload_type="tool_calling", epochs=2) == {}
