from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from include.flywheel.config import ConfigError, load_config
from include.flywheel.runs import (
    DEFAULT_WINDOW,
    overrides_from_params,
    param_defaults,
    resolve_window,
    run_key,
    run_settings,
)

UTC = timezone.utc


@pytest.fixture
def workload():
    return load_config().workload("customer-support-tools")


def test_untouched_form_overrides_nothing(workload):
    assert overrides_from_params(workload, param_defaults(workload)) == {}
    assert run_settings(workload, param_defaults(workload)) == workload


def test_changed_params_become_section_overrides(workload):
    params = param_defaults(workload) | {"eval_size": 10, "icl_example_selection": "semantic_similarity"}
    overrides = overrides_from_params(workload, params)
    assert overrides == {"data_split": {"eval_size": 10}, "icl": {"example_selection": "semantic_similarity"}}
    settings = run_settings(workload, params)
    assert settings.data_split.eval_size == 10
    assert settings.data_split.limit == workload.data_split.limit


def test_candidate_selection_and_advanced_overrides(workload):
    first = workload.candidates[0].model_name
    params = param_defaults(workload) | {"candidates": [first], "overrides": {"training": {"epochs": 5}}}
    settings = run_settings(workload, params)
    assert [c.model_name for c in settings.candidates] == [first]
    assert settings.training.epochs == 5
    assert settings.training.lora.adapter_dim == workload.training.lora.adapter_dim
    with pytest.raises(ConfigError, match="unknown model"):
        run_settings(workload, {"candidates": ["nope/model"]})
    with pytest.raises(ConfigError, match="expected a JSON object"):
        run_settings(workload, {"overrides": [1, 2]})


def test_invalid_param_combination_is_rejected(workload):
    with pytest.raises(ConfigError, match="icl.max_examples"):
        run_settings(workload, {"eval_size": 2})


def test_window_defaults_to_data_interval():
    start, end = datetime(2026, 11, 18, 2, tzinfo=UTC), datetime(2026, 11, 19, 2, tzinfo=UTC)
    window = resolve_window({}, start, end)
    assert (window.start, window.end, window.source) == (start, end, "data_interval")


def test_window_params_override_and_accept_dates():
    window = resolve_window(
        {"log_window_start": "2026-11-17", "log_window_end": "2026-11-24T00:00:00Z"},
        datetime(2026, 11, 18, tzinfo=UTC),
        datetime(2026, 11, 19, tzinfo=UTC),
    )
    assert window.start == datetime(2026, 11, 17, tzinfo=UTC)
    assert window.end == datetime(2026, 11, 24, tzinfo=UTC)
    assert window.source == "params"


def test_window_start_only_ends_at_interval_end():
    end = datetime(2026, 11, 19, tzinfo=UTC)
    window = resolve_window({"log_window_start": "2026-11-15T06:00:00+01:00"}, end, end)
    assert window.start == datetime(2026, 11, 15, 5, tzinfo=UTC)
    assert window.end == end


def test_empty_interval_reads_the_last_day():
    instant = datetime(2026, 11, 19, 12, tzinfo=UTC)
    window = resolve_window({}, instant, instant)
    assert window.end - window.start == DEFAULT_WINDOW
    assert window.source == "default"


def test_bad_window_is_a_clear_error():
    with pytest.raises(ConfigError, match="is not an ISO 8601 date"):
        resolve_window({"log_window_start": "last tuesday"}, None, None)
    with pytest.raises(ConfigError, match="log window is empty"):
        resolve_window({"log_window_start": "2026-11-20", "log_window_end": "2026-11-19"}, None, None)


def test_run_key_is_path_safe():
    assert run_key("scheduled__2026-11-18T02:00:00+00:00") == "scheduled__2026-11-18T02-00-00-00-00"
    assert "/" not in run_key("manual__a/b")
    assert run_key("manual__x") != run_key("manual__y")
    assert timedelta(days=1) == DEFAULT_WINDOW
