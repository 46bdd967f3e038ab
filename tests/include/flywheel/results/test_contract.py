"""The results store contract: one suite, run against every backend.

``store`` is parametrized over (a) SQLite in ``tmp_path``, (b) MongoDB through the real
``MongoHook`` with mongomock in for ``pymongo.MongoClient`` and the Connection from
``AIRFLOW_CONN_MONGO_DEFAULT``, and (c) a real MongoDB when ``FLYWHEEL_TEST_MONGO_URI`` is set
(``integration``; skipped otherwise). Whatever a test asserts holds for each of them. The last
section checks that two processes writing to one SQLite file lose nothing.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest

from include.flywheel.config import ResultsSettings
from include.flywheel.results import (
    InvalidDocumentError,
    ResultStore,
    UnknownRunError,
    flywheel_run_id,
    open_result_store,
)

DAG = "flywheel__support"
T0 = datetime(2026, 11, 18, 2, 0, tzinfo=timezone.utc)
MODEL_A = "meta/llama-3.2-1b-instruct"
MODEL_B = "meta/llama-3.1-8b-instruct"


@pytest.fixture(params=["sqlite", "mongomock", pytest.param("mongodb", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest, tmp_path) -> Callable[[], ResultStore]:
    """A factory of stores over one backend: each call opens another store on the same data."""
    if request.param == "sqlite":
        settings = ResultsSettings(backend="sqlite", sqlite_path=str(tmp_path / "results" / "results.sqlite3"))
    elif request.param == "mongomock":
        request.getfixturevalue("mongomock_server")
        settings = ResultsSettings(backend="mongo", mongo_conn_id="mongo_default", database="flywheel_contract")
    else:
        database = request.getfixturevalue("real_mongo")
        settings = ResultsSettings(backend="mongo", mongo_conn_id="mongo_default", database=database)
    opened: list[ResultStore] = []

    def factory() -> ResultStore:
        opened.append(open_result_store(settings))
        return opened[-1]

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(backend: Callable[[], ResultStore]) -> Iterator[ResultStore]:
    yield backend()


def start_run(store: ResultStore, run_id: str = "scheduled__2026-11-18T02:00:00+00:00", **fields) -> str:
    fields = {"workload_id": "support", "client_id": "acme", "status": "running", **fields}
    return store.upsert_run(DAG, run_id, **fields)["flywheel_run_id"]


def count_by_key(documents: list[dict], *names: str) -> dict[tuple, int]:
    counts: dict[tuple, int] = {}
    for document in documents:
        key = tuple(document[name] for name in names)
        counts[key] = counts.get(key, 0) + 1
    return counts


# -- runs -------------------------------------------------------------------------------------------


def test_upsert_run_twice_leaves_one_document_with_the_latest_values(store: ResultStore) -> None:
    first = store.upsert_run(DAG, "manual__1", workload_id="support", client_id="acme", started_at=T0)
    second = store.upsert_run(DAG, "manual__1", status="running", stage="extract_logs")

    assert first["flywheel_run_id"] == second["flywheel_run_id"] == flywheel_run_id(DAG, "manual__1")
    assert (second["status"], second["stage"], second["client_id"]) == ("running", "extract_logs", "acme")
    assert second["created_at"] == first["created_at"]
    assert second["started_at"] == "2026-11-18T02:00:00.000Z"
    runs = store.list_runs("support")
    assert [run["run_id"] for run in runs] == ["manual__1"]
    assert runs[0] == second


def test_a_new_run_needs_workload_and_client(store: ResultStore) -> None:
    with pytest.raises(InvalidDocumentError, match=r"client_id: Field required"):
        store.upsert_run(DAG, "manual__1", workload_id="support")
    assert store.list_workloads() == []


def test_update_run_sets_only_the_given_fields(store: ResultStore) -> None:
    run = start_run(store, record_counts={"extraction": {"read": 120, "other_client": 5}})
    updated = store.update_run(run, stage="prepare_datasets", num_records=115)

    assert updated["record_counts"] == {"extraction": {"read": 120, "other_client": 5}}
    assert (updated["stage"], updated["num_records"], updated["status"]) == ("prepare_datasets", 115, "running")
    assert store.get_run(run)["num_records"] == 115


def test_update_of_an_unknown_run_is_an_error(store: ResultStore) -> None:
    with pytest.raises(UnknownRunError, match="not recorded"):
        store.update_run(flywheel_run_id(DAG, "manual__missing"), status="running")
    with pytest.raises(UnknownRunError, match="upsert_run"):
        store.upsert_nim(flywheel_run_id(DAG, "manual__missing"), MODEL_A, status="pending")
    assert store.get_run(flywheel_run_id(DAG, "manual__missing")) is None


def test_a_runs_key_and_workload_cannot_be_rewritten(store: ResultStore) -> None:
    run = start_run(store)
    with pytest.raises(InvalidDocumentError, match="run_id is part of the run's key"):
        store.update_run(run, run_id="manual__other")
    with pytest.raises(InvalidDocumentError, match="set by the store"):
        store.update_run(run, workload_id="other")
    with pytest.raises(InvalidDocumentError, match="cannot change"):
        store.upsert_run(DAG, run.split("/", 1)[1], workload_id="other")
    assert store.get_run(run)["workload_id"] == "support"


# -- steps ------------------------------------------------------------------------------------------


def test_evaluations_are_keyed_by_run_model_and_eval_type(store: ResultStore) -> None:
    run = start_run(store)
    for attempt in range(2):  # a retried task writes every step again
        for model in (MODEL_A, MODEL_B):
            for eval_type in ("base-eval", "icl-eval", "customized-eval"):
                store.upsert_evaluation(
                    run, model, eval_type, job_id=f"eval-{model}-{eval_type}", progress=10.0 * attempt
                )

    evaluations = store.get_run(run)["evaluations"]
    assert len(evaluations) == 6
    assert set(count_by_key(evaluations, "model_name", "eval_type").values()) == {1}
    assert all(evaluation["progress"] == 10.0 for evaluation in evaluations)
    # Sorted by model, then base -> icl -> customized.
    assert [(e["model_name"], e["eval_type"]) for e in evaluations[:3]] == [
        (MODEL_B, "base-eval"),
        (MODEL_B, "icl-eval"),
        (MODEL_B, "customized-eval"),
    ]


def test_an_evaluation_keeps_what_earlier_writes_recorded(store: ResultStore) -> None:
    run = start_run(store)
    store.upsert_evaluation(run, MODEL_A, "base-eval", job_id="eval-1", status="running", started_at=T0,
                            nmp_uri="http://nemo/v1/evaluation/jobs/eval-1")
    store.upsert_evaluation(run, MODEL_A, "base-eval", progress=40.0)
    done = store.upsert_evaluation(
        run,
        MODEL_A,
        "base-eval",
        status="completed",
        finished_at=T0 + timedelta(minutes=9, seconds=14, milliseconds=250),
        scores={"function_name": 0.8, "function_name_and_args_accuracy": 0.6},
        ci={"function_name": {"mean": 0.8, "low": 0.6, "high": 0.95, "n": 20, "confidence": 0.95}},
        latency={"mean_ms": 412.5, "p95_ms": 900.0, "n": 20},
        tokens={"mean_completion": 31.2, "n": 20},
        divergent_cases=[{"index": 3, "expected": {"name": "cancel_order"}, "output": {"name": "get_order_status"}}],
    )

    assert (done["job_id"], done["nmp_uri"], done["started_at"]) == (
        "eval-1",
        "http://nemo/v1/evaluation/jobs/eval-1",
        "2026-11-18T02:00:00.000Z",
    )
    assert done["progress"] == 100.0  # completed without a progress value
    assert done["runtime_seconds"] == pytest.approx(554.25)
    assert done["ci"]["function_name"] == {
        "mean": 0.8, "low": 0.6, "high": 0.95, "n": 20, "confidence": 0.95, "method": "bootstrap"
    }
    assert done["workload_id"] == "support"
    assert store.get_run(run)["evaluations"] == [done]


def test_nims_customizations_and_the_judge_are_upserted_by_their_keys(store: ResultStore) -> None:
    run = start_run(store)
    for _ in range(2):
        store.upsert_nim(run, MODEL_A, status="deploying-nim", deployment_status="Pending", started_at=T0)
        store.upsert_nim(run, MODEL_B, status="pending")
        store.upsert_customization(run, MODEL_A, job_id="cust-1", customized_model="flywheel/llama-1b-ft",
                                   status="running", progress=35.0, epochs=2, epochs_completed=0)
        store.upsert_judge_run(run, model_name="meta/llama-3.3-70b-instruct", type="remote", status="ready")
    store.upsert_nim(run, MODEL_A, status="running-evals", deployment_status="ready")
    store.upsert_customization(run, MODEL_A, epochs_completed=1, steps_completed=40)

    detail = store.get_run(run)
    # Sorted by model name (MODEL_B, "...3.1-8b...", sorts first).
    assert [(nim["model_name"], nim["status"]) for nim in detail["nims"]] == [
        (MODEL_B, "pending"),
        (MODEL_A, "running-evals"),
    ]
    nim_a = detail["nims"][1]
    assert (nim_a["deployment_status"], nim_a["started_at"]) == ("ready", "2026-11-18T02:00:00.000Z")
    [customization] = detail["customizations"]
    fields = ("job_id", "customized_model", "epochs_completed", "steps_completed", "progress")
    assert [customization[name] for name in fields] == ["cust-1", "flywheel/llama-1b-ft", 1, 40, 35.0]
    assert detail["llm_judge"]["model_name"] == "meta/llama-3.3-70b-instruct"
    assert detail["llm_judge"]["type"] == "remote"
    assert detail["llm_judge"]["finished_at"] is not None  # "ready" ends the judge's wait


def test_steps_of_one_run_do_not_appear_in_another(store: ResultStore) -> None:
    first = start_run(store, "manual__1")
    second = start_run(store, "manual__2")
    store.upsert_evaluation(first, MODEL_A, "base-eval", scores={"similarity": 7.0})
    store.upsert_nim(second, MODEL_B)

    assert [e["model_name"] for e in store.get_run(first)["evaluations"]] == [MODEL_A]
    assert store.get_run(first)["nims"] == []
    assert store.get_run(second)["evaluations"] == []
    assert store.get_run(second)["llm_judge"] is None


# -- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scroes": {"similarity": 1.0}}, r"scroes: unknown field"),
        ({"scores": {"similarity": float("nan")}}, r"scores\.similarity is nan"),
        ({"scores": {"similarity": "high"}}, r"scores\.similarity: Input should be a valid number"),
        ({"progress": 140}, r"progress: Input should be less than or equal to 100"),
        ({"started_at": datetime(2026, 11, 18, 2, 0)}, r"started_at: Input should have timezone info"),
        ({"extra": {"$where": "1"}}, r"keys must not start with '\$'"),
        ({"ci": {"similarity": {"mean": 5, "low": 6, "high": 7, "n": 3}}}, r"low <= mean <= high"),
        ({"started_at": T0, "finished_at": T0 - timedelta(seconds=1)}, r"finished_at .* is before started_at"),
        ({"divergent_cases": [{"index": i} for i in range(201)]}, r"divergent_cases: List should have at most 200"),
    ],
)
def test_invalid_values_are_rejected_with_the_field_named(store: ResultStore, fields: dict, message: str) -> None:
    run = start_run(store)
    with pytest.raises(InvalidDocumentError, match=message) as caught:
        store.upsert_evaluation(run, MODEL_A, "base-eval", **fields)
    assert f"evaluations {run}/{MODEL_A}/base-eval" in str(caught.value)
    assert store.get_run(run)["evaluations"] == []  # nothing half-written


def test_unknown_eval_type_and_store_managed_fields_are_rejected(store: ResultStore) -> None:
    run = start_run(store)
    with pytest.raises(InvalidDocumentError, match=r"eval_type 'fewshot-eval' is unknown"):
        store.upsert_evaluation(run, MODEL_A, "fewshot-eval")
    with pytest.raises(InvalidDocumentError, match=r"\['created_at'\] are set by the store"):
        store.upsert_nim(run, MODEL_A, created_at=T0)
    with pytest.raises(InvalidDocumentError, match=r"model_name must be a non-empty string"):
        store.upsert_nim(run, "", status="pending")
    with pytest.raises(InvalidDocumentError, match=r"type: Field required"):
        store.upsert_judge_run(run, model_name="judge")
    with pytest.raises(InvalidDocumentError, match=r"run status 'done' is unknown"):
        store.list_runs("support", status="done")


# -- timestamps -------------------------------------------------------------------------------------


def test_timestamps_are_utc_with_millisecond_precision(store: ResultStore) -> None:
    paris = timezone(timedelta(hours=1))
    run = store.upsert_run(
        DAG,
        "manual__tz",
        workload_id="support",
        client_id="acme",
        started_at=datetime(2026, 11, 18, 3, 0, 0, 123456, tzinfo=paris),
        data_interval_start="2026-11-17T02:00:00+00:00",
        data_interval_end="2026-11-18T02:00:00Z",
        log_window={"start": "2026-11-17T02:00:00Z", "end": T0, "source": "data_interval"},
    )
    assert run["started_at"] == "2026-11-18T02:00:00.123Z"
    assert (run["data_interval_start"], run["data_interval_end"]) == (
        "2026-11-17T02:00:00.000Z",
        "2026-11-18T02:00:00.000Z",
    )
    assert run["log_window"] == {
        "start": "2026-11-17T02:00:00.000Z", "end": "2026-11-18T02:00:00.000Z", "source": "data_interval"
    }
    for name in ("created_at", "updated_at"):
        parsed = datetime.fromisoformat(run[name].replace("Z", "+00:00"))
        assert parsed.utcoffset() == timedelta(0)


def test_terminal_status_stamps_finished_at_and_a_new_attempt_clears_it(store: ResultStore) -> None:
    run = start_run(store, started_at=T0)
    failed = store.update_run(run, status="failed", error="prepare_datasets: 12 records, 50 needed")
    assert failed["finished_at"] is not None
    assert failed["runtime_seconds"] is not None and failed["runtime_seconds"] >= 0
    # The same terminal status written again (a retried callback) keeps the time it first ended.
    store.update_run(run, finished_at=T0 + timedelta(minutes=5))
    assert store.update_run(run, status="failed")["finished_at"] == "2026-11-18T02:05:00.000Z"

    retried = store.update_run(run, status="running", error=None)
    assert (retried["finished_at"], retried["runtime_seconds"], retried["error"]) == (None, None, None)
    # runtime_seconds is not derived without finished_at, but the caller may report elapsed time.
    assert store.update_run(run, runtime_seconds=12.5)["runtime_seconds"] == 12.5

    finished = store.update_run(run, status="completed", finished_at=T0 + timedelta(hours=1))
    assert (finished["finished_at"], finished["runtime_seconds"]) == ("2026-11-18T03:00:00.000Z", 3600.0)


# -- a failed run keeps how far it got --------------------------------------------------------------


def test_a_failed_run_keeps_how_far_it_got(store: ResultStore) -> None:
    run = start_run(store, started_at=T0)
    store.update_run(
        run,
        stage="prepare_datasets",
        workload_type="tool_calling",
        num_records=480,
        record_counts={"extraction": {"read": 500, "matched": 480}, "preparation": {"dropped": {"invalid_format": 3}}},
        datasets=[{"name": "flywheel-eval-support-1", "kind": "eval", "num_records": 20}],
    )
    store.upsert_judge_run(run, model_name="judge", type="remote", status="ready")
    store.upsert_nim(run, MODEL_A, status="running-evals", deployment_status="ready")
    store.upsert_evaluation(run, MODEL_A, "base-eval", status="completed", scores={"function_name": 0.7})
    store.upsert_evaluation(run, MODEL_A, "icl-eval", status="running", progress=40.0, job_id="eval-icl")
    store.upsert_nim(run, MODEL_A, status="failed", error="customization job cust-9 failed: OOM")
    store.update_run(run, status="failed", error="candidate meta/llama-3.2-1b-instruct failed")

    detail = store.get_run(run)
    assert (detail["status"], detail["error"], detail["stage"]) == (
        "failed",
        "candidate meta/llama-3.2-1b-instruct failed",
        "prepare_datasets",
    )
    assert detail["finished_at"] is not None
    assert detail["record_counts"]["preparation"] == {"dropped": {"invalid_format": 3}}
    assert detail["datasets"] == [
        {"name": "flywheel-eval-support-1", "kind": "eval", "num_records": 20, "uri": None, "sha256": None}
    ]
    assert [(n["status"], n["error"]) for n in detail["nims"]] == [("failed", "customization job cust-9 failed: OOM")]
    by_type = {e["eval_type"]: e for e in detail["evaluations"]}
    assert by_type["base-eval"]["scores"] == {"function_name": 0.7}
    assert (by_type["icl-eval"]["status"], by_type["icl-eval"]["progress"], by_type["icl-eval"]["finished_at"]) == (
        "running",
        40.0,
        None,
    )
    assert store.list_runs("support", status="failed")[0]["flywheel_run_id"] == run


# -- listing ----------------------------------------------------------------------------------------


def test_list_runs_newest_first_with_status_filter_and_limit(store: ResultStore) -> None:
    statuses = ["completed", "failed", "completed", "running", "completed_with_errors"]
    for day, status in enumerate(statuses):
        start_run(store, f"scheduled__2026-11-{10 + day}", started_at=T0 + timedelta(days=day), status=status)
    # Same start time: the tie is broken by run id, newest (largest) first.
    start_run(store, "manual__a", started_at=T0, status="completed")
    store.upsert_run("flywheel__other", "manual__x", workload_id="other", client_id="acme", started_at=T0)

    assert [run["run_id"] for run in store.list_runs("support")] == [
        "scheduled__2026-11-14",
        "scheduled__2026-11-13",
        "scheduled__2026-11-12",
        "scheduled__2026-11-11",
        "scheduled__2026-11-10",
        "manual__a",
    ]
    assert [run["run_id"] for run in store.list_runs("support", status="completed")] == [
        "scheduled__2026-11-12",
        "scheduled__2026-11-10",
        "manual__a",
    ]
    assert [run["run_id"] for run in store.list_runs("support", status=["failed", "running"], limit=1)] == [
        "scheduled__2026-11-13"
    ]
    assert store.list_runs("nobody") == []
    with pytest.raises(InvalidDocumentError, match="limit must be a positive integer"):
        store.list_runs("support", limit=0)


def test_list_runs_can_attach_children(store: ResultStore) -> None:
    run = start_run(store)
    store.upsert_evaluation(run, MODEL_A, "base-eval", scores={"similarity": 6.0})
    [listed] = store.list_runs("support", with_children=True)
    assert listed == store.get_run(run)
    assert "evaluations" not in store.list_runs("support")[0]


def test_list_workloads_summarizes_each_workload(store: ResultStore) -> None:
    start_run(store, "scheduled__1", started_at=T0, status="completed")
    start_run(store, "scheduled__2", started_at=T0 + timedelta(days=1), status="failed")
    start_run(store, "scheduled__3", started_at=T0 + timedelta(days=2), status="completed")
    store.upsert_run("flywheel__billing", "manual__1", workload_id="billing", client_id="globex", started_at=T0)

    assert store.list_workloads() == [
        {
            "workload_id": "billing",
            "client_id": "globex",
            "dag_id": "flywheel__billing",
            "runs": 1,
            "statuses": {"pending": 1},
            "last_run_id": "flywheel__billing/manual__1",
            "last_status": "pending",
            "last_started_at": "2026-11-18T02:00:00.000Z",
        },
        {
            "workload_id": "support",
            "client_id": "acme",
            "dag_id": DAG,
            "runs": 3,
            "statuses": {"completed": 2, "failed": 1},
            "last_run_id": f"{DAG}/scheduled__3",
            "last_status": "completed",
            "last_started_at": "2026-11-20T02:00:00.000Z",
        },
    ]


# -- documents --------------------------------------------------------------------------------------


def test_documents_are_plain_json(store: ResultStore) -> None:
    run = start_run(store, summary={"verdicts": {MODEL_A: {"decision": "hold", "reasons": ["intervals overlap"]}}})
    store.upsert_evaluation(run, MODEL_A, "customized-eval", scores={"similarity": 8.0},
                            extra={"judge": {"_id": "kept", "nested.key": [1, 2.5, None, True]}})
    detail = store.get_run(run)
    assert json.loads(json.dumps(detail, allow_nan=False)) == detail
    assert detail["evaluations"][0]["extra"] == {"judge": {"_id": "kept", "nested.key": [1, 2.5, None, True]}}
    assert detail["summary"]["verdicts"][MODEL_A]["decision"] == "hold"


def test_another_store_on_the_same_backend_sees_the_same_documents(backend: Callable[[], ResultStore]) -> None:
    writer = backend()
    run = start_run(writer)
    writer.upsert_evaluation(run, MODEL_A, "base-eval", scores={"similarity": 7.25})
    writer.close()

    reader = backend()
    assert reader.get_run(run)["evaluations"][0]["scores"] == {"similarity": 7.25}
    # ...and the closed store reconnects when used again.
    assert writer.get_run(run) == reader.get_run(run)


# -- two processes, one SQLite file -----------------------------------------------------------------

ROUNDS = 25


def _writer(path: str, worker: int, barrier, run: str) -> None:
    store = open_result_store(ResultsSettings(backend="sqlite", sqlite_path=path))
    barrier.wait()
    for round_ in range(ROUNDS):
        # Own documents: one per (model, eval_type).
        for eval_type in ("base-eval", "icl-eval", "customized-eval"):
            store.upsert_evaluation(run, f"model-{worker}", eval_type, progress=float(round_))
        # One shared document: each process sets its own field; neither write may be lost.
        field = {"deployment_status": f"worker0-{round_}"} if worker == 0 else {"error": f"worker1-{round_}"}
        store.upsert_nim(run, "shared-model", **field)
        # And the very same field of the same document from both: still one document.
        store.upsert_evaluation(run, "shared-model", "base-eval", job_id=f"worker{worker}-{round_}")
    store.close()


def test_two_processes_writing_one_sqlite_file_lose_nothing(tmp_path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    store = open_result_store(ResultsSettings(backend="sqlite", sqlite_path=path))
    run = start_run(store)  # the parent holds an open connection across fork
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_writer, args=(path, worker, barrier, run)) for worker in (0, 1)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    assert [process.exitcode for process in workers] == [0, 0]

    detail = store.get_run(run)
    evaluations = count_by_key(detail["evaluations"], "model_name", "eval_type")
    assert len(evaluations) == 7 and set(evaluations.values()) == {1}
    assert {e["progress"] for e in detail["evaluations"] if e["model_name"] != "shared-model"} == {ROUNDS - 1.0}
    [nim] = detail["nims"]
    assert (nim["deployment_status"], nim["error"]) == (f"worker0-{ROUNDS - 1}", f"worker1-{ROUNDS - 1}")
    shared = next(e for e in detail["evaluations"] if e["model_name"] == "shared-model")
    assert shared["job_id"] in {f"worker0-{ROUNDS - 1}", f"worker1-{ROUNDS - 1}"}
