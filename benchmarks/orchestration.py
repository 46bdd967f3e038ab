"""Benchmark: what the orchestration costs, and whether NeMo waits hold worker slots.

Two parts, both against the NeMo emulator (``include/nemo_emulator``, NOT NeMo), each in its own
private AIRFLOW_HOME (SQLite) under a temp dir. Nothing here asserts on time: it prints figures.

**(a) overhead** -- the full 3-candidate flywheel (``flywheel__customer-support-tools``, bundled
sample window 2026-11-17..2026-11-24) run with ``dag.test()`` while every emulated job,
deployment, model sync and queue takes ~0 s. The run's wall time is split into:

* *remote time*: the union, over the run, of the intervals in which the emulator was serving a
  request (from its access log: end time and duration of every request) or had an evaluation /
  customization job in flight (``created_at`` .. completion, from its job lists). Evaluation jobs
  still take the time the emulator needs to compute the rows, so that is counted as remote;
* *orchestration overhead* = wall time - remote time: everything else (Airflow's loop, task
  start-up, XCom, DB writes, trigger polling granularity, and the project's own task code such as
  log extraction and dataset preparation).

Per task the same split uses each task instance's ``start_date``/``end_date`` from the Airflow DB
(``dag.test()`` runs tasks one at a time, so each remote interval falls inside one task or in a
gap between tasks). Data tasks (plain Python) and NeMo tasks (operators, sensors) are reported
apart. A chain of no-op tasks run the same way gives Airflow's own floor per task.

**(b) slots** -- the same DAG (4 candidates, 2 of them customized) under a real ``airflow
standalone`` (scheduler + LocalExecutor + triggerer + dag-processor + api-server, parallelism 4)
while its 8 base/ICL evaluations and 2 customizations each take 60 s in the emulator: 10 jobs of
60 s in flight at once. Every second the script samples the run's task-instance states (REST
API), the emulator's in-flight jobs and the LocalExecutor worker processes (busy = not
``<idle>``), and reports the slots held (``running`` task instances, busy workers) while the
10 jobs run. The target is 0: every wait deferred to the triggerer. Once the 10 jobs are
submitted, new evaluations are made short (the 2 customized evaluations), so the run ends soon.
It also reports the DAG-file parse time of every task start (from the task logs) and the tasks
that needed a retry (Airflow 3.3 can fail a deferred task whose trigger fires very soon after it
deferred, apache/airflow#72716; the bundled 2 retries re-attach to the same job).

    .venv/bin/python benchmarks/orchestration.py              # both parts (~3-4 min)
    .venv/bin/python benchmarks/orchestration.py --part overhead --repeat 3 --per-task
    .venv/bin/python benchmarks/orchestration.py --part slots --job-seconds 60 --budget 300
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import yaml  # noqa: E402

TOOLS_WORKLOAD = "customer-support-tools"
TOOLS_DAG = f"flywheel__{TOOLS_WORKLOAD}"
NOOP_DAG = "bench__noop_chain"
# The bundled sample logs cover these days (UTC).
SAMPLE_WINDOW = {"log_window_start": "2026-11-17", "log_window_end": "2026-11-24"}
GPU_POOL = "nemo_gpu"
BUNDLED_CONFIG = PROJECT_ROOT / "include" / "config" / "flywheel.yaml"

# Tasks that run the project's own Python (no NeMo call); every other task is a NeMo operator or sensor.
DATA_TASKS = frozenset({"extract_logs", "prepare_datasets", "plan_uploads", "plan", "aggregate_results", "report",
                        "finalize"})
# (b): a fourth candidate without customization makes 4 x (base, icl) + 2 customizations = 10 jobs at once.
EXTRA_CANDIDATE = {"model_name": "meta/llama-3.1-70b-instruct", "tag": "1.8.3", "context_length": 8192, "gpus": 1,
                   "customization_enabled": False}
TERMINAL_JOB_STATES = frozenset({"completed", "failed", "cancelled"})
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
# Process title of a LocalExecutor worker: ``... <idle>`` or ``... <task it runs>``.
WORKER_TITLE = "airflow worker -- LocalExecutor"
# (b): deployments, model syncs and the customized evaluations (after the 10 long jobs) take this long, s.
SHORT_STEP_SECONDS = 5.0

NOOP_DAG_SOURCE = '''"""No-op chain: Airflow's own cost per task (benchmarks/orchestration.py)."""
from datetime import datetime

from airflow.sdk import DAG, task

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["benchmark"]):
    previous = None
    for index in range({count}):

        @task(task_id=f"noop_{{index:02d}}")
        def noop() -> None:
            return None

        current = noop()
        if previous is not None:
            previous >> current
        previous = current
'''

_ACCESS_LINE = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ include\.nemo_emulator\.app: "
    r"(?P<method>[A-Z]+) (?P<path>\S+) -> (?P<status>\d{3}) \((?P<ms>[\d.]+) ms\)"
)


class BenchmarkError(RuntimeError):
    """The benchmark could not produce its figures; the message says what went wrong and where to look."""


# -- intervals ----------------------------------------------------------------------------------------------

Interval = tuple[float, float]


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping intervals covering the same instants."""
    merged: list[list[float]] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def covered(intervals: Iterable[Interval], start: float, end: float) -> float:
    """Seconds of ``[start, end]`` covered by at least one of ``intervals``."""
    return sum(max(0.0, min(e, end) - max(s, start)) for s, e in merge(intervals))


def _iso_to_epoch(value: str) -> float:
    """An emulator timestamp (ISO, UTC, no offset) as epoch seconds."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


# -- emulator evidence --------------------------------------------------------------------------------------


def request_intervals(log_path: Path) -> list[Interval]:
    """``(start, end)`` of every NeMo/NIM request the emulator served, from its access log.

    The log line is written when the response is ready, with the handling time in ms; its
    timestamp is local time with ms precision. Control (``/emulator``) and ``/health`` calls are
    the benchmark's own and are left out.
    """
    intervals = []
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _ACCESS_LINE.match(line)
        if not match or match["path"].startswith("/emulator") or match["path"] == "/health":
            continue
        end = time.mktime(time.strptime(match["at"][:19], "%Y-%m-%d %H:%M:%S")) + int(match["at"][20:]) / 1000
        intervals.append((end - float(match["ms"]) / 1000, end))
    return intervals


def list_jobs(emulator: Any) -> list[dict]:
    """Every evaluation and customization job the emulator knows (``kind`` added), newest first."""
    jobs = []
    for kind, path in (("evaluation", "/v1/evaluation/jobs"), ("customization", "/v1/customization/jobs")):
        response = emulator.client.get(path, params={"page_size": 1000})
        response.raise_for_status()
        jobs += [{**job, "kind": kind} for job in response.json()["data"]]
    return jobs


def job_intervals(jobs: list[dict]) -> list[Interval]:
    """``created_at`` .. completion of each finished job (the emulator's ``updated_at`` is its end)."""
    return [(_iso_to_epoch(job["created_at"]), _iso_to_epoch(job["updated_at"]))
            for job in jobs if job.get("status") in TERMINAL_JOB_STATES]


# -- (a) orchestration overhead with dag.test() -------------------------------------------------------------


@dataclass
class TaskTiming:
    """One task instance of a ``dag.test()`` run, with the remote time inside its span."""

    task_id: str
    map_index: int
    state: str
    start: float
    end: float
    remote: float = 0.0

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def overhead(self) -> float:
        return self.duration - self.remote

    @property
    def kind(self) -> str:
        return "data" if self.task_id.rsplit(".", 1)[-1] in DATA_TASKS else "nemo"

    @property
    def label(self) -> str:
        return self.task_id + (f"[{self.map_index}]" if self.map_index >= 0 else "")


@dataclass
class RunFigures:
    """One ``dag.test()`` run split into remote time and orchestration overhead."""

    label: str
    state: str
    wall: float
    tasks: list[TaskTiming]
    first_task_after: float
    remote: float
    requests: int
    request_seconds: float
    jobs: int
    job_seconds: float

    ended_after_last_task: float = 0.0

    @property
    def task_union(self) -> float:
        return sum(end - start for start, end in merge((t.start, t.end) for t in self.tasks))

    @property
    def between_tasks(self) -> float:
        """Seconds between the first task's start and the last task's end in which no task ran."""
        return self.wall - self.task_union - self.first_task_after - self.ended_after_last_task

    @property
    def overhead(self) -> float:
        return self.wall - self.remote


def _prepare_private_home(prefix: str) -> Path:
    home = Path(tempfile.mkdtemp(prefix=prefix))
    (home / "dags").mkdir()
    return home


def _bench_settings(home: Path, waits: dict[str, float], candidates_extra: list[dict] | None = None,
                    only_tools_workload: bool = False) -> Path:
    """The bundled settings with benchmark waits and a private results store and staging."""
    raw = yaml.safe_load(BUNDLED_CONFIG.read_text())
    raw["waits"].update(waits)
    raw["results"]["sqlite_path"] = str(home / "results.sqlite3")
    raw["staging"]["base_uri"] = (home / "staging").as_uri()
    if candidates_extra:
        raw["candidates"] = list(raw["candidates"]) + candidates_extra
    if only_tools_workload:
        # No schedule: unpausing must not start a scheduled run next to the benchmark's own run.
        raw["workloads"] = [dict(w, schedule=None) for w in raw["workloads"] if w["workload_id"] == TOOLS_WORKLOAD]
    path = home / "flywheel.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _connection_env(emulator: Any) -> dict[str, str]:
    return {
        "AIRFLOW_CONN_NEMO_DEFAULT": json.dumps({"conn_type": "nemo", "host": emulator.base_url}),
        "AIRFLOW_CONN_NEMO_DATASTORE_DEFAULT": json.dumps({"conn_type": "nemo_datastore", "host": emulator.base_url}),
        "AIRFLOW_CONN_NIM_DEFAULT": json.dumps({"conn_type": "nim", "host": emulator.nim_url}),
    }


def _task_timings(dag_run: Any) -> list[TaskTiming]:
    timings = []
    for ti in dag_run.get_task_instances():
        if ti.start_date is None or ti.end_date is None:
            continue
        timings.append(TaskTiming(ti.task_id, ti.map_index, str(ti.state), ti.start_date.timestamp(),
                                  ti.end_date.timestamp()))
    return sorted(timings, key=lambda t: t.start)


def _run_figures(label: str, dag_run: Any, started: float, ended: float, emulator: Any) -> RunFigures:
    tasks = _task_timings(dag_run)
    requests = [(s, e) for s, e in request_intervals(emulator.log_path) if s >= started - 1 and e <= ended + 1]
    jobs = [job for job in list_jobs(emulator) if started <= _iso_to_epoch(job["created_at"]) <= ended]
    jobs_in_flight = job_intervals(jobs)
    remote_intervals = requests + jobs_in_flight
    for timing in tasks:
        timing.remote = covered(remote_intervals, timing.start, timing.end)
    return RunFigures(
        label=label,
        state=str(dag_run.state),
        wall=ended - started,
        tasks=tasks,
        first_task_after=(tasks[0].start - started) if tasks else 0.0,
        ended_after_last_task=(ended - max(t.end for t in tasks)) if tasks else 0.0,
        remote=covered(remote_intervals, started, ended),
        requests=len(requests),
        request_seconds=sum(e - s for s, e in requests),
        jobs=len(jobs),
        job_seconds=covered(jobs_in_flight, started, ended),
    )


def run_overhead(repeat: int, poll_interval: float, noop_tasks: int, keep: bool) -> dict[str, Any]:
    """Part (a): ``repeat`` full flywheel runs with ``dag.test()`` and ~0 s emulator jobs, then a no-op chain."""
    if "airflow" in sys.modules:
        raise BenchmarkError("Airflow was imported before its private AIRFLOW_HOME was set; run part (a) first.")
    home = _prepare_private_home("flywheel-bench-overhead-")
    (home / "dags" / "flywheel.py").symlink_to(PROJECT_ROOT / "dags" / "flywheel.py")
    (home / "dags" / "bench_noop.py").write_text(NOOP_DAG_SOURCE.format(dag_id=NOOP_DAG, count=noop_tasks))
    settings = _bench_settings(home, {"poll_interval": poll_interval, "retries": 0, "retry_delay": 1})
    os.environ.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("BENCH_AIRFLOW_LOG_LEVEL", "WARNING"),
        "FLYWHEEL_CONFIG": str(settings),
    })
    from include.nemo_emulator.testing import running_emulator

    runs: list[RunFigures] = []
    try:
        with running_emulator(job_duration=0.0, deployment_duration=0.0, sync_duration=0.0,
                              queue_duration=0.0, log_level="INFO") as emulator:
            os.environ.update(_connection_env(emulator))
            from airflow.dag_processing.dagbag import DagBag
            from airflow.models.pool import Pool
            from airflow.utils import db

            db.resetdb()
            Pool.create_or_update_pool(GPU_POOL, slots=4, description="GPU-bound NeMo work", include_deferred=True)
            bag = DagBag(dag_folder=str(home / "dags"))
            if bag.import_errors:
                raise BenchmarkError(f"DAG import errors: {bag.import_errors}")
            for index in range(repeat):
                print(f"(a) flywheel run {index + 1}/{repeat} with dag.test() ...", flush=True)
                started = time.time()
                dag_run = bag.dags[TOOLS_DAG].test(run_conf=SAMPLE_WINDOW)
                ended = time.time()
                label = "cold (1st in process)" if index == 0 else f"warm (#{index + 1})"
                runs.append(_run_figures(label, dag_run, started, ended, emulator))
            print(f"(a) no-op chain of {noop_tasks} tasks with dag.test() ...", flush=True)
            started = time.time()
            noop_run = bag.dags[NOOP_DAG].test()
            ended = time.time()
            noop = _run_figures("no-op chain", noop_run, started, ended, emulator)
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    return {"runs": runs, "noop": noop, "poll_interval": poll_interval, "home": str(home) if keep else None}


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def print_overhead(result: dict[str, Any], per_task: bool) -> dict[str, Any]:
    """Print the figures of part (a); return them as plain data (for ``--json``)."""
    runs: list[RunFigures] = result["runs"]
    noop: RunFigures = result["noop"]
    out: dict[str, Any] = {"poll_interval": result["poll_interval"], "runs": []}
    print()
    print("(a) Full 3-candidate flywheel, dag.test(), emulator jobs/deployments/sync/queue ~0 s, "
          f"poll_interval {result['poll_interval']} s")
    header = f"{'figure':<58}" + "".join(f"{run.label:>22}" for run in runs)
    print(header)
    print("-" * len(header))

    def row(name: str, values: list[str]) -> None:
        print(f"{name:<58}" + "".join(f"{value:>22}" for value in values))

    row("run state", [run.state for run in runs])
    row("wall time of dag.test() (s)", [f"{run.wall:.2f}" for run in runs])
    row("  before the first task starts (s)", [f"{run.first_task_after:.2f}" for run in runs])
    row("  task instances (count)", [str(len(run.tasks)) for run in runs])
    row("  sum of task durations, start..end in the DB (s)", [f"{sum(t.duration for t in run.tasks):.2f}"
                                                              for run in runs])
    row("  between tasks, no task running (s)", [f"{run.between_tasks:.2f}" for run in runs])
    row("  after the last task ends (s)", [f"{run.ended_after_last_task:.2f}" for run in runs])
    row("remote time: emulator request or job in flight (s)", [f"{run.remote:.2f}" for run in runs])
    row("  requests served (count / sum of handling s)", [f"{run.requests} / {run.request_seconds:.2f}"
                                                           for run in runs])
    row("  evaluation+customization jobs (count / s in flight)", [f"{run.jobs} / {run.job_seconds:.2f}"
                                                                   for run in runs])
    row("ORCHESTRATION OVERHEAD = wall - remote (s)", [f"{run.overhead:.2f}" for run in runs])
    row("  share of wall time", [f"{100 * run.overhead / run.wall:.0f} %" for run in runs])
    for kind, title in (("data", "data tasks (project Python)"), ("nemo", "NeMo tasks (operators/sensors)")):
        row(f"{title}: count / sum of durations (s)",
            [f"{len(ts)} / {sum(t.duration for t in ts):.2f}"
             for ts in ([t for t in run.tasks if t.kind == kind] for run in runs)])
        row("  of which remote (s)", [f"{sum(t.remote for t in run.tasks if t.kind == kind):.2f}" for run in runs])
        row("  mean overhead per task (s)", [f"{_mean([t.overhead for t in run.tasks if t.kind == kind]):.3f}"
                                             for run in runs])
    noop_mean = _mean([t.duration for t in noop.tasks])
    noop_gap = noop.between_tasks / max(1, len(noop.tasks) - 1)
    print()
    print(f"Airflow's floor, {len(noop.tasks)} chained no-op tasks with dag.test(): wall {noop.wall:.2f} s "
          f"({noop.first_task_after:.2f} s before the first task), mean task duration {noop_mean:.3f} s, "
          f"mean gap between two tasks {noop_gap:.3f} s")
    for run in runs:
        out["runs"].append({
            "label": run.label, "state": run.state, "wall_s": run.wall, "first_task_after_s": run.first_task_after,
            "task_count": len(run.tasks), "task_sum_s": sum(t.duration for t in run.tasks),
            "between_tasks_s": run.between_tasks, "after_last_task_s": run.ended_after_last_task,
            "remote_s": run.remote, "requests": run.requests,
            "request_s": run.request_seconds, "jobs": run.jobs, "jobs_in_flight_s": run.job_seconds,
            "overhead_s": run.overhead,
            "tasks": [{"task": t.label, "kind": t.kind, "duration_s": t.duration, "remote_s": t.remote}
                      for t in run.tasks],
        })
    out["noop"] = {"tasks": len(noop.tasks), "wall_s": noop.wall, "first_task_after_s": noop.first_task_after,
                   "mean_task_s": noop_mean, "mean_gap_s": noop_gap}
    if per_task:
        run = runs[-1]
        print()
        print(f"Per task, {run.label} run (dag.test runs them one at a time, in this order):")
        print(f"{'task':<62}{'kind':>6}{'duration s':>12}{'remote s':>10}{'overhead s':>12}")
        for t in run.tasks:
            print(f"{t.label:<62}{t.kind:>6}{t.duration:>12.3f}{t.remote:>10.3f}{t.overhead:>12.3f}")
    return out


# -- (b) worker slots held while NeMo jobs run, under airflow standalone ------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Standalone:
    """A running ``airflow standalone`` in its own session (process group)."""

    process: subprocess.Popen
    home: Path
    api_url: str
    log_path: Path

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def standalone_env(home: Path, api_port: int, parallelism: int, extra: dict[str, str]) -> dict[str, str]:
    """The environment of every standalone component: private home, loopback ports, project importable."""
    # Inherited Airflow/flywheel settings (part (a) sets some in this process) must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FLYWHEEL_"))}
    api_url = f"http://127.0.0.1:{api_port}"
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        # Local only, bound to loopback: no login needed for the REST calls below.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": api_url + "/",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": api_url + "/execution/",
        # One secret for every component, so task tokens minted by the scheduler validate in the api-server.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        # Other engineers may run a standalone on this machine: no fixed port.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        # standalone starts its components as ``airflow ...`` from PATH: this venv's first.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        # The triggerer imports trigger classes by classpath: the project must be importable everywhere.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    })
    env.update(extra)
    return env


@contextlib.contextmanager
def running_standalone(home: Path, env: dict[str, str], startup_timeout: float) -> Iterator[Standalone]:
    """Start ``airflow standalone`` in a new session; stop the whole process group on exit."""
    import httpx

    log_path = home / "standalone.log"
    airflow_bin = Path(sys.executable).with_name("airflow")
    api_url = env["AIRFLOW__API__BASE_URL"].rstrip("/")
    with open(log_path, "wb") as log_file:
        # A new session: standalone ignores SIGINT when backgrounded, so it is stopped by process group.
        process = subprocess.Popen(  # noqa: S603 - fixed command
            [str(airflow_bin), "standalone"], env=env, cwd=str(home), stdout=log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    standalone = Standalone(process=process, home=home, api_url=api_url, log_path=log_path)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise BenchmarkError(f"airflow standalone exited with code {process.returncode}; log:\n"
                                     f"{standalone.tail()}")
            if "Exception in thread" in standalone.tail(400):
                # A component failed to start; standalone itself keeps running without it.
                raise BenchmarkError(f"an airflow standalone component failed to start; log {log_path}:\n"
                                     f"{standalone.tail()}")
            try:
                if httpx.get(api_url + "/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BenchmarkError(f"the api-server did not answer within {startup_timeout:.0f} s; log "
                                     f"{log_path}:\n{standalone.tail()}")
            time.sleep(1)
        yield standalone
    finally:
        stop_process_group(process)


def stop_process_group(process: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the process group started with ``process`` (it leads it), then SIGKILL what is left."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    # Workers and task processes of the group may outlive the leader.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def worker_processes(session_id: int) -> tuple[int, int, int]:
    """(LocalExecutor workers, busy workers, their task child processes) in the standalone's session."""
    import psutil

    titles: dict[int, tuple[str, int]] = {}
    for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
        try:
            if os.getsid(proc.info["pid"]) == session_id:
                titles[proc.info["pid"]] = (" ".join(proc.info["cmdline"] or []), proc.info["ppid"])
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue

    def is_worker_title(title: str) -> bool:
        return title.startswith(WORKER_TITLE)

    # A worker forks the task process, which keeps the worker's title: a worker is a titled process
    # whose parent is not one.
    workers = [pid for pid, (title, ppid) in titles.items()
               if is_worker_title(title) and not is_worker_title(titles.get(ppid, ("", 0))[0])]
    busy = [pid for pid in workers if not titles[pid][0].rstrip().endswith("<idle>")]
    children = 0
    for pid in busy:
        with contextlib.suppress(psutil.Error):
            children += len(psutil.Process(pid).children(recursive=True))
    return len(workers), len(busy), children


@dataclass
class Sample:
    """One second of part (b): task-instance states, emulator jobs, worker processes."""

    at: float
    ti_states: Counter
    jobs_in_flight: int
    long_jobs_in_flight: int
    workers: int
    busy_workers: int
    task_processes: int


@dataclass
class SlotsResult:
    """Everything part (b) observed."""

    samples: list[Sample] = field(default_factory=list)
    run_state: str = "?"
    run_wall: float = float("nan")
    startup: float = float("nan")
    long_jobs: int = 0
    long_job_window: Interval | None = None
    final_ti_states: Counter = field(default_factory=Counter)
    parallelism: int = 0
    job_seconds: float = 0.0
    pool_slots: int = 0
    budget_hit: bool = False
    note: str = ""
    failed_tasks: list[str] = field(default_factory=list)
    retried_tasks: list[str] = field(default_factory=list)
    failure_details: dict[str, list[str]] = field(default_factory=dict)
    parse_ms: list[float] = field(default_factory=list)


def _api(client: Any, method: str, path: str, **kwargs: Any) -> Any:
    response = client.request(method, path, **kwargs)
    if response.status_code >= 400:
        raise BenchmarkError(f"{method} {path} answered {response.status_code}: {response.text[:500]}")
    return response.json() if response.content else None


def run_slots(job_seconds: float, parallelism: int, budget: float, keep: bool) -> SlotsResult:
    """Part (b): one flywheel run under ``airflow standalone`` with 10 emulator jobs of ``job_seconds`` at once."""
    import httpx

    from include.nemo_emulator.testing import running_emulator

    began = time.monotonic()
    home = _prepare_private_home("flywheel-bench-slots-")
    # Retries as bundled (2): Airflow 3.3 can fail a deferred task whose trigger fires before the
    # scheduler has processed the executor's event for the deferral exit (apache/airflow#72716); a
    # retry re-attaches to the same NeMo job. Retried tasks are counted and printed.
    settings = _bench_settings(
        home, {"poll_interval": 2.0, "retries": 2, "retry_delay": 2, "evaluation_timeout": 900,
               "customization_timeout": 900, "deployment_timeout": 300, "model_sync_timeout": 300},
        candidates_extra=[EXTRA_CANDIDATE], only_tools_workload=True,
    )
    pool_slots = 16  # >= the 10 GPU tasks deferred at once (the pool counts deferred tasks)
    result = SlotsResult(parallelism=parallelism, job_seconds=job_seconds, pool_slots=pool_slots)
    try:
        # Deployments and syncs take a few seconds (not ~0): a trigger that fires within the scheduler's event
        # latency of its deferral meets the race above more often. They end before the long jobs' wait.
        with running_emulator(evaluation_duration=job_seconds, customization_duration=job_seconds,
                              deployment_duration=SHORT_STEP_SECONDS, sync_duration=SHORT_STEP_SECONDS,
                              queue_duration=0.2) as emulator:
            extra = {"FLYWHEEL_CONFIG": str(settings), "FLYWHEEL_STAGING_BASE_URI": (home / "staging").as_uri(),
                     **_connection_env(emulator)}
            env = standalone_env(home, free_port(), parallelism, extra)
            print(f"(b) starting airflow standalone (parallelism {parallelism}) in {home} ...", flush=True)
            with running_standalone(home, env, startup_timeout=max(30.0, budget / 2)) as airflow, \
                    httpx.Client(base_url=airflow.api_url, timeout=20) as client:
                _api(client, "POST", "/api/v2/pools", json={
                    "name": GPU_POOL, "slots": pool_slots, "description": "GPU-bound NeMo work (benchmark)",
                    "include_deferred": True})
                deadline = began + budget
                while True:
                    response = client.get(f"/api/v2/dags/{TOOLS_DAG}")
                    if response.status_code == 200:
                        break
                    if time.monotonic() > deadline:
                        raise BenchmarkError(f"{TOOLS_DAG} was not parsed within the budget; log:\n{airflow.tail()}")
                    time.sleep(1)
                _api(client, "PATCH", f"/api/v2/dags/{TOOLS_DAG}", json={"is_paused": False})
                result.startup = time.monotonic() - began
                run = _api(client, "POST", f"/api/v2/dags/{TOOLS_DAG}/dagRuns",
                           json={"logical_date": None, "conf": SAMPLE_WINDOW})
                run_id = run["dag_run_id"]
                print(f"(b) run {run_id} triggered after {result.startup:.0f} s; sampling every second ...",
                      flush=True)
                _sample_until_done(client, emulator, airflow, run_id, deadline, result)
        _read_task_logs(home / "logs", result)
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"(b) kept {home}")
    return result


def _read_task_logs(logs: Path, result: SlotsResult) -> None:
    """From the task logs: the DAG-file parse time of every task start, the errors of failed/retried tasks."""
    for path in logs.glob("dag_id=*/run_id=*/task_id=*/**/attempt=*.log*"):
        task = next((p.name.removeprefix("task_id=") for p in path.parents if p.name.startswith("task_id=")), "?")
        troubled = task in {name.split("[")[0] for name in result.failed_tasks + result.retried_tasks}
        for line in path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if event.get("event") == "Worker startup parse complete" and "dag_file_parse_ms" in event:
                result.parse_ms.append(float(event["dag_file_parse_ms"]))
            if troubled and event.get("level") in ("error", "critical"):
                result.failure_details.setdefault(task, []).append(str(event.get("event"))[:300])


def _ti_label(ti: dict) -> str:
    map_index = ti.get("map_index")
    return ti["task_id"] + (f"[{map_index}]" if isinstance(map_index, int) and map_index >= 0 else "")


def _sample_until_done(client: Any, emulator: Any, airflow: Standalone, run_id: str, deadline: float,
                       result: SlotsResult) -> None:
    session_id = os.getsid(airflow.process.pid)
    run_path = f"/api/v2/dags/{TOOLS_DAG}/dagRuns/{run_id}"
    long_ids: set[str] = set()
    switched = False
    triggered = time.monotonic()
    last_print = 0.0
    while True:
        tick = time.monotonic()
        instances = _api(client, "GET", run_path + "/taskInstances", params={"limit": 200})["task_instances"]
        states = Counter(str(ti.get("state")) for ti in instances)
        jobs = list_jobs(emulator)
        in_flight = {job["id"] for job in jobs if job.get("status") not in TERMINAL_JOB_STATES}
        if not switched:
            long_ids = {job["id"] for job in jobs}
            evaluations = sum(job["kind"] == "evaluation" for job in jobs)
            customizations = sum(job["kind"] == "customization" for job in jobs)
            if evaluations >= 8 and customizations >= 2:
                # The 10 long jobs are in; evaluations created from now on (the customized evals) are short.
                emulator.configure(evaluation=SHORT_STEP_SECONDS)
                switched = True
        workers, busy, children = worker_processes(session_id)
        result.samples.append(Sample(at=tick, ti_states=states, jobs_in_flight=len(in_flight),
                                     long_jobs_in_flight=len(in_flight & long_ids), workers=workers,
                                     busy_workers=busy, task_processes=children))
        if tick - last_print >= 10:
            last_print = tick
            print(f"    t+{tick - triggered:5.0f}s  tasks {dict(states)}  jobs in flight {len(in_flight)}  "
                  f"busy workers {busy}/{workers}", flush=True)
        result.failed_tasks = sorted(_ti_label(ti) for ti in instances if ti.get("state") == "failed")
        result.retried_tasks = sorted(_ti_label(ti) for ti in instances if (ti.get("try_number") or 0) > 1)
        run_state = _api(client, "GET", run_path)["state"]
        if run_state in TERMINAL_RUN_STATES:
            result.run_state = run_state
            result.run_wall = time.monotonic() - triggered
            result.final_ti_states = states
            break
        if time.monotonic() > deadline:
            result.run_state, result.budget_hit, result.final_ti_states = run_state, True, states
            result.run_wall = time.monotonic() - triggered
            break
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    long_jobs = [job for job in list_jobs(emulator) if job["id"] in long_ids]
    result.long_jobs = len(long_jobs)
    if long_jobs:
        result.long_job_window = (min(_iso_to_epoch(j["created_at"]) for j in long_jobs),
                                  max(_iso_to_epoch(j["updated_at"]) for j in long_jobs))
    if not switched:
        result.note = "fewer than 8 evaluations + 2 customizations were ever submitted: see the run's task states"


def print_slots(result: SlotsResult) -> dict[str, Any]:
    """Print the figures of part (b); return them as plain data (for ``--json``)."""
    window = [s for s in result.samples if s.long_jobs_in_flight > 0]
    print()
    print(f"(b) Worker slots held while {result.long_jobs} emulator jobs of {result.job_seconds:.0f} s run: "
          f"airflow standalone, LocalExecutor parallelism {result.parallelism}, pool {GPU_POOL} "
          f"{result.pool_slots} slots")
    if result.note:
        print(f"    NOTE: {result.note}")
    print(f"    start-up to run triggered {result.startup:.0f} s; run {result.run_state} after {result.run_wall:.0f} s"
          + (" (BUDGET HIT: stopped before the run ended)" if result.budget_hit else ""))
    print(f"    final task states: {dict(result.final_ti_states)}")
    print(f"    tasks that needed more than one try: {', '.join(result.retried_tasks) or 'none'}")
    if result.failed_tasks:
        print(f"    FAILED tasks (see their logs with --keep): {', '.join(result.failed_tasks)}")
    for task, errors in sorted(result.failure_details.items()):
        for error in errors[:2]:
            print(f"      error logged by {task}: {error}")
    if result.parse_ms:
        print(f"    each task start (first start and every resume after a deferral) re-parses the DAG file: "
              f"{len(result.parse_ms)} parses, mean {statistics.fmean(result.parse_ms):.0f} ms, "
              f"max {max(result.parse_ms):.0f} ms")
    if not window:
        print("    no sample saw one of the long jobs in flight: no slot figures")
        return {"samples": len(result.samples), "window_samples": 0}

    def stats(values: list[int]) -> tuple[int, float]:
        return max(values), statistics.fmean(values)

    figures = {
        "long jobs in flight (emulator)": stats([s.long_jobs_in_flight for s in window]),
        "task instances running (slots held)": stats([s.ti_states.get("running", 0) for s in window]),
        "task instances deferred (no slot)": stats([s.ti_states.get("deferred", 0) for s in window]),
        "task instances queued + scheduled (waiting for a slot)": stats(
            [s.ti_states.get("queued", 0) + s.ti_states.get("scheduled", 0) for s in window]),
        "LocalExecutor worker processes (total)": stats([s.workers for s in window]),
        "  busy workers (supervising a task)": stats([s.busy_workers for s in window]),
        "  task processes under busy workers": stats([s.task_processes for s in window]),
    }
    full = [s for s in window if s.long_jobs_in_flight >= result.long_jobs]
    print(f"    {len(window)} one-second samples while >= 1 long job was in flight "
          f"({len(full)} with all {result.long_jobs} in flight)")
    header = f"    {'figure':<58}{'max':>6}{'mean':>8}{'max (all in flight)':>22}{'mean':>8}"
    print(header)
    print("    " + "-" * (len(header) - 4))
    full_stats = {
        "long jobs in flight (emulator)": [s.long_jobs_in_flight for s in full],
        "task instances running (slots held)": [s.ti_states.get("running", 0) for s in full],
        "task instances deferred (no slot)": [s.ti_states.get("deferred", 0) for s in full],
        "task instances queued + scheduled (waiting for a slot)": [
            s.ti_states.get("queued", 0) + s.ti_states.get("scheduled", 0) for s in full],
        "LocalExecutor worker processes (total)": [s.workers for s in full],
        "  busy workers (supervising a task)": [s.busy_workers for s in full],
        "  task processes under busy workers": [s.task_processes for s in full],
    }
    out: dict[str, Any] = {"samples": len(result.samples), "window_samples": len(window), "full_samples": len(full),
                           "run_state": result.run_state, "run_wall_s": result.run_wall, "startup_s": result.startup,
                           "parallelism": result.parallelism, "long_jobs": result.long_jobs,
                           "job_seconds": result.job_seconds, "failed_tasks": result.failed_tasks,
                           "retried_tasks": result.retried_tasks,
                           "task_start_parses": len(result.parse_ms),
                           "task_start_parse_ms_mean": statistics.fmean(result.parse_ms) if result.parse_ms else None,
                           "figures": {}}
    for name, (maximum, mean) in figures.items():
        values = full_stats[name]
        full_max = f"{max(values)}" if values else "-"
        full_mean = f"{statistics.fmean(values):.2f}" if values else "-"
        print(f"    {name:<58}{maximum:>6}{mean:>8.2f}{full_max:>22}{full_mean:>8}")
        out["figures"][name.strip()] = {"max": maximum, "mean": mean,
                                        "max_all_in_flight": max(values) if values else None,
                                        "mean_all_in_flight": statistics.fmean(values) if values else None}
    if result.long_job_window:
        start, end = result.long_job_window
        waves = -(-result.long_jobs // result.parallelism)
        print(f"    the {result.long_jobs} long jobs took {end - start:.0f} s from the first submit to the last "
              f"completion; waits holding a worker slot each would need >= {waves} x {result.job_seconds:.0f} s "
              f"= {waves * result.job_seconds:.0f} s with {result.parallelism} slots")
        out["long_job_span_s"] = end - start
    return out


# -- CLI ----------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("all", "overhead", "slots"), default="all",
                        help="overhead = (a) dag.test() with ~0 s jobs; slots = (b) standalone with 60 s jobs")
    parser.add_argument("--repeat", type=int, default=2, help="(a) flywheel runs in one process (1st is cold)")
    parser.add_argument("--poll-interval", type=float, default=0.2, help="(a) waits.poll_interval of the triggers, s")
    parser.add_argument("--noop-tasks", type=int, default=10, help="(a) length of the no-op baseline chain")
    parser.add_argument("--per-task", action="store_true", help="(a) print every task of the last run")
    parser.add_argument("--job-seconds", type=float, default=60.0, help="(b) duration of each emulator job, s")
    parser.add_argument("--parallelism", type=int, default=4, help="(b) core.parallelism (LocalExecutor workers)")
    parser.add_argument("--budget", type=float, default=300.0, help="(b) hard bound on part (b), s")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the private AIRFLOW_HOMEs (logs) for inspection")
    args = parser.parse_args(argv)
    problems = [f"--{name.replace('_', '-')} must be > 0" for name in ("repeat", "poll_interval", "noop_tasks",
                                                                       "job_seconds", "parallelism", "budget")
                if getattr(args, name) <= 0]
    if problems:
        parser.error("; ".join(problems))

    figures: dict[str, Any] = {}
    try:
        if args.part in ("all", "overhead"):
            figures["overhead"] = print_overhead(
                run_overhead(args.repeat, args.poll_interval, args.noop_tasks, args.keep), args.per_task)
        if args.part in ("all", "slots"):
            figures["slots"] = print_slots(run_slots(args.job_seconds, args.parallelism, args.budget, args.keep))
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
