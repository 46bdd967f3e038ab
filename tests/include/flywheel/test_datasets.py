"""JSONL writers, the file layout, DatasetHandle, idempotent writes."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from include.flywheel.config import WorkloadSettings
from include.flywheel.datasets import (
    DatasetHandle,
    read_jsonl,
    to_jsonl_line,
    write_datasets,
    write_jsonl,
)
from include.flywheel.pipeline import prepare_datasets

SCHEMAS = [
    {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}} for name in ("a_tool", "b_tool")
]


def record(index: int) -> dict:
    tool = "a_tool" if index % 3 else "b_tool"
    return {
        "workload_id": "w",
        "client_id": "c",
        "timestamp": 1_700_000_000 + index,
        "request": {
            "messages": [{"role": "user", "content": f"Do {tool} for item {index} — café"}],
            "tools": SCHEMAS,
        },
        "response": {
            "choices": [
                {
                    "message": {
                        "role": "assistant",
                        "tool_calls": [{"type": "function", "function": {"name": tool, "arguments": {"item": index}}}],
                    }
                }
            ]
        },
    }


@pytest.fixture(scope="module")
def prepared():
    settings = WorkloadSettings(
        workload_id="w",
        client_id="c",
        data_split={"eval_size": 5, "min_total_records": 10, "val_ratio": 0.2, "limit": None},
        icl={"max_examples": 2},
    )
    return prepare_datasets((record(i) for i in range(40)), settings)


def test_layout_and_handles(prepared, tmp_path):
    handles = write_datasets(prepared, tmp_path)
    assert set(handles) == {"eval", "icl", "train"}
    assert (tmp_path / "eval" / "eval_data.jsonl").is_file()
    assert (tmp_path / "icl" / "eval_data.jsonl").is_file()
    assert (tmp_path / "train" / "training" / "train_data.jsonl").is_file()
    assert (tmp_path / "train" / "validation" / "val_data.jsonl").is_file()

    train = handles["train"]
    assert train.kind == "train"
    assert train.uri == str(tmp_path / "train")
    assert set(train.files) == {"training/train_data.jsonl", "validation/val_data.jsonl"}
    assert train.files["training/train_data.jsonl"].records == len(prepared.train_rows)
    assert train.files["validation/val_data.jsonl"].records == len(prepared.val_rows)
    assert train.total_records == len(prepared.train_rows) + len(prepared.val_rows)
    assert handles["eval"].total_records == 5 and handles["icl"].total_records == 5
    for handle in handles.values():
        for path_in_repo, info in handle.files.items():
            data = (Path(handle.uri) / path_in_repo).read_bytes()
            assert info.sha256 == hashlib.sha256(data).hexdigest()
            assert info.bytes == len(data)
            assert data.count(b"\n") == info.records
    assert handles["train"].file_uri("training/train_data.jsonl").endswith("train/training/train_data.jsonl")
    with pytest.raises(KeyError, match="not a file of the eval dataset"):
        handles["eval"].file_uri("nope.jsonl")


def test_file_contents(prepared, tmp_path):
    write_datasets(prepared, tmp_path)
    eval_lines = read_jsonl(tmp_path / "eval" / "eval_data.jsonl")
    assert eval_lines == prepared.eval_records
    first = eval_lines[0]
    assert set(first) >= {"workload_id", "client_id", "timestamp", "request", "response"}
    arguments = first["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert isinstance(arguments, str)  # OpenAI format for the evaluator
    train_lines = read_jsonl(tmp_path / "train" / "training" / "train_data.jsonl")
    assert set(train_lines[0]) == {"messages", "tools"}
    assert train_lines[0]["messages"][-1]["role"] == "assistant"
    icl_lines = read_jsonl(tmp_path / "icl" / "eval_data.jsonl")
    assert icl_lines[0]["request"]["messages"][0]["role"] == "system"
    # UTF-8, not \\u escapes; one compact line per record.
    raw = (tmp_path / "eval" / "eval_data.jsonl").read_bytes()
    assert "café".encode() in raw
    assert b"\n\n" not in raw


def test_writes_are_idempotent(prepared, tmp_path):
    first = write_datasets(prepared, tmp_path / "one")
    before = {path: path.read_bytes() for path in (tmp_path / "one").rglob("*.jsonl")}
    again = write_datasets(prepared, tmp_path / "one")
    after = {path: path.read_bytes() for path in (tmp_path / "one").rglob("*.jsonl")}
    assert before == after
    assert first == again
    elsewhere = write_datasets(prepared, tmp_path / "two")
    for kind in first:
        checksums = {path: info.sha256 for path, info in first[kind].files.items()}
        assert checksums == {path: info.sha256 for path, info in elsewhere[kind].files.items()}


def test_handle_is_small_and_round_trips_as_json(prepared, tmp_path):
    handle = write_datasets(prepared, tmp_path)["train"]
    text = handle.model_dump_json()
    assert len(text) < 1000
    assert DatasetHandle.model_validate_json(text) == handle
    with pytest.raises(ValueError):
        DatasetHandle(kind="weights", uri="x", files={}, total_records=0)


class MemoryPath:
    """The duck-typed subset of ObjectStoragePath the writers may use: /, mkdir, open."""

    def __init__(self, store: dict[str, bytes], key: str = "mem://bucket") -> None:
        self.store = store
        self.key = key

    def __truediv__(self, other: str) -> MemoryPath:
        return MemoryPath(self.store, f"{self.key}/{other}")

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        pass

    @property
    def parent(self) -> MemoryPath:
        return MemoryPath(self.store, self.key.rsplit("/", 1)[0])

    def open(self, mode: str = "rb"):
        store, key = self.store, self.key
        if mode == "wb":

            class Writer(io.BytesIO):
                def close(self) -> None:
                    store[key] = self.getvalue()
                    super().close()

            return Writer()
        return io.BytesIO(store[key])

    def __str__(self) -> str:
        return self.key


def test_works_with_an_object_storage_like_path(prepared, tmp_path):
    store: dict[str, bytes] = {}
    handles = write_datasets(prepared, MemoryPath(store))
    assert sorted(store) == [
        "mem://bucket/eval/eval_data.jsonl",
        "mem://bucket/icl/eval_data.jsonl",
        "mem://bucket/train/training/train_data.jsonl",
        "mem://bucket/train/validation/val_data.jsonl",
    ]
    assert handles["eval"].uri == "mem://bucket/eval"
    local = write_datasets(prepared, tmp_path)
    assert handles["eval"].files == local["eval"].files


def test_jsonl_line_and_errors(tmp_path):
    assert to_jsonl_line({"b": 1, "a": "é"}) == '{"b":1,"a":"é"}\n'.encode()
    with pytest.raises(ValueError, match="cannot be written as JSON"):
        to_jsonl_line({"x": float("nan")})
    info = write_jsonl(tmp_path / "sub" / "empty.jsonl", [])
    assert (info.records, info.bytes) == (0, 0)
    assert info.sha256 == hashlib.sha256(b"").hexdigest()
    assert json.loads(json.dumps(info.model_dump()))["records"] == 0
