"""What the MongoDB backend adds to the contract: indexes, BSON dates, field-wise writes, errors.

The real ``MongoHook`` runs, with mongomock in for ``pymongo.MongoClient`` and the Connection
from ``AIRFLOW_CONN_MONGO_DEFAULT`` (see conftest.py).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from pymongo.errors import DuplicateKeyError, ServerSelectionTimeoutError

from include.flywheel.config import ResultsSettings
from include.flywheel.results import ResultStoreError, open_result_store
from include.flywheel.results.mongo import INDEXES, MongoResultStore

T0 = datetime(2026, 11, 18, 2, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(mongomock_server) -> MongoResultStore:
    store = open_result_store(ResultsSettings(backend="mongo", database="flywheel"))
    assert isinstance(store, MongoResultStore)
    yield store
    store.close()


def new_run(store: MongoResultStore) -> str:
    return store.upsert_run("flywheel__support", "manual__1", workload_id="support", client_id="acme",
                            started_at=T0)["flywheel_run_id"]


def test_the_hook_builds_its_client_from_the_connection(store: MongoResultStore, mongomock_server) -> None:
    new_run(store)
    assert mongomock_server.calls, "MongoHook did not create a client"
    args, _ = mongomock_server.calls[0]
    assert args[0] == "mongodb://mongo.test:27017"
    assert "flywheel_runs" in mongomock_server["flywheel"].list_collection_names()


def test_unique_indexes_hold_one_document_per_key(store: MongoResultStore, mongomock_server) -> None:
    run = new_run(store)
    store.upsert_evaluation(run, "m", "base-eval", job_id="eval-1")
    database = mongomock_server["flywheel"]
    for collection, indexes in INDEXES.items():
        names = set(database[collection].index_information())
        assert {name for name, _, _ in indexes} <= names, collection
    with pytest.raises(DuplicateKeyError):
        database["evaluations"].insert_one({"flywheel_run_id": run, "model_name": "m", "eval_type": "base-eval"})
    with pytest.raises(DuplicateKeyError):
        database["flywheel_runs"].insert_one(
            {"flywheel_run_id": "x/y", "dag_id": "flywheel__support", "run_id": "manual__1"}
        )


def test_timestamps_are_stored_as_bson_dates(store: MongoResultStore, mongomock_server) -> None:
    run = new_run(store)
    raw = mongomock_server["flywheel"]["flywheel_runs"].find_one({"flywheel_run_id": run})
    # Dates (not text) so the server sorts and filters them as time.
    assert isinstance(raw["started_at"], datetime)
    assert raw["started_at"].replace(tzinfo=timezone.utc) == T0


def test_a_write_sets_only_its_fields_so_concurrent_writers_keep_theirs(
    store: MongoResultStore, mongomock_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = new_run(store)
    store.upsert_nim(run, "m", status="deploying-nim")
    stale = store.get_run(run)["nims"][0]
    # Another task records an error after this one read the document...
    mongomock_server["flywheel"]["nims"].update_one({"model_name": "m"}, {"$set": {"error": "deployment failed"}})
    real_find_one = store._find_one
    monkeypatch.setattr(store, "_find_one", lambda c, k: stale if c == "nims" else real_find_one(c, k))
    # ...and this one then writes the deployment status from its stale snapshot.
    written = store.upsert_nim(run, "m", deployment_status="pending")

    assert (written["deployment_status"], written["error"]) == ("pending", "deployment failed")


def test_a_racing_insert_is_retried_as_an_update(store: MongoResultStore, monkeypatch: pytest.MonkeyPatch) -> None:
    run = new_run(store)
    store.upsert_evaluation(run, "m", "icl-eval", job_id="eval-1")
    collection = store._db()["evaluations"]
    real = type(collection).find_one_and_update
    calls = []

    def collide_once(self, *args, **kwargs):
        calls.append(args[0])
        if len(calls) == 1:
            raise DuplicateKeyError("E11000 duplicate key error (simulated race)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(collection), "find_one_and_update", collide_once)
    written = store.upsert_evaluation(run, "m", "icl-eval", progress=50.0)

    assert len(calls) == 2
    assert (written["job_id"], written["progress"]) == ("eval-1", 50.0)


def test_a_missing_connection_names_the_conn_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_MONGO_RESULTS", raising=False)
    store = open_result_store(ResultsSettings(backend="mongo", mongo_conn_id="mongo_results"))
    with pytest.raises(ResultStoreError, match=r"Connection 'mongo_results'.*conn type 'mongo'"):
        store.list_workloads()


def test_a_connection_of_the_wrong_type_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MONGO_DEFAULT", json.dumps({"conn_type": "http", "host": "mongo.test"}))
    store = open_result_store(ResultsSettings(backend="mongo"))
    with pytest.raises(ResultStoreError, match=r"conn_type 'http' not allowed"):
        store.get_run("flywheel__support/manual__1")


def test_server_errors_become_result_store_errors(store: MongoResultStore, monkeypatch: pytest.MonkeyPatch) -> None:
    collection_type = type(store._db()["flywheel_runs"])

    def unreachable(self, *args, **kwargs):
        raise ServerSelectionTimeoutError("mongo.test:27017: [Errno 111] Connection refused")

    monkeypatch.setattr(collection_type, "find", unreachable)
    with pytest.raises(ResultStoreError, match=r"Connection 'mongo_default', database 'flywheel'.*Connection refused"):
        store.list_runs("support")


def test_the_integration_uri_becomes_a_mongo_connection(connection_from_uri, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plumbing the real-server tests use (FLYWHEEL_TEST_MONGO_URI -> AIRFLOW_CONN_MONGO_DEFAULT)."""
    from airflow.providers.mongo.hooks.mongo import MongoHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_MONGO_DEFAULT", connection_from_uri("mongodb://fly%40wheel:p%2Fss@db.test:27018/?authSource=admin")
    )
    hook = MongoHook(mongo_conn_id="mongo_default")
    assert hook.uri == "mongodb://fly%40wheel:p%2Fss@db.test:27018"
    assert hook.extras == {"authSource": "admin"}
    with pytest.raises(ValueError, match="mongodb://"):
        connection_from_uri("postgres://db.test")


@pytest.mark.parametrize("database", ["", "flywheel.results", "my db", "a/b"])
def test_invalid_database_names_are_refused(database: str) -> None:
    with pytest.raises(ResultStoreError, match="not a valid MongoDB database name"):
        MongoResultStore(database=database)
