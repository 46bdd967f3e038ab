"""The embedded results store: one SQLite file (the default, no server needed).

One table per collection holds each document as JSON text next to the columns it is keyed,
filtered and sorted by. The file is shared by every Airflow task process:

- WAL journal mode, so readers (the UI) never block the writer and a writer never blocks readers;
- every write is one ``BEGIN IMMEDIATE`` transaction that reads the current document, merges the
  new fields and writes it back, so two processes writing the same document never lose an update
  (SQLite serializes writers; ``busy_timeout`` makes a second writer wait instead of failing);
- a connection is opened lazily per process (a forked worker never reuses its parent's) and used
  under a lock, so the store is also safe across threads.

WAL needs a local filesystem (not NFS/SMB): put ``results.sqlite_path`` on a local disk, or use
the MongoDB backend when Airflow workers run on several machines.

No Airflow import: the DAG tasks, the UI plugin, tests and scripts share this module.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from include.flywheel.results.base import (
    CUSTOMIZATIONS,
    EVALUATIONS,
    LLM_JUDGE_RUNS,
    NIMS,
    RUNS,
    Builder,
    ResultStore,
    ResultStoreError,
    document_json,
    summarize_workloads,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# A second writer waits this long for the lock before the write fails (tasks write rarely and briefly).
BUSY_TIMEOUT_SECONDS = 30.0

# Key columns per table (its primary key), in key order.
_KEYS: dict[str, tuple[str, ...]] = {
    RUNS: ("flywheel_run_id",),
    NIMS: ("flywheel_run_id", "model_name"),
    EVALUATIONS: ("flywheel_run_id", "model_name", "eval_type"),
    CUSTOMIZATIONS: ("flywheel_run_id", "model_name"),
    LLM_JUDGE_RUNS: ("flywheel_run_id",),
}
# Extra columns copied from the document for filtering and sorting.
_COLUMNS: dict[str, tuple[str, ...]] = {
    RUNS: ("dag_id", "run_id", "workload_id", "client_id", "status", "started_at"),
    NIMS: ("workload_id",),
    EVALUATIONS: ("workload_id",),
    CUSTOMIZATIONS: ("workload_id",),
    LLM_JUDGE_RUNS: ("workload_id",),
}

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {RUNS} (
    flywheel_run_id TEXT PRIMARY KEY,
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    workload_id TEXT NOT NULL,
    client_id TEXT,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,  -- fixed-width UTC text (2026-11-18T02:00:00.000Z): sorts as time
    doc TEXT NOT NULL,
    UNIQUE (dag_id, run_id)
);
CREATE INDEX IF NOT EXISTS {RUNS}_by_workload ON {RUNS} (workload_id, started_at DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS {RUNS}_by_workload_status ON {RUNS} (workload_id, status, started_at DESC);
CREATE TABLE IF NOT EXISTS {NIMS} (
    flywheel_run_id TEXT NOT NULL REFERENCES {RUNS} (flywheel_run_id) ON DELETE CASCADE,
    model_name TEXT NOT NULL,
    workload_id TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (flywheel_run_id, model_name)
);
CREATE TABLE IF NOT EXISTS {EVALUATIONS} (
    flywheel_run_id TEXT NOT NULL REFERENCES {RUNS} (flywheel_run_id) ON DELETE CASCADE,
    model_name TEXT NOT NULL,
    eval_type TEXT NOT NULL,
    workload_id TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (flywheel_run_id, model_name, eval_type)
);
CREATE INDEX IF NOT EXISTS {EVALUATIONS}_by_workload ON {EVALUATIONS} (workload_id, model_name, eval_type);
CREATE TABLE IF NOT EXISTS {CUSTOMIZATIONS} (
    flywheel_run_id TEXT NOT NULL REFERENCES {RUNS} (flywheel_run_id) ON DELETE CASCADE,
    model_name TEXT NOT NULL,
    workload_id TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (flywheel_run_id, model_name)
);
CREATE TABLE IF NOT EXISTS {LLM_JUDGE_RUNS} (
    flywheel_run_id TEXT PRIMARY KEY REFERENCES {RUNS} (flywheel_run_id) ON DELETE CASCADE,
    workload_id TEXT NOT NULL,
    doc TEXT NOT NULL
);
"""


class SqliteResultStore(ResultStore):
    """Results in a local SQLite file.

    Args:
        path: The database file. Parent directories are created on first use.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None

    def __repr__(self) -> str:
        return f"SqliteResultStore({str(self.path)!r})"

    # -- connection ---------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        # A connection must not cross fork(): a child process opens its own.
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; each write says BEGIN IMMEDIATE itself.
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise ResultStoreError(
                f"cannot open the results database {self.path}: {exc}; check results.sqlite_path and that "
                "its directory is writable"
            ) from exc
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning(
                    "Results database %s runs in journal mode %s, not WAL (a network filesystem?): "
                    "concurrent readers will wait for writers.",
                    self.path,
                    mode,
                )
            conn.execute("PRAGMA synchronous = NORMAL")  # durable in WAL mode except on power loss
            self._create_schema(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise ResultStoreError(f"cannot prepare the results database {self.path}: {exc}") from exc
        self._conn, self._pid = conn, os.getpid()
        log.debug("Opened results database %s.", self.path)
        return conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ResultStoreError(
                f"results database {self.path} has schema version {version}, newer than this code "
                f"({SCHEMA_VERSION}); upgrade flywheel-airflow or point results.sqlite_path elsewhere"
            )
        if version == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            # executescript() would COMMIT first; run the statements one by one inside the transaction.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            try:
                # IMMEDIATE takes the write lock at once, so the read-merge-write below is atomic
                # across processes; a plain BEGIN gives readers one consistent snapshot.
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.OperationalError as exc:
                raise ResultStoreError(
                    f"results database {self.path} is busy (waited {BUSY_TIMEOUT_SECONDS:.0f} s): {exc}"
                ) from exc
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def ensure_indexes(self) -> None:
        """Create the tables and indexes (also done on first use)."""
        with self._lock:
            self._connection()

    def close(self) -> None:
        """Close this process's connection (reopened on next use)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn, self._pid = None, None

    # -- primitives ---------------------------------------------------------------------------------

    def _find_one(self, collection: str, key: Mapping[str, str]) -> dict[str, Any] | None:
        with self._transaction(write=False) as conn:
            return self._select(conn, collection, key)

    @staticmethod
    def _select(conn: sqlite3.Connection, collection: str, key: Mapping[str, str]) -> dict[str, Any] | None:
        names = _KEYS[collection]
        where = " AND ".join(f"{name} = ?" for name in names)
        row = conn.execute(f"SELECT doc FROM {collection} WHERE {where}", [key[name] for name in names]).fetchone()
        return json.loads(row[0]) if row else None

    def _upsert(
        self,
        collection: str,
        key: Mapping[str, str],
        explicit: frozenset[str],
        build: Builder,
        must_exist: bool,
    ) -> dict[str, Any]:
        with self._transaction(write=True) as conn:
            current = self._select(conn, collection, key)
            built = build(current)
            # Fields a newer version stored and this one does not know are carried over untouched.
            document = {**(current or {}), **json.loads(document_json(built))}
            columns = _KEYS[collection] + _COLUMNS[collection]
            values = [document.get(name) for name in columns] + [document_json(document)]
            placeholders = ", ".join("?" for _ in values)
            updates = ", ".join(f"{name} = excluded.{name}" for name in (*_COLUMNS[collection], "doc"))
            conn.execute(
                f"INSERT INTO {collection} ({', '.join(columns)}, doc) VALUES ({placeholders}) "
                f"ON CONFLICT ({', '.join(_KEYS[collection])}) DO UPDATE SET {updates}",
                values,
            )
            return document

    def _find_children(self, collection: str, run: str) -> list[dict[str, Any]]:
        with self._transaction(write=False) as conn:
            rows = conn.execute(f"SELECT doc FROM {collection} WHERE flywheel_run_id = ?", (run,)).fetchall()
        return [json.loads(row[0]) for row in rows]

    def _find_runs(self, workload_id: str, statuses: list[str] | None, limit: int | None) -> list[dict[str, Any]]:
        sql = f"SELECT doc FROM {RUNS} WHERE workload_id = ?"
        params: list[Any] = [workload_id]
        if statuses is not None:
            sql += f" AND status IN ({', '.join('?' for _ in statuses)})"
            params.extend(statuses)
        sql += " ORDER BY started_at DESC, run_id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._transaction(write=False) as conn:
            rows = conn.execute(sql, params).fetchall()
        return [json.loads(row[0]) for row in rows]

    def _workload_summaries(self) -> list[dict[str, Any]]:
        with self._transaction(write=False) as conn:
            rows = conn.execute(
                f"SELECT workload_id, client_id, dag_id, flywheel_run_id, status, started_at FROM {RUNS} "
                "ORDER BY workload_id, started_at DESC, run_id DESC"
            ).fetchall()
        names = ("workload_id", "client_id", "dag_id", "flywheel_run_id", "status", "started_at")
        return summarize_workloads(dict(zip(names, row, strict=True)) for row in rows)

