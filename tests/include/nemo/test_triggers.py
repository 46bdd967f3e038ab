"""Triggers iterated the way the triggerer does (``[e async for e in trigger.run()]``) against the emulator."""

from __future__ import annotations

import asyncio
import math
import socket
import time

import pytest

from include.nemo.hooks import CustomizerHook, EvaluatorHook
from include.nemo.triggers import (
    NemoCustomizationJobTrigger,
    NemoDeploymentTrigger,
    NemoEvaluationJobTrigger,
    NimModelServedTrigger,
)
from tests.include.nemo.emulator_support import (  # noqa: F401 - fixtures
    BASE_MODEL,
    JUDGE_MODEL,
    NAMESPACE,
    POLL,
    SECRET,
    _nemo_emulator_server,
    customization_bodies,
    deploy_ready,
    deployment_spec,
    eval_config,
    eval_dataset,
    nemo_emu,
    run_trigger,
    training_dataset,
)

FAR = 4102444800.0  # 2100-01-01: a deadline that never passes in a test


def soon(seconds: float = 0.4) -> float:
    return time.time() + seconds


def only_event(trigger) -> dict:
    events = run_trigger(trigger)
    assert len(events) == 1, events
    return events[0].payload


def start_customization(name: str = "fw-customize-a") -> str:
    dataset = training_dataset()
    config, job = customization_bodies(name, dataset)
    with CustomizerHook() as hook:
        hook.create_config(config)
        return hook.create_job(job)["id"]


def start_evaluation(target_model: str = BASE_MODEL, key: str = "k1") -> str:
    body = {"namespace": NAMESPACE, "config": eval_config("eval-ds"),
            "target": {"type": "model", "model": target_model}, "custom_fields": {"flywheel_key": key}}
    with EvaluatorHook() as hook:
        return hook.create_job(body)["id"]


# -- serialize() is pinned: the triggerer rebuilds triggers from exactly this ----------------------------------


def test_serialize_is_pinned_for_every_trigger():
    assert NemoCustomizationJobTrigger("nemo_default", "cust-1", 15, 1700000000.5).serialize() == (
        "include.nemo.triggers.NemoCustomizationJobTrigger",
        {"conn_id": "nemo_default", "job_id": "cust-1", "poll_interval": 15.0, "deadline": 1700000000.5,
         "retry_limit": 5, "retry_delay": 1.0},
    )
    assert NemoEvaluationJobTrigger("nemo_default", "eval-1", 10.0, 1700000000.0, retry_limit=3).serialize() == (
        "include.nemo.triggers.NemoEvaluationJobTrigger",
        {"conn_id": "nemo_default", "job_id": "eval-1", "poll_interval": 10.0, "deadline": 1700000000.0,
         "retry_limit": 3, "retry_delay": 1.0},
    )
    assert NemoDeploymentTrigger("nemo_default", "ns", "dep", 5, 1700000000, retry_delay=0.5).serialize() == (
        "include.nemo.triggers.NemoDeploymentTrigger",
        {"conn_id": "nemo_default", "namespace": "ns", "name": "dep", "poll_interval": 5.0, "deadline": 1700000000.0,
         "retry_limit": 5, "retry_delay": 0.5},
    )
    assert NimModelServedTrigger("nim_default", "ns/model", 5, 1700000000).serialize() == (
        "include.nemo.triggers.NimModelServedTrigger",
        {"conn_id": "nim_default", "model_id": "ns/model", "poll_interval": 5.0, "deadline": 1700000000.0,
         "retry_limit": 5, "retry_delay": 1.0},
    )
    assert NimModelServedTrigger(
        "nim_default", "m", 5, 1700000000, kill_deployment="ns/dep", nemo_conn_id="nemo_default"
    ).serialize()[1] == {"conn_id": "nim_default", "model_id": "m", "kill_deployment": "ns/dep",
                         "nemo_conn_id": "nemo_default", "poll_interval": 5.0, "deadline": 1700000000.0,
                         "retry_limit": 5, "retry_delay": 1.0}


def test_serialized_kwargs_rebuild_an_equal_trigger():
    trigger = NemoDeploymentTrigger("nemo_default", "ns", "dep", 5, 1700000000.0, retry_limit=2, retry_delay=0.1)
    classpath, kwargs = trigger.serialize()
    assert NemoDeploymentTrigger(**kwargs).serialize() == (classpath, kwargs)


@pytest.mark.parametrize(
    ("build", "complaint"),
    [
        (lambda: NemoCustomizationJobTrigger("", "job", 1, FAR), "conn_id"),
        (lambda: NemoCustomizationJobTrigger("nemo_default", None, 1, FAR), "job_id"),
        (lambda: NemoEvaluationJobTrigger("nemo_default", "job", 0, FAR), "poll_interval"),
        (lambda: NemoEvaluationJobTrigger("nemo_default", "job", 1, math.nan), "deadline"),
        (lambda: NemoEvaluationJobTrigger("nemo_default", "job", 1, "tomorrow"), "deadline"),
        (lambda: NemoDeploymentTrigger("nemo_default", "ns", "", 1, FAR), "name"),
        (lambda: NemoDeploymentTrigger("nemo_default", "ns", "dep", True, FAR), "poll_interval"),
        (lambda: NimModelServedTrigger("nim_default", "m", 1, FAR, retry_limit=0), "retry_limit"),
        (lambda: NimModelServedTrigger("nim_default", "m", 1, FAR, kill_deployment="ns/dep"), "nemo_conn_id"),
        (lambda: NimModelServedTrigger("nim_default", "m", 1, FAR, kill_deployment="dep", nemo_conn_id="x"),
         "kill_deployment"),
    ],
)
def test_bad_kwargs_are_rejected_naming_the_field(build, complaint):
    with pytest.raises(ValueError, match=complaint):
        build()


# -- customization ------------------------------------------------------------------------------------------------


def test_customization_success(nemo_emu):
    job_id = start_customization()
    event = only_event(NemoCustomizationJobTrigger("nemo_default", job_id, POLL, soon(20), retry_delay=0.01))
    assert event["status"] == "success"
    assert event["job_id"] == job_id
    assert event["percentage_done"] == 100.0
    assert event["remote_status"] == "completed"


def test_customization_failure_carries_the_reason(nemo_emu):
    nemo_emu.set_faults(fail_customizations=["doomed"])
    job_id = start_customization("fw-customize-doomed")
    event = only_event(NemoCustomizationJobTrigger("nemo_default", job_id, POLL, soon(20)))
    assert event["status"] == "failed"
    assert job_id in event["message"]
    assert "injected failure" in event["message"]


def test_customization_cancelled_elsewhere_is_a_cancelled_event(nemo_emu):
    nemo_emu.configure(job=30)
    job_id = start_customization()
    with CustomizerHook() as hook:
        hook.cancel_job(job_id)
    event = only_event(NemoCustomizationJobTrigger("nemo_default", job_id, POLL, soon(20)))
    assert event["status"] == "cancelled"


def test_deadline_gives_a_timeout_event_with_the_last_progress(nemo_emu):
    nemo_emu.configure(job=60)
    job_id = start_customization()
    event = only_event(NemoCustomizationJobTrigger("nemo_default", job_id, POLL, soon(0.3)))
    assert event["status"] == "timeout"
    assert event["job_id"] == job_id
    assert event["remote_status"] in ("created", "pending", "running")
    assert event["percentage_done"] < 100
    assert "deadline" in event["message"]
    # The trigger only reports: the job keeps running (the operator decides what to do).
    assert nemo_emu.state()["customization_jobs"]["by_status"].get("completed", 0) == 0


def test_a_5xx_burst_is_survived(nemo_emu):
    job_id = start_customization()
    nemo_emu.set_faults(bursts=[{"count": 3, "status": 503, "path_prefix": "/v1/customization/jobs"}])
    event = only_event(NemoCustomizationJobTrigger("nemo_default", job_id, POLL, soon(20), retry_delay=0.01))
    assert event["status"] == "success"
    assert nemo_emu.state()["faults_injected"] == {"503": 3}


def test_a_persistent_api_failure_is_one_error_event(nemo_emu):
    job_id = start_customization()
    nemo_emu.set_faults(bursts=[{"count": 1000, "status": 503, "path_prefix": "/v1/customization/jobs"}])
    event = only_event(
        NemoCustomizationJobTrigger("nemo_default", job_id, POLL, soon(20), retry_limit=3, retry_delay=0.01)
    )
    assert event["status"] == "error"
    assert "503" in event["message"] and "3 times" in event["message"]
    assert nemo_emu.state()["faults_injected"] == {"503": 3}


def test_unreachable_service_is_an_error_event(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    monkeypatch.setenv("AIRFLOW_CONN_NEMO_DOWN", f'{{"conn_type": "nemo", "host": "http://127.0.0.1:{port}"}}')
    event = only_event(NemoCustomizationJobTrigger("nemo_down", "cust-1", POLL, soon(20), retry_limit=2,
                                                   retry_delay=0.01))
    assert event["status"] == "error"
    assert "cust-1" in event["message"]


def test_on_kill_cancels_the_customization_job(nemo_emu):
    nemo_emu.configure(job=60)
    job_id = start_customization()
    trigger = NemoCustomizationJobTrigger("nemo_default", job_id, POLL, FAR)
    asyncio.run(trigger.on_kill())
    assert nemo_emu.state()["customization_jobs"]["by_status"] == {"cancelled": 1}


def test_on_kill_while_running_cancels_the_job(nemo_emu):
    """The triggerer cancels run() and then calls on_kill(): the job ends cancelled."""
    nemo_emu.configure(job=60)
    job_id = start_customization()
    trigger = NemoCustomizationJobTrigger("nemo_default", job_id, POLL, FAR)

    async def kill_while_waiting() -> None:
        task = asyncio.ensure_future(trigger.run().__anext__())
        await asyncio.sleep(0.3)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await trigger.on_kill()

    asyncio.run(kill_while_waiting())
    assert nemo_emu.state()["customization_jobs"]["by_status"] == {"cancelled": 1}


def test_on_kill_of_a_finished_job_is_harmless(nemo_emu):
    nemo_emu.set_faults(fail_customizations=["doomed"])
    job_id = start_customization("fw-customize-doomed")
    assert only_event(NemoCustomizationJobTrigger("nemo_default", job_id, POLL, soon(20)))["status"] == "failed"
    asyncio.run(NemoCustomizationJobTrigger("nemo_default", job_id, POLL, FAR).on_kill())
    assert nemo_emu.state()["customization_jobs"]["by_status"] == {"failed": 1}


# -- evaluation ---------------------------------------------------------------------------------------------------


def test_evaluation_of_an_unserved_model_fails_with_the_reason(nemo_emu):
    job_id = start_evaluation(target_model="nobody/serves-this")
    event = only_event(NemoEvaluationJobTrigger("nemo_default", job_id, POLL, soon(20)))
    assert event["status"] == "failed"
    assert event["job_id"] == job_id
    assert "serves-this" in event["message"]


def test_evaluation_success(nemo_emu):
    eval_dataset()
    deploy_ready(nemo_emu)
    job_id = start_evaluation()
    event = only_event(NemoEvaluationJobTrigger("nemo_default", job_id, POLL, soon(20)))
    assert event["status"] == "success", event
    assert event["progress"] == 100.0


def test_evaluation_on_kill_cancels(nemo_emu):
    nemo_emu.configure(job=60)
    job_id = start_evaluation()
    asyncio.run(NemoEvaluationJobTrigger("nemo_default", job_id, POLL, FAR).on_kill())
    assert nemo_emu.state()["evaluation_jobs"]["by_status"] == {"cancelled": 1}
    event = only_event(NemoEvaluationJobTrigger("nemo_default", job_id, POLL, soon(20)))
    assert event["status"] == "cancelled"


# -- deployments --------------------------------------------------------------------------------------------------


def create_deployment(spec: dict | None = None) -> dict:
    from include.nemo import payloads
    from include.nemo.hooks import DeploymentHook

    spec = spec or deployment_spec()
    with DeploymentHook() as hook:
        hook.create_deployment(payloads.deployment_body(**spec))
    return spec


def test_deployment_becomes_ready(nemo_emu):
    spec = create_deployment()
    deadline = soon(20)
    event = only_event(NemoDeploymentTrigger("nemo_default", NAMESPACE, spec["name"], POLL, deadline))
    assert event == {"status": "success", "namespace": NAMESPACE, "name": spec["name"],
                     "message": f"Deployment {NAMESPACE}/{spec['name']} is ready.", "remote_status": "ready",
                     "description": "the NIM is serving the model", "deadline": deadline}


def test_deployment_that_never_gets_ready_times_out(nemo_emu):
    nemo_emu.set_faults(stuck_deployments=["stuck"])
    spec = create_deployment(deployment_spec(name="stuck-nim"))
    event = only_event(NemoDeploymentTrigger("nemo_default", NAMESPACE, spec["name"], POLL, soon(0.6)))
    assert event["status"] == "timeout"
    assert event["remote_status"] == "pending"
    assert "stuck-nim" in event["message"]


def test_failed_deployment_is_a_failed_event(nemo_emu):
    nemo_emu.set_faults(fail_deployments=["broken"])
    spec = create_deployment(deployment_spec(name="broken-nim"))
    event = only_event(NemoDeploymentTrigger("nemo_default", NAMESPACE, spec["name"], POLL, soon(20)))
    assert event["status"] == "failed"
    assert "broken-nim" in event["message"] and "image" in event["message"]


def test_deployment_that_disappears_is_a_failed_event(nemo_emu):
    event = only_event(NemoDeploymentTrigger("nemo_default", NAMESPACE, "never-created", POLL, soon(20)))
    assert event["status"] == "failed"
    assert "no longer exists" in event["message"]


def test_deployment_on_kill_deletes_it(nemo_emu):
    spec = create_deployment()
    asyncio.run(NemoDeploymentTrigger("nemo_default", NAMESPACE, spec["name"], POLL, FAR).on_kill())
    assert nemo_emu.state()["deployments"]["total"] == 0


# -- NIM models ---------------------------------------------------------------------------------------------------


def test_model_already_served(nemo_emu):
    event = only_event(NimModelServedTrigger("nim_default", JUDGE_MODEL, POLL, soon(20)))
    assert event["status"] == "success"
    assert event["model_id"] == JUDGE_MODEL


def test_model_served_once_deployed(nemo_emu):
    create_deployment()
    event = only_event(NimModelServedTrigger("nim_default", BASE_MODEL, POLL, soon(20)))
    assert event["status"] == "success"


def test_model_never_served_times_out(nemo_emu):
    event = only_event(NimModelServedTrigger("nim_default", "fwtest/never-synced", POLL, soon(0.3)))
    assert event["status"] == "timeout"
    assert "fwtest/never-synced" in event["message"]
    assert event["served_count"] >= 1


def test_model_trigger_on_kill_deletes_the_named_deployment(nemo_emu):
    spec = create_deployment()
    plain = NimModelServedTrigger("nim_default", BASE_MODEL, POLL, FAR)
    asyncio.run(plain.on_kill())
    assert nemo_emu.state()["deployments"]["total"] == 1
    owning = NimModelServedTrigger("nim_default", BASE_MODEL, POLL, FAR, kill_deployment=f"{NAMESPACE}/{spec['name']}",
                                   nemo_conn_id="nemo_default")
    asyncio.run(owning.on_kill())
    assert nemo_emu.state()["deployments"]["total"] == 0


def test_no_secret_in_any_trigger_kwargs(nemo_emu):
    triggers = [
        NemoCustomizationJobTrigger("nemo_default", "j", POLL, FAR),
        NemoEvaluationJobTrigger("nemo_default", "j", POLL, FAR),
        NemoDeploymentTrigger("nemo_default", "ns", "n", POLL, FAR),
        NimModelServedTrigger("nim_default", "m", POLL, FAR, kill_deployment="ns/n", nemo_conn_id="nemo_default"),
    ]
    for trigger in triggers:
        _, kwargs = trigger.serialize()
        assert SECRET not in repr(kwargs)
        assert all(isinstance(v, (str, int, float)) for v in kwargs.values())
