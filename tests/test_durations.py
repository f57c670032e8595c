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


def test_zero_only_where_it_means_something() -> None:
    assert parse_duration("0", allow_zero=True) == 0.0
    assert parse_duration("0s", allow_zero=True) == 0.0
    with pytest.raises(ValueError, match="longer than zero"):
        parse_duration(-1, allow_zero=True)


def test_gateway_settings_take_zero_where_documented() -> None:
    from services.kubepie.gateway.settings import GatewaySettings

    settings = GatewaySettings(oidc_issuer="https://id.example.org", client_id="kubepie",
                               client_secret="x", public_url="http://127.0.0.1:8780",
                               session_secret="s" * 32, authorize_reuse="0",
                               key_max_lifetime="0")
    assert settings.authorize_reuse == 0.0 and settings.key_max_lifetime == 0.0
    with pytest.raises(ValueError, match="less than or equal to 60"):
        GatewaySettings(oidc_issuer="https://id.example.org", client_id="kubepie",
                        client_secret="x", public_url="http://127.0.0.1:8780",
                        session_secret="s" * 32, authorize_reuse="2m")


def test_warning_lists_are_sorted_longest_first_without_duplicates() -> None:
    assert parse_duration_list("1m,10m,60s") == (600.0, 60.0)
    assert parse_duration_list("") == ()


@pytest.mark.parametrize(("seconds", "text"), [(5400, "1h30m"), (120, "2m"), (0, "0s"),
                                               (86401, "1d1s"), (59.6, "1m")])
def test_formats_short(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
