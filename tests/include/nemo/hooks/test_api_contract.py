"""Pins every request path and required body field to DESIGN.md section 5.

Each hook call is sent to a recording mock; the test fails if a method, a path or a required
field of the body drifts from the documented NeMo v1 contract.
"""

from __future__ import annotations

from typing import Any

import pytest

from include.flywheel.config import CandidateSettings, CustomizerSettings, TrainingSettings
from include.nemo import payloads
from include.nemo.hooks import (
    CustomizerHook,
    DataStoreHook,
    DeploymentHook,
    EntityStoreHook,
    EvaluatorHook,
    NimHook,
)

NS = "flywheel"
CUSTOMIZER = CustomizerSettings(target="meta/llama-3.2-1b-instruct@2.0")
CANDIDATE = CandidateSettings(model_name="meta/llama-3.2-1b-instruct", customizer=CUSTOMIZER)
TRAINING = TrainingSettings()


def _has(body: Any, dotted: str) -> bool:
    value = body
    for part in dotted.split("."):
        if isinstance(value, list):
            value = value[0] if value else None
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


def _answer(request):
    # Enough of a plausible answer for every call to succeed.
    path = request.url.path
    if path.endswith("/v1/models") and request.method == "GET":
        return 200, {"data": [{"id": "m"}]}
    if path.endswith("/chat/completions"):
        return 200, {"choices": [{"message": {"role": "assistant", "content": "hi"}}]}
    if path.endswith("/embeddings"):
        return 200, {"data": [{"index": 0, "embedding": [0.1]}]}
    if request.method == "GET" and path in ("/v1/customization/jobs", "/v1/evaluation/jobs"):
        return 200, {"data": [], "pagination": {"page": 1, "total_pages": 1}}
    return 200, {"id": "x", "status": "created"}


CASES = [
    # (name, hook class, conn type, call, method, path, required body fields)
    ("namespace", EntityStoreHook, "nemo", lambda h: h.create_namespace(NS), "POST", "/v1/namespaces", ["id"]),
    ("dataset create", EntityStoreHook, "nemo",
     lambda h: h.create_dataset(payloads.dataset_body(NS, "ds", description="d", project="p")),
     "POST", "/v1/datasets", ["name", "namespace", "description", "files_url", "project"]),
    ("dataset get", EntityStoreHook, "nemo", lambda h: h.get_dataset(NS, "ds"), "GET", "/v1/datasets/flywheel/ds", []),
    ("dataset patch", EntityStoreHook, "nemo", lambda h: h.update_dataset(NS, "ds", {"description": "x"}),
     "PATCH", "/v1/datasets/flywheel/ds", ["description"]),
    ("dataset delete", EntityStoreHook, "nemo", lambda h: h.delete_dataset(NS, "ds"), "DELETE", "/v1/datasets/flywheel/ds", []),
    ("model get", EntityStoreHook, "nemo", lambda h: h.get_model(NS, "m"), "GET", "/v1/models/flywheel/m", []),
    ("model delete", EntityStoreHook, "nemo", lambda h: h.delete_model(NS, "m"), "DELETE", "/v1/models/flywheel/m", []),
    ("config create", CustomizerHook, "nemo",
     lambda h: h.create_config(payloads.customization_config_body(NS, "cfg", CUSTOMIZER, TRAINING)),
     "POST", "/v1/customization/configs",
     ["name", "namespace", "target", "training_options.training_type", "training_options.finetuning_type",
      "training_options.num_gpus", "training_options.num_nodes", "training_options.tensor_parallel_size",
      "training_options.data_parallel_size", "training_options.use_sequence_parallel",
      "training_options.micro_batch_size", "training_precision", "max_seq_length"]),
    ("config delete", CustomizerHook, "nemo", lambda h: h.delete_config(NS, "cfg"),
     "DELETE", "/v1/customization/configs/flywheel/cfg", []),
    ("customization job", CustomizerHook, "nemo",
     lambda h: h.create_job(payloads.customization_job_body(
         name="j", config="flywheel/cfg", dataset_namespace=NS, dataset_name="ds", output_model="flywheel/out",
         training=TRAINING)),
     "POST", "/v1/customization/jobs",
     ["name", "output_model", "config", "dataset.name", "dataset.namespace", "hyperparameters.training_type",
      "hyperparameters.finetuning_type", "hyperparameters.epochs", "hyperparameters.batch_size",
      "hyperparameters.learning_rate", "hyperparameters.lora.adapter_dim", "hyperparameters.lora.adapter_dropout"]),
    ("customization status", CustomizerHook, "nemo", lambda h: h.get_job_status("cust-1"),
     "GET", "/v1/customization/jobs/cust-1/status", []),
    ("customization cancel", CustomizerHook, "nemo", lambda h: h.cancel_job("cust-1"),
     "POST", "/v1/customization/jobs/cust-1/cancel", []),
    ("evaluation job", EvaluatorHook, "nemo",
     lambda h: h.create_job(payloads.evaluation_job_body(
         namespace=NS,
         config=payloads.tool_calling_eval_config(
             files_url=payloads.hf_files_url(NS, "ds", "eval_data.jsonl"),
             judge=payloads.judge_model("http://judge", "judge-model")),
         target=payloads.endpoint_target("http://nim", "m"), key="k")),
     "POST", "/v1/evaluation/jobs",
     ["namespace", "config.tasks", "target.type", "target.model.api_endpoint.url", "target.model.api_endpoint.model_id",
      "custom_fields.flywheel_key"]),
    ("evaluation get", EvaluatorHook, "nemo", lambda h: h.get_job("eval-1"), "GET", "/v1/evaluation/jobs/eval-1", []),
    ("evaluation results", EvaluatorHook, "nemo", lambda h: h.get_results("eval-1"),
     "GET", "/v1/evaluation/jobs/eval-1/results", []),
    ("evaluation delete", EvaluatorHook, "nemo", lambda h: h.delete_job("eval-1"), "DELETE", "/v1/evaluation/jobs/eval-1", []),
    ("deployment create", DeploymentHook, "nemo",
     lambda h: h.create_deployment(payloads.candidate_deployment_body(NS, CANDIDATE)),
     "POST", "/v1/deployment/model-deployments",
     ["name", "namespace", "config.model", "config.nim_deployment.image_name", "config.nim_deployment.image_tag",
      "config.nim_deployment.pvc_size", "config.nim_deployment.gpu", "config.nim_deployment.additional_envs"]),
    ("deployment get", DeploymentHook, "nemo", lambda h: h.get_deployment(NS, "d"),
     "GET", "/v1/deployment/model-deployments/flywheel/d", []),
    ("deployment delete", DeploymentHook, "nemo", lambda h: h.delete_deployment(NS, "d"),
     "DELETE", "/v1/deployment/model-deployments/flywheel/d", []),
    ("nim models", NimHook, "nim", lambda h: h.list_models(), "GET", "/v1/models", []),
    ("nim chat", NimHook, "nim", lambda h: h.chat_completion("m", [{"role": "user", "content": "hi"}]),
     "POST", "/v1/chat/completions", ["model", "messages"]),
    ("nim embeddings", NimHook, "nim", lambda h: h.embeddings("m", ["a"]), "POST", "/v1/embeddings", ["model", "input"]),
]


@pytest.mark.parametrize(("name", "hook_cls", "conn_type", "call", "method", "path", "fields"), CASES,
                         ids=[case[0] for case in CASES])
def test_request_matches_design(set_connection, script, name, hook_cls, conn_type, call, method, path, fields):
    set_connection(hook_cls.default_conn_name, conn_type=conn_type, host="http://svc.test")
    peer = script(route=_answer)
    call(hook_cls(transport=peer.transport(), retry_limit=1))

    assert peer.paths[0] == f"{method} {path}"
    if fields:
        body = peer.json_of(0)
        missing = [f for f in fields if not _has(body, f)]
        assert not missing, f"{name}: body lacks {missing}: {body}"


def test_datastore_namespace_is_a_form_field(set_connection, script):
    set_connection("nemo_datastore_default", conn_type="nemo_datastore", host="http://ds.test")
    peer = script((201, {"namespace": NS}))
    DataStoreHook(transport=peer.transport()).create_namespace(NS)

    request = peer.requests[0]
    assert f"{request.method} {request.url.path}" == "POST /v1/datastore/namespaces"
    assert request.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert request.content == b"namespace=flywheel"


def test_datastore_hf_endpoint(set_connection):
    set_connection("nemo_datastore_default", conn_type="nemo_datastore", host="http://ds.test/", password="tok")
    hook = DataStoreHook()
    assert hook.hf_endpoint == "http://ds.test/v1/hf"
    assert hook.hf_api.endpoint == "http://ds.test/v1/hf"
    assert hook.hf_api.token == "tok"


def test_datastore_extra_headers_reach_huggingface_hub(set_connection):
    set_connection("nemo_datastore_default", conn_type="nemo_datastore", host="http://ds.test",
                   extra={"headers": {"X-Tenant": "ml"}})
    assert DataStoreHook().hf_api.headers == {"X-Tenant": "ml"}


def test_datastore_never_sends_a_personal_hf_token(set_connection, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_personal")
    set_connection("nemo_datastore_default", conn_type="nemo_datastore", host="http://ds.test")
    assert DataStoreHook().hf_api.token is False


def test_ids_are_quoted_into_one_path_segment(set_connection, script):
    set_connection("nemo_default", conn_type="nemo", host="http://svc.test")
    peer = script((200, {"id": "x"}))
    EntityStoreHook(transport=peer.transport()).get_model(NS, "llama@cust/../x")
    assert peer.requests[0].url.raw_path == b"/v1/models/flywheel/llama%40cust%2F..%2Fx"
