"""Fault injection against the real subprocess: bursts, rates, latency, failing jobs and deployments."""

from __future__ import annotations

import httpx
import pytest
from huggingface_hub import HfApi

from include.nemo_emulator.faults import Burst, FaultInjector, FaultSettings


def test_burst_of_503_hits_only_its_prefix_then_stops(emu):
    emu.set_faults(bursts=[{"count": 2, "status": 503, "path_prefix": "/v1/namespaces"}])
    client = emu.client
    assert client.get("/nim/v1/models").status_code == 200  # other prefix: untouched
    first, second = client.post("/v1/namespaces", json={"id": "a"}), client.post("/v1/namespaces", json={"id": "a"})
    assert (first.status_code, second.status_code) == (503, 503)
    assert "injected fault" in first.json()["detail"]
    assert client.post("/v1/namespaces", json={"id": "a"}).status_code == 200  # burst used up; nothing was created
    assert emu.state()["faults_injected"] == {"503": 2}


def test_429_burst_carries_retry_after(emu):
    emu.set_faults(bursts=[{"count": 1, "status": 429}])
    response = emu.client.get("/v1/datasets")
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
    assert emu.client.get("/v1/datasets").status_code == 200


def test_after_burst_runs_the_handler_then_loses_the_answer(emu):
    emu.set_faults(bursts=[{"count": 1, "status": 500, "path_prefix": "/v1/namespaces", "method": "POST",
                            "when": "after"}])
    assert emu.client.post("/v1/namespaces", json={"id": "lost"}).status_code == 500
    # The namespace was created although the client saw a 500: a blind retry now gets 409.
    assert emu.client.post("/v1/namespaces", json={"id": "lost"}).status_code == 409


def test_error_rate_spares_health_and_the_control_api(emu):
    emu.set_faults(error_rate=1.0, error_statuses=[502])
    assert emu.client.get("/v1/datasets").status_code == 502
    assert emu.client.get("/health").status_code == 200
    assert emu.state()["faults_injected"]["502"] >= 1  # the control API still answers
    emu.clear_faults()
    assert emu.client.get("/v1/datasets").status_code == 200


def test_latency_makes_a_short_client_timeout_expire(emu):
    emu.set_faults(latency=2.0, latency_path_prefix="/v1/datasets")
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(emu.base_url + "/v1/datasets", timeout=0.3)
    emu.clear_faults()
    assert httpx.get(emu.base_url + "/v1/datasets", timeout=5).status_code == 200


def _wait_status(emu, samples, path: str, key: str, wanted: str) -> dict:
    def check():
        body = emu.client.get(path).json()
        value = body
        for part in key.split("."):
            value = value[part]
        return body if value == wanted else None

    return samples.wait_until(check, what=f"{path} {key} == {wanted}")


def _upload(emu, repo: str, files: dict[str, bytes]) -> None:
    api = HfApi(endpoint=emu.hf_endpoint, token="t")
    api.create_repo(repo, repo_type="dataset")
    for path, content in files.items():
        api.upload_file(path_or_fileobj=content, path_in_repo=path, repo_id=repo, repo_type="dataset")


def test_injected_customization_failure(emu, samples):
    emu.set_faults(fail_customizations=["doomed"])
    _upload(emu, "fw/t", {"training/train_data.jsonl": samples.jsonl(samples.training_rows(4))})
    emu.client.post("/v1/datasets", json={"name": "t", "namespace": "fw", "files_url": "hf://datasets/fw/t"})
    emu.client.post("/v1/customization/configs", json={"name": "c", "namespace": "fw", "target": samples.base_model})
    job = emu.client.post("/v1/customization/jobs", json={"name": "doomed-job", "config": "fw/c",
                                                          "dataset": "fw/t", "output_model": "fw/m"}).json()
    emu.advance_clock(5)
    status = _wait_status(emu, samples, f"/v1/customization/jobs/{job['id']}/status", "status", "failed")
    assert "injected failure (fault pattern 'doomed')" in status["status_logs"][-1]["detail"]
    assert emu.state()["customization_jobs"] == {"total": 1, "by_status": {"failed": 1}}
    assert emu.client.get("/v1/models/fw/m").status_code == 404


def test_injected_evaluation_failure_matches_custom_fields(emu, samples):
    emu.set_faults(fail_evaluations=["run-bad"])
    _upload(emu, "fw/eval-a", {"eval_data.jsonl": samples.jsonl(samples.eval_records(2))})
    body = {"config": samples.tool_calling_config("fw", "eval-a"),
            "target": {"type": "model", "model": samples.judge_model}}
    bad = emu.client.post("/v1/evaluation/jobs", json={**body, "custom_fields": {"flywheel_key": "w-run-bad"}}).json()
    good = emu.client.post("/v1/evaluation/jobs", json={**body, "custom_fields": {"flywheel_key": "w-run-ok"}}).json()
    emu.advance_clock(5)
    failed = _wait_status(emu, samples, f"/v1/evaluation/jobs/{bad['id']}", "status", "failed")
    assert "injected failure (fault pattern 'run-bad')" in failed["status_details"]["message"]
    _wait_status(emu, samples, f"/v1/evaluation/jobs/{good['id']}", "status", "completed")


def test_stuck_and_failing_deployments(emu, samples):
    emu.set_faults(stuck_deployments=["stuck"], fail_deployments=["broken"])
    for name in ("stuck-nim", "broken-nim", "good-nim"):
        created = emu.client.post("/v1/deployment/model-deployments", json={
            "name": name, "namespace": "fw", "config": {"model": f"meta/{name}"}})
        assert created.status_code == 200
    emu.advance_clock(100)
    statuses = {d["name"]: d["status_details"]["status"]
                for d in emu.client.get("/v1/deployment/model-deployments").json()["data"]}
    assert statuses == {"stuck-nim": "pending", "broken-nim": "failed", "good-nim": "ready"}
    served = [m["id"] for m in emu.client.get("/nim/v1/models").json()["data"]]
    assert "meta/good-nim" in served and "meta/stuck-nim" not in served and "meta/broken-nim" not in served


def test_injector_unit_bursts_are_consumed_in_order():
    injector = FaultInjector(FaultSettings(bursts=[Burst(count=1, status=503, method="GET"),
                                                   Burst(count=1, status=429)]))
    assert injector.draw("POST", "/x") == (429, "before")  # the GET-only burst does not match a POST
    assert injector.draw("GET", "/x") == (503, "before")
    assert injector.draw("GET", "/x") is None
    injector.update({"bursts": [{"count": 1, "status": 500, "when": "after"}]})
    assert injector.draw("GET", "/y") == (500, "after")
    injector.reset()
    assert injector.settings.bursts[0].count == 1  # back to the start-up faults
    with pytest.raises(ValueError):
        Burst(count=1, status=200)
