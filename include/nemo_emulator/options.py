"""Start-up options of the emulator, shared by the CLI, the app factory and ``testing.running_emulator``."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

DEFAULT_JUDGE_MODEL = "meta/llama-3.3-70b-instruct"
DEFAULT_EMBEDDING_MODEL = "nvidia/llama-3.2-nv-embedqa-1b-v2"


@dataclass
class EmulatorOptions:
    """Everything the emulator can be told at start.

    Durations are in seconds. ``job_duration`` is the running time of a job when the per-kind
    duration (``customization_duration``, ``evaluation_duration``) is left unset. ``queue_duration``
    is the time a new job or deployment spends in ``created`` then ``pending`` (half each).
    """

    host: str = "127.0.0.1"
    port: int = 8765
    data_dir: str | None = None
    ready_file: str | None = None
    log_level: str = "INFO"
    job_duration: float = 2.0
    customization_duration: float | None = None
    evaluation_duration: float | None = None
    deployment_duration: float = 2.0
    sync_duration: float = 1.0
    queue_duration: float = 0.2
    judge_model: list[str] = field(default_factory=lambda: [DEFAULT_JUDGE_MODEL])
    embedding_model: list[str] = field(default_factory=lambda: [DEFAULT_EMBEDDING_MODEL])
    # Fault injection at start; the control API can change all of these later.
    error_rate: float = 0.0
    latency: float = 0.0
    seed: int = 0
    burst_5xx: int = 0
    burst_429: int = 0
    fail_customization: list[str] = field(default_factory=list)
    fail_evaluation: list[str] = field(default_factory=list)
    stuck_deployment: list[str] = field(default_factory=list)
    fail_deployment: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        problems = []
        for name in ("job_duration", "deployment_duration", "sync_duration", "queue_duration", "latency"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0 (got {getattr(self, name)})")
        for name in ("customization_duration", "evaluation_duration"):
            value = getattr(self, name)
            if value is not None and value < 0:
                problems.append(f"{name} must be >= 0 (got {value})")
        if not 0.0 <= self.error_rate <= 1.0:
            problems.append(f"error_rate must be between 0 and 1 (got {self.error_rate})")
        if self.burst_5xx < 0 or self.burst_429 < 0:
            problems.append("burst_5xx and burst_429 must be >= 0")
        # A single string is a common slip when building options in code: accept it as a one-item list.
        for name in ("judge_model", "embedding_model", "fail_customization", "fail_evaluation",
                     "stuck_deployment", "fail_deployment"):
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, [value])
        if problems:
            raise ValueError("invalid emulator options: " + "; ".join(problems))

    @property
    def effective_customization_duration(self) -> float:
        return self.job_duration if self.customization_duration is None else self.customization_duration

    @property
    def effective_evaluation_duration(self) -> float:
        return self.job_duration if self.evaluation_duration is None else self.evaluation_duration

    def to_cli_args(self) -> list[str]:
        """The command-line flags that reproduce these options (used to start a subprocess)."""
        args: list[str] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            flag = "--" + f.name.replace("_", "-")
            if value is None:
                continue
            if isinstance(value, list):
                for item in value:
                    args += [flag, str(item)]
            else:
                args += [flag, str(value)]
        return args


def build_parser() -> argparse.ArgumentParser:
    """The CLI of ``python -m include.nemo_emulator``."""
    parser = argparse.ArgumentParser(
        prog="python -m include.nemo_emulator",
        description=(
            "NeMo microservices + NIM EMULATOR (not NVIDIA NeMo): an HTTP service that speaks the same API "
            "for tests and demos. Platform APIs at /v1/..., Hugging Face-compatible Data Store at /v1/hf, "
            "NIM (OpenAI-compatible) at /nim/v1/..., control API at /emulator/..."
        ),
    )
    defaults = EmulatorOptions()
    parser.add_argument("--host", default=defaults.host, help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=defaults.port, help="port; 0 picks a free one (see --ready-file)")
    parser.add_argument("--data-dir", default=None, help="where Data Store files live (default: a temp dir)")
    parser.add_argument("--ready-file", default=None, help="write the bound port to this file once serving")
    parser.add_argument("--log-level", default=defaults.log_level)
    parser.add_argument("--job-duration", type=float, default=defaults.job_duration,
                        help="running time of customization and evaluation jobs, seconds")
    parser.add_argument("--customization-duration", type=float, default=None)
    parser.add_argument("--evaluation-duration", type=float, default=None)
    parser.add_argument("--deployment-duration", type=float, default=defaults.deployment_duration,
                        help="time from creating a deployment to ready, seconds")
    parser.add_argument("--sync-duration", type=float, default=defaults.sync_duration,
                        help="delay before a customized model is served by the NIM, seconds")
    parser.add_argument("--queue-duration", type=float, default=defaults.queue_duration,
                        help="time a new job/deployment spends in created then pending, seconds")
    parser.add_argument("--judge-model", action="append", default=None,
                        help=f"a model always served as judge (repeatable; default {DEFAULT_JUDGE_MODEL})")
    parser.add_argument("--embedding-model", action="append", default=None,
                        help=f"an embedding model always served (repeatable; default {DEFAULT_EMBEDDING_MODEL})")
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction of requests answered 500/503")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random error-rate draws")
    parser.add_argument("--burst-5xx", type=int, default=0, help="the next N requests answer 503")
    parser.add_argument("--burst-429", type=int, default=0, help="the next N requests answer 429")
    parser.add_argument("--fail-customization", action="append", default=[], metavar="PATTERN",
                        help="customization jobs whose name/output model/config contains PATTERN fail")
    parser.add_argument("--fail-evaluation", action="append", default=[], metavar="PATTERN",
                        help="evaluation jobs whose target model or custom_fields contain PATTERN fail")
    parser.add_argument("--stuck-deployment", action="append", default=[], metavar="PATTERN",
                        help="deployments whose name/model contains PATTERN never get ready")
    parser.add_argument("--fail-deployment", action="append", default=[], metavar="PATTERN",
                        help="deployments whose name/model contains PATTERN end up failed")
    return parser


def parse_options(argv: list[str] | None = None) -> EmulatorOptions:
    """Parse CLI flags into :class:`EmulatorOptions` (exits with a usage message on bad flags)."""
    parser = build_parser()
    namespace = parser.parse_args(argv)
    values: dict[str, Any] = vars(namespace)
    if values["judge_model"] is None:
        values["judge_model"] = [DEFAULT_JUDGE_MODEL]
    if values["embedding_model"] is None:
        values["embedding_model"] = [DEFAULT_EMBEDDING_MODEL]
    try:
        return EmulatorOptions(**values)
    except ValueError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits
