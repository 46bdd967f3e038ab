"""Data flywheel Airflow DAGs: one per workload configured in ``include/config/flywheel.yaml``.

Each ``flywheel__<workload_id>`` DAG turns the workload's production LLM logs of one data
interval into evaluation, ICL and training datasets (and, downstream, candidate models
evaluated and customized on NeMo). This file only reads the validated settings and builds
the DAGs: no network, Connection or Variable access at parse time.
"""

from __future__ import annotations

from include.flywheel.config import load_config
from include.orchestration.factory import build_flywheel_dag

for _workload in load_config().workloads:
    globals()[_workload.dag_id] = build_flywheel_dag(_workload)
