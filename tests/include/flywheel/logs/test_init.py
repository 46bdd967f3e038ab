"""open_log_source: the configured source, and no Airflow on the file path."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from include.flywheel.config import PROJECT_ROOT, LogSettings
from include.flywheel.logs import FileLogSource, open_log_source


def test_files_source_resolves_the_path_against_the_project_root() -> None:
    source = open_log_source(LogSettings(source="files", path="include/sample_data/logs"))

    assert isinstance(source, FileLogSource)
    assert source.path == PROJECT_ROOT / "include" / "sample_data" / "logs"


def test_files_source_keeps_absolute_paths(tmp_path: Path) -> None:
    source = open_log_source(LogSettings(path=str(tmp_path)))
    assert isinstance(source, FileLogSource) and source.path == tmp_path


def test_default_settings_read_the_bundled_sample() -> None:
    source = open_log_source(LogSettings())
    start = datetime(2026, 11, 20, tzinfo=timezone.utc)

    records = list(source.iter_records("faq-chat", "acme-retail", start, start + timedelta(days=1)))

    assert len(records) >= 60 and all(r["workload_id"] == "faq-chat" for r in records)
    assert source.stats.other_workload > 0 and source.stats.out_of_window > 0


def test_the_file_path_imports_neither_airflow_nor_elasticsearch(tmp_path: Path) -> None:
    (tmp_path / "logs.jsonl").write_text('{"workload_id": "w", "client_id": "c", "timestamp": 1790000000}\n')
    script = (
        "import sys\n"
        "from datetime import datetime, timezone\n"
        "from include.flywheel.config import LogSettings\n"
        "from include.flywheel.logs import open_log_source\n"
        f"source = open_log_source(LogSettings(path={str(tmp_path)!r}))\n"
        "start = datetime(2027, 1, 1, tzinfo=timezone.utc)\n"
        "assert len(list(source.iter_records('w', 'c', start.replace(year=2026), start))) == 1\n"
        "heavy = ('airflow', 'elasticsearch', 'elastic_transport')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print(loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_unknown_source_is_rejected_by_the_settings() -> None:
    with pytest.raises(ValueError, match="source"):
        LogSettings(source="kafka")
