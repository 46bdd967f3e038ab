"""JSONL dataset files and the small handle that describes them (what goes through XCom).

Layout under a run's staging directory (DESIGN section 4)::

    <dir>/eval/eval_data.jsonl                    one full log record per line (OpenAI format)
    <dir>/icl/eval_data.jsonl                     the same records with in-context examples
    <dir>/train/training/train_data.jsonl         {"messages": [...], "tools": [...]} per line
    <dir>/train/validation/val_data.jsonl

Each kind is one Data Store dataset repo; a :class:`DatasetHandle` lists its files by path
in that repo, with record counts, SHA-256 and sizes, so the upload can verify them and a
retry can tell whether anything changed.

``directory`` is duck-typed: a ``pathlib.Path`` or an Airflow ``ObjectStoragePath``
(anything with ``/``, ``mkdir(parents=True, exist_ok=True)`` and ``open("wb")``); this
module does not import Airflow. The serialization is canonical (fixed key order as built,
compact separators, UTF-8), so writing the same data again gives identical bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from include.flywheel.pipeline import PreparedDatasets

DatasetKind = Literal["eval", "icl", "train"]

EVAL_FILE = "eval_data.jsonl"
TRAIN_FILE = "training/train_data.jsonl"
VAL_FILE = "validation/val_data.jsonl"

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class StoragePath(Protocol):
    """The part of ``pathlib.Path`` / ``ObjectStoragePath`` the writers use."""

    def __truediv__(self, other: str) -> StoragePath: ...

    def mkdir(self, parents: bool = ..., exist_ok: bool = ...) -> None: ...

    def open(self, mode: str = ...) -> Any: ...


class FileInfo(BaseModel):
    """One written file."""

    model_config = ConfigDict(frozen=True)

    records: int = Field(ge=0)
    sha256: str
    bytes: int = Field(ge=0)


class DatasetHandle(BaseModel):
    """Where one dataset lives and what it holds. Small: safe for XCom.

    Attributes:
        kind: ``eval``, ``icl`` or ``train``.
        uri: The dataset's directory (``str`` of the path: ``/...`` or ``file://...``, ``s3://...``).
        files: ``{path_in_repo: FileInfo}``, paths relative to ``uri`` (also the paths in the Data Store repo).
        total_records: Records over all files.
    """

    model_config = ConfigDict(frozen=True)

    kind: DatasetKind
    uri: str
    files: dict[str, FileInfo]
    total_records: int = Field(ge=0)

    def file_uri(self, path_in_repo: str) -> str:
        """The full location of one of the files."""
        if path_in_repo not in self.files:
            raise KeyError(f"{path_in_repo!r} is not a file of the {self.kind} dataset; files: {sorted(self.files)}")
        return f"{self.uri.rstrip('/')}/{path_in_repo}"


def to_jsonl_line(record: Mapping[str, Any]) -> bytes:
    """One record as a canonical JSONL line (UTF-8, compact, newline-terminated).

    Raises:
        ValueError: the record holds something JSON cannot represent (NaN, a set, ...).
    """
    try:
        return (_encoder.encode(record) + "\n").encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"record cannot be written as JSON: {exc}") from exc


def write_jsonl(path: StoragePath, records: Iterable[Mapping[str, Any]]) -> FileInfo:
    """Write ``records`` to ``path`` as JSONL (parents created, file replaced).

    Returns:
        Count, SHA-256 and size of what was written.
    """
    parent = getattr(path, "parent", None)
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    count = 0
    size = 0
    with path.open("wb") as handle:
        for record in records:
            line = to_jsonl_line(record)
            handle.write(line)
            digest.update(line)
            size += len(line)
            count += 1
    return FileInfo(records=count, sha256=digest.hexdigest(), bytes=size)


def read_jsonl(path: StoragePath) -> list[dict[str, Any]]:
    """Read a JSONL file written by :func:`write_jsonl` (for tests and checks; files are small)."""
    with path.open("rb") as handle:
        return [json.loads(line) for line in handle.read().decode("utf-8").splitlines() if line.strip()]


def write_dataset(
    kind: DatasetKind, directory: StoragePath, files: Mapping[str, Iterable[Mapping[str, Any]]]
) -> DatasetHandle:
    """Write one dataset: ``files`` maps path-in-repo to records, under ``directory/kind``."""
    root = directory / kind
    root.mkdir(parents=True, exist_ok=True)
    infos: dict[str, FileInfo] = {}
    for path_in_repo, records in files.items():
        target = root
        for part in path_in_repo.split("/"):
            target = target / part
        infos[path_in_repo] = write_jsonl(target, records)
    return DatasetHandle(
        kind=kind, uri=str(root), files=infos, total_records=sum(info.records for info in infos.values())
    )


def write_datasets(prepared: PreparedDatasets, directory: StoragePath) -> dict[str, DatasetHandle]:
    """Write the eval, ICL and train datasets of a preparation under ``directory``.

    Args:
        prepared: The output of :func:`include.flywheel.pipeline.prepare_datasets`.
        directory: The run's staging directory (``Path`` or ``ObjectStoragePath``).

    Returns:
        ``{"eval": handle, "icl": handle, "train": handle}``. Idempotent: writing the same
        preparation again gives the same bytes and checksums.
    """
    return {
        "eval": write_dataset("eval", directory, {EVAL_FILE: prepared.eval_records}),
        "icl": write_dataset("icl", directory, {EVAL_FILE: prepared.icl_records}),
        "train": write_dataset("train", directory, {TRAIN_FILE: prepared.train_rows, VAL_FILE: prepared.val_rows}),
    }
