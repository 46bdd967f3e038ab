"""The emulator's state: entities, time-driven jobs and deployments, and what the NIM serves.

Nothing here knows HTTP. Every status is computed from timestamps on read (``refresh``), so no
thread polls or spins; the only threads are the workers that run model training and evaluations.
All times come from a :class:`Clock` that tests (and ``POST /emulator/clock``) can move forward.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import string
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from include.nemo_emulator.datastore import DataStore, DataStoreError
from include.nemo_emulator.faults import FaultInjector, matching_pattern
from include.nemo_emulator.options import EmulatorOptions

log = logging.getLogger(__name__)

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
_ID_ALPHABET = string.ascii_letters + string.digits


class ChatModel(Protocol):
    """What the brain gives for each served chat model."""

    name: str

    def complete(self, request: dict) -> dict: ...


@dataclass
class ModelBackend:
    """The model "brain" and the evaluation runner, injected so tests can use stand-ins."""

    base_model: Callable[[str], ChatModel]
    customized_model: Callable[..., ChatModel]
    judge_model: Callable[[str], ChatModel]
    embed_text: Callable[..., list[float]]
    run_evaluation: Callable[..., dict]


def load_backend() -> ModelBackend:
    """The real brain (``brain.py``) and evaluation runner (``evaluation.py``), imported on first call.

    Importing lazily keeps start-up fast and lets the server run (and say clearly what is missing)
    even when one of the two modules cannot be imported.
    """

    def brain_call(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            from include.nemo_emulator import brain

            return getattr(brain, name)(*args, **kwargs)

        return call

    def run_evaluation(*args: Any, **kwargs: Any) -> dict:
        from include.nemo_emulator import evaluation

        return evaluation.run_evaluation(*args, **kwargs)

    return ModelBackend(
        base_model=brain_call("base_model"),
        customized_model=brain_call("customized_model"),
        judge_model=brain_call("judge_model"),
        embed_text=brain_call("embed_text"),
        run_evaluation=run_evaluation,
    )


class EmulatorError(Exception):
    """A request the emulator refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class NotServedError(EmulatorError):
    """The NIM does not serve the requested model now (HTTP 404)."""
    def __init__(self, message: str) -> None:
        super().__init__(404, message)


class _Cancelled(Exception):
    """Raised inside an evaluation's progress callback to stop a cancelled job."""


class Clock:
    """Monotonic seconds plus an offset that ``advance`` moves (time travel for tests)."""

    def __init__(self, source: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._offset = 0.0
        self._lock = threading.Lock()
        # Wall-clock anchor, so monotonic instants can be shown as ISO timestamps.
        self._wall0 = time.time()
        self._mono0 = source()

    def now(self) -> float:
        with self._lock:
            return self._source() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"the clock only moves forward; got {seconds} seconds")
        with self._lock:
            self._offset += seconds

    def iso(self, instant: float) -> str:
        """An instant of this clock as an ISO-8601 UTC timestamp."""
        wall = self._wall0 + (instant - self._mono0)
        return datetime.fromtimestamp(wall, tz=timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "")


def new_id(prefix: str) -> str:
    """A NeMo-style id: ``prefix`` + 22 random letters and digits (e.g. ``cust-...``)."""
    return prefix + "-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(22))


def split_ref(value: Any, what: str) -> tuple[str, str]:
    """Parse ``"ns/name"`` or ``{"namespace", "name"}`` into a pair; EmulatorError 422 otherwise."""
    if isinstance(value, dict) and isinstance(value.get("namespace"), str) and isinstance(value.get("name"), str):
        return value["namespace"], value["name"]
    if isinstance(value, str) and value.count("/") == 1 and all(value.split("/")):
        namespace, name = value.split("/")
        return namespace, name
    raise EmulatorError(422, f"{what} must be '<namespace>/<name>' or {{\"namespace\", \"name\"}}, got {value!r}")


def parse_files_url(files_url: str) -> tuple[str, str]:
    """``hf://datasets/<ns>/<name>[/<path>]`` -> (repo id, path); ValueError naming the problem."""
    prefix = "hf://datasets/"
    if not isinstance(files_url, str) or not files_url.startswith(prefix):
        raise ValueError(f"files_url {files_url!r} is not of the form hf://datasets/<namespace>/<name>/<path>")
    parts = files_url[len(prefix):].strip("/").split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"files_url {files_url!r} does not name a repo: expected hf://datasets/<namespace>/<name>")
    return f"{parts[0]}/{parts[1]}", "/".join(parts[2:])


def parse_jsonl(content: bytes, source: str) -> list[dict]:
    """Parse JSONL bytes into objects; ValueError naming ``source`` and the line on bad input."""
    rows = []
    for number, line in enumerate(content.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source} line {number} is not valid JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise ValueError(f"{source} line {number} is a {type(row).__name__}, expected a JSON object")
        rows.append(row)
    return rows


@dataclass
class _Phases:
    """created -> pending -> running -> done, from a start instant and two durations."""

    start: float
    queue: float
    duration: float

    @property
    def pending_at(self) -> float:
        return self.start + self.queue / 2

    @property
    def running_at(self) -> float:
        return self.start + self.queue

    @property
    def end_at(self) -> float:
        return self.running_at + self.duration

    def status(self, now: float) -> str:
        if now < self.pending_at:
            return "created"
        if now < self.running_at:
            return "pending"
        return "running"

    def progress(self, now: float) -> float:
        if now < self.running_at:
            return 0.0
        if self.duration <= 0:
            return 100.0
        return min(100.0, 100.0 * (now - self.running_at) / self.duration)


@dataclass
class _Job:
    """What customization and evaluation jobs share: phases, terminal state, logs, background work."""

    id: str
    phases: _Phases
    created_wall: str
    fault: str | None = None
    final_status: str | None = None
    final_at: float | None = None
    final_progress: float = 0.0
    message: str = ""
    logs: list[dict] = field(default_factory=list)
    logged: set[str] = field(default_factory=set)
    work_done_at: float | None = None
    work_error: str | None = None
    work_error_at: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)

    def current_status(self, now: float) -> str:
        return self.final_status or self.phases.status(now)


@dataclass
class CustomizationJob(_Job):
    """A customization job: its request, its timeline and the model it trains."""
    name: str | None = None
    namespace: str = "default"
    body: dict = field(default_factory=dict)
    config_ref: str = ""
    dataset_ref: tuple[str, str] = ("", "")
    files_url: str = ""
    hyperparameters: dict = field(default_factory=dict)
    output_model: str = ""
    base_model: str = ""
    epochs: int = 1
    batch_size: int = 8
    train_rows: int = 0
    val_rows: int = 0
    model: ChatModel | None = None
    registered: bool = False


@dataclass
class EvaluationJob(_Job):
    """An evaluation job: its request, its timeline, progress and results."""
    namespace: str = "default"
    body: dict = field(default_factory=dict)
    target_model: str = ""
    work_progress: float = 0.0
    samples_processed: int = 0
    results: dict | None = None
    result_id: str | None = None


@dataclass
class Deployment:
    """A NIM deployment: ready ``duration`` seconds after creation unless a fault holds it."""
    name: str
    namespace: str
    body: dict
    model: str
    created_at: float
    created_wall: str
    duration: float
    queue: float
    fault: str | None = None

    @property
    def ready_at(self) -> float:
        return self.created_at + self.duration

    def status(self, now: float) -> str:
        elapsed = now - self.created_at
        if elapsed < min(self.queue / 2, self.duration / 3):
            return "created"
        if self.fault == "stuck" or elapsed < self.duration:
            return "pending"
        return "failed" if self.fault == "fail" else "ready"


class EmulatorState:
    """All emulated services' data, guarded by one re-entrant lock."""

    def __init__(self, options: EmulatorOptions, datastore: DataStore, faults: FaultInjector,
                 backend: ModelBackend | None = None, clock: Clock | None = None) -> None:
        self.options = options
        self.datastore = datastore
        self.faults = faults
        self._backend = backend
        self.clock = clock or Clock()
        self.lock = threading.RLock()
        # Model work runs here so requests never wait for training or an evaluation.
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="emulator-work")
        self.durations = {
            "customization": options.effective_customization_duration,
            "evaluation": options.effective_evaluation_duration,
            "deployment": options.deployment_duration,
            "sync": options.sync_duration,
            "queue": options.queue_duration,
        }
        self._reset_data()

    # -- plumbing -------------------------------------------------------------------------------------------
    @property
    def backend(self) -> ModelBackend:
        if self._backend is None:
            self._backend = load_backend()
        return self._backend

    def _reset_data(self) -> None:
        self.namespaces: dict[str, dict] = {}
        self.datasets: dict[tuple[str, str], dict] = {}
        self.models: dict[tuple[str, str], dict] = {}
        self.customization_configs: dict[tuple[str, str], dict] = {}
        self.customization_jobs: dict[str, CustomizationJob] = {}
        self.evaluation_jobs: dict[str, EvaluationJob] = {}
        self.deployments: dict[tuple[str, str], Deployment] = {}
        self._chat_cache: dict[str, ChatModel] = {}
        self.requests: dict[str, int] = {}

    def reset(self) -> None:
        """Forget everything (entities, jobs, files, counters, faults back to start-up values)."""
        with self.lock:
            for job in [*self.customization_jobs.values(), *self.evaluation_jobs.values()]:
                job.cancel_event.set()
            self._reset_data()
            self.datastore.reset()
            self.faults.reset()

    def configure(self, changes: dict[str, float]) -> dict[str, float]:
        """Change durations for jobs and deployments created from now on."""
        unknown = sorted(set(changes) - set(self.durations) - {"job"})
        if unknown:
            raise EmulatorError(422, f"unknown duration(s) {unknown}; known: {sorted(self.durations) + ['job']}")
        for key, value in changes.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise EmulatorError(422, f"duration {key!r} must be a number >= 0, got {value!r}")
        with self.lock:
            if "job" in changes:
                self.durations["customization"] = self.durations["evaluation"] = float(changes["job"])
            for key, value in changes.items():
                if key != "job":
                    self.durations[key] = float(value)
            return dict(self.durations)

    def shutdown(self) -> None:
        """Stop background work (called when the server stops)."""
        with self.lock:
            for job in [*self.customization_jobs.values(), *self.evaluation_jobs.values()]:
                job.cancel_event.set()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def count_request(self, key: str) -> None:
        """Count one request under ``key`` (``METHOD /route/template``)."""
        with self.lock:
            self.requests[key] = self.requests.get(key, 0) + 1

    def _phases(self, kind: str) -> _Phases:
        return _Phases(start=self.clock.now(), queue=self.durations["queue"], duration=self.durations[kind])

    # -- namespaces -----------------------------------------------------------------------------------------
    def create_namespace(self, body: dict) -> dict:
        """Create an Entity Store namespace from ``{"id"}``; 409 when it exists."""
        namespace_id = body.get("id")
        if not isinstance(namespace_id, str) or not namespace_id:
            raise EmulatorError(422, "body.id is required: the namespace name, e.g. {\"id\": \"flywheel\"}")
        with self.lock:
            if namespace_id in self.namespaces:
                raise EmulatorError(409, f"namespace {namespace_id!r} already exists")
            now = self.clock.iso(self.clock.now())
            entity = {"id": namespace_id, "description": body.get("description"), "created_at": now,
                      "updated_at": now, "custom_fields": body.get("custom_fields") or {}}
            self.namespaces[namespace_id] = entity
            return entity

    def get_namespace(self, namespace_id: str) -> dict:
        """An Entity Store namespace; 404 when unknown."""
        with self.lock:
            if namespace_id not in self.namespaces:
                raise EmulatorError(404, f"namespace {namespace_id!r} not found: create it with POST /v1/namespaces")
            return self.namespaces[namespace_id]

    # -- entity store: datasets -----------------------------------------------------------------------------
    def create_dataset(self, body: dict) -> dict:
        """Register a dataset (``name``, ``namespace``, ``files_url``...); 409 when it exists."""
        name, namespace = body.get("name"), body.get("namespace") or "default"
        if not isinstance(name, str) or not name:
            raise EmulatorError(422, "body.name is required (the dataset name)")
        files_url = body.get("files_url")
        if not isinstance(files_url, str) or not files_url:
            raise EmulatorError(422, f"body.files_url is required, e.g. hf://datasets/{namespace}/{name}")
        try:
            parse_files_url(files_url)
        except ValueError as exc:
            raise EmulatorError(422, f"body.files_url: {exc}") from None
        with self.lock:
            key = (namespace, name)
            if key in self.datasets:
                raise EmulatorError(409, f"dataset {namespace}/{name} already exists")
            now = self.clock.iso(self.clock.now())
            entity = {**body, "id": new_id("dataset"), "name": name, "namespace": namespace, "files_url": files_url,
                      "created_at": now, "updated_at": now}
            entity.setdefault("description", None)
            entity.setdefault("project", None)
            entity.setdefault("custom_fields", {})
            self.datasets[key] = entity
            return entity

    def get_dataset(self, namespace: str, name: str) -> dict:
        """A registered dataset; 404 when unknown."""
        with self.lock:
            if (namespace, name) not in self.datasets:
                raise EmulatorError(404, f"dataset {namespace}/{name} not found in the Entity Store")
            return self.datasets[(namespace, name)]

    def update_dataset(self, namespace: str, name: str, changes: dict) -> dict:
        """Apply ``changes`` to a dataset (not its identity); 422 for immutable fields."""
        immutable = sorted(set(changes) & {"id", "name", "namespace", "created_at"})
        if immutable:
            raise EmulatorError(422, f"cannot change {immutable} of dataset {namespace}/{name}")
        if "files_url" in changes:
            try:
                parse_files_url(changes["files_url"])
            except ValueError as exc:
                raise EmulatorError(422, f"body.files_url: {exc}") from None
        with self.lock:
            entity = self.get_dataset(namespace, name)
            entity.update(changes)
            entity["updated_at"] = self.clock.iso(self.clock.now())
            return entity

    def delete_dataset(self, namespace: str, name: str) -> dict:
        """Forget a dataset entity (its Data Store files stay)."""
        with self.lock:
            entity = self.get_dataset(namespace, name)
            del self.datasets[(namespace, name)]
            return entity

    # -- entity store: models -------------------------------------------------------------------------------
    def get_model(self, namespace: str, name: str) -> dict:
        """An Entity Store model (customized models appear when their job completes)."""
        self.refresh()
        with self.lock:
            if (namespace, name) not in self.models:
                raise EmulatorError(404, f"model {namespace}/{name} not found in the Entity Store")
            return self.models[(namespace, name)]

    def delete_model(self, namespace: str, name: str) -> dict:
        """Forget a model entity; a customized model stops being served."""
        with self.lock:
            entity = self.get_model(namespace, name)
            del self.models[(namespace, name)]
            return entity

    def list_models(self) -> list[dict]:
        """Every Entity Store model."""
        self.refresh()
        with self.lock:
            return list(self.models.values())

    # -- customizer: configs --------------------------------------------------------------------------------
    def create_customization_config(self, body: dict) -> dict:
        """Store a customization config; 409 when ``namespace/name`` exists."""
        name, namespace = body.get("name"), body.get("namespace") or "default"
        if not isinstance(name, str) or not name:
            raise EmulatorError(422, "body.name is required (the customization config name)")
        target = body.get("target")
        if not (isinstance(target, str) and target) and not isinstance(target, dict):
            raise EmulatorError(422, "body.target is required: the base model target, "
                                     "e.g. 'meta/llama-3.2-1b-instruct@2.0'")
        with self.lock:
            if (namespace, name) in self.customization_configs:
                raise EmulatorError(409, f"customization config {namespace}/{name} already exists")
            now = self.clock.iso(self.clock.now())
            entity = {**body, "id": new_id("customization_config"), "name": name, "namespace": namespace,
                      "created_at": now, "updated_at": now}
            self.customization_configs[(namespace, name)] = entity
            return entity

    def get_customization_config(self, namespace: str, name: str) -> dict:
        """A customization config; 404 when unknown."""
        with self.lock:
            if (namespace, name) not in self.customization_configs:
                raise EmulatorError(404, f"customization config {namespace}/{name} not found")
            return self.customization_configs[(namespace, name)]

    def delete_customization_config(self, namespace: str, name: str) -> dict:
        """Forget a customization config."""
        with self.lock:
            entity = self.get_customization_config(namespace, name)
            del self.customization_configs[(namespace, name)]
            return entity

    @staticmethod
    def base_model_of(config: dict) -> str:
        """The base model a customization config targets (``target`` without its ``@version``)."""
        target = config.get("target")
        if isinstance(target, dict):
            target = target.get("base_model") or target.get("model") or (
                f"{target.get('namespace')}/{target.get('name')}" if target.get("name") else "")
        return str(target).split("@", 1)[0]

    # -- customizer: jobs -----------------------------------------------------------------------------------
    def create_customization_job(self, body: dict) -> CustomizationJob:
        """Validate and start a customization job (training runs in a worker)."""
        config_ns, config_name = split_ref(body.get("config"), "body.config")
        dataset_ns, dataset_name = split_ref(body.get("dataset"), "body.dataset")
        hyper = body.get("hyperparameters") or {}
        if not isinstance(hyper, dict):
            raise EmulatorError(422, "body.hyperparameters must be an object")
        epochs, batch_size = hyper.get("epochs", 1), hyper.get("batch_size", 8)
        for label, value in (("epochs", epochs), ("batch_size", batch_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise EmulatorError(422, f"body.hyperparameters.{label} must be an integer >= 1, got {value!r}")
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise EmulatorError(422, "body.name must be a string")
        with self.lock:
            self.refresh()
            if (config_ns, config_name) not in self.customization_configs:
                raise EmulatorError(422, f"customization config {config_ns}/{config_name} not found: "
                                         "create it with POST /v1/customization/configs first")
            config = self.customization_configs[(config_ns, config_name)]
            if (dataset_ns, dataset_name) not in self.datasets:
                raise EmulatorError(422, f"dataset {dataset_ns}/{dataset_name} not found in the Entity Store: "
                                         "register it with POST /v1/datasets first")
            job_id = new_id("cust")
            output_model = body.get("output_model") or f"{dataset_ns}/{config_name}@{job_id}"
            out_ns, out_name = split_ref(output_model, "body.output_model")
            if (out_ns, out_name) in self.models:
                raise EmulatorError(409, f"output_model {output_model} already exists in the Entity Store")
            for other in self.customization_jobs.values():
                if other.output_model == output_model and other.current_status(self.clock.now()) not in (
                        "failed", "cancelled"):
                    raise EmulatorError(409, f"output_model {output_model} is already produced by job {other.id}")
            phases = self._phases("customization")
            job = CustomizationJob(
                id=job_id, phases=phases, created_wall=self.clock.iso(phases.start), name=name,
                namespace=body.get("namespace") or config_ns, body=body,
                config_ref=f"{config_ns}/{config_name}", dataset_ref=(dataset_ns, dataset_name),
                files_url=self.datasets[(dataset_ns, dataset_name)]["files_url"], hyperparameters=hyper,
                output_model=output_model, base_model=self.base_model_of(config), epochs=epochs,
                batch_size=batch_size,
            )
            pattern = matching_pattern(self.faults.settings.fail_customizations, name, output_model, job.config_ref)
            if pattern is not None:
                job.fault = f"injected failure (fault pattern {pattern!r}): training crashed"
            self.customization_jobs[job_id] = job
            self._executor.submit(self._train, job)
            log.info("Customization job %s created (config %s, dataset %s/%s, output %s).", job_id,
                     job.config_ref, dataset_ns, dataset_name, output_model)
            return job

    def _read_dataset_file(self, files_url: str, path: str) -> bytes | None:
        repo_id, prefix = parse_files_url(files_url)
        full = f"{prefix}/{path}" if prefix else path
        try:
            return self.datastore.read_file("dataset", repo_id, full)
        except DataStoreError as exc:
            if exc.status == 404:
                return None
            raise

    def _train(self, job: CustomizationJob) -> None:
        """Worker: read the dataset files and build the customized model."""
        if job.cancel_event.is_set():
            return
        try:
            train = self._read_dataset_file(job.files_url, "training/train_data.jsonl")
            if train is None:
                raise ValueError(f"training file training/train_data.jsonl not found under {job.files_url}: "
                                 "upload it to the dataset's Data Store repo")
            train_rows = parse_jsonl(train, f"{job.files_url}/training/train_data.jsonl")
            if not train_rows:
                raise ValueError(f"training file {job.files_url}/training/train_data.jsonl is empty")
            val = self._read_dataset_file(job.files_url, "validation/val_data.jsonl")
            val_rows = parse_jsonl(val, f"{job.files_url}/validation/val_data.jsonl") if val else []
            model = self.backend.customized_model(job.output_model, job.base_model, train_rows, val_rows,
                                                  dict(job.hyperparameters))
            with self.lock:
                job.model, job.train_rows, job.val_rows = model, len(train_rows), len(val_rows)
                job.work_done_at = self.clock.now()
        except Exception as exc:  # noqa: BLE001 - any failure becomes the job's failure message
            if not isinstance(exc, ValueError):
                log.exception("Customization job %s: training raised.", job.id)
            message = str(exc) if isinstance(exc, ValueError) else f"internal error: {type(exc).__name__}: {exc}"
            with self.lock:
                job.work_error, job.work_error_at = message, self.clock.now()

    def cancel_customization_job(self, job_id: str) -> CustomizationJob:
        """Cancel an unfinished job (idempotent); 409 when it already completed or failed."""
        return self._cancel(self.get_customization_job(job_id), "customization")

    def get_customization_job(self, job_id: str) -> CustomizationJob:
        """A customization job with its due transitions applied; 404 when unknown."""
        self.refresh()
        with self.lock:
            if job_id not in self.customization_jobs:
                raise EmulatorError(404, f"customization job {job_id!r} not found")
            return self.customization_jobs[job_id]

    def _cancel(self, job: _Job, kind: str) -> _Job:
        with self.lock:
            now = self.clock.now()
            status = job.current_status(now)
            if status == "cancelled":
                return job
            if status in TERMINAL_STATUSES:
                raise EmulatorError(409, f"{kind} job {job.id} is already {status}; "
                                         "only unfinished jobs can be cancelled")
            job.final_progress = self._progress(job, now)
            job.final_status, job.final_at, job.message = "cancelled", now, "cancelled at the user's request"
            job.cancel_event.set()
            self._log(job, "cancelled", now, job.message)
            return job

    # -- evaluator ------------------------------------------------------------------------------------------
    @staticmethod
    def model_id_of(spec: Any) -> str:
        """The model id in a target/judge spec: ``{"api_endpoint": {"model_id"}}`` or ``"ns/name"``."""
        if isinstance(spec, str) and spec:
            return spec
        if isinstance(spec, dict):
            endpoint = spec.get("api_endpoint")
            if isinstance(endpoint, dict) and isinstance(endpoint.get("model_id"), str):
                return endpoint["model_id"]
            if isinstance(spec.get("namespace"), str) and isinstance(spec.get("name"), str):
                return f"{spec['namespace']}/{spec['name']}"
        raise ValueError(f"cannot find a model in {spec!r}: expected {{\"api_endpoint\": {{\"model_id\": ...}}}} "
                         "or '<namespace>/<model name>'")

    def create_evaluation_job(self, body: dict) -> EvaluationJob:
        """Validate and start an evaluation job (the evaluation runs in a worker)."""
        config = body.get("config")
        if not isinstance(config, dict):
            raise EmulatorError(422, "body.config must be an inline evaluation config object "
                                     "(the emulator does not store named configs)")
        if not isinstance(config.get("tasks"), dict) or not config["tasks"]:
            raise EmulatorError(422, "body.config.tasks must be a non-empty object of tasks")
        target = body.get("target")
        if not isinstance(target, dict) or "model" not in target:
            raise EmulatorError(422, "body.target must be {\"type\": \"model\", \"model\": ...}")
        if target.get("type", "model") != "model":
            raise EmulatorError(422, f"body.target.type {target.get('type')!r} is not supported; use 'model'")
        try:
            target_model = self.model_id_of(target["model"])
        except ValueError as exc:
            raise EmulatorError(422, f"body.target.model: {exc}") from None
        custom_fields = body.get("custom_fields") or {}
        if not isinstance(custom_fields, dict):
            raise EmulatorError(422, "body.custom_fields must be an object")
        with self.lock:
            phases = self._phases("evaluation")
            job = EvaluationJob(id=new_id("eval"), phases=phases, created_wall=self.clock.iso(phases.start),
                                namespace=body.get("namespace") or "default", body=body, target_model=target_model)
            values = [str(v) for v in custom_fields.values()]
            pattern = matching_pattern(self.faults.settings.fail_evaluations, target_model, *values)
            if pattern is not None:
                job.fault = f"injected failure (fault pattern {pattern!r}): evaluation crashed"
            self.evaluation_jobs[job.id] = job
            self._executor.submit(self._evaluate, job)
            log.info("Evaluation job %s created (target %s).", job.id, target_model)
            return job

    def _evaluate(self, job: EvaluationJob) -> None:
        """Worker: run the evaluation against the served target."""
        def on_progress(value: float) -> None:
            if job.cancel_event.is_set():
                raise _Cancelled()
            with self.lock:
                job.work_progress = max(0.0, min(100.0, float(value)))
                if value > 0:  # run_evaluation reports once per evaluated row, after a first 0
                    job.samples_processed += 1

        try:
            target = self.served_chat_model(job.target_model, purpose="evaluation target")
            results = self.backend.run_evaluation(
                job.body["config"], target, self._resolve_for_evaluation, self._load_rows, on_progress)
            if not isinstance(results, dict) or not isinstance(results.get("tasks"), dict):
                raise TypeError(f"run_evaluation returned {type(results).__name__} without a 'tasks' object")
            with self.lock:
                job.results, job.result_id = results, new_id("evaluation_result")
                job.work_progress, job.work_done_at = 100.0, self.clock.now()
        except _Cancelled:
            log.info("Evaluation job %s stopped: cancelled.", job.id)
        except Exception as exc:  # noqa: BLE001 - any failure becomes the job's failure message
            if not isinstance(exc, (ValueError, NotServedError)):
                log.exception("Evaluation job %s: run_evaluation raised.", job.id)
            message = str(exc) if isinstance(exc, (ValueError, EmulatorError)) else (
                f"internal error: {type(exc).__name__}: {exc}")
            with self.lock:
                job.work_error, job.work_error_at = message, self.clock.now()

    def _resolve_for_evaluation(self, spec: dict | str) -> ChatModel:
        try:
            model_id = self.model_id_of(spec)
            return self.served_chat_model(model_id, purpose="evaluation")
        except NotServedError as exc:
            raise ValueError(exc.message) from None

    def _load_rows(self, files_url: str) -> list[dict]:
        repo_id, path = parse_files_url(files_url)
        if not path:
            raise ValueError(f"files_url {files_url!r} names a repo but no file: append /<file>.jsonl")
        try:
            content = self.datastore.read_file("dataset", repo_id, path)
        except DataStoreError as exc:
            raise ValueError(f"cannot read {files_url}: {exc.message}") from None
        return parse_jsonl(content, files_url)

    def get_evaluation_job(self, job_id: str) -> EvaluationJob:
        """An evaluation job with its due transitions applied; 404 when unknown."""
        self.refresh()
        with self.lock:
            if job_id not in self.evaluation_jobs:
                raise EmulatorError(404, f"evaluation job {job_id!r} not found")
            return self.evaluation_jobs[job_id]

    def cancel_evaluation_job(self, job_id: str) -> EvaluationJob:
        """Cancel an unfinished evaluation (idempotent); 409 when it already finished."""
        return self._cancel(self.get_evaluation_job(job_id), "evaluation")

    def delete_evaluation_job(self, job_id: str) -> EvaluationJob:
        """Forget an evaluation job, stopping it if it still runs."""
        with self.lock:
            job = self.get_evaluation_job(job_id)
            job.cancel_event.set()
            del self.evaluation_jobs[job_id]
            return job

    # -- deployment management ------------------------------------------------------------------------------
    def create_deployment(self, body: dict) -> Deployment:
        """Start a model deployment; 409 when ``namespace/name`` exists."""
        name, namespace = body.get("name"), body.get("namespace") or "default"
        if not isinstance(name, str) or not name:
            raise EmulatorError(422, "body.name is required (the deployment name)")
        config = body.get("config")
        if not isinstance(config, dict) or not isinstance(config.get("model"), str) or not config["model"]:
            raise EmulatorError(422, "body.config.model is required: the model to serve, "
                                     "e.g. {\"model\": \"meta/llama-3.2-1b-instruct\", \"nim_deployment\": {...}}")
        with self.lock:
            if (namespace, name) in self.deployments:
                raise EmulatorError(409, f"model deployment {namespace}/{name} already exists")
            now = self.clock.now()
            deployment = Deployment(name=name, namespace=namespace, body=body, model=config["model"],
                                    created_at=now, created_wall=self.clock.iso(now),
                                    duration=self.durations["deployment"], queue=self.durations["queue"])
            settings = self.faults.settings
            if matching_pattern(settings.fail_deployments, name, deployment.model):
                deployment.fault = "fail"
            elif matching_pattern(settings.stuck_deployments, name, deployment.model):
                deployment.fault = "stuck"
            self.deployments[(namespace, name)] = deployment
            log.info("Deployment %s/%s of %s created.", namespace, name, deployment.model)
            return deployment

    def get_deployment(self, namespace: str, name: str) -> Deployment:
        """A model deployment; 404 when unknown."""
        with self.lock:
            if (namespace, name) not in self.deployments:
                raise EmulatorError(404, f"model deployment {namespace}/{name} not found")
            return self.deployments[(namespace, name)]

    def delete_deployment(self, namespace: str, name: str) -> Deployment:
        """Delete a deployment: its model stops being served at once."""
        with self.lock:
            deployment = self.get_deployment(namespace, name)
            del self.deployments[(namespace, name)]
            return deployment

    # -- time-driven transitions ----------------------------------------------------------------------------
    def _log(self, job: _Job, key: str, instant: float, message: str, detail: str | None = None) -> None:
        if key in job.logged:
            return
        job.logged.add(key)
        entry = {"updated_at": self.clock.iso(instant), "message": message}
        if detail:
            entry["detail"] = detail
        job.logs.append(entry)

    def _progress(self, job: _Job, now: float) -> float:
        if job.final_status is not None:
            return job.final_progress
        progress = job.phases.progress(now)
        if isinstance(job, EvaluationJob):
            progress = min(progress, job.work_progress)
        if job.work_done_at is None:
            progress = min(progress, 99.0)
        return progress

    def _refresh_job(self, job: _Job, now: float, kind: str) -> None:
        if job.final_status is not None:
            return
        phases = job.phases
        self._log(job, "created", phases.start, "created")
        if now >= phases.pending_at:
            self._log(job, "pending", phases.pending_at, "pending")
        if now >= phases.running_at:
            self._log(job, "running", phases.running_at, "running")
        fail_at, reason = None, ""
        if job.work_error is not None and job.work_error_at is not None:
            fail_at, reason = max(job.work_error_at, phases.running_at), job.work_error
        if job.fault is not None:
            fault_at = phases.running_at + phases.duration / 2
            if fail_at is None or fault_at < fail_at:
                fail_at, reason = fault_at, job.fault
        if fail_at is not None and now >= fail_at:
            job.final_progress = min(self._progress(job, fail_at), 99.0)
            job.final_status, job.final_at, job.message = "failed", fail_at, reason
            self._log(job, "failed", fail_at, "failed", reason)
            log.info("%s job %s failed: %s", kind.capitalize(), job.id, reason)
            return
        if job.work_done_at is not None and now >= max(phases.end_at, job.work_done_at):
            done_at = max(phases.end_at, job.work_done_at)
            job.final_progress, job.final_status, job.final_at = 100.0, "completed", done_at
            job.message = f"{kind} completed"
            if isinstance(job, CustomizationJob):
                self._register_output_model(job, done_at)
            self._log(job, "completed", done_at, "completed")
            log.info("%s job %s completed.", kind.capitalize(), job.id)

    def _register_output_model(self, job: CustomizationJob, instant: float) -> None:
        namespace, name = job.output_model.split("/", 1)
        when = self.clock.iso(instant)
        self.models[(namespace, name)] = {
            "id": new_id("model"), "name": name, "namespace": namespace,
            "description": f"{job.base_model} customized by job {job.id} (emulator)",
            "base_model": job.base_model,
            "peft": {"finetuning_type": job.hyperparameters.get("finetuning_type", "lora")},
            "spec": {"is_chat": True},
            "artifact": {"files_url": f"emulator://models/{namespace}/{name}", "status": "upload_completed"},
            "custom_fields": {"customization_job": job.id, "train_rows": job.train_rows, "val_rows": job.val_rows},
            "created_at": when, "updated_at": when,
        }
        job.registered = True

    def refresh(self) -> None:
        """Apply every transition that is due (cheap; called on each read)."""
        with self.lock:
            now = self.clock.now()
            for job in self.customization_jobs.values():
                self._refresh_job(job, now, "customization")
            for ejob in self.evaluation_jobs.values():
                self._refresh_job(ejob, now, "evaluation")

    # -- NIM ------------------------------------------------------------------------------------------------
    def served(self) -> dict[str, dict]:
        """Model id -> ``{"kind", "parent", "since"}`` for every model the NIM serves right now."""
        self.refresh()
        with self.lock:
            now = self.clock.now()
            served: dict[str, dict] = {}
            for name in self.options.judge_model:
                served[name] = {"kind": "judge", "parent": None, "since": 0.0}
            for name in self.options.embedding_model:
                served[name] = {"kind": "embedding", "parent": None, "since": 0.0}
            for deployment in self.deployments.values():
                if deployment.status(now) != "ready":
                    continue
                entry = served.get(deployment.model)
                if entry is None:
                    served[deployment.model] = {"kind": "base", "parent": None, "since": deployment.ready_at}
                elif entry["kind"] == "base":
                    entry["since"] = min(entry["since"], deployment.ready_at)
            for job in self.customization_jobs.values():
                if job.final_status != "completed" or job.final_at is None:
                    continue
                if tuple(job.output_model.split("/", 1)) not in self.models:
                    continue  # the model entity was deleted
                base = served.get(job.base_model)
                if base is None or base["kind"] == "embedding":
                    continue
                synced_at = max(job.final_at, base["since"]) + self.durations["sync"]
                if now >= synced_at:
                    served[job.output_model] = {"kind": "customized", "parent": job.base_model, "since": synced_at}
            return served

    def served_chat_model(self, model_id: str, purpose: str = "chat") -> ChatModel:
        """The ChatModel serving ``model_id``; NotServedError (404) when the NIM does not serve it now."""
        served = self.served()
        entry = served.get(model_id)
        if entry is None:
            chat = sorted(k for k, v in served.items() if v["kind"] != "embedding")
            raise NotServedError(f"model {model_id!r} is not served by the NIM ({purpose}); served chat models: "
                                 f"{chat}. Deploy it (and wait until ready) or wait for a customized model to sync.")
        if entry["kind"] == "embedding":
            raise NotServedError(f"model {model_id!r} is an embedding model: use /v1/embeddings")
        with self.lock:
            if entry["kind"] == "customized":
                for job in self.customization_jobs.values():
                    if job.output_model == model_id and job.final_status == "completed" and job.model is not None:
                        inner = job.model
                        break
                else:  # pragma: no cover - served() only lists completed jobs with a model
                    raise NotServedError(f"model {model_id!r} has no trained weights")
            else:
                cache_key = f"{entry['kind']}:{model_id}"
                inner = self._chat_cache.get(cache_key)
                if inner is None:
                    factory = self.backend.judge_model if entry["kind"] == "judge" else self.backend.base_model
                    inner = self._chat_cache[cache_key] = factory(model_id)
        return _ServedModel(self, model_id, inner)

    def embed(self, texts: list[str], model_id: str, dimensions: int | None) -> list[list[float]]:
        """Embed ``texts`` with a served embedding model; NotServedError for any other model."""
        served = self.served()
        if served.get(model_id, {}).get("kind") != "embedding":
            embedding = sorted(k for k, v in served.items() if v["kind"] == "embedding")
            raise NotServedError(f"model {model_id!r} is not an embedding model served by the NIM; "
                                 f"embedding models: {embedding}")
        kwargs = {"dimensions": dimensions} if dimensions else {}
        return [self.backend.embed_text(text, **kwargs) for text in texts]

    # -- views ----------------------------------------------------------------------------------------------
    def customization_status(self, job: CustomizationJob) -> dict:
        """The ``/status`` body of a customization job."""
        with self.lock:
            now = self.clock.now()
            status = job.current_status(now)
            progress = round(self._progress(job, now), 2)
            epochs_done = math.floor(progress / 100 * job.epochs + 1e-9)
            steps_per_epoch = max(1, math.ceil(job.train_rows / job.batch_size)) if job.train_rows else 0
            running_since = job.phases.running_at
            end = job.final_at if job.final_at is not None else now
            return {
                "id": job.id,
                "created_at": job.created_wall,
                "updated_at": self.clock.iso(job.final_at if job.final_at is not None else now),
                "status": status,
                "percentage_done": progress,
                "epochs_completed": epochs_done,
                "steps_completed": int(progress / 100 * job.epochs * steps_per_epoch),
                "elapsed_time": round(max(0.0, end - running_since), 3),
                "best_epoch": epochs_done - 1 if epochs_done else None,
                "status_logs": list(job.logs),
                "message": job.message or status,
            }

    def customization_view(self, job: CustomizationJob) -> dict:
        """The full body of a customization job (``GET /v1/customization/jobs/{id}``)."""
        details = self.customization_status(job)
        return {
            "id": job.id,
            "name": job.name,
            "namespace": job.namespace,
            "description": job.body.get("description"),
            "created_at": job.created_wall,
            "updated_at": details["updated_at"],
            "config": job.body.get("config"),
            "dataset": job.body.get("dataset"),
            "hyperparameters": job.hyperparameters,
            "output_model": job.output_model,
            "base_model": job.base_model,
            "status": details["status"],
            "status_details": {key: value for key, value in details.items() if key != "id"},
            "custom_fields": job.body.get("custom_fields") or {},
            "project": job.body.get("project"),
            "ownership": job.body.get("ownership"),
        }

    def evaluation_view(self, job: EvaluationJob) -> dict:
        """The body of an evaluation job (``GET /v1/evaluation/jobs/{id}``)."""
        with self.lock:
            now = self.clock.now()
            status = job.current_status(now)
            progress = round(self._progress(job, now), 2)
            tasks = list(job.body["config"].get("tasks", {}))
            task_state = {"completed": "completed", "failed": "failed", "running": "running"}.get(status, "pending")
            if status == "cancelled":
                task_state = "failed"
            return {
                **{k: v for k, v in job.body.items() if k not in ("config", "target")},
                "id": job.id,
                "namespace": job.namespace,
                "created_at": job.created_wall,
                "updated_at": self.clock.iso(job.final_at if job.final_at is not None else now),
                "config": job.body["config"],
                "target": job.body["target"],
                "custom_fields": job.body.get("custom_fields") or {},
                "status": status,
                "status_details": {
                    "message": job.message or status,
                    "progress": progress,
                    "samples_processed": job.samples_processed,
                    "task_status": {task: task_state for task in tasks},
                },
                "result": job.result_id if status == "completed" else None,
                "output_files_url": None,
            }

    def evaluation_results(self, job: EvaluationJob) -> dict:
        """The results body of a completed evaluation; 409 before completion."""
        with self.lock:
            status = job.current_status(self.clock.now())
            if status != "completed" or job.results is None:
                reason = f": {job.message}" if status == "failed" else ""
                raise EmulatorError(409, f"evaluation job {job.id} is {status}{reason}; results exist once it is "
                                         "completed")
            return {"id": job.result_id, "job": job.id, "created_at": self.clock.iso(job.final_at or 0.0),
                    "namespace": job.namespace, **job.results}

    def deployment_view(self, deployment: Deployment, nim_url: str = "") -> dict:
        """The body of a deployment, with ``status_details.status``."""
        with self.lock:
            status = deployment.status(self.clock.now())
        descriptions = {
            "created": "deployment created",
            "pending": "waiting for the NIM to start" if deployment.fault != "stuck" else
                       "waiting for the NIM to start (injected fault: it never gets ready)",
            "ready": "the NIM is serving the model",
            "failed": "injected fault: the NIM failed to start",
        }
        return {
            **{k: v for k, v in deployment.body.items() if k not in ("status_details", "deployed")},
            "name": deployment.name,
            "namespace": deployment.namespace,
            "created_at": deployment.created_wall,
            "updated_at": deployment.created_wall,
            "config": deployment.body["config"],
            "deployed": status == "ready",
            "url": nim_url,
            "status_details": {"status": status, "description": descriptions[status]},
        }

    def summary(self) -> dict:
        """Counts for tests (``GET /emulator/state``)."""
        self.refresh()
        served = self.served()
        with self.lock:
            now = self.clock.now()

            def by_status(items: list[str]) -> dict[str, int]:
                counts: dict[str, int] = {}
                for status in items:
                    counts[status] = counts.get(status, 0) + 1
                return counts

            return {
                "customization_jobs": {"total": len(self.customization_jobs), "by_status": by_status(
                    [j.current_status(now) for j in self.customization_jobs.values()])},
                "evaluation_jobs": {"total": len(self.evaluation_jobs), "by_status": by_status(
                    [j.current_status(now) for j in self.evaluation_jobs.values()])},
                "deployments": {"total": len(self.deployments), "by_status": by_status(
                    [d.status(now) for d in self.deployments.values()])},
                "namespaces": sorted(self.namespaces),
                "datastore_namespaces": sorted(self.datastore.namespaces),
                "datasets": sorted(f"{ns}/{n}" for ns, n in self.datasets),
                "models": sorted(f"{ns}/{n}" for ns, n in self.models),
                "customization_configs": sorted(f"{ns}/{n}" for ns, n in self.customization_configs),
                "repos": [f"{t}:{r}" for t, r in self.datastore.list_repos()],
                "served_models": sorted(served),
                "requests": dict(self.requests),
                "faults_injected": dict(self.faults.injected),
                "durations": dict(self.durations),
            }


class _ServedModel:
    """A served ChatModel that checks, on every call, that the NIM still serves it."""

    def __init__(self, state: EmulatorState, model_id: str, inner: ChatModel) -> None:
        self._state = state
        self._inner = inner
        self.name = model_id

    def complete(self, request: dict) -> dict:
        if self.name not in self._state.served():
            raise NotServedError(f"model {self.name!r} stopped being served by the NIM (deployment deleted?)")
        return self._inner.complete(request)
