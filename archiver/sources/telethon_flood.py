"""Flood waits, handled in one place.

Clients are made with ``flood_sleep_threshold=0``, so Telethon raises every flood wait
instead of sleeping on its own, and the account's ledger
(:mod:`archiver.sources.telethon_ledger`) turns a request during a known wait into the same
``FloodWaitError`` without sending it. :class:`FloodPolicy` alone decides what to do with one:
a wait up to ``[telegram] flood_wait_ceiling`` seconds is slept (with an injectable sleeper)
and the call retried; a longer one, or too many short ones with no progress in between,
raises :class:`FloodWaitTooLong`, which makes the channel wait until the deadline. Nothing
here swallows a flood wait.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from telethon import errors

from archiver.errors import SourceError

log = logging.getLogger(__name__)

T = TypeVar("T")


def _method(request: Any) -> str:
    from archiver.sources.telethon_ledger import method_name

    return method_name(request) if request is not None else "a request"


class FloodWaitTooLong(SourceError):
    """Telegram asked for a wait above the ceiling (or too many waits came in a row): the
    channel waits until ``until``; nothing is sent for ``method`` before then."""

    def __init__(
        self,
        what: str,
        seconds: int,
        ceiling: int,
        *,
        method: str = "a request",
        until: datetime | None = None,
    ) -> None:
        when = f" (until {until:%Y-%m-%d %H:%M} UTC)" if until is not None else ""
        super().__init__(
            f"{what}: Telegram asks to wait {seconds}s before {method}{when}, above [telegram]"
            f" flood_wait_ceiling = {ceiling}s; skipped until the wait is over"
        )
        self.seconds = seconds
        self.method = method
        self.until = until


class AccountFloodWait(SourceError):
    """A flood wait before the login check itself: not a login problem."""

    def __init__(self, method: str, seconds: int, until: datetime) -> None:
        super().__init__(
            f"Telegram asks this account to wait {seconds}s before {method} (until"
            f" {until:%Y-%m-%d %H:%M} UTC): a flood wait, not a login problem; telewatch sends"
            " nothing to Telegram before then, start it again after that"
        )
        self.method = method
        self.seconds = seconds
        self.until = until


class FloodPolicy:
    """The one place flood waits are handled. ``call`` runs a request (or a whole restartable
    read), sleeping out waits up to ``ceiling`` seconds and retrying; a longer wait, or more
    than ``max_waits`` short ones with no :meth:`progress` in between, raises
    :class:`FloodWaitTooLong`."""

    def __init__(
        self,
        ceiling: int,
        sleeper: Callable[[float], Awaitable[None]],
        max_waits: int,
        now: Callable[[], datetime] | None = None,
    ):
        self.ceiling = ceiling
        self.sleeper = sleeper
        self.max_waits = max_waits
        self.now = now
        self.waited = 0.0
        self.waits = 0  # short waits since the last progress

    def progress(self) -> None:
        """Something was read and committed: the short waits before it no longer count."""
        self.waits = 0

    async def call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        while True:
            try:
                return await fn()
            except (errors.FloodWaitError, errors.FloodPremiumWaitError) as exc:
                seconds = int(exc.seconds)
                method = _method(getattr(exc, "request", None))
                if seconds > self.ceiling or self.waits >= self.max_waits:
                    until = self.now() + timedelta(seconds=seconds) if self.now else None
                    raise FloodWaitTooLong(
                        what, seconds, self.ceiling, method=method, until=until
                    ) from None
                self.waits += 1
                log.warning("%s: flood wait of %ds on %s, waiting", what, seconds, method)
                self.waited += seconds
                await self.sleeper(seconds)
