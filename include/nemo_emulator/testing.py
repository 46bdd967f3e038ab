"""Start the emulator for a test or a demo: ``with running_emulator(job_duration=0.5) as emu: ...``.

The emulator runs as a SUBPROCESS (``python -m include.nemo_emulator``) on a free 127.0.0.1 port
with a temporary data dir, so tests exercise the same server a demo or docker-compose runs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from include.nemo_emulator.options import EmulatorOptions

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class EmulatorStartError(RuntimeError):
    """The emulator subprocess did not come up; the message carries the end of its log."""


@dataclass
class EmulatorHandle:
    """A running emulator: its URLs and helpers for the control API."""

    base_url: str
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    data_dir: Path | None = None
    timeout: float = 10.0
    _client: httpx.Client | None = field(default=None, repr=False)

    @property
    def nim_url(self) -> str:
        """NIM base URL (OpenAI clients use ``nim_url + "/v1"``)."""
        return self.base_url + "/nim"

    @property
    def datastore_url(self) -> str:
        """Data Store base URL; the Hugging Face endpoint is ``datastore_url + "/v1/hf"``."""
        return self.base_url

    @property
    def hf_endpoint(self) -> str:
        return self.base_url + "/v1/hf"

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.base_url, timeout=self.timeout)
        return self._client

    def _control(self, method: str, path: str, body: dict | None = None) -> dict:
        response = self.client.request(method, "/emulator" + path, json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"emulator control {method} {path} failed: {response.status_code} {response.text}")
        return response.json()

    def set_faults(self, **faults: Any) -> dict:
        """Merge faults over the current ones, e.g. ``set_faults(bursts=[{"count": 2, "status": 503}])``.

        Keys: ``error_rate``, ``error_statuses``, ``error_path_prefix``, ``seed``, ``bursts`` (list of
        ``{count, status, path_prefix, method, when}``), ``latency``, ``latency_path_prefix``,
        ``fail_customizations``, ``fail_evaluations``, ``stuck_deployments``, ``fail_deployments``.
        """
        return self._control("POST", "/faults", faults)

    def clear_faults(self) -> dict:
        return self._control("DELETE", "/faults")

    def state(self) -> dict:
        """Counts of jobs, deployments and requests (see ``GET /emulator/state``)."""
        return self._control("GET", "/state")

    def reset(self) -> dict:
        """Forget all entities, jobs, files and counters; faults go back to the start-up values."""
        return self._control("POST", "/reset")

    def configure(self, **durations: float) -> dict:
        """Change durations for what is created next: ``customization``, ``evaluation``, ``job`` (both),
        ``deployment``, ``sync``, ``queue`` (seconds)."""
        return self._control("POST", "/config", durations)["durations"]

    def advance_clock(self, seconds: float) -> dict:
        """Move the emulator's clock forward: jobs and deployments progress as if time had passed."""
        return self._control("POST", "/clock", {"advance": seconds})

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def running_emulator(startup_timeout: float = 20.0, **options: Any) -> Iterator[EmulatorHandle]:
    """Run the emulator in a subprocess for the duration of the ``with`` block.

    Args:
        startup_timeout: seconds to wait for ``/health`` before failing.
        **options: any :class:`~include.nemo_emulator.options.EmulatorOptions` field, e.g.
            ``job_duration=0.5``, ``deployment_duration=0.3``, ``sync_duration=0.2``, ``error_rate=0.1``,
            ``fail_customization=["bad"]``. ``host``/``port``/``data_dir`` are chosen here unless given.

    Yields:
        An :class:`EmulatorHandle` (``base_url``, ``nim_url``, ``datastore_url``, control helpers).

    Raises:
        EmulatorStartError: the process exited or did not answer ``/health`` in time (with its log tail).
    """
    with tempfile.TemporaryDirectory(prefix="nemo-emulator-") as tmp:
        tmp_path = Path(tmp)
        ready_file = tmp_path / "port"
        data_dir = Path(options.pop("data_dir", None) or tmp_path / "data")
        opts = EmulatorOptions(port=options.pop("port", 0), data_dir=str(data_dir), ready_file=str(ready_file),
                               **options)
        log_path = tmp_path / "emulator.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
                [sys.executable, "-m", "include.nemo_emulator", *opts.to_cli_args()],
                cwd=str(PROJECT_ROOT), env=env, stdout=log_file, stderr=subprocess.STDOUT,
            )
        handle = None
        try:
            handle = _wait_until_up(process, ready_file, log_path, opts.host, startup_timeout)
            handle.data_dir = data_dir
            yield handle
        finally:
            if handle is not None:
                handle.close()
            _stop(process)


def _wait_until_up(process: subprocess.Popen, ready_file: Path, log_path: Path, host: str,
                   timeout: float) -> EmulatorHandle:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmulatorStartError(
                f"the emulator exited with code {process.returncode} before it was up; log:\n{_tail(log_path)}")
        if ready_file.is_file():
            base_url = f"http://{host}:{ready_file.read_text(encoding='utf-8').strip()}"
            try:
                if httpx.get(base_url + "/health", timeout=2.0).status_code == 200:
                    return EmulatorHandle(base_url=base_url, process=process, log_path=log_path)
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    _stop(process)
    raise EmulatorStartError(f"the emulator did not answer /health within {timeout:.0f} s; log:\n{_tail(log_path)}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
