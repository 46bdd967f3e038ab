"""Provider-style operators for NeMo microservices: upload, deploy, evaluate, customize, clean up.

They take ids and request bodies (dicts), never flywheel settings, so any DAG can use them.
Payload arguments are template fields: an ``XComArg`` or a Jinja string resolves at run time.

The long-running operators share one shape (the dbt Cloud provider's): submit, or **re-attach**
to the job a previous try already started (found by a deterministic name or label), push the id
to XCom at once, check the status once, and defer to a trigger only if the job is not finished,
with an absolute deadline. ``execute_complete`` fails closed on anything but ``success``.
``on_kill`` cancels the job (or deletes the deployment) when the task is killed on a worker; the
triggers do the same when it is killed while deferred.

Timeouts: past the deadline the job is cancelled (the deployment deleted) before the task fails,
as Airflow's ``execution_timeout`` would do through ``on_kill``: an abandoned wait must not keep
GPUs busy. A retry then starts afresh.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook, BaseOperator, ObjectStoragePath
from airflow.sdk.definitions.template import literal
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from include.nemo import payloads
from include.nemo.exceptions import NemoError
from include.nemo.hooks import (
    CustomizationStatus,
    CustomizerHook,
    DataStoreHook,
    DeploymentHook,
    DeploymentStatus,
    EntityStoreHook,
    EvaluationStatus,
    EvaluatorHook,
    NimHook,
    api_path,
    customization_status_of,
    deployment_status_of,
    evaluation_status_of,
)
from include.nemo.triggers import (
    CANCELLED,
    EVENT_STATUSES,
    SUCCESS,
    TIMEOUT,
    NemoCustomizationJobTrigger,
    NemoDeploymentTrigger,
    NemoEvaluationJobTrigger,
    NimModelServedTrigger,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

# Airflow's own deferral timeout is only a backstop behind the trigger's deadline event (a lost
# triggerer must not leave the task deferred forever); the deadline event normally comes first.
DEFER_TIMEOUT_GRACE = 300.0

# Job states a retry must not re-attach to: the job will never complete.
_DEAD_JOB_STATES = frozenset({"failed", "cancelled", "cancelling"})

# ``literal()``'s class, without importing Airflow's private module that defines it.
_LITERAL_TYPE = type(literal(None))

DEPLOYMENT_KEYS = ("namespace", "name", "model", "image_name", "image_tag", "pvc_size", "gpu")
DEPLOYMENT_OPTIONAL_KEYS = ("additional_envs",)


# -- small shared helpers ---------------------------------------------------------------------------------


def _check_seconds(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a number of seconds > 0, got {value!r}.")
    return float(value)


def _check_name(owner: str, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AirflowFailException(f"{owner}: {name} must be a non-empty string after rendering, got {value!r}.")
    return value


def _as_mapping(owner: str, name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise AirflowFailException(
            f"{owner}: {name} must be a dict (a JSON object) after rendering, got {type(value).__name__}: "
            f"{str(value)[:200]!r}. Pass a dict or an XComArg that returns one."
        )
    return dict(value)


def _push(context: Context, key: str, value: Any) -> None:
    context["ti"].xcom_push(key=key, value=value)


def _defer_timeout(deadline: float, poll_interval: float) -> timedelta:
    remaining = max(deadline - time.time(), 0.0)
    return timedelta(seconds=remaining + max(DEFER_TIMEOUT_GRACE, 2 * poll_interval))


def _most_recent(items: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    if not items:
        return None
    if len(items) > 1:
        log.warning("%d live jobs match; re-attaching to the most recently created one.", len(items))
    return dict(max(items, key=lambda item: str(item.get("created_at") or "")))


def _check_event(owner: str, event: Any) -> dict[str, Any]:
    """An event payload as a dict with a known status, or a failure naming what arrived."""
    if not isinstance(event, Mapping) or event.get("status") not in EVENT_STATUSES:
        raise AirflowException(f"{owner}: the trigger sent an unexpected event {event!r}; treating it as a failure.")
    return dict(event)


def _raise_for_event(what: str, event: Mapping[str, Any], extra: str = "") -> None:
    """Fail closed on any event that is not ``success`` (cancelled: no retry, a human stopped it)."""
    status = event["status"]
    detail = str(event.get("message") or "no message").rstrip(".")
    message = f"{what} ended with status {status!r}: {detail}{extra}"
    identity = ("status", "message", "job_id", "namespace", "name", "model_id")
    progress = {k: v for k, v in event.items() if k not in identity and v is not None}
    if progress:
        message += f" (last seen: {progress})"
    if status == CANCELLED:
        raise AirflowFailException(message)
    raise AirflowException(message)


class _NemoWaitMixin:
    """Validates and stores ``poll_interval`` / ``timeout`` of the deferrable operators."""

    poll_interval: float
    timeout: float

    def _init_wait(self, poll_interval: float, timeout: float) -> None:
        owner = type(self).__name__
        self.poll_interval = _check_seconds(owner, "poll_interval", poll_interval)
        self.timeout = _check_seconds(owner, "timeout", timeout)

    def _new_deadline(self) -> float:
        return time.time() + self.timeout


# -- Upload a dataset -------------------------------------------------------------------------------------


class NemoUploadDatasetOperator(BaseOperator):
    """Upload a staged directory to the NeMo Data Store and register it in the Entity Store.

    Steps, each idempotent so a retry is safe: create the Entity Store and Data Store namespaces
    (existing is fine), create the dataset repo ``{namespace}/{name}`` (existing is fine), upload
    every file under ``local_dir`` in one commit keeping relative paths (``training/train_data.jsonl``
    stays there), and register the dataset with ``files_url: hf://datasets/{namespace}/{name}``
    (an existing registration with another ``files_url`` is patched).

    Args:
        namespace: Namespace of the dataset (created if missing).
        name: Dataset repo name.
        local_dir: The staged directory: a path or an ObjectStoragePath URI (``file://``, ``s3://``...).
        description: Entity Store description.
        project: Entity Store project, optional.
        nemo_conn_id: The ``nemo`` Connection (Entity Store).
        datastore_conn_id: The ``nemo_datastore`` Connection (Data Store).

    Returns:
        ``{"namespace", "name", "files_url"}`` (small, for XCom).
    """

    template_fields: Sequence[str] = ("namespace", "name", "local_dir", "description", "project")
    ui_color = "#76b900"

    def __init__(
        self,
        *,
        namespace: str,
        name: str,
        local_dir: str | Path | ObjectStoragePath,
        description: str = "",
        project: str | None = None,
        nemo_conn_id: str = "nemo_default",
        datastore_conn_id: str = "nemo_datastore_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.namespace = namespace
        self.name = name
        self.local_dir = local_dir
        self.description = description
        self.project = project
        self.nemo_conn_id = nemo_conn_id
        self.datastore_conn_id = datastore_conn_id

    def _collect_files(self) -> dict[str, Path | bytes]:
        """``{path in repo: local Path or bytes}`` of every file under ``local_dir``."""
        owner = type(self).__name__
        root = self.local_dir
        if not isinstance(root, ObjectStoragePath):
            root = ObjectStoragePath(str(root))
        if not root.is_dir():
            raise AirflowFailException(
                f"{owner}: local_dir {str(self.local_dir)!r} is not a directory. Stage the dataset files first "
                "(the upstream task's output) and pass that directory."
            )
        local = root.protocol in ("", "file", "local")
        files: dict[str, Path | bytes] = {}
        for item in sorted(root.rglob("*"), key=str):
            if not item.is_file():
                continue
            relative = str(item.relative_to(root)).replace("\\", "/")
            # Remote stores are read into memory: staged datasets are JSONL files of at most a few MB.
            files[relative] = Path(item.path) if local else item.read_bytes()
        if not files:
            raise AirflowFailException(f"{owner}: local_dir {str(self.local_dir)!r} has no files; nothing to upload.")
        return files

    def execute(self, context: Context) -> dict[str, str]:
        owner = type(self).__name__
        namespace = _check_name(owner, "namespace", self.namespace)
        name = _check_name(owner, "name", self.name)
        files = self._collect_files()
        with EntityStoreHook(self.nemo_conn_id) as entity_store, DataStoreHook(self.datastore_conn_id) as datastore:
            entity_store.create_namespace(namespace)
            datastore.create_namespace(namespace)
            datastore.create_dataset_repo(namespace, name)
            datastore.upload_files(
                namespace, name, files, commit_message=f"Airflow task {self.task_id}: {len(files)} file(s)",
            )
            body = payloads.dataset_body(namespace, name, description=self.description or "", project=self.project)
            entity_store.create_dataset(body, exist_ok=True)
        files_url = payloads.hf_files_url(namespace, name)
        log.info("Dataset %s/%s: %d file(s) uploaded (%s), registered as %s.", namespace, name, len(files),
                 ", ".join(files), files_url)
        return {"namespace": namespace, "name": name, "files_url": files_url}


# -- Deploy a NIM ------------------------------------------------------------------------------------------


class NemoDeployNimOperator(_NemoWaitMixin, BaseOperator):
    """Deploy a NIM with Deployment Management and wait (deferred) until the NIM serves its model.

    Creates the deployment (HTTP 409 = it exists: re-attach to it), pushes its name to XCom at once,
    checks once, then defers on :class:`NemoDeploymentTrigger` until ready and on
    :class:`NimModelServedTrigger` until ``GET /v1/models`` lists the model, both under one deadline.
    A failed deployment or the deadline deletes the deployment (a retry starts a fresh one) and
    fails the task with a message naming it. ``on_kill`` deletes it.

    Args:
        deployment: ``{namespace, name, model, image_name, image_tag, pvc_size, gpu, additional_envs?}``.
        nemo_conn_id: The ``nemo`` Connection (Deployment Management).
        nim_conn_id: The ``nim`` Connection (the NIM proxy that lists served models).
        poll_interval: Seconds between two status checks while deferred.
        timeout: Seconds from the first try's start until the model must be served.

    Returns:
        ``{"namespace", "name", "model"}``.
    """

    template_fields: Sequence[str] = ("deployment",)
    template_fields_renderers = {"deployment": "json"}
    ui_color = "#76b900"

    def __init__(
        self,
        *,
        deployment: dict[str, Any],
        nemo_conn_id: str = "nemo_default",
        nim_conn_id: str = "nim_default",
        poll_interval: float = 30.0,
        timeout: float = 3600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deployment = deployment
        self.nemo_conn_id = nemo_conn_id
        self.nim_conn_id = nim_conn_id
        self._init_wait(poll_interval, timeout)
        self._deployment_ref: tuple[str, str] | None = None

    def _body(self) -> dict[str, Any]:
        owner = type(self).__name__
        spec = _as_mapping(owner, "deployment", self.deployment)
        missing = [key for key in DEPLOYMENT_KEYS if spec.get(key) in (None, "")]
        unknown = sorted(set(spec) - set(DEPLOYMENT_KEYS) - set(DEPLOYMENT_OPTIONAL_KEYS))
        if missing or unknown:
            raise AirflowFailException(
                f"{owner}: deployment has missing key(s) {missing} and unknown key(s) {unknown}. Expected "
                f"{list(DEPLOYMENT_KEYS)} plus optional {list(DEPLOYMENT_OPTIONAL_KEYS)}."
            )
        try:
            return payloads.deployment_body(**spec)
        except ValueError as exc:
            raise AirflowFailException(
                f"{owner}: invalid deployment {spec.get('namespace')}/{spec.get('name')}: {exc}"
            ) from exc

    def execute(self, context: Context) -> dict[str, str]:
        body = self._body()
        namespace, name, model = body["namespace"], body["name"], body["config"]["model"]
        deadline = self._new_deadline()
        with DeploymentHook(self.nemo_conn_id) as hook:
            created = hook.create_deployment(body)
            self._deployment_ref = (namespace, name)
            existing_model = (created.get("config") or {}).get("model") if isinstance(created, Mapping) else None
            if existing_model and existing_model != model:
                raise AirflowFailException(
                    f"Deployment {namespace}/{name} already exists and serves {existing_model!r}, not {model!r}. "
                    "Delete it or choose another deployment name."
                )
            _push(context, "deployment_namespace", namespace)
            _push(context, "deployment_name", name)
            status = deployment_status_of(hook.get_deployment(namespace, name))
        log.info("Deployment %s/%s of %s is %s.", namespace, name, model, status.describe())
        if status == DeploymentStatus.READY:
            return self._wait_for_model(context, namespace, name, model, deadline)
        if status.is_terminal():
            self._fail(namespace, name, f"it is {status.describe()}")
        self.defer(
            trigger=NemoDeploymentTrigger(
                conn_id=self.nemo_conn_id, namespace=namespace, name=name, poll_interval=self.poll_interval,
                deadline=deadline,
            ),
            method_name="execute_ready",
            kwargs={"model": model, "deadline": deadline},
            timeout=_defer_timeout(deadline, self.poll_interval),
        )

    def execute_ready(
        self, context: Context, event: dict[str, Any], model: str | None = None, deadline: float | None = None
    ) -> dict[str, str]:
        """Resumed after :class:`NemoDeploymentTrigger`: on success wait for the NIM to list the model.

        ``model`` and ``deadline`` come from the deferral's kwargs; when a runner drops those (``dag.test()``
        in Airflow 3.3 does), they are taken from the re-rendered ``deployment`` and the event.
        """
        event = _check_event(type(self).__name__, event)
        namespace, name = event["namespace"], event["name"]
        model = model or self._body()["config"]["model"]
        deadline = deadline or event.get("deadline") or self._new_deadline()
        self._deployment_ref = (namespace, name)
        if event["status"] != SUCCESS:
            self._fail(namespace, name, f"the wait ended {event['status']}: {event.get('message')}")
        return self._wait_for_model(context, namespace, name, model, deadline)

    def _wait_for_model(
        self, context: Context, namespace: str, name: str, model: str, deadline: float
    ) -> dict[str, str]:
        with NimHook(self.nim_conn_id) as nim:
            served = nim.is_model_served(model)
        if served:
            log.info("Deployment %s/%s is ready and the NIM serves %s.", namespace, name, model)
            return {"namespace": namespace, "name": name, "model": model}
        if time.time() >= deadline:
            self._fail(namespace, name, f"the NIM did not list {model} before the deadline")
        self.defer(
            trigger=NimModelServedTrigger(
                conn_id=self.nim_conn_id, model_id=model, poll_interval=self.poll_interval, deadline=deadline,
                kill_deployment=f"{namespace}/{name}", nemo_conn_id=self.nemo_conn_id,
            ),
            method_name="execute_complete",
            kwargs={"namespace": namespace, "name": name},
            timeout=_defer_timeout(deadline, self.poll_interval),
        )

    def execute_complete(
        self, context: Context, event: dict[str, Any], namespace: str | None = None, name: str | None = None
    ) -> dict[str, str]:
        """Resumed after :class:`NimModelServedTrigger` (namespace/name default to the rendered ``deployment``)."""
        event = _check_event(type(self).__name__, event)
        if not namespace or not name:
            body = self._body()
            namespace, name = body["namespace"], body["name"]
        self._deployment_ref = (namespace, name)
        if event["status"] != SUCCESS:
            self._fail(namespace, name, f"the NIM did not serve {event.get('model_id')}: {event.get('message')}")
        return {"namespace": namespace, "name": name, "model": event["model_id"]}

    def _fail(self, namespace: str, name: str, why: str) -> None:
        """Delete the deployment (a retry must start fresh, and GPUs must be freed), then fail."""
        cleanup = "deleted it so a retry starts a fresh deployment"
        try:
            with DeploymentHook(self.nemo_conn_id) as hook:
                hook.delete_deployment(namespace, name)
        except NemoError as exc:
            cleanup = f"could NOT delete it ({exc}); delete it by hand"
        # ``why`` may be a trigger message that ends with its own full stop.
        raise AirflowException(
            f"Deployment {namespace}/{name} did not become usable: {why.rstrip('.')}. The operator {cleanup}. "
            "Check the NIM image name and tag, GPU and PVC quota, the Deployment Management logs and the NIM "
            f"Connection {self.nim_conn_id!r}."
        )

    def on_kill(self) -> None:
        """Killed on a worker: delete the deployment this try created or re-attached to."""
        if self._deployment_ref is None:
            return
        namespace, name = self._deployment_ref
        try:
            with DeploymentHook(self.nemo_conn_id, retry_limit=2) as hook:
                hook.delete_deployment(namespace, name)
        except NemoError as exc:
            log.warning("Could not delete deployment %s/%s on kill (%s); delete it by hand.", namespace, name, exc)


# -- Evaluate ---------------------------------------------------------------------------------------------


def _results_summary(results: Any) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """``tasks.<task>.metrics.<metric>.scores.<score>.value`` -> ``{metric: {score: value}}`` and per-task usage.

    Per-row outputs are left out (XCom stays small). A metric name used by two tasks is keyed
    ``<task>.<metric>`` so neither hides the other.
    """
    tasks = results.get("tasks") if isinstance(results, Mapping) else None
    if not isinstance(tasks, Mapping):
        raise AirflowException(f"evaluation results have no 'tasks' object: {str(results)[:300]!r}")
    seen: dict[str, int] = {}
    for task in tasks.values():
        for metric in ((task or {}).get("metrics") or {}):
            seen[metric] = seen.get(metric, 0) + 1
    summary: dict[str, dict[str, Any]] = {}
    usage: dict[str, Any] = {}
    for task_name, task in tasks.items():
        task = task or {}
        for metric_name, metric in (task.get("metrics") or {}).items():
            key = metric_name if seen[metric_name] == 1 else f"{task_name}.{metric_name}"
            scores = (metric or {}).get("scores") or {}
            summary[key] = {
                score_name: (score.get("value") if isinstance(score, Mapping) else score)
                for score_name, score in scores.items()
            }
        if isinstance(task.get("usage"), Mapping):
            usage[task_name] = dict(task["usage"])
    return summary, usage


def _with_judge_api_key(config: Mapping[str, Any], judge_conn_id: str) -> dict[str, Any]:
    """A copy of an inline evaluation config whose llm-judge endpoints carry the judge's API key.

    The key is read from the judge's Connection here, at submit time, so it never travels
    through XCom, rendered template fields or trigger kwargs.
    """
    import copy

    api_key = BaseHook.get_connection(judge_conn_id).password
    config = copy.deepcopy(dict(config))
    if not api_key:
        return config
    for task in (config.get("tasks") or {}).values():
        for metric in ((task or {}).get("metrics") or {}).values():
            if (metric or {}).get("type") != "llm-judge":
                continue
            endpoint = ((metric.get("params") or {}).get("model") or {}).get("api_endpoint")
            if isinstance(endpoint, dict):
                endpoint["api_key"] = api_key
    return config


class NemoEvaluationOperator(_NemoWaitMixin, BaseOperator):
    """Run a NeMo Evaluator job, deferred while it runs, and return its score summary.

    RE-ATTACH: a job already carrying ``custom_fields.flywheel_key == label`` that is not failed or
    cancelled is reused (a retried task must not start a second job; a completed one is simply
    collected). Otherwise the job is submitted with that label. The job id and URL go to XCom at
    once (keys ``job_id``, ``job_url``).

    The evaluation ``config`` is NeMo's own Jinja (``{{ item.request.messages }}``), so a config
    given inline is wrapped in :func:`airflow.sdk.definitions.template.literal` and never rendered
    by Airflow; build it in an upstream task (an XComArg) if it needs run-time values.

    Args:
        job: The ``POST /v1/evaluation/jobs`` body: ``namespace``, ``config``, ``target``, optional ``custom_fields``.
        label: Deterministic key of this evaluation (e.g. ``payloads.flywheel_key(...)``).
        nemo_conn_id: The ``nemo`` Connection.
        judge_conn_id: The judge's Connection; its password (API key) is added to the llm-judge
            endpoints of an inline config at submit time, so it is never part of ``job``.
        poll_interval: Seconds between two status checks while deferred.
        timeout: Seconds until the job must be finished (then it is cancelled and the task fails).

    Returns:
        ``{"job_id", "status", "results": {metric: {score: value}}, "usage": {task: {...}}, "started_at",
        "finished_at"}``.
    """

    template_fields: Sequence[str] = ("job", "job_label")
    template_fields_renderers = {"job": "json"}
    ui_color = "#76b900"

    def __init__(
        self,
        *,
        job: dict[str, Any],
        label: str,
        nemo_conn_id: str = "nemo_default",
        judge_conn_id: str | None = None,
        poll_interval: float = 30.0,
        timeout: float = 4 * 3600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(job, Mapping) and isinstance(job.get("config"), (Mapping, str)):
            job = {**job, "config": literal(job["config"])}
        self.job = job
        # ``label`` is taken: BaseOperator.label is the task group label.
        self.job_label = label
        self.nemo_conn_id = nemo_conn_id
        self.judge_conn_id = judge_conn_id
        self._init_wait(poll_interval, timeout)
        self.job_id: str | None = None

    def _body(self) -> dict[str, Any]:
        owner = type(self).__name__
        label = _check_name(owner, "label", self.job_label)
        body = _as_mapping(owner, "job", self.job)
        if isinstance(body.get("config"), _LITERAL_TYPE):
            # Rendering unwraps it; a direct execute() call (tests, scripts) must too.
            body["config"] = body["config"].value
        missing = [key for key in ("config", "target") if not body.get(key)]
        if missing:
            raise AirflowFailException(f"{owner}: job is missing {missing}; it is the POST /v1/evaluation/jobs body.")
        custom_fields = body.get("custom_fields") or {}
        if not isinstance(custom_fields, Mapping):
            raise AirflowFailException(f"{owner}: job.custom_fields must be a dict, got {custom_fields!r}.")
        if custom_fields.get("flywheel_key") not in (None, label):
            raise AirflowFailException(
                f"{owner}: job.custom_fields.flywheel_key {custom_fields['flywheel_key']!r} differs from label "
                f"{label!r}; drop it from the body (the operator sets it from label)."
            )
        body["custom_fields"] = {**custom_fields, "flywheel_key": label}
        if self.judge_conn_id and isinstance(body.get("config"), Mapping):
            body["config"] = _with_judge_api_key(body["config"], self.judge_conn_id)
        return body

    @staticmethod
    def _find_live_job(hook: EvaluatorHook, label: str) -> dict[str, Any] | None:
        jobs = [
            job for job in hook.list_jobs()
            if (job.get("custom_fields") or {}).get("flywheel_key") == label
            and evaluation_status_of(job).value not in _DEAD_JOB_STATES
        ]
        return _most_recent(jobs)

    def execute(self, context: Context) -> dict[str, Any]:
        body = self._body()
        label = body["custom_fields"]["flywheel_key"]
        deadline = self._new_deadline()
        with EvaluatorHook(self.nemo_conn_id) as hook:
            job = self._find_live_job(hook, label)
            if job is not None:
                log.info("Re-attaching to evaluation job %s (label %s, status %s).", job.get("id"), label,
                         job.get("status"))
            else:
                job = hook.create_job(body)
                log.info("Submitted evaluation job %s (label %s).", job.get("id"), label)
            job_id = job.get("id")
            if not isinstance(job_id, str) or not job_id:
                raise AirflowException(f"The Evaluator answered without a job id for label {label!r}: {str(job)[:300]}")
            self.job_id = job_id
            _push(context, "job_id", job_id)
            _push(context, "job_url", hook.endpoint.url(api_path("v1", "evaluation", "jobs", job_id)))
            current = hook.get_job(job_id)
            status = evaluation_status_of(current)
            if status.is_terminal():
                return self._finish(hook, job_id, current)
        self.defer(
            trigger=NemoEvaluationJobTrigger(
                conn_id=self.nemo_conn_id, job_id=job_id, poll_interval=self.poll_interval, deadline=deadline,
            ),
            method_name="execute_complete",
            timeout=_defer_timeout(deadline, self.poll_interval),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resumed after :class:`NemoEvaluationJobTrigger`: fail closed unless it succeeded, then collect."""
        event = _check_event(type(self).__name__, event)
        job_id = event.get("job_id")
        self.job_id = job_id
        if event["status"] != SUCCESS:
            extra = self._cancel_after_timeout(job_id) if event["status"] == TIMEOUT else ""
            _raise_for_event(f"Evaluation job {job_id}", event, extra)
        with EvaluatorHook(self.nemo_conn_id) as hook:
            return self._finish(hook, job_id, hook.get_job(job_id))

    def _cancel_after_timeout(self, job_id: str) -> str:
        try:
            with EvaluatorHook(self.nemo_conn_id) as hook:
                hook.cancel_job(job_id)
        except NemoError as exc:
            return f". Could NOT cancel it ({exc}): cancel it by hand"
        return ". The job was cancelled"

    @staticmethod
    def _finish(hook: EvaluatorHook, job_id: str, job: Mapping[str, Any]) -> dict[str, Any]:
        status = evaluation_status_of(job)
        if status != EvaluationStatus.COMPLETED:
            details = job.get("status_details") or {}
            raise (AirflowFailException if status == EvaluationStatus.CANCELLED else AirflowException)(
                f"Evaluation job {job_id} is {status.describe()}: {details.get('message') or 'no detail'} "
                f"(status_details: {str(details)[:500]}). Check the target model is served, the judge is reachable "
                "and the dataset files exist."
            )
        summary, usage = _results_summary(hook.get_results(job_id))
        log.info("Evaluation job %s completed: %s", job_id, summary)
        return {
            "job_id": job_id,
            "status": status.value,
            "results": summary,
            "usage": usage,
            "started_at": job.get("created_at"),
            "finished_at": job.get("updated_at"),
        }

    def on_kill(self) -> None:
        """Killed on a worker: cancel the job this try submitted or re-attached to."""
        if not self.job_id:
            return
        try:
            with EvaluatorHook(self.nemo_conn_id, retry_limit=2) as hook:
                hook.cancel_job(self.job_id)
        except NemoError as exc:
            log.warning("Could not cancel evaluation job %s on kill (%s); cancel it by hand.", self.job_id, exc)


# -- Customize --------------------------------------------------------------------------------------------


class NemoCustomizationOperator(_NemoWaitMixin, BaseOperator):
    """Fine-tune with the NeMo Customizer, deferred while the job trains.

    Creates the config (HTTP 409 = it exists, fine), then RE-ATTACHES to a job with the same
    ``name`` that is not failed or cancelled, else submits the job. The job id and URL go to XCom
    at once (keys ``job_id``, ``job_url``, and ``output_model``).

    Args:
        config: The ``POST /v1/customization/configs`` body (``namespace``, ``name``, ...), or ``None`` to
            use an existing config named by ``job["config"]``.
        job: The ``POST /v1/customization/jobs`` body (``None``: the task is skipped, and so are the
            steps that need the customized model); its ``name`` must be deterministic (e.g.
            ``payloads.job_name(...)``) so a retry finds the job. ``config`` defaults to ``"{ns}/{name}"``
            of ``config``.
        nemo_conn_id: The ``nemo`` Connection.
        poll_interval: Seconds between two status checks while deferred.
        timeout: Seconds until training must be finished (then it is cancelled and the task fails).

    Returns:
        ``{"job_id", "output_model", "status"}``.
    """

    template_fields: Sequence[str] = ("config", "job")
    template_fields_renderers = {"config": "json", "job": "json"}
    ui_color = "#76b900"

    def __init__(
        self,
        *,
        config: dict[str, Any] | None,
        job: dict[str, Any],
        nemo_conn_id: str = "nemo_default",
        poll_interval: float = 60.0,
        timeout: float = 24 * 3600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.job = job
        self.nemo_conn_id = nemo_conn_id
        self._init_wait(poll_interval, timeout)
        self.job_id: str | None = None

    def _bodies(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        owner = type(self).__name__
        config = None if self.config is None else _as_mapping(owner, "config", self.config)
        job = _as_mapping(owner, "job", self.job)
        _check_name(owner, "job['name'] (deterministic, so a retry finds the job)", job.get("name"))
        if config is not None:
            for key in ("namespace", "name"):
                _check_name(owner, f"config[{key!r}]", config.get(key))
            ref = f"{config['namespace']}/{config['name']}"
            job.setdefault("config", ref)
            if job["config"] != ref:
                raise AirflowFailException(
                    f"{owner}: job['config'] is {job['config']!r} but the config created here is {ref!r}; make them "
                    "match or leave job['config'] out."
                )
        missing = [key for key in ("config", "dataset") if not job.get(key)]
        if missing:
            raise AirflowFailException(
                f"{owner}: job is missing {missing}; it is the POST /v1/customization/jobs body."
            )
        return config, job

    @staticmethod
    def _find_live_job(hook: CustomizerHook, name: str) -> dict[str, Any] | None:
        jobs = [
            job for job in hook.list_jobs()
            if job.get("name") == name and customization_status_of(job).value not in _DEAD_JOB_STATES
        ]
        return _most_recent(jobs)

    def execute(self, context: Context) -> dict[str, Any]:
        if self.job is None:
            # The run's plan has no customization for this model (e.g. disabled by a run override).
            raise AirflowSkipException("No customization job for this run: nothing to customize.")
        config, body = self._bodies()
        name = body["name"]
        deadline = self._new_deadline()
        with CustomizerHook(self.nemo_conn_id) as hook:
            if config is not None:
                hook.create_config(config)
            job = self._find_live_job(hook, name)
            if job is not None:
                log.info("Re-attaching to customization job %s (name %s, status %s).", job.get("id"), name,
                         job.get("status"))
            else:
                job = hook.create_job(body)
            job_id = job.get("id")
            if not isinstance(job_id, str) or not job_id:
                raise AirflowException(f"The Customizer answered without a job id for job {name!r}: {str(job)[:300]}")
            output_model = job.get("output_model") or body.get("output_model")
            self.job_id = job_id
            _push(context, "job_id", job_id)
            _push(context, "job_url", hook.endpoint.url(api_path("v1", "customization", "jobs", job_id)))
            _push(context, "output_model", output_model)
            status_body = hook.get_job_status(job_id)
        status = customization_status_of(status_body)
        log.info("Customization job %s (%s) is %s.", job_id, name, status.describe())
        if status.is_terminal():
            if status != CustomizationStatus.COMPLETED:
                raise (AirflowFailException if status == CustomizationStatus.CANCELLED else AirflowException)(
                    f"Customization job {job_id} ({name}) is {status.describe()}: "
                    f"{status_body.get('message') or 'no detail'}. Check its status_logs and the training dataset."
                )
            return {"job_id": job_id, "output_model": output_model, "status": status.value}
        self.defer(
            trigger=NemoCustomizationJobTrigger(
                conn_id=self.nemo_conn_id, job_id=job_id, poll_interval=self.poll_interval, deadline=deadline,
            ),
            method_name="execute_complete",
            kwargs={"output_model": output_model},
            timeout=_defer_timeout(deadline, self.poll_interval),
        )

    def execute_complete(
        self, context: Context, event: dict[str, Any], output_model: str | None = None
    ) -> dict[str, Any]:
        """Resumed after :class:`NemoCustomizationJobTrigger`: fail closed unless it completed."""
        event = _check_event(type(self).__name__, event)
        job_id = event.get("job_id")
        self.job_id = job_id
        if event["status"] != SUCCESS:
            extra = ""
            if event["status"] == TIMEOUT:
                try:
                    with CustomizerHook(self.nemo_conn_id) as hook:
                        hook.cancel_job(job_id)
                    extra = ". The job was cancelled"
                except NemoError as exc:
                    extra = f". Could NOT cancel it ({exc}): cancel it by hand"
            _raise_for_event(f"Customization job {job_id}", event, extra)
        if not output_model:
            with CustomizerHook(self.nemo_conn_id) as hook:
                output_model = hook.get_job(job_id).get("output_model")
        return {"job_id": job_id, "output_model": output_model, "status": CustomizationStatus.COMPLETED.value}

    def on_kill(self) -> None:
        """Killed on a worker: cancel the job this try submitted or re-attached to."""
        if not self.job_id:
            return
        try:
            with CustomizerHook(self.nemo_conn_id, retry_limit=2) as hook:
                hook.cancel_job(self.job_id)
        except NemoError as exc:
            log.warning("Could not cancel customization job %s on kill (%s); cancel it by hand.", self.job_id, exc)


# -- Cleanup -----------------------------------------------------------------------------------------------


class NemoDeleteDeploymentOperator(BaseOperator):
    """Delete a NIM deployment; one that is already gone (404) is fine.

    Meant for ``trigger_rule="all_done"`` so the GPUs are freed whatever happened upstream.

    Args:
        namespace: The deployment's namespace.
        name: The deployment's name.
        nemo_conn_id: The ``nemo`` Connection.

    Returns:
        ``{"namespace", "name", "deleted"}`` (``deleted`` is ``False`` when it was already gone).
    """

    template_fields: Sequence[str] = ("namespace", "name")
    ui_color = "#76b900"

    def __init__(self, *, namespace: str, name: str, nemo_conn_id: str = "nemo_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.namespace = namespace
        self.name = name
        self.nemo_conn_id = nemo_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        owner = type(self).__name__
        namespace = _check_name(owner, "namespace", self.namespace)
        name = _check_name(owner, "name", self.name)
        with DeploymentHook(self.nemo_conn_id) as hook:
            deleted = hook.delete_deployment(namespace, name)
        return {"namespace": namespace, "name": name, "deleted": deleted}


class NemoCancelJobOperator(BaseOperator):
    """Cancel a customization or evaluation job; one already finished or gone is fine.

    Args:
        job_id: The job id (e.g. ``"{{ ti.xcom_pull(task_ids='customize', key='job_id') }}"``).
        job_type: ``"customization"`` or ``"evaluation"``.
        nemo_conn_id: The ``nemo`` Connection.

    Returns:
        ``{"job_id", "job_type", "cancelled"}`` (``cancelled`` is ``False`` when it had already ended).
    """

    template_fields: Sequence[str] = ("job_id",)
    ui_color = "#76b900"

    def __init__(self, *, job_id: str, job_type: str, nemo_conn_id: str = "nemo_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if job_type not in ("customization", "evaluation"):
            raise ValueError(
                f"NemoCancelJobOperator: job_type must be 'customization' or 'evaluation', got {job_type!r}."
            )
        self.job_id = job_id
        self.job_type = job_type
        self.nemo_conn_id = nemo_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        job_id = _check_name(type(self).__name__, "job_id", self.job_id)
        hook_class = CustomizerHook if self.job_type == "customization" else EvaluatorHook
        with hook_class(self.nemo_conn_id) as hook:
            cancelled = hook.cancel_job(job_id)
        return {"job_id": job_id, "job_type": self.job_type, "cancelled": cancelled}
