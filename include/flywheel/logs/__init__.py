"""Log sources: where a DAG run reads the production logs of its window.

``open_log_source(settings.logs)`` returns the configured :class:`LogSource`. The
Elasticsearch source (and with it the Airflow provider and the ``elasticsearch`` client)
is imported only when it is configured, so the embedded file path stays light and
Airflow-free.
"""

from __future__ import annotations

from include.flywheel.config import LogSettings, LogSourceKind
from include.flywheel.logs.base import (
    ExtractionStats,
    LogSource,
    LogSourceError,
    check_window,
    epoch_seconds,
    parse_timestamp,
)
from include.flywheel.logs.files import FileLogSource

__all__ = [
    "ExtractionStats",
    "FileLogSource",
    "LogSource",
    "LogSourceError",
    "check_window",
    "epoch_seconds",
    "open_log_source",
    "parse_timestamp",
]


def open_log_source(settings: LogSettings) -> LogSource:
    """Build the log source the settings name (``logs.source``).

    Args:
        settings: The ``logs`` section of the run's effective settings.

    Returns:
        A :class:`FileLogSource` on ``logs.path`` (resolved against the project root), or an
        ``ElasticsearchLogSource`` on ``logs.index`` through the Airflow Connection ``logs.es_conn_id``.
    """
    if settings.source == LogSourceKind.FILES:
        return FileLogSource(settings.resolved_path())
    if settings.source == LogSourceKind.ELASTICSEARCH:
        from include.flywheel.logs.elasticsearch import ElasticsearchLogSource

        return ElasticsearchLogSource(conn_id=settings.es_conn_id, index=settings.index, page_size=settings.page_size)
    raise ValueError(
        f"unknown logs.source {settings.source!r}; expected one of {[kind.value for kind in LogSourceKind]}"
    )
