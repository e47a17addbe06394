"""Flood waits, handled in one place, and Telegram errors turned into domain errors.

Clients are made with ``flood_sleep_threshold=0``, so Telethon raises every flood wait
instead of sleeping on its own, and :class:`FloodPolicy` alone decides: a wait up to
``[telegram] flood_wait_ceiling`` seconds is slept (with an injectable sleeper) and the call
retried; a longer one raises :class:`FloodWaitTooLong`, which skips the channel until the
wait is over. Nothing here swallows a flood wait.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from telethon import errors

from archiver.errors import NotLoggedIn, SourceError
from archiver.sources.telethon_session import REVOKED

log = logging.getLogger(__name__)

T = TypeVar("T")


class FloodWaitTooLong(SourceError):
    """Telegram asked for a wait above the ceiling: the channel is skipped until it is over."""

    def __init__(self, what: str, seconds: int, ceiling: int) -> None:
        super().__init__(
            f"{what}: Telegram asks to wait {seconds}s (above [telegram] flood_wait_ceiling ="
            f" {ceiling}s); skipped until the wait is over"
        )
        self.seconds = seconds


class FloodPolicy:
    """The one place flood waits are handled. ``call`` runs a request (or a whole restartable
    read), sleeping out waits up to ``ceiling`` seconds and retrying; a longer wait, or too many
    in a row, raises :class:`FloodWaitTooLong`."""

    def __init__(self, ceiling: int, sleeper: Callable[[float], Awaitable[None]], max_waits: int):
        self.ceiling = ceiling
        self.sleeper = sleeper
        self.max_waits = max_waits
        self.waited = 0.0

    async def call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        waits = 0
        while True:
            try:
                return await fn()
            except (errors.FloodWaitError, errors.FloodPremiumWaitError) as exc:
                seconds = int(exc.seconds)
                if seconds > self.ceiling or waits >= self.max_waits:
                    raise FloodWaitTooLong(what, seconds, self.ceiling) from None
                waits += 1
                log.warning("%s: flood wait of %ds, waiting", what, seconds)
                self.waited += seconds
                await self.sleeper(seconds)


def translate(name: str, exc: errors.RPCError) -> Exception:
    """A Telegram error as a domain error naming the channel."""
    if isinstance(exc, errors.UnauthorizedError | errors.AuthKeyError):
        return NotLoggedIn(REVOKED)
    if isinstance(exc, errors.ChannelPrivateError):
        return SourceError(f"{name}: the channel is private or this account was banned from it")
    if isinstance(exc, errors.UsernameNotOccupiedError | errors.UsernameInvalidError):
        return SourceError(f"{name}: no such username on Telegram; check [[channels]]")
    return SourceError(f"{name}: Telegram refused {exc.__class__.__name__}: {exc.message}")
