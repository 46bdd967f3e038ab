"""Session-wide test setup.

Airflow reads its configuration when first imported, so the environment is set here,
at import time of the root conftest, before any test module imports airflow: a private
AIRFLOW_HOME (SQLite metadata DB), this project's dags folder, no examples, unit-test mode.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

_airflow_home = Path(tempfile.mkdtemp(prefix="flywheel-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_airflow_home)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT_ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(PROJECT_ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
# Staged files of test runs never land in the project tree.
os.environ.setdefault("FLYWHEEL_STAGING_BASE_URI", (_airflow_home / "staging").as_uri())
