"""Which Telegram account follows each Telethon channel (``channel_accounts``), and the
accounts Telegram found full (``account_full``).

The channel key is the channel's reference as ``[[channels]]`` writes it, lower case
(:func:`archiver.store.following.ref_key`, the key of ``channel_status`` too). The rules that
fill this table live in :mod:`archiver.sources.telethon_accounts`; this module only reads and
writes it, the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from archiver.store.archive import Archive, parse_ts, ts
from archiver.store.following import ref_key


@dataclass(frozen=True, slots=True)
class Assignment:
    channel: str  # the channel key
    account: str
    joined: bool
    assigned_at: datetime | None


@dataclass(frozen=True, slots=True)
class AccountFull:
    """Telegram refused ``account`` a join (CHANNELS_TOO_MUCH) while it had joined
    ``channel_limit`` channels: it takes no more than that."""

    account: str
    channel_limit: int
    refused_channel: str
    refused_at: datetime | None


async def assignments(archive: Archive) -> dict[str, str]:
    """Channel key -> the name of the account that follows it."""
    rows = await archive.fetchall("SELECT channel, account FROM channel_accounts")
    return {r["channel"]: r["account"] for r in rows}


async def assignment_rows(archive: Archive) -> dict[str, Assignment]:
    rows = await archive.fetchall("SELECT * FROM channel_accounts ORDER BY channel")
    return {
        r["channel"]: Assignment(
            r["channel"], r["account"], bool(r["joined"]), parse_ts(r["assigned_at"])
        )
        for r in rows
    }


async def save_assignments(
    archive: Archive,
    changed: Mapping[str, tuple[str, bool]],
    removed: Iterable[str],
    *,
    now: datetime,
) -> None:
    """Write ``changed`` (channel key -> (account, joined)) and delete ``removed``, in one
    transaction."""
    async with archive.transaction() as db:
        for channel in removed:
            await db.execute("DELETE FROM channel_accounts WHERE channel = ?", (channel,))
        for channel, (account, joined) in changed.items():
            await db.execute(
                "INSERT INTO channel_accounts (channel, account, joined, assigned_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (channel) DO UPDATE SET"
                " account = excluded.account, joined = excluded.joined,"
                " assigned_at = excluded.assigned_at",
                (channel, account, int(joined), ts(now)),
            )


async def mark_joined(archive: Archive, ref: object, account: str) -> None:
    """``account`` joined the channel (or found itself a member): ``joined = 1``, if the
    channel is still that account's."""
    async with archive.transaction() as db:
        await db.execute(
            "UPDATE channel_accounts SET joined = 1 WHERE channel = ? AND account = ?",
            (ref_key(ref), account),
        )


async def record_full(archive: Archive, account: str, ref: object, *, now: datetime) -> int:
    """Telegram refused ``account`` the join of ``ref`` with CHANNELS_TOO_MUCH: the account
    takes no more channels than it has joined (lower, never higher, than what was known). The
    next assignment moves its channels not joined yet to accounts with room. Returns the
    account's new limit."""
    key = ref_key(ref)
    async with archive.transaction() as db:
        async with db.execute(
            "SELECT count(*) AS n FROM channel_accounts WHERE account = ? AND joined = 1"
            " AND channel != ?",
            (account, key),
        ) as cur:
            row = await cur.fetchone()
        joined = int(row["n"]) if row is not None else 0
        await db.execute(
            "INSERT INTO account_full (account, channel_limit, refused_channel, refused_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (account) DO UPDATE SET"
            " channel_limit = CASE WHEN excluded.channel_limit < account_full.channel_limit"
            " THEN excluded.channel_limit ELSE account_full.channel_limit END,"
            " refused_channel = excluded.refused_channel, refused_at = excluded.refused_at",
            (account, joined, key, ts(now)),
        )
        async with db.execute(
            "SELECT channel_limit FROM account_full WHERE account = ?", (account,)
        ) as cur:
            row = await cur.fetchone()
    return int(row["channel_limit"]) if row is not None else joined


async def full_accounts(archive: Archive) -> dict[str, AccountFull]:
    rows = await archive.fetchall("SELECT * FROM account_full")
    return {
        r["account"]: AccountFull(
            r["account"], int(r["channel_limit"]), r["refused_channel"], parse_ts(r["refused_at"])
        )
        for r in rows
    }


async def forget_full(archive: Archive, accounts: Iterable[str]) -> None:
    """Forget what was learnt of these accounts' limits (an account removed from the config)."""
    async with archive.transaction() as db:
        for account in accounts:
            await db.execute("DELETE FROM account_full WHERE account = ?", (account,))
