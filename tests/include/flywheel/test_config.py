from __future__ import annotations

import copy

import pytest
import yaml

from include.flywheel.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    ExampleSelection,
    load_config,
    parse_config,
)


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())


def errors_of(raw: dict) -> str:
    with pytest.raises(ConfigError) as excinfo:
        parse_config(raw, source="flywheel.yaml")
    return str(excinfo.value)


def test_bundled_settings_load():
    config = load_config()
    ids = [w.workload_id for w in config.workloads]
    assert ids == ["customer-support-tools", "faq-chat"]
    tools = config.workload("customer-support-tools")
    assert tools.dag_id == "flywheel__customer-support-tools"
    assert tools.schedule == "0 2 * * *"
    assert [c.model_name for c in tools.candidates][:1] == ["meta/llama-3.2-1b-instruct"]
    assert tools.training.lora.adapter_dim == 32


def test_workload_override_merges_over_globals(raw):
    raw["workloads"][0]["data_split"] = {"eval_size": 30}
    workload = parse_config(raw).workloads[0]
    assert workload.data_split.eval_size == 30
    # Untouched keys of the same section keep the global value, not the class default.
    raw_limit = raw["data_split"]["limit"]
    assert workload.data_split.limit == raw_limit


def test_run_override_merges_over_workload_not_class_defaults(raw):
    raw["data_split"]["limit"] = 5000
    raw["workloads"][0]["data_split"] = {"min_total_records": 80}
    workload = parse_config(raw).workloads[0]
    run = workload.with_overrides({"data_split": {"eval_size": 25}})
    assert run.data_split.eval_size == 25
    assert run.data_split.min_total_records == 80  # the workload's value
    assert run.data_split.limit == 5000  # the global value, not the class default 10000
    assert workload.data_split.eval_size == 20  # the workload itself is unchanged


def test_run_override_is_validated_again(raw):
    workload = parse_config(raw).workloads[0]
    with pytest.raises(ConfigError, match=r"data_split: .*limit \(10\) must be >= min_total_records"):
        workload.with_overrides({"data_split": {"limit": 10}})
    with pytest.raises(ConfigError, match="unknown section"):
        workload.with_overrides({"datasplit": {"limit": 10}})


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r["data_split"].update(limit=10), "limit (10) must be >= min_total_records (50)"),
        (lambda r: r["data_split"].update(val_ratio=1.0), "data_split.val_ratio: Input should be less than 1"),
        (lambda r: r["data_split"].update(val_ratio=-0.1), "data_split.val_ratio: Input should be greater than or equal to 0"),
        (lambda r: r["data_split"].update(eval_size=60), "eval_size (60) must be <= min_total_records (50)"),
        (lambda r: r["icl"].update(max_examples=25), "icl.max_examples (25) must be <= data_split.eval_size (20)"),
        (lambda r: r["icl"].update(min_examples=4), "min_examples (4) must be <= max_examples (3)"),
        (lambda r: r["icl"].update(reserved_tokens=9000), "reserved_tokens (9000) must be < max_context_length"),
        (lambda r: r["icl"].update(example_selection="random"), "icl.example_selection"),
        (lambda r: r["data_split"].update(eval_szie=3), "data_split.eval_szie: unknown setting"),
        (lambda r: r["candidates"][0].pop("customizer"), "has customization_enabled: true but no customizer"),
        (lambda r: r["candidates"].append(copy.deepcopy(r["candidates"][0])), "model_name must be unique"),
        (lambda r: r["workloads"][0].update(schedule="every night"), "neither a valid cron expression"),
        (lambda r: r["workloads"][0].update(schedule="61 2 * * *"), "neither a valid cron expression"),
        (lambda r: r["workloads"][0].update(workload_id="bad id!"), "workload_id"),
        (lambda r: r["workloads"][1].update(workload_id=r["workloads"][0]["workload_id"]), "workload_id must be unique"),
        (lambda r: r["workloads"][0].update(start_date="yesterday"), "is not an ISO date"),
        (lambda r: r.update(extra_section={}), "unknown top-level section"),
    ],
)
def test_each_invariant_fails_with_a_clear_message(raw, mutate, expected):
    mutate(raw)
    message = errors_of(raw)
    assert message.startswith("flywheel.yaml")
    assert expected in message


def test_error_names_workload_and_field(raw):
    raw["workloads"][1]["data_split"] = {"eval_size": 0}
    message = errors_of(raw)
    assert "workloads[1] (faq-chat)" in message
    assert "data_split.eval_size: Input should be greater than or equal to 1" in message


def test_invariant_across_workload_override(raw):
    # Valid globally, invalid once the workload lowers eval_size below icl.max_examples.
    raw["workloads"][0]["data_split"] = {"eval_size": 2}
    assert "icl.max_examples (3) must be <= data_split.eval_size (2)" in errors_of(raw)


def test_null_limit_and_null_schedule_are_allowed(raw):
    raw["data_split"]["limit"] = None
    raw["workloads"][0]["schedule"] = None
    workload = parse_config(raw).workloads[0]
    assert workload.data_split.limit is None
    assert workload.schedule is None


def test_load_config_reports_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read settings file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("workloads: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_unknown_workload_lists_known(raw):
    with pytest.raises(ConfigError, match=r"not configured; configured workloads: \['customer-support-tools', 'faq-chat'\]"):
        parse_config(raw).workload("nope")


def test_enum_values_round_trip(raw):
    raw["icl"]["example_selection"] = "semantic_similarity"
    assert parse_config(raw).workloads[0].icl.example_selection is ExampleSelection.SEMANTIC
