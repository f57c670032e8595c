import pytest

from services.runtime.durations import format_duration, parse_duration, parse_duration_list


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("30m", 1800), ("12h", 43200), ("1d", 86400), ("1h30m", 5400),
    ("45", 45), ("2.5m", 150), (" 10M ", 600), (15, 15), (0.5, 0.5),
])
def test_parses_operator_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["abc", "", "10x", "m", "1h 30m", "-5m", "0", "0s", "1h-", True])
def test_rejects_what_is_not_a_positive_duration(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)  # type: ignore[arg-type]


def test_warning_lists_are_sorted_longest_first_without_duplicates() -> None:
    assert parse_duration_list("1m,10m,60s") == (600.0, 60.0)
    assert parse_duration_list("") == ()


@pytest.mark.parametrize(("seconds", "text"), [(5400, "1h30m"), (120, "2m"), (0, "0s"),
                                               (86401, "1d1s"), (59.6, "1m")])
def test_formats_short(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
