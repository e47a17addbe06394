"""The re-read rotation covers the whole channel within the period, whatever the pass interval."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from archiver.record.reread import rotation_quota

T0 = datetime(2024, 5, 1, tzinfo=UTC)
WEEK = timedelta(days=7)


@pytest.mark.parametrize("interval", [timedelta(minutes=15), timedelta(hours=6), timedelta(days=1)])
def test_a_round_completes_within_the_period(interval: timedelta) -> None:
    total, remaining, started, now, passes = 10_000, 10_000, None, T0, 0
    while remaining:
        n = rotation_quota(
            total=total, remaining=remaining, started_at=started, now=now, period=WEEK
        )
        assert 1 <= n <= remaining
        started = started or now
        remaining -= n
        passes += 1
        if remaining:
            now += interval
    assert now - T0 <= WEEK
    assert passes > 1  # spread over passes, not all at once


def test_nothing_to_do_and_a_late_pass_takes_what_is_due() -> None:
    assert rotation_quota(total=0, remaining=0, started_at=None, now=T0, period=WEEK) == 0
    assert rotation_quota(total=10, remaining=0, started_at=T0, now=T0, period=WEEK) == 0
    late = rotation_quota(total=700, remaining=700, started_at=T0, now=T0 + WEEK, period=WEEK)
    assert late == 700
