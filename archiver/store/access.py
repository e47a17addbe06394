"""Who may use the bot and who may receive alerts, as the config and admins in the chat decide.

The config lists admins, allowed users and allowed chats; the ``access`` table holds the
changes made from the chat since (``/allow``, ``/deny``), and overrides the config for
ordinary users (an admin in the config is always an admin: the config is the way to change
admins).

Receiving alerts follows the same rules, checked again when each alert is sent (and when the
daily digest is): a user receives alerts while they are an admin or an allowed user and not
denied; a group while it is in ``allowed_chats``. :func:`deny_user` shuts a user out at once:
in one transaction it records the denial, pauses their personal rules (kept, so
:func:`allow_user` brings them back) and drops the alerts waiting for them, each with the
reason. :func:`reconcile` does the same for a config that no longer lists a user or a chat
(the bot runs it at start).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from archiver.config import BotSettings
from archiver.store.archive import Archive, parse_ts, ts, utcnow
from archiver.store.personal_rules import PAUSED_FOR_ACCESS, bump_stamp

# Telegram user and chat ids have at most 52 significant bits (Bot API, "Chat.id").
MAX_ID = 2**52


@dataclass(frozen=True, slots=True)
class AccessEntry:
    user_id: int
    allowed: bool
    changed_by: int | None
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class AccessChange:
    """What :func:`deny_user` or :func:`allow_user` changed."""

    rules_paused: int = 0
    rules_resumed: int = 0
    alerts_dropped: int = 0


def valid_user_id(value: int) -> bool:
    """Whether ``value`` can be a Telegram user id (positive, at most 52 bits)."""
    return 0 < value < MAX_ID


def refusal(settings: BotSettings, chat_id: int, override: bool | None) -> str | None:
    """Why ``chat_id`` may not receive alerts now (None: it may). ``override``: the
    ``access`` table's word on that user (None when an admin never changed it)."""
    if chat_id < 0:
        if chat_id in settings.allowed_chats:
            return None
        return f"chat {chat_id} is not in [bot] allowed_chats"
    if chat_id in settings.admins:
        return None
    if override is False:
        return f"user {chat_id} was denied access by an admin"
    if override or chat_id in settings.allowed_users:
        return None
    return f"user {chat_id} is not in [bot] admins or allowed_users"


async def _override(db: aiosqlite.Connection, user_id: int) -> bool | None:
    if user_id <= 0:
        return None
    async with db.execute("SELECT allowed FROM access WHERE user_id = ?", (user_id,)) as cur:
        row = await cur.fetchone()
    return None if row is None else bool(row[0])


async def recipient_refusal(
    archive: Archive, settings: BotSettings, chat_id: int, *, db: aiosqlite.Connection | None = None
) -> str | None:
    """:func:`refusal` with the user's entry read from the archive (inside ``db``'s
    transaction when given)."""
    return refusal(settings, chat_id, await _override(db or archive.db, chat_id))


async def set_access(archive: Archive, user_id: int, allowed: bool, *, by: int | None) -> None:
    """Allow or deny a user (``by``: the admin who did it), and nothing else: the bot uses
    :func:`allow_user` and :func:`deny_user`, which also pause or resume rules."""
    async with archive.transaction() as db:
        await _set(db, user_id, allowed, by)


async def _set(db: aiosqlite.Connection, user_id: int, allowed: bool, by: int | None) -> None:
    await db.execute(
        "INSERT INTO access (user_id, allowed, changed_by, changed_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (user_id) DO UPDATE SET allowed = excluded.allowed,"
        " changed_by = excluded.changed_by, changed_at = excluded.changed_at",
        (user_id, int(allowed), by, ts(utcnow())),
    )


async def get_access(archive: Archive, user_id: int) -> bool | None:
    """True (allowed), False (denied) or None (no change made from the chat)."""
    return await _override(archive.db, user_id)


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


async def deny_user(
    archive: Archive, settings: BotSettings, user_id: int, *, by: int
) -> AccessChange:
    """Shut ``user_id`` out: denied, their personal rules paused, their waiting alerts dropped
    (``dropped``, with the reason in ``last_error``), all in one transaction. The caller
    checks first that the user is not an admin of the config."""
    reason = f"user {user_id} was denied access by an admin"
    async with archive.transaction() as db:
        await _set(db, user_id, False, by)
        paused = await _reconcile(db, settings)
        cur = await db.execute(
            "UPDATE alerts SET status = 'dropped', last_error = ?, next_attempt_at = NULL"
            " WHERE recipient = ? AND status = 'pending'",
            (reason, user_id),
        )
        dropped = cur.rowcount
    return AccessChange(rules_paused=paused[0], alerts_dropped=dropped)


async def allow_user(
    archive: Archive, settings: BotSettings, user_id: int, *, by: int
) -> AccessChange:
    """Let ``user_id`` in: allowed, and their rules paused for lack of access resumed."""
    async with archive.transaction() as db:
        await _set(db, user_id, True, by)
        paused, resumed = await _reconcile(db, settings)
    return AccessChange(rules_paused=paused, rules_resumed=resumed)


async def reconcile(archive: Archive, settings: BotSettings) -> AccessChange:
    """Pause the personal rules that cannot deliver to anyone allowed (their owner was denied,
    or their chats are no longer in the config), resume those that can again, and drop the
    alerts waiting for chats that may no longer receive them. The bot runs it at start."""
    async with archive.transaction() as db:
        paused, resumed = await _reconcile(db, settings)
        dropped = await _drop_refused(db, settings)
    return AccessChange(paused, resumed, dropped)


async def _overrides(db: aiosqlite.Connection) -> dict[int, bool]:
    async with db.execute("SELECT user_id, allowed FROM access") as cur:
        return {r[0]: bool(r[1]) async for r in cur}


def _rule_refused(
    settings: BotSettings, owner: int, notify: Iterable[int], overrides: dict[int, bool]
) -> bool:
    """A rule is paused for access when its owner was denied, or none of its chats (its
    ``notify`` list, or its owner) may receive alerts."""
    if owner not in settings.admins and overrides.get(owner) is False:
        return True
    chats = list(notify) or [owner]
    return all(refusal(settings, c, overrides.get(c)) is not None for c in chats)


async def _reconcile(db: aiosqlite.Connection, settings: BotSettings) -> tuple[int, int]:
    overrides = await _overrides(db)
    pause: list[int] = []
    resume: list[int] = []
    async with db.execute(
        "SELECT id, owner, notify, paused FROM rules WHERE active = 1"
        " AND (paused IS NULL OR paused = ?)",
        (PAUSED_FOR_ACCESS,),
    ) as cur:
        async for r in cur:
            refused = _rule_refused(settings, r[1], json.loads(r[2]), overrides)
            if refused and r[3] is None:
                pause.append(r[0])
            elif not refused and r[3] == PAUSED_FOR_ACCESS:
                resume.append(r[0])
    if pause:
        await db.executemany(
            "UPDATE rules SET paused = ? WHERE id = ?", [(PAUSED_FOR_ACCESS, i) for i in pause]
        )
    if resume:
        await db.executemany("UPDATE rules SET paused = NULL WHERE id = ?", [(i,) for i in resume])
    if pause or resume:
        await bump_stamp(db)
    return len(pause), len(resume)


async def _drop_refused(db: aiosqlite.Connection, settings: BotSettings) -> int:
    overrides = await _overrides(db)
    async with db.execute("SELECT DISTINCT recipient FROM alerts WHERE status = 'pending'") as cur:
        recipients = [r[0] async for r in cur]
    dropped = 0
    for chat_id in recipients:
        reason = refusal(settings, chat_id, overrides.get(chat_id))
        if reason is not None:
            cur2 = await db.execute(
                "UPDATE alerts SET status = 'dropped', last_error = ?, next_attempt_at = NULL"
                " WHERE recipient = ? AND status = 'pending'",
                (reason, chat_id),
            )
            dropped += cur2.rowcount
    return dropped
