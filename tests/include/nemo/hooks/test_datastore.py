"""DataStoreHook units: huggingface_hub failures get the same retry rules and domain errors.

The full upload/download round trip runs against the emulator in test_emulator_contract.py.
"""

from __future__ import annotations

import httpx2
import pytest
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from include.nemo.exceptions import NemoApiError, NemoConnectionError, NemoNotFoundError
from include.nemo.hooks import DataStoreHook


@pytest.fixture
def hook(set_connection, sleeps):
    set_connection("nemo_datastore_default", conn_type="nemo_datastore", host="http://ds.test")
    return DataStoreHook(retry_limit=3, retry_delay=0.5, sleep=sleeps)


def hf_error(status, cls=HfHubHTTPError, headers=None, body=b'{"error": "boom"}'):
    request = httpx2.Request("POST", "http://ds.test/v1/hf/api/repos/create")
    response = httpx2.Response(status, request=request, content=body, headers=headers or {})
    return cls(f"HTTP {status}", response=response)


class Flaky:
    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def test_hf_5xx_and_429_are_retried(hook, sleeps):
    operation = Flaky(hf_error(503), hf_error(429, headers={"Retry-After": "2"}), "ok")
    assert hook._hf_call("dataset repo ns/ds", operation) == "ok"
    assert operation.calls == 3
    assert sleeps.waits == [0.5, 2.0]


def test_hf_transport_errors_are_retried_then_reported(hook):
    request = httpx2.Request("GET", "http://ds.test/v1/hf/api/datasets/ns/ds")
    operation = Flaky(*(httpx2.ConnectError("refused", request=request) for _ in range(3)))
    with pytest.raises(NemoConnectionError, match="failed 3 times. Giving up.") as info:
        hook._hf_call("dataset repo ns/ds", operation)
    assert operation.calls == 3
    assert info.value.url == "http://ds.test/v1/hf/api/datasets/ns/ds"


def test_hf_4xx_fails_at_once_with_status_and_body(hook):
    operation = Flaky(hf_error(404, cls=RepositoryNotFoundError, body=b'{"error": "no repo ns/ds"}'))
    with pytest.raises(NemoNotFoundError) as info:
        hook._hf_call("dataset repo ns/ds", operation)
    assert operation.calls == 1
    message = str(info.value)
    assert message.startswith("dataset repo ns/ds: POST http://ds.test/v1/hf/api/repos/create returned HTTP 404")
    assert "no repo ns/ds" in message


def test_hf_retries_exhausted(hook):
    with pytest.raises(NemoApiError, match="HTTP 500.*failed 3 times. Giving up."):
        hook._hf_call("x", Flaky(hf_error(500), hf_error(500), hf_error(500)))


def test_repo_ids_are_validated():
    with pytest.raises(ValueError, match="without '/'"):
        DataStoreHook.repo_id("ns", "a/b")
    assert DataStoreHook.repo_id("ns", "ds") == "ns/ds"


def test_upload_folder_refuses_empty_or_missing_folders(hook, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        hook.upload_folder("ns", "ds", tmp_path / "missing")
    with pytest.raises(ValueError, match="no files"):
        hook.upload_folder("ns", "ds", tmp_path)


def test_upload_files_refuses_missing_files(hook, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        hook.upload_files("ns", "ds", {"a.jsonl": tmp_path / "nope.jsonl"})
    with pytest.raises(ValueError, match="no files"):
        hook.upload_files("ns", "ds", {})
