"""Request bodies for the NeMo microservices, and deterministic names.

Pure functions, no Airflow: operators, the emulator's tests and benchmarks build the same bodies.
Field names follow DESIGN.md section 5 (the v1 APIs of the 25.x releases).

Deterministic names let a retried task find the job its first try started: the same
``(dag_id, run_id, candidate, step)`` always gives the same job name and ``flywheel_key`` label.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from include.flywheel.config import CandidateSettings, CustomizerSettings, TrainingSettings

DatasetKind = Literal["eval", "icl", "train"]
EVAL_FILE = "eval_data.jsonl"
TOOL_CALLING_TASK = "custom-tool-calling"
GENERIC_TASK = "llm-as-judge"

# Kubernetes-style names (deployments, jobs) and Hugging Face repo names both accept this set.
_NAME_UNSAFE = re.compile(r"[^a-z0-9-]+")
_MAX_NAME = 63
_MAX_REPO_NAME = 96


def _digest(*parts: str, length: int = 8) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:length]


def slugify(value: str) -> str:
    """Lower-case letters, digits and single dashes (``Meta/Llama-3.2 1B`` -> ``meta-llama-3-2-1b``)."""
    slug = _NAME_UNSAFE.sub("-", value.lower()).strip("-")
    return re.sub(r"-{2,}", "-", slug)


def _bounded(prefix: str, digest: str, limit: int) -> str:
    """``prefix-digest`` cut to ``limit`` characters, keeping the digest (it is what makes the name unique)."""
    room = limit - len(digest) - 1
    return f"{prefix[:room].rstrip('-')}-{digest}"


def _require(**values: str) -> None:
    empty = [name for name, value in values.items() if not isinstance(value, str) or not value.strip()]
    if empty:
        raise ValueError(f"these values must be non-empty strings: {', '.join(empty)}")


def flywheel_key(dag_id: str, run_id: str, candidate: str, step: str) -> str:
    """The label stored in a job's ``custom_fields.flywheel_key``: readable, unique per run/candidate/step."""
    _require(dag_id=dag_id, run_id=run_id, candidate=candidate, step=step)
    return f"{dag_id}|{run_id}|{candidate}|{step}"


def run_key(dag_id: str, run_id: str) -> str:
    """A short, name-safe key of one DAG run (run ids hold ``:`` and ``+``, which names cannot)."""
    _require(dag_id=dag_id, run_id=run_id)
    return _digest(dag_id, run_id, length=10)


def job_name(dag_id: str, run_id: str, candidate: str, step: str) -> str:
    """A deterministic job / deployment-safe name: ``fw-<step>-<candidate>-<hash of everything>`` (<= 63 chars).

    The hash covers all four parts, so two runs or two candidates never share a name even when
    the readable prefix is cut.
    """
    _require(dag_id=dag_id, run_id=run_id, candidate=candidate, step=step)
    prefix = f"fw-{slugify(step)}-{slugify(candidate)}"
    return _bounded(prefix, _digest(dag_id, run_id, candidate, step, length=10), _MAX_NAME)


def dataset_repo_name(kind: DatasetKind, workload_id: str, run: str) -> str:
    """Data Store / Entity Store dataset name ``flywheel-{kind}-{workload_id}-{run key}`` (<= 96 chars)."""
    if kind not in ("eval", "icl", "train"):
        raise ValueError(f"dataset kind must be eval, icl or train, got {kind!r}")
    _require(workload_id=workload_id, run=run)
    prefix = f"flywheel-{kind}-{slugify(workload_id)}"
    return _bounded(prefix, slugify(run) or _digest(run), _MAX_REPO_NAME)


def hf_files_url(namespace: str, name: str, filename: str | None = None) -> str:
    """``hf://datasets/{ns}/{name}`` or, with a file, ``hf://datasets/{ns}/{name}/{file}``."""
    _require(namespace=namespace, name=name)
    url = f"hf://datasets/{namespace}/{name}"
    return f"{url}/{filename.lstrip('/')}" if filename else url


def namespace_body(namespace: str, description: str | None = None) -> dict[str, Any]:
    """``POST /v1/namespaces``."""
    _require(namespace=namespace)
    body: dict[str, Any] = {"id": namespace}
    if description:
        body["description"] = description
    return body


def dataset_body(namespace: str, name: str, *, description: str = "", project: str | None = None) -> dict[str, Any]:
    """``POST /v1/datasets``: registers a Data Store repo in the Entity Store."""
    _require(namespace=namespace, name=name)
    body: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "description": description,
        "files_url": hf_files_url(namespace, name),
    }
    if project:
        body["project"] = project
    return body


# -- Customizer ---------------------------------------------------------------------------------------


def customization_config_name(candidate: CandidateSettings, training: TrainingSettings) -> str:
    """A config name that changes when any setting in the config body changes (so a 409 means "same config")."""
    if candidate.customizer is None:
        raise ValueError(f"candidate {candidate.model_name!r} has no customizer section")
    fingerprint = json.dumps(
        {"customizer": candidate.customizer.model_dump(mode="json"), "training_type": training.training_type,
         "finetuning_type": training.finetuning_type},
        sort_keys=True,
    )
    return _bounded(f"fw-{slugify(candidate.model_name)}", _digest(fingerprint), _MAX_NAME)


def customization_config_body(
    namespace: str, name: str, customizer: CustomizerSettings, training: TrainingSettings
) -> dict[str, Any]:
    """``POST /v1/customization/configs``."""
    _require(namespace=namespace, name=name)
    return {
        "name": name,
        "namespace": namespace,
        "target": customizer.target,
        "training_options": [
            {
                "training_type": training.training_type,
                "finetuning_type": training.finetuning_type,
                "num_gpus": customizer.gpus,
                "num_nodes": customizer.num_nodes,
                "tensor_parallel_size": customizer.tensor_parallel_size,
                "data_parallel_size": customizer.data_parallel_size,
                "use_sequence_parallel": customizer.use_sequence_parallel,
                "micro_batch_size": customizer.micro_batch_size,
            }
        ],
        "training_precision": customizer.training_precision,
        "max_seq_length": customizer.max_seq_length,
    }


def customization_job_body(
    *,
    name: str,
    config: str,
    dataset_namespace: str,
    dataset_name: str,
    output_model: str,
    training: TrainingSettings,
) -> dict[str, Any]:
    """``POST /v1/customization/jobs``.

    Args:
        name: The job name (use :func:`job_name` so a retry finds the job).
        config: ``"{namespace}/{config name}"``.
        dataset_namespace: Namespace of the training dataset.
        dataset_name: Name of the training dataset (holds ``training/`` and ``validation/`` files).
        output_model: ``"{namespace}/{model name}"`` of the customized model.
        training: Hyperparameters.
    """
    _require(name=name, config=config, dataset_namespace=dataset_namespace, dataset_name=dataset_name,
             output_model=output_model)
    if "/" not in config:
        raise ValueError(f"config must be '<namespace>/<config name>', got {config!r}")
    if "/" not in output_model:
        raise ValueError(f"output_model must be '<namespace>/<model name>', got {output_model!r}")
    hyperparameters: dict[str, Any] = {
        "training_type": training.training_type,
        "finetuning_type": training.finetuning_type,
        "epochs": training.epochs,
        "batch_size": training.batch_size,
        "learning_rate": training.learning_rate,
    }
    if training.finetuning_type == "lora":
        hyperparameters["lora"] = {
            "adapter_dim": training.lora.adapter_dim,
            "adapter_dropout": training.lora.adapter_dropout,
        }
    return {
        "name": name,
        "output_model": output_model,
        "config": config,
        "dataset": {"name": dataset_name, "namespace": dataset_namespace},
        "hyperparameters": hyperparameters,
    }


# -- Evaluator ----------------------------------------------------------------------------------------


def chat_completions_url(base_url: str) -> str:
    """``<base>/v1/chat/completions`` from a base URL given with or without ``/v1`` (or already complete)."""
    _require(base_url=base_url)
    base = base_url.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    if base.endswith("/v1"):
        return f"{base}/chat/completions"
    return f"{base}/v1/chat/completions"


def endpoint_target(nim_base_url: str, model_id: str) -> dict[str, Any]:
    """An evaluation target served by an OpenAI-compatible endpoint (a deployed NIM)."""
    _require(model_id=model_id)
    return {
        "type": "model",
        "model": {"api_endpoint": {"url": chat_completions_url(nim_base_url), "model_id": model_id, "format": "nim"}},
    }


def model_target(namespace: str, model_name: str) -> dict[str, Any]:
    """An evaluation target that is an Entity Store model (``"{ns}/{name}"``)."""
    _require(namespace=namespace, model_name=model_name)
    return {"type": "model", "model": f"{namespace}/{model_name}"}


def judge_model(url: str, model_id: str, api_key: str | None = None) -> dict[str, Any]:
    """The ``model`` of an llm-judge metric."""
    _require(model_id=model_id)
    endpoint: dict[str, Any] = {"url": chat_completions_url(url), "model_id": model_id}
    if api_key:
        endpoint["api_key"] = api_key
    return {"api_endpoint": endpoint}


TOOL_CALLING_JUDGE_SYSTEM = (
    "You grade whether an assistant called the right tools. You get the expected tool calls and the "
    "assistant's tool calls, both as JSON. The answer is correct when it calls the same functions with "
    "arguments that mean the same thing (order of keys and formatting do not matter; a missing required "
    "argument or a different value is wrong). Reply with one line: RATING: 1 if correct, RATING: 0 if not."
)
TOOL_CALLING_JUDGE_USER = (
    "Expected tool calls:\n{{ item.response.choices[0].message.tool_calls | tojson }}\n\n"
    "Assistant tool calls:\n{{ sample.response.choices[0].message.tool_calls | tojson }}\n\n"
    "Is the assistant correct? Answer with RATING: 1 or RATING: 0."
)
GENERIC_JUDGE_SYSTEM = (
    "You compare a candidate answer with a reference answer to the same request. Judge whether the "
    "candidate says the same thing: same facts, same intent, no contradictions; wording may differ. "
    "Reply with one line: SIMILARITY: <an integer from 1 (unrelated) to 10 (equivalent)>."
)
GENERIC_JUDGE_USER = (
    "Reference answer:\n{{ item.response.choices[0].message.content }}\n\n"
    "Candidate answer:\n{{ sample.output_text }}\n\n"
    "How similar is the candidate to the reference? Answer with SIMILARITY: <1-10>."
)


def tool_calling_eval_config(
    *, files_url: str, judge: Mapping[str, Any], namespace: str = "flywheel"
) -> dict[str, Any]:
    """Inline evaluation config for tool-calling workloads.

    One ``chat-completion`` task with a ``tool-calling`` metric (``function_name_accuracy``,
    ``function_name_and_args_accuracy``) and an ``llm-judge`` correctness rating (0/1).

    Args:
        files_url: ``hf://datasets/{ns}/{name}/eval_data.jsonl`` (see :func:`hf_files_url`).
        judge: The judge model, from :func:`judge_model`.
        namespace: Namespace of the config.
    """
    _require(files_url=files_url, namespace=namespace)
    return {
        "type": "custom",
        "namespace": namespace,
        "tasks": {
            TOOL_CALLING_TASK: {
                "type": "chat-completion",
                "dataset": {"files_url": files_url},
                "params": {
                    "template": {
                        "messages": "{{ item.request.messages | tojson }}",
                        "tools": "{{ item.request.tools | tojson }}",
                        "tool_choice": "auto",
                    }
                },
                "metrics": {
                    "tool-calling-accuracy": {
                        "type": "tool-calling",
                        "params": {
                            "tool_calls_ground_truth": "{{ item.response.choices[0].message.tool_calls | tojson }}"
                        },
                    },
                    "correctness": {
                        "type": "llm-judge",
                        "params": {
                            "model": dict(judge),
                            "template": {
                                "messages": [
                                    {"role": "system", "content": TOOL_CALLING_JUDGE_SYSTEM},
                                    {"role": "user", "content": TOOL_CALLING_JUDGE_USER},
                                ]
                            },
                            "scores": {
                                "rating": {"type": "int", "parser": {"type": "regex", "pattern": r"RATING: (\d+)"}}
                            },
                        },
                    },
                },
            }
        },
    }


def generic_eval_config(*, files_url: str, judge: Mapping[str, Any], namespace: str = "flywheel") -> dict[str, Any]:
    """Inline evaluation config for generic (chat) workloads: an ``llm-judge`` similarity score 1-10."""
    _require(files_url=files_url, namespace=namespace)
    return {
        "type": "custom",
        "namespace": namespace,
        "tasks": {
            GENERIC_TASK: {
                "type": "chat-completion",
                "dataset": {"files_url": files_url},
                "params": {"template": {"messages": "{{ item.request.messages | tojson }}", "max_tokens": 512}},
                "metrics": {
                    "llm-judge": {
                        "type": "llm-judge",
                        "params": {
                            "model": dict(judge),
                            "template": {
                                "messages": [
                                    {"role": "system", "content": GENERIC_JUDGE_SYSTEM},
                                    {"role": "user", "content": GENERIC_JUDGE_USER},
                                ]
                            },
                            # \d+ takes the whole integer: "SIMILARITY: 10" is 10, not 1.
                            "scores": {
                                "similarity": {"type": "int", "parser": {"type": "regex", "pattern": r"SIMILARITY: (\d+)"}}
                            },
                        },
                    }
                },
            }
        },
    }


def evaluation_job_body(
    *, namespace: str, config: Mapping[str, Any] | str, target: Mapping[str, Any] | str, key: str
) -> dict[str, Any]:
    """``POST /v1/evaluation/jobs`` with the ``flywheel_key`` label a retry uses to find the job."""
    _require(namespace=namespace, key=key)
    return {
        "namespace": namespace,
        "config": dict(config) if isinstance(config, Mapping) else config,
        "target": dict(target) if isinstance(target, Mapping) else target,
        "custom_fields": {"flywheel_key": key},
    }


# -- Deployment Management ----------------------------------------------------------------------------


def deployment_name(model_name: str) -> str:
    """A deployment name for a model (``meta/llama-3.2-1b-instruct`` -> ``meta-llama-3-2-1b-instruct``)."""
    _require(model_name=model_name)
    slug = slugify(model_name)
    return slug if len(slug) <= _MAX_NAME else _bounded(slug, _digest(model_name), _MAX_NAME)


def deployment_body(
    *,
    namespace: str,
    name: str,
    model: str,
    image_name: str,
    image_tag: str,
    pvc_size: str,
    gpu: int,
    additional_envs: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``POST /v1/deployment/model-deployments``."""
    _require(namespace=namespace, name=name, model=model, image_name=image_name, image_tag=image_tag,
             pvc_size=pvc_size)
    if not isinstance(gpu, int) or gpu < 1:
        raise ValueError(f"gpu must be an integer >= 1, got {gpu!r}")
    return {
        "name": name,
        "namespace": namespace,
        "config": {
            "model": model,
            "nim_deployment": {
                "image_name": image_name,
                "image_tag": image_tag,
                "pvc_size": pvc_size,
                "gpu": gpu,
                "additional_envs": dict(additional_envs or {}),
            },
        },
    }


def candidate_deployment_body(
    namespace: str, candidate: CandidateSettings, *, image_registry: str = "nvcr.io/nim",
    additional_envs: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The deployment of a candidate NIM: image ``{registry}/{model_name}:{tag}``."""
    return deployment_body(
        namespace=namespace,
        name=deployment_name(candidate.model_name),
        model=candidate.model_name,
        image_name=f"{image_registry.rstrip('/')}/{candidate.model_name}",
        image_tag=candidate.tag,
        pvc_size=candidate.pvc_size,
        gpu=candidate.gpus,
        additional_envs=additional_envs,
    )
