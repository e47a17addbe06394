"""Who may use the bot.

- Admins (``[bot] admins``) may do everything, in a private chat or an allowed chat.
- Allowed users (``[bot] allowed_users`` and ``/allow ID``) may use it in a private chat;
  ``/deny ID`` takes that back (kept in the archive; admins in the config cannot be denied),
  and with it their alerts: their rules are paused and the alerts waiting for them dropped
  (:func:`archiver.store.access.deny_user`); ``/allow`` resumes the rules.
- In an allowed group (``[bot] allowed_chats``) every member may use it, there, but a user
  an admin denied: their commands to the bot get the stranger's reply (their user id), and
  nothing else they say there is answered (the group is not told the bot does not work).
- Anyone else is a stranger: one short reply with their own user id (at most once per
  ``cooldown`` seconds, so the bot cannot be used to spam), and nothing from the archive.

A group that is not allowed gets nothing from the archive either, even when an admin asks:
everything said there is seen by all its members.

Alerts and the digest are checked again when they are sent (:meth:`AccessPolicy.refusal`), so
a user or a chat removed from the config gets nothing from the moment the bot runs with it.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from archiver.config import BotSettings
from archiver.store.access import (
    AccessChange,
    allow_user,
    deny_user,
    get_access,
    reconcile,
    refusal,
)
from archiver.store.archive import Archive


class Role(enum.Enum):
    STRANGER = 0
    MEMBER = 1
    ADMIN = 2


class AccessPolicy:
    def __init__(
        self,
        archive: Archive,
        settings: BotSettings,
        *,
        cooldown: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.archive = archive
        self.settings = settings
        self.cooldown = cooldown
        self.clock = clock
        self._answered: dict[int, float] = {}

    async def role(self, user_id: int | None, chat_id: int | None, private: bool) -> Role:
        if user_id is None or chat_id is None:
            return Role.STRANGER
        if not private and chat_id not in self.settings.allowed_chats:
            return Role.STRANGER
        if user_id in self.settings.admins:
            return Role.ADMIN
        override = await get_access(self.archive, user_id)
        if override is False:
            return Role.STRANGER
        if not private or override or user_id in self.settings.allowed_users:
            return Role.MEMBER
        return Role.STRANGER

    def answer_stranger(self, key: int) -> bool:
        """Whether a stranger (user or chat ``key``) gets the one reply now."""
        now = self.clock()
        last = self._answered.get(key)
        if last is not None and now - last < self.cooldown:
            return False
        if len(self._answered) > 10_000:
            self._answered = {k: t for k, t in self._answered.items() if now - t < self.cooldown}
        self._answered[key] = now
        return True

    def refusal(self, chat_id: int, override: bool | None) -> str | None:
        """Why ``chat_id`` may not receive alerts (None: it may); ``override`` is its entry
        in the access table. Asked by delivery at send time."""
        return refusal(self.settings, chat_id, override)

    async def reconcile(self) -> AccessChange:
        """Pause the rules of users and chats the config no longer allows (and resume those
        it allows again); drop the alerts waiting for them. Run at start."""
        return await reconcile(self.archive, self.settings)

    async def allow(self, user_id: int, by: int) -> AccessChange:
        change = await allow_user(self.archive, self.settings, user_id, by=by)
        self._answered.pop(user_id, None)
        return change

    async def deny(self, user_id: int, by: int) -> AccessChange | None:
        """None when ``user_id`` is an admin of the config (who cannot be denied here)."""
        if user_id in self.settings.admins:
            return None
        return await deny_user(self.archive, self.settings, user_id, by=by)
