"""The bundled sample workloads through the emulator's models: does the flywheel's data make them learn?

No Airflow, no HTTP: the bundled sample logs are read with the real log source, prepared with the
real pipeline (semantic ICL selection, embeddings from the emulator's own ``embed_text`` so the
chosen examples are relevant), written with the real dataset writers, and evaluated with the
emulator's evaluation runner and the evaluation configs the DAG submits (``include/nemo/payloads.py``).
The customized model is trained (emulated: nearest neighbours) on the prepared training rows with
the hyperparameters the DAG would send.

Run with ``-s`` to see the figures. They come from the emulator, not from NeMo models.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from include.flywheel import scoring
from include.flywheel.config import PROJECT_ROOT, WorkloadSettings, load_config
from include.flywheel.datasets import EVAL_FILE, read_jsonl, write_datasets
from include.flywheel.logs.files import FileLogSource
from include.flywheel.pipeline import PreparedDatasets, prepare_datasets
from include.nemo import payloads
from include.nemo_emulator import brain
from include.nemo_emulator.evaluation import run_evaluation

BUNDLED_CONFIG = PROJECT_ROOT / "include" / "config" / "flywheel.yaml"
# The days the bundled sample logs cover (UTC), end exclusive.
WINDOW_START = datetime(2026, 11, 17, tzinfo=timezone.utc)
WINDOW_END = datetime(2026, 11, 24, tzinfo=timezone.utc)
# Where the evaluation runner is told the judge lives: never contacted (the emulator's judge is local).
JUDGE_URL = "http://127.0.0.1:9/v1"
NAMESPACE = "flywheel"


class BrainEmbedder:
    """The ICL embedder: the emulator's deterministic embeddings, as its NIM would serve them."""

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        return [brain.embed_text(text) for text in texts]


@dataclass
class Prepared:
    """One preparation of the sample window, written to disk as the DAG stages it."""

    datasets: PreparedDatasets
    rows_by_url: dict[str, list[dict[str, Any]]]

    def load_rows(self, files_url: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.rows_by_url[files_url])


def sample_settings(workload_id: str, selection: str) -> WorkloadSettings:
    """The bundled settings of a workload (never a test's FLYWHEEL_CONFIG), with the ICL selection given."""
    workload = load_config(BUNDLED_CONFIG).workload(workload_id)
    return workload.with_overrides({"icl": {"example_selection": selection}})


def prepare_sample(settings: WorkloadSettings, directory: Path, embedder: BrainEmbedder | None) -> Prepared:
    """Read the bundled logs of the sample window, prepare them and write the dataset files."""
    source = FileLogSource(settings.logs.resolved_path())
    records = source.iter_records(settings.workload_id, settings.client_id, WINDOW_START, WINDOW_END)
    prepared = prepare_datasets(records, settings, embedder=embedder)
    handles = write_datasets(prepared, directory)
    # The rows the Evaluator would read from the Data Store: the written files, by their hf:// URL.
    rows_by_url = {
        payloads.hf_files_url(NAMESPACE, kind, EVAL_FILE): read_jsonl(Path(handles[kind].file_uri(EVAL_FILE)))
        for kind in ("eval", "icl")
    }
    train = handles["train"]
    rows_by_url["train"] = read_jsonl(Path(train.file_uri("training/train_data.jsonl")))
    rows_by_url["val"] = read_jsonl(Path(train.file_uri("validation/val_data.jsonl")))
    return Prepared(datasets=prepared, rows_by_url=rows_by_url)


def resolve_judge(spec: dict | str) -> brain.ChatModel:
    model_id = spec if isinstance(spec, str) else spec["api_endpoint"]["model_id"]
    return brain.judge_model(model_id)


def evaluate(
    settings: WorkloadSettings, prepared: Prepared, target: brain.ChatModel, kind: str
) -> dict[str, float]:
    """Run the DAG's evaluation config for this workload type on one dataset; the flywheel's scores."""
    workload_type = str(prepared.datasets.workload_type.value)
    make_config: Callable[..., dict] = (
        payloads.tool_calling_eval_config if workload_type == "tool_calling" else payloads.generic_eval_config
    )
    config = make_config(
        files_url=payloads.hf_files_url(NAMESPACE, kind, EVAL_FILE),
        judge=payloads.judge_model(JUDGE_URL, settings.judge.model_name),
        namespace=NAMESPACE,
    )
    results = run_evaluation(config, target, resolve_judge, prepared.load_rows, lambda _progress: None)
    return scoring.extract_scores(results, workload_type).values()


def customize(settings: WorkloadSettings, prepared: Prepared, base_model_name: str) -> brain.ChatModel:
    """The emulator's customized model, trained on the prepared rows with the hyperparameters the DAG sends."""
    body = payloads.customization_job_body(
        name="sample-customization",
        config=f"{NAMESPACE}/sample-config",
        dataset_namespace=NAMESPACE,
        dataset_name="train",
        output_model=f"{NAMESPACE}/sample-customized",
        training=settings.training,
    )
    return brain.customized_model(
        body["output_model"], base_model_name, prepared.load_rows("train"), prepared.load_rows("val"),
        body["hyperparameters"],
    )


@pytest.mark.parametrize(
    ("workload_id", "workload_type"),
    [("customer-support-tools", "tool_calling"), ("faq-chat", "generic")],
)
def test_sample_workload_customized_beats_base_and_icl_helps(workload_id, workload_type, tmp_path):
    settings = sample_settings(workload_id, "semantic_similarity")
    embedder = BrainEmbedder()
    prepared = prepare_sample(settings, tmp_path / "semantic", embedder)
    report = prepared.datasets.report
    assert str(prepared.datasets.workload_type.value) == workload_type
    assert report.icl_selection == "semantic_similarity" and embedder.calls > 0
    assert report.eval_size == settings.data_split.eval_size
    assert report.icl_examples["min"] >= settings.icl.min_examples
    assert prepared.datasets.train_rows, "the sample window must leave training rows"
    # The uniform selection, for comparison: semantic examples are chosen for their relevance.
    uniform = prepare_sample(sample_settings(workload_id, "uniform_distribution"), tmp_path / "uniform", None)
    assert uniform.rows_by_url[payloads.hf_files_url(NAMESPACE, "eval", EVAL_FILE)] == prepared.rows_by_url[
        payloads.hf_files_url(NAMESPACE, "eval", EVAL_FILE)
    ], "the ICL selection must not change the eval set"

    key = scoring.PRIMARY_SCORE[workload_type]
    customizing = [c for c in settings.candidates if c.customization_enabled and c.customizer is not None]
    assert customizing, "the bundled settings must customize at least one candidate"
    for candidate in customizing:
        base_model = brain.base_model(candidate.model_name)
        base = evaluate(settings, prepared, base_model, "eval")[key]
        icl = evaluate(settings, prepared, base_model, "icl")[key]
        icl_uniform = evaluate(settings, uniform, base_model, "icl")[key]
        customized = evaluate(settings, prepared, customize(settings, prepared, candidate.model_name), "eval")[key]
        print(
            f"\n{workload_id} / {candidate.model_name} ({key}, {report.eval_size} eval rows, "
            f"{report.train_size} train rows): base {base:.3f}, ICL semantic {icl:.3f} "
            f"(uniform {icl_uniform:.3f}), customized {customized:.3f}"
        )
        assert customized > base, (candidate.model_name, base, customized)
        assert icl >= base, (candidate.model_name, base, icl)
        # Semantic selection picks examples that resemble the request, so the model can use them;
        # uniformly drawn examples rarely do on this sample.
        assert icl > icl_uniform, (candidate.model_name, icl_uniform, icl)
