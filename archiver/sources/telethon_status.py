"""Why a channel cannot be followed, in words, and when to try again.

Every Telegram error met while resolving, joining or reading one channel becomes a
:class:`Problem`: a status (stored per channel by :mod:`archiver.store.following`), one line
that says what happened and what to do, and the earliest time anything is sent for that
channel again. One channel's problem never stops the others.

=====================  ==================================================  ==================
status                 from                                                tried again
=====================  ==================================================  ==================
``not_found``          ``USERNAME_NOT_OCCUPIED``/``USERNAME_INVALID``,       once a day
                       a username that is a user or a bot, an id with no
                       access hash
``private``            ``CHANNEL_PRIVATE`` for a channel never read          1 h, doubling, <= 1 day
``banned``             ``CHANNEL_PRIVATE`` after it was read, or             1 h, doubling, <= 1 day
                       ``CHANNEL_BANNED``/``USER_BANNED_IN_CHANNEL``
``too_many_channels``  ``CHANNELS_TOO_MUCH`` on join (about 500 per          join once a day; the
                       account, 1,000 with Premium)                          channel is polled
``join_pending``       ``INVITE_REQUEST_SENT`` on join (the admins approve   join once a day; the
                       joins)                                                channel is polled
``flood_wait``         a flood wait above the ceiling                        at Telegram's deadline
``invalid``            ``CHANNEL_INVALID``/``PEER_ID_INVALID`` again after   once a day
                       resolving once
``error``              anything else Telegram refuses                        5 min, doubling, <= 6 h
=====================  ==================================================  ==================
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from telethon import errors

from archiver.errors import SourceError, TelewatchError
from archiver.sources.telethon_flood import FloodWaitTooLong
from archiver.sources.telethon_session import LOGIN_LOST, login_lost

DAY = timedelta(days=1)
TOO_MANY = (
    "this account has joined too many channels (Telegram allows about 500, 1,000 with"
    " Premium): set join = false for this channel to poll it without joining, leave channels"
    " it no longer needs, or follow it from a second account; polled meanwhile"
)
JOIN_PENDING = (
    "joining needs the approval of the channel's admins (INVITE_REQUEST_SENT): the request is"
    " sent and not repeated; the channel is polled meanwhile, live updates start once approved"
)
# A join problem: the channel is still read (polled) meanwhile.
JOIN_STATUSES = ("too_many_channels", "join_pending")


@dataclass(frozen=True, slots=True)
class Problem:
    status: str
    reason: str
    retry_at: datetime


class ChannelProblem(SourceError):
    """A channel that cannot be followed; carries its :class:`Problem`."""

    def __init__(self, name: str, problem: Problem) -> None:
        super().__init__(f"{name}: {problem.status}: {problem.reason}")
        self.problem = problem


def _backoff(start: timedelta, cap: timedelta, attempts: int) -> timedelta:
    step: timedelta = start * (2 ** min(max(attempts, 0), 20))
    return min(step, cap)


def not_found(now: datetime, why: str = "") -> Problem:
    return Problem(
        "not_found",
        why
        or "no channel with this username on Telegram (mistyped, renamed or deleted): check"
        " [[channels]]; looked up again once a day",
        now + DAY,
    )


def classify(
    exc: BaseException, *, now: datetime, attempts: int, was_readable: bool, joining: bool = False
) -> Problem:
    """The :class:`Problem` an error means for one channel. ``attempts``: failures in a row
    before this one; ``was_readable``: the channel has been read before (a
    ``CHANNEL_PRIVATE`` then means this account lost access)."""
    if isinstance(exc, ChannelProblem):
        return exc.problem
    if isinstance(exc, FloodWaitTooLong):
        until = exc.until or now + timedelta(seconds=exc.seconds)
        return Problem(
            "flood_wait",
            f"flood wait on {exc.method} until {until:%Y-%m-%d %H:%M} UTC: Telegram asked this"
            " account to wait; nothing is sent for it before then",
            until,
        )
    if isinstance(exc, errors.UsernameNotOccupiedError | errors.UsernameInvalidError):
        return not_found(now)
    if isinstance(exc, errors.ChannelsTooMuchError):
        return Problem("too_many_channels", TOO_MANY, now + DAY)
    if isinstance(exc, errors.InviteRequestSentError):
        return Problem("join_pending", JOIN_PENDING, now + DAY)
    if isinstance(exc, errors.ChannelBannedError | errors.UserBannedInChannelError) or (
        isinstance(exc, errors.ChannelPrivateError) and was_readable
    ):
        return Problem(
            "banned",
            "Telegram refuses this account access to a channel it could read before (banned,"
            " removed, or the channel went private): check it in a Telegram app",
            now + _backoff(timedelta(hours=1), DAY, attempts),
        )
    if isinstance(exc, errors.ChannelPrivateError):
        what = "join" if joining else "read"
        return Problem(
            "private",
            f"the channel is private and this account may not {what} it: join it with this"
            " account in a Telegram app (an invite link), or remove it from [[channels]]",
            now + _backoff(timedelta(hours=1), DAY, attempts),
        )
    if isinstance(exc, errors.ChannelInvalidError | errors.PeerIdInvalidError):
        return Problem(
            "invalid",
            "Telegram does not accept the channel's access hash even after resolving it again:"
            " check the channel in a Telegram app; resolved again once a day",
            now + DAY,
        )
    if isinstance(exc, errors.RPCError):
        return Problem(
            "error",
            f"Telegram refused {exc.__class__.__name__}",
            now + _backoff(timedelta(minutes=5), timedelta(hours=6), attempts),
        )
    if isinstance(exc, TelewatchError):
        return Problem(
            "error", str(exc), now + _backoff(timedelta(minutes=5), timedelta(hours=6), attempts)
        )
    raise exc


def translate(name: str, exc: errors.RPCError) -> Exception:
    """A Telegram error that is not about one channel, as a domain error."""
    if isinstance(exc, LOGIN_LOST):
        return login_lost(exc)
    return SourceError(f"{name}: Telegram refused {exc.__class__.__name__}: {exc.message}")
