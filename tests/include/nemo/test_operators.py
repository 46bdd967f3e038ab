"""Operators against the emulator: submit, re-attach, defer with the right trigger, fail closed, cancel on kill."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException, TaskDeferred

from include.nemo.hooks import DataStoreHook, EntityStoreHook
from include.nemo.operators import (
    NemoCancelJobOperator,
    NemoCustomizationOperator,
    NemoDeleteDeploymentOperator,
    NemoDeployNimOperator,
    NemoEvaluationOperator,
    NemoUploadDatasetOperator,
)
from include.nemo.triggers import (
    NemoCustomizationJobTrigger,
    NemoDeploymentTrigger,
    NemoEvaluationJobTrigger,
    NimModelServedTrigger,
)
from tests.include.nemo.emulator_support import (  # noqa: F401 - fixtures
    BASE_MODEL,
    NAMESPACE,
    POLL,
    SECRET,
    _nemo_emulator_server,
    customization_bodies,
    deploy_ready,
    deployment_spec,
    eval_config,
    eval_dataset,
    eval_records,
    jsonl,
    make_context,
    nemo_emu,
    run_trigger,
    training_dataset,
    training_rows,
)


def drive(operator: Any, context: dict) -> Any:
    """Run an operator the way Airflow does: execute, then each deferral's trigger and resume method."""
    try:
        return operator.execute(context)
    except TaskDeferred as deferred:
        current = deferred
    for _ in range(5):
        events = run_trigger(current.trigger)
        assert len(events) == 1
        try:
            return getattr(operator, current.method_name)(context, event=events[0].payload, **(current.kwargs or {}))
        except TaskDeferred as deferred:
            current = deferred
    raise AssertionError("the operator deferred more than 5 times")


def deferral(operator: Any, context: dict) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as info:
        operator.execute(context)
    return info.value


def assert_no_secret(deferred: TaskDeferred) -> None:
    _, kwargs = deferred.trigger.serialize()
    assert SECRET not in repr(kwargs)
    assert SECRET not in repr(deferred.kwargs)


# -- upload -------------------------------------------------------------------------------------------------------


@pytest.fixture
def staged(tmp_path):
    root = tmp_path / "staged"
    (root / "training").mkdir(parents=True)
    (root / "validation").mkdir()
    (root / "eval_data.jsonl").write_text(jsonl(eval_records()))
    (root / "training" / "train_data.jsonl").write_text(jsonl(training_rows()))
    (root / "validation" / "val_data.jsonl").write_text(jsonl(training_rows(2)))
    return root


def test_upload_creates_namespaces_repo_files_and_registration(nemo_emu, staged):
    op = NemoUploadDatasetOperator(task_id="upload", namespace=NAMESPACE, name="ds-1", local_dir=staged.as_uri(),
                                   description="eval + train")
    result = op.execute(make_context())
    assert result == {"namespace": NAMESPACE, "name": "ds-1", "files_url": f"hf://datasets/{NAMESPACE}/ds-1"}
    state = nemo_emu.state()
    assert NAMESPACE in state["namespaces"] and NAMESPACE in state["datastore_namespaces"]
    assert state["datasets"] == [f"{NAMESPACE}/ds-1"]
    with DataStoreHook() as datastore:
        assert sorted(datastore.list_files(NAMESPACE, "ds-1")) == [
            "eval_data.jsonl", "training/train_data.jsonl", "validation/val_data.jsonl"]
    with EntityStoreHook() as entity_store:
        assert entity_store.get_dataset(NAMESPACE, "ds-1")["description"] == "eval + train"


def test_upload_is_idempotent_on_retry_and_repoints_a_stale_registration(nemo_emu, staged):
    with EntityStoreHook() as entity_store:
        entity_store.create_namespace(NAMESPACE)
        entity_store.create_dataset({"name": "ds-1", "namespace": NAMESPACE, "files_url": "hf://datasets/old/place"})
    op = NemoUploadDatasetOperator(task_id="upload", namespace=NAMESPACE, name="ds-1", local_dir=str(staged))
    first = op.execute(make_context())
    second = op.execute(make_context())
    assert first == second
    state = nemo_emu.state()
    assert state["datasets"] == [f"{NAMESPACE}/ds-1"]
    assert state["repos"] == [f"dataset:{NAMESPACE}/ds-1"]
    with EntityStoreHook() as entity_store:
        assert entity_store.get_dataset(NAMESPACE, "ds-1")["files_url"] == f"hf://datasets/{NAMESPACE}/ds-1"


def test_upload_of_a_missing_or_empty_directory_fails_clearly(nemo_emu, tmp_path):
    missing = NemoUploadDatasetOperator(task_id="u", namespace=NAMESPACE, name="x", local_dir=str(tmp_path / "nope"))
    with pytest.raises(AirflowFailException, match="is not a directory"):
        missing.execute(make_context())
    (tmp_path / "empty").mkdir()
    empty = NemoUploadDatasetOperator(task_id="u", namespace=NAMESPACE, name="x", local_dir=str(tmp_path / "empty"))
    with pytest.raises(AirflowFailException, match="no files"):
        empty.execute(make_context())
    assert nemo_emu.state()["repos"] == []


# -- deploy -------------------------------------------------------------------------------------------------------


def deploy_operator(**overrides: Any) -> NemoDeployNimOperator:
    kwargs = {"task_id": "deploy", "deployment": deployment_spec(), "poll_interval": POLL, "timeout": 30}
    kwargs.update(overrides)
    return NemoDeployNimOperator(**kwargs)


def test_deploy_defers_on_the_deployment_trigger_and_pushes_the_name(nemo_emu):
    context = make_context()
    before = time.time()
    deferred = deferral(deploy_operator(timeout=600), context)
    assert isinstance(deferred.trigger, NemoDeploymentTrigger)
    _, kwargs = deferred.trigger.serialize()
    assert kwargs["conn_id"] == "nemo_default"
    assert (kwargs["namespace"], kwargs["name"]) == (NAMESPACE, "llama-1b")
    assert kwargs["poll_interval"] == POLL
    assert before + 600 <= kwargs["deadline"] <= time.time() + 600
    assert deferred.method_name == "execute_ready"
    assert deferred.kwargs == {"model": BASE_MODEL, "deadline": kwargs["deadline"]}
    assert deferred.timeout >= timedelta(seconds=599)
    assert context["ti"].xcoms == {"deployment_namespace": NAMESPACE, "deployment_name": "llama-1b"}
    assert_no_secret(deferred)


def test_deploy_runs_to_the_model_being_served(nemo_emu):
    result = drive(deploy_operator(), make_context())
    assert result == {"namespace": NAMESPACE, "name": "llama-1b", "model": BASE_MODEL}
    assert BASE_MODEL in nemo_emu.state()["served_models"]


def test_deploy_waits_for_the_nim_after_ready_with_a_trigger_that_deletes_on_kill(nemo_emu):
    op = deploy_operator()
    deferred = deferral(op, make_context())
    event = run_trigger(deferred.trigger)[0].payload
    assert event["status"] == "success"
    # A model the NIM does not list yet (as a NIM that is still loading it): the operator must defer again.
    with pytest.raises(TaskDeferred) as info:
        op.execute_ready(make_context(), event=event, model="fwtest/still-loading",
                         deadline=deferred.kwargs["deadline"])
    second = info.value
    assert isinstance(second.trigger, NimModelServedTrigger)
    assert second.method_name == "execute_complete"
    assert second.kwargs == {"namespace": NAMESPACE, "name": "llama-1b"}
    assert second.trigger.serialize()[1] == {
        "conn_id": "nim_default", "model_id": "fwtest/still-loading", "kill_deployment": f"{NAMESPACE}/llama-1b",
        "nemo_conn_id": "nemo_default", "poll_interval": POLL, "deadline": deferred.kwargs["deadline"],
        "retry_limit": 5, "retry_delay": 1.0,
    }
    assert_no_secret(second)


def test_deploy_reattaches_on_retry(nemo_emu):
    deferral(deploy_operator(), make_context())
    second = deferral(deploy_operator(), make_context())
    assert isinstance(second.trigger, (NemoDeploymentTrigger, NimModelServedTrigger))
    assert nemo_emu.state()["deployments"]["total"] == 1


def test_deploy_of_an_already_ready_deployment_returns_without_deferring(nemo_emu):
    deploy_ready(nemo_emu)
    assert deploy_operator().execute(make_context()) == {"namespace": NAMESPACE, "name": "llama-1b",
                                                          "model": BASE_MODEL}


def test_deploy_refuses_a_name_that_serves_another_model(nemo_emu):
    deploy_ready(nemo_emu, deployment_spec(model="other/model"))
    with pytest.raises(AirflowFailException, match="already exists and serves 'other/model'"):
        deploy_operator().execute(make_context())


def test_failed_deployment_fails_naming_it_and_deletes_it(nemo_emu):
    nemo_emu.set_faults(fail_deployments=["broken"])
    with pytest.raises(AirflowException, match="broken-nim.*deleted it") as info:
        drive(deploy_operator(deployment=deployment_spec(name="broken-nim")), make_context())
    assert "image" in str(info.value)
    assert nemo_emu.state()["deployments"]["total"] == 0


def test_deployment_past_its_deadline_fails_and_is_deleted(nemo_emu):
    nemo_emu.set_faults(stuck_deployments=["stuck"])
    with pytest.raises(AirflowException, match="stuck-nim.*timeout"):
        drive(deploy_operator(deployment=deployment_spec(name="stuck-nim"), timeout=0.4), make_context())
    assert nemo_emu.state()["deployments"]["total"] == 0


def test_deploy_validates_the_deployment_dict(nemo_emu):
    spec = deployment_spec()
    del spec["image_tag"]
    spec["gpus"] = 2
    with pytest.raises(AirflowFailException, match=r"missing key\(s\) \['image_tag'\].*unknown key\(s\) \['gpus'\]"):
        deploy_operator(deployment=spec).execute(make_context())
    assert nemo_emu.state()["deployments"]["total"] == 0


def test_deploy_on_kill_deletes_the_deployment(nemo_emu):
    op = deploy_operator()
    deferral(op, make_context())
    op.on_kill()
    assert nemo_emu.state()["deployments"]["total"] == 0


def test_delete_deployment_tolerates_a_missing_one(nemo_emu):
    deploy_ready(nemo_emu)
    op = NemoDeleteDeploymentOperator(task_id="shutdown", namespace=NAMESPACE, name="llama-1b")
    assert op.execute(make_context()) == {"namespace": NAMESPACE, "name": "llama-1b", "deleted": True}
    assert op.execute(make_context()) == {"namespace": NAMESPACE, "name": "llama-1b", "deleted": False}
    assert nemo_emu.state()["deployments"]["total"] == 0


# -- evaluate -----------------------------------------------------------------------------------------------------


def eval_operator(label: str = "dag|run|llama|base-eval", **overrides: Any) -> NemoEvaluationOperator:
    job = {"namespace": NAMESPACE, "config": eval_config("eval-ds"),
           "target": {"type": "model", "model": BASE_MODEL}}
    kwargs = {"task_id": "base_eval", "job": job, "label": label, "poll_interval": POLL, "timeout": 30}
    kwargs.update(overrides)
    return NemoEvaluationOperator(**kwargs)


def test_evaluation_runs_and_returns_a_small_score_summary(nemo_emu):
    eval_dataset()
    deploy_ready(nemo_emu)
    context = make_context()
    result = drive(eval_operator(), context)
    job_id = context["ti"].xcoms["job_id"]
    assert context["ti"].xcoms["job_url"] == f"{nemo_emu.base_url}/v1/evaluation/jobs/{job_id}"
    assert result["job_id"] == job_id
    assert result["status"] == "completed"
    assert set(result["results"]) == {"tool-calling-accuracy", "correctness"}
    assert set(result["results"]["tool-calling-accuracy"]) == {"function_name_accuracy",
                                                                "function_name_and_args_accuracy"}
    assert 0.0 <= result["results"]["tool-calling-accuracy"]["function_name_accuracy"] <= 1.0
    assert 0.0 <= result["results"]["correctness"]["rating"] <= 1.0  # None (judge answers unparsed) fails
    assert result["usage"]["custom-tool-calling"]["requests"] == 3
    assert result["started_at"] and result["finished_at"]
    assert "rows" not in repr(result)


def test_evaluation_defers_with_the_right_trigger_and_labels_the_job(nemo_emu):
    context = make_context()
    deferred = deferral(eval_operator(timeout=900), context)
    assert isinstance(deferred.trigger, NemoEvaluationJobTrigger)
    classpath, kwargs = deferred.trigger.serialize()
    assert classpath == "include.nemo.triggers.NemoEvaluationJobTrigger"
    assert kwargs["job_id"] == context["ti"].xcoms["job_id"]
    assert kwargs["conn_id"] == "nemo_default"
    assert kwargs["deadline"] == pytest.approx(time.time() + 900, abs=30)
    assert deferred.method_name == "execute_complete"
    assert_no_secret(deferred)
    from include.nemo.hooks import EvaluatorHook

    with EvaluatorHook() as hook:
        assert hook.get_job(kwargs["job_id"])["custom_fields"] == {"flywheel_key": "dag|run|llama|base-eval"}


def test_evaluation_retry_reattaches_instead_of_starting_a_second_job(nemo_emu):
    nemo_emu.configure(job=60)
    first = deferral(eval_operator(), make_context())
    second = deferral(eval_operator(), make_context())  # the retry
    assert second.trigger.job_id == first.trigger.job_id
    assert nemo_emu.state()["evaluation_jobs"]["total"] == 1
    # Another label is another evaluation.
    deferral(eval_operator(label="dag|run|llama|icl-eval"), make_context())
    assert nemo_emu.state()["evaluation_jobs"]["total"] == 2


def test_evaluation_retry_after_a_failed_job_submits_a_new_one(nemo_emu):
    with pytest.raises(AirflowException, match="failed"):
        drive(eval_operator(), make_context())  # no dataset, no deployment: the job fails
    deferral(eval_operator(), make_context())
    assert nemo_emu.state()["evaluation_jobs"]["total"] == 2


def test_evaluation_on_kill_cancels_the_job(nemo_emu):
    nemo_emu.configure(job=60)
    op = eval_operator()
    deferral(op, make_context())
    op.on_kill()
    assert nemo_emu.state()["evaluation_jobs"]["by_status"] == {"cancelled": 1}


@pytest.mark.parametrize(
    ("event", "exception", "words"),
    [
        ({"status": "failed", "job_id": "eval-x", "message": "judge unreachable", "progress": 40.0},
         AirflowException, ["eval-x", "'failed'", "judge unreachable", "40.0"]),
        ({"status": "cancelled", "job_id": "eval-x", "message": "cancelled by a user"},
         AirflowFailException, ["eval-x", "cancelled by a user"]),
        ({"status": "error", "job_id": "eval-x", "message": "HTTP 503 five times"},
         AirflowException, ["eval-x", "HTTP 503"]),
        ({"status": "weird", "job_id": "eval-x"}, AirflowException, ["unexpected event"]),
        (None, AirflowException, ["unexpected event"]),
    ],
)
def test_evaluation_execute_complete_fails_closed(nemo_emu, event, exception, words):
    with pytest.raises(exception) as info:
        eval_operator().execute_complete(make_context(), event=event)
    for word in words:
        assert word in str(info.value)


def test_evaluation_timeout_cancels_the_job_and_fails(nemo_emu):
    eval_dataset()
    deploy_ready(nemo_emu)
    nemo_emu.configure(job=60)
    with pytest.raises(AirflowException, match="'timeout'.*was cancelled"):
        drive(eval_operator(timeout=0.3), make_context())
    assert nemo_emu.state()["evaluation_jobs"]["by_status"] == {"cancelled": 1}


def test_evaluation_label_conflict_and_missing_fields_are_refused(nemo_emu):
    job = {"config": eval_config("eval-ds"), "target": {"type": "model", "model": BASE_MODEL},
           "custom_fields": {"flywheel_key": "something-else"}}
    with pytest.raises(AirflowFailException, match="differs from label"):
        eval_operator(job=job).execute(make_context())
    with pytest.raises(AirflowFailException, match=r"missing \['target'\]"):
        eval_operator(job={"config": eval_config("eval-ds")}).execute(make_context())
    assert nemo_emu.state()["evaluation_jobs"]["total"] == 0


def test_evaluation_config_is_not_rendered_by_airflow_but_the_rest_is():
    op = eval_operator(job={"namespace": "{{ params.ns }}", "config": eval_config("eval-ds"),
                            "target": {"type": "model", "model": "{{ params.model }}"}},
                       label="{{ params.ns }}|base-eval")
    op.render_template_fields({"params": {"ns": "rendered-ns", "model": "ns/model"}})
    body = op._body()
    assert body["namespace"] == "rendered-ns"
    assert body["target"]["model"] == "ns/model"
    assert body["custom_fields"] == {"flywheel_key": "rendered-ns|base-eval"}
    assert body["config"] == eval_config("eval-ds")  # NeMo's {{ item... }} templates intact


# -- customize ----------------------------------------------------------------------------------------------------


def customization_operator(job_name: str = "fw-customize-llama-1", **overrides: Any) -> NemoCustomizationOperator:
    config, job = customization_bodies(job_name, "train-ds")
    job.pop("config")  # the operator fills it from the config it creates
    kwargs = {"task_id": "customize", "config": config, "job": job, "poll_interval": POLL, "timeout": 30}
    kwargs.update(overrides)
    return NemoCustomizationOperator(**kwargs)


def test_customization_runs_and_returns_the_output_model(nemo_emu):
    training_dataset()
    context = make_context()
    result = drive(customization_operator(), context)
    assert result == {"job_id": context["ti"].xcoms["job_id"],
                      "output_model": f"{NAMESPACE}/fw-customize-llama-1-model", "status": "completed"}
    assert context["ti"].xcoms["output_model"] == result["output_model"]
    assert nemo_emu.state()["customization_configs"] == [f"{NAMESPACE}/llama-1b-lora"]


def test_customization_without_a_job_is_skipped_and_submits_nothing(nemo_emu):
    # A run whose plan disabled customization for this model passes job=None.
    with pytest.raises(AirflowSkipException, match="nothing to customize"):
        customization_operator(config=None, job=None).execute(make_context())
    assert nemo_emu.state()["customization_jobs"]["total"] == 0


def test_customization_defers_with_the_right_trigger(nemo_emu):
    training_dataset()
    context = make_context()
    deferred = deferral(customization_operator(), context)
    assert isinstance(deferred.trigger, NemoCustomizationJobTrigger)
    _, kwargs = deferred.trigger.serialize()
    assert kwargs["job_id"] == context["ti"].xcoms["job_id"]
    assert context["ti"].xcoms["job_url"].endswith(f"/v1/customization/jobs/{kwargs['job_id']}")
    assert deferred.kwargs == {"output_model": f"{NAMESPACE}/fw-customize-llama-1-model"}
    assert_no_secret(deferred)


def test_customization_resume_without_deferral_kwargs_reads_the_output_model(nemo_emu):
    """Some runners (``dag.test()`` in Airflow 3.3) resume with the event only: the result must not suffer."""
    training_dataset()
    op = customization_operator()
    deferred = deferral(op, make_context())
    event = run_trigger(deferred.trigger)[0].payload
    result = customization_operator().execute_complete(make_context(), event=event)
    assert result["output_model"] == f"{NAMESPACE}/fw-customize-llama-1-model"
    assert result["job_id"] == deferred.trigger.job_id


def test_customization_retry_reattaches_to_the_running_job(nemo_emu):
    nemo_emu.configure(job=60)
    training_dataset()
    first = deferral(customization_operator(), make_context())
    second = deferral(customization_operator(), make_context())
    assert second.trigger.job_id == first.trigger.job_id
    state = nemo_emu.state()
    assert state["customization_jobs"]["total"] == 1
    assert state["customization_configs"] == [f"{NAMESPACE}/llama-1b-lora"]


def test_customization_failure_fails_closed_with_the_job_id(nemo_emu):
    nemo_emu.set_faults(fail_customizations=["doomed"])
    training_dataset()
    context = make_context()
    with pytest.raises(AirflowException) as info:
        drive(customization_operator("fw-customize-doomed"), context)
    assert context["ti"].xcoms["job_id"] in str(info.value)
    assert "'failed'" in str(info.value) and "injected failure" in str(info.value)


def test_customization_on_kill_cancels_the_job(nemo_emu):
    nemo_emu.configure(job=60)
    training_dataset()
    op = customization_operator()
    deferral(op, make_context())
    op.on_kill()
    assert nemo_emu.state()["customization_jobs"]["by_status"] == {"cancelled": 1}


def test_customization_timeout_cancels_the_job(nemo_emu):
    nemo_emu.configure(job=60)
    training_dataset()
    with pytest.raises(AirflowException, match="'timeout'.*was cancelled"):
        drive(customization_operator(timeout=0.3), make_context())
    assert nemo_emu.state()["customization_jobs"]["by_status"] == {"cancelled": 1}


def test_customization_refuses_a_job_pointing_at_another_config(nemo_emu):
    config, job = customization_bodies("fw-customize-x", "train-ds")
    job["config"] = f"{NAMESPACE}/some-other-config"
    op = NemoCustomizationOperator(task_id="c", config=config, job=job)
    with pytest.raises(AirflowFailException, match="some-other-config"):
        op.execute(make_context())
    assert nemo_emu.state()["customization_configs"] == []


def test_cancel_job_operator(nemo_emu):
    nemo_emu.configure(job=60)
    training_dataset()
    context = make_context()
    deferral(customization_operator(), context)
    op = NemoCancelJobOperator(task_id="cancel", job_id=context["ti"].xcoms["job_id"], job_type="customization")
    assert op.execute(make_context())["cancelled"] is True
    assert nemo_emu.state()["customization_jobs"]["by_status"] == {"cancelled": 1}
    gone = NemoCancelJobOperator(task_id="cancel", job_id="eval-does-not-exist", job_type="evaluation")
    assert gone.execute(make_context()) == {"job_id": "eval-does-not-exist", "job_type": "evaluation",
                                            "cancelled": False}


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "10", True])
def test_bad_wait_settings_are_refused_at_parse_time(bad):
    with pytest.raises(ValueError, match="poll_interval"):
        eval_operator(poll_interval=bad)
    with pytest.raises(ValueError, match="timeout"):
        deploy_operator(timeout=bad)


# -- the real runtime: dag.test() runs the deferrals, the triggers (inline) and the resumes ----------------------

E2E_DAG = '''
import pendulum
from airflow.sdk import DAG, task
from include.nemo.operators import (NemoDeleteDeploymentOperator, NemoDeployNimOperator, NemoEvaluationOperator,
                                    NemoUploadDatasetOperator)
from include.nemo.sensors import NimModelServedSensor
from tests.include.nemo.emulator_support import NAMESPACE, deployment_spec, eval_config

with DAG("nemo_operators_e2e", schedule=None, start_date=pendulum.datetime(2024, 1, 1), tags=["test"]) as dag:
    upload = NemoUploadDatasetOperator(task_id="upload", namespace=NAMESPACE, name="eval-ds",
                                       local_dir="{{ params.staged }}")
    deploy = NemoDeployNimOperator(task_id="deploy", deployment=deployment_spec(), poll_interval=0.05, timeout=60)

    @task
    def target(deployed):
        return {"type": "model", "model": deployed["model"]}

    evaluate = NemoEvaluationOperator(
        task_id="evaluate",
        job={"namespace": NAMESPACE, "config": eval_config("eval-ds"), "target": target(deploy.output)},
        label="{{ dag.dag_id }}|{{ run_id }}|base-eval", poll_interval=0.05, timeout=60)
    wait = NimModelServedSensor(task_id="wait_model", model_id="{{ ti.xcom_pull(task_ids='deploy')['model'] }}",
                                poll_interval=0.05, timeout=30)
    shutdown = NemoDeleteDeploymentOperator(
        task_id="shutdown", namespace=NAMESPACE, trigger_rule="all_done",
        name="{{ ti.xcom_pull(task_ids='deploy', key='deployment_name') }}")
    upload >> evaluate
    deploy >> wait >> evaluate >> shutdown
'''


@pytest.mark.airflow
def test_operators_in_a_real_dag_run(nemo_emu, staged, tmp_path, monkeypatch):
    """Deferral kwargs, XComArgs inside a payload dict, Jinja, the untouched NeMo config: the real task runner."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "nemo_operators_e2e.py").write_text(E2E_DAG)
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([{
        "name": "nemo-operators-test", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(bundle)}}]))
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db

    db.initdb()  # idempotent: creates the metadata tables if this session has none yet
    bag = DagBag(dag_folder=str(bundle))
    assert bag.import_errors == {}
    dag_run = bag.dags["nemo_operators_e2e"].test(run_conf={"staged": str(staged)})
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == dict.fromkeys(("upload", "deploy", "target", "wait_model", "evaluate", "shutdown"), "success")
    state = nemo_emu.state()
    assert state["evaluation_jobs"] == {"total": 1, "by_status": {"completed": 1}}
    assert state["deployments"]["total"] == 0  # shutdown deleted it
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids="nemo_operators_e2e",
                                                  task_ids="evaluate")).all()
        xcoms = {row.key: XComModel.deserialize_value(row) for row in rows}
    assert xcoms["job_id"].startswith("eval-")
    assert xcoms["return_value"]["job_id"] == xcoms["job_id"]
    # 1.0 only if Airflow left NeMo's {{ item... }} judge templates alone (rendered away, nothing would parse).
    assert xcoms["return_value"]["results"]["correctness"] == {"rating": 1.0}
    assert SECRET not in json.dumps(xcoms)
