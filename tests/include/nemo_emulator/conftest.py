"""Fixtures for the emulator's server tests.

Two ways to reach the emulator:

* ``emu``: the real subprocess (``running_emulator``), shared by the session and reset before each
  test, for tests that drive it with real clients (huggingface_hub, openai, httpx).
* ``local``: the app in-process (FastAPI ``TestClient``) with a clock the test moves by hand, for
  state-machine tests that must not depend on how fast the machine is.

Both use the real model brain and evaluation runner.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

# huggingface_hub reads these when first imported: keep its cache and telemetry out of the user's home.
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="emulator-test-hf-home-"))
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from fastapi.testclient import TestClient  # noqa: E402

from include.nemo_emulator.app import create_app  # noqa: E402
from include.nemo_emulator.options import EmulatorOptions  # noqa: E402
from include.nemo_emulator.state import Clock, EmulatorState  # noqa: E402
from include.nemo_emulator.testing import EmulatorHandle, running_emulator  # noqa: E402

BASE_MODEL = "meta/llama-3.2-1b-instruct"
JUDGE_MODEL = "meta/llama-3.3-70b-instruct"
EMBEDDING_MODEL = "nvidia/llama-3.2-nv-embedqa-1b-v2"

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather forecast for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "city name"}},
                       "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "book_flight", "description": "Book a flight ticket to a destination airport",
        "parameters": {"type": "object", "properties": {"destination": {"type": "string"}},
                       "required": ["destination"]}}},
]
CITIES = ["Paris", "Lyon", "Berlin", "Madrid", "Rome", "Vienna", "Oslo", "Prague"]


def tool_call(name: str, arguments: dict) -> dict:
    return {"id": f"call_{name}", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def training_rows(count: int = 8) -> list[dict]:
    """train_data.jsonl lines: ``{"messages": [...user, assistant with tool_calls], "tools": [...]}``."""
    rows = []
    for i in range(count):
        city = CITIES[i % len(CITIES)]
        rows.append({"messages": [
            {"role": "user", "content": f"What is the weather like in {city} today?"},
            {"role": "assistant", "content": None, "tool_calls": [tool_call("get_weather", {"city": city})]},
        ], "tools": TOOLS})
    return rows


def eval_records(count: int = 4) -> list[dict]:
    """eval_data.jsonl lines: full log records (request + response)."""
    records = []
    for i in range(count):
        city = CITIES[(i + 3) % len(CITIES)]
        records.append({
            "workload_id": "w", "client_id": "c", "timestamp": 1700000000 + i,
            "request": {"model": BASE_MODEL, "messages": [{"role": "user", "content": f"Weather in {city}, please"}],
                        "tools": TOOLS},
            "response": {"choices": [{"index": 0, "message": {
                "role": "assistant", "content": None, "tool_calls": [tool_call("get_weather", {"city": city})]}}]},
        })
    return records


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def tool_calling_config(namespace: str, dataset: str) -> dict:
    """The inline evaluation config the flywheel submits for tool-calling workloads."""
    return {
        "type": "custom", "namespace": "flywheel",
        "tasks": {"custom-tool-calling": {
            "type": "chat-completion",
            "dataset": {"files_url": f"hf://datasets/{namespace}/{dataset}/eval_data.jsonl"},
            "params": {"template": {"messages": "{{ item.request.messages | tojson }}",
                                    "tools": "{{ item.request.tools | tojson }}", "tool_choice": "auto"}},
            "metrics": {
                "tool-calling-accuracy": {"type": "tool-calling", "params": {
                    "tool_calls_ground_truth": "{{ item.response.choices[0].message.tool_calls | tojson }}"}},
                "correctness": {"type": "llm-judge", "params": {
                    "model": {"api_endpoint": {"url": "http://judge/v1/chat/completions", "model_id": JUDGE_MODEL}},
                    "template": {"messages": [
                        {"role": "system", "content": "You compare tool calls. Answer RATING: 1 if they match, "
                                                      "else RATING: 0."},
                        {"role": "user", "content": "GROUND TRUTH: {{ item.response.choices[0].message.tool_calls "
                                                    "| tojson }}\nCANDIDATE: {{ sample.response.choices[0]."
                                                    "message.tool_calls | tojson }}"}]},
                    "scores": {"rating": {"type": "int", "parser": {"type": "regex", "pattern": "RATING: (\\d+)"}}},
                }},
            },
        }},
    }


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until truthy (for background work); fails naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class ManualClock(Clock):
    """A clock that only moves when the test says so."""

    def __init__(self) -> None:
        self.t = 1000.0
        super().__init__(source=lambda: self.t)


@dataclass
class Local:
    """The app in-process: an HTTP test client, its state and its hand-driven clock."""

    client: TestClient
    state: EmulatorState
    clock: ManualClock

    def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def upload(self, repo: str, files: dict[str, bytes]) -> None:
        """Put files into a Data Store dataset repo (directly: the HF protocol has its own tests)."""
        self.state.datastore.create_repo("dataset", repo)
        self.state.datastore.commit("dataset", repo, files, [], [])

    def post(self, path: str, body: dict, expect: int = 200) -> dict:
        response = self.client.post(path, json=body)
        assert response.status_code == expect, response.text
        return response.json()

    def get(self, path: str, expect: int = 200, **params: Any) -> dict:
        response = self.client.get(path, params=params)
        assert response.status_code == expect, response.text
        return response.json()


@pytest.fixture
def local(tmp_path) -> Iterator[Local]:
    """The app in-process with durations of 10 s (moved by ``local.tick``), queue 2 s, sync 5 s."""
    clock = ManualClock()
    options = EmulatorOptions(data_dir=str(tmp_path), job_duration=10.0, deployment_duration=10.0,
                              sync_duration=5.0, queue_duration=2.0)
    app = create_app(options, clock=clock)
    with TestClient(app) as client:
        yield Local(client=client, state=app.state.emulator, clock=clock)


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorHandle]:
    """One emulator subprocess for the session (fast durations)."""
    with running_emulator(job_duration=0.4, deployment_duration=0.3, sync_duration=0.2, queue_duration=0.1) as handle:
        yield handle


@pytest.fixture
def emu(emulator_server: EmulatorHandle) -> EmulatorHandle:
    """The session's emulator, reset (no entities, jobs, files, faults; start-up durations)."""
    emulator_server.reset()
    emulator_server.configure(job=0.4, deployment=0.3, sync=0.2, queue=0.1)
    return emulator_server


@dataclass(frozen=True)
class Samples:
    """Sample data builders, handed to tests as a fixture (test modules cannot import conftest)."""

    base_model: str = BASE_MODEL
    judge_model: str = JUDGE_MODEL
    embedding_model: str = EMBEDDING_MODEL
    tools: tuple = tuple(TOOLS)

    training_rows = staticmethod(training_rows)
    eval_records = staticmethod(eval_records)
    jsonl = staticmethod(jsonl)
    tool_calling_config = staticmethod(tool_calling_config)
    tool_call = staticmethod(tool_call)
    wait_until = staticmethod(wait_until)


@pytest.fixture
def samples() -> Samples:
    return Samples()
