"""`make demo`: run the flywheel DAGs on the bundled sample logs with a real `airflow dags test`.

Everything is embedded: a private AIRFLOW_HOME with SQLite under .demo/, the sample logs as
the file log source, and staging under .demo/staging. No Docker, no network.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from include.flywheel.config import load_config  # noqa: E402

DEMO_HOME = PROJECT_ROOT / ".demo"
# The bundled sample logs cover these days (UTC); the demo reads all of them.
SAMPLE_WINDOW = ("2026-11-17T00:00:00+00:00", "2026-11-24T00:00:00+00:00")


def demo_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(DEMO_HOME / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "FLYWHEEL_STAGING_BASE_URI": (DEMO_HOME / "staging").as_uri(),
            "PYTHONPATH": str(PROJECT_ROOT),
        }
    )
    return env


def run_logged(command: list[str], env: dict[str, str], log_path: Path) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log_file:
        return subprocess.run(command, env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT).returncode


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def print_report(dag_id: str, result: dict) -> None:
    extraction = result["extraction"]
    report = result["report"]
    window = result["window"]
    print(f"\n=== {dag_id}: workload type {result['workload_type']}, window {window['start']} .. {window['end']}")
    print("  extraction:")
    for key, value in extraction.items():
        print(f"    {key:<28} {value}")
    print("  preparation:")
    for key, value in report.items():
        if isinstance(value, dict):
            print(f"    {key}:")
            for sub_key, sub_value in value.items():
                print(f"      {sub_key:<26} {sub_value}")
        else:
            print(f"    {key:<28} {value}")
    print("  datasets:")
    for kind, handle in result["datasets"].items():
        print(f"    {kind:<6} {handle.get('total_records', '?'):>6} records  {handle.get('uri', '')}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", action="append", help="workload id (default: all configured)")
    parser.add_argument("--keep", action="store_true", help="keep the previous demo's Airflow home and staging")
    args = parser.parse_args()

    config = load_config()
    workloads = [config.workload(w) for w in args.workload] if args.workload else config.workloads
    if not args.keep and DEMO_HOME.exists():
        shutil.rmtree(DEMO_HOME)
    env = demo_environment()
    airflow = str(Path(sys.executable).parent / "airflow")

    print(f"Preparing an embedded Airflow home in {DEMO_HOME / 'airflow'} ...", flush=True)
    if run_logged([airflow, "db", "migrate"], env, DEMO_HOME / "logs" / "db-migrate.log") != 0:
        print(tail(DEMO_HOME / "logs" / "db-migrate.log"))
        return 1

    failures = 0
    for workload in workloads:
        conf = {"log_window_start": SAMPLE_WINDOW[0], "log_window_end": SAMPLE_WINDOW[1]}
        log_path = DEMO_HOME / "logs" / f"{workload.dag_id}.log"
        print(f"Running `airflow dags test {workload.dag_id}` (log: {log_path}) ...", flush=True)
        started = time.monotonic()
        code = run_logged([airflow, "dags", "test", workload.dag_id, "-c", json.dumps(conf)], env, log_path)
        elapsed = time.monotonic() - started
        reports = sorted((DEMO_HOME / "staging" / workload.dag_id).glob("*/datasets/preparation_report.json"))
        if code != 0 or not reports:
            failures += 1
            print(f"FAILED after {elapsed:.1f}s (exit code {code}). Last lines of the log:\n{tail(log_path)}")
            continue
        print(f"  finished in {elapsed:.1f}s")
        print_report(workload.dag_id, json.loads(reports[-1].read_text()))
    print(f"\nDemo finished: {len(workloads) - failures} of {len(workloads)} workloads succeeded.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
