"""Hooks for the NeMo platform services behind the ``nemo`` Connection.

Entity Store, Customizer, Evaluator and Deployment Management share one base URL (the
``nemo_default`` Connection), so their hooks share :class:`NemoHook` and its connection type.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from include.nemo.exceptions import NemoApiError, NemoConflictError, NemoNotFoundError
from include.nemo.hooks._common import api_path, first_match
from include.nemo.hooks.base import NemoBaseHook
from include.nemo.hooks.status import (
    CustomizationStatus,
    DeploymentStatus,
    EvaluationStatus,
    customization_status_of,
    deployment_status_of,
    evaluation_status_of,
)

log = logging.getLogger(__name__)


def _exists_error(exc: NemoApiError) -> bool:
    """Whether a 409/422 means "already exists" (the Entity Store answers either for duplicates)."""
    if isinstance(exc, NemoConflictError):
        return True
    return exc.status_code == 422 and "exist" in exc.body.lower()


class NemoHook(NemoBaseHook):
    """The NeMo platform Connection (``nemo``): base URL of Entity Store, Customizer, Evaluator, Deployment.

    ``test_connection`` lists one namespace (``GET /v1/namespaces``). Use the service hooks below for work.
    """

    conn_type = "nemo"
    default_conn_name = "nemo_default"
    hook_name = "NVIDIA NeMo Microservices"


    def _list_filtered(self, path: str, filters: Mapping[str, Any], object_id: str) -> list[dict[str, Any]]:
        """List with server-side filters; if the server rejects them (400/422), list everything instead.

        Callers filter the items again themselves, so a server that ignores a filter is also fine.
        """
        try:
            return list(self._paginate(path, params=filters, object_id=object_id))
        except NemoApiError as exc:
            if exc.status_code not in (400, 422):
                raise
            log.info("%s: the server rejected filters %s (HTTP %s); listing everything.", object_id,
                     sorted(filters), exc.status_code)
            return list(self._paginate(path, object_id=object_id))


class EntityStoreHook(NemoHook):
    """Entity Store: namespaces, dataset registrations, models."""

    def create_namespace(self, namespace: str, description: str | None = None) -> bool:
        """``POST /v1/namespaces``. Returns ``True`` if created, ``False`` if it already existed."""
        body: dict[str, Any] = {"id": namespace}
        if description:
            body["description"] = description
        try:
            self._request("POST", "/v1/namespaces", json=body, object_id=f"namespace {namespace}")
        except NemoApiError as exc:
            if _exists_error(exc):
                log.info("Namespace %s already exists in the Entity Store.", namespace)
                return False
            raise
        log.info("Created namespace %s in the Entity Store.", namespace)
        return True

    def get_namespace(self, namespace: str) -> dict[str, Any]:
        """``GET /v1/namespaces/{ns}``."""
        return self._request("GET", api_path("v1", "namespaces", namespace), object_id=f"namespace {namespace}")

    def create_dataset(
        self,
        body: Mapping[str, Any],
        *,
        exist_ok: bool = True,
    ) -> dict[str, Any]:
        """``POST /v1/datasets`` (build the body with ``payloads.dataset_body``).

        With ``exist_ok`` a 409 returns the existing registration; when its ``files_url`` differs
        from the requested one it is updated (PATCH), so the registration always points at this run's files.
        """
        namespace, name = body.get("namespace"), body.get("name")
        if not namespace or not name:
            raise ValueError("dataset body needs 'namespace' and 'name' (use payloads.dataset_body)")
        object_id = f"dataset {namespace}/{name}"
        try:
            created = self._request("POST", "/v1/datasets", json=dict(body), object_id=object_id)
        except NemoApiError as exc:
            if not (exist_ok and _exists_error(exc)):
                raise
            existing = self.get_dataset(namespace, name)
            wanted = body.get("files_url")
            if wanted and existing.get("files_url") != wanted:
                log.info("%s exists with files_url %s; updating it to %s.", object_id,
                         existing.get("files_url"), wanted)
                return self.update_dataset(namespace, name, {"files_url": wanted})
            log.info("%s is already registered.", object_id)
            return existing
        log.info("Registered %s in the Entity Store.", object_id)
        return created or dict(body)

    def get_dataset(self, namespace: str, name: str) -> dict[str, Any]:
        """``GET /v1/datasets/{ns}/{name}``."""
        return self._request("GET", api_path("v1", "datasets", namespace, name), object_id=f"dataset {namespace}/{name}")

    def update_dataset(self, namespace: str, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """``PATCH /v1/datasets/{ns}/{name}``."""
        return self._request(
            "PATCH", api_path("v1", "datasets", namespace, name), json=dict(changes), object_id=f"dataset {namespace}/{name}"
        )

    def delete_dataset(self, namespace: str, name: str, *, missing_ok: bool = True) -> bool:
        """``DELETE /v1/datasets/{ns}/{name}``. Returns ``False`` when it did not exist (and ``missing_ok``)."""
        try:
            self._request("DELETE", api_path("v1", "datasets", namespace, name), object_id=f"dataset {namespace}/{name}")
        except NemoNotFoundError:
            if not missing_ok:
                raise
            log.info("Dataset %s/%s was already gone.", namespace, name)
            return False
        return True

    def get_model(self, namespace: str, name: str) -> dict[str, Any]:
        """``GET /v1/models/{ns}/{name}``."""
        return self._request("GET", api_path("v1", "models", namespace, name), object_id=f"model {namespace}/{name}")

    def delete_model(self, namespace: str, name: str, *, missing_ok: bool = True) -> bool:
        """``DELETE /v1/models/{ns}/{name}``. Returns ``False`` when it did not exist (and ``missing_ok``)."""
        try:
            self._request("DELETE", api_path("v1", "models", namespace, name), object_id=f"model {namespace}/{name}")
        except NemoNotFoundError:
            if not missing_ok:
                raise
            log.info("Model %s/%s was already gone.", namespace, name)
            return False
        return True


class CustomizerHook(NemoHook):
    """Customizer: configs and fine-tuning jobs."""

    def create_config(self, body: Mapping[str, Any]) -> str:
        """``POST /v1/customization/configs`` (409 = exists, fine). Returns ``"{namespace}/{name}"``.

        Build the body with ``payloads.customization_config_body``; name it with
        ``payloads.customization_config_name`` so a 409 means an identical config.
        """
        namespace, name = body.get("namespace"), body.get("name")
        if not namespace or not name:
            raise ValueError("customization config body needs 'namespace' and 'name'")
        ref = f"{namespace}/{name}"
        try:
            self._request("POST", "/v1/customization/configs", json=dict(body), object_id=f"customization config {ref}")
        except NemoConflictError:
            log.info("Customization config %s already exists; reusing it.", ref)
        else:
            log.info("Created customization config %s.", ref)
        return ref

    def delete_config(self, namespace: str, name: str, *, missing_ok: bool = True) -> bool:
        """``DELETE /v1/customization/configs/{ns}/{name}``. ``False`` when it did not exist."""
        try:
            self._request(
                "DELETE", api_path("v1", "customization", "configs", namespace, name),
                object_id=f"customization config {namespace}/{name}",
            )
        except NemoNotFoundError:
            if not missing_ok:
                raise
            return False
        return True

    def create_job(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /v1/customization/jobs`` -> the job (``id``, ``output_model``, ...).

        If an attempt's answer is lost (5xx after the server acted), the retry first looks the job
        up by name and returns it instead of starting a second GPU job.
        """
        name = body.get("name")
        if not name:
            raise ValueError("customization job body needs a 'name' (use payloads.job_name) so retries can find it")
        try:
            job = self._request(
                "POST", "/v1/customization/jobs", json=dict(body), object_id=f"customization job {name}",
                recover=lambda: self.find_job_by_name(name),
            )
        except NemoConflictError:
            # The output model is already being produced: by this very job if a lost answer hid its creation.
            existing = self.find_job_by_name(name)
            if existing is None:
                raise
            log.info("Customization job %s already exists as %s; re-attaching.", name, existing.get("id"))
            return existing
        log.info("Customization job %s started as %s.", name, job.get("id") if isinstance(job, dict) else job)
        return job

    def get_job(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/customization/jobs/{id}``."""
        return self._request("GET", api_path("v1", "customization", "jobs", job_id), object_id=f"customization job {job_id}")

    def get_job_status(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/customization/jobs/{id}/status`` -> ``status``, ``percentage_done``, ``epochs_completed``, ..."""
        return self._request(
            "GET", api_path("v1", "customization", "jobs", job_id, "status"), object_id=f"customization job {job_id}"
        )

    def get_status(self, job_id: str) -> CustomizationStatus:
        """The job's state as an enum (UNKNOWN for values this code does not know)."""
        return customization_status_of(self.get_job_status(job_id))

    def cancel_job(self, job_id: str) -> bool:
        """``POST /v1/customization/jobs/{id}/cancel``.

        Returns ``True`` if cancelled, ``False`` if the job was already finished (409) or gone (404):
        cleanup paths call this and must not fail because the job ended on its own.
        """
        object_id = f"customization job {job_id}"
        try:
            self._request("POST", api_path("v1", "customization", "jobs", job_id, "cancel"), object_id=object_id)
        except (NemoConflictError, NemoNotFoundError) as exc:
            log.info("%s was not cancelled: HTTP %s (already finished or gone).", object_id, exc.status_code)
            return False
        log.info("Cancelled %s.", object_id)
        return True

    def list_jobs(self, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """``GET /v1/customization/jobs`` (all pages)."""
        return list(self._paginate("/v1/customization/jobs", params=params, object_id="customization jobs"))

    def find_job_by_name(self, name: str) -> dict[str, Any] | None:
        """The most recent job with this name, or ``None`` (how a retried task re-attaches)."""
        jobs = self._list_filtered("/v1/customization/jobs", {"filter[name]": name}, "customization jobs")
        found = first_match(jobs, lambda job: job.get("name") == name)
        return dict(found) if found is not None else None


class EvaluatorHook(NemoHook):
    """Evaluator: evaluation jobs and their results."""

    def create_job(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /v1/evaluation/jobs`` -> the job (``id``, ``status``, ...).

        Build the body with ``payloads.evaluation_job_body`` (it sets ``custom_fields.flywheel_key``):
        a retry after a lost answer finds the job by that label instead of starting a second one.
        """
        key = (body.get("custom_fields") or {}).get("flywheel_key")
        recover = (lambda: self.find_job_by_label("flywheel_key", key)) if key else None
        job = self._request(
            "POST", "/v1/evaluation/jobs", json=dict(body), object_id=f"evaluation job {key or '(unlabelled)'}",
            recover=recover,
        )
        log.info("Evaluation job %s started as %s.", key, job.get("id") if isinstance(job, dict) else job)
        return job

    def get_job(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/evaluation/jobs/{id}`` -> ``status``, ``status_details.progress``, ..."""
        return self._request("GET", api_path("v1", "evaluation", "jobs", job_id), object_id=f"evaluation job {job_id}")

    def get_status(self, job_id: str) -> EvaluationStatus:
        """The job's state as an enum (UNKNOWN for values this code does not know)."""
        return evaluation_status_of(self.get_job(job_id))

    def get_results(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/evaluation/jobs/{id}/results`` -> ``tasks.<task>.metrics.<metric>.scores.<score>.value``."""
        return self._request(
            "GET", api_path("v1", "evaluation", "jobs", job_id, "results"), object_id=f"evaluation job {job_id}",
            hint="Results exist only for completed jobs; check the job status first.",
        )

    def cancel_job(self, job_id: str) -> bool:
        """``POST /v1/evaluation/jobs/{id}/cancel``. ``False`` if already finished (409) or gone (404)."""
        object_id = f"evaluation job {job_id}"
        try:
            self._request("POST", api_path("v1", "evaluation", "jobs", job_id, "cancel"), object_id=object_id)
        except (NemoConflictError, NemoNotFoundError) as exc:
            log.info("%s was not cancelled: HTTP %s (already finished or gone).", object_id, exc.status_code)
            return False
        log.info("Cancelled %s.", object_id)
        return True

    def delete_job(self, job_id: str, *, missing_ok: bool = True) -> bool:
        """``DELETE /v1/evaluation/jobs/{id}``. ``False`` when it did not exist (and ``missing_ok``)."""
        try:
            self._request("DELETE", api_path("v1", "evaluation", "jobs", job_id), object_id=f"evaluation job {job_id}")
        except NemoNotFoundError:
            if not missing_ok:
                raise
            return False
        return True

    def list_jobs(self, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """``GET /v1/evaluation/jobs`` (all pages)."""
        return list(self._paginate("/v1/evaluation/jobs", params=params, object_id="evaluation jobs"))

    def find_job_by_label(self, key: str, value: str) -> dict[str, Any] | None:
        """The most recent job whose ``custom_fields[key] == value``, or ``None``."""
        jobs = self._list_filtered("/v1/evaluation/jobs", {f"filter[custom_fields.{key}]": value}, "evaluation jobs")
        found = first_match(jobs, lambda job: (job.get("custom_fields") or {}).get(key) == value)
        return dict(found) if found is not None else None


class DeploymentHook(NemoHook):
    """Deployment Management: NIM deployments."""

    def create_deployment(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /v1/deployment/model-deployments``; a 409 returns the existing deployment.

        Build the body with ``payloads.deployment_body`` / ``payloads.candidate_deployment_body``.
        """
        namespace, name = body.get("namespace"), body.get("name")
        if not namespace or not name:
            raise ValueError("deployment body needs 'namespace' and 'name'")
        object_id = f"deployment {namespace}/{name}"
        try:
            created = self._request(
                "POST", "/v1/deployment/model-deployments", json=dict(body), object_id=object_id
            )
        except NemoConflictError:
            log.info("%s already exists; reusing it.", object_id)
            return self.get_deployment(namespace, name)
        log.info("Requested %s.", object_id)
        return created

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        """``GET /v1/deployment/model-deployments/{ns}/{name}`` -> ``status_details.status``, ..."""
        return self._request(
            "GET", api_path("v1", "deployment", "model-deployments", namespace, name),
            object_id=f"deployment {namespace}/{name}",
        )

    def get_status(self, namespace: str, name: str) -> DeploymentStatus:
        """The deployment's state as an enum (UNKNOWN for values this code does not know)."""
        return deployment_status_of(self.get_deployment(namespace, name))

    def delete_deployment(self, namespace: str, name: str) -> bool:
        """``DELETE /v1/deployment/model-deployments/{ns}/{name}``. ``False`` when it was already gone (404)."""
        try:
            self._request(
                "DELETE", api_path("v1", "deployment", "model-deployments", namespace, name),
                object_id=f"deployment {namespace}/{name}",
            )
        except NemoNotFoundError:
            log.info("Deployment %s/%s was already gone.", namespace, name)
            return False
        log.info("Deleted deployment %s/%s.", namespace, name)
        return True

    def list_deployments(self, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """``GET /v1/deployment/model-deployments`` (all pages)."""
        return list(self._paginate("/v1/deployment/model-deployments", params=params, object_id="deployments"))
