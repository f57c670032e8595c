from datetime import UTC, datetime, timedelta

from services.walltime.countdown import Countdown, State

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def test_deadline_is_start_plus_limit() -> None:
    countdown = Countdown(START, 1800, (600, 60))
    assert countdown.deadline == at(1800)
    assert countdown.remaining(at(1000)) == 800


def test_states_follow_the_warning_thresholds() -> None:
    countdown = Countdown(START, 1800, (600, 60))
    assert countdown.state(at(0)) is State.RUNNING
    assert countdown.state(at(1199)) is State.RUNNING
    assert countdown.state(at(1200)) is State.WARNING
    assert countdown.warnings_due(at(1200)) == [600]
    assert countdown.warnings_due(at(1750)) == [600, 60]
    assert countdown.state(at(1800)) is State.STOPPING
    assert countdown.state(at(1900), stop_accepted=True) is State.STOPPED


def test_wakes_at_each_threshold_then_at_the_deadline() -> None:
    countdown = Countdown(START, 1800, (600, 60))
    assert countdown.next_wakeup(at(0)) == 1200
    assert countdown.next_wakeup(at(1200)) == 540
    assert countdown.next_wakeup(at(1740)) == 60
    assert countdown.next_wakeup(at(2000)) == 0


def test_status_document() -> None:
    status = Countdown(START, 1800, (600, 60)).status(at(1700))
    assert status == {
        "limit": 1800, "started": "2026-01-01T12:00:00Z", "deadline": "2026-01-01T12:30:00Z",
        "elapsed": 1700.0, "remaining": 100.0, "state": "warning", "warnings": [600, 60],
        "warnings_due": [600],
    }
    late = Countdown(START, 60).status(at(100))
    assert late["remaining"] == 0 and late["state"] == "stopping"
