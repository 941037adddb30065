"""Durations, rates and shares as scenario files write them."""

import pytest

from poolbench.units import format_duration, parse_duration, parse_rate, parse_share


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("250us", 0.00025),
        (3, 3.0),
        (0.5, 0.5),
        ("1.5s", 1.5),
        (" 30 s ", 30.0),
        ("7", 7.0),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5 parsecs", "-3s", "ms", "", True, None, [1], "1e3s"])
def test_bad_durations_say_what_is_expected(text):
    with pytest.raises(ValueError, match="expected a duration such as 500ms"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "per_second"), [("200/s", 200.0), ("600/min", 10.0), ("3600/h", 1.0), (50, 50.0)]
)
def test_rates(text, per_second):
    assert parse_rate(text) == pytest.approx(per_second)


def test_bad_rate():
    with pytest.raises(ValueError, match="expected a rate"):
        parse_rate("fast")


@pytest.mark.parametrize(("text", "weight"), [("97%", 97.0), (3, 3.0), ("2.5%", 2.5)])
def test_shares(text, weight):
    assert parse_share(text) == weight


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "250ms"), (3, "3s"), (1.5, "1.5s"), (120, "2m"), (150, "2m30s"), (3600, "1h")],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
