"""Provider metadata: valid against Airflow's schema, and consistent with the hook classes."""

from __future__ import annotations

import json
from pathlib import Path

import airflow
import jsonschema
import pytest
from airflow.sdk.module_loading import import_string

from include.nemo.provider_info import PACKAGE_NAME, get_provider_info

SCHEMA_DIR = Path(airflow.__file__).parent


def test_valid_against_airflow_schema():
    schema = json.loads((SCHEMA_DIR / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_ui_field_behaviour_is_valid():
    schema = json.loads((SCHEMA_DIR / "customized_form_field_behaviours.schema.json").read_text())
    for conn in get_provider_info()["connection-types"]:
        ui = conn["ui-field-behaviour"]
        jsonschema.validate({"hidden_fields": ui["hidden-fields"], "relabeling": ui["relabeling"],
                             "placeholders": ui["placeholders"]}, schema)


@pytest.mark.parametrize("conn_type", ["nemo", "nemo_datastore", "nim"])
def test_each_connection_type_maps_to_its_hook(conn_type):
    (entry,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == conn_type]
    hook = import_string(entry["hook-class-name"])
    assert hook.conn_type == conn_type
    assert hook.hook_name == entry["hook-name"]
    assert hook.default_conn_name == {"nemo": "nemo_default", "nemo_datastore": "nemo_datastore_default",
                                      "nim": "nim_default"}[conn_type]
    assert hook.conn_name_attr == "conn_id"
    behaviour = hook.get_ui_field_behaviour()
    assert behaviour["hidden_fields"] == entry["ui-field-behaviour"]["hidden-fields"]
    assert "login" in behaviour["hidden_fields"]
    assert behaviour["relabeling"]["password"].startswith(("API key", "Token"))
    assert set(entry["conn-fields"]) == {"timeout", "verify"}


def test_package_name_matches_pyproject():
    pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("no pyproject.toml")
    import tomllib

    assert tomllib.loads(pyproject.read_text())["project"]["name"] == PACKAGE_NAME
