"""Build one flywheel DAG per configured workload.

Parse-time work is limited to turning validated settings into a DAG object: no network,
no Connection, no Variable, no heavy import. Task bodies import what they need when they run.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, Param, TriggerRule, task

from include.flywheel.config import ExampleSelection, WorkloadSettings
from include.flywheel.runs import (
    CANDIDATES_PARAM,
    OVERRIDES_PARAM,
    WINDOW_END_PARAM,
    WINDOW_START_PARAM,
    param_defaults,
)

# Pool bounding GPU-bound NeMo work (deferred tasks count: the pool is created with include_deferred).
GPU_POOL = "nemo_gpu"

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


def results_asset(workload_id: str) -> Asset:
    """The Asset a workload's ``finalize`` task updates when a run has completed.

    Other DAGs can react to new flywheel results with ``schedule=[results_asset("<workload_id>")]``
    (or the URI ``flywheel://<workload_id>/results``); each event's ``extra`` carries the
    ``flywheel_run_id``, ``dag_id``, ``run_id``, ``workload_id``, ``status`` and ``surfaced``
    candidates of the run (see :func:`include.orchestration.aggregate.finalize`).
    """
    return Asset(uri=f"flywheel://{workload_id}/results", name=f"flywheel_results__{workload_id}", group="flywheel")


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
    from airflow.sdk import TaskGroup

    from include.nemo.operators import (
        NemoCustomizationOperator,
        NemoDeleteDeploymentOperator,
        NemoDeployNimOperator,
        NemoEvaluationOperator,
        NemoUploadDatasetOperator,
    )
    from include.nemo.payloads import deployment_name
    from include.nemo.sensors import NimModelServedSensor
    from include.orchestration.candidates import (
        candidate_failure_recorder,
        candidate_group_id,
        candidate_success_recorder,
    )

    timetable = CronDataIntervalTimetable(workload.schedule, timezone="UTC") if workload.schedule else None
    start_date = datetime.fromisoformat(workload.start_date).replace(tzinfo=timezone.utc)
    workload_id = workload.workload_id
    nmp = workload.nmp
    waits = workload.waits

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
            "retries": workload.waits.retries,
            "retry_delay": timedelta(seconds=workload.waits.retry_delay),
            "retry_exponential_backoff": True,
        },
    ) as dag:

        @task(task_id="extract_logs")
        def extract_logs_task() -> dict:
            from include.orchestration.tasks import extract_logs

            return extract_logs(workload_id)

        @task(task_id="prepare_datasets")
        def prepare_datasets_task(extracted: dict) -> dict:
            from include.orchestration.tasks import prepare_datasets

            return prepare_datasets(workload_id, extracted)

        @task(task_id="plan_uploads")
        def plan_uploads_task(prepared: dict) -> list[dict]:
            from include.orchestration.plan import dataset_uploads
            from include.orchestration.tasks import current_run_settings

            settings, context = current_run_settings(workload_id)
            return dataset_uploads(settings, context["dag"].dag_id, context["run_id"], prepared)

        prepared = prepare_datasets_task(extract_logs_task())
        uploaded = NemoUploadDatasetOperator.partial(
            task_id="upload_datasets",
            nemo_conn_id=nmp.nemo_conn_id,
            datastore_conn_id=nmp.datastore_conn_id,
            execution_timeout=timedelta(minutes=30),
        ).expand_kwargs(plan_uploads_task(prepared))

        judge = workload.judge
        judge_deployment = None
        if judge.type == "remote":
            wait_for_judge = NimModelServedSensor(
                task_id="wait_for_judge",
                model_id=judge.model_name,
                nim_conn_id=judge.conn_id,
                poll_interval=waits.poll_interval,
                timeout=waits.deployment_timeout,
            )
        else:
            wait_for_judge = NemoDeployNimOperator(
                task_id="wait_for_judge",
                deployment=_judge_deployment(workload),
                nemo_conn_id=nmp.nemo_conn_id,
                nim_conn_id=nmp.nim_conn_id,
                poll_interval=waits.poll_interval,
                timeout=waits.deployment_timeout,
                pool=GPU_POOL,
                pool_slots=judge.gpus,
            )
            judge_deployment = _judge_deployment(workload)

        candidate_ends = []
        for candidate in workload.candidates:
            group_id = candidate_group_id(candidate.slug)
            model_name = candidate.model_name
            failure_callback = {"on_failure_callback": candidate_failure_recorder(workload_id, model_name)}
            # Each NeMo step records what it produced as soon as it succeeds (not only at aggregate).
            callbacks = {**failure_callback, "on_success_callback": candidate_success_recorder(workload_id, model_name)}
            with TaskGroup(group_id=group_id, tooltip=f"Deploy, evaluate and customize {model_name}"):

                @task(task_id="plan", multiple_outputs=True)
                def plan_task(model_name: str = model_name) -> dict:
                    from include.orchestration.candidates import plan_candidate_task

                    return plan_candidate_task(workload_id, model_name)

                plan = plan_task()
                deploy = NemoDeployNimOperator(
                    task_id="deploy_nim",
                    deployment=plan["deployment"],
                    nemo_conn_id=nmp.nemo_conn_id,
                    nim_conn_id=nmp.nim_conn_id,
                    poll_interval=waits.poll_interval,
                    timeout=waits.deployment_timeout,
                    pool=GPU_POOL,
                    pool_slots=candidate.gpus,
                    **callbacks,
                )
                evaluations = []
                for step in ("base_eval", "icl_eval"):
                    evaluation = NemoEvaluationOperator(
                        task_id=step,
                        job=plan[f"{step}_job"],
                        label=plan[f"{step}_label"],
                        nemo_conn_id=nmp.nemo_conn_id,
                        judge_conn_id=judge.conn_id if judge.type == "remote" else None,
                        poll_interval=waits.poll_interval,
                        timeout=waits.evaluation_timeout,
                        pool=GPU_POOL,
                        **callbacks,
                    )
                    deploy >> evaluation
                    evaluations.append(evaluation)
                if candidate.customization_enabled and candidate.customizer is not None:
                    customize = NemoCustomizationOperator(
                        task_id="customize",
                        config=plan["customization_config"],
                        job=plan["customization_job"],
                        nemo_conn_id=nmp.nemo_conn_id,
                        poll_interval=waits.poll_interval,
                        timeout=waits.customization_timeout,
                        pool=GPU_POOL,
                        pool_slots=candidate.customizer.gpus,
                        **callbacks,
                    )
                    synced = NimModelServedSensor(
                        task_id="wait_model_synced",
                        model_id=plan["output_model"],
                        nim_conn_id=nmp.nim_conn_id,
                        poll_interval=waits.poll_interval,
                        timeout=waits.model_sync_timeout,
                        **failure_callback,
                    )
                    customized_eval = NemoEvaluationOperator(
                        task_id="customized_eval",
                        job=plan["customized_eval_job"],
                        label=plan["customized_eval_label"],
                        nemo_conn_id=nmp.nemo_conn_id,
                        judge_conn_id=judge.conn_id if judge.type == "remote" else None,
                        poll_interval=waits.poll_interval,
                        timeout=waits.evaluation_timeout,
                        pool=GPU_POOL,
                        **callbacks,
                    )
                    # Training needs only the dataset; serving the adapter needs the base NIM up.
                    plan >> customize
                    [customize, deploy] >> synced >> customized_eval
                    evaluations.append(customized_eval)
                shutdown = NemoDeleteDeploymentOperator(
                    task_id="shutdown_nim",
                    namespace=nmp.namespace,
                    name=deployment_name(model_name),
                    nemo_conn_id=nmp.nemo_conn_id,
                    trigger_rule=TriggerRule.ALL_DONE,
                )
                [deploy, *evaluations] >> shutdown
            [uploaded, wait_for_judge] >> plan
            candidate_ends.append(shutdown)

        @task(task_id="aggregate_results", trigger_rule=TriggerRule.ALL_DONE)
        def aggregate_results_task() -> dict:
            from include.orchestration.aggregate import aggregate_results

            return aggregate_results(workload_id)

        @task(task_id="report", trigger_rule=TriggerRule.ALL_DONE)
        def report_task(summary: dict | None = None) -> dict:
            from include.orchestration.aggregate import write_report

            return write_report(workload_id)

        # The Asset event is emitted only when finalize succeeds, i.e. when every step completed.
        @task(task_id="finalize", trigger_rule=TriggerRule.ALL_DONE, outlets=[results_asset(workload_id)])
        def finalize_task() -> dict:
            from include.orchestration.aggregate import finalize

            return finalize(workload_id)

        aggregate = aggregate_results_task()
        candidate_ends >> aggregate
        if judge_deployment is not None:
            shutdown_judge = NemoDeleteDeploymentOperator(
                task_id="shutdown_judge",
                namespace=judge_deployment["namespace"],
                name=judge_deployment["name"],
                nemo_conn_id=nmp.nemo_conn_id,
                trigger_rule=TriggerRule.ALL_DONE,
            )
            candidate_ends >> shutdown_judge
        report = report_task(aggregate)
        report >> finalize_task()

    return dag


def _judge_deployment(workload: WorkloadSettings) -> dict:
    from include.nemo.payloads import deployment_body, deployment_name
    from include.orchestration.plan import deployment_spec

    judge = workload.judge
    return deployment_spec(deployment_body(
        namespace=workload.nmp.namespace,
        name=deployment_name(judge.model_name),
        model=judge.model_name,
        image_name=f"nvcr.io/nim/{judge.model_name}",
        image_tag=judge.tag,
        pvc_size=judge.pvc_size,
        gpu=judge.gpus,
    ))
