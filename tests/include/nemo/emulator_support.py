"""Shared fixtures and helpers for the operator, trigger and sensor tests (run against the emulator).

Test modules import the fixtures they use (``from tests.include.nemo.emulator_support import ...``).
One emulator subprocess serves the whole session even though three modules import the fixture:
the first instantiation starts it, the others reuse it, and it stops when the session ends.
Each test gets it reset (no entities, jobs, files or faults) with tiny durations.

Connections come from ``AIRFLOW_CONN_*`` environment variables, as in a real deployment.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from include.nemo_emulator.testing import EmulatorHandle, running_emulator

BASE_MODEL = "meta/llama-3.2-1b-instruct"
JUDGE_MODEL = "meta/llama-3.3-70b-instruct"
NAMESPACE = "fwtest"
# A password on every Connection, so tests can assert it never leaks into trigger kwargs or XCom.
SECRET = "s3cret-api-key-do-not-leak"

# Fast but not instant: a trigger sees at least one non-terminal status before the end.
FAST = {"job": 0.4, "deployment": 0.3, "sync": 0.2, "queue": 0.1}
POLL = 0.05

_SHARED: dict[str, EmulatorHandle] = {}

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather forecast for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "book_flight", "description": "Book a flight ticket to a destination airport",
        "parameters": {"type": "object", "properties": {"destination": {"type": "string"}},
                       "required": ["destination"]}}},
]
CITIES = ["Paris", "Lyon", "Berlin", "Madrid", "Rome", "Vienna", "Oslo", "Prague"]


def _tool_call(name: str, arguments: dict) -> dict:
    return {"id": f"call_{name}", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def eval_records(count: int = 3) -> list[dict]:
    """eval_data.jsonl lines: full log records."""
    return [
        {
            "workload_id": "w", "client_id": "c", "timestamp": 1700000000 + i,
            "request": {"model": BASE_MODEL, "tools": TOOLS,
                        "messages": [{"role": "user", "content": f"What is the weather in {CITIES[i % 8]}?"}]},
            "response": {"choices": [{"index": 0, "message": {
                "role": "assistant", "content": None,
                "tool_calls": [_tool_call("get_weather", {"city": CITIES[i % 8]})]}}]},
        }
        for i in range(count)
    ]


def training_rows(count: int = 6) -> list[dict]:
    """train_data.jsonl lines: messages + assistant answer + tools."""
    return [
        {"messages": [
            {"role": "user", "content": f"Weather in {CITIES[i % 8]} today?"},
            {"role": "assistant", "content": None, "tool_calls": [_tool_call("get_weather", {"city": CITIES[i % 8]})]},
        ], "tools": TOOLS}
        for i in range(count)
    ]


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def eval_config(dataset: str, namespace: str = NAMESPACE) -> dict:
    """An inline tool-calling evaluation config (NeMo Jinja inside: Airflow must not render it)."""
    return {
        "type": "custom", "namespace": namespace,
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
                        {"role": "system", "content": "Answer RATING: 1 if the tool calls match, else RATING: 0."},
                        {"role": "user", "content": "GROUND TRUTH: {{ item.response.choices[0].message.tool_calls "
                                                    "| tojson }}\nPREDICTION: {{ sample.response.choices[0].message."
                                                    "tool_calls | tojson }}"},
                    ]},
                    "scores": {"rating": {"type": "int", "parser": {"type": "regex", "pattern": "RATING: (\\d+)"}}},
                }},
            },
        }},
    }


def deployment_spec(name: str = "llama-1b", model: str = BASE_MODEL, namespace: str = NAMESPACE) -> dict:
    return {"namespace": namespace, "name": name, "model": model, "image_name": f"nvcr.io/nim/{model}",
            "image_tag": "1.0", "pvc_size": "25Gi", "gpu": 1, "additional_envs": {"NIM_GUIDED_DECODING_BACKEND": "x"}}


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until truthy; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def run_trigger(trigger: Any) -> list[Any]:
    """All events of a trigger's ``run()`` (the way the triggerer iterates it)."""

    async def collect() -> list[Any]:
        return [event async for event in trigger.run()]

    return asyncio.run(collect())


@dataclass
class FakeTI:
    """The part of a TaskInstance the operators use: ``xcom_push`` (recorded)."""

    dag_id: str = "test_dag"
    task_id: str = "test_task"
    xcoms: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        # XCom values must be JSON; fail here rather than in a real run.
        json.dumps(value)
        self.xcoms[key] = value


def make_context() -> dict[str, Any]:
    return {"ti": FakeTI()}


@pytest.fixture(scope="session")
def _nemo_emulator_server() -> Iterator[EmulatorHandle]:
    if "handle" in _SHARED:
        yield _SHARED["handle"]
        return
    with running_emulator(job_duration=FAST["job"], deployment_duration=FAST["deployment"],
                          sync_duration=FAST["sync"], queue_duration=FAST["queue"]) as handle:
        _SHARED["handle"] = handle
        try:
            yield handle
        finally:
            _SHARED.pop("handle", None)


@pytest.fixture
def nemo_emu(_nemo_emulator_server: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> EmulatorHandle:
    """The session's emulator, reset, with fast durations and the three Connections pointing at it."""
    emu = _nemo_emulator_server
    emu.reset()
    emu.configure(**FAST)
    for conn_id, conn_type, host in (
        ("nemo_default", "nemo", emu.base_url),
        ("nim_default", "nim", emu.nim_url),
        ("nemo_datastore_default", "nemo_datastore", emu.datastore_url),
    ):
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}",
            json.dumps({"conn_type": conn_type, "host": host, "password": SECRET}),
        )
    return emu


def upload_dataset(name: str, files: dict[str, str], namespace: str = NAMESPACE) -> None:
    """Put files into a Data Store repo and register it, with the hooks (setup for trigger tests)."""
    from include.nemo import payloads
    from include.nemo.hooks import DataStoreHook, EntityStoreHook

    with EntityStoreHook() as entity_store, DataStoreHook() as datastore:
        entity_store.create_namespace(namespace)
        datastore.create_namespace(namespace)
        datastore.create_dataset_repo(namespace, name)
        datastore.upload_files(namespace, name, {path: text.encode() for path, text in files.items()})
        entity_store.create_dataset(payloads.dataset_body(namespace, name))


def customization_bodies(job_name: str, dataset: str, config_name: str = "llama-1b-lora") -> tuple[dict, dict]:
    """A config body and a job body for the emulator's Customizer."""
    config = {
        "name": config_name, "namespace": NAMESPACE, "target": f"{BASE_MODEL}@2.0",
        "training_options": [{"training_type": "sft", "finetuning_type": "lora", "num_gpus": 1, "num_nodes": 1,
                              "tensor_parallel_size": 1, "data_parallel_size": 1, "use_sequence_parallel": False,
                              "micro_batch_size": 1}],
        "training_precision": "bf16-mixed", "max_seq_length": 4096,
    }
    job = {
        "name": job_name, "output_model": f"{NAMESPACE}/{job_name}-model",
        "config": f"{NAMESPACE}/{config_name}", "dataset": {"namespace": NAMESPACE, "name": dataset},
        "hyperparameters": {"training_type": "sft", "finetuning_type": "lora", "epochs": 1, "batch_size": 2,
                            "learning_rate": 0.0001, "lora": {"adapter_dim": 8, "adapter_dropout": 0.1}},
    }
    return config, job


def training_dataset(name: str = "train-ds") -> str:
    upload_dataset(name, {"training/train_data.jsonl": jsonl(training_rows()),
                          "validation/val_data.jsonl": jsonl(training_rows(2))})
    return name


def eval_dataset(name: str = "eval-ds") -> str:
    upload_dataset(name, {"eval_data.jsonl": jsonl(eval_records())})
    return name


def deploy_ready(emu: EmulatorHandle, spec: dict | None = None) -> dict:
    """Create a deployment and move the emulator's clock until it is ready (no wall-clock wait)."""
    from include.nemo import payloads
    from include.nemo.hooks import DeploymentHook

    spec = spec or deployment_spec()
    with DeploymentHook() as hook:
        hook.create_deployment(payloads.deployment_body(**spec))
    emu.advance_clock(5)
    return spec
