"""Personal daily digests (``/digest daily HH:MM``): sent by the bot when due, at most once.

Every ``poll_seconds`` (at least every 30 s) the due digests are read
(:mod:`archiver.store.personal_digests`); each is claimed in the archive before it is sent
(compare-and-set: never twice), checked against access like an alert (a user denied or
removed from the config, or a chat that blocked the bot, gets none), and sent within
Telegram's limits through the delivery's rate limiter, so alerts and digests together keep
to 1 message a second per chat and 30 overall. The text is :func:`archiver.digest.build_digests`
for that chat over the day up to the due time. When Telegram certainly did not take it
(:func:`bot.delivery.not_accepted`, not a refusal of the chat) the claim is undone and the next
look tries again; otherwise it is not resent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from telegram import Bot, LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, TelegramError

from archiver.config import Settings
from archiver.digest import build_digests
from archiver.store.access import recipient_refusal
from archiver.store.archive import Archive
from archiver.store.outbox import inactive_recipients
from archiver.store.personal_digests import (
    DueDigest,
    claim_digest,
    due_digests,
    unclaim_digest,
)
from bot.delivery import RateLimiter, not_accepted, paced
from bot.format import esc
from bot.i18n import Translate, translator

log = logging.getLogger(__name__)


class PersonalDigests:
    def __init__(
        self,
        archive: Archive,
        bot: Bot,
        settings: Settings,
        limiter: RateLimiter | None = None,
        poll_seconds: float = 30.0,
        speak: Callable[[int], Translate] | None = None,
    ) -> None:
        self.speak = speak or (lambda _chat: translator("en"))  # chat id -> its language
        self.archive = archive
        self.bot = bot
        self.settings = settings
        self.limiter = limiter
        self.poll_seconds = poll_seconds
        self.sent = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._loop(), name="telewatch-personal-digests")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.run_once(datetime.now(UTC))
            except sqlite3.Error as exc:
                log.warning("personal digests: the archive could not be read or written (%s)",
                            exc)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.poll_seconds)

    async def run_once(self, now: datetime) -> int:
        """Send every digest due at ``now``; how many were sent."""
        tz = self.settings.display.timezone
        sent = 0
        due = await due_digests(self.archive, now, tz)
        blocked = await inactive_recipients(self.archive) if due else {}
        for d in due:
            if not await claim_digest(self.archive, d):
                continue  # taken by another bot on the archive, or changed meanwhile
            refused = await recipient_refusal(self.archive, self.settings.bot, d.chat_id)
            if refused is None and d.chat_id in blocked:
                refused = "the chat blocked the bot"
            if refused is not None:
                log.info("personal digest for chat %d not sent: %s", d.chat_id, refused)
                continue
            if await self._send(d, tz):
                sent += 1
        self.sent += sent
        return sent

    async def _send(self, d: DueDigest, tz: ZoneInfo) -> bool:
        _ = self.speak(d.chat_id)
        found = await build_digests(self.archive, since=d.since, until=d.due, tz=tz,
                                    recipient=d.chat_id, _=_)  # fmt: skip
        text = (
            found[0].text
            if found
            else _(
                "telewatch daily digest: no post matched your rules since {since} ({tz})"
            ).format(since=f"{d.since.astimezone(tz):%Y-%m-%d %H:%M}", tz=tz.key)
        )
        await self._slot(d.chat_id)
        try:
            await self.bot.send_message(
                d.chat_id,
                esc(text),  # plain text, as HTML (the bot's default parse mode)
                parse_mode=ParseMode.HTML,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
                **paced(self.bot),  # its slot is taken (_slot)
            )
        except TelegramError as exc:
            if not isinstance(exc, Forbidden | BadRequest) and not_accepted(exc):
                await unclaim_digest(self.archive, d)
                log.warning("personal digest for chat %d not taken by Telegram (%s): tried "
                            "again at the next look", d.chat_id, type(exc).__name__)  # fmt: skip
            else:
                log.warning("personal digest for chat %d: %s; not resent", d.chat_id,
                            type(exc).__name__)  # fmt: skip
            return False
        log.info("personal digest sent to chat %d", d.chat_id)
        return True

    async def _slot(self, chat_id: int) -> None:
        """Wait for a moment the limits allow (shared with the alerts), and take it."""
        lim = self.limiter
        if lim is None:
            return
        for _ in itertools.count():  # each round waits what the limiter says
            wait = lim.delay(chat_id)
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        lim.record(chat_id)
        for _ in itertools.count():
            wait = lim.gate(chat_id)
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        lim.start(chat_id)
