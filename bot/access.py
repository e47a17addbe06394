"""Who may use the bot.

- Admins (``[bot] admins``) may do everything, in a private chat or an allowed chat.
- Allowed users (``[bot] allowed_users`` and ``/allow ID``) may use it in a private chat;
  ``/deny ID`` takes that back (kept in the archive; admins in the config cannot be denied).
- In an allowed group (``[bot] allowed_chats``) every member may use it, there.
- Anyone else is a stranger: one short reply with their own user id (at most once per
  ``cooldown`` seconds, so the bot cannot be used to spam), and nothing from the archive.

A group that is not allowed gets nothing from the archive either, even when an admin asks:
everything said there is seen by all its members.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from archiver.config import BotSettings
from archiver.store.access import get_access, set_access
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

    async def allow(self, user_id: int, by: int) -> None:
        await set_access(self.archive, user_id, True, by=by)
        self._answered.pop(user_id, None)

    async def deny(self, user_id: int, by: int) -> bool:
        """False when ``user_id`` is an admin of the config (who cannot be denied here)."""
        if user_id in self.settings.admins:
            return False
        await set_access(self.archive, user_id, False, by=by)
        return True
