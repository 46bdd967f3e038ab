"""Benchmark: log extraction from JSONL files plus dataset preparation, end to end.

For each size N, N records are generated with the bundled sample-data generator into a
JSONL file (not timed; reused from ``--data-dir`` when present), then a fresh subprocess
times ``FileLogSource.iter_records`` feeding ``prepare_datasets`` (validation, dedup,
sampling, split, leakage check, ICL with tiktoken, training rows) and reports records/s
and its peak RSS. One subprocess per size, so each peak RSS belongs to that size alone.

Targets: >= 20,000 records/s end to end on one core; peak RSS < 600 MB at 1M records.

    .venv/bin/python benchmarks/prepare.py --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
TARGET_RATE = 20_000
TARGET_RSS_MB = 600


def _window(size: int) -> tuple[datetime, datetime]:
    # About 1.5 records per second of log time: a realistic busy week or so per million.
    return START, START + timedelta(seconds=max(3600, int(size / 1.5)))


def _data_file(data_dir: Path, size: int, workload: str, seed: int) -> Path:
    return data_dir / f"{workload}-{size}-seed{seed}" / "logs.jsonl"


def generate(data_dir: Path, size: int, workload: str, seed: int) -> Path:
    """Write (or reuse) the JSONL file of ``size`` generated records; return its path."""
    from include.sample_data.generate import generate_records, write_jsonl

    path = _data_file(data_dir, size, workload, seed)
    # The marker sits outside the data directory: the log source reads every file in it.
    done = path.parent.with_name(path.parent.name + ".done")
    if path.is_file() and done.is_file():
        return path
    start, end = _window(size)
    began = time.perf_counter()
    print(f"generating {size:,} {workload} records into {path} ...", flush=True)
    written = write_jsonl(generate_records(size, seed=seed, start=start, end=end, workload=workload), path)
    done.write_text(str(written))
    megabytes = path.stat().st_size / 1e6
    print(f"  {written:,} records, {megabytes:,.0f} MB in {time.perf_counter() - began:.0f}s", flush=True)
    return path


def _rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(path: Path, size: int, workload: str) -> dict:
    """Time extraction + preparation of one file in this process; return the figures."""
    import logging

    from include.flywheel.config import WorkloadSettings
    from include.flywheel.logs.files import FileLogSource
    from include.flywheel.pipeline import prepare_datasets
    from include.sample_data.generate import CLIENT_ID, WORKLOAD_IDS

    logging.basicConfig(level=logging.ERROR)
    workload_id = WORKLOAD_IDS[workload]
    settings = WorkloadSettings(workload_id=workload_id, client_id=CLIENT_ID)
    start, end = _window(size)
    baseline_mb = _rss_mb()
    source = FileLogSource(path.parent)
    wall = time.perf_counter()
    cpu = time.process_time()
    prepared = prepare_datasets(source.iter_records(workload_id, CLIENT_ID, start, end), settings)
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    report = prepared.report
    lines = source.stats.read
    return {
        "size": size,
        "workload": workload,
        "lines_read": lines,
        "records_prepared": report.read,
        "unique": report.unique,
        "dropped": report.dropped_total,
        "duplicates": report.duplicates,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "records_per_s_wall": round(lines / wall),
        "records_per_s_cpu": round(lines / cpu),
        "peak_rss_mb": round(_rss_mb(), 1),
        "baseline_rss_mb": round(baseline_mb, 1),
        "summary": report.summary(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workload", choices=["tool_calling", "generic"], default="tool_calling")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where generated files are kept and reused (default: a temporary directory, removed after)",
    )
    parser.add_argument("--show-summary", action="store_true", help="print the preparation report of each size")
    parser.add_argument("--run-one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.run_one:
        print(json.dumps(run_one(args.run_one, args.sizes[0], args.workload)))
        return 0

    temporary = None
    data_dir = args.data_dir
    if data_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="flywheel-bench-")
        data_dir = Path(temporary.name)
    results = []
    try:
        for size in args.sizes:
            path = generate(data_dir, size, args.workload, args.seed)
            command = [sys.executable, __file__, "--run-one", str(path), "--sizes", str(size)]
            command += ["--workload", args.workload]
            environment = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
            completed = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
            if completed.returncode != 0:
                print(completed.stderr, file=sys.stderr)
                return completed.returncode
            result = json.loads(completed.stdout.strip().splitlines()[-1])
            results.append(result)
            if args.show_summary:
                print(result["summary"])
    finally:
        if temporary is not None:
            temporary.cleanup()

    print()
    header = f"{'records':>10} {'wall s':>8} {'cpu s':>8} {'rec/s (wall)':>13} {'rec/s (cpu)':>12} {'peak RSS MB':>12}"
    print(f"extraction (FileLogSource) + prepare_datasets, workload {args.workload}")
    print(header)
    for result in results:
        print(
            f"{result['lines_read']:>10,} {result['wall_s']:>8.1f} {result['cpu_s']:>8.1f} "
            f"{result['records_per_s_wall']:>13,} {result['records_per_s_cpu']:>12,} {result['peak_rss_mb']:>12,.0f}"
        )
    print(f"targets: >= {TARGET_RATE:,} records/s on one core; peak RSS < {TARGET_RSS_MB} MB at 1M records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
