"""Contract tests: the hooks against the NeMo emulator, over real HTTP, with no mocks.

The emulator runs as a subprocess (one per module); each test starts from a reset state.
Connections come from ``AIRFLOW_CONN_*`` variables, so hooks resolve them the real way.
Time-driven state machines are moved forward with the emulator's clock, never by sleeping.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from include.flywheel.config import CandidateSettings, CustomizerSettings, TrainingSettings
from include.nemo import payloads
from include.nemo.exceptions import NemoNotFoundError
from include.nemo.hooks import (
    CustomizationStatus,
    CustomizerHook,
    DataStoreHook,
    DeploymentHook,
    DeploymentStatus,
    EntityStoreHook,
    EvaluationStatus,
    EvaluatorHook,
    NemoAsyncClient,
    NemoHook,
    NimHook,
    customization_status_of,
    deployment_status_of,
)

NS = "flywheel"
BASE_MODEL = "meta/llama-3.2-1b-instruct"
JUDGE_MODEL = "meta/llama-3.3-70b-instruct"
EMBEDDING_MODEL = "nvidia/llama-3.2-nv-embedqa-1b-v2"
FAST = {"retry_limit": 4, "retry_delay": 0.01}

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Get the weather forecast for a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "Get the current time in a timezone",
                                      "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}},
                                                     "required": ["timezone"]}}},
]


def log_record(i: int) -> dict[str, Any]:
    """A tool-calling log record (request + response), alternating between the two tools."""
    if i % 2 == 0:
        city = ["Paris", "Berlin", "Tokyo", "Lima"][i // 2 % 4]
        question, name, args = f"What is the weather forecast in {city}?", "get_weather", {"city": city}
    else:
        zone = ["UTC", "CET", "JST", "PST"][i // 2 % 4]
        question, name, args = f"What time is it now in the {zone} timezone?", "get_time", {"timezone": zone}
    return {
        "workload_id": "w", "client_id": "c", "timestamp": 1767225600 + i,
        "request": {"model": BASE_MODEL, "messages": [{"role": "user", "content": question}], "tools": TOOLS},
        "response": {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{i}", "type": "function",
             "function": {"name": name, "arguments": json.dumps(args)}}]}}]},
    }


def write_dataset(folder: Path, n: int = 8) -> Path:
    """eval_data.jsonl + training/train_data.jsonl + validation/val_data.jsonl, as the flywheel writes them."""
    records = [log_record(i) for i in range(n)]
    (folder / "training").mkdir(parents=True)
    (folder / "validation").mkdir()
    (folder / "eval_data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:4]))
    train = [{"messages": r["request"]["messages"] + [r["response"]["choices"][0]["message"]], "tools": TOOLS}
             for r in records]
    (folder / "training" / "train_data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train[:-2]))
    (folder / "validation" / "val_data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train[-2:]))
    return folder


def wait_for(emu, check: Callable[[], Any], *, what: str, step: float = 1.0, attempts: int = 300) -> Any:
    """Advance the emulator's clock until ``check()`` returns something truthy (bounded)."""
    for _ in range(attempts):
        value = check()
        if value:
            return value
        emu.advance_clock(step)
        time.sleep(0.01)  # let the emulator's worker threads run
    pytest.fail(f"{what}: not reached after {attempts} clock steps")


def upload_dataset(tmp_path: Path, name: str) -> str:
    datastore = DataStoreHook(**FAST)
    datastore.create_namespace(NS)
    datastore.create_dataset_repo(NS, name)
    datastore.upload_folder(NS, name, write_dataset(tmp_path / name))
    EntityStoreHook(**FAST).create_dataset(payloads.dataset_body(NS, name, description="contract test"))
    return name


def deploy_ready(emu, model: str = BASE_MODEL) -> dict[str, Any]:
    hook = DeploymentHook(**FAST)
    body = payloads.candidate_deployment_body(NS, CandidateSettings(model_name=model, customization_enabled=False))
    hook.create_deployment(body)
    wait_for(emu, lambda: hook.get_status(NS, body["name"]).is_success(), what=f"deployment of {model}")
    return body


# -- connections ------------------------------------------------------------------------------------------


def test_every_connection_tests_ok(emu):
    for hook in (NemoHook(), DataStoreHook(), NimHook()):
        ok, message = hook.test_connection()
        assert ok, message


def test_test_connection_fails_clearly_against_a_wrong_base_url(emu, set_connection):
    set_connection("nim_default", conn_type="nim", host=emu.base_url + "/not-the-nim")
    ok, message = NimHook().test_connection()
    assert not ok and "HTTP 404" in message


@pytest.mark.parametrize(("conn_type", "url_of"), [("nemo", "base_url"), ("nemo_datastore", "datastore_url"),
                                                  ("nim", "nim_url")])
def test_airflow_tests_an_unsaved_connection_through_the_hook(emu, conn_type, url_of):
    """The UI's Test button: Airflow resolves the hook from the registered provider and calls test_connection."""
    from airflow.sdk import Connection
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    if conn_type not in ProvidersManagerTaskRuntime().hooks:
        pytest.skip("the project is not installed (pip install -e .), so its connection types are not registered")
    conn = Connection(conn_id=f"unsaved_{conn_type}", conn_type=conn_type, host=getattr(emu, url_of))
    ok, message = conn.test_connection()
    assert ok, message
    assert f"unsaved_{conn_type}" in message


# -- Entity Store + Data Store ----------------------------------------------------------------------------


def test_namespace_dataset_and_hf_round_trip(emu, tmp_path):
    entity_store, datastore = EntityStoreHook(**FAST), DataStoreHook(**FAST)
    assert entity_store.create_namespace(NS) is True
    assert entity_store.create_namespace(NS) is False
    assert entity_store.get_namespace(NS)["id"] == NS
    assert datastore.create_namespace(NS) is True
    assert datastore.create_namespace(NS) is False

    name = payloads.dataset_repo_name("eval", "w", payloads.run_key("dag", "run"))
    folder = write_dataset(tmp_path / "upload")
    assert datastore.create_dataset_repo(NS, name) == f"{NS}/{name}"
    assert datastore.create_dataset_repo(NS, name) == f"{NS}/{name}"  # exist_ok
    datastore.upload_folder(NS, name, folder)
    datastore.upload_files(NS, name, {"extra/notes.txt": b"hello"})
    expected = {"eval_data.jsonl", "training/train_data.jsonl", "validation/val_data.jsonl", "extra/notes.txt"}
    assert set(datastore.list_files(NS, name)) == expected

    out = tmp_path / "download"
    for path in sorted(expected - {"extra/notes.txt"}):
        local = datastore.download_file(NS, name, path, out)
        assert local.read_bytes() == (folder / path).read_bytes()
    assert datastore.download_file(NS, name, "extra/notes.txt", out).read_bytes() == b"hello"

    registered = entity_store.create_dataset(payloads.dataset_body(NS, name, description="eval set"))
    assert registered["files_url"] == f"hf://datasets/{NS}/{name}"
    again = entity_store.create_dataset(payloads.dataset_body(NS, name))
    assert again["id"] == registered["id"]
    assert entity_store.get_dataset(NS, name)["description"] == "eval set"
    assert entity_store.update_dataset(NS, name, {"description": "changed"})["description"] == "changed"
    assert entity_store.delete_dataset(NS, name) is True
    assert entity_store.delete_dataset(NS, name) is False
    with pytest.raises(NemoNotFoundError, match=f"dataset {NS}/{name}"):
        entity_store.get_dataset(NS, name)


def test_download_of_a_missing_file_is_a_not_found_error(emu, tmp_path):
    datastore = DataStoreHook(**FAST)
    datastore.create_namespace(NS)
    datastore.create_dataset_repo(NS, "empty-repo")
    with pytest.raises(NemoNotFoundError, match="no-such-file.jsonl"):
        datastore.download_file(NS, "empty-repo", "no-such-file.jsonl", tmp_path)


# -- Deployment Management --------------------------------------------------------------------------------


def test_deployment_lifecycle(emu):
    hook = DeploymentHook(**FAST)
    body = payloads.candidate_deployment_body(NS, CandidateSettings(model_name=BASE_MODEL, customization_enabled=False))
    created = hook.create_deployment(body)
    assert deployment_status_of(created) in (DeploymentStatus.CREATED, DeploymentStatus.PENDING)
    assert hook.create_deployment(body)["name"] == body["name"]  # 409 -> the existing one
    assert [d["name"] for d in hook.list_deployments()] == [body["name"]]

    wait_for(emu, lambda: hook.get_status(NS, body["name"]).is_success(), what="deployment ready")
    assert NimHook(**FAST).is_model_served(BASE_MODEL)

    assert hook.delete_deployment(NS, body["name"]) is True
    assert hook.delete_deployment(NS, body["name"]) is False
    with pytest.raises(NemoNotFoundError):
        hook.get_deployment(NS, body["name"])
    assert not NimHook(**FAST).is_model_served(BASE_MODEL)


# -- Customizer -------------------------------------------------------------------------------------------


def _customization(tmp_path: Path, step: str) -> tuple[CustomizerHook, dict[str, Any]]:
    dataset = upload_dataset(tmp_path, f"flywheel-train-w-{step}")
    customizer_settings = CustomizerSettings(target=f"{BASE_MODEL}@2.0")
    candidate = CandidateSettings(model_name=BASE_MODEL, customizer=customizer_settings)
    training = TrainingSettings(epochs=2, batch_size=4)
    hook = CustomizerHook(**FAST)
    config_name = payloads.customization_config_name(candidate, training)
    config_ref = hook.create_config(payloads.customization_config_body(NS, config_name, customizer_settings, training))
    assert hook.create_config(payloads.customization_config_body(NS, config_name, customizer_settings, training)) == config_ref
    name = payloads.job_name("flywheel__w", "manual__1", BASE_MODEL, step)
    body = payloads.customization_job_body(
        name=name, config=config_ref, dataset_namespace=NS, dataset_name=dataset,
        output_model=f"{NS}/{name}", training=training)
    return hook, body


def test_customization_job_to_completion_and_model_sync(emu, tmp_path):
    deploy_ready(emu)
    hook, body = _customization(tmp_path, "customize")
    job = hook.create_job(body)
    assert job["id"] and job["output_model"] == body["output_model"]

    # A retried task finds its job by the deterministic name.
    assert hook.find_job_by_name(body["name"])["id"] == job["id"]

    payload = wait_for(emu, lambda: (p := hook.get_job_status(job["id"])) and
                       customization_status_of(p).is_terminal() and p, what="customization finished")
    assert customization_status_of(payload) is CustomizationStatus.COMPLETED
    assert payload["percentage_done"] == 100
    assert payload["epochs_completed"] == 2
    assert isinstance(payload["status_logs"], list)

    namespace, model_name = body["output_model"].split("/")
    assert EntityStoreHook(**FAST).get_model(namespace, model_name)
    nim = NimHook(**FAST)
    wait_for(emu, lambda: nim.is_model_served(body["output_model"]), what="customized model served")
    answer = nim.chat_completion(body["output_model"], log_record(0)["request"]["messages"], tools=TOOLS)
    assert answer["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"

    assert hook.cancel_job(job["id"]) is False  # already completed: nothing to cancel
    assert hook.delete_config(*body["config"].split("/")) is True
    assert hook.delete_config(*body["config"].split("/")) is False


def test_customization_cancel(emu, tmp_path):
    hook, body = _customization(tmp_path, "cancel-me")
    job = hook.create_job(body)
    assert hook.cancel_job(job["id"]) is True
    status = wait_for(emu, lambda: (s := hook.get_status(job["id"])).is_terminal() and s, what="cancelled")
    assert status is CustomizationStatus.CANCELLED
    hook.cancel_job(job["id"])  # cancelling twice is harmless (the emulator, like NeMo, answers 200 or 409)
    assert hook.get_status(job["id"]) is CustomizationStatus.CANCELLED


def test_unknown_customization_job_is_not_found(emu):
    with pytest.raises(NemoNotFoundError, match="customization job cust-nope"):
        CustomizerHook(**FAST).get_job_status("cust-nope")


# -- Evaluator --------------------------------------------------------------------------------------------


def _evaluation_body(emu, dataset: str, config_fn, key: str) -> dict[str, Any]:
    config = config_fn(files_url=payloads.hf_files_url(NS, dataset, payloads.EVAL_FILE),
                       judge=payloads.judge_model(emu.nim_url, JUDGE_MODEL))
    return payloads.evaluation_job_body(namespace=NS, config=config,
                                        target=payloads.endpoint_target(emu.nim_url, BASE_MODEL), key=key)


def test_tool_calling_evaluation_results(emu, tmp_path):
    deploy_ready(emu)
    dataset = upload_dataset(tmp_path, "flywheel-eval-w-tc")
    hook = EvaluatorHook(**FAST)
    key = payloads.flywheel_key("flywheel__w", "manual__1", BASE_MODEL, "base-eval")
    job = hook.create_job(_evaluation_body(emu, dataset, payloads.tool_calling_eval_config, key))
    assert hook.find_job_by_label("flywheel_key", key)["id"] == job["id"]

    status = wait_for(emu, lambda: (s := hook.get_status(job["id"])).is_terminal() and s, what="evaluation finished")
    assert status is EvaluationStatus.COMPLETED, hook.get_job(job["id"])
    assert hook.get_job(job["id"])["status_details"]["progress"] == 100

    results = hook.get_results(job["id"])
    assert results["job"] == job["id"]
    metrics = results["tasks"][payloads.TOOL_CALLING_TASK]["metrics"]
    accuracy = metrics["tool-calling-accuracy"]["scores"]
    for score in ("function_name_accuracy", "function_name_and_args_accuracy"):
        assert 0.0 <= accuracy[score]["value"] <= 1.0
        assert accuracy[score]["stats"]["count"] == 4
    rating = metrics["correctness"]["scores"]["rating"]
    assert 0.0 <= rating["value"] <= 1.0

    assert hook.delete_job(job["id"]) is True
    assert hook.delete_job(job["id"]) is False


def test_generic_evaluation_scores_similarity(emu, tmp_path):
    deploy_ready(emu)
    dataset = upload_dataset(tmp_path, "flywheel-eval-w-gen")
    hook = EvaluatorHook(**FAST)
    job = hook.create_job(_evaluation_body(emu, dataset, payloads.generic_eval_config, "k-generic"))
    wait_for(emu, lambda: hook.get_status(job["id"]).is_terminal(), what="evaluation finished")
    results = hook.get_results(job["id"])
    similarity = results["tasks"][payloads.GENERIC_TASK]["metrics"]["llm-judge"]["scores"]["similarity"]
    assert 1.0 <= similarity["value"] <= 10.0


def test_results_before_completion_explain_themselves(emu, tmp_path):
    deploy_ready(emu)
    dataset = upload_dataset(tmp_path, "flywheel-eval-w-early")
    hook = EvaluatorHook(**FAST)
    job = hook.create_job(_evaluation_body(emu, dataset, payloads.tool_calling_eval_config, "k-early"))
    with pytest.raises(Exception, match="HTTP 409.*check the job status first"):
        hook.get_results(job["id"])
    assert hook.cancel_job(job["id"]) is True


# -- NIM --------------------------------------------------------------------------------------------------


def test_nim_hook_and_the_real_openai_client_agree(emu):
    deploy_ready(emu)
    from openai import OpenAI

    nim = NimHook(**FAST)
    assert {BASE_MODEL, JUDGE_MODEL, EMBEDDING_MODEL} <= set(nim.list_models())
    client = OpenAI(base_url=emu.nim_url + "/v1", api_key="not-used", max_retries=0, timeout=10)
    assert {m.id for m in client.models.list()} == set(nim.list_models())

    messages = log_record(1)["request"]["messages"]
    ours = nim.chat_completion(BASE_MODEL, messages, tools=TOOLS)
    theirs = client.chat.completions.create(model=BASE_MODEL, messages=messages, tools=TOOLS)
    assert ours["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == \
        theirs.choices[0].message.tool_calls[0].function.name

    vectors = nim.embed(EMBEDDING_MODEL, ["a question", "a passage"], input_type="query")
    reference = client.embeddings.create(model=EMBEDDING_MODEL, input=["a question", "a passage"])
    assert len(vectors) == 2
    assert [round(x, 5) for x in vectors[0]] == [round(x, 5) for x in reference.data[0].embedding]


def test_chat_with_an_unserved_model_is_a_clear_error(emu):
    with pytest.raises(Exception, match="not served"):
        NimHook(**FAST).chat_completion("nobody/nothing", [{"role": "user", "content": "hi"}])


# -- Async client -----------------------------------------------------------------------------------------


async def test_async_client_polls_a_deployment_and_the_nim(emu):
    hook = DeploymentHook(**FAST)
    body = payloads.candidate_deployment_body(NS, CandidateSettings(model_name=BASE_MODEL, customization_enabled=False))
    hook.create_deployment(body)
    async with NemoAsyncClient("nemo_default", **FAST) as client, NemoAsyncClient("nim_default", **FAST) as nim:
        for _ in range(100):
            status = deployment_status_of(await client.get_deployment(NS, body["name"]))
            if status.is_terminal():
                break
            emu.advance_clock(1.0)
        assert status is DeploymentStatus.READY
        assert await nim.is_model_served(BASE_MODEL)
        assert await client.delete_deployment(NS, body["name"]) is True
        assert await client.delete_deployment(NS, body["name"]) is False
        assert not await nim.is_model_served(BASE_MODEL)
