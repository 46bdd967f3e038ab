"""Elasticsearch log source: the production log store.

The records of one workload, client and window are read with a filtered query, page by
page, through a point in time (PIT) and ``search_after``: every page is a bounded
response, the PIT gives a consistent snapshot while new logs keep arriving, and a
``_shard_doc`` tiebreaker makes the sort total so no record is skipped or repeated
between pages. The PIT is closed when iteration ends, fails, or is abandoned.

Three cheap ``_count`` queries report the records the filter leaves out in the same
window: this client's records without a workload id or with another one, and this
workload's records from other clients.

This module is the one place under ``include/flywheel`` that imports Airflow (the
Elasticsearch provider resolves the Connection), and only inside the methods that
connect: ``open_log_source`` imports the module only when Elasticsearch is configured.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from elastic_transport import TransportError
from elasticsearch import ApiError, NotFoundError

from include.flywheel.logs.base import ExtractionStats, LogSourceError, check_window

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

log = logging.getLogger(__name__)

#: The ``format`` of the timestamp range: ISO 8601 strings or epoch seconds (the two forms the logs use).
TIMESTAMP_FORMAT = "strict_date_optional_time||epoch_second"

#: A mapping for the log index that this source's queries expect: ids as ``keyword`` (exact
#: ``term`` matches) and a ``date`` timestamp that accepts ISO strings and epoch seconds.
#: The request and response bodies are stored, not indexed.
INDEX_MAPPINGS: dict[str, Any] = {
    "properties": {
        "workload_id": {"type": "keyword"},
        "client_id": {"type": "keyword"},
        "timestamp": {"type": "date", "format": TIMESTAMP_FORMAT},
        "request": {"type": "object", "enabled": False},
        "response": {"type": "object", "enabled": False},
    }
}

# Transient failures are retried by the client itself (elastic_transport): connection
# errors, timeouts and these statuses, with jittered exponential backoff. Values set in the
# Connection's extras win over these defaults.
_RETRY_DEFAULTS: dict[str, Any] = {
    "max_retries": 3,
    "retry_on_timeout": True,
    "retry_on_status": (429, 502, 503, 504),
    "retry_backoff_base": 0.5,
    "retry_backoff_cap": 10.0,
}


class ElasticsearchLogSource:
    """Stream log records from an Elasticsearch index, through an Airflow Connection.

    Args:
        conn_id: Airflow Connection of type ``elasticsearch`` (host, port, schema http/https,
            login/password; extras are passed to the ``elasticsearch.Elasticsearch`` client).
        index: Index (or alias, or pattern) holding the log records.
        page_size: Hits per page (Elasticsearch caps a page at 10,000).
        keep_alive: How long the PIT survives between two pages.
        workload_field: Field matched exactly against the workload id (must be a ``keyword``;
            with dynamic mappings use ``workload_id.keyword``).
        client_field: Same for the client id.
        timestamp_field: The ``date`` field the window applies to.
    """

    def __init__(
        self,
        conn_id: str = "elasticsearch_default",
        index: str = "flywheel",
        page_size: int = 1000,
        *,
        keep_alive: str = "5m",
        workload_field: str = "workload_id",
        client_field: str = "client_id",
        timestamp_field: str = "timestamp",
    ) -> None:
        if not 1 <= page_size <= 10_000:
            raise ValueError(f"page_size must be between 1 and 10000 (Elasticsearch's page limit), got {page_size}")
        if not index:
            raise ValueError("index must be a non-empty index name, alias or pattern")
        self.conn_id = conn_id
        self.index = index
        self.page_size = page_size
        self.keep_alive = keep_alive
        self.workload_field = workload_field
        self.client_field = client_field
        self.timestamp_field = timestamp_field
        self.stats = ExtractionStats()

    def __repr__(self) -> str:
        return f"ElasticsearchLogSource(conn_id={self.conn_id!r}, index={self.index!r})"

    # ------------------------------------------------------------------ public

    def iter_records(self, workload_id: str, client_id: str, start: datetime, end: datetime) -> Iterator[dict]:
        """Yield the ``_source`` of every matching record, in timestamp order.

        Arguments are checked at once; the connection and the queries happen lazily,
        when the returned iterator is consumed.

        Stats: ``read`` counts the hits fetched, ``matched`` those yielded, ``malformed``
        hits without an object ``_source``; ``missing_workload_id`` and ``other_workload``
        count this client's records in the window without a workload id / with another one,
        ``other_client`` this workload's records in the window from other clients (or none).

        Raises:
            ValueError: invalid ids or window.
            LogSourceError: (while iterating) the connection is missing or unusable, the
                index does not exist, the server fails after retries, or the PIT expired.
        """
        start, end = check_window(workload_id, client_id, start, end)
        self.stats = ExtractionStats()
        return self._iterate(workload_id, client_id, start, end, self.stats)

    def window_filter(self, start: datetime, end: datetime) -> dict[str, Any]:
        """The ``range`` clause of the window ``[start, end)``."""
        return {
            "range": {
                self.timestamp_field: {"gte": _iso(start), "lt": _iso(end), "format": TIMESTAMP_FORMAT}
            }
        }

    def query(self, workload_id: str, client_id: str, start: datetime, end: datetime) -> dict[str, Any]:
        """The query selecting the records of a workload and client in the window."""
        return {
            "bool": {
                "filter": [
                    {"term": {self.workload_field: workload_id}},
                    {"term": {self.client_field: client_id}},
                    self.window_filter(start, end),
                ]
            }
        }

    # ----------------------------------------------------------------- private

    def _iterate(
        self, workload_id: str, client_id: str, start: datetime, end: datetime, stats: ExtractionStats
    ) -> Iterator[dict]:
        client = self._client()
        try:
            self._count_neighbours(client, workload_id, client_id, start, end, stats)
            yield from self._pages(client, self.query(workload_id, client_id, start, end), stats)
        finally:
            log.info("Log extraction from index %s (connection %s): %s", self.index, self.conn_id, stats.summary())
            client.close()

    def _pages(self, client: Elasticsearch, query: dict[str, Any], stats: ExtractionStats) -> Iterator[dict]:
        pit_id = self._call(client.open_point_in_time, "opening a point in time", index=self.index,
                            keep_alive=self.keep_alive)["id"]
        # Sort by time, then by _shard_doc: the PIT-wide unique tiebreaker that makes
        # search_after resume exactly where the previous page ended.
        sort = [{self.timestamp_field: {"order": "asc"}}, {"_shard_doc": "asc"}]
        search_after: list[Any] | None = None
        page = 0
        try:
            while True:
                page += 1
                extra = {"search_after": search_after} if search_after is not None else {}
                response = self._call(
                    client.search,
                    f"reading page {page}",
                    pit={"id": pit_id, "keep_alive": self.keep_alive},
                    query=query,
                    sort=sort,
                    size=self.page_size,
                    track_total_hits=False,
                    allow_partial_search_results=False,
                    **extra,
                )
                # Elasticsearch may hand back a new PIT id with each page; the latest one is
                # the one to use next (and to close).
                pit_id = response.get("pit_id") or pit_id
                shards = response.get("_shards") or {}
                if shards.get("failed"):
                    raise LogSourceError(
                        f"Elasticsearch index {self.index!r} (connection {self.conn_id!r}): page {page} failed on "
                        f"{shards['failed']} of {shards.get('total', '?')} shards; no partial extraction is "
                        "returned. Check the cluster health and rerun the task."
                    )
                hits = response["hits"]["hits"]
                for hit in hits:
                    stats.read += 1
                    source = hit.get("_source")
                    if type(source) is not dict:
                        stats.malformed += 1
                        log.warning("Hit %s of index %s has no object _source; counted as malformed.",
                                    hit.get("_id"), self.index)
                        continue
                    stats.matched += 1
                    yield source
                log.debug("Page %d of index %s: %d hits.", page, self.index, len(hits))
                if len(hits) < self.page_size:
                    return
                search_after = hits[-1]["sort"]
        finally:
            try:
                client.close_point_in_time(id=pit_id)
            except (ApiError, TransportError) as exc:
                # Never mask the error that got us here; an unclosed PIT expires after keep_alive anyway.
                log.warning("Could not close point in time on index %s (it expires after %s): %s",
                            self.index, self.keep_alive, exc)

    def _count_neighbours(
        self,
        client: Elasticsearch,
        workload_id: str,
        client_id: str,
        start: datetime,
        end: datetime,
        stats: ExtractionStats,
    ) -> None:
        window = self.window_filter(start, end)
        same_client = {"term": {self.client_field: client_id}}
        has_workload = {"exists": {"field": self.workload_field}}
        queries = {
            "missing_workload_id": {"bool": {"filter": [same_client, window], "must_not": [has_workload]}},
            "other_workload": {
                "bool": {
                    "filter": [same_client, window, has_workload],
                    "must_not": [{"term": {self.workload_field: workload_id}}],
                }
            },
            "other_client": {
                "bool": {
                    "filter": [{"term": {self.workload_field: workload_id}}, window],
                    "must_not": [same_client],
                }
            },
        }
        for counter, query in queries.items():
            response = self._call(client.count, f"counting records ({counter})", index=self.index, query=query)
            setattr(stats, counter, int(response["count"]))

    def _call(self, method: Any, action: str, **kwargs: Any) -> Any:
        """Call the client and turn its errors into ones that name the index, connection and remedy."""
        where = f"Elasticsearch index {self.index!r} (connection {self.conn_id!r})"
        try:
            return method(**kwargs)
        except NotFoundError as exc:
            text = f"{exc.message} {exc.body}"
            if "index_not_found" in text:
                raise LogSourceError(
                    f"{where}: the index does not exist. Create it (see INDEX_MAPPINGS in "
                    "include/flywheel/logs/elasticsearch.py) or set logs.index to the index holding the logs."
                ) from exc
            if "search_context_missing" in text:
                raise LogSourceError(
                    f"{where}: the point in time expired while {action} (keep_alive {self.keep_alive}); "
                    "rerun the task, or use a longer keep_alive if pages are consumed slowly."
                ) from exc
            raise LogSourceError(f"{where}: not found while {action}: {exc.message} {exc.body}") from exc
        except ApiError as exc:
            raise LogSourceError(
                f"{where}: HTTP {exc.meta.status} while {action}: {exc.message} {exc.body}"
            ) from exc
        except TransportError as exc:
            raise LogSourceError(
                f"{where}: cannot reach the server while {action} (retried {_RETRY_DEFAULTS['max_retries']} "
                f"times unless the connection sets max_retries): {exc}. Check the connection's host and port."
            ) from exc

    def _client(self) -> Elasticsearch:
        """An ``elasticsearch.Elasticsearch`` client built from the Airflow Connection ``conn_id``."""
        # ElasticsearchSQLHook is the provider's hook that takes a conn_id and builds a real
        # elasticsearch.Elasticsearch client from the Connection (host, port, schema, login,
        # password, extras as client kwargs, and the provider's es_compat_with setting) as
        # `get_conn().es`. ElasticsearchPythonHook would need the host list up front, i.e. we
        # would have to read and translate the Connection ourselves. We use only the client,
        # not the SQL cursor.
        from airflow.exceptions import AirflowNotFoundException
        from airflow.providers.elasticsearch.hooks.elasticsearch import ElasticsearchSQLHook

        hook = ElasticsearchSQLHook(elasticsearch_conn_id=self.conn_id)
        try:
            connection = hook.connection
        except AirflowNotFoundException as exc:
            raise LogSourceError(
                f"Airflow Connection {self.conn_id!r} (logs.es_conn_id) is not defined: add it (UI, "
                f"airflow_settings.yaml, or the env var AIRFLOW_CONN_{self.conn_id.upper()}) with the "
                "Elasticsearch host and port."
            ) from exc
        if not connection.host or "://" in connection.host or connection.port is None:
            raise LogSourceError(
                f"Airflow Connection {self.conn_id!r}: set host (a name, no scheme; got {connection.host!r}), "
                f"port (got {connection.port!r}) and schema (http or https) for Elasticsearch."
            )
        try:
            client = hook.get_conn().es
        except TypeError as exc:
            raise LogSourceError(
                f"Airflow Connection {self.conn_id!r}: its extras are not valid elasticsearch client "
                f"options ({exc}); fix or remove them."
            ) from exc
        extras = connection.extra_dejson
        retry = {key: value for key, value in _RETRY_DEFAULTS.items() if key not in extras}
        return client.options(**retry) if retry else client


def _iso(moment: datetime) -> str:
    # UTC with a Z, e.g. 2026-11-18T00:00:00Z; microseconds only when present.
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
