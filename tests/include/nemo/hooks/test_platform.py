"""Service hooks: what is tolerated (exists, already finished, already gone) and what is not; re-attaching."""

from __future__ import annotations

import pytest

from include.nemo.exceptions import NemoApiError, NemoConflictError, NemoNotFoundError
from include.nemo.hooks import (
    CustomizationStatus,
    CustomizerHook,
    DeploymentHook,
    DeploymentStatus,
    EntityStoreHook,
    EvaluationStatus,
    EvaluatorHook,
)


@pytest.fixture
def hook_for(nemo_conn, sleeps):
    def _make(cls, peer, **kwargs):
        kwargs.setdefault("retry_limit", 3)
        kwargs.setdefault("retry_delay", 0.0)
        return cls(transport=peer.transport(), sleep=sleeps, **kwargs)

    return _make


# -- Entity Store -----------------------------------------------------------------------------------------


def test_namespace_exists_is_fine(hook_for, script):
    assert hook_for(EntityStoreHook, script((201, {"id": "ns"}))).create_namespace("ns") is True
    assert hook_for(EntityStoreHook, script((409, {"detail": "exists"}))).create_namespace("ns") is False
    assert hook_for(EntityStoreHook, script((422, {"detail": "namespace already exists"}))).create_namespace("ns") is False


def test_namespace_other_422_is_an_error(hook_for, script):
    with pytest.raises(NemoApiError, match="id is required"):
        hook_for(EntityStoreHook, script((422, {"detail": "body.id is required"}))).create_namespace("ns")


def test_existing_dataset_is_returned(hook_for, script):
    existing = {"name": "ds", "namespace": "ns", "files_url": "hf://datasets/ns/ds"}
    peer = script((409, {"detail": "exists"}), (200, existing))
    result = hook_for(EntityStoreHook, peer).create_dataset({"name": "ds", "namespace": "ns", "files_url": "hf://datasets/ns/ds"})
    assert result == existing
    assert peer.paths == ["POST /v1/datasets", "GET /v1/datasets/ns/ds"]


def test_existing_dataset_with_other_files_is_repointed(hook_for, script):
    peer = script(
        (409, {"detail": "exists"}),
        (200, {"name": "ds", "namespace": "ns", "files_url": "hf://datasets/ns/old"}),
        (200, {"name": "ds", "namespace": "ns", "files_url": "hf://datasets/ns/ds"}),
    )
    result = hook_for(EntityStoreHook, peer).create_dataset({"name": "ds", "namespace": "ns", "files_url": "hf://datasets/ns/ds"})
    assert result["files_url"] == "hf://datasets/ns/ds"
    assert peer.paths[-1] == "PATCH /v1/datasets/ns/ds"
    assert peer.json_of(2) == {"files_url": "hf://datasets/ns/ds"}


def test_dataset_conflict_without_exist_ok_raises(hook_for, script):
    with pytest.raises(NemoConflictError):
        hook_for(EntityStoreHook, script((409, {}))).create_dataset({"name": "d", "namespace": "n"}, exist_ok=False)


def test_dataset_body_must_name_the_dataset(hook_for, script):
    with pytest.raises(ValueError, match="namespace"):
        hook_for(EntityStoreHook, script()).create_dataset({"name": "d"})


def test_delete_missing_is_fine_unless_asked(hook_for, script):
    assert hook_for(EntityStoreHook, script((404, {}))).delete_dataset("n", "d") is False
    assert hook_for(EntityStoreHook, script((404, {}))).delete_model("n", "m") is False
    with pytest.raises(NemoNotFoundError):
        hook_for(EntityStoreHook, script((404, {}))).delete_model("n", "m", missing_ok=False)


# -- Customizer -------------------------------------------------------------------------------------------


def test_config_conflict_is_reused(hook_for, script):
    body = {"name": "cfg", "namespace": "ns", "target": "t"}
    assert hook_for(CustomizerHook, script((409, {}))).create_config(body) == "ns/cfg"
    assert hook_for(CustomizerHook, script((200, body))).create_config(body) == "ns/cfg"


def test_config_bad_request_is_an_error(hook_for, script):
    with pytest.raises(NemoApiError, match="HTTP 422"):
        hook_for(CustomizerHook, script((422, {"detail": "target is required"}))).create_config({"name": "c", "namespace": "n"})


def test_status_parsing(hook_for, script):
    peer = script((200, {"status": "running", "percentage_done": 40}), (200, {"status": "brand-new-state"}))
    hook = hook_for(CustomizerHook, peer)
    assert hook.get_status("cust-1") is CustomizationStatus.RUNNING
    status = hook.get_status("cust-1")
    assert status == CustomizationStatus.UNKNOWN and status.raw == "brand-new-state"


def test_cancel_of_finished_or_missing_job_is_not_an_error(hook_for, script):
    assert hook_for(CustomizerHook, script((200, {"status": "cancelled"}))).cancel_job("c") is True
    assert hook_for(CustomizerHook, script((409, {"detail": "already completed"}))).cancel_job("c") is False
    assert hook_for(CustomizerHook, script((404, {}))).cancel_job("c") is False
    with pytest.raises(NemoApiError):
        hook_for(CustomizerHook, script((400, {}))).cancel_job("c")


def test_find_job_by_name_reads_every_page_and_takes_the_newest(hook_for, script):
    def route(request):
        page = int(request.url.params["page"])
        assert request.url.params["filter[name]"] == "fw-job"
        data = {
            1: [{"id": "a", "name": "other", "created_at": "2026-01-03"}],
            2: [{"id": "b", "name": "fw-job", "created_at": "2026-01-01"},
                {"id": "c", "name": "fw-job", "created_at": "2026-01-02"}],
        }[page]
        return 200, {"data": data, "pagination": {"page": page, "total_pages": 2}}

    peer = script(route=route)
    assert hook_for(CustomizerHook, peer).find_job_by_name("fw-job")["id"] == "c"
    assert len(peer.requests) == 2


def test_find_job_falls_back_when_filters_are_rejected(hook_for, script):
    def route(request):
        if "filter[name]" in request.url.params:
            return 422, {"detail": "unknown filter"}
        return 200, {"data": [{"id": "x", "name": "fw-job"}]}

    assert hook_for(CustomizerHook, script(route=route)).find_job_by_name("fw-job")["id"] == "x"


def test_find_job_by_name_none(hook_for, script):
    assert hook_for(CustomizerHook, script((200, {"data": []}))).find_job_by_name("nope") is None


def test_create_job_reattaches_after_a_lost_answer(hook_for, script):
    # POST -> 503 (the server did start the job), then the look-up finds it: no second POST.
    def route(request):
        if request.method == "POST":
            return 503, {"detail": "lost"}
        return 200, {"data": [{"id": "cust-9", "name": "fw-job"}]}

    peer = script(route=route)
    job = hook_for(CustomizerHook, peer).create_job({"name": "fw-job", "config": "ns/c"})
    assert job["id"] == "cust-9"
    assert [p for p in peer.paths if p.startswith("POST")] == ["POST /v1/customization/jobs"]


def test_create_job_conflict_reattaches_to_the_named_job(hook_for, script):
    peer = script((409, {"detail": "output_model is already produced"}), (200, {"data": [{"id": "cust-3", "name": "fw-job"}]}))
    assert hook_for(CustomizerHook, peer).create_job({"name": "fw-job"})["id"] == "cust-3"


def test_create_job_conflict_with_no_named_job_raises(hook_for, script):
    peer = script((409, {"detail": "output model exists"}), (200, {"data": []}))
    with pytest.raises(NemoConflictError, match="output model exists"):
        hook_for(CustomizerHook, peer).create_job({"name": "fw-job"})


def test_create_job_needs_a_name(hook_for, script):
    with pytest.raises(ValueError, match="name"):
        hook_for(CustomizerHook, script()).create_job({"config": "a/b"})


# -- Evaluator --------------------------------------------------------------------------------------------


def test_find_evaluation_by_label(hook_for, script):
    jobs = [
        {"id": "e1", "custom_fields": {"flywheel_key": "other"}},
        {"id": "e2", "custom_fields": {"flywheel_key": "dag|run|cand|base"}},
        {"id": "e3"},
    ]
    peer = script((200, {"data": jobs}))
    assert hook_for(EvaluatorHook, peer).find_job_by_label("flywheel_key", "dag|run|cand|base")["id"] == "e2"
    assert peer.requests[0].url.params["filter[custom_fields.flywheel_key]"] == "dag|run|cand|base"


def test_evaluation_create_reattaches_by_label(hook_for, script):
    def route(request):
        if request.method == "POST":
            return 502, {}
        return 200, {"data": [{"id": "eval-7", "custom_fields": {"flywheel_key": "k"}}]}

    peer = script(route=route)
    job = hook_for(EvaluatorHook, peer).create_job({"config": {}, "target": {}, "custom_fields": {"flywheel_key": "k"}})
    assert job["id"] == "eval-7"
    assert sum(1 for p in peer.paths if p.startswith("POST")) == 1


def test_evaluation_status_and_results(hook_for, script):
    peer = script((200, {"status": "completed", "status_details": {"progress": 100}}), (200, {"tasks": {}}))
    hook = hook_for(EvaluatorHook, peer)
    assert hook.get_status("e") is EvaluationStatus.COMPLETED
    assert hook.get_results("e") == {"tasks": {}}


def test_results_of_unfinished_job_explain_themselves(hook_for, script):
    with pytest.raises(NemoConflictError, match="check the job status first"):
        hook_for(EvaluatorHook, script((409, {"detail": "job is running"}))).get_results("e")


def test_evaluation_cancel_and_delete_tolerance(hook_for, script):
    assert hook_for(EvaluatorHook, script((409, {}))).cancel_job("e") is False
    assert hook_for(EvaluatorHook, script((404, {}))).delete_job("e") is False
    assert hook_for(EvaluatorHook, script((200, {}))).delete_job("e") is True


# -- Deployment -------------------------------------------------------------------------------------------


def test_deployment_conflict_returns_the_existing_one(hook_for, script):
    existing = {"name": "d", "namespace": "ns", "status_details": {"status": "ready"}}
    peer = script((409, {}), (200, existing))
    assert hook_for(DeploymentHook, peer).create_deployment({"name": "d", "namespace": "ns"}) == existing
    assert peer.paths == ["POST /v1/deployment/model-deployments", "GET /v1/deployment/model-deployments/ns/d"]


def test_deployment_delete_404_is_fine(hook_for, script):
    assert hook_for(DeploymentHook, script((404, {}))).delete_deployment("ns", "d") is False
    assert hook_for(DeploymentHook, script((200, {}))).delete_deployment("ns", "d") is True


def test_deployment_status(hook_for, script):
    peer = script((200, {"status_details": {"status": "PENDING"}}))
    assert hook_for(DeploymentHook, peer).get_status("ns", "d") is DeploymentStatus.PENDING


def test_list_deployments(hook_for, script):
    peer = script((200, {"data": [{"name": "a"}, {"name": "b"}], "pagination": {"total_pages": 1}}))
    assert [d["name"] for d in hook_for(DeploymentHook, peer).list_deployments()] == ["a", "b"]
