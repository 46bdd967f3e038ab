from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
BUNDLED_CONFIG = Path(__file__).resolve().parents[2] / "include" / "config" / "flywheel.yaml"
# The bundled sample logs cover these days (UTC).
SAMPLE_WINDOW = {"log_window_start": "2026-11-17", "log_window_end": "2026-11-24"}


@pytest.fixture(scope="session")
def airflow_db():
    """A fresh Airflow metadata DB (SQLite in the session's AIRFLOW_HOME), created once, with the GPU pool."""
    from airflow.models.pool import Pool
    from airflow.utils import db

    db.resetdb()
    Pool.create_or_update_pool("nemo_gpu", slots=4, description="GPU-bound NeMo work", include_deferred=True)


@pytest.fixture(scope="session")
def flywheel_dags(airflow_db):
    """The project's DAGs from the bundled settings, parsed once."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}, bag.import_errors
    return bag.dags


@dataclass
class FlywheelEnv:
    """A flywheel wired to a running emulator: fast waits, private results store and staging."""

    emulator: Any
    config_path: Path
    results_path: Path
    staging: Path

    def dags(self, **config_changes: Any) -> dict:
        """Parse the DAGs with the test settings (optionally changed: ``{"candidates": [...]}``...)."""
        from airflow.dag_processing.dagbag import DagBag

        raw = yaml.safe_load(self.config_path.read_text())
        for section, value in config_changes.items():
            if isinstance(value, dict) and isinstance(raw.get(section), dict):
                raw[section].update(value)
            else:
                raw[section] = value
        self.config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        bag = DagBag(dag_folder=str(DAGS_FOLDER))
        assert bag.import_errors == {}, bag.import_errors
        return bag.dags

    def result_store(self):
        from include.flywheel.config import ResultsSettings
        from include.flywheel.results import open_result_store

        return open_result_store(ResultsSettings(sqlite_path=str(self.results_path)))

    def run(self, dag: Any, conf: dict[str, Any] | None = None) -> FlywheelRun:
        """``dag.test(run_conf=...)`` (the sample window unless ``conf`` names another), then collect what it left.

        Args:
            dag: A DAG from :meth:`dags`.
            conf: Run conf merged over :data:`SAMPLE_WINDOW` (e.g. ``{"candidates": [...]}``).

        Returns:
            The DAG run, its task states and tries, the results-store document of the run (with its
            nims / evaluations / customizations), the emulator's ``state()`` and the report text.
        """
        from include.flywheel.results import flywheel_run_id
        from include.flywheel.runs import run_key

        dag_run = dag.test(run_conf={**SAMPLE_WINDOW, **(conf or {})})
        states: dict[str, str | None] = {}
        tries: dict[str, int] = {}
        for ti in dag_run.get_task_instances():
            key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
            states[key] = ti.state
            tries[key] = ti.try_number
        with self.result_store() as store:
            document = store.get_run(flywheel_run_id(dag.dag_id, dag_run.run_id))
        report = self.staging / dag.dag_id / run_key(dag_run.run_id) / "report.md"
        return FlywheelRun(
            dag_run=dag_run,
            states=states,
            tries=tries,
            document=document,
            emulator_state=self.emulator.state() if self.emulator is not None else {},
            report=report.read_text(encoding="utf-8") if report.is_file() else None,
        )


@dataclass
class FlywheelRun:
    """What one ``dag.test()`` run of a flywheel DAG left behind (see :meth:`FlywheelEnv.run`)."""

    dag_run: Any
    # task id (``task[i]`` for mapped tasks) -> final state, and -> try number.
    states: dict[str, str | None]
    tries: dict[str, int]
    # The results store's run document with its children (None if the run was never recorded).
    document: dict[str, Any] | None
    emulator_state: dict[str, Any]
    report: str | None

    @property
    def state(self) -> str:
        """The DAG run's final state (``"success"``, ``"failed"``)."""
        return self.dag_run.state

    def group_states(self, group_id: str) -> dict[str, str | None]:
        """The states of one candidate group's tasks, keyed by step (``deploy_nim``...)."""
        prefix = group_id + "."
        return {key[len(prefix):]: value for key, value in self.states.items() if key.startswith(prefix)}

    def evaluations(self, model_name: str) -> dict[str, dict[str, Any]]:
        """The stored evaluations of one candidate, keyed by eval type."""
        evaluations = (self.document or {}).get("evaluations", [])
        return {e["eval_type"]: e for e in evaluations if e["model_name"] == model_name}

    def nim(self, model_name: str) -> dict[str, Any] | None:
        """The stored NIM document of one candidate (None when the run did not record it)."""
        return next((n for n in (self.document or {}).get("nims", []) if n["model_name"] == model_name), None)

    def customization(self, model_name: str) -> dict[str, Any] | None:
        """The stored customization document of one candidate (None when it has none)."""
        return next(
            (c for c in (self.document or {}).get("customizations", []) if c["model_name"] == model_name), None
        )


@pytest.fixture
def flywheel_config(airflow_db, tmp_path, monkeypatch) -> FlywheelEnv:
    """Test settings: the bundled ones with fast waits and a private results store and staging."""
    raw = yaml.safe_load(BUNDLED_CONFIG.read_text())
    raw["waits"].update(poll_interval=0.2, retries=1, retry_delay=0.5, deployment_timeout=60,
                        evaluation_timeout=120, customization_timeout=120, model_sync_timeout=60)
    results_path = tmp_path / "results.sqlite3"
    raw["results"]["sqlite_path"] = str(results_path)
    staging = tmp_path / "staging"
    raw["staging"]["base_uri"] = staging.as_uri()
    config_path = tmp_path / "flywheel.yaml"
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setenv("FLYWHEEL_CONFIG", str(config_path))
    return FlywheelEnv(emulator=None, config_path=config_path, results_path=results_path, staging=staging)


@pytest.fixture
def flywheel_env(flywheel_config, monkeypatch) -> Iterator[FlywheelEnv]:
    """Start the NeMo emulator (tiny job durations) and point the flywheel's Connections at it."""
    from include.nemo_emulator.testing import running_emulator

    with running_emulator(job_duration=0.5, deployment_duration=0.3, sync_duration=0.3, queue_duration=0.1) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_NEMO_DEFAULT", json.dumps({"conn_type": "nemo", "host": emu.base_url}))
        monkeypatch.setenv(
            "AIRFLOW_CONN_NEMO_DATASTORE_DEFAULT", json.dumps({"conn_type": "nemo_datastore", "host": emu.base_url})
        )
        monkeypatch.setenv("AIRFLOW_CONN_NIM_DEFAULT", json.dumps({"conn_type": "nim", "host": emu.nim_url}))
        flywheel_config.emulator = emu
        yield flywheel_config
