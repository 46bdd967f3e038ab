"""What the SQLite backend adds to the contract: the file, WAL, schema version, threads."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timezone

import pytest

from include.flywheel.results import ResultStoreError, SqliteResultStore

T0 = datetime(2026, 11, 18, 2, 0, tzinfo=timezone.utc)


def new_run(store: SqliteResultStore) -> str:
    return store.upsert_run("flywheel__support", "manual__1", workload_id="support", client_id="acme",
                            started_at=T0)["flywheel_run_id"]


def test_the_file_and_its_parent_directories_are_created_in_wal_mode(tmp_path) -> None:
    path = tmp_path / "a" / "b" / "results.sqlite3"
    store = SqliteResultStore(path)
    assert not path.exists()  # nothing happens until first use
    new_run(store)
    store.close()

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"flywheel_runs", "nims", "evaluations", "customizations", "llm_judge_runs"} <= tables
        (doc,) = conn.execute("SELECT doc FROM flywheel_runs").fetchone()
    assert json.loads(doc)["started_at"] == "2026-11-18T02:00:00.000Z"


def test_fields_written_by_a_newer_version_are_kept(tmp_path) -> None:
    store = SqliteResultStore(tmp_path / "results.sqlite3")
    run = new_run(store)
    store.upsert_nim(run, "m", status="pending")
    with sqlite3.connect(tmp_path / "results.sqlite3") as conn:
        (doc,) = conn.execute("SELECT doc FROM nims").fetchone()
        conn.execute("UPDATE nims SET doc = ?", (json.dumps({**json.loads(doc), "gpu_hours": 1.5}),))

    written = store.upsert_nim(run, "m", status="deploying-nim")
    assert (written["status"], written["gpu_hours"]) == ("deploying-nim", 1.5)
    assert store.get_run(run)["nims"][0]["gpu_hours"] == 1.5


def test_a_database_from_a_newer_schema_is_refused(tmp_path) -> None:
    path = tmp_path / "results.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(ResultStoreError, match=r"schema version 99, newer than this code"):
        SqliteResultStore(path).list_workloads()


def test_an_unusable_path_names_the_path(tmp_path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    with pytest.raises(ResultStoreError, match=r"not-a-directory/results.sqlite3.*sqlite_path"):
        SqliteResultStore(blocker / "results.sqlite3").list_workloads()


def test_threads_sharing_one_store_lose_no_update(tmp_path) -> None:
    store = SqliteResultStore(tmp_path / "results.sqlite3")
    run = new_run(store)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for round_ in range(20):
                store.upsert_evaluation(run, f"model-{worker}", "base-eval", progress=float(round_))
                if worker == 0:
                    store.update_run(run, extra={"last": worker})
                else:
                    store.update_run(run, stage=f"s{round_}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    detail = store.get_run(run)
    assert sorted(e["model_name"] for e in detail["evaluations"]) == [f"model-{w}" for w in range(4)]
    assert {e["progress"] for e in detail["evaluations"]} == {19.0}
    assert (detail["extra"], detail["stage"]) == ({"last": 0}, "s19")


def test_a_failed_write_leaves_the_stored_document_unchanged(tmp_path) -> None:
    store = SqliteResultStore(tmp_path / "results.sqlite3")
    run = new_run(store)
    before = store.get_run(run)
    with pytest.raises(ResultStoreError):
        store.update_run(run, stage="extract_logs", num_records=-1)
    assert store.get_run(run) == before
