"""One set of formatters for the CLI and the UI: values with a fixed number of significant digits,
durations, start times, counts with the noun in the right form."""

from __future__ import annotations

import pytest

from tui_ft.display import (
    STATE_STYLE,
    format_column,
    format_count,
    format_duration,
    format_params,
    format_started,
    format_value,
)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.0004422, "4.422e-4"),  # below 1e-3: scientific, never 0.0004422
        (1.183, "1.183"),
        (0.7053, "0.7053"),
        (2, "2.000"),
        (0.001, "0.001000"),
        (9.99996, "10.00"),  # rounding carries into the next digit: still 4 significant
        (-0.5, "-0.5000"),
        (12345.6, "12,346"),
        (123456789, "1.235e8"),
        (0, "0"),
        (float("nan"), "nan"),
        (float("-inf"), "-inf"),
        (None, "-"),
        (True, "-"),
    ],
)
def test_values_have_four_significant_digits(value, shown):
    assert format_value(value) == shown


def test_one_column_of_losses_reads_alike():
    shown = [format_value(v) for v in (1.183, 0.7053, 0.04422, 0.0004422)]
    assert shown == ["1.183", "0.7053", "0.04422", "4.422e-4"]


def test_durations_start_times_counts_and_states():
    assert format_duration(65) == "1:05" and format_duration(3725.9) == "1:02:05"
    assert format_duration(None) == "-" and format_duration(float("nan")) == "-"
    assert format_started(None) == "-" and len(format_started(1.7e9)) == len("11-14 22:13")
    assert format_count(1, "run") == "1 run" and format_count(2, "run") == "2 runs"
    assert format_count(0, "error") == "0 errors" and format_count(2, "child", "children") == "2 children"
    assert STATE_STYLE["unreadable"] == STATE_STYLE["failed"] == "red"


@pytest.mark.parametrize(
    ("count", "shown"),
    [
        (349_800, "349.8K"),
        (388_736, "388.7K"),
        (40_000_000, "40.0M"),
        (6_738_415_616, "6.74B"),
        (999_960, "1.0M"),  # rounding carries into the next unit, never 1000.0K
        (999_999_999, "1.00B"),
        (1_000, "1.0K"),
        (812, "812"),
        (0, "0"),
        (None, "-"),
    ],
)
def test_parameter_counts_read_one_way(count, shown):
    assert format_params(count) == shown


def test_a_column_reads_one_way():
    # a sweep's learning rates, as its trials hold them (the text a `--set` takes), one notation
    assert format_column(["1e-3", "0.0031622776601683794", "1e-05"]) == [
        "1.000e-03",
        "3.162e-03",
        "1.000e-05",
    ]
    assert format_column([0.1, 0.05, None]) == ["0.10000", "0.05000", "-"]
    assert format_column(["8", "16", 32]) == ["8", "16", "32"]  # whole numbers stay whole
    assert format_column(["adamw_torch", "sgd"]) == ["adamw_torch", "sgd"]  # text as it is
    assert format_column([1.183, 0.7053, None, 2.0]) == ["1.1830", "0.7053", "-", "2.0000"]
    assert format_column([0.0004422, 1.183]) == ["4.422e-04", "1.183e+00"]
    assert format_column([float("nan"), 0.5]) == ["nan", "0.5000"]
