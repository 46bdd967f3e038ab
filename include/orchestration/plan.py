"""What a run asks of NeMo: dataset names, deployments, evaluation and customization payloads.

Pure functions of the run's settings and ids (no Airflow, no network), so the bodies are
deterministic: a retried task computes the same job names and labels and re-attaches to the
job its first try started.
"""

from __future__ import annotations

from typing import Any

from include.flywheel.config import CandidateSettings, WorkloadSettings
from include.nemo import payloads

DATASET_KINDS = ("eval", "icl", "train")
EVAL_TYPES = ("base-eval", "icl-eval", "customized-eval")


def dataset_uploads(settings: WorkloadSettings, dag_id: str, run_id: str, prepared: dict[str, Any]) -> list[dict]:
    """Keyword arguments of one upload per prepared dataset (eval, ICL, train/val)."""
    run = payloads.run_key(dag_id, run_id)
    uploads = []
    for kind in DATASET_KINDS:
        handle = prepared["datasets"][kind]
        uploads.append(
            {
                "namespace": settings.nmp.namespace,
                "name": payloads.dataset_repo_name(kind, settings.workload_id, run),
                "local_dir": handle["uri"],
                "description": f"flywheel {kind} set of {settings.workload_id}, run {run_id} ({handle['total_records']} records)",
            }
        )
    return uploads


def datasets_by_kind(uploaded: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Map the upload results back to their kind through the deterministic repo names."""
    found: dict[str, dict[str, Any]] = {}
    for result in uploaded:
        for kind in DATASET_KINDS:
            if result["name"].startswith(f"flywheel-{kind}-"):
                found[kind] = result
    missing = [kind for kind in DATASET_KINDS if kind not in found]
    if missing:
        raise ValueError(f"uploads are missing the {missing} dataset(s); got {[r.get('name') for r in uploaded]}")
    return found


def deployment_spec(body: dict[str, Any]) -> dict[str, Any]:
    """The deploy operator's flat ``deployment`` argument from a ``POST /v1/deployment/model-deployments`` body."""
    nim = body["config"]["nim_deployment"]
    return {
        "namespace": body["namespace"],
        "name": body["name"],
        "model": body["config"]["model"],
        "image_name": nim["image_name"],
        "image_tag": nim["image_tag"],
        "pvc_size": nim["pvc_size"],
        "gpu": nim["gpu"],
        "additional_envs": nim.get("additional_envs") or {},
    }


def find_candidate(settings: WorkloadSettings, model_name: str) -> CandidateSettings | None:
    for candidate in settings.candidates:
        if candidate.model_name == model_name:
            return candidate
    return None


def eval_config(workload_type: str, files_url: str, judge: dict[str, Any], namespace: str) -> dict[str, Any]:
    if workload_type == "tool_calling":
        return payloads.tool_calling_eval_config(files_url=files_url, judge=judge, namespace=namespace)
    return payloads.generic_eval_config(files_url=files_url, judge=judge, namespace=namespace)


def output_model_name(settings: WorkloadSettings, dag_id: str, run_id: str, candidate: CandidateSettings) -> str:
    """``{namespace}/{name}`` of the customized model this run produces for a candidate."""
    return f"{settings.nmp.namespace}/{payloads.job_name(dag_id, run_id, candidate.model_name, 'customized')}"


def plan_candidate(
    settings: WorkloadSettings,
    candidate: CandidateSettings,
    *,
    dag_id: str,
    run_id: str,
    datasets: dict[str, dict[str, Any]],
    workload_type: str,
    nim_base_url: str,
    judge_base_url: str,
) -> dict[str, Any]:
    """Every payload one candidate needs in this run (JSON, small: it goes to XCom).

    The judge's API key is NOT here: the evaluation operator adds it from the judge's
    Connection when it submits, so no secret reaches XCom.
    """
    namespace = settings.nmp.namespace
    model = candidate.model_name
    judge = payloads.judge_model(judge_base_url, settings.judge.model_name)

    def evaluation(eval_type: str, dataset_kind: str, model_id: str) -> dict[str, Any]:
        files_url = payloads.hf_files_url(namespace, datasets[dataset_kind]["name"], payloads.EVAL_FILE)
        label = payloads.flywheel_key(dag_id, run_id, model, eval_type)
        return {
            "label": label,
            "job": payloads.evaluation_job_body(
                namespace=namespace,
                config=eval_config(workload_type, files_url, judge, namespace),
                target=payloads.endpoint_target(nim_base_url, model_id),
                key=label,
            ),
        }

    plan: dict[str, Any] = {
        "model": model,
        "deployment": deployment_spec(payloads.candidate_deployment_body(namespace, candidate)),
        "base_eval": evaluation("base-eval", "eval", model),
        "icl_eval": evaluation("icl-eval", "icl", model),
        "customization": None,
        "customized_eval": None,
        "output_model": None,
    }
    if candidate.customization_enabled and candidate.customizer is not None:
        config_name = payloads.customization_config_name(candidate, settings.training)
        output_model = output_model_name(settings, dag_id, run_id, candidate)
        plan["output_model"] = output_model
        plan["customization"] = {
            "config": payloads.customization_config_body(namespace, config_name, candidate.customizer, settings.training),
            "job": payloads.customization_job_body(
                name=payloads.job_name(dag_id, run_id, model, "customization"),
                config=f"{namespace}/{config_name}",
                dataset_namespace=namespace,
                dataset_name=datasets["train"]["name"],
                output_model=output_model,
                training=settings.training,
            ),
        }
        plan["customized_eval"] = evaluation("customized-eval", "eval", output_model)
    return plan
