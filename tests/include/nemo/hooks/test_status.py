"""Status enums: terminal/success sets, case-insensitive parsing, unknown values never crash."""

from __future__ import annotations

import pickle

import pytest

from include.nemo.hooks.status import (
    CustomizationStatus,
    DeploymentStatus,
    EvaluationStatus,
    customization_status_of,
    deployment_status_of,
    evaluation_status_of,
)


@pytest.mark.parametrize("enum", [CustomizationStatus, EvaluationStatus])
def test_job_statuses(enum):
    assert {s.value for s in enum.TERMINAL_STATUSES} == {"completed", "failed", "cancelled"}
    assert {s.value for s in enum.SUCCESS_STATUSES} == {"completed"}
    for value in ("created", "pending", "running"):
        assert not enum(value).is_terminal()
    assert enum("completed").is_success() and enum("completed").is_terminal()
    assert enum("failed").is_terminal() and not enum("failed").is_success()


def test_deployment_statuses():
    assert DeploymentStatus("ready").is_success()
    assert DeploymentStatus("failed").is_terminal() and not DeploymentStatus("failed").is_success()
    assert not DeploymentStatus("pending").is_terminal()
    assert not DeploymentStatus("created").is_terminal()


def test_case_and_aliases():
    assert CustomizationStatus("RUNNING") is CustomizationStatus.RUNNING
    assert EvaluationStatus(" Completed ") is EvaluationStatus.COMPLETED
    assert CustomizationStatus("canceled") is CustomizationStatus.CANCELLED
    assert DeploymentStatus("READY") is DeploymentStatus.READY


@pytest.mark.parametrize("enum", [CustomizationStatus, EvaluationStatus, DeploymentStatus])
@pytest.mark.parametrize("raw", ["exploded", "", 42, None])
def test_unknown_values_become_unknown_and_keep_the_raw_value(enum, raw, caplog):
    status = enum.parse(raw)
    assert status == enum.UNKNOWN
    assert status in {enum.UNKNOWN}
    assert not status.is_terminal()
    assert not status.is_success()
    assert status.raw == raw
    assert repr(raw) in status.describe()
    assert str(status) == "unknown"
    # Pickling (XCom, trigger events) falls back to the plain member.
    assert pickle.loads(pickle.dumps(status)) is enum.UNKNOWN


def test_known_values_describe_plainly():
    assert CustomizationStatus("running").describe() == "running"
    assert CustomizationStatus("running").raw == "running"


def test_payload_helpers():
    assert customization_status_of({"status": "running", "percentage_done": 50}) is CustomizationStatus.RUNNING
    assert evaluation_status_of({"status": "completed"}) is EvaluationStatus.COMPLETED
    assert deployment_status_of({"status_details": {"status": "ready"}}) is DeploymentStatus.READY
    assert deployment_status_of({"status": "pending"}) is DeploymentStatus.PENDING
    # Broken payloads do not crash.
    assert customization_status_of(None) == CustomizationStatus.UNKNOWN
    assert deployment_status_of({"status_details": "weird"}) == DeploymentStatus.UNKNOWN
    assert evaluation_status_of({}) == EvaluationStatus.UNKNOWN
