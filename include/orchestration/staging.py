"""Where a run's files are staged: ``<base>/<dag_id>/<run key>/...`` as an ObjectStoragePath.

Keyed by dag and run so a retried task overwrites its own files (idempotent) and two runs
never share a file. ``file://`` by default; any fsspec scheme (``s3://``...) in production.
"""

from __future__ import annotations

from airflow.sdk import ObjectStoragePath

from include.flywheel.config import WorkloadSettings
from include.flywheel.runs import run_key


def run_staging_dir(settings: WorkloadSettings, dag_id: str, run_id: str) -> ObjectStoragePath:
    """The run's staging directory (created on first use)."""
    base = settings.staging.resolved_base_uri().rstrip("/")
    directory = ObjectStoragePath(f"{base}/{dag_id}/{run_key(run_id)}")
    directory.mkdir(parents=True, exist_ok=True)
    return directory
