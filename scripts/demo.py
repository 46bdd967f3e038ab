"""`make demo`: a full flywheel on the bundled sample logs, with a real `airflow dags test`.

Everything is embedded: a private Airflow home with SQLite under .demo/, the sample logs as the
file log source, the NeMo platform emulator (include/nemo_emulator, NOT NeMo) started on a free
local port and stopped at the end, and the results in the default SQLite store (.flywheel/), so
`make up` shows the demo runs on the results page. No Docker, no network.
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

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from include.flywheel.config import DEFAULT_CONFIG_PATH, load_config  # noqa: E402

DEMO_HOME = PROJECT_ROOT / ".demo"
# The bundled sample logs cover these days (UTC); the demo reads all of them.
SAMPLE_WINDOW = {"log_window_start": "2026-11-17T00:00:00+00:00", "log_window_end": "2026-11-24T00:00:00+00:00"}
# Emulated NeMo jobs take seconds, not hours: poll accordingly.
DEMO_WAITS = {"poll_interval": 1.0, "retry_delay": 5.0}
EMULATOR_TIMINGS = {"job_duration": 3.0, "deployment_duration": 2.0, "sync_duration": 1.0}


def demo_settings() -> Path:
    """The bundled settings with demo-speed waits, written under .demo/."""
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw.setdefault("waits", {}).update(DEMO_WAITS)
    # Show both few-shot selections: embedding similarity (through the NIM's /v1/embeddings) for the
    # tool-calling workload, uniform for the others.
    for workload in raw.get("workloads", []):
        if workload.get("workload_id") == "customer-support-tools":
            workload.setdefault("icl", {})["example_selection"] = "semantic_similarity"
    path = DEMO_HOME / "flywheel.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def demo_environment(config_path: Path, emulator) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(DEMO_HOME / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "FLYWHEEL_CONFIG": str(config_path),
            "FLYWHEEL_STAGING_BASE_URI": (DEMO_HOME / "staging").as_uri(),
            "PYTHONPATH": str(PROJECT_ROOT),
            # The three Connections point at the emulator; for a real NeMo, point them at its services.
            "AIRFLOW_CONN_NEMO_DEFAULT": json.dumps({"conn_type": "nemo", "host": emulator.base_url}),
            "AIRFLOW_CONN_NEMO_DATASTORE_DEFAULT": json.dumps({"conn_type": "nemo_datastore", "host": emulator.base_url}),
            "AIRFLOW_CONN_NIM_DEFAULT": json.dumps({"conn_type": "nim", "host": emulator.nim_url}),
        }
    )
    return env


def run_logged(command: list[str], env: dict[str, str], log_path: Path) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log_file:
        return subprocess.run(command, env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT).returncode


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def print_data_stages(result: dict) -> None:
    extraction, report = result["extraction"], result["report"]
    skipped = {k: v for k, v in extraction.items() if k not in ("read", "matched") and v}
    print(f"  extraction: read {extraction['read']}, matched {extraction['matched']}; skipped: "
          + (", ".join(f"{k} {v}" for k, v in skipped.items()) or "none"))
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(report["dropped"].items(), key=lambda kv: -kv[1])) or "none"
    print(f"  preparation ({report['workload_type']}): read {report['read']}, dropped {sum(report['dropped'].values())} "
          f"({dropped}), duplicates {report['duplicates']}, unique {report['unique']}, sampled out {report['sampled_out']}")
    icl = report.get("icl_examples") or {}
    print(f"  datasets: eval {report['eval_size']}, train {report['train_size']}, val {report['val_size']}; "
          f"ICL examples per record ({report['icl_selection']}): min {icl.get('min')}, mean {icl.get('mean')}, "
          f"max {icl.get('max')}; leakage: {report['leakage'].get('eval_in_train_or_val', '?')} eval prompts in training")


def latest_run_dir(dag_id: str) -> Path | None:
    runs = sorted((DEMO_HOME / "staging" / dag_id).glob("*/"), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", action="append", help="workload id (default: all configured)")
    args = parser.parse_args()

    from include.nemo_emulator.testing import running_emulator

    config = load_config()
    workloads = [config.workload(w) for w in args.workload] if args.workload else config.workloads
    if DEMO_HOME.exists():
        shutil.rmtree(DEMO_HOME)
    DEMO_HOME.mkdir(parents=True)
    config_path = demo_settings()
    airflow = str(Path(sys.executable).parent / "airflow")

    print("Starting the NeMo platform emulator (a local stand-in for NeMo microservices) ...", flush=True)
    with running_emulator(**EMULATOR_TIMINGS) as emulator:
        print(f"  emulator at {emulator.base_url} (NIM at {emulator.nim_url})", flush=True)
        env = demo_environment(config_path, emulator)
        print(f"Preparing an embedded Airflow home in {DEMO_HOME / 'airflow'} ...", flush=True)
        setup_log = DEMO_HOME / "logs" / "setup.log"
        if run_logged([airflow, "db", "migrate"], env, setup_log) != 0 or run_logged(
            [airflow, "pools", "set", "nemo_gpu", "4", "GPU-bound NeMo work", "--include-deferred"],
            env, DEMO_HOME / "logs" / "pools.log",
        ) != 0:
            print(tail(setup_log))
            return 1

        failures = 0
        for workload in workloads:
            log_path = DEMO_HOME / "logs" / f"{workload.dag_id}.log"
            print(f"\n=== {workload.dag_id}: `airflow dags test` over {SAMPLE_WINDOW['log_window_start'][:10]} .. "
                  f"{SAMPLE_WINDOW['log_window_end'][:10]} (log: {log_path.relative_to(PROJECT_ROOT)})", flush=True)
            started = time.monotonic()
            code = run_logged([airflow, "dags", "test", workload.dag_id, "-c", json.dumps(SAMPLE_WINDOW)], env, log_path)
            elapsed = time.monotonic() - started
            run_dir = latest_run_dir(workload.dag_id)
            report_json = run_dir / "datasets" / "preparation_report.json" if run_dir else None
            if report_json and report_json.exists():
                print_data_stages(json.loads(report_json.read_text()))
            report_md = run_dir / "report.md" if run_dir else None
            if report_md and report_md.exists():
                print()
                print(report_md.read_text())
            if code != 0:
                failures += 1
                print(f"FAILED after {elapsed:.0f}s (exit code {code}). Last lines of the log:\n{tail(log_path)}")
            else:
                print(f"  finished in {elapsed:.0f}s; emulator: {emulator.state()['customization_jobs']['total']} "
                      f"customization jobs, {emulator.state()['evaluation_jobs']['total']} evaluation jobs so far")
    print(f"\nDemo finished: {len(workloads) - failures} of {len(workloads)} workloads succeeded. "
          "Results: .flywheel/results.sqlite3 (`make up` shows them on the Flywheel results page).")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
