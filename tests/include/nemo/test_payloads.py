"""Payload builders: deterministic names, bodies per DESIGN section 5 and the evaluation contract."""

from __future__ import annotations

import re

import pytest

from include.flywheel.config import CandidateSettings, CustomizerSettings, TrainingSettings
from include.nemo import payloads

CUSTOMIZER = CustomizerSettings(target="meta/llama-3.2-1b-instruct@2.0", gpus=2)
CANDIDATE = CandidateSettings(model_name="meta/llama-3.2-1b-instruct", tag="1.8", customizer=CUSTOMIZER)
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def test_job_names_are_deterministic_unique_and_safe():
    args = ("flywheel__support", "scheduled__2026-01-02T02:00:00+00:00", "meta/llama-3.2-1b-instruct", "customize")
    name = payloads.job_name(*args)
    assert name == payloads.job_name(*args)
    assert NAME_RE.match(name) and len(name) <= 63
    assert name.startswith("fw-customize-meta-llama-3-2-1b-instruct-")
    others = {
        payloads.job_name(args[0], "manual__2026-01-02", args[2], args[3]),
        payloads.job_name(args[0], args[1], "other/model", args[3]),
        payloads.job_name(args[0], args[1], args[2], "base-eval"),
        payloads.job_name("flywheel__other", args[1], args[2], args[3]),
    }
    assert name not in others and len(others) == 4


def test_long_job_names_keep_their_hash():
    a = payloads.job_name("d", "r1", "x" * 200, "step")
    b = payloads.job_name("d", "r2", "x" * 200, "step")
    assert len(a) == 63 and a != b and NAME_RE.match(a)


def test_flywheel_key_and_run_key():
    assert payloads.flywheel_key("dag", "run", "cand", "base-eval") == "dag|run|cand|base-eval"
    assert payloads.run_key("dag", "run") == payloads.run_key("dag", "run")
    assert payloads.run_key("dag", "run") != payloads.run_key("dag", "run2")
    with pytest.raises(ValueError, match="run_id"):
        payloads.flywheel_key("dag", "", "c", "s")


def test_dataset_repo_names():
    name = payloads.dataset_repo_name("eval", "Support_Bot", "abc123")
    assert name == "flywheel-eval-support-bot-abc123"
    assert len(payloads.dataset_repo_name("train", "w" * 200, "k")) <= 96
    with pytest.raises(ValueError, match="eval, icl or train"):
        payloads.dataset_repo_name("test", "w", "k")  # type: ignore[arg-type]


def test_files_urls():
    assert payloads.hf_files_url("ns", "ds") == "hf://datasets/ns/ds"
    assert payloads.hf_files_url("ns", "ds", "eval_data.jsonl") == "hf://datasets/ns/ds/eval_data.jsonl"
    assert payloads.dataset_body("ns", "ds")["files_url"] == "hf://datasets/ns/ds"
    assert "project" not in payloads.dataset_body("ns", "ds")


def test_customization_bodies():
    training = TrainingSettings()
    config = payloads.customization_config_body("ns", "cfg", CUSTOMIZER, training)
    assert config["target"] == CUSTOMIZER.target
    assert config["training_options"][0]["num_gpus"] == 2
    assert config["training_options"][0]["finetuning_type"] == "lora"
    job = payloads.customization_job_body(name="j", config="ns/cfg", dataset_namespace="ns", dataset_name="ds",
                                          output_model="ns/out", training=training)
    assert job["hyperparameters"]["lora"] == {"adapter_dim": 32, "adapter_dropout": 0.1}
    assert job["dataset"] == {"name": "ds", "namespace": "ns"}
    full = payloads.customization_job_body(name="j", config="ns/cfg", dataset_namespace="ns", dataset_name="ds",
                                           output_model="ns/out",
                                           training=TrainingSettings(finetuning_type="all_weights"))
    assert "lora" not in full["hyperparameters"]
    with pytest.raises(ValueError, match="config must be"):
        payloads.customization_job_body(name="j", config="cfg", dataset_namespace="ns", dataset_name="ds",
                                        output_model="ns/out", training=training)


def test_config_name_changes_with_the_settings():
    training = TrainingSettings()
    a = payloads.customization_config_name(CANDIDATE, training)
    b = payloads.customization_config_name(
        CANDIDATE.model_copy(update={"customizer": CUSTOMIZER.model_copy(update={"gpus": 4})}), training)
    assert a == payloads.customization_config_name(CANDIDATE, training)
    assert a != b and NAME_RE.match(a)


@pytest.mark.parametrize(
    ("base", "url"),
    [("http://nim", "http://nim/v1/chat/completions"), ("http://nim/v1/", "http://nim/v1/chat/completions"),
     ("http://nim/v1/chat/completions", "http://nim/v1/chat/completions")],
)
def test_chat_completions_url(base, url):
    assert payloads.chat_completions_url(base) == url


def test_tool_calling_config_matches_the_contract():
    judge = payloads.judge_model("http://judge/v1", "judge-model", api_key="k")
    config = payloads.tool_calling_eval_config(files_url="hf://datasets/ns/ds/eval_data.jsonl", judge=judge)
    task = config["tasks"]["custom-tool-calling"]
    assert config["type"] == "custom" and task["type"] == "chat-completion"
    assert task["dataset"] == {"files_url": "hf://datasets/ns/ds/eval_data.jsonl"}
    assert task["params"]["template"] == {"messages": "{{ item.request.messages | tojson }}",
                                          "tools": "{{ item.request.tools | tojson }}", "tool_choice": "auto"}
    accuracy = task["metrics"]["tool-calling-accuracy"]
    assert accuracy["type"] == "tool-calling"
    assert accuracy["params"]["tool_calls_ground_truth"] == "{{ item.response.choices[0].message.tool_calls | tojson }}"
    correctness = task["metrics"]["correctness"]
    assert correctness["type"] == "llm-judge"
    assert correctness["params"]["model"] == {"api_endpoint": {"url": "http://judge/v1/chat/completions",
                                                               "model_id": "judge-model", "api_key": "k"}}
    messages = correctness["params"]["template"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "item.response.choices[0].message.tool_calls" in messages[1]["content"]
    assert "sample.response.choices[0].message.tool_calls" in messages[1]["content"]
    pattern = correctness["params"]["scores"]["rating"]["parser"]["pattern"]
    assert re.search(pattern, "RATING: 1").group(1) == "1"


def test_generic_config_parses_the_whole_integer():
    config = payloads.generic_eval_config(files_url="hf://datasets/ns/ds/eval_data.jsonl",
                                          judge=payloads.judge_model("http://judge", "j"))
    task = config["tasks"]["llm-as-judge"]
    assert task["params"]["template"] == {"messages": "{{ item.request.messages | tojson }}", "max_tokens": 512}
    metric = task["metrics"]["llm-judge"]
    user = metric["params"]["template"]["messages"][1]["content"]
    assert "{{ item.response.choices[0].message.content }}" in user and "{{ sample.output_text }}" in user
    pattern = metric["params"]["scores"]["similarity"]["parser"]["pattern"]
    assert re.search(pattern, "SIMILARITY: 10").group(1) == "10"
    assert "api_key" not in metric["params"]["model"]["api_endpoint"]


def test_evaluation_job_and_targets():
    target = payloads.endpoint_target("http://nim", "m")
    assert target == {"type": "model", "model": {"api_endpoint": {"url": "http://nim/v1/chat/completions",
                                                                  "model_id": "m", "format": "nim"}}}
    assert payloads.model_target("ns", "m") == {"type": "model", "model": "ns/m"}
    body = payloads.evaluation_job_body(namespace="ns", config={"type": "custom"}, target=target, key="k")
    assert body["custom_fields"] == {"flywheel_key": "k"} and body["namespace"] == "ns"


def test_deployment_bodies():
    body = payloads.candidate_deployment_body("ns", CANDIDATE)
    assert body["name"] == "meta-llama-3-2-1b-instruct"
    assert body["config"]["model"] == "meta/llama-3.2-1b-instruct"
    assert body["config"]["nim_deployment"] == {"image_name": "nvcr.io/nim/meta/llama-3.2-1b-instruct",
                                                "image_tag": "1.8", "pvc_size": "25Gi", "gpu": 1,
                                                "additional_envs": {}}
    with pytest.raises(ValueError, match="gpu"):
        payloads.deployment_body(namespace="n", name="d", model="m", image_name="i", image_tag="t",
                                 pvc_size="1Gi", gpu=0)


def test_payloads_do_not_import_airflow():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(payloads))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(name and name.startswith("airflow") for name in imported)
