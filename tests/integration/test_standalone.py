"""The users' paths under a real Airflow: ``airflow standalone`` as ``make up`` runs it.

One ``airflow standalone`` (api-server, scheduler, dag-processor, triggerer, LocalExecutor) runs
for the whole module in a private AIRFLOW_HOME, on a free loopback port, against the NeMo
emulator, with the project importable through PYTHONPATH as the Makefile sets it. Unlike
``dag.test()`` and ``airflow dags test``, which run triggers inline in the test process, here every
deferred task is resumed by the REAL triggerer process, which imports trigger classes by
classpath: a trigger it cannot import fails these tests.

* a run triggered through the REST API v2 with a conf payload (log window + one candidate)
  succeeds, and its deferrable tasks were resumed by the triggerer (their task logs carry the
  triggerer's own log file and our trigger module's log lines);
* ``airflow backfill create`` over three days makes three runs, one per data interval
  (02:00 -> 02:00 UTC, the ``0 2 * * *`` schedule), each extracting exactly the sample records
  of its own window;
* negative control: a trigger importable only from the dags folder (as a worker sees it, not as
  the triggerer does) passes under ``airflow dags test`` but fails its task under the standalone.

The scheduler's own cron runs are switched off (``[scheduler] use_job_schedule = False``): today's
interval lies outside the bundled sample logs, and the tests only look at the runs they create.
Everything is stopped in the fixture's ``finally`` (the standalone's whole process group).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, urlparse

import httpx
import pytest
import yaml

pytestmark = [pytest.mark.standalone]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_CONFIG = PROJECT_ROOT / "include" / "config" / "flywheel.yaml"
# The venv's own airflow: `airflow standalone` starts its components as `airflow <component>`
# through PATH, so the venv's bin directory also goes first on the standalone's PATH.
VENV_BIN = Path(sys.executable).parent
AIRFLOW = VENV_BIN / "airflow"

DAG_ID = "flywheel__customer-support-tools"
WORKLOAD_ID = "customer-support-tools"
CLIENT_ID = "acme-retail"
CANDIDATE = "meta/llama-3.2-1b-instruct"
GROUP = "candidate__meta-llama-3-2-1b-instruct"
# Tasks that submit a NeMo job or deployment, then defer until it finishes (the emulator's jobs
# take longer than the submit-and-check-once, so each of these defers at least once).
DEFERRING_TASKS = tuple(f"{GROUP}.{step}" for step in ("deploy_nim", "base_eval", "icl_eval", "customize",
                                                       "customized_eval"))
PROBE_DAG_ID = "flywheel_probe__triggerer_imports"
USERNAME = PASSWORD = "admin"

STARTUP_TIMEOUT = 150.0
PARSE_TIMEOUT = 90.0
RUN_TIMEOUT = 240.0
BACKFILL_TIMEOUT = 240.0
PROBE_TIMEOUT = 120.0
TERMINAL_RUN_STATES = {"success", "failed"}

# --- the negative control: a trigger the worker can import and the triggerer cannot -----------------

# Lives in the dags folder only. Workers put the dags folder (the DAG bundle) on sys.path when they
# parse the DAG file, so the task can defer to it; the triggerer imports trigger classes by classpath
# with only PYTHONPATH, installed packages, the plugins folder and $AIRFLOW_HOME/config on sys.path.
PROBE_TRIGGER_MODULE = '''\
"""A trigger importable only from the dags folder."""
from __future__ import annotations

import asyncio

from airflow.triggers.base import BaseTrigger, TriggerEvent


class DagsFolderOnlyTrigger(BaseTrigger):
    def serialize(self):
        return ("probe_trigger.DagsFolderOnlyTrigger", {})

    async def run(self):
        await asyncio.sleep(0.1)
        yield TriggerEvent({"status": "success"})
'''

PROBE_DAG_FILE = f'''\
"""Negative control: one task defers to a trigger importable anywhere, one to a dags-folder-only one."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import DAG, BaseOperator

from probe_trigger import DagsFolderOnlyTrigger


class DeferOnce(BaseOperator):
    def __init__(self, *, dags_folder_trigger: bool, **kwargs):
        super().__init__(**kwargs)
        self.dags_folder_trigger = dags_folder_trigger

    def execute(self, context):
        if self.dags_folder_trigger:
            trigger = DagsFolderOnlyTrigger()
        else:
            trigger = DateTimeTrigger(moment=datetime.now(timezone.utc) + timedelta(seconds=1))
        self.defer(trigger=trigger, method_name="resume")

    def resume(self, context, event=None):
        return "resumed"


with DAG("{PROBE_DAG_ID}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         default_args={{"retries": 0}}, tags=["probe"]):
    DeferOnce(task_id="importable_trigger", dags_folder_trigger=False)
    DeferOnce(task_id="dags_folder_trigger", dags_folder_trigger=True)
'''


# --- helpers --------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _epoch_seconds(value: Any) -> float | None:
    """A sample record's timestamp (epoch seconds or ISO 8601; naive means UTC), or None if it has none.

    Written independently of the log source under test, so the counts below are a real check.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return _utc(value).timestamp()
        except ValueError:
            return None
    return None


def count_sample_records(logs_path: Path, start: datetime, end: datetime) -> int:
    """Records of our workload and client in the sample files with a timestamp in ``[start, end)``."""
    count = 0
    for path in sorted(logs_path.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # the sample's malformed lines
            if not isinstance(record, dict):
                continue
            if record.get("workload_id") != WORKLOAD_ID or record.get("client_id") != CLIENT_ID:
                continue
            seconds = _epoch_seconds(record.get("timestamp"))
            if seconds is not None and start.timestamp() <= seconds < end.timestamp():
                count += 1
    return count


def _tail(path: Path, lines: int = 80) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_process_group(process: subprocess.Popen, grace: float = 30.0) -> None:
    """TERM the standalone's whole process group (it ignores SIGINT), then KILL what is left."""
    pgid = process.pid
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            process.poll()  # reap the leader so the group can disappear
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
    process.poll()


@dataclass
class Standalone:
    """A running ``airflow standalone`` and what the tests need to talk to it."""

    home: Path
    base_url: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen
    logs_path: Path
    results_path: Path
    _client: httpx.Client | None = field(default=None, repr=False)
    _log_offset: int = field(default=0, repr=False)

    # -- diagnostics --
    def log_tail(self, lines: int = 80) -> str:
        return _tail(self.log_path, lines)

    def log_errors(self, limit: int = 12) -> list[str]:
        """The first distinct error lines of the standalone log (shortened)."""
        seen: list[str] = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if "[error" in line and line[:300] not in seen:
                seen.append(line[:300])
                if len(seen) >= limit:
                    break
        return seen

    def new_log_lines(self) -> list[str]:
        """Lines the standalone log gained since the last call."""
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            chunk = log.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._log_offset += len(complete)
        return complete.decode("utf-8", errors="replace").splitlines()

    def fail(self, message: str) -> NoReturn:
        """Fail the test with the message, the log's error lines and the end of the standalone log."""
        errors = "\n".join(self.log_errors()) or "(none)"
        pytest.fail(f"{message}\n--- error lines of {self.log_path} ---\n{errors}\n"
                    f"--- last lines ---\n{self.log_tail()}", pytrace=False)

    # -- REST API v2 --
    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.base_url, timeout=30.0)
        return self._client

    def login(self) -> None:
        """Get a bearer token (SimpleAuthManager, user from the passwords file) for the next calls."""
        response = self.client.post("/auth/token", json={"username": USERNAME, "password": PASSWORD})
        if response.status_code not in (200, 201):
            self.fail(f"POST /auth/token answered {response.status_code}: {response.text[:500]}")
        self.client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def api(self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.fail(f"{method} {path} did not answer: {exc!r}")
        if response.status_code not in expect:
            self.fail(f"{method} {path} answered {response.status_code} (expected {expect}): {response.text[:1000]}")
        return response.json() if response.content else None

    @staticmethod
    def run_path(dag_id: str, run_id: str) -> str:
        return f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"

    def wait_for_dag(self, dag_id: str, timeout: float = PARSE_TIMEOUT) -> dict:
        """Until the dag-processor has parsed the DAG (its import errors are shown otherwise)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.client.get(f"/api/v2/dags/{dag_id}")
            if response.status_code == 200:
                return response.json()
            time.sleep(1.0)
        errors = self.api("GET", "/api/v2/importErrors")
        self.fail(f"DAG {dag_id} was not parsed within {timeout:.0f} s; import errors: {json.dumps(errors)[:3000]}")

    def unpause(self, dag_id: str) -> None:
        dag = self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        assert dag["is_paused"] is False

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        body = self.api("GET", f"{self.run_path(dag_id, run_id)}/taskInstances", params={"limit": 200})
        return body["task_instances"]

    def describe_run(self, dag_id: str, run_id: str) -> str:
        rows = sorted(self.task_instances(dag_id, run_id), key=lambda ti: (ti["task_id"], ti["map_index"]))
        return "\n".join(
            f"  {ti['task_id']}[{ti['map_index']}]: {ti['state']} (try {ti['try_number']})" for ti in rows
        )

    def wait_for_runs(self, dag_id: str, run_ids: list[str], timeout: float,
                      fail_on_trigger_load_error: bool = True) -> dict[str, dict]:
        """Poll until every run is terminal; fail with their task states and the log tail otherwise.

        A trigger the triggerer cannot load fails at once: Airflow may leave such a task deferred
        until its deadline, which would only show up as a timeout.
        """
        deadline = time.monotonic() + timeout
        runs: dict[str, dict] = {}
        self.new_log_lines()  # only what happens from now on
        while time.monotonic() < deadline:
            runs = {run_id: self.api("GET", self.run_path(dag_id, run_id)) for run_id in run_ids}
            if all(run["state"] in TERMINAL_RUN_STATES for run in runs.values()):
                return runs
            load_errors = [line for line in self.new_log_lines() if "Trigger failed to load code" in line]
            if fail_on_trigger_load_error and load_errors:
                self.fail("the triggerer could not load a trigger class:\n" + "\n".join(load_errors[:5]))
            time.sleep(2.0)
        details = "\n".join(
            f"{run_id}: {runs.get(run_id, {}).get('state')}\n{self.describe_run(dag_id, run_id)}" for run_id in run_ids
        )
        self.fail(f"runs of {dag_id} not finished within {timeout:.0f} s:\n{details}")

    def task_log_events(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> list[dict]:
        """The task's log of one try as the UI shows it (the triggerer's part included)."""
        body = self.api(
            "GET",
            f"{self.run_path(dag_id, run_id)}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true"},
            headers={"Accept": "application/json"},
        )
        content = body.get("content") or []
        return [event if isinstance(event, dict) else {"event": str(event)} for event in content]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        entry = self.api("GET", f"{self.run_path(dag_id, run_id)}/taskInstances/{task_id}/xcomEntries/{key}")
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) else value

    def airflow_cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Run an ``airflow`` CLI command against this standalone's home and database."""
        result = subprocess.run(  # noqa: S603 - our venv's airflow, fixed arguments
            [str(AIRFLOW), *args], env=self.env, cwd=str(self.home), capture_output=True, text=True,
            timeout=timeout,
        )
        return result

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _write_settings(root: Path) -> tuple[Path, Path]:
    """Test settings: the bundled ones, one candidate, fast waits, private results store and staging."""
    raw = yaml.safe_load(BUNDLED_CONFIG.read_text(encoding="utf-8"))
    raw["candidates"] = [c for c in raw["candidates"] if c["model_name"] == CANDIDATE]
    assert raw["candidates"], f"{CANDIDATE} is no longer a candidate in {BUNDLED_CONFIG}"
    # One retry: Airflow 3.3 can fail a resumed deferred task when the executor reports the exit of
    # its deferring attempt late (apache/airflow#72716); production settings retry twice anyway.
    raw["waits"].update(poll_interval=0.5, retries=1, retry_delay=1, deployment_timeout=90,
                        evaluation_timeout=90, customization_timeout=90, model_sync_timeout=90)
    results_path = root / "results.sqlite3"
    raw["results"]["sqlite_path"] = str(results_path)
    raw["staging"]["base_uri"] = (root / "staging").as_uri()
    config_path = root / "flywheel.yaml"
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return config_path, results_path


def _write_probe_files(folder: Path) -> None:
    """The negative-control DAG and its dags-folder-only trigger module."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "probe_trigger.py").write_text(PROBE_TRIGGER_MODULE, encoding="utf-8")
    (folder / "triggerer_probe.py").write_text(PROBE_DAG_FILE, encoding="utf-8")
    (folder / ".airflowignore").write_text("probe_trigger.py\n", encoding="utf-8")


def _write_dags_folder(dags: Path) -> None:
    """The project's DAG file (linked, not copied) plus the negative control."""
    dags.mkdir()
    (dags / "flywheel.py").symlink_to(PROJECT_ROOT / "dags" / "flywheel.py")
    _write_probe_files(dags)


def _wait_until_healthy(standalone: Standalone, timeout: float = STARTUP_TIMEOUT) -> None:
    """Until the api-server answers and reports the scheduler, triggerer and dag-processor healthy."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if standalone.process.poll() is not None:
            standalone.fail(f"airflow standalone exited with code {standalone.process.returncode}")
        try:
            response = httpx.get(f"{standalone.base_url}/api/v2/monitor/health", timeout=5.0)
            health = response.json()
            last = json.dumps({name: part.get("status") for name, part in health.items()})
            if response.status_code == 200 and all(part.get("status") == "healthy" for part in health.values()):
                return
        except (httpx.HTTPError, ValueError) as exc:
            last = type(exc).__name__
        time.sleep(1.0)
    standalone.fail(f"airflow standalone was not healthy within {timeout:.0f} s (last health: {last})")


@pytest.fixture(scope="module")
def standalone(tmp_path_factory) -> Iterator[Standalone]:
    """``airflow standalone`` against the NeMo emulator in a private home; stopped afterwards."""
    if not AIRFLOW.is_file():
        pytest.fail(f"{AIRFLOW} not found: run the tests with the project's venv (make setup)", pytrace=False)
    from include.nemo_emulator.testing import running_emulator

    root = tmp_path_factory.mktemp("standalone")
    home, dags = root / "airflow-home", root / "dags"
    home.mkdir()
    _write_dags_folder(dags)
    config_path, results_path = _write_settings(root)
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({USERNAME: PASSWORD}), encoding="utf-8")
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    with ExitStack() as stack:
        emulator = stack.enter_context(
            running_emulator(job_duration=1.0, deployment_duration=1.0, sync_duration=0.5, queue_duration=0.2)
        )
        # Nothing of the pytest process's own Airflow setup (tests/conftest.py: unit-test mode, ...) leaks in.
        env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "FLYWHEEL_"))}
        env.update(
            PATH=os.pathsep.join([str(VENV_BIN), env.get("PATH", "")]),
            PYTHONPATH=str(PROJECT_ROOT),
            FLYWHEEL_CONFIG=str(config_path),
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__DAGS_FOLDER=str(dags),
            AIRFLOW__CORE__PLUGINS_FOLDER=str(PROJECT_ROOT / "plugins"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__PARALLELISM="4",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{USERNAME}:admin",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__PORT=str(port),
            AIRFLOW__API__WORKERS="1",
            AIRFLOW__API__BASE_URL=base_url,
            # Workers reach the execution API here (the default assumes port 8080).
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{base_url}/execution/",
            # The scheduler's and triggerer's log servers: free ports, so a `make up` or another
            # standalone on this machine does not collide (they bind all interfaces; Airflow has no
            # setting for their host).
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(_free_port()),
            AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(_free_port()),
            # Only the runs the tests create: today's cron interval is outside the sample logs.
            AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",
            AIRFLOW_CONN_NEMO_DEFAULT=json.dumps({"conn_type": "nemo", "host": emulator.base_url}),
            AIRFLOW_CONN_NEMO_DATASTORE_DEFAULT=json.dumps({"conn_type": "nemo_datastore", "host": emulator.base_url}),
            AIRFLOW_CONN_NIM_DEFAULT=json.dumps({"conn_type": "nim", "host": emulator.nim_url}),
        )
        log_path = root / "standalone.log"
        with log_path.open("wb") as log:
            # Its own session and process group (setsid): standalone ignores SIGINT, and stopping
            # the group stops every component and worker it started.
            process = subprocess.Popen(  # noqa: S603 - our venv's airflow, fixed arguments
                [str(AIRFLOW), "standalone"], env=env, cwd=str(home), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        stack.callback(_stop_process_group, process)
        from include.flywheel.config import load_config

        logs_path = load_config(config_path).workload(WORKLOAD_ID).logs.resolved_path()
        handle = Standalone(home=home, base_url=base_url, env=env, log_path=log_path, process=process,
                            logs_path=logs_path, results_path=results_path)
        stack.callback(handle.close)
        _wait_until_healthy(handle)
        handle.login()
        # The GPU pool as `make up` creates it; deferred tasks hold their slots (include_deferred).
        pool = handle.api("POST", "/api/v2/pools", json={
            "name": "nemo_gpu", "slots": 4, "description": "GPU-bound NeMo work", "include_deferred": True,
        }, expect=(200, 201))
        assert pool["include_deferred"] is True
        yield handle


# --- tests ----------------------------------------------------------------------------------------

def test_rest_trigger_with_conf_runs_deferred_tasks_on_the_real_triggerer(standalone: Standalone) -> None:
    dag = standalone.wait_for_dag(DAG_ID)
    assert dag["timetable_summary"] == "0 2 * * *"
    # What the UI's trigger form renders: the window fields and the candidate choice.
    params = standalone.api("GET", f"/api/v2/dags/{DAG_ID}/details")["params"]
    assert {"log_window_start", "log_window_end", "candidates", "overrides"} <= set(params)
    assert params["candidates"]["schema"]["items"]["enum"] == [CANDIDATE]
    standalone.unpause(DAG_ID)
    conf = {"log_window_start": "2026-11-18", "log_window_end": "2026-11-19", "candidates": [CANDIDATE]}
    run = standalone.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
    run_id = run["dag_run_id"]
    assert run["conf"] == conf

    finished = standalone.wait_for_runs(DAG_ID, [run_id], RUN_TIMEOUT)[run_id]
    if finished["state"] != "success":
        standalone.fail(f"run {run_id} ended {finished['state']}:\n{standalone.describe_run(DAG_ID, run_id)}")
    tis = {(ti["task_id"], ti["map_index"]): ti for ti in standalone.task_instances(DAG_ID, run_id)}
    retried = sorted(task for (task, _), ti in tis.items() if ti["try_number"] > 1)
    print(f"\nREST run {run_id}: success; tasks that needed a retry: {retried or 'none'}")

    # The conf reached the tasks: the window of the params, and only the chosen candidate.
    extracted = standalone.xcom(DAG_ID, run_id, "extract_logs")
    assert extracted["window"]["source"] == "params"
    assert (_utc(extracted["window"]["start"]), _utc(extracted["window"]["end"])) == (
        datetime(2026, 11, 18, tzinfo=timezone.utc), datetime(2026, 11, 19, tzinfo=timezone.utc))
    expected = count_sample_records(standalone.logs_path, datetime(2026, 11, 18, tzinfo=timezone.utc),
                                    datetime(2026, 11, 19, tzinfo=timezone.utc))
    assert extracted["records"] == expected
    print(f"REST run window 2026-11-18 -> 2026-11-19: {extracted['records']} records extracted")
    assert all(tis[(task, -1)]["state"] == "success" for task in DEFERRING_TASKS)

    # Each deferring task was resumed by the triggerer process: the UI's task log holds the log file
    # that the triggerer (job id in its name) wrote, with our trigger module's lines and the event.
    triggerer_jobs = standalone.api("GET", "/api/v2/jobs", params={"job_type": "TriggererJob"})["jobs"]
    triggerer_ids = {job["id"] for job in triggerer_jobs}
    assert triggerer_ids, "no triggerer job is registered"
    for task_id in DEFERRING_TASKS:
        events = []
        for try_number in range(1, tis[(task_id, -1)]["try_number"] + 1):
            events += standalone.task_log_events(DAG_ID, run_id, task_id, try_number)
        texts = [str(event.get("event", "")) for event in events]
        trigger_files = [t for t in texts if any(t.endswith(f".log.trigger.{job_id}.log") for job_id in triggerer_ids)]
        fired = [e for e in events if e.get("event") == "Trigger fired event" and "'success'" in str(e.get("result"))]
        ours = [e for e in events if str(e.get("logger", "")).startswith("include.nemo.triggers")]
        assert trigger_files and fired and ours, (
            f"{task_id} shows no trigger run by the triggerer (files {trigger_files}, fired {len(fired)}, "
            f"include.nemo.triggers lines {len(ours)}); log events:\n" + "\n".join(texts[-40:])
        )


def test_backfill_over_three_days_reads_each_window(standalone: Standalone) -> None:
    standalone.wait_for_dag(DAG_ID)
    # Created while the DAG is paused, so the scheduler never sees a half-created backfill: on SQLite
    # a concurrent scheduler write can make `backfill create` fail with "database is locked", Airflow
    # then deletes the runs it had created, and a scheduler that already examined one of them crashes
    # (ObjectDeletedError). Paused, the failed attempt is simply retried.
    standalone.api("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": True})
    # CLI dates are logical dates, i.e. interval starts at 02:00: a bare --to-date 2026-11-21 means
    # midnight and would leave out the run of 2026-11-21 02:00 (two runs instead of three).
    # The backfill's run conf deselects the candidates: these runs check the data path, cheaply.
    command = ("backfill", "create", "--dag-id", DAG_ID, "--from-date", "2026-11-19",
               "--to-date", "2026-11-21T02:00:00+00:00", "--dag-run-conf", json.dumps({"candidates": []}))
    for attempt in range(1, 4):
        result = standalone.airflow_cli(*command)
        if result.returncode == 0 or "database is locked" not in result.stderr + result.stdout:
            break
        time.sleep(2.0 * attempt)
    if result.returncode != 0:
        standalone.fail(f"airflow {' '.join(command)} failed ({result.returncode}, attempt {attempt}):\n"
                        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    standalone.unpause(DAG_ID)
    deadline = time.monotonic() + 60
    runs: list[dict] = []
    while time.monotonic() < deadline and len(runs) < 3:
        runs = standalone.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns", params={"run_type": "backfill"})["dag_runs"]
        time.sleep(1.0)
    assert len(runs) == 3, f"expected 3 backfill runs, got {[r['dag_run_id'] for r in runs]}"

    finished = standalone.wait_for_runs(DAG_ID, [run["dag_run_id"] for run in runs], BACKFILL_TIMEOUT)
    failed = {run_id: run["state"] for run_id, run in finished.items() if run["state"] != "success"}
    if failed:
        standalone.fail("backfill runs did not succeed:\n" + "\n".join(
            f"{run_id}: {state}\n{standalone.describe_run(DAG_ID, run_id)}" for run_id, state in failed.items()))

    intervals = sorted((_utc(run["data_interval_start"]), _utc(run["data_interval_end"]), run_id)
                       for run_id, run in finished.items())
    assert [(start, end) for start, end, _ in intervals] == [
        (datetime(2026, 11, day, 2, tzinfo=timezone.utc), datetime(2026, 11, day + 1, 2, tzinfo=timezone.utc))
        for day in (19, 20, 21)
    ]

    from include.flywheel.config import ResultsSettings
    from include.flywheel.results import flywheel_run_id, open_result_store

    print("\nbackfill runs (data interval = log window, UTC):")
    counts = []
    with open_result_store(ResultsSettings(sqlite_path=str(standalone.results_path))) as store:
        for start, end, run_id in intervals:
            extracted = standalone.xcom(DAG_ID, run_id, "extract_logs")
            window = extracted["window"]
            assert window["source"] == "data_interval"
            assert (_utc(window["start"]), _utc(window["end"])) == (start, end)
            expected = count_sample_records(standalone.logs_path, start, end)
            assert extracted["records"] == expected, (
                f"{run_id}: extracted {extracted['records']}, the sample files hold {expected}")
            # Only its own window: every staged record's timestamp lies inside the interval.
            staged = Path(urlparse(extracted["uri"]).path).read_text(encoding="utf-8").splitlines()
            assert len(staged) == expected
            outside = [
                record.get("timestamp") for record in map(json.loads, staged)
                if not start.timestamp() <= (_epoch_seconds(record.get("timestamp")) or -1.0) < end.timestamp()
            ]
            assert outside == [], f"{run_id} staged records outside its window: {outside[:5]}"
            document = store.get_run(flywheel_run_id(DAG_ID, run_id))
            assert document is not None and document["status"] == "completed"
            assert document["num_records"] == expected
            assert (_utc(document["log_window"]["start"]), _utc(document["log_window"]["end"])) == (start, end)
            counts.append(extracted["records"])
            print(f"  {run_id}: {start:%Y-%m-%d %H:%M} -> {end:%Y-%m-%d %H:%M}: {extracted['records']} records "
                  f"(sample files: {expected})")
    assert len(set(counts)) == 3, f"the three windows should hold different record counts, got {counts}"


def _start_inline_probe(standalone: Standalone) -> subprocess.Popen:
    """``airflow dags test`` of the probe DAG (triggers run in-process) in its own home and database.

    Its own SQLite database: a second writer on the standalone's one would risk "database is locked".
    """
    root = standalone.home.parent / "inline"
    _write_probe_files(root / "dags")
    env = dict(standalone.env, AIRFLOW_HOME=str(root / "home"), AIRFLOW__CORE__DAGS_FOLDER=str(root / "dags"))
    airflow = shlex.quote(str(AIRFLOW))
    script = f"{airflow} db migrate > /dev/null && exec {airflow} dags test {PROBE_DAG_ID}"
    return subprocess.Popen(  # noqa: S603 - fixed script, our venv's airflow
        ["/bin/bash", "-c", script], env=env, cwd=str(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )


def test_a_trigger_the_triggerer_cannot_import_fails_the_task(standalone: Standalone) -> None:
    # In-process triggers (what dag.test() and `airflow dags test` do) hide the problem: the probe passes.
    inline = _start_inline_probe(standalone)
    try:
        # The real triggerer cannot import a trigger that only the dags folder provides: the task fails.
        standalone.wait_for_dag(PROBE_DAG_ID)
        standalone.unpause(PROBE_DAG_ID)
        run = standalone.api("POST", f"/api/v2/dags/{PROBE_DAG_ID}/dagRuns", json={"logical_date": None})
        run_id = run["dag_run_id"]
        standalone.wait_for_runs(PROBE_DAG_ID, [run_id], PROBE_TIMEOUT, fail_on_trigger_load_error=False)
        states = {ti["task_id"]: ti["state"] for ti in standalone.task_instances(PROBE_DAG_ID, run_id)}
        inline_output, _ = inline.communicate(timeout=PROBE_TIMEOUT)
    finally:
        _stop_process_group(inline, grace=5.0)
    assert inline.returncode == 0, f"airflow dags test {PROBE_DAG_ID} failed:\n{inline_output[-3000:]}"
    assert "running trigger in line" in inline_output, inline_output[-3000:]
    assert f"Marking run <DagRun {PROBE_DAG_ID}" in inline_output and "successful" in inline_output, (
        inline_output[-3000:])

    assert states == {"importable_trigger": "success", "dags_folder_trigger": "failed"}, states
    texts = [json.dumps(event) for event in standalone.task_log_events(PROBE_DAG_ID, run_id, "dags_folder_trigger", 1)]
    # The worker could import the trigger (the task deferred); the triggerer could not.
    assert any("Pausing task as DEFERRED" in text for text in texts), "\n".join(texts[-20:])
    assert any("No module named 'probe_trigger'" in text for text in texts), "\n".join(texts[-20:])
