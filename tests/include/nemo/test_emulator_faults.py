"""Reliability contract: every fault the emulator injects, met by the real hooks over real HTTP.

5xx bursts are survived by retries (and reported once retries run out), 429 Retry-After is
honoured, slow answers hit the timeout with a clear error, failing jobs are reported as failed,
a deployment that never gets ready stays non-ready, and a lost answer does not start a second job.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from include.flywheel.config import CandidateSettings, CustomizerSettings, TrainingSettings
from include.nemo import payloads
from include.nemo.exceptions import NemoApiError, NemoTimeoutError
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
    NimHook,
)

NS = "flywheel"
BASE_MODEL = "meta/llama-3.2-1b-instruct"


class Waits:
    """Records the retry waits without waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def waits() -> Waits:
    return Waits()


def requests_to(emu, route: str) -> int:
    return emu.state()["requests"].get(route, 0)


def wait_for(emu, check, *, what: str, step: float = 1.0, attempts: int = 200) -> Any:
    for _ in range(attempts):
        value = check()
        if value:
            return value
        emu.advance_clock(step)
        time.sleep(0.01)
    pytest.fail(f"{what}: not reached after {attempts} clock steps")


def training_dataset(tmp_path: Path, name: str) -> str:
    folder = tmp_path / name / "training"
    folder.mkdir(parents=True)
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    (folder / "train_data.jsonl").write_text(json.dumps(row) + "\n")
    datastore = DataStoreHook(retry_delay=0.01)
    datastore.create_namespace(NS)
    datastore.create_dataset_repo(NS, name)
    datastore.upload_folder(NS, name, folder.parent)
    EntityStoreHook(retry_delay=0.01).create_dataset(payloads.dataset_body(NS, name))
    return name


def customization_job(tmp_path: Path, job_name: str) -> tuple[CustomizerHook, dict[str, Any]]:
    dataset = training_dataset(tmp_path, f"ds-{job_name}")
    customizer = CustomizerSettings(target=f"{BASE_MODEL}@2.0")
    hook = CustomizerHook(retry_delay=0.01)
    config = hook.create_config(payloads.customization_config_body(NS, "cfg", customizer, TrainingSettings()))
    body = payloads.customization_job_body(name=job_name, config=config, dataset_namespace=NS, dataset_name=dataset,
                                           output_model=f"{NS}/{job_name}", training=TrainingSettings(epochs=1))
    return hook, body


# -- HTTP faults ------------------------------------------------------------------------------------------


def test_a_5xx_burst_is_survived_by_retries(emu, waits):
    emu.set_faults(bursts=[{"count": 3, "status": 503, "path_prefix": "/v1/namespaces"}])
    hook = EntityStoreHook(retry_limit=5, retry_delay=0.25, sleep=waits)

    assert hook.create_namespace(NS) is True
    assert requests_to(emu, "POST /v1/namespaces") == 4
    assert waits.waits == [0.25, 0.5, 1.0]
    assert emu.state()["faults_injected"] == {"503": 3}


def test_a_5xx_burst_longer_than_the_retries_is_reported(emu, waits):
    emu.set_faults(bursts=[{"count": 10, "status": 500, "path_prefix": "/v1/deployment"}])
    hook = DeploymentHook(retry_limit=3, retry_delay=0.0, sleep=waits)

    with pytest.raises(NemoApiError) as info:
        hook.get_deployment(NS, "anything")
    message = str(info.value)
    assert message.startswith(f"deployment {NS}/anything: GET {emu.base_url}/v1/deployment/model-deployments/")
    assert "HTTP 500" in message and "injected fault" in message
    assert "failed 3 times. Giving up." in message


def test_429_retry_after_is_honoured(emu, waits):
    emu.set_faults(bursts=[{"count": 2, "status": 429, "path_prefix": "/nim/v1/models"}])
    hook = NimHook(retry_limit=4, retry_delay=0.01, sleep=waits)

    assert "meta/llama-3.3-70b-instruct" in hook.list_models()
    # The emulator sends Retry-After: 1; the waits follow it, not the 0.01 s backoff.
    assert waits.waits == [1.0, 1.0]
    assert requests_to(emu, "GET /nim/v1/models") == 3


def test_latency_beyond_the_timeout_is_a_clear_error(emu, waits):
    emu.set_faults(latency=1.5, latency_path_prefix="/v1/namespaces")
    hook = EntityStoreHook(timeout=0.2, retry_limit=2, retry_delay=0.0, sleep=waits)

    with pytest.raises(NemoTimeoutError) as info:
        hook.get_namespace(NS)
    message = str(info.value)
    assert "ReadTimeout" in message and "read=0.2s" in message
    assert "failed 2 times. Giving up." in message
    assert "nemo_default" in message and "raise the timeout" in message
    # Other paths are not slowed down, and the same hook works once the fault is gone.
    emu.clear_faults()
    assert hook.create_namespace(NS) is True


def test_latency_within_the_timeout_is_fine(emu):
    emu.set_faults(latency=0.2)
    assert EntityStoreHook(timeout=5, retry_limit=1).create_namespace(NS) is True


def test_datastore_calls_survive_a_burst(emu, tmp_path, waits):
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "eval_data.jsonl").write_text('{"a": 1}\n')
    datastore = DataStoreHook(retry_limit=4, retry_delay=0.01, sleep=waits)
    datastore.create_namespace(NS)
    # Repo creation is not retried by huggingface_hub itself: the hook's retry policy carries it.
    # (Its commit and pre-upload calls have their own built-in backoff on top.)
    emu.set_faults(bursts=[{"count": 2, "status": 502, "path_prefix": "/v1/hf/api/repos/create"}])

    assert datastore.create_dataset_repo(NS, "ds") == f"{NS}/ds"
    assert waits.waits == [0.01, 0.02]
    assert emu.state()["faults_injected"] == {"502": 2}
    datastore.upload_folder(NS, "ds", folder)
    assert datastore.list_files(NS, "ds") == ["eval_data.jsonl"]


def test_datastore_burst_longer_than_the_retries_is_reported(emu, waits):
    datastore = DataStoreHook(retry_limit=2, retry_delay=0.0, sleep=waits)
    emu.set_faults(bursts=[{"count": 5, "status": 503, "path_prefix": "/v1/hf/api/repos/create"}])
    with pytest.raises(NemoApiError) as info:
        datastore.create_dataset_repo(NS, "ds")
    message = str(info.value)
    assert message.startswith(f"dataset repo {NS}/ds: POST {emu.base_url}/v1/hf/api/repos/create returned HTTP 503")
    assert "failed 2 times. Giving up." in message


async def test_async_client_survives_a_burst(emu, waits):
    emu.set_faults(bursts=[{"count": 2, "status": 503, "path_prefix": "/nim/v1/models"}])
    async with NemoAsyncClient("nim_default", retry_limit=4, retry_delay=0.01, sleep=waits.asleep) as client:
        assert "meta/llama-3.3-70b-instruct" in await client.list_nim_models()
    assert waits.waits == [0.01, 0.02]


async def test_async_client_reports_exhaustion(emu, waits):
    emu.set_faults(bursts=[{"count": 9, "status": 503, "path_prefix": "/v1/evaluation"}])
    async with NemoAsyncClient("nemo_default", retry_limit=2, retry_delay=0.0, sleep=waits.asleep) as client:
        with pytest.raises(NemoApiError, match="HTTP 503.*failed 2 times. Giving up."):
            await client.get_evaluation_job("eval-x")


def test_a_lost_answer_does_not_start_a_second_job(emu, tmp_path, waits):
    hook, body = customization_job(tmp_path, "fw-lost-answer")
    # The server creates the job, then the answer is replaced by a 503 (lost on the way back).
    emu.set_faults(bursts=[{"count": 1, "status": 503, "path_prefix": "/v1/customization/jobs", "method": "POST",
                            "when": "after"}])
    hook = CustomizerHook(retry_limit=3, retry_delay=0.0, sleep=waits)

    job = hook.create_job(body)
    assert job["name"] == "fw-lost-answer"
    assert requests_to(emu, "POST /v1/customization/jobs") == 1
    assert emu.state()["customization_jobs"]["total"] == 1


# -- job and deployment faults ----------------------------------------------------------------------------


def test_a_failing_customization_is_reported_failed(emu, tmp_path):
    emu.set_faults(fail_customizations=["doomed"])
    hook, body = customization_job(tmp_path, "fw-doomed-job")
    job = hook.create_job(body)

    status = wait_for(emu, lambda: (s := hook.get_status(job["id"])).is_terminal() and s, what="job finished")
    assert status is CustomizationStatus.FAILED
    assert not status.is_success()
    details = hook.get_job_status(job["id"])
    assert "injected failure" in json.dumps(details)


def test_a_failing_evaluation_is_reported_failed(emu):
    deployments = DeploymentHook(retry_delay=0.01)
    body = payloads.candidate_deployment_body(NS, CandidateSettings(model_name=BASE_MODEL, customization_enabled=False))
    deployments.create_deployment(body)
    wait_for(emu, lambda: deployments.get_status(NS, body["name"]).is_success(), what="deployment ready")
    emu.set_faults(fail_evaluations=["doomed-eval"])
    hook = EvaluatorHook(retry_delay=0.01)
    config = payloads.generic_eval_config(files_url="hf://datasets/flywheel/none/eval_data.jsonl",
                                          judge=payloads.judge_model(emu.nim_url, "meta/llama-3.3-70b-instruct"))
    job = hook.create_job(payloads.evaluation_job_body(
        namespace=NS, config=config, target=payloads.endpoint_target(emu.nim_url, BASE_MODEL), key="doomed-eval"))

    status = wait_for(emu, lambda: (s := hook.get_status(job["id"])).is_terminal() and s, what="evaluation finished")
    assert status is EvaluationStatus.FAILED
    with pytest.raises(NemoApiError, match="HTTP 409"):
        hook.get_results(job["id"])


def test_a_deployment_that_never_gets_ready_stays_pending(emu):
    emu.set_faults(stuck_deployments=["stuck"])
    hook = DeploymentHook(retry_delay=0.01)
    body = payloads.deployment_body(namespace=NS, name="stuck-nim", model=BASE_MODEL, image_name="nvcr.io/nim/x",
                                    image_tag="1", pvc_size="1Gi", gpu=1)
    hook.create_deployment(body)
    emu.advance_clock(3600)

    payload = hook.get_deployment(NS, "stuck-nim")
    status = hook.get_status(NS, "stuck-nim")
    assert status is DeploymentStatus.PENDING
    assert not status.is_terminal()
    assert "never gets ready" in payload["status_details"]["description"]
    assert not NimHook().is_model_served(BASE_MODEL)
    assert hook.delete_deployment(NS, "stuck-nim") is True


def test_a_deployment_that_fails_is_terminal_and_not_ready(emu):
    emu.set_faults(fail_deployments=["broken"])
    hook = DeploymentHook(retry_delay=0.01)
    body = payloads.deployment_body(namespace=NS, name="broken-nim", model=BASE_MODEL, image_name="nvcr.io/nim/x",
                                    image_tag="1", pvc_size="1Gi", gpu=1)
    hook.create_deployment(body)
    status = wait_for(emu, lambda: (s := hook.get_status(NS, "broken-nim")).is_terminal() and s, what="deployment ended")
    assert status is DeploymentStatus.FAILED and not status.is_success()
