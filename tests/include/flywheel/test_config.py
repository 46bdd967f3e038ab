from __future__ import annotations

import copy

import pytest
import yaml

from include.flywheel import scoring
from include.flywheel.config import (
    DEFAULT_CONFIG_PATH,
    OVERRIDABLE_SECTIONS,
    ConfigError,
    ExampleSelection,
    ScoringSettings,
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


# -- the scoring section: defaults equal the behaviour before it existed --------------------------


def test_defaults_are_todays_behaviour():
    settings = ScoringSettings()
    assert settings.confidence == scoring.DEFAULT_CONFIDENCE == 0.95
    assert settings.resamples == scoring.DEFAULT_RESAMPLES
    assert settings.regression_tolerance == 0.0
    assert settings.surfacing == scoring.SurfacingThresholds()


def test_bundled_file_states_the_defaults_for_every_workload():
    config = load_config()
    for workload in config.workloads:
        assert workload.scoring == ScoringSettings(), workload.workload_id
    text = DEFAULT_CONFIG_PATH.read_text()
    # The section is written out (with comments), not only implied by the class defaults.
    assert "\nscoring:" in text and "regression_tolerance" in text and "block_on_regression" in text


def test_scoring_is_overridable_by_a_workload_and_a_run(raw):
    assert "scoring" in OVERRIDABLE_SECTIONS
    raw["workloads"][0]["scoring"] = {"confidence": 0.9, "surfacing": {"min_rows": 5}}
    workload = parse_config(raw).workloads[0]
    assert workload.scoring.confidence == 0.9
    assert workload.scoring.surfacing.min_rows == 5
    # Untouched surfacing keys keep their values.
    assert workload.scoring.surfacing.require_better_than_base is True
    run = workload.with_overrides({"scoring": {"regression_tolerance": 0.05, "surfacing": {"min_score": 0.6}}})
    assert run.scoring.regression_tolerance == 0.05
    assert run.scoring.surfacing.min_score == 0.6
    assert run.scoring.surfacing.min_rows == 5  # the workload's value, not the class default
    assert run.scoring.confidence == 0.9
    assert parse_config(raw).workloads[1].scoring == ScoringSettings()  # the other workload is unchanged


def test_the_settings_drive_the_surfacing_rule():
    """The same evidence, two rules: the configured thresholds are the ones ``surface`` applies."""
    candidate = {"similarity": scoring.ConfidenceInterval(mean=8.0, low=7.5, high=8.5, n=8)}
    base = {"similarity": scoring.ConfidenceInterval(mean=5.0, low=4.5, high=5.5, n=8)}
    default = load_config().workload("faq-chat").scoring
    strict = load_config().workload("faq-chat").with_overrides({"scoring": {"surfacing": {"min_rows": 5}}}).scoring
    assert scoring.surface(candidate, base, workload_type="generic", thresholds=default.surfacing).decision == (
        "insufficient_data"
    )
    assert scoring.surface(candidate, base, workload_type="generic", thresholds=strict.surfacing).decision == "surface"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"confidence": 1.0}, "scoring.confidence: Input should be less than 1"),
        ({"resamples": 10}, "scoring.resamples: Input should be greater than or equal to 100"),
        ({"regression_tolerance": -0.1}, "scoring.regression_tolerance: Input should be greater than or equal to 0"),
        ({"surfacing": {"min_rowz": 3}}, "scoring.surfacing.min_rowz: unknown setting (check the spelling)"),
        ({"surfacing": {"primary_score": "accuracy"}}, "surfacing.primary_score 'accuracy' is not a score key"),
        ({"surfacing": {"min_rows": 0}}, "scoring.surfacing.min_rows: Input should be greater than or equal to 1"),
    ],
)
def test_bad_scoring_settings_name_the_field(raw, change, expected):
    raw["scoring"] = change
    assert expected in errors_of(raw)


def test_run_override_of_scoring_is_validated(raw):
    workload = parse_config(raw).workloads[0]
    with pytest.raises(ConfigError, match=r"scoring\.confidence"):
        workload.with_overrides({"scoring": {"confidence": 0}})
