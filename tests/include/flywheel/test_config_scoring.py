"""The ``scoring`` settings section: defaults equal the behaviour before it existed, overrides, errors."""

from __future__ import annotations

import pytest
import yaml

from include.flywheel import scoring
from include.flywheel.config import (
    DEFAULT_CONFIG_PATH,
    OVERRIDABLE_SECTIONS,
    ConfigError,
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
