"""Airflow hooks for NVIDIA NeMo microservices and OpenAI-compatible NIM endpoints.

Connections (see docs/nemo-connections.md):

- ``nemo_default`` (type ``nemo``): Entity Store, Customizer, Evaluator, Deployment Management.
- ``nemo_datastore_default`` (type ``nemo_datastore``): the Data Store (Hugging Face API at ``/v1/hf``).
- ``nim_default`` (type ``nim``): an OpenAI-compatible NIM base URL.

Sync hooks serve operators; :class:`NemoAsyncClient` serves triggers. Status enums never crash on
values they do not know.
"""

from __future__ import annotations

from include.nemo.exceptions import (
    NemoApiError,
    NemoAuthError,
    NemoConfigurationError,
    NemoConflictError,
    NemoConnectionError,
    NemoError,
    NemoNotFoundError,
    NemoTimeoutError,
)
from include.nemo.hooks._common import Endpoint, RetryPolicy, api_path, endpoint_from_connection
from include.nemo.hooks.async_client import NemoAsyncClient
from include.nemo.hooks.base import NemoBaseHook
from include.nemo.hooks.datastore import DataStoreHook
from include.nemo.hooks.nim import NimHook, model_ids
from include.nemo.hooks.platform import CustomizerHook, DeploymentHook, EntityStoreHook, EvaluatorHook, NemoHook
from include.nemo.hooks.status import (
    CustomizationStatus,
    DeploymentStatus,
    EvaluationStatus,
    customization_status_of,
    deployment_status_of,
    evaluation_status_of,
)

__all__ = [
    "CustomizationStatus",
    "CustomizerHook",
    "DataStoreHook",
    "DeploymentHook",
    "DeploymentStatus",
    "Endpoint",
    "EntityStoreHook",
    "EvaluationStatus",
    "EvaluatorHook",
    "NemoApiError",
    "NemoAsyncClient",
    "NemoAuthError",
    "NemoBaseHook",
    "NemoConfigurationError",
    "NemoConflictError",
    "NemoConnectionError",
    "NemoError",
    "NemoHook",
    "NemoNotFoundError",
    "NemoTimeoutError",
    "NimHook",
    "RetryPolicy",
    "api_path",
    "customization_status_of",
    "deployment_status_of",
    "endpoint_from_connection",
    "evaluation_status_of",
    "model_ids",
]
