"""Build one flywheel DAG per configured workload.

Parse-time work is limited to turning validated settings into a DAG object: no network,
no Connection, no Variable, no heavy import. Task bodies import what they need when they run.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, CronDataIntervalTimetable, Param, task

from include.flywheel.config import ExampleSelection, WorkloadSettings
from include.flywheel.runs import (
    CANDIDATES_PARAM,
    OVERRIDES_PARAM,
    WINDOW_END_PARAM,
    WINDOW_START_PARAM,
    param_defaults,
)

DAG_DOC = """
### Data flywheel for workload `{workload_id}` (client `{client_id}`)

{description}

Each run reads the logs of its **data interval** (scheduled runs: the previous interval;
backfills: each their own window), validates, deduplicates and splits them into eval / ICL /
train / val datasets, and hands small dataset handles to the next tasks.

A manual run may override the log window and the data-split and ICL knobs in the trigger form,
or any settings section through **Advanced overrides** (JSON merged over this workload's values).
Settings file: `include/config/flywheel.yaml`. Nothing is promoted automatically.
"""


def build_params(workload: WorkloadSettings) -> dict[str, Param]:
    """Typed trigger-form parameters whose defaults are the workload's effective settings."""
    defaults = param_defaults(workload)
    candidate_names = [candidate.model_name for candidate in workload.candidates]
    return {
        WINDOW_START_PARAM: Param(
            None,
            type=["null", "string"],
            title="Log window start (UTC)",
            description="ISO date or date-time. Empty: the run's data interval start.",
            section="Log window",
        ),
        WINDOW_END_PARAM: Param(
            None,
            type=["null", "string"],
            title="Log window end (UTC, exclusive)",
            description="ISO date or date-time. Empty: the run's data interval end.",
            section="Log window",
        ),
        "eval_size": Param(
            defaults["eval_size"], type="integer", minimum=1, title="Eval set size",
            description="Records held out for evaluation.", section="Data split",
        ),
        "val_ratio": Param(
            defaults["val_ratio"], type="number", minimum=0, exclusiveMaximum=1, title="Validation ratio",
            description="Share of the remaining records used for validation.", section="Data split",
        ),
        "min_total_records": Param(
            defaults["min_total_records"], type="integer", minimum=1, title="Minimum records",
            description="The run fails clearly when fewer usable records remain.", section="Data split",
        ),
        "limit": Param(
            defaults["limit"], type=["null", "integer"], minimum=1, title="Record limit",
            description="Sample at most this many records (label mix kept). Empty: no limit.", section="Data split",
        ),
        "random_seed": Param(
            defaults["random_seed"], type="integer", title="Random seed",
            description="Same seed, same split.", section="Data split",
        ),
        "stratify": Param(
            defaults["stratify"], type="boolean", title="Stratify by tool",
            description="Keep each tool's share in eval, train and val.", section="Data split",
        ),
        "icl_example_selection": Param(
            defaults["icl_example_selection"], type="string", enum=[choice.value for choice in ExampleSelection],
            title="ICL example selection", description="How few-shot examples are chosen.", section="In-context learning",
        ),
        "icl_max_examples": Param(
            defaults["icl_max_examples"], type="integer", minimum=0, title="Max ICL examples",
            description="Few-shot examples per eval record, at most.", section="In-context learning",
        ),
        "icl_min_examples": Param(
            defaults["icl_min_examples"], type="integer", minimum=0, title="Min ICL examples",
            description="Records that fit fewer examples are reported.", section="In-context learning",
        ),
        "icl_max_context_length": Param(
            defaults["icl_max_context_length"], type="integer", minimum=256, title="ICL context length (tokens)",
            description="Token budget of a prompt with its examples.", section="In-context learning",
        ),
        "icl_reserved_tokens": Param(
            defaults["icl_reserved_tokens"], type="integer", minimum=0, title="Reserved tokens",
            description="Kept free for the model's answer.", section="In-context learning",
        ),
        CANDIDATES_PARAM: Param(
            defaults[CANDIDATES_PARAM],
            type="array",
            items={"type": "string", "enum": candidate_names} if candidate_names else {"type": "string"},
            title="Candidate models",
            description="Which configured NIMs this run evaluates.",
            section="Models",
        ),
        OVERRIDES_PARAM: Param(
            {},
            type="object",
            title="Advanced overrides",
            description='Any settings section as JSON, merged over the workload, e.g. {"training": {"epochs": 3}}.',
            section="Advanced",
        ),
    }


def build_flywheel_dag(workload: WorkloadSettings) -> DAG:
    """Build the flywheel DAG of one workload."""
    timetable = CronDataIntervalTimetable(workload.schedule, timezone="UTC") if workload.schedule else None
    start_date = datetime.fromisoformat(workload.start_date).replace(tzinfo=timezone.utc)
    workload_id = workload.workload_id

    with DAG(
        dag_id=workload.dag_id,
        description=f"Data flywheel for {workload_id} ({workload.client_id})",
        doc_md=DAG_DOC.format(
            workload_id=workload_id,
            client_id=workload.client_id,
            description=workload.description or "",
        ),
        schedule=timetable,
        start_date=start_date,
        catchup=workload.catchup,
        max_active_runs=1,
        params=build_params(workload),
        tags=["flywheel", f"workload:{workload_id}", *workload.tags],
        default_args={
            "owner": "flywheel",
            "retries": 2,
            "retry_delay": timedelta(seconds=30),
            "retry_exponential_backoff": True,
        },
        render_template_as_native_obj=True,
    ) as dag:

        @task(task_id="extract_logs")
        def extract_logs_task() -> dict:
            from include.orchestration.tasks import extract_logs

            return extract_logs(workload_id)

        @task(task_id="prepare_datasets")
        def prepare_datasets_task(extracted: dict) -> dict:
            from include.orchestration.tasks import prepare_datasets

            return prepare_datasets(workload_id, extracted)

        prepare_datasets_task(extract_logs_task())

    return dag
