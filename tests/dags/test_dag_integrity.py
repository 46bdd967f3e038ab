"""DAG integrity: every DAG file imports cleanly, without touching Connections, Variables or
the network at parse time, and every DAG carries tags, retries and docs.

The parse-time guard makes Connection/Variable look-ups and socket connections raise while
the DagBag is filled, so a DAG file that does any of them shows up as an import error.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from unittest import mock

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = PROJECT_ROOT / "dags"


class ParseTimeAccessError(RuntimeError):
    pass


def _forbidden(what: str):
    def raiser(*args, **kwargs):
        raise ParseTimeAccessError(f"{what} at DAG parse time")

    return raiser


@contextlib.contextmanager
def parse_time_guard():
    from airflow.sdk import BaseHook, Connection, Variable

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(BaseHook, "get_connection", _forbidden("Connection access")))
        stack.enter_context(mock.patch.object(Connection, "get", _forbidden("Connection access")))
        stack.enter_context(mock.patch.object(Variable, "get", _forbidden("Variable access")))
        stack.enter_context(mock.patch.object(socket.socket, "connect", _forbidden("Network access")))
        yield


def load_dagbag(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    with parse_time_guard():
        return DagBag(dag_folder=str(folder))


@pytest.fixture(scope="module")
def dagbag():
    return load_dagbag(DAGS_FOLDER)


def test_dag_files_import_without_errors(dagbag):
    assert dagbag.import_errors == {}, dagbag.import_errors


def test_one_dag_per_configured_workload(dagbag):
    from include.flywheel.config import load_config

    expected = {w.dag_id for w in load_config().workloads}
    assert set(dagbag.dags) == expected


def test_dags_have_tags_retries_docs_and_typed_params(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert "flywheel" in dag.tags, dag_id
        assert dag.doc_md and "flywheel" in dag.doc_md.lower(), dag_id
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"
        for name in dag.params:
            param = dag.params.get_param(name)
            assert param.schema.get("title") and param.description, f"{dag_id} param {name} lacks title/description"
            assert "type" in param.schema, f"{dag_id} param {name} is untyped"


def test_schedule_gives_a_data_interval(dagbag):
    from datetime import datetime, timezone

    from airflow.serialization.serialized_objects import DagSerialization

    # The scheduler works with the serialized DAG's timetable: check that one.
    dag = DagSerialization.from_dict(DagSerialization.to_dict(dagbag.dags["flywheel__customer-support-tools"]))
    interval = dag.timetable.infer_manual_data_interval(run_after=datetime(2026, 11, 19, 12, tzinfo=timezone.utc))
    # A daily 02:00 cron covers the previous complete day: the run's log window.
    assert interval.start == datetime(2026, 11, 18, 2, tzinfo=timezone.utc)
    assert interval.end == datetime(2026, 11, 19, 2, tzinfo=timezone.utc)


BAD_DAG_FILES = {
    "Connection access": "from airflow.sdk import BaseHook\nBaseHook.get_connection('nemo_default')\n",
    "Variable access": "from airflow.sdk import Variable\nVariable.get('threshold')\n",
    "Network access": "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9/')\n",
}


@pytest.mark.parametrize("what", sorted(BAD_DAG_FILES))
def test_guard_catches_parse_time_access(tmp_path, what):
    """The integrity check itself fails when a DAG file touches a Connection, Variable or network."""
    dag_file = tmp_path / "bad_dag.py"
    dag_file.write_text(
        "# airflow dag\n" + BAD_DAG_FILES[what] + "from airflow.sdk import DAG\nDAG(dag_id='bad', schedule=None)\n"
    )
    dagbag = load_dagbag(tmp_path)
    assert str(dag_file) in dagbag.import_errors
    assert f"{what} at DAG parse time" in dagbag.import_errors[str(dag_file)]
