"""Which account follows each Telethon channel (``[[accounts]]``, docs/operations.md).

An account joins about 500 channels (1,000 with Premium; ``CHANNELS_TOO_MUCH`` beyond), and
the access hashes and the joined state of a channel belong to the account that resolved and
joined it. So :func:`assign`, run before every pass and at the start of ``run``, keeps a
channel where it is whenever it can:

1. a channel pinned in the config (``[[channels]] account = "desk1"``) goes to its pin;
2. a channel its account has joined stays with it while the account is configured;
3. a channel assigned but not joined yet stays while its account has room;
4. any other channel goes to the account with the most free room (its ``join_limit`` minus
   the channels it has), ties in config order;
5. when no account has room, a channel that had an account stays there (refused a join,
   it is polled, as with one account); a new one has none: it is not followed, and its status
   (``no_account``, shown by ``stats``, ``health`` and the bot) and the run log say what to do.

An account removed from the config gives its channels back (they are assigned again, to
accounts with room). When Telegram refuses a join with ``CHANNELS_TOO_MUCH``
(:func:`account_full`), the account is full in reality, whatever ``join_limit`` says: its
limit becomes the channels it had joined (for a day, after which it is tried again), and the
refused channel (with any other it has not joined) goes to another account with room at the
next assignment. A channel that moves to another account is joined again by it (its
``joined_at`` is cleared). With one account there is nowhere to move to: nothing is recorded,
and the refused channel is polled, as before ``[[accounts]]``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from archiver.config import ChannelConfig, Settings
from archiver.store.accounts import (
    Assignment,
    assignment_rows,
    forget_full,
    full_accounts,
    record_full,
    save_assignments,
)
from archiver.store.archive import Archive, utcnow
from archiver.store.channels import get_channel
from archiver.store.following import get_status, ref_key, set_status, update_following

log = logging.getLogger(__name__)

SOURCE = "telethon"
FULL_FOR = timedelta(days=1)  # a CHANNELS_TOO_MUCH limit holds this long, then is tried again
NO_ACCOUNT = "no_account"
NO_ROOM = (
    "no account has room for it (every [[accounts]] account is at its join_limit, or Telegram"
    " said it is full): add an [[accounts]] account or raise a join_limit; not followed until"
    " then"
)
# Statuses of the channel that belonged to its last account: cleared when it moves.
_ACCOUNT_STATUSES = ("too_many_channels", "join_pending", NO_ACCOUNT)


def telethon_channels(channels: Sequence[ChannelConfig]) -> list[ChannelConfig]:
    """The Telethon channels of ``channels``, each key once (the first one wins)."""
    seen: set[str] = set()
    out = []
    for c in channels:
        key = ref_key(c.ref)
        if c.source == SOURCE and key not in seen:
            seen.add(key)
            out.append(c)
    return out


async def limits(
    archive: Archive, settings: Settings, now: datetime | None = None
) -> dict[str, int]:
    """Each configured account's effective join limit: its ``join_limit``, or fewer when
    Telegram refused it a join within :data:`FULL_FOR`."""
    at = now or utcnow()
    full = await full_accounts(archive)
    out = {}
    for a in settings.accounts:
        limit = a.join_limit
        f = full.get(a.name)
        if f is not None and f.refused_at is not None and at - f.refused_at < FULL_FOR:
            limit = min(limit, f.channel_limit)
        out[a.name] = limit
    return out


async def assign(
    archive: Archive,
    settings: Settings,
    channels: Sequence[ChannelConfig] | None = None,
    *,
    now: Callable[[], datetime] = utcnow,
) -> dict[str, str | None]:
    """Give every Telethon channel of ``channels`` (default: the config's) an account, by the
    rules of the module docstring, and store it. Returns channel key -> account name, or
    None when no account has room (in the order of ``channels``)."""
    todo = telethon_channels(settings.channels if channels is None else channels)
    at = now()
    room = await limits(archive, settings, at)
    order = [a.name for a in settings.accounts]
    previous = await assignment_rows(archive)
    result: dict[str, str | None] = {ref_key(c.ref): None for c in todo}

    def take(key: str, account: str) -> None:
        result[key] = account
        room[account] -= 1

    for c in todo:  # 1. pins
        if c.account is not None and c.account in room:
            take(ref_key(c.ref), c.account)
    for joined in (True, False):  # 2. joined, sticky; 3. assigned, while there is room
        for c in todo:
            key = ref_key(c.ref)
            prev = previous.get(key)
            if result[key] is not None or prev is None or prev.account not in room:
                continue
            if prev.joined == joined and (joined or room[prev.account] > 0):
                take(key, prev.account)
    for c in todo:  # 4. the account with the most room, ties in config order
        key = ref_key(c.ref)
        if result[key] is not None:
            continue
        best = max(order, key=lambda name: (room[name], -order.index(name)))
        prev = previous.get(key)
        if room[best] > 0:
            take(key, best)
        elif prev is not None and prev.account in room:
            take(key, prev.account)  # 5. no room anywhere: polled where it was, not dropped

    await _store(archive, settings, todo, result, previous, at)
    return result


async def _store(
    archive: Archive,
    settings: Settings,
    todo: list[ChannelConfig],
    result: dict[str, str | None],
    previous: dict[str, Assignment],
    at: datetime,
) -> None:
    single = len(settings.accounts) == 1
    changed: dict[str, tuple[str, bool]] = {}
    for c in todo:
        key = ref_key(c.ref)
        account = result[key]
        prev = previous.get(key)
        if account is None:
            await _no_room(archive, c, at)
            continue
        if prev is not None and prev.account == account:
            continue
        joined = await _moved(archive, c, keep_join=single and prev is None, at=at)
        changed[key] = (account, joined)
        if prev is not None:
            log.info("channel %s: account %s -> %s", c.ref, prev.account, account)
    removed = [k for k, v in result.items() if v is None and k in previous]
    if changed or removed:
        await save_assignments(archive, changed, removed, now=at)
    gone = {a.name for a in settings.accounts}
    stale = [a for a in (await full_accounts(archive)) if a not in gone]
    if stale:
        await forget_full(archive, stale)


async def _no_room(archive: Archive, cfg: ChannelConfig, at: datetime) -> None:
    log.warning("channel %s: %s", cfg.ref, NO_ROOM)
    st = await get_status(archive, cfg.ref)
    if st is None or st.status != NO_ACCOUNT:
        await set_status(archive, cfg.ref, source=SOURCE, status=NO_ACCOUNT, reason=NO_ROOM,
                         now=at)  # fmt: skip


async def _moved(archive: Archive, cfg: ChannelConfig, *, keep_join: bool, at: datetime) -> bool:
    """A channel comes to an account that has not followed it yet: whatever status and join
    belonged to its last account is cleared (the new account joins it itself). With one
    account and no earlier assignment (an archive from before [[accounts]]), the archive's
    join is that account's: kept, so an upgrade sends no join again. Returns joined."""
    row = await get_channel(archive, cfg.ref)
    joined = False
    if row is not None:
        from archiver.store.following import get_following

        f = await get_following(archive, row.id)
        if f is not None and f.joined_at is not None:
            if keep_join:
                joined = True
            else:
                await update_following(archive, row.id, joined_at=None)
    st = await get_status(archive, cfg.ref)
    if st is not None and st.status in _ACCOUNT_STATUSES:
        await set_status(archive, cfg.ref, source=SOURCE, status="ok", now=at,
                         channel_id=row.id if row is not None else None)  # fmt: skip
    return joined


async def account_full(archive: Archive, account: str, cfg: ChannelConfig, *, now: datetime) -> int:
    """Telegram refused ``account`` the join of ``cfg`` with CHANNELS_TOO_MUCH: record it
    (see :func:`archiver.store.accounts.record_full`) and log what happens next."""
    limit = await record_full(archive, account, cfg.ref, now=now)
    log.warning(
        "account %s: Telegram refused a join (CHANNELS_TOO_MUCH) at %d joined channel(s); it"
        " takes no more for now, and %s moves to an account with room at the next pass",
        account, limit, cfg.ref,
    )  # fmt: skip
    return limit


def by_account(
    channels: Sequence[ChannelConfig], assigned: dict[str, str | None]
) -> tuple[dict[str, list[ChannelConfig]], list[ChannelConfig]]:
    """``channels`` grouped by their account (in config order), and those with none."""
    groups: dict[str, list[ChannelConfig]] = {}
    none: list[ChannelConfig] = []
    for c in channels:
        account = assigned.get(ref_key(c.ref))
        if account is None:
            none.append(c)
        else:
            groups.setdefault(account, []).append(c)
    return groups, none


@dataclass(frozen=True, slots=True)
class AccountLoad:
    """One account as ``stats`` and ``/status`` show it."""

    name: str
    channels: tuple[str, ...]  # channel keys, in config order
    join_limit: int  # as configured
    limit: int  # what it takes now: lower while Telegram found it full
    full_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class AccountsReport:
    """Which account follows each configured Telethon channel, read from the archive (the
    last assignment; nothing is assigned here)."""

    accounts: tuple[AccountLoad, ...]
    by_key: dict[str, str]  # channel key -> account
    unassigned: tuple[str, ...]  # configured Telethon channels no account has (no room, or yet)
    no_room: tuple[str, ...]  # of those, the ones no account had room for
    ids: dict[int, str]  # marked channel id -> key, for channels configured by id
    usernames: dict[str, str]  # username -> key

    def account_for(self, channel_id: int | None, username: str | None) -> str | None:
        """The account of an archived channel (by its id or its username)."""
        key = self.ids.get(channel_id) if channel_id is not None else None
        if key is None and username:
            key = self.usernames.get(username.lower())
        return self.by_key.get(key) if key is not None else None

    def lines(self) -> list[str]:
        out = ["accounts (Telethon channels):"]
        for a in self.accounts:
            full = ""
            if a.full_since is not None:
                full = (
                    f", full: Telegram refused a join at {a.limit} on {a.full_since:%Y-%m-%d %H:%M}"
                    " UTC"
                )
            names = ", ".join(a.channels) or "none"
            out.append(f"  {a.name} ({len(a.channels)} of {a.join_limit}{full}): {names}")
        if self.no_room:
            out.append(f"  no account: {', '.join(self.no_room)}: {NO_ROOM}")
        waiting = [k for k in self.unassigned if k not in self.no_room]
        if waiting:
            out.append(f"  not assigned yet (at the next pass): {', '.join(waiting)}")
        return out

    def json(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = [
            {
                "account": a.name,
                "channels": list(a.channels),
                "join_limit": a.join_limit,
                "limit": a.limit,
                "full_since": a.full_since.isoformat() if a.full_since else None,
            }
            for a in self.accounts
        ]
        if self.unassigned:
            out.append({"account": None, "channels": list(self.unassigned),
                        "no_room": list(self.no_room)})  # fmt: skip
        return out


async def accounts_report(
    archive: Archive, settings: Settings, now: datetime | None = None
) -> AccountsReport:
    from archiver.store.accounts import assignments
    from archiver.store.following import channel_statuses

    todo = telethon_channels(settings.channels)
    keys = [ref_key(c.ref) for c in todo]
    stored = await assignments(archive)
    by_key = {k: stored[k] for k in keys if k in stored}
    at = now or utcnow()
    effective = await limits(archive, settings, at)
    full = await full_accounts(archive)
    loads = []
    for a in settings.accounts:
        f = full.get(a.name)
        since = f.refused_at if f is not None and effective[a.name] < a.join_limit else None
        mine = tuple(k for k in keys if by_key.get(k) == a.name)
        loads.append(AccountLoad(a.name, mine, a.join_limit, effective[a.name], since))
    unassigned = tuple(k for k in keys if k not in by_key)
    statuses = {s.ref: s.status for s in await channel_statuses(archive, problems_only=True)}
    no_room = tuple(k for k in unassigned if statuses.get(k) == NO_ACCOUNT)
    ids = {c.ref.id: ref_key(c.ref) for c in todo if c.ref.id is not None}
    names = {c.ref.username: ref_key(c.ref) for c in todo if c.ref.username is not None}
    return AccountsReport(tuple(loads), by_key, unassigned, no_room, ids, names)
