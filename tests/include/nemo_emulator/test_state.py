"""Job and deployment state machines, driven by a hand-moved clock (no dependence on machine speed)."""

from __future__ import annotations

import pytest


def _setup_customization(local, samples, *, train: bool = True, val: bool = True, train_bytes: bytes | None = None):
    files = {}
    if train:
        files["training/train_data.jsonl"] = train_bytes if train_bytes is not None else samples.jsonl(
            samples.training_rows(8))
    if val:
        files["validation/val_data.jsonl"] = samples.jsonl(samples.training_rows(2))
    local.upload("fw/train-a", files)
    local.post("/v1/datasets", {"name": "train-a", "namespace": "fw", "files_url": "hf://datasets/fw/train-a"})
    local.post("/v1/customization/configs", {"name": "cfg", "namespace": "fw",
                                             "target": f"{samples.base_model}@2.0", "training_options": []})


def _job_body(name: str = "job-a", output_model: str = "fw/custom-a") -> dict:
    return {"name": name, "output_model": output_model, "config": "fw/cfg",
            "dataset": {"name": "train-a", "namespace": "fw"},
            "hyperparameters": {"training_type": "sft", "finetuning_type": "lora", "epochs": 2, "batch_size": 4,
                                "learning_rate": 1e-4, "lora": {"adapter_dim": 32, "adapter_dropout": 0.1}}}


def _deploy(local, samples, name: str = "nim-a") -> None:
    local.post("/v1/deployment/model-deployments", {
        "name": name, "namespace": "fw",
        "config": {"model": samples.base_model, "nim_deployment": {"image_name": "nim", "image_tag": "1", "gpu": 1}}})


def _served(local) -> list[str]:
    return [m["id"] for m in local.get("/nim/v1/models")["data"]]


def test_customization_job_walks_created_pending_running_completed(local, samples):
    _setup_customization(local, samples)
    job = local.post("/v1/customization/jobs", _job_body())
    job_id = job["id"]
    assert job["id"].startswith("cust-") and job["output_model"] == "fw/custom-a" and job["status"] == "created"
    samples.wait_until(lambda: local.state.customization_jobs[job_id].work_done_at is not None, what="training")

    local.tick(1.5)
    assert local.get(f"/v1/customization/jobs/{job_id}/status")["status"] == "pending"
    local.tick(0.5 + 5.0)  # half-way through the 10 s run
    status = local.get(f"/v1/customization/jobs/{job_id}/status")
    assert status["status"] == "running"
    assert status["percentage_done"] == pytest.approx(50.0)
    assert status["epochs_completed"] == 1  # 2 epochs, half done
    assert status["steps_completed"] == 2  # 8 rows / batch 4 = 2 steps per epoch
    local.get("/v1/models/fw/custom-a", expect=404)  # not registered before completion

    local.tick(5.0)
    status = local.get(f"/v1/customization/jobs/{job_id}/status")
    assert (status["status"], status["percentage_done"], status["epochs_completed"]) == ("completed", 100.0, 2)
    assert [entry["message"] for entry in status["status_logs"]] == ["created", "pending", "running", "completed"]
    model = local.get("/v1/models/fw/custom-a")
    assert model["base_model"] == samples.base_model
    assert model["custom_fields"]["train_rows"] == 8 and model["custom_fields"]["val_rows"] == 2
    full = local.get(f"/v1/customization/jobs/{job_id}")
    assert full["status"] == "completed" and full["status_details"]["percentage_done"] == 100.0


def test_missing_training_file_fails_the_job_with_a_clear_log(local, samples):
    _setup_customization(local, samples, train=False)
    job_id = local.post("/v1/customization/jobs", _job_body())["id"]
    samples.wait_until(lambda: local.state.customization_jobs[job_id].work_error, what="training error")
    local.tick(2.0)
    status = local.get(f"/v1/customization/jobs/{job_id}/status")
    assert status["status"] == "failed"
    assert "training/train_data.jsonl not found" in status["status_logs"][-1]["detail"]
    local.tick(20)
    assert local.get("/v1/models", filter={})["data"] == []  # nothing registered


def test_empty_training_file_fails_the_job(local, samples):
    _setup_customization(local, samples, train_bytes=b"\n")
    job_id = local.post("/v1/customization/jobs", _job_body())["id"]
    samples.wait_until(lambda: local.state.customization_jobs[job_id].work_error, what="training error")
    local.tick(2.0)
    status = local.get(f"/v1/customization/jobs/{job_id}/status")
    assert status["status"] == "failed" and "is empty" in status["status_logs"][-1]["detail"]


def test_customization_job_refuses_unknown_config_dataset_and_taken_output_model(local, samples):
    _setup_customization(local, samples)
    bad_config = {**_job_body(), "config": "fw/nope"}
    assert "customization config fw/nope not found" in local.post("/v1/customization/jobs", bad_config, 422)["detail"]
    bad_dataset = {**_job_body(), "dataset": {"namespace": "fw", "name": "nope"}}
    assert "dataset fw/nope not found" in local.post("/v1/customization/jobs", bad_dataset, 422)["detail"]
    bad_epochs = {**_job_body(), "hyperparameters": {"epochs": 0}}
    assert "epochs" in local.post("/v1/customization/jobs", bad_epochs, 422)["detail"]
    first = local.post("/v1/customization/jobs", _job_body())
    assert first["id"] in local.post("/v1/customization/jobs", _job_body(name="job-b"), 409)["detail"]


def test_cancel_stops_a_running_job_and_refuses_a_finished_one(local, samples):
    _setup_customization(local, samples)
    job_id = local.post("/v1/customization/jobs", _job_body())["id"]
    local.tick(5.0)
    cancelled = local.post(f"/v1/customization/jobs/{job_id}/cancel", {})
    assert cancelled["status"] == "cancelled"
    assert local.post(f"/v1/customization/jobs/{job_id}/cancel", {})["status"] == "cancelled"  # idempotent
    local.tick(100)
    assert local.get(f"/v1/customization/jobs/{job_id}/status")["status"] == "cancelled"
    local.get("/v1/models/fw/custom-a", expect=404)

    other = local.post("/v1/customization/jobs", _job_body(name="job-b", output_model="fw/custom-b"))["id"]
    samples.wait_until(lambda: local.state.customization_jobs[other].work_done_at is not None, what="training")
    local.tick(20)
    assert "already completed" in local.post(f"/v1/customization/jobs/{other}/cancel", {}, 409)["detail"]
    local.post("/v1/customization/jobs/cust-unknown/cancel", {}, 404)


def test_list_customization_jobs_finds_a_job_by_name(local, samples):
    _setup_customization(local, samples)
    wanted = local.post("/v1/customization/jobs", _job_body(name="flywheel-w-run1"))["id"]
    local.post("/v1/customization/jobs", _job_body(name="other", output_model="fw/custom-b"))
    for params in ({"filter[name]": "flywheel-w-run1"}, {"name": "flywheel-w-run1"}):
        listing = local.get("/v1/customization/jobs", **params)
        assert [job["id"] for job in listing["data"]] == [wanted]
        assert listing["pagination"]["total_results"] == 1
    assert local.get("/v1/customization/jobs", **{"filter[name]": "nothing"})["data"] == []
    assert local.get("/v1/customization/jobs")["pagination"]["total_results"] == 2


def test_deployment_becomes_ready_and_serves_its_model_until_deleted(local, samples):
    _deploy(local, samples)
    path = "/v1/deployment/model-deployments/fw/nim-a"
    assert local.get(path)["status_details"]["status"] == "created"
    local.tick(1.0)
    assert local.get(path)["status_details"]["status"] == "pending"
    assert samples.base_model not in _served(local)
    local.post("/nim/v1/chat/completions", {"model": samples.base_model,
                                            "messages": [{"role": "user", "content": "hi"}]}, 404)
    local.tick(9.0)
    deployment = local.get(path)
    assert deployment["status_details"]["status"] == "ready" and deployment["deployed"] is True
    assert samples.base_model in _served(local)
    answer = local.post("/nim/v1/chat/completions", {"model": samples.base_model,
                                                     "messages": [{"role": "user", "content": "hi"}]})
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["role"] == "assistant"
    assert local.get("/v1/deployment/model-deployments")["pagination"]["total_results"] == 1
    local.client.delete(path).raise_for_status()
    assert samples.base_model not in _served(local)
    local.get(path, expect=404)
    assert local.client.delete(path).status_code == 404


def test_deployment_refuses_duplicates_and_bodies_without_a_model(local, samples):
    _deploy(local, samples)
    assert "already exists" in local.post("/v1/deployment/model-deployments", {
        "name": "nim-a", "namespace": "fw", "config": {"model": samples.base_model}}, 409)["detail"]
    assert "config.model" in local.post("/v1/deployment/model-deployments", {"name": "x", "config": {}}, 422)["detail"]


def test_customized_model_is_served_after_its_base_is_ready_and_the_sync_delay(local, samples):
    _setup_customization(local, samples)
    job_id = local.post("/v1/customization/jobs", _job_body())["id"]
    samples.wait_until(lambda: local.state.customization_jobs[job_id].work_done_at is not None, what="training")
    local.tick(12.0)  # job completed at t=12
    assert local.get(f"/v1/customization/jobs/{job_id}")["status"] == "completed"
    local.tick(10.0)
    assert "fw/custom-a" not in _served(local)  # base model not deployed: the adapter has nowhere to load

    _deploy(local, samples)  # ready 10 s later, then the sync delay of 5 s
    local.tick(10.0)
    assert samples.base_model in _served(local) and "fw/custom-a" not in _served(local)
    local.tick(5.0)
    models = {m["id"]: m for m in local.get("/nim/v1/models")["data"]}
    assert models["fw/custom-a"]["parent"] == samples.base_model
    request = {"model": "fw/custom-a", "messages": [{"role": "user", "content": "What is the weather in Rome?"}],
               "tools": list(samples.tools)}
    message = local.post("/nim/v1/chat/completions", request)["choices"][0]["message"]
    assert message["tool_calls"][0]["function"]["name"] == "get_weather"

    local.client.delete("/v1/models/fw/custom-a").raise_for_status()
    assert "fw/custom-a" not in _served(local)


def _setup_evaluation(local, samples) -> None:
    local.upload("fw/eval-a", {"eval_data.jsonl": samples.jsonl(samples.eval_records(4))})


def _evaluation_body(samples, model) -> dict:
    return {"namespace": "fw", "config": samples.tool_calling_config("fw", "eval-a"),
            "target": {"type": "model", "model": model}, "custom_fields": {"flywheel_key": "w-run1-base"}}


def test_evaluation_job_runs_to_results(local, samples):
    _setup_evaluation(local, samples)
    _deploy(local, samples)
    local.tick(10.0)
    target = {"api_endpoint": {"url": "http://nim/v1/chat/completions", "model_id": samples.base_model,
                               "format": "nim"}}
    job = local.post("/v1/evaluation/jobs", _evaluation_body(samples, target))
    job_id = job["id"]
    assert job_id.startswith("eval-") and job["custom_fields"] == {"flywheel_key": "w-run1-base"}
    assert job["namespace"] == "fw"
    samples.wait_until(lambda: local.state.evaluation_jobs[job_id].work_done_at is not None, what="evaluation")
    assert "is created" in local.get(f"/v1/evaluation/jobs/{job_id}/results", expect=409)["detail"]
    local.tick(7.0)
    running = local.get(f"/v1/evaluation/jobs/{job_id}")
    assert running["status"] == "running" and running["status_details"]["progress"] == pytest.approx(50.0)
    local.tick(5.0)
    done = local.get(f"/v1/evaluation/jobs/{job_id}")
    assert done["status"] == "completed" and done["status_details"]["progress"] == 100.0
    assert done["status_details"]["samples_processed"] == 4
    results = local.get(f"/v1/evaluation/jobs/{job_id}/results")
    assert results["job"] == job_id
    scores = results["tasks"]["custom-tool-calling"]["metrics"]["tool-calling-accuracy"]["scores"]
    assert 0.0 <= scores["function_name_accuracy"]["value"] <= 1.0
    assert scores["function_name_accuracy"]["stats"]["count"] == 4
    rating = results["tasks"]["custom-tool-calling"]["metrics"]["correctness"]["scores"]["rating"]
    assert rating["stats"]["count"] == 4

    listing = local.get("/v1/evaluation/jobs", **{"filter[custom_fields.flywheel_key]": "w-run1-base"})
    assert [j["id"] for j in listing["data"]] == [job_id]
    assert local.get("/v1/evaluation/jobs", **{"filter[custom_fields][flywheel_key]": "w-run1-base"})["data"]
    assert local.get("/v1/evaluation/jobs", **{"filter[custom_fields.flywheel_key]": "other"})["data"] == []
    local.client.delete(f"/v1/evaluation/jobs/{job_id}").raise_for_status()
    local.get(f"/v1/evaluation/jobs/{job_id}", expect=404)


def test_evaluation_of_a_model_not_served_fails_with_a_clear_message(local, samples):
    _setup_evaluation(local, samples)
    job_id = local.post("/v1/evaluation/jobs", _evaluation_body(samples, "fw/not-deployed"))["id"]
    samples.wait_until(lambda: local.state.evaluation_jobs[job_id].work_error, what="evaluation error")
    local.tick(2.0)
    job = local.get(f"/v1/evaluation/jobs/{job_id}")
    assert job["status"] == "failed"
    assert "'fw/not-deployed' is not served by the NIM" in job["status_details"]["message"]
    assert "not served" in local.get(f"/v1/evaluation/jobs/{job_id}/results", expect=409)["detail"]


def test_evaluation_with_a_missing_dataset_fails_naming_it(local, samples):
    body = _evaluation_body(samples, samples.judge_model)  # the judge is always served
    job_id = local.post("/v1/evaluation/jobs", body)["id"]
    samples.wait_until(lambda: local.state.evaluation_jobs[job_id].work_error, what="evaluation error")
    local.tick(2.0)
    job = local.get(f"/v1/evaluation/jobs/{job_id}")
    assert job["status"] == "failed" and "hf://datasets/fw/eval-a/eval_data.jsonl" in job["status_details"]["message"]


def test_evaluation_cancel_and_bad_bodies(local, samples):
    _setup_evaluation(local, samples)
    job_id = local.post("/v1/evaluation/jobs", _evaluation_body(samples, samples.judge_model))["id"]
    local.tick(3.0)
    assert local.post(f"/v1/evaluation/jobs/{job_id}/cancel", {})["status"] == "cancelled"
    local.tick(30.0)
    assert local.get(f"/v1/evaluation/jobs/{job_id}")["status"] == "cancelled"
    assert "tasks" in local.post("/v1/evaluation/jobs", {"config": {"tasks": {}}, "target": {"type": "model",
                                                                                              "model": "a/b"}},
                                 422)["detail"]
    assert "target" in local.post("/v1/evaluation/jobs", {"config": {"tasks": {"t": {}}}}, 422)["detail"]
    local.get("/v1/evaluation/jobs/eval-nope", expect=404)


def test_clock_control_and_durations_apply_to_new_jobs(local, samples):
    local.post("/emulator/config", {"deployment": 1.0})
    _deploy(local, samples, name="quick")
    local.post("/emulator/clock", {"advance": 1.0})
    assert local.get("/v1/deployment/model-deployments/fw/quick")["status_details"]["status"] == "ready"
    assert "unknown duration" in local.post("/emulator/config", {"nope": 1}, 422)["detail"]
    local.post("/emulator/clock", {"advance": -1}, 422)
