"""``open_result_store``: the configured backend, the path rules, and no Airflow on the SQLite path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from include.flywheel.config import PROJECT_ROOT, ResultsSettings
from include.flywheel.results import SqliteResultStore, open_result_store, resolve_sqlite_path
from include.flywheel.results.mongo import MongoResultStore


def test_sqlite_is_the_default_and_relative_paths_start_at_the_project_root() -> None:
    store = open_result_store(ResultsSettings())
    assert isinstance(store, SqliteResultStore)
    assert store.path == PROJECT_ROOT / ".flywheel" / "results.sqlite3"


def test_absolute_and_home_relative_paths_are_kept(tmp_path, monkeypatch) -> None:
    assert resolve_sqlite_path(ResultsSettings(sqlite_path=str(tmp_path / "r.db"))) == tmp_path / "r.db"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_sqlite_path(ResultsSettings(sqlite_path="~/flywheel/r.db")) == tmp_path / "flywheel" / "r.db"


def test_mongo_settings_give_a_mongo_store_without_connecting() -> None:
    store = open_result_store(ResultsSettings(backend="mongo", mongo_conn_id="results_db", database="fw"))
    assert isinstance(store, MongoResultStore)
    assert (store.mongo_conn_id, store.database) == ("results_db", "fw")


def test_the_embedded_store_never_imports_airflow(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from include.flywheel.config import ResultsSettings\n"
        "from include.flywheel.results import open_result_store\n"
        f"store = open_result_store(ResultsSettings(sqlite_path={str(tmp_path / 'r.db')!r}))\n"
        "store.upsert_run('flywheel__w', 'manual__1', workload_id='w', client_id='c')\n"
        "import include.flywheel.scoring\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('airflow', 'pymongo')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
