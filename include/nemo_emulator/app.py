"""The emulator's FastAPI app: NeMo platform APIs, the Data Store, the NIM proxy and the control API.

Layout on one port: platform and Data Store at ``/v1/...`` (Hugging Face API under ``/v1/hf``),
the NIM under ``/nim`` (``/nim/v1/models``...), test controls under ``/emulator`` (never faulted).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import shutil
import struct
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import QueryParams

from include.nemo_emulator.datastore import DataStore, DataStoreError, git_blob_sha1
from include.nemo_emulator.faults import FaultInjector, FaultSettings
from include.nemo_emulator.options import EmulatorOptions
from include.nemo_emulator.state import Clock, EmulatorError, EmulatorState, ModelBackend, NotServedError

log = logging.getLogger(__name__)

_PAGING_PARAMS = {"page", "page_size", "sort"}


def create_app(options: EmulatorOptions | None = None, *, backend: ModelBackend | None = None,
               clock: Clock | None = None) -> FastAPI:
    """Build the emulator app.

    Args:
        options: start-up options (durations, models, faults, data dir).
        backend: the model brain and evaluation runner; default: the real ``brain``/``evaluation`` modules,
            imported on first use.
        clock: the clock of every job and deployment (tests may pass one they control).

    Returns:
        The FastAPI app; its ``state.emulator`` is the :class:`EmulatorState`.
    """
    options = options or EmulatorOptions()
    owns_data_dir = not options.data_dir
    data_dir = Path(options.data_dir) if options.data_dir else Path(tempfile.mkdtemp(prefix="nemo-emulator-"))
    datastore = DataStore(data_dir / "datastore")
    injector = FaultInjector(FaultSettings.from_options(options))
    state = EmulatorState(options, datastore, injector, backend=backend, clock=clock)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        state.shutdown()
        if owns_data_dir:  # a temp dir made for this process: nothing else will clean it
            shutil.rmtree(data_dir, ignore_errors=True)

    app = FastAPI(
        lifespan=lifespan,
        title="NeMo microservices + NIM emulator",
        description="An EMULATOR of the NeMo microservices and NIM APIs for tests and demos. It is not NVIDIA NeMo.",
        version="1",
    )
    app.state.emulator = state
    app.state.data_dir = data_dir
    _install_error_handlers(app)
    _install_middleware(app, state, injector)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "service": "nemo-emulator", "emulator": True}

    app.include_router(_platform_router(state))
    app.include_router(_hf_router(state), prefix="/v1/hf")
    app.include_router(_nim_router(state), prefix="/nim")
    app.include_router(_control_router(state, injector), prefix="/emulator")

    return app


# -- errors and middleware ----------------------------------------------------------------------------------
def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EmulatorError)
    async def _emulator_error(request: Request, exc: EmulatorError) -> JSONResponse:
        body: dict[str, Any] = {"detail": exc.message}
        if request.url.path.startswith("/nim"):
            # OpenAI-compatible clients read the message from "error".
            body["error"] = {"message": exc.message, "type": "invalid_request_error", "code": exc.status}
        return JSONResponse(body, status_code=exc.status)

    @app.exception_handler(DataStoreError)
    async def _datastore_error(_: Request, exc: DataStoreError) -> JSONResponse:
        headers = {"X-Error-Message": exc.message}
        if exc.code:
            headers["X-Error-Code"] = exc.code
        return JSONResponse({"error": exc.message, "detail": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            location = ".".join(str(part) for part in error.get("loc", ()))
            problems.append(f"{location}: {error.get('msg')}")
        return JSONResponse({"detail": "invalid request: " + "; ".join(problems)}, status_code=422)


def _install_middleware(app: FastAPI, state: EmulatorState, injector: FaultInjector) -> None:
    @app.middleware("http")
    async def faults_and_access_log(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        method, path = request.method, request.url.path
        exempt = path.startswith("/emulator") or path == "/health"
        injected = None
        if not exempt:
            delay = injector.latency_for(path)
            if delay:
                await asyncio.sleep(delay)
            injected = injector.draw(method, path)
        if injected is not None and injected[1] == "before":
            response: Response = _injected_error(injected[0])
        else:
            response = await call_next(request)
            if injected is not None:
                response = _injected_error(injected[0])
        if injected is not None:
            injector.count(injected[0])
        if not exempt:
            route = request.scope.get("route")
            state.count_request(f"{method} {getattr(route, 'path', None) or path}")
        log.info("%s %s -> %s (%.1f ms)%s", method, path, response.status_code,
                 (time.perf_counter() - started) * 1000, " [injected fault]" if injected else "")
        return response


def _injected_error(status: int) -> JSONResponse:
    if status == 429:
        return JSONResponse({"detail": "injected fault: too many requests, retry later"}, status_code=429,
                            headers={"Retry-After": "1"})
    return JSONResponse({"detail": f"injected fault: the emulator answered {status}"}, status_code=status)


# -- lists ----------------------------------------------------------------------------------------------------
def _field(item: dict, dotted: str) -> Any:
    value: Any = item
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _filter_key(key: str) -> str | None:
    """``filter[a][b]`` / ``filter[a.b]`` / ``a.b`` -> ``a.b``; None for paging parameters."""
    if key in _PAGING_PARAMS:
        return None
    if key.startswith("filter["):
        return ".".join(re.findall(r"\[([^\]]+)\]", key))
    return key


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def list_response(items: list[dict], params: QueryParams) -> dict:
    """NeMo-style list: filter on any (dotted) field, sort, paginate."""
    filters = [(f, v) for k, v in params.multi_items() if (f := _filter_key(k))]
    matched = [item for item in items
               if all(_field(item, f) is not None and _as_text(_field(item, f)) == v for f, v in filters)]
    sort = params.get("sort", "-created_at")
    key, reverse = sort.lstrip("-"), sort.startswith("-")
    matched.sort(key=lambda item: _as_text(_field(item, key) or ""), reverse=reverse)
    try:
        page, page_size = int(params.get("page", 1)), int(params.get("page_size", 10))
    except ValueError:
        raise EmulatorError(422, "page and page_size must be integers") from None
    if page < 1 or not 1 <= page_size <= 1000:
        raise EmulatorError(422, "page must be >= 1 and page_size between 1 and 1000")
    chunk = matched[(page - 1) * page_size: page * page_size]
    return {
        "object": "list",
        "data": chunk,
        "pagination": {"page": page, "page_size": page_size, "current_page_size": len(chunk),
                       "total_pages": max(1, -(-len(matched) // page_size)), "total_results": len(matched)},
        "sort": sort,
        "filter": dict(filters),
    }


def _deleted(kind: str, identifier: str) -> dict:
    return {"message": f"{kind} {identifier} deleted", "id": identifier, "deleted": True}


# -- platform: namespaces, entity store, customizer, evaluator, deployments --------------------------------------
def _platform_router(state: EmulatorState) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/namespaces")
    def create_namespace(body: dict = Body(...)) -> dict:
        return state.create_namespace(body)

    @router.get("/v1/namespaces")
    def list_namespaces(request: Request) -> dict:
        return list_response(list(state.namespaces.values()), request.query_params)

    @router.get("/v1/namespaces/{namespace}")
    def get_namespace(namespace: str) -> dict:
        return state.get_namespace(namespace)

    @router.post("/v1/datastore/namespaces", status_code=201)
    async def create_datastore_namespace(request: Request) -> dict:
        if request.headers.get("content-type", "").startswith("application/json"):
            payload = await request.json()
            namespace = payload.get("namespace") if isinstance(payload, dict) else None
        else:
            namespace = (await request.form()).get("namespace")
        if not isinstance(namespace, str) or not namespace:
            raise EmulatorError(422, "form field 'namespace' is required")
        if not state.datastore.create_namespace(namespace):
            raise EmulatorError(409, f"Data Store namespace {namespace!r} already exists")
        return {"namespace": namespace, "created": True}

    @router.get("/v1/datastore/namespaces/{namespace}")
    def get_datastore_namespace(namespace: str) -> dict:
        if namespace not in state.datastore.namespaces:
            raise EmulatorError(404, f"Data Store namespace {namespace!r} not found")
        return {"namespace": namespace}

    # Entity Store: datasets
    @router.post("/v1/datasets")
    def create_dataset(body: dict = Body(...)) -> dict:
        return state.create_dataset(body)

    @router.get("/v1/datasets")
    def list_datasets(request: Request) -> dict:
        return list_response(list(state.datasets.values()), request.query_params)

    @router.get("/v1/datasets/{namespace}/{name}")
    def get_dataset(namespace: str, name: str) -> dict:
        return state.get_dataset(namespace, name)

    @router.patch("/v1/datasets/{namespace}/{name}")
    def update_dataset(namespace: str, name: str, body: dict = Body(...)) -> dict:
        return state.update_dataset(namespace, name, body)

    @router.delete("/v1/datasets/{namespace}/{name}")
    def delete_dataset(namespace: str, name: str) -> dict:
        state.delete_dataset(namespace, name)
        return _deleted("dataset", f"{namespace}/{name}")

    # Entity Store: models
    @router.get("/v1/models")
    def list_models(request: Request) -> dict:
        return list_response(state.list_models(), request.query_params)

    @router.get("/v1/models/{namespace}/{name}")
    def get_model(namespace: str, name: str) -> dict:
        return state.get_model(namespace, name)

    @router.delete("/v1/models/{namespace}/{name}")
    def delete_model(namespace: str, name: str) -> dict:
        state.delete_model(namespace, name)
        return _deleted("model", f"{namespace}/{name}")

    # Customizer: configs
    @router.post("/v1/customization/configs")
    def create_config(body: dict = Body(...)) -> dict:
        return state.create_customization_config(body)

    @router.get("/v1/customization/configs")
    def list_configs(request: Request) -> dict:
        return list_response(list(state.customization_configs.values()), request.query_params)

    @router.get("/v1/customization/configs/{namespace}/{name}")
    def get_config(namespace: str, name: str) -> dict:
        return state.get_customization_config(namespace, name)

    @router.delete("/v1/customization/configs/{namespace}/{name}")
    def delete_config(namespace: str, name: str) -> dict:
        state.delete_customization_config(namespace, name)
        return _deleted("customization config", f"{namespace}/{name}")

    # Customizer: jobs
    @router.post("/v1/customization/jobs")
    def create_customization_job(body: dict = Body(...)) -> dict:
        return state.customization_view(state.create_customization_job(body))

    @router.get("/v1/customization/jobs")
    def list_customization_jobs(request: Request) -> dict:
        state.refresh()
        views = [state.customization_view(job) for job in list(state.customization_jobs.values())]
        return list_response(views, request.query_params)

    @router.get("/v1/customization/jobs/{job_id}")
    def get_customization_job(job_id: str) -> dict:
        return state.customization_view(state.get_customization_job(job_id))

    @router.get("/v1/customization/jobs/{job_id}/status")
    def get_customization_status(job_id: str) -> dict:
        return state.customization_status(state.get_customization_job(job_id))

    @router.post("/v1/customization/jobs/{job_id}/cancel")
    def cancel_customization_job(job_id: str) -> dict:
        return state.customization_view(state.cancel_customization_job(job_id))

    # Evaluator
    @router.post("/v1/evaluation/jobs")
    def create_evaluation_job(body: dict = Body(...)) -> dict:
        return state.evaluation_view(state.create_evaluation_job(body))

    @router.get("/v1/evaluation/jobs")
    def list_evaluation_jobs(request: Request) -> dict:
        state.refresh()
        views = [state.evaluation_view(job) for job in list(state.evaluation_jobs.values())]
        return list_response(views, request.query_params)

    @router.get("/v1/evaluation/jobs/{job_id}")
    def get_evaluation_job(job_id: str) -> dict:
        return state.evaluation_view(state.get_evaluation_job(job_id))

    @router.get("/v1/evaluation/jobs/{job_id}/status")
    def get_evaluation_status(job_id: str) -> dict:
        view = state.evaluation_view(state.get_evaluation_job(job_id))
        return {"id": job_id, "status": view["status"], **view["status_details"]}

    @router.get("/v1/evaluation/jobs/{job_id}/results")
    def get_evaluation_results(job_id: str) -> dict:
        return state.evaluation_results(state.get_evaluation_job(job_id))

    @router.post("/v1/evaluation/jobs/{job_id}/cancel")
    def cancel_evaluation_job(job_id: str) -> dict:
        return state.evaluation_view(state.cancel_evaluation_job(job_id))

    @router.delete("/v1/evaluation/jobs/{job_id}")
    def delete_evaluation_job(job_id: str) -> dict:
        state.delete_evaluation_job(job_id)
        return _deleted("evaluation job", job_id)

    # Deployment Management
    def nim_url(request: Request) -> str:
        return str(request.base_url).rstrip("/") + "/nim"

    @router.post("/v1/deployment/model-deployments")
    def create_deployment(request: Request, body: dict = Body(...)) -> dict:
        return state.deployment_view(state.create_deployment(body), nim_url(request))

    @router.get("/v1/deployment/model-deployments")
    def list_deployments(request: Request) -> dict:
        views = [state.deployment_view(d, nim_url(request)) for d in list(state.deployments.values())]
        return list_response(views, request.query_params)

    @router.get("/v1/deployment/model-deployments/{namespace}/{name}")
    def get_deployment(request: Request, namespace: str, name: str) -> dict:
        return state.deployment_view(state.get_deployment(namespace, name), nim_url(request))

    @router.delete("/v1/deployment/model-deployments/{namespace}/{name}")
    def delete_deployment(namespace: str, name: str) -> dict:
        state.delete_deployment(namespace, name)
        return _deleted("model deployment", f"{namespace}/{name}")

    return router


# -- Data Store: Hugging Face Hub-compatible API -------------------------------------------------------------------
def _repo_type(plural: str) -> str:
    if plural not in ("datasets", "models"):
        raise DataStoreError(404, f"unknown repo kind {plural!r}: use datasets or models")
    return plural[:-1]


def _hf_router(state: EmulatorState) -> APIRouter:
    router = APIRouter()
    store = state.datastore

    def endpoint(request: Request) -> str:
        return str(request.base_url).rstrip("/") + "/v1/hf"

    def repo_url(request: Request, repo_type: str, repo_id: str) -> str:
        prefix = "datasets/" if repo_type == "dataset" else ""
        return f"{endpoint(request)}/{prefix}{repo_id}"

    @router.post("/api/repos/create")
    def create_repo(request: Request, body: dict = Body(...)) -> JSONResponse:
        name, organization = body.get("name"), body.get("organization")
        repo_type = body.get("type") or "model"
        if not isinstance(name, str) or not isinstance(organization, str):
            raise DataStoreError(400, "repo id must be '<namespace>/<name>' (the namespace is required)")
        repo_id = f"{organization}/{name}"
        url = repo_url(request, repo_type, repo_id)
        private = body.get("private") or body.get("visibility") == "private"
        if not store.create_repo(repo_type, repo_id, private=bool(private)):
            return JSONResponse({"error": f"You already created this {repo_type} repo", "url": url}, status_code=409)
        return JSONResponse({"url": url, "name": repo_id, "id": repo_id})

    @router.delete("/api/repos/delete")
    def delete_repo(body: dict = Body(...)) -> dict:
        repo_id = f"{body.get('organization')}/{body.get('name')}"
        store.delete_repo(body.get("type") or "model", repo_id)
        return {"deleted": repo_id}

    @router.get("/api/{kind}/{namespace}/{name}")
    def repo_info(kind: str, namespace: str, name: str) -> dict:
        return store.info(_repo_type(kind), f"{namespace}/{name}")

    @router.get("/api/{kind}/{namespace}/{name}/revision/{revision}")
    def repo_info_at(kind: str, namespace: str, name: str, revision: str) -> dict:
        repo_type, repo_id = _repo_type(kind), f"{namespace}/{name}"
        store.check_revision(repo_type, repo_id, revision)
        return store.info(repo_type, repo_id)

    @router.get("/api/{kind}/{namespace}/{name}/tree/{revision}")
    @router.get("/api/{kind}/{namespace}/{name}/tree/{revision}/{path:path}")
    def tree(kind: str, namespace: str, name: str, revision: str, path: str = "",
             recursive: bool = False) -> list[dict]:
        repo_type, repo_id = _repo_type(kind), f"{namespace}/{name}"
        store.check_revision(repo_type, repo_id, revision)
        return store.tree(repo_type, repo_id, path, recursive=recursive)

    @router.post("/api/{kind}/{namespace}/{name}/paths-info/{revision}")
    async def paths_info(request: Request, kind: str, namespace: str, name: str, revision: str) -> list[dict]:
        repo_type, repo_id = _repo_type(kind), f"{namespace}/{name}"
        store.check_revision(repo_type, repo_id, revision)
        if request.headers.get("content-type", "").startswith("application/json"):
            paths = (await request.json()).get("paths", [])
        else:
            paths = (await request.form()).getlist("paths")
        return store.paths_info(repo_type, repo_id, [str(p) for p in paths])

    @router.post("/api/{kind}/{namespace}/{name}/preupload/{revision}")
    def preupload(kind: str, namespace: str, name: str, revision: str, body: dict = Body(...)) -> dict:
        repo_type, repo_id = _repo_type(kind), f"{namespace}/{name}"
        store.check_revision(repo_type, repo_id, revision)
        files = body.get("files")
        if not isinstance(files, list):
            raise DataStoreError(400, "preupload body must have a 'files' list")
        # Every file is uploaded inline in the commit ("regular"): the emulator has no LFS/Xet storage.
        return {"files": [{"path": f.get("path"), "uploadMode": "regular", "shouldIgnore": False,
                           "oid": store.file_oid(repo_type, repo_id, str(f.get("path")))} for f in files]}

    @router.post("/api/{kind}/{namespace}/{name}/commit/{revision}")
    async def commit(request: Request, kind: str, namespace: str, name: str, revision: str) -> dict:
        repo_type, repo_id = _repo_type(kind), f"{namespace}/{name}"
        store.check_revision(repo_type, repo_id, revision)
        additions, deletions, folders = _parse_commit(await request.body())
        sha = store.commit(repo_type, repo_id, additions, deletions, folders)
        log.info("Data Store commit %s to %s:%s (%d file(s) added, %d deleted).", sha[:8], repo_type, repo_id,
                 len(additions), len(deletions) + len(folders))
        return {"commitUrl": f"{repo_url(request, repo_type, repo_id)}/commit/{sha}", "commitOid": sha,
                "success": True, "pullRequestUrl": None}

    def serve_file(request: Request, repo_type: str, repo_id: str, revision: str, path: str) -> Response:
        sha = store.check_revision(repo_type, repo_id, revision)
        content = store.read_file(repo_type, repo_id, path)
        headers = {"ETag": f'"{git_blob_sha1(content)}"', "X-Repo-Commit": sha,
                   "Content-Length": str(len(content)), "Accept-Ranges": "none"}
        body = b"" if request.method == "HEAD" else content
        return Response(content=body, headers=headers, media_type="application/octet-stream")

    @router.api_route("/datasets/{namespace}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
    def resolve_dataset_file(request: Request, namespace: str, name: str, revision: str, path: str) -> Response:
        return serve_file(request, "dataset", f"{namespace}/{name}", revision, path)

    @router.api_route("/{namespace}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
    def resolve_model_file(request: Request, namespace: str, name: str, revision: str, path: str) -> Response:
        return serve_file(request, "model", f"{namespace}/{name}", revision, path)

    return router


def _parse_commit(payload: bytes) -> tuple[dict[str, bytes], list[str], list[str]]:
    """Read the Hub's ndjson commit body into additions, file deletions and folder deletions."""
    additions: dict[str, bytes] = {}
    deletions: list[str] = []
    folders: list[str] = []
    for number, line in enumerate(payload.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            key, value = item["key"], item.get("value") or {}
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataStoreError(400, f"commit body line {number} is not a {{key, value}} JSON object") from None
        if key == "header":
            continue
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise DataStoreError(400, f"commit line {number}: only base64 file content is supported")
            additions[value["path"]] = base64.b64decode(value.get("content", ""))
        elif key == "deletedFile":
            deletions.append(value["path"])
        elif key == "deletedFolder":
            folders.append(value["path"])
        else:
            raise DataStoreError(400, f"commit line {number}: operation {key!r} is not supported by the emulator "
                                      "(it stores regular files only: no LFS, Xet or copies)")
    return additions, deletions, folders


# -- NIM (OpenAI-compatible) ----------------------------------------------------------------------------------------
def _nim_router(state: EmulatorState) -> APIRouter:
    router = APIRouter()

    def model_card(model_id: str, entry: dict) -> dict:
        card = {"id": model_id, "object": "model", "created": 0, "owned_by": "nemo-emulator", "root": model_id,
                "parent": entry["parent"]}
        if entry["parent"]:
            card["root"] = entry["parent"]
        return card

    @router.get("/v1/models")
    def list_served() -> dict:
        return {"object": "list", "data": [model_card(k, v) for k, v in sorted(state.served().items())]}

    @router.get("/v1/health/ready")
    def nim_ready() -> dict:
        return {"object": "health.response", "message": "Service is ready."}

    @router.post("/v1/chat/completions")
    def chat_completions(body: dict = Body(...)) -> dict:
        model_id = body.get("model")
        if not isinstance(model_id, str) or not model_id:
            raise EmulatorError(422, "body.model is required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise EmulatorError(422, "body.messages must be a non-empty list of chat messages")
        if body.get("stream"):
            raise EmulatorError(422, "stream=true is not supported by the emulator: send stream=false")
        model = state.served_chat_model(model_id)
        try:
            return model.complete(body)
        except NotServedError:
            raise
        except ValueError as exc:
            raise EmulatorError(400, f"model {model_id}: {exc}") from None

    @router.post("/v1/embeddings")
    def embeddings(body: dict = Body(...)) -> dict:
        model_id, raw = body.get("model"), body.get("input")
        if not isinstance(model_id, str) or not model_id:
            raise EmulatorError(422, "body.model is required")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise EmulatorError(422, "body.input must be a string or a non-empty list of strings "
                                     "(token arrays are not supported)")
        dimensions = body.get("dimensions")
        if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 1):
            raise EmulatorError(422, f"body.dimensions must be a positive integer, got {dimensions!r}")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise EmulatorError(422, f"body.encoding_format must be 'float' or 'base64', got {encoding!r}")
        vectors = state.embed(texts, model_id, dimensions)
        data = []
        for index, vector in enumerate(vectors):
            value: Any = vector
            if encoding == "base64":
                value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": value})
        tokens = sum(len(t.split()) for t in texts)
        return {"object": "list", "data": data, "model": model_id,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    return router


# -- control API -------------------------------------------------------------------------------------------------
def _control_router(state: EmulatorState, injector: FaultInjector) -> APIRouter:
    router = APIRouter()

    @router.get("/faults")
    def get_faults() -> dict:
        return injector.settings.model_dump()

    @router.post("/faults")
    def set_faults(body: dict = Body(...)) -> dict:
        try:
            return injector.update(body).model_dump()
        except ValueError as exc:
            raise EmulatorError(422, f"invalid faults: {exc}") from None

    @router.delete("/faults")
    def clear_faults() -> dict:
        injector.clear()
        return injector.settings.model_dump()

    @router.get("/state")
    def get_state() -> dict:
        return state.summary()

    @router.post("/reset")
    def reset() -> dict:
        state.reset()
        return {"reset": True}

    @router.post("/config")
    def configure(body: dict = Body(...)) -> dict:
        return {"durations": state.configure(body)}

    @router.post("/clock")
    def advance_clock(body: dict = Body(...)) -> dict:
        seconds = body.get("advance")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            raise EmulatorError(422, "body.advance must be a number of seconds >= 0")
        state.clock.advance(float(seconds))
        return {"advanced": seconds}

    return router
