"""Who may use the bot, as changed by admins with ``/allow`` and ``/deny``.

The config lists admins, allowed users and allowed chats; the ``access`` table holds the
changes made from the chat since, and overrides the config for ordinary users (an admin in
the config is always an admin: the config is the way to change admins).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from archiver.store.archive import Archive, parse_ts, ts, utcnow


@dataclass(frozen=True, slots=True)
class AccessEntry:
    user_id: int
    allowed: bool
    changed_by: int | None
    changed_at: datetime


async def set_access(archive: Archive, user_id: int, allowed: bool, *, by: int | None) -> None:
    """Allow or deny a user (``by``: the admin who did it)."""
    async with archive.transaction() as db:
        await db.execute(
            "INSERT INTO access (user_id, allowed, changed_by, changed_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET allowed = excluded.allowed,"
            " changed_by = excluded.changed_by, changed_at = excluded.changed_at",
            (user_id, int(allowed), by, ts(utcnow())),
        )


async def get_access(archive: Archive, user_id: int) -> bool | None:
    """True (allowed), False (denied) or None (no change made from the chat)."""
    row = await archive.fetchone("SELECT allowed FROM access WHERE user_id = ?", (user_id,))
    return None if row is None else bool(row[0])


async def list_access(archive: Archive) -> list[AccessEntry]:
    rows = await archive.fetchall(
        "SELECT user_id, allowed, changed_by, changed_at FROM access ORDER BY user_id"
    )
    out = []
    for r in rows:
        changed = parse_ts(r[3])
        assert changed is not None
        out.append(AccessEntry(r[0], bool(r[1]), r[2], changed))
    return out
