"""Fixtures for the log source tests: an Airflow home, and a fake Elasticsearch over real HTTP.

The fake speaks just enough of the Elasticsearch REST API for the log source (``_pit``,
``_search`` with ``search_after``, ``_count``, ``DELETE _pit``) on 127.0.0.1, and it really
evaluates the queries it gets (term / range / exists, bool filter and must_not), so a wrong
query returns wrong records instead of passing by accident. The real ``elasticsearch``
client talks to it, so the client's own checks (product header, content type) apply.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

# Airflow reads AIRFLOW_HOME when it is first imported; give it a throwaway one unless the
# run already set one (e.g. a session-wide conftest), so tests never touch ~/airflow.
if "AIRFLOW_HOME" not in os.environ:
    _home = tempfile.mkdtemp(prefix="flywheel-logs-airflow-")
    os.environ["AIRFLOW_HOME"] = _home
    atexit.register(shutil.rmtree, _home, ignore_errors=True)

ES_HEADERS = {
    # The elasticsearch 9.x client refuses a 2xx answer without this header...
    "X-Elastic-Product": "Elasticsearch",
    # ...and negotiates this media type (a plain application/json would also be read).
    "Content-Type": "application/vnd.elasticsearch+json;compatible-with=9",
}


def _epoch_ms(value: Any) -> int:
    """Timestamps of the fake's documents and of range bounds: epoch seconds or ISO strings."""
    if isinstance(value, (int, float)):
        return int(value * 1000)
    return int(datetime.fromisoformat(value).timestamp() * 1000)


class FakeElasticsearch:
    """An in-memory index behind a real HTTP server, recording every request it gets.

    Args:
        docs: The ``_source`` documents of the index (``timestamp`` in epoch seconds or ISO).
        index: The index name; other names answer ``index_not_found_exception``.
    """

    def __init__(self, docs: list[dict], index: str = "flywheel") -> None:
        self.index = index
        self.docs = list(enumerate(docs))  # position = the _shard_doc tiebreaker
        self.requests: list[dict[str, Any]] = []
        self.open_pits: set[str] = set()
        self.closed_pits: list[str] = []
        # Fault injection, by page number (1-based): statuses to answer to the attempts at that
        # page (each used once, so a retry can then succeed), and a page reporting a failed shard.
        self.search_failures: dict[int, list[int]] = {}
        self.shard_failure_on_page: int | None = None
        self._pages_served = 0
        self._pit_counter = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> FakeElasticsearch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def bodies(self, method: str, path: str) -> list[dict]:
        """The JSON bodies of the recorded requests to ``method path``, in order."""
        return [r["body"] for r in self.requests if r["method"] == method and r["path"] == path]

    # ------------------------------------------------------------ query evaluation

    def _matches(self, query: dict, doc: dict) -> bool:
        (kind, spec), = query.items()
        if kind == "bool":
            unknown = set(spec) - {"filter", "must_not"}
            assert not unknown, f"fake ES does not support bool clauses {unknown}"
            return all(self._matches(q, doc) for q in spec.get("filter", [])) and not any(
                self._matches(q, doc) for q in spec.get("must_not", [])
            )
        if kind == "term":
            (field, value), = spec.items()
            return field in doc and doc[field] == value
        if kind == "exists":
            return doc.get(spec["field"]) is not None
        if kind == "range":
            (field, bounds), = spec.items()
            assert bounds.get("format") == "strict_date_optional_time||epoch_second", bounds
            if field not in doc:
                return False
            moment = _epoch_ms(doc[field])
            return _epoch_ms(bounds["gte"]) <= moment < _epoch_ms(bounds["lt"])
        raise AssertionError(f"fake ES does not support query {kind!r}")

    # ------------------------------------------------------------ endpoints

    def _handle(self, method: str, path: str, params: dict[str, str], body: dict | None) -> tuple[int, dict]:
        with self._lock:
            self.requests.append({"method": method, "path": path, "params": params, "body": body})
            if method == "POST" and path.endswith("/_pit"):
                index = path.split("/")[1]
                if index != self.index:
                    return 404, _index_missing(index)
                self._pit_counter += 1
                pit = f"pit-{self._pit_counter}"
                self.open_pits.add(pit)
                return 200, {"id": pit}
            if method == "POST" and path.endswith("/_count"):
                index = path.split("/")[1]
                if index != self.index:
                    return 404, _index_missing(index)
                count = sum(1 for _, doc in self.docs if self._matches(body["query"], doc))
                return 200, {"count": count, "_shards": {"total": 1, "successful": 1, "failed": 0}}
            if method == "POST" and path == "/_search":
                return self._search(body)
            if method == "DELETE" and path == "/_pit":
                pit = body["id"]
                base = pit.split("~")[0]
                freed = base in self.open_pits
                self.open_pits.discard(base)
                self.closed_pits.append(pit)
                return 200, {"succeeded": True, "num_freed": int(freed)}
            return 400, {"error": {"type": "fake_unsupported", "reason": f"{method} {path}"}, "status": 400}

    def _search(self, body: dict) -> tuple[int, dict]:
        page = self._pages_served + 1
        failures = self.search_failures.get(page, [])
        if failures:
            status = failures.pop(0)
            return status, {"error": {"type": "fake_failure", "reason": "injected"}, "status": status}
        pit = body["pit"]["id"]
        base = pit.split("~")[0]
        if base not in self.open_pits:
            return 404, {
                "error": {"type": "search_phase_execution_exception",
                          "root_cause": [{"type": "search_context_missing_exception"}]},
                "status": 404,
            }
        hits = sorted(
            ((_epoch_ms(doc["timestamp"]), position, doc) for position, doc in self.docs
             if self._matches(body["query"], doc)),
            key=lambda item: item[:2],
        )
        after = body.get("search_after")
        if after is not None:
            hits = [hit for hit in hits if [hit[0], hit[1]] > list(after)]
        hits = hits[: body["size"]]
        self._pages_served += 1
        shards = {"total": 2, "successful": 2, "skipped": 0, "failed": 0}
        if self.shard_failure_on_page == page:
            shards = {"total": 2, "successful": 1, "skipped": 0, "failed": 1}
        return 200, {
            # A new PIT id for each page, as Elasticsearch may do: the client must use the latest.
            "pit_id": f"{base}~{page}",
            "took": 1,
            "timed_out": False,
            "_shards": shards,
            "hits": {
                "max_score": None,
                "hits": [
                    {"_index": self.index, "_id": str(position), "_score": None, "_source": doc,
                     "sort": [stamp, position]}
                    for stamp, position, doc in hits
                ],
            },
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                status, payload = fake._handle(self.command, url.path, dict(parse_qsl(url.query)), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in ES_HEADERS.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = _serve  # noqa: N815 (http.server's naming)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        return Handler


def _index_missing(index: str) -> dict:
    return {
        "error": {
            "root_cause": [{"type": "index_not_found_exception", "reason": f"no such index [{index}]"}],
            "type": "index_not_found_exception",
            "reason": f"no such index [{index}]",
            "index": index,
        },
        "status": 404,
    }


@pytest.fixture
def fake_es_factory() -> Iterator[Any]:
    """Start fake Elasticsearch servers on free loopback ports; all are stopped after the test."""
    started: list[FakeElasticsearch] = []

    def start(docs: list[dict], index: str = "flywheel") -> FakeElasticsearch:
        fake = FakeElasticsearch(docs, index=index).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


@pytest.fixture
def es_connection(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Define the Airflow Connection ``elasticsearch_default`` through its environment variable."""

    def define(port: int, conn_id: str = "elasticsearch_default", **extra: Any) -> None:
        # Fast retries in tests; the production defaults back off for seconds.
        extra = {"retry_backoff_base": 0.01, "retry_backoff_cap": 0.02, **extra}
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}",
            json.dumps({"conn_type": "elasticsearch", "host": "127.0.0.1", "port": port, "schema": "http",
                        "extra": extra}),
        )

    return define
