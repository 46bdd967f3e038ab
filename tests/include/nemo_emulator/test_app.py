"""Endpoints of the emulator app: entity store, namespaces, NIM, control API, errors."""

from __future__ import annotations

import base64
import struct

import pytest


def test_health_says_it_is_an_emulator(local):
    assert local.get("/health") == {"status": "ok", "service": "nemo-emulator", "emulator": True}


def test_namespaces_create_get_and_conflict(local):
    created = local.post("/v1/namespaces", {"id": "flywheel"})
    assert created["id"] == "flywheel"
    assert "already exists" in local.post("/v1/namespaces", {"id": "flywheel"}, 409)["detail"]
    assert local.get("/v1/namespaces/flywheel")["id"] == "flywheel"
    assert "not found" in local.get("/v1/namespaces/nope", expect=404)["detail"]
    assert "body.id" in local.post("/v1/namespaces", {}, 422)["detail"]


def test_datastore_namespaces_take_a_form_field(local):
    response = local.client.post("/v1/datastore/namespaces", data={"namespace": "flywheel"})
    assert response.status_code == 201
    again = local.client.post("/v1/datastore/namespaces", data={"namespace": "flywheel"})
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    assert local.client.post("/v1/datastore/namespaces", data={}).status_code == 422
    assert local.client.post("/v1/datastore/namespaces", json={"namespace": "other"}).status_code == 201
    assert local.get("/v1/datastore/namespaces/other") == {"namespace": "other"}


def test_datasets_crud_and_list_filter(local):
    body = {"name": "eval-w-1", "namespace": "fw", "description": "eval set", "project": "flywheel",
            "files_url": "hf://datasets/fw/eval-w-1"}
    created = local.post("/v1/datasets", body)
    assert created["id"].startswith("dataset-") and created["files_url"] == body["files_url"]
    assert "already exists" in local.post("/v1/datasets", body, 409)["detail"]
    local.post("/v1/datasets", {**body, "name": "train-w-1", "namespace": "other",
                                "files_url": "hf://datasets/other/train-w-1"})
    assert local.get("/v1/datasets/fw/eval-w-1")["description"] == "eval set"

    patched = local.client.patch("/v1/datasets/fw/eval-w-1", json={"description": "changed"})
    assert patched.status_code == 200 and patched.json()["description"] == "changed"
    assert local.client.patch("/v1/datasets/fw/eval-w-1", json={"name": "x"}).status_code == 422

    assert [d["name"] for d in local.get("/v1/datasets", **{"filter[namespace]": "fw"})["data"]] == ["eval-w-1"]
    assert local.get("/v1/datasets")["pagination"]["total_results"] == 2
    page = local.get("/v1/datasets", page=2, page_size=1)
    assert page["pagination"]["current_page_size"] == 1 and page["pagination"]["total_pages"] == 2
    local.get("/v1/datasets", page=0, expect=422)

    assert local.client.delete("/v1/datasets/fw/eval-w-1").json()["deleted"] is True
    local.get("/v1/datasets/fw/eval-w-1", expect=404)
    assert local.client.delete("/v1/datasets/fw/eval-w-1").status_code == 404


def test_dataset_files_url_must_be_a_datastore_url(local):
    detail = local.post("/v1/datasets", {"name": "x", "namespace": "fw", "files_url": "s3://bucket/x"}, 422)["detail"]
    assert "hf://datasets/" in detail
    assert "files_url" in local.post("/v1/datasets", {"name": "x", "namespace": "fw"}, 422)["detail"]


def test_customization_configs_crud(local, samples):
    body = {"name": "llama-1b-lora", "namespace": "fw", "target": f"{samples.base_model}@2.0",
            "training_options": [{"training_type": "sft", "finetuning_type": "lora", "num_gpus": 1,
                                  "num_nodes": 1, "tensor_parallel_size": 1, "data_parallel_size": 1,
                                  "use_sequence_parallel": False, "micro_batch_size": 1}],
            "training_precision": "bf16-mixed", "max_seq_length": 4096}
    created = local.post("/v1/customization/configs", body)
    assert created["training_options"] == body["training_options"]
    assert local.post("/v1/customization/configs", body, 409)["detail"].endswith("already exists")
    assert local.get("/v1/customization/configs/fw/llama-1b-lora")["target"] == body["target"]
    assert local.get("/v1/customization/configs")["pagination"]["total_results"] == 1
    local.client.delete("/v1/customization/configs/fw/llama-1b-lora").raise_for_status()
    local.get("/v1/customization/configs/fw/llama-1b-lora", expect=404)
    assert "target" in local.post("/v1/customization/configs", {"name": "x"}, 422)["detail"]


def test_bad_json_bodies_get_a_readable_422(local):
    response = local.client.post("/v1/datasets", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("invalid request: body")
    response = local.client.post("/v1/namespaces", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_unknown_ids_answer_404_with_detail(local):
    for path in ("/v1/customization/jobs/cust-x", "/v1/customization/jobs/cust-x/status",
                 "/v1/evaluation/jobs/eval-x", "/v1/evaluation/jobs/eval-x/results", "/v1/models/a/b",
                 "/v1/deployment/model-deployments/a/b", "/v1/customization/configs/a/b"):
        response = local.client.get(path)
        assert response.status_code == 404, path
        assert "not found" in response.json()["detail"], path


def test_nim_always_serves_judge_and_embedding_models(local, samples):
    models = local.get("/nim/v1/models")
    assert models["object"] == "list"
    assert {m["id"] for m in models["data"]} == {samples.judge_model, samples.embedding_model}
    answer = local.post("/nim/v1/chat/completions", {
        "model": samples.judge_model,
        "messages": [{"role": "user", "content": "REFERENCE: the sky is blue\nCANDIDATE: the sky is blue\n"
                                                 "Rate similarity as SIMILARITY: <1-10>"}]})
    assert "SIMILARITY:" in answer["choices"][0]["message"]["content"]
    assert answer["usage"]["total_tokens"] > 0


def test_nim_chat_errors(local, samples):
    missing = local.post("/nim/v1/chat/completions", {"model": "x/y", "messages": [{"role": "user", "content": "a"}]},
                         404)
    assert "'x/y' is not served" in missing["detail"] and missing["error"]["message"] == missing["detail"]
    assert "messages" in local.post("/nim/v1/chat/completions", {"model": samples.judge_model, "messages": []},
                                    422)["detail"]
    assert "stream" in local.post("/nim/v1/chat/completions", {
        "model": samples.judge_model, "stream": True, "messages": [{"role": "user", "content": "a"}]}, 422)["detail"]
    assert "embedding model" in local.post("/nim/v1/chat/completions", {
        "model": samples.embedding_model, "messages": [{"role": "user", "content": "a"}]}, 404)["detail"]


def test_embeddings_float_and_base64_agree(local, samples):
    floats = local.post("/nim/v1/embeddings", {"model": samples.embedding_model, "input": ["alpha", "beta"]})
    assert [d["index"] for d in floats["data"]] == [0, 1]
    vector = floats["data"][0]["embedding"]
    assert len(vector) == 384 and sum(v * v for v in vector) == pytest.approx(1.0, abs=1e-6)
    single = local.post("/nim/v1/embeddings", {"model": samples.embedding_model, "input": "alpha",
                                               "encoding_format": "base64", "dimensions": 64})
    raw = base64.b64decode(single["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert len(decoded) == 64
    again = local.post("/nim/v1/embeddings", {"model": samples.embedding_model, "input": "alpha", "dimensions": 64})
    assert list(decoded) == pytest.approx(again["data"][0]["embedding"], abs=1e-6)


def test_embeddings_errors(local, samples):
    assert "not an embedding model" in local.post("/nim/v1/embeddings", {"model": samples.judge_model,
                                                                         "input": "a"}, 404)["detail"]
    assert "input" in local.post("/nim/v1/embeddings", {"model": samples.embedding_model, "input": [1, 2]},
                                 422)["detail"]
    assert "input" in local.post("/nim/v1/embeddings", {"model": samples.embedding_model, "input": []},
                                 422)["detail"]


def test_state_counts_requests_by_route_and_reset_forgets_everything(local):
    local.post("/v1/namespaces", {"id": "a"})
    local.post("/v1/namespaces", {"id": "a"}, 409)
    local.get("/v1/namespaces/a")
    state = local.get("/emulator/state")
    assert state["requests"]["POST /v1/namespaces"] == 2
    assert state["requests"]["GET /v1/namespaces/{namespace}"] == 1
    assert not any(key.startswith("GET /emulator") for key in state["requests"])  # control calls not counted
    assert state["namespaces"] == ["a"]
    local.post("/emulator/reset", {})
    state = local.get("/emulator/state")
    assert state["namespaces"] == [] and state["requests"] == {}


def test_faults_api_merges_validates_and_clears(local):
    settings = local.post("/emulator/faults", {"latency": 0.01, "fail_customizations": ["bad"]})
    assert settings["latency"] == 0.01 and settings["fail_customizations"] == ["bad"]
    merged = local.post("/emulator/faults", {"error_rate": 0.0})
    assert merged["fail_customizations"] == ["bad"]  # fields not given are kept
    assert "invalid faults" in local.post("/emulator/faults", {"error_rate": 2}, 422)["detail"]
    assert "invalid faults" in local.post("/emulator/faults", {"nope": 1}, 422)["detail"]
    cleared = local.client.delete("/emulator/faults").json()
    assert cleared["latency"] == 0.0 and cleared["fail_customizations"] == []


def test_whole_flywheel_flow_with_real_clients(emu, samples):
    """Upload -> register -> deploy -> customize -> sync -> evaluate base and customized, as the flywheel does."""
    from huggingface_hub import HfApi

    client = emu.client
    assert client.post("/v1/namespaces", json={"id": "fw"}).status_code == 200
    assert client.post("/v1/datastore/namespaces", data={"namespace": "fw"}).status_code == 201
    api = HfApi(endpoint=emu.hf_endpoint, token="t")
    for repo, files in {
        "fw/flywheel-train-w-r1": {"training/train_data.jsonl": samples.jsonl(samples.training_rows(8)),
                                   "validation/val_data.jsonl": samples.jsonl(samples.training_rows(2))},
        "fw/flywheel-eval-w-r1": {"eval_data.jsonl": samples.jsonl(samples.eval_records(4))},
    }.items():
        api.create_repo(repo, repo_type="dataset", exist_ok=True)
        for path, content in files.items():
            api.upload_file(path_or_fileobj=content, path_in_repo=path, repo_id=repo, repo_type="dataset")
        name = repo.split("/")[1]
        assert client.post("/v1/datasets", json={"name": name, "namespace": "fw", "project": "flywheel",
                                                 "files_url": f"hf://datasets/{repo}"}).status_code == 200

    client.post("/v1/deployment/model-deployments", json={
        "name": "llama-1b", "namespace": "fw", "config": {"model": samples.base_model, "nim_deployment": {
            "image_name": "nvcr.io/nim/meta/llama-3.2-1b-instruct", "image_tag": "latest", "pvc_size": "25Gi",
            "gpu": 1, "additional_envs": {}}}}).raise_for_status()
    client.post("/v1/customization/configs", json={
        "name": "llama-1b-cfg", "namespace": "fw", "target": f"{samples.base_model}@2.0",
        "training_options": [{"training_type": "sft", "finetuning_type": "lora", "num_gpus": 1}],
        "training_precision": "bf16-mixed", "max_seq_length": 4096}).raise_for_status()
    job = client.post("/v1/customization/jobs", json={
        "name": "flywheel-w-r1-llama-1b", "output_model": "fw/llama-1b-w-r1", "config": "fw/llama-1b-cfg",
        "dataset": {"name": "flywheel-train-w-r1", "namespace": "fw"},
        "hyperparameters": {"training_type": "sft", "finetuning_type": "lora", "epochs": 2, "batch_size": 16,
                            "learning_rate": 0.0001, "lora": {"adapter_dim": 32, "adapter_dropout": 0.1}}}).json()

    def served() -> list[str]:
        return [m["id"] for m in client.get("/nim/v1/models").json()["data"]]

    samples.wait_until(lambda: "fw/llama-1b-w-r1" in served(), what="customized model synced")
    assert client.get(f"/v1/customization/jobs/{job['id']}/status").json()["status"] == "completed"

    def evaluate(model: str) -> dict:
        target = {"type": "model", "model": {"api_endpoint": {
            "url": emu.nim_url + "/v1/chat/completions", "model_id": model, "format": "nim"}}}
        created = client.post("/v1/evaluation/jobs", json={
            "namespace": "fw", "config": samples.tool_calling_config("fw", "flywheel-eval-w-r1"), "target": target,
            "custom_fields": {"flywheel_key": f"w-r1-{model}"}}).json()
        samples.wait_until(
            lambda: client.get(f"/v1/evaluation/jobs/{created['id']}").json()["status"] in ("completed", "failed"),
            what="evaluation finished")
        return client.get(f"/v1/evaluation/jobs/{created['id']}/results").json()

    for model in (samples.base_model, "fw/llama-1b-w-r1"):
        task = evaluate(model)["tasks"]["custom-tool-calling"]
        accuracy = task["metrics"]["tool-calling-accuracy"]["scores"]
        for score in ("function_name_accuracy", "function_name_and_args_accuracy"):
            assert 0.0 <= accuracy[score]["value"] <= 1.0
            assert accuracy[score]["stats"]["count"] == 4
    # The customized model learned get_weather for weather questions from its training file.
    assert accuracy["function_name_accuracy"]["value"] == 1.0
    state = emu.state()
    assert state["customization_jobs"]["total"] == 1 and state["evaluation_jobs"]["by_status"] == {"completed": 2}
