"""Fixtures for the results store tests: the MongoDB Connection, with mongomock or a real server.

``MongoHook`` builds its client with ``pymongo.MongoClient`` (imported by name into the hook's
module), from the Airflow Connection ``mongo_default``. The tests give it that Connection through
the ``AIRFLOW_CONN_MONGO_DEFAULT`` environment variable (JSON form, conn type ``mongo``) and,
unless ``FLYWHEEL_TEST_MONGO_URI`` names a real server, put ``mongomock`` in for ``MongoClient``:
the real hook, URI building and store code run; only the server is in memory.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

MONGO_URI_ENV = "FLYWHEEL_TEST_MONGO_URI"
CONN_ENV = "AIRFLOW_CONN_MONGO_DEFAULT"


def connection_json_from_uri(uri: str) -> str:
    """An Airflow Connection (JSON form, conn type ``mongo``) for a ``mongodb://`` or ``mongodb+srv://`` URI."""
    parts = urlsplit(uri)
    if parts.scheme not in ("mongodb", "mongodb+srv"):
        raise ValueError(f"{MONGO_URI_ENV} must be a mongodb:// or mongodb+srv:// URI, got {uri!r}")
    extra: dict[str, object] = dict(parse_qsl(parts.query))
    if parts.scheme == "mongodb+srv":
        extra["srv"] = True
    connection: dict[str, object] = {"conn_type": "mongo", "host": parts.hostname or "localhost", "extra": extra}
    if parts.port:
        connection["port"] = parts.port
    if parts.username:
        connection["login"] = unquote(parts.username)
    if parts.password:
        connection["password"] = unquote(parts.password)
    return json.dumps(connection)


@pytest.fixture
def connection_from_uri():
    """:func:`connection_json_from_uri`, for tests of the integration plumbing itself."""
    return connection_json_from_uri


@pytest.fixture
def mongomock_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Patch mongomock in for ``pymongo.MongoClient``; every client made in this test shares one server."""
    mongomock = pytest.importorskip("mongomock")
    import pymongo
    from airflow.providers.mongo.hooks import mongo as mongo_hook_module

    server = mongomock.MongoClient()

    def client(*args: object, **kwargs: object) -> object:
        # The hook passes the URI it built from the Connection: keep it to check it.
        client.calls.append((args, kwargs))
        return server

    client.calls = []  # type: ignore[attr-defined]
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "mongo", "host": "mongo.test", "port": 27017}))
    monkeypatch.setattr(pymongo, "MongoClient", client)
    monkeypatch.setattr(mongo_hook_module, "MongoClient", client)
    server.calls = client.calls  # type: ignore[attr-defined]
    yield server


@pytest.fixture
def real_mongo(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The Connection for the server ``FLYWHEEL_TEST_MONGO_URI`` names, and a throwaway database name."""
    uri = os.environ.get(MONGO_URI_ENV)
    if not uri:
        pytest.skip(f"set {MONGO_URI_ENV}=mongodb://host:27017 to run against a real MongoDB")
    monkeypatch.setenv(CONN_ENV, connection_json_from_uri(uri))
    database = f"flywheel_test_{uuid.uuid4().hex[:12]}"
    yield database
    from airflow.providers.mongo.hooks.mongo import MongoHook

    with MongoHook(mongo_conn_id="mongo_default") as hook:
        hook.get_conn().drop_database(database)
