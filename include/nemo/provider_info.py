"""Provider metadata: registers the ``nemo``, ``nemo_datastore`` and ``nim`` connection types.

Airflow finds it through the ``apache_airflow_provider`` entry point of the installed project
(``[project.entry-points.apache_airflow_provider] provider_info = "include.nemo.provider_info:get_provider_info"``).
Airflow checks that ``package-name`` equals the installed distribution's name, so
``PACKAGE_NAME`` must match ``[project] name`` in pyproject.toml.

The connection form (labels, hidden fields, placeholders, extra fields) is declared here,
as Airflow 3.2+ expects, and the hooks' ``get_ui_field_behaviour()`` returns the same data:
one source for both. Importing this module imports nothing from Airflow.
"""

from __future__ import annotations

import copy
from typing import Any

PACKAGE_NAME = "flywheel-airflow"
HOOKS_MODULE = "include.nemo.hooks"

_TIMEOUT_FIELD = {
    "label": "Timeout (seconds)",
    "description": (
        "Read timeout of every request; the connect timeout is min(10, this). For separate values write the "
        'extra JSON by hand: {"timeout": {"connect": 10, "read": 300}}.'
    ),
    "schema": {"type": ["number", "null"], "minimum": 0},
}
_VERIFY_FIELD = {
    "label": "Verify TLS",
    "description": "true (default), false (self-signed test clusters only), or the path of a CA bundle (PEM).",
    "schema": {"type": ["string", "boolean", "null"]},
}

# Keyed by connection type. ``ui`` uses the names of BaseHook.get_ui_field_behaviour().
CONNECTION_TYPES: dict[str, dict[str, Any]] = {
    "nemo": {
        "hook_class": "NemoHook",
        "hook_name": "NVIDIA NeMo Microservices",
        "ui": {
            "hidden_fields": ["login"],
            "relabeling": {
                "host": "NeMo platform base URL",
                "schema": "Scheme (when the URL has none)",
                "port": "Port (when the URL has none)",
                "password": "API key (optional)",
            },
            "placeholders": {
                "host": "https://nemo.example.com (Entity Store, Customizer, Evaluator, Deployment Management)",
                "schema": "https",
                "password": "sent as Authorization: Bearer <key>",
                "extra": '{"timeout": 60, "verify": true}',
            },
        },
    },
    "nemo_datastore": {
        "hook_class": "DataStoreHook",
        "hook_name": "NVIDIA NeMo Data Store",
        "ui": {
            "hidden_fields": ["login"],
            "relabeling": {
                "host": "Data Store base URL",
                "schema": "Scheme (when the URL has none)",
                "port": "Port (when the URL has none)",
                "password": "Token (optional)",
            },
            "placeholders": {
                "host": "https://datastore.example.com (the Hugging Face API is at <base>/v1/hf)",
                "schema": "https",
                "password": "Hugging Face-style token, if the Data Store requires one",
                "extra": '{"timeout": 120}',
            },
        },
    },
    "nim": {
        "hook_class": "NimHook",
        "hook_name": "NVIDIA NIM (OpenAI-compatible)",
        "ui": {
            "hidden_fields": ["login"],
            "relabeling": {
                "host": "NIM proxy base URL",
                "schema": "Scheme (when the URL has none)",
                "port": "Port (when the URL has none)",
                "password": "API key (optional)",
            },
            "placeholders": {
                "host": "https://nim.example.com (serves /v1/models, /v1/chat/completions, /v1/embeddings)",
                "schema": "https",
                "password": "sent as Authorization: Bearer <key>",
                "extra": '{"timeout": 120}',
            },
        },
    },
}


def ui_field_behaviour(conn_type: str) -> dict[str, Any]:
    """The connection form behaviour of a connection type (a fresh copy: callers may mutate it)."""
    return copy.deepcopy(CONNECTION_TYPES[conn_type]["ui"])


def _provider_ui(ui: dict[str, Any]) -> dict[str, Any]:
    # provider info spells the keys in kebab-case.
    return {"hidden-fields": list(ui["hidden_fields"]), "relabeling": dict(ui["relabeling"]), "placeholders": dict(ui["placeholders"])}


def get_provider_info() -> dict[str, Any]:
    """Provider metadata in the shape of Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "NeMo Data Flywheel",
        "description": (
            "Hooks for NVIDIA NeMo microservices (Entity Store, Data Store, Customizer, Evaluator, "
            "Deployment Management) and OpenAI-compatible NIM endpoints, used by the data flywheel DAGs."
        ),
        "integrations": [
            {
                "integration-name": "NVIDIA NeMo Microservices",
                "external-doc-url": "https://docs.nvidia.com/nemo/microservices/latest/",
                "tags": ["software"],
            }
        ],
        "hooks": [{"integration-name": "NVIDIA NeMo Microservices", "python-modules": [HOOKS_MODULE]}],
        "connection-types": [
            {
                "connection-type": conn_type,
                "hook-class-name": f"{HOOKS_MODULE}.{spec['hook_class']}",
                "hook-name": spec["hook_name"],
                "ui-field-behaviour": _provider_ui(spec["ui"]),
                "conn-fields": {"timeout": copy.deepcopy(_TIMEOUT_FIELD), "verify": copy.deepcopy(_VERIFY_FIELD)},
            }
            for conn_type, spec in CONNECTION_TYPES.items()
        ],
    }
