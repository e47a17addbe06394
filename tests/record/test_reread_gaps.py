"""The rotation's promise, post by post (issue 13: "the whole channel is checked at least once
every full_recheck_days"): simulated passes at a fixed interval over several rounds, each
taking ``rotation_quota`` posts from the top down, a new round beginning at the pass after
the last one ended; no post may wait longer than the period between two re-reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from archiver.record.reread import rotation_quota

T0 = datetime(2024, 5, 1, tzinfo=UTC)
WEEK = timedelta(days=7)
TOTAL = 10_000


def simulate(interval: timedelta, *, rounds: int = 3) -> tuple[timedelta, list[timedelta]]:
    """(the longest wait of any post between two re-reads, each round's duration)."""
    last: list[datetime | None] = [None] * TOTAL
    longest = timedelta(0)
    durations: list[timedelta] = []
    now = T0
    for _ in range(rounds):
        started: datetime | None = None
        remaining = TOTAL
        while remaining:
            n = rotation_quota(
                total=TOTAL, remaining=remaining, started_at=started, now=now, period=WEEK,
                interval=interval,
            )  # fmt: skip
            assert 1 <= n <= remaining
            started = started or now
            for i in range(TOTAL - remaining, TOTAL - remaining + n):
                prev = last[i]
                if prev is not None:
                    longest = max(longest, now - prev)
                last[i] = now
            remaining -= n
            if not remaining:
                durations.append(now - started)
            now += interval
    return longest, durations


INTERVALS = [timedelta(minutes=15), timedelta(hours=1), timedelta(hours=6), timedelta(days=1),
             timedelta(hours=30), timedelta(days=2), timedelta(days=3)]  # fmt: skip


@pytest.mark.parametrize("interval", INTERVALS, ids=str)
def test_no_post_waits_longer_than_the_period(interval: timedelta) -> None:
    """Found by review: with daily passes every post waited 8 days (a round took the whole
    week, the next began a day later), and with passes 30 h or more apart a round itself
    overran the week."""
    longest, durations = simulate(interval)
    assert longest <= WEEK, longest
    assert all(d <= WEEK for d in durations), durations


def test_frequent_passes_each_take_a_little() -> None:
    sizes = []
    remaining, started, now = TOTAL, None, T0
    for _ in range(5):
        n = rotation_quota(
            total=TOTAL, remaining=remaining, started_at=started, now=now, period=WEEK,
            interval=timedelta(minutes=15),
        )  # fmt: skip
        sizes.append(n)
        started, remaining, now = started or now, remaining - n, now + timedelta(minutes=15)
    assert all(1 <= n <= 20 for n in sizes), sizes  # 10,000 posts over ~670 passes


def test_a_late_pass_catches_up_and_nothing_is_over_taken() -> None:
    late = rotation_quota(
        total=700, remaining=300, started_at=T0, now=T0 + timedelta(days=30), period=WEEK,
        interval=timedelta(days=1),
    )  # fmt: skip
    assert late == 300
    assert (
        rotation_quota(
            total=700, remaining=0, started_at=T0, now=T0, period=WEEK, interval=timedelta(days=1)
        )
        == 0
    )
    longer = rotation_quota(
        total=700, remaining=700, started_at=None, now=T0, period=WEEK, interval=timedelta(days=9)
    )
    assert longer == 700  # passes further apart than the period: each takes everything
