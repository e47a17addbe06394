"""How much of a channel's older history a pass re-reads. Pure, no I/O.

Every pass re-reads the posts up to ``recent_days`` old. Older posts are re-read on a rotation
that walks the channel from its newest archived post down to its oldest, so that the whole
channel is re-read at least once every ``full_recheck_days``, whatever the interval between
passes (``telewatch run``'s scheduler or a cron line): each pass takes the share of the
channel that is due by now, so a pass after a long pause catches up, and frequent passes each
take a little.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta


def rotation_quota(
    *,
    total: int,
    remaining: int,
    started_at: datetime | None,
    now: datetime,
    period: timedelta,
    interval: timedelta | None = None,
) -> int:
    """How many posts the rotation should re-read in this pass to finish within ``period``.

    ``total``: posts in the rotation; ``remaining``: not re-read yet in the current round;
    ``started_at``: when the current round began (``None``: it begins now); ``interval``:
    the expected time until the next pass (the time since the previous one is a fair guess).
    At least one post while any remain, so a rotation always moves; never more than
    ``remaining``.

    The next round begins at the pass after this one ends, so a post waits a round plus up to
    one interval between two re-reads: with ``interval`` known, a round ends by ``period -
    interval`` (each pass takes what is due by the next one, and all of it when the next one
    would come later), and no post waits longer than ``period`` whatever the interval below
    it. Without it, a round aims at 90 % of the period: right for passes minutes apart, but
    daily passes leave a post 8 days between re-reads."""
    if remaining <= 0 or total <= 0:
        return 0
    remaining = min(remaining, total)
    elapsed = 0.0 if started_at is None else max(0.0, (now - started_at).total_seconds())
    seconds = max(period.total_seconds(), 1.0)
    done = total - remaining
    if interval is not None:
        step = max(interval.total_seconds(), 0.0)
        end = seconds - step  # the round must be complete by then
        if end <= 0 or elapsed + step > end:
            return remaining
        return max(1, min(remaining, math.ceil(total * (elapsed + step) / end) - done))
    # Aim to finish a little early (90 % of the period), so a rotation that started late in a
    # pass interval still completes within the period.
    due = total if elapsed >= seconds * 0.9 else math.ceil(total * elapsed / (seconds * 0.9))
    return max(1, min(remaining, due - done))


def pass_interval(last: datetime | None, now: datetime, period: timedelta) -> timedelta | None:
    """The time since a channel's previous pass: the guess of the time to its next one, which
    :func:`rotation_quota` takes as ``interval`` (None when unknown or not below the period)."""
    if last is None:
        return None
    gap = now - last
    return gap if timedelta(0) < gap < period else None
