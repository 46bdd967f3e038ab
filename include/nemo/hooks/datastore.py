"""Hook for the NeMo Data Store: namespaces over REST, dataset repos and files through ``huggingface_hub``.

The Data Store speaks the Hugging Face Hub API under ``{base}/v1/hf``, so uploads and downloads
use the real ``huggingface_hub`` client (commits, LFS, pre-upload checks) rather than
hand-written HTTP. Its calls get the same retry rules as every other call: connection errors,
timeouts, 5xx and 429 only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from include.nemo.exceptions import NemoApiError, NemoConnectionError, NemoError, NemoNotFoundError, NemoTimeoutError
from include.nemo.hooks._common import api_path, error_from_response, is_retryable_status, parse_retry_after
from include.nemo.hooks.base import NemoBaseHook

if TYPE_CHECKING:
    from huggingface_hub import HfApi

# huggingface_hub (and its httpx2) are imported where they are used: this module is imported by
# the operators, so by every parse of the DAG file, which then need not load the HF client.

log = logging.getLogger(__name__)

T = TypeVar("T")
REPO_TYPE = "dataset"


def _hf_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _hf_retryable(exc: BaseException) -> bool:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError):
        status = _hf_status(exc)
        return status is not None and is_retryable_status(status)
    return isinstance(exc, httpx2.TransportError)


def _hf_request_line(exc: BaseException, fallback_url: str) -> tuple[str, str]:
    """Method and URL of the request behind a huggingface_hub error (best effort)."""
    for source in (getattr(exc, "response", None), exc):
        try:
            request = source.request  # type: ignore[union-attr]
        except (AttributeError, RuntimeError):
            continue
        if request is not None:
            return str(request.method), str(request.url)
    return "HF", fallback_url


class DataStoreHook(NemoBaseHook):
    """NeMo Data Store (``nemo_datastore`` Connection; the password is an optional token)."""

    conn_type = "nemo_datastore"
    default_conn_name = "nemo_datastore_default"
    hook_name = "NVIDIA NeMo Data Store"
    default_read_timeout = 120.0
    # The Data Store has no cheap list endpoint common to its releases: look a namespace up instead.
    test_connection_namespace = "default"

    @property
    def hf_endpoint(self) -> str:
        """The Hugging Face-compatible API root: ``{base}/v1/hf``."""
        return f"{self.base_url}/v1/hf"

    @cached_property
    def hf_api(self) -> HfApi:
        """An ``HfApi`` bound to the Data Store (``token=False`` when no token: never send a personal HF token)."""
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.hf_endpoint, token=self.endpoint.api_key or False,
                     headers=dict(self.endpoint.headers) or None)

    def test_connection(self) -> tuple[bool, str]:
        """Look one namespace up (once, no retries): 200 or a JSON 404 both prove the Data Store answers."""
        path = api_path("v1", "datastore", "namespaces", self.test_connection_namespace)
        try:
            url = self.endpoint.url(path)
            self._request("GET", path, retry=False, object_id="Data Store")
        except NemoNotFoundError as exc:
            if exc.body.lstrip().startswith("{"):
                return True, f"Connection {self.conn_id!r} works: the Data Store answered GET {url}."
            return False, str(exc)
        except NemoError as exc:
            return False, str(exc)
        except Exception as exc:  # the UI shows the message
            return False, f"{type(exc).__name__}: {exc}"
        return True, f"Connection {self.conn_id!r} works: the Data Store answered GET {url}."

    # -- REST ---------------------------------------------------------------------------------------------

    def create_namespace(self, namespace: str) -> bool:
        """``POST /v1/datastore/namespaces`` (form field ``namespace``). ``False`` if it already existed."""
        try:
            self._request(
                "POST", "/v1/datastore/namespaces", data={"namespace": namespace},
                object_id=f"Data Store namespace {namespace}",
            )
        except NemoApiError as exc:
            if exc.status_code == 409 or (exc.status_code == 422 and "exist" in exc.body.lower()):
                log.info("Data Store namespace %s already exists.", namespace)
                return False
            raise
        log.info("Created Data Store namespace %s.", namespace)
        return True

    # -- huggingface_hub calls, retried like every other call -----------------------------------------

    def _hf_call(self, object_id: str, operation: Callable[[], T]) -> T:
        policy = self.retry_policy
        attempts = 0

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            response = getattr(exc, "response", None)
            retry_after = parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
            if retry_after is not None:
                return min(retry_after, policy.max_retry_after)
            return policy.backoff(state.attempt_number)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s: Data Store call failed on attempt %d of %d (%s); retrying in %.2fs.",
                object_id, state.attempt_number, policy.retry_limit,
                f"HTTP {_hf_status(exc)}" if _hf_status(exc) else type(exc).__name__,
                state.next_action.sleep if state.next_action else 0.0,
            )

        import httpx2
        from huggingface_hub.errors import HfHubHTTPError

        retrying = Retrying(
            stop=stop_after_attempt(policy.retry_limit), wait=wait, retry=retry_if_exception(_hf_retryable),
            sleep=self._sleep, before_sleep=before_sleep, reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    return operation()
        except HfHubHTTPError as exc:
            method, url = _hf_request_line(exc, self.hf_endpoint)
            if exc.response is not None:
                raise error_from_response(method, url, exc.response, object_id=object_id, attempts=attempts) from exc
            raise NemoApiError(method=method, url=url, object_id=object_id, attempts=attempts, reason=str(exc)) from exc
        except httpx2.TransportError as exc:
            method, url = _hf_request_line(exc, self.hf_endpoint)
            cls = NemoTimeoutError if isinstance(exc, httpx2.TimeoutException) else NemoConnectionError
            raise cls(
                method=method, url=url, object_id=object_id, attempts=attempts,
                reason=f"{type(exc).__name__}: {exc}",
                hint=f"Check that Connection {self.conn_id!r} points at a reachable Data Store.",
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def repo_id(namespace: str, name: str) -> str:
        if not namespace or not name or "/" in namespace or "/" in name:
            raise ValueError(f"namespace and name must be non-empty and without '/': {namespace!r}, {name!r}")
        return f"{namespace}/{name}"

    def create_dataset_repo(self, namespace: str, name: str) -> str:
        """Create the dataset repo ``{namespace}/{name}`` if missing; returns the repo id."""
        repo_id = self.repo_id(namespace, name)
        self._hf_call(f"dataset repo {repo_id}", lambda: self.hf_api.create_repo(repo_id, repo_type=REPO_TYPE, exist_ok=True))
        log.info("Dataset repo %s is ready in the Data Store.", repo_id)
        return repo_id

    def upload_folder(
        self, namespace: str, name: str, folder: str | Path, *, path_in_repo: str | None = None,
        commit_message: str | None = None,
    ) -> str:
        """Upload every file under ``folder`` in one commit; returns the commit URL/oid."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"upload_folder: {folder} is not a directory")
        files = [path for path in folder.rglob("*") if path.is_file()]
        if not files:
            raise ValueError(f"upload_folder: {folder} has no files; nothing to upload")
        repo_id = self.repo_id(namespace, name)
        info = self._hf_call(
            f"dataset repo {repo_id}",
            lambda: self.hf_api.upload_folder(
                repo_id=repo_id, repo_type=REPO_TYPE, folder_path=str(folder), path_in_repo=path_in_repo,
                commit_message=commit_message or f"flywheel: upload {len(files)} file(s)",
            ),
        )
        log.info("Uploaded %d file(s) from %s to %s.", len(files), folder, repo_id)
        return str(getattr(info, "oid", None) or info)

    def upload_files(
        self, namespace: str, name: str, files: Mapping[str, str | Path | bytes], *, commit_message: str | None = None
    ) -> str:
        """Upload files in one commit: ``{path_in_repo: local path or bytes}``; returns the commit oid."""
        from huggingface_hub import CommitOperationAdd

        if not files:
            raise ValueError("upload_files: no files given")
        operations = []
        for path_in_repo, source in files.items():
            if not isinstance(source, bytes):
                source = Path(source)
                if not source.is_file():
                    raise FileNotFoundError(f"upload_files: {source} (for {path_in_repo}) is not a file")
                source = str(source)
            operations.append(CommitOperationAdd(path_in_repo=path_in_repo, path_or_fileobj=source))
        repo_id = self.repo_id(namespace, name)
        info = self._hf_call(
            f"dataset repo {repo_id}",
            lambda: self.hf_api.create_commit(
                repo_id=repo_id, repo_type=REPO_TYPE, operations=operations,
                commit_message=commit_message or f"flywheel: upload {len(operations)} file(s)",
            ),
        )
        log.info("Uploaded %d file(s) to %s: %s.", len(operations), repo_id, sorted(files))
        return str(getattr(info, "oid", None) or info)

    def list_files(self, namespace: str, name: str) -> list[str]:
        """Paths of every file in the dataset repo."""
        repo_id = self.repo_id(namespace, name)
        return self._hf_call(f"dataset repo {repo_id}", lambda: self.hf_api.list_repo_files(repo_id, repo_type=REPO_TYPE))

    def download_file(self, namespace: str, name: str, filename: str, local_dir: str | Path) -> Path:
        """Download one file into ``local_dir`` (keeping its path in the repo); returns the local path."""
        repo_id = self.repo_id(namespace, name)
        path = self._hf_call(
            f"file {filename} of dataset repo {repo_id}",
            lambda: self.hf_api.hf_hub_download(repo_id, filename, repo_type=REPO_TYPE, local_dir=str(local_dir)),
        )
        return Path(path)

    def delete_dataset_repo(self, namespace: str, name: str, *, missing_ok: bool = True) -> None:
        """Delete the dataset repo (cleanup)."""
        repo_id = self.repo_id(namespace, name)
        self._hf_call(
            f"dataset repo {repo_id}",
            lambda: self.hf_api.delete_repo(repo_id, repo_type=REPO_TYPE, missing_ok=missing_ok),
        )
