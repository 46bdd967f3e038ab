"""NimModelServedSensor against the emulator's NIM."""

from __future__ import annotations

import time

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout, AirflowSkipException, TaskDeferred

from include.nemo.sensors import NimModelServedSensor
from include.nemo.triggers import NimModelServedTrigger
from tests.include.nemo.emulator_support import (  # noqa: F401 - fixtures
    BASE_MODEL,
    JUDGE_MODEL,
    POLL,
    SECRET,
    _nemo_emulator_server,
    deploy_ready,
    make_context,
    nemo_emu,
    run_trigger,
)


def sensor(model_id: str = BASE_MODEL, **kwargs) -> NimModelServedSensor:
    return NimModelServedSensor(task_id="wait_model", model_id=model_id, poll_interval=POLL, **kwargs)


def test_a_served_model_returns_at_once_without_deferring(nemo_emu):
    assert sensor(JUDGE_MODEL).execute(make_context()) is None
    assert nemo_emu.state()["requests"]["GET /nim/v1/models"] == 1


def test_an_unserved_model_defers_then_completes_once_served(nemo_emu):
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        sensor(timeout=120).execute(make_context())
    deferred = info.value
    assert isinstance(deferred.trigger, NimModelServedTrigger)
    classpath, kwargs = deferred.trigger.serialize()
    assert classpath == "include.nemo.triggers.NimModelServedTrigger"
    assert (kwargs["conn_id"], kwargs["model_id"], kwargs["poll_interval"]) == ("nim_default", BASE_MODEL, POLL)
    assert before + 120 <= kwargs["deadline"] <= time.time() + 120
    assert "kill_deployment" not in kwargs  # a sensor owns nothing to delete
    assert SECRET not in repr(kwargs)
    assert deferred.method_name == "execute_complete"

    deploy_ready(nemo_emu)
    event = run_trigger(deferred.trigger)[0].payload
    assert event["status"] == "success"
    assert sensor().execute_complete(make_context(), event=event) is None


def test_timeout_event_times_the_sensor_out_or_skips_with_soft_fail(nemo_emu):
    with pytest.raises(TaskDeferred) as info:
        sensor("fwtest/never-synced", timeout=0.3).execute(make_context())
    event = run_trigger(info.value.trigger)[0].payload
    assert event["status"] == "timeout"
    with pytest.raises(AirflowSensorTimeout, match="never-synced"):
        sensor("fwtest/never-synced").execute_complete(make_context(), event=event)
    with pytest.raises(AirflowSkipException, match="never-synced"):
        sensor("fwtest/never-synced", soft_fail=True).execute_complete(make_context(), event=event)


@pytest.mark.parametrize(
    "event",
    [{"status": "error", "model_id": "m", "message": "HTTP 503, 5 times"}, {"status": "odd"}, None, "success"],
)
def test_anything_but_success_fails(event):
    with pytest.raises(AirflowException):
        sensor("m").execute_complete(make_context(), event=event)


def test_poke_mode_without_deferral(nemo_emu):
    deploy_ready(nemo_emu)
    plain = sensor(deferrable=False, timeout=5)
    assert plain.poke(make_context()) is True
    assert sensor("fwtest/not-there", deferrable=False).poke(make_context()) is False
    assert plain.execute(make_context()) is None


def test_poke_mode_times_out(nemo_emu):
    with pytest.raises(AirflowSensorTimeout):
        sensor("fwtest/not-there", deferrable=False, timeout=0.2).execute(make_context())


@pytest.mark.parametrize("bad", [0, -5, "30", True])
def test_bad_wait_settings_are_refused(bad):
    with pytest.raises(ValueError, match="poll_interval"):
        NimModelServedSensor(task_id="s", model_id="m", poll_interval=bad)
    with pytest.raises(ValueError, match="timeout"):
        NimModelServedSensor(task_id="s", model_id="m", timeout=bad)
