"""Start-up options and their CLI form."""

from __future__ import annotations

import pytest

from include.nemo_emulator.options import EmulatorOptions, parse_options


def test_options_round_trip_through_the_cli_flags():
    options = EmulatorOptions(port=0, job_duration=0.5, evaluation_duration=3.0, fail_customization=["a", "b"],
                              judge_model=["j/1", "j/2"], error_rate=0.25)
    assert parse_options(options.to_cli_args()) == options


def test_options_reject_bad_values():
    with pytest.raises(ValueError, match="error_rate"):
        EmulatorOptions(error_rate=1.5)
    with pytest.raises(ValueError, match="job_duration"):
        EmulatorOptions(job_duration=-1)
    with pytest.raises(SystemExit):
        parse_options(["--latency", "-2"])
    assert EmulatorOptions(fail_evaluation="x").fail_evaluation == ["x"]  # a lone string becomes a list
