"""Fixtures for the NeMo hook tests.

Connections are created the real way, through ``AIRFLOW_CONN_*`` environment variables (JSON form),
so the hooks resolve them with the Task SDK exactly as in a task. The root conftest already gives
Airflow a private ``AIRFLOW_HOME``.

Unit tests talk to an ``httpx.MockTransport`` driven by a script of answers (a status, a body,
headers, or an exception to raise), which records every request it sees.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

# huggingface_hub reads these when first imported: keep its cache and telemetry out of the user's home.
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="flywheel-hf-home-"))
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture
def set_connection(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``set_connection("nemo_default", conn_type="nemo", host="http://...", password=..., extra={...})``."""

    def _set(conn_id: str, **fields: Any) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))

    return _set


@dataclass
class Answer:
    """One scripted answer: a response (status, JSON body or raw text, headers) or an exception."""

    status: int = 200
    body: Any = None
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raises: type[Exception] | None = None


def as_answer(item: Any) -> Answer:
    """Shorthands: ``503``, ``(200, {"id": 1})``, ``(429, body, {"Retry-After": "2"})``, ``httpx.ConnectError``."""
    if isinstance(item, Answer):
        return item
    if isinstance(item, int):
        return Answer(status=item)
    if isinstance(item, type) and issubclass(item, Exception):
        return Answer(raises=item)
    if isinstance(item, tuple):
        status, body, *rest = item
        headers = rest[0] if rest else {}
        if isinstance(body, str):
            return Answer(status=status, text=body, headers=headers)
        return Answer(status=status, body=body, headers=headers)
    raise TypeError(f"cannot script {item!r}")


class Script:
    """A scripted HTTP peer. Answers are served in order; the last one repeats when the script runs out.

    ``Script(503, 503, (200, {"ok": True}))``, or ``Script(route=fn)`` where ``fn(request)`` returns an answer.
    """

    def __init__(self, *answers: Any, route: Callable[[httpx.Request], Any] | None = None):
        self.answers = [as_answer(a) for a in answers]
        self.route = route
        self.requests: list[httpx.Request] = []

    def _next(self, request: httpx.Request) -> Answer:
        if self.route is not None:
            return as_answer(self.route(request))
        if len(self.answers) > 1:
            return self.answers.pop(0)
        return self.answers[0] if self.answers else Answer()

    def _respond(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self._next(request)
        if answer.raises is not None:
            raise answer.raises("scripted failure", request=request)
        if answer.text is not None:
            return httpx.Response(answer.status, text=answer.text, headers=answer.headers)
        if answer.body is None:
            return httpx.Response(answer.status, headers=answer.headers)
        return httpx.Response(answer.status, json=answer.body, headers=answer.headers)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._respond)

    def async_transport(self) -> httpx.MockTransport:
        async def handler(request: httpx.Request) -> httpx.Response:
            await request.aread()
            return self._respond(request)

        return httpx.MockTransport(handler)

    @property
    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]

    def json_of(self, index: int) -> Any:
        return json.loads(self.requests[index].content)


@pytest.fixture
def script() -> Callable[..., Script]:
    return Script


class SleepRecorder:
    """Stands in for ``time.sleep``/``asyncio.sleep``: records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def nemo_conn(set_connection: Callable[..., None]) -> Iterator[str]:
    """A ``nemo_default`` Connection at a host that only the mock transport answers."""
    set_connection("nemo_default", conn_type="nemo", host="http://nemo.test:8000", password="secret-key-123")
    yield "nemo_default"


# -- the emulator, for the contract and fault tests (one subprocess per test module) ---------------


@pytest.fixture(scope="module")
def emulator():
    from include.nemo_emulator.testing import running_emulator

    with running_emulator(job_duration=2.0, deployment_duration=2.0, sync_duration=1.0, queue_duration=0.4) as emu:
        yield emu


@pytest.fixture
def emu(emulator, set_connection):
    """The module's emulator, reset, with the three Connections pointing at it."""
    emulator.reset()
    emulator.clear_faults()
    set_connection("nemo_default", conn_type="nemo", host=emulator.base_url)
    set_connection("nemo_datastore_default", conn_type="nemo_datastore", host=emulator.datastore_url)
    set_connection("nim_default", conn_type="nim", host=emulator.nim_url)
    yield emulator
    emulator.clear_faults()
