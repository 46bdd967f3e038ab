"""The MongoDB results store, through the Airflow provider's ``MongoHook``.

The database (``results.database``, default ``flywheel``) holds the blueprint's five collections
(``flywheel_runs``, ``nims``, ``evaluations``, ``customizations``, ``llm_judge_runs``); the server
and credentials come from the Airflow Connection ``results.mongo_conn_id`` (conn type ``mongo``),
never from code.

Each write is one ``find_one_and_update(..., upsert=True)``: the fields the caller set go in
``$set``, the rest of a new document in ``$setOnInsert``. Two tasks writing different fields of
the same document therefore never overwrite each other, and the unique compound indexes created
by :meth:`MongoResultStore.ensure_indexes` (once per store, before its first write) guarantee one
document per key even when two upserts race (the loser gets a duplicate-key error and retries as
an update). ``replace_one`` is not used: it would drop fields another task wrote in between.

Timestamps are stored as BSON dates (UTC, milliseconds) so they sort and filter on the server.

This is the only module of ``include/flywheel/results`` that imports Airflow, and only when the
MongoDB backend is configured (:func:`include.flywheel.results.open_result_store`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from include.flywheel.results.base import (
    CUSTOMIZATIONS,
    EVALUATIONS,
    LLM_JUDGE_RUNS,
    NIMS,
    RUNS,
    Builder,
    ResultStore,
    ResultStoreError,
    UnknownRunError,
    to_json_document,
)

if TYPE_CHECKING:
    from airflow.providers.mongo.hooks.mongo import MongoHook
    from pymongo.database import Database

log = logging.getLogger(__name__)

# (name, keys, unique). The unique ones are the upsert keys: one document per run and step.
INDEXES: dict[str, list[tuple[str, list[tuple[str, int]], bool]]] = {
    RUNS: [
        ("flywheel_run_id_unique", [("flywheel_run_id", ASCENDING)], True),
        ("dag_run_unique", [("dag_id", ASCENDING), ("run_id", ASCENDING)], True),
        (
            "workload_newest_first",
            [("workload_id", ASCENDING), ("started_at", DESCENDING), ("run_id", DESCENDING)],
            False,
        ),
        ("workload_status", [("workload_id", ASCENDING), ("status", ASCENDING), ("started_at", DESCENDING)], False),
    ],
    NIMS: [("run_model_unique", [("flywheel_run_id", ASCENDING), ("model_name", ASCENDING)], True)],
    EVALUATIONS: [
        (
            "run_model_eval_type_unique",
            [("flywheel_run_id", ASCENDING), ("model_name", ASCENDING), ("eval_type", ASCENDING)],
            True,
        ),
        (
            "workload_model_eval_type",
            [("workload_id", ASCENDING), ("model_name", ASCENDING), ("eval_type", ASCENDING)],
            False,
        ),
    ],
    CUSTOMIZATIONS: [("run_model_unique", [("flywheel_run_id", ASCENDING), ("model_name", ASCENDING)], True)],
    LLM_JUDGE_RUNS: [("run_unique", [("flywheel_run_id", ASCENDING)], True)],
}
# Fields whose value follows from others: written whenever one of their sources is.
_DERIVED = {"runtime_seconds": frozenset({"started_at", "finished_at"})}


def _from_bson(value: Any) -> Any:
    """Values as read from MongoDB, with BSON dates (naive, UTC) made tz-aware."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, Mapping):
        return {key: _from_bson(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_bson(item) for item in value]
    return value


def _document(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A stored document -> JSON types, without MongoDB's own ``_id`` (the key fields identify it)."""
    return to_json_document(_from_bson({key: value for key, value in raw.items() if key != "_id"}))


class MongoResultStore(ResultStore):
    """Results in MongoDB.

    Args:
        mongo_conn_id: The Airflow Connection (conn type ``mongo``) of the server.
        database: The database name (the Connection's schema is not used for this).
        hook: A ready ``MongoHook`` (tests); by default one is made on first use.
    """

    def __init__(
        self, mongo_conn_id: str = "mongo_default", database: str = "flywheel", *, hook: MongoHook | None = None
    ) -> None:
        if not database or any(char in database for char in '/\\. "$'):
            raise ResultStoreError(f"results.database {database!r} is not a valid MongoDB database name")
        self.mongo_conn_id = mongo_conn_id
        self.database = database
        self._hook = hook
        self._db_handle: Database | None = None
        self._indexes_ready = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MongoResultStore(mongo_conn_id={self.mongo_conn_id!r}, database={self.database!r})"

    # -- connection ---------------------------------------------------------------------------------

    def _db(self) -> Database:
        if self._db_handle is not None:
            return self._db_handle
        with self._lock:
            if self._db_handle is None:
                if self._hook is None:
                    from airflow.providers.mongo.hooks.mongo import MongoHook

                    try:
                        self._hook = MongoHook(mongo_conn_id=self.mongo_conn_id)
                    except Exception as exc:  # AirflowNotFoundException, AirflowConfigException, ...
                        raise ResultStoreError(
                            f"cannot use the MongoDB Connection {self.mongo_conn_id!r} for the results store: {exc}; "
                            "define it (conn type 'mongo') or set results.backend: sqlite"
                        ) from exc
                self._db_handle = self._hook.get_conn().get_database(self.database)
        return self._db_handle

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except DuplicateKeyError:
            raise
        except PyMongoError as exc:
            raise ResultStoreError(
                f"MongoDB results store (Connection {self.mongo_conn_id!r}, database {self.database!r}) "
                f"failed to {action}: {exc}"
            ) from exc

    def ensure_indexes(self) -> None:
        """Create the unique upsert-key indexes and the query indexes (idempotent)."""
        db = self._db()
        with self._errors("create indexes"):
            for collection, indexes in INDEXES.items():
                for name, keys, unique in indexes:
                    db[collection].create_index(keys, name=name, unique=unique)
        self._indexes_ready = True
        log.info("Results store indexes are in place in MongoDB database %s.", self.database)

    def close(self) -> None:
        """Close the client (a new one is made on next use)."""
        with self._lock:
            if self._hook is not None and self._hook.client is not None:
                self._hook.close()
                self._hook.client = None
            self._db_handle = None

    # -- primitives ---------------------------------------------------------------------------------

    def _find_one(self, collection: str, key: Mapping[str, str]) -> dict[str, Any] | None:
        with self._errors(f"read {collection}"):
            raw = self._db()[collection].find_one(dict(key))
        return _document(raw) if raw is not None else None

    def _upsert(
        self,
        collection: str,
        key: Mapping[str, str],
        explicit: frozenset[str],
        build: Builder,
        must_exist: bool,
    ) -> dict[str, Any]:
        if not self._indexes_ready:
            # The unique indexes are what makes concurrent upserts safe: make sure they exist.
            self.ensure_indexes()
        set_names = set(explicit) | {name for name, sources in _DERIVED.items() if sources & explicit}
        for attempt in (1, 2):
            current = self._find_one(collection, key)
            document = build(current)
            update: dict[str, Any] = {
                "$set": {name: document[name] for name in set_names if name in document and name not in key}
            }
            on_insert = {name: value for name, value in document.items() if name not in set_names and name not in key}
            if on_insert:
                update["$setOnInsert"] = on_insert
            try:
                with self._errors(f"write {collection}"):
                    stored = self._db()[collection].find_one_and_update(
                        dict(key), update, upsert=not must_exist, return_document=ReturnDocument.AFTER
                    )
            except DuplicateKeyError:
                # Another process inserted the same key between our read and write: now it is an update.
                if attempt == 2:
                    raise ResultStoreError(
                        f"{collection} {'/'.join(key.values())}: concurrent inserts kept colliding; retry the task"
                    ) from None
                log.info("Concurrent insert of %s %s; retrying as an update.", collection, "/".join(key.values()))
                continue
            if stored is None:
                raise UnknownRunError(f"{collection} {'/'.join(key.values())}: not recorded; call upsert_run first")
            return _document(stored)
        raise AssertionError("unreachable")  # pragma: no cover

    def _find_children(self, collection: str, run: str) -> list[dict[str, Any]]:
        with self._errors(f"read {collection}"):
            raws = list(self._db()[collection].find({"flywheel_run_id": run}))
        return [_document(raw) for raw in raws]

    def _find_runs(self, workload_id: str, statuses: list[str] | None, limit: int | None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"workload_id": workload_id}
        if statuses is not None:
            query["status"] = {"$in": statuses}
        with self._errors(f"list {RUNS}"):
            cursor = self._db()[RUNS].find(query).sort([("started_at", DESCENDING), ("run_id", DESCENDING)])
            if limit is not None:
                cursor = cursor.limit(limit)
            raws = list(cursor)
        return [_document(raw) for raw in raws]

    def _workload_summaries(self) -> list[dict[str, Any]]:
        # Newest first, then one group per (workload, status) keeping its newest run, then one per
        # workload: the first (status) group of each workload holds the workload's newest run.
        pipeline = [
            {"$sort": {"workload_id": ASCENDING, "started_at": DESCENDING, "run_id": DESCENDING}},
            {
                "$group": {
                    "_id": {"workload_id": "$workload_id", "status": "$status"},
                    "count": {"$sum": 1},
                    "client_id": {"$first": "$client_id"},
                    "dag_id": {"$first": "$dag_id"},
                    "flywheel_run_id": {"$first": "$flywheel_run_id"},
                    "run_id": {"$first": "$run_id"},
                    "started_at": {"$first": "$started_at"},
                }
            },
            {"$sort": {"started_at": DESCENDING, "run_id": DESCENDING}},
            {
                "$group": {
                    "_id": "$_id.workload_id",
                    "runs": {"$sum": "$count"},
                    "statuses": {"$push": {"status": "$_id.status", "count": "$count"}},
                    "client_id": {"$first": "$client_id"},
                    "dag_id": {"$first": "$dag_id"},
                    "last_run_id": {"$first": "$flywheel_run_id"},
                    "last_status": {"$first": "$_id.status"},
                    "last_started_at": {"$first": "$started_at"},
                }
            },
        ]
        with self._errors(f"summarize {RUNS}"):
            groups = list(self._db()[RUNS].aggregate(pipeline))
        return [
            _document(
                {
                    "workload_id": group["_id"],
                    "client_id": group.get("client_id"),
                    "dag_id": group.get("dag_id"),
                    "runs": group["runs"],
                    "statuses": {item["status"]: item["count"] for item in group["statuses"]},
                    "last_run_id": group["last_run_id"],
                    "last_status": group["last_status"],
                    "last_started_at": group["last_started_at"],
                }
            )
            for group in groups
        ]
