"""The account's flood ledger: one record of Telegram's flood waits, per method, kept in the
archive and checked by our own code before every request.

Telethon has a guard of its own (``client/users.py``: ``_flood_waited_requests``), but with
``receive_updates=False`` (``sync``, ``recheck``, cron) it records a wait under the id of the
``InvokeWithoutUpdates`` wrapper and checks the unwrapped request, so it never matches; and it
lives in memory, so the next cron run knows nothing of it. The ledger is installed on the
client (:class:`~archiver.sources.telethon_session.Client`), whose ``_call`` asks
:meth:`FloodLedger.check` before anything is sent (by us or by Telethon's update loop) and
:meth:`FloodLedger.record` after Telegram answers ``FLOOD_WAIT``. A request during a known
wait raises ``FloodWaitError`` with the seconds left without reaching Telegram, exactly as
if Telegram had answered it, so every caller handles one kind of error.

The ledger also keeps a daily budget of ``contacts.ResolveUsername`` (the request Telegram
punishes hardest) for the account: :meth:`FloodLedger.spend`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from telethon import errors

from archiver.store.archive import Archive
from archiver.store.following import (
    count_request,
    flood_waits,
    record_flood_wait,
    requests_on,
)

log = logging.getLogger(__name__)

ACCOUNT_KEY = "telethon.account"  # meta: the account last used with this archive
RESOLVE = "contacts.ResolveUsername"
RESOLVE_PER_DAY = 200  # ResolveUsername calls per account and UTC day


def method_name(request: Any) -> str:
    """``channels.GetMessages`` for ``functions.channels.GetMessagesRequest`` (unwrapped)."""
    while hasattr(request, "query") and type(request).__name__.startswith("Invoke"):
        request = request.query
    module = type(request).__module__.rsplit(".", 1)[-1]
    name = type(request).__name__.removesuffix("Request")
    return name if module == "functions" else f"{module}.{name}"


class FloodLedger:
    """The flood waits of one account, from the archive, kept up to date in both places."""

    def __init__(
        self,
        archive: Archive,
        account: int,
        now: Callable[[], datetime],
        waits: dict[str, datetime] | None = None,
    ) -> None:
        self.archive = archive
        self.account = account
        self.now = now
        self.waits: dict[str, datetime] = dict(waits or {})
        self.refused: list[str] = []  # methods refused here (never sent), for tests and stats

    @classmethod
    async def load(cls, archive: Archive, account: int, now: Callable[[], datetime]) -> FloodLedger:
        ledger = cls(archive, account, now)
        await ledger.refresh()
        return ledger

    async def refresh(self) -> None:
        """Read the archive again (another process may have recorded a wait)."""
        for w in await flood_waits(self.archive, account=self.account, now=self.now()):
            if w.until > self.waits.get(w.method, w.until - timedelta(seconds=1)):
                self.waits[w.method] = w.until

    def until(self, method: str) -> datetime | None:
        """The end of the running wait of ``method``, if one runs."""
        due = self.waits.get(method)
        return due if due is not None and due > self.now() else None

    def running(self) -> dict[str, datetime]:
        now = self.now()
        return {m: d for m, d in self.waits.items() if d > now}

    def check(self, request: Any) -> None:
        """Raise ``FloodWaitError`` (with the seconds left) if ``request``'s method waits."""
        method = method_name(request)
        due = self.until(method)
        if due is None:
            return
        left = math.ceil((due - self.now()).total_seconds())
        self.refused.append(method)
        log.debug("%s: in a flood wait for %ds more; not sent", method, left)
        raise errors.FloodWaitError(request=request, capture=max(left, 1))

    async def record(self, request: Any, seconds: int) -> datetime:
        """Telegram answered ``FLOOD_WAIT_seconds`` to ``request``: remember the deadline."""
        method = method_name(request)
        now = self.now()
        until = now + timedelta(seconds=max(int(seconds), 1))
        if until > self.waits.get(method, now):
            self.waits[method] = until
        await record_flood_wait(
            self.archive, self.account, method, until=until, seconds=int(seconds), now=now
        )
        log.warning("flood wait: %s until %s (%ds)", method, f"{until:%Y-%m-%d %H:%M:%S}Z", seconds)
        return until

    async def spend(self, method: str, budget: int) -> bool:
        """Count one request of ``method`` against today's ``budget``; False (and nothing
        counted) when the budget is spent."""
        day = f"{self.now():%Y-%m-%d}"
        if await requests_on(self.archive, self.account, method, day) >= budget:
            return False
        await count_request(self.archive, self.account, method, day)
        return True

    def next_day(self) -> datetime:
        """The next UTC midnight: when a spent daily budget is renewed."""
        now = self.now()
        return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def account_key(name: str | None = None) -> str:
    """The meta key of the Telegram user id last used with the session of ``[[accounts]]``
    ``name`` (None: the one session of ``[telegram]``, the key from before accounts)."""
    return ACCOUNT_KEY if name is None else f"{ACCOUNT_KEY}.{name}"


async def last_account(archive: Archive, name: str | None = None) -> int | None:
    value = await archive.get_meta(account_key(name))
    return int(value) if value else None


async def remember_account(archive: Archive, account: int, name: str | None = None) -> None:
    async with archive.transaction() as db:
        await db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (account_key(name), str(account)),
        )
