"""One worker of ``telewatch run --worker NAME``: which units it holds, and the fence.

:class:`Worker` keeps the leases of one process (archiver/store/leases.py): at start it
registers its name and takes its share; every third of ``[workers] lease_seconds``
(:meth:`Worker.tick`) it says it is alive, renews what it holds, notices what it LOST (taken by
another worker after a pause past the expiry), takes free units up to its share and names the
extras to give back when more workers are alive. The caller (:mod:`archiver.runner`) starts
and stops the units' work and only then calls :meth:`Worker.give_back`: stop, then release.

Shares: a named worker (``--worker``) takes at most ceil(units / live workers), so N workers
split the work. ``run`` without ``--worker`` runs as ``run@<host>`` and takes every unit it
can (one run per archive, as before); a second such run elsewhere stands by, taking only
what nobody holds.

Units of the channels (the contract of issue 18): ``web:<channel key>`` for a web channel,
``account:<name>`` for a Telethon channel, the name read from the channel assignments of the
accounts (archiver.store.accounts) when that exists, else the one implicit account ``main``.

The fence (:meth:`Worker.fence`, installed as ``archive.fence``): every ingest and every
deletion batch checks, inside its write transaction, that this worker still holds the units
of the batch's channels; else nothing of the batch is written (:class:`LeaseLost`), so a
worker paused past its expiry never writes, alerts or logs as if it still owned a channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from archiver.config import ChannelConfig, Settings
from archiver.errors import ConfigError, TelewatchError
from archiver.store import leases
from archiver.store.archive import Archive
from archiver.store.following import ref_key
from archiver.store.leases import LeaseLost

log = logging.getLogger(__name__)

STOP_WITHIN = 3.0  # seconds a clean stop gives the release of its leases
MAIN = "main"  # the implicit account when no [[accounts]] are configured
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


def check_name(name: str) -> str:
    """A ``--worker`` name: letters, digits, ``_ . @ -``, at most 64."""
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"--worker {name!r}: use letters, digits, '_', '.', '@' or '-' (at most 64),"
            " starting with a letter or digit"
        )
    return name


def default_name() -> str:
    """The worker name of ``run`` without ``--worker``."""
    return f"run@{socket.gethostname() or 'localhost'}"


async def account_assignments(
    archive: Archive, settings: Settings, channels: Sequence[ChannelConfig]
) -> dict[str, str | None]:
    """Channel key -> account name (archiver.store.accounts); the Telethon channels that
    have none yet, or one no longer configured, are assigned first
    (archiver.sources.telethon_accounts.assign: by room, sticky), by whichever worker sees
    them first. None: no account has room for it."""
    from archiver.store.accounts import assignments

    got: dict[str, str | None] = dict(await assignments(archive))
    names = {a.name for a in settings.accounts}
    # also a channel still assigned to an account since removed from the config: it moves
    if any(c.source == "telethon" and got.get(ref_key(c.ref)) not in names for c in channels):
        from archiver.sources.telethon_accounts import assign

        got.update(await assign(archive, settings, list(channels)))
    return got


def unit_of(cfg: ChannelConfig, accounts: Mapping[str, str | None] | None) -> str | None:
    """The unit that follows ``cfg``; None for a Telethon channel no account has (yet).
    ``accounts``: channel key -> account (None: one account, ``main``)."""
    key = ref_key(cfg.ref)
    if cfg.source == "web":
        return leases.web_unit(key)
    if accounts is None:
        return leases.account_unit(MAIN)
    name = accounts.get(key)
    return None if name is None else leases.account_unit(name)


@dataclass
class Change:
    """What a tick found: units GAINED (start them), LOST (taken by another worker: stop
    them at once) and EXTRA (held beyond the share, or no longer configured: stop them, then
    :meth:`Worker.give_back`)."""

    gained: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)
    extra: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.gained or self.lost or self.extra)


class Worker:
    """The leases of one process (see the module docstring)."""

    def __init__(
        self,
        archive: Archive,
        settings: Settings,
        name: str,
        *,
        share: bool = True,
        host: str | None = None,
        pid: int | None = None,
        leases_db: Archive | None = None,
    ) -> None:
        self.archive = archive
        # The leases' own connection (the runner opens one): a renewal never queues behind
        # this process's ingest transactions on the archive's connection
        self.db = leases_db or archive
        self.settings = settings
        self.name = name
        self.share = share
        self.host = host or socket.gethostname()
        self.pid = pid or os.getpid()
        self.lease_seconds = settings.workers.lease_seconds
        self.held: set[str] = set()
        self.units: dict[str, list[ChannelConfig]] = {}  # every unit -> its channels
        self.pending: set[str] = set()  # gained, not yet caught up by a pass
        self.extra_channels: Sequence[ChannelConfig] = ()  # followed from the chat
        self.assigned: dict[str, str | None] = {}  # channel key -> account (updated in place)
        # this machine's monotonic clock when the last successful tick began: every lease it
        # renewed runs at least until renewed_at + lease_seconds (the database's now was read
        # after it), so a worker that cannot renew knows, by its own clock, when to let go
        self.renewed_at = time.monotonic()

    @property
    def level(self) -> int:
        """INFO for a named worker; ``run`` alone (one worker) does not talk of leases."""
        return logging.INFO if self.share else logging.DEBUG

    @property
    def tick_seconds(self) -> float:
        return self.lease_seconds / 3

    async def start(self) -> Change:
        """Register (refused while another live process has the name) and take a share."""
        now = await leases.db_now(self.db)
        await leases.register(self.db, self.name, self.host, self.pid,
                              self.lease_seconds, now)  # fmt: skip
        log.log(self.level, "worker %s: registered (pid %d on %s), lease %g s", self.name,
                self.pid, self.host, self.lease_seconds)  # fmt: skip
        return await self.tick()

    async def configured(self) -> dict[str, list[ChannelConfig]]:
        """Every unit of the configured channels (and those followed from the chat)."""
        from archiver.store.followed import channel_configs

        self.extra_channels = await channel_configs(self.db, self.settings)
        every = (*self.settings.channels, *self.extra_channels)
        accounts = await account_assignments(self.db, self.settings, every)
        self.assigned.clear()
        self.assigned.update(accounts)  # the live listeners read this same mapping
        units: dict[str, list[ChannelConfig]] = {}
        for cfg in every:
            unit = unit_of(cfg, accounts)
            if unit is not None:
                units.setdefault(unit, []).append(cfg)
        self.units = units
        return units

    async def tick(self) -> Change:
        """Beat, renew, take the share; see :class:`Change`."""
        began = time.monotonic()
        a = self.db
        now = await leases.db_now(a)
        await leases.beat(a, self.name, now)
        units = await self.configured()
        kept = await leases.renew(a, self.name, self.held, self.lease_seconds, now)
        change = Change(lost=self.held - kept)
        self.held = kept
        self.pending -= change.lost
        if change.lost:
            log.warning("worker %s: lost %s (its lease expired and another worker took it);"
                        " stopping it", self.name, ", ".join(sorted(change.lost)))  # fmt: skip
        mine = kept & set(units)
        change.extra = kept - mine
        if self.share:
            live = await leases.live_workers(a, self.lease_seconds, now)
            want = leases.fair_share(len(units), len(live))
        else:
            want = len(units)
        if len(mine) > want:
            change.extra |= set(sorted(mine)[want:])
        elif len(mine) < want:
            free = sorted(set(units) - kept)
            got = await leases.acquire(a, self.name, free, want - len(mine), self.lease_seconds,
                                       now)  # fmt: skip
            change.gained = set(got)
            self.held |= change.gained
            self.pending |= change.gained
        if change.gained:
            log.log(self.level, "worker %s: took %s", self.name,
                    ", ".join(sorted(change.gained)))  # fmt: skip
        self.renewed_at = began
        return change

    def expiring(self) -> bool:
        """Whether this worker's leases may run out before its next tick (the last renewal
        was too long ago, by this machine's clock)."""
        return time.monotonic() + self.tick_seconds >= self.renewed_at + self.lease_seconds

    def drop(self) -> set[str]:
        """Forget every held unit (its lease is about to run out unrenewed); the units."""
        dropped, self.held = self.held, set()
        self.pending -= dropped
        return dropped

    async def keep(self, stop: asyncio.Event) -> None:
        """Until ``stop``: beat and renew what this worker holds every tick, taking nothing
        new (``sync --worker``: a pass may outlast ``lease_seconds``, and its own writes must
        not be refused as if another worker had taken its units)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.tick_seconds)
            if stop.is_set():
                return
            try:
                now = await leases.db_now(self.db)
                await leases.beat(self.db, self.name, now)
                kept = await leases.renew(self.db, self.name, self.held, self.lease_seconds, now)
            except (sqlite3.Error, TelewatchError) as exc:
                log.warning("worker %s: leases not renewed (%s); trying again", self.name, exc)
                continue
            if lost := self.held - kept:
                log.warning("worker %s: lost %s (its lease expired and another worker took"
                            " it)", self.name, ", ".join(sorted(lost)))  # fmt: skip
            self.held = kept

    async def give_back(self, units: Iterable[str]) -> None:
        """Release ``units`` (the caller stopped them first)."""
        units = set(units) & self.held
        if not units:
            return
        # said before the release: whoever takes a unit next says so after it
        log.log(self.level, "worker %s: giving back %s", self.name, ", ".join(sorted(units)))
        self.held -= units
        self.pending -= units
        now = await leases.db_now(self.db)
        await leases.release(self.db, self.name, units, now)

    async def stop(self) -> None:
        """A clean stop: every unit released, the worker no longer counted as live."""
        try:
            if self.held:
                log.log(self.level, "worker %s: giving back %s", self.name,
                        ", ".join(sorted(self.held)))  # fmt: skip
            self.held, self.pending = set(), set()
            async with asyncio.timeout(STOP_WITHIN):  # a shutdown never hangs on it
                now = await leases.db_now(self.db)
                await leases.release_all(self.db, self.name, now)
                await leases.forget_worker(self.db, self.name)
        except (sqlite3.Error, TelewatchError, TimeoutError) as exc:  # they expire by themselves
            log.warning("worker %s: leases not released (%s); they expire in %g s", self.name,
                        type(exc).__name__, self.lease_seconds)  # fmt: skip

    def holds(self, unit: str) -> bool:
        return unit in self.held

    def channels(self, channels: Iterable[ChannelConfig] | None = None) -> list[ChannelConfig]:
        """``channels`` (default: every configured one) that this worker's units cover."""
        covered = {id(c) for u in self.held for c in self.units.get(u, ())}
        keys = {ref_key(c.ref) for u in self.held for c in self.units.get(u, ())}
        pool = (*self.settings.channels, *self.extra_channels) if channels is None else channels
        return [c for c in pool if id(c) in covered or ref_key(c.ref) in keys]

    def accounts_held(self) -> list[str]:
        return sorted(u.removeprefix(leases.ACCOUNT) for u in self.held
                      if u.startswith(leases.ACCOUNT))  # fmt: skip

    def caught_up(self, units: Iterable[str]) -> None:
        self.pending -= set(units)

    async def fence(self, db: Any, channel_ids: Iterable[int]) -> None:
        """Inside a write transaction: raise :class:`LeaseLost` (rolling it back) unless this
        worker holds the unit of every channel in ``channel_ids`` that a unit covers."""
        ids = sorted(set(channel_ids))
        if not ids:
            return
        keys: dict[str, str] = {}
        for unit, cfgs in self.units.items():
            for cfg in cfgs:
                keys[f"{cfg.source}:{ref_key(cfg.ref)}"] = unit
        marks = ", ".join("?" * len(ids))
        async with db.execute(
            f"SELECT id, username, source FROM channels WHERE id IN ({marks})", ids
        ) as cur:
            rows = list(await cur.fetchall())
        needed: set[str] = set()
        for cid, username, source in rows:
            names = [username.lower()] if username else []
            found = [keys[k] for n in (*names, str(cid)) if (k := f"{source}:{n}") in keys]
            needed.update(found[:1])
        if not needed:
            return
        now = await leases.db_now_in(db, self.archive.dialect)
        have = await leases.held(db, self.archive.dialect, self.name, needed, now)
        if needed - have:
            raise LeaseLost(self.name, needed - have)


@dataclass(frozen=True)
class Following:
    """Who follows a channel now: its unit and the worker holding that unit's lease (None:
    nobody, or no unit: a Telethon channel no account has room for)."""

    channel: str
    source: str
    unit: str | None
    worker: str | None


async def following(archive: Archive, settings: Settings) -> list[Following] | None:
    """Every configured (and chat-followed) channel with its worker; None when no worker has
    ever run on this archive (``sync`` from cron: no leases)."""
    from archiver.store.followed import channel_configs

    rows = await leases.leases(archive)
    if not rows:
        return None
    now = await leases.db_now(archive)
    from archiver.store.accounts import assignments

    accounts: dict[str, str | None] = dict(await assignments(archive))  # read only
    out = []
    for cfg in (*settings.channels, *await channel_configs(archive, settings)):
        unit = unit_of(cfg, accounts)
        lease = rows.get(unit) if unit is not None else None
        holder = lease.worker if lease is not None and lease.held_at(now) else None
        out.append(Following(str(cfg.ref), cfg.source, unit, holder))
    return out


def _ago(now: datetime, then: datetime) -> str:
    seconds = int((now - then).total_seconds())
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


async def problems(archive: Archive, settings: Settings) -> list[str]:
    """For ``health``: workers that stopped beating without a clean stop (killed, crashed,
    stuck) while it matters, i.e. while a configured unit they held is still left with them
    (nobody has taken it over: :func:`stopped_workers`), and units nobody holds while some
    worker is alive. A stopped worker whose units all went to others is no problem any more
    (``stats`` still lists it, until ``telewatch workers forget NAME`` or :data:`FORGET_AFTER`)."""
    now_text = await leases.db_now(archive)
    now = leases.parse(now_text)
    lease = settings.workers.lease_seconds
    out: list[str] = []
    left: set[str] = set()
    live = await leases.live_workers(archive, lease, now_text)
    taker = (
        f"a live worker does within {lease:g} s, an account within"
        f" {lease + leases.handover_grace(lease):g} s"
        if live
        else "no worker is alive to take them"
    )
    for w in await stopped_workers(archive, settings, now_text):
        if not w.left:
            continue  # its units were taken over: it no longer matters
        left.update(w.left)
        out.append(
            f"worker {w.name}: no sign of life for {_ago(now, leases.parse(w.seen_at))} (pid"
            f" {w.pid} on {w.host}; [workers] lease_seconds = {lease:g}): killed, crashed or"
            f" stuck; nobody has taken over {', '.join(w.left)} since ({taker}). Start it again"
            f" (`telewatch run --worker {w.name}`) or another worker; a name retired for good:"
            f" `telewatch workers forget {w.name}`"
        )
    rows = await following(archive, settings)
    if rows is not None and live:
        orphans = sorted({f.unit for f in rows if f.unit is not None and f.worker is None} - left)
        if orphans:
            out.append(
                f"units nobody holds: {', '.join(orphans)}; the live workers take them within"
                f" {lease:g} s (an account: {lease + leases.handover_grace(lease):g} s), unless"
                " each already has its share (start another worker)"
            )
    return out


FORGET_AFTER = timedelta(days=7)  # a stopped worker that holds nothing is forgotten after this


class CannotForget(TelewatchError):
    """``workers forget NAME``: no such worker, or it is alive."""


@dataclass(frozen=True)
class Stopped:
    """A worker whose heartbeat stopped without a clean stop (killed, crashed, stuck, or a
    machine gone): not seen within the lease time. ``left``: the configured units whose lease
    still names it, i.e. that nobody has taken over since (empty: its work went to others)."""

    name: str
    host: str | None
    pid: int | None
    seen_at: str  # UTC, the database's clock
    left: tuple[str, ...]


async def stopped_workers(
    archive: Archive, settings: Settings, now: str | None = None
) -> list[Stopped]:
    """Every stopped worker still named in the archive (a clean stop forgets itself)."""
    now = now or await leases.db_now(archive)
    since = leases.later(now, -settings.workers.lease_seconds)
    gone = [w for w in await leases.workers(archive) if w.seen_at <= since]
    if not gone:
        return []
    rows = await following(archive, settings) or []
    units = {f.unit for f in rows if f.unit is not None}
    named = {u: r.worker for u, r in (await leases.leases(archive)).items() if u in units}
    return [
        Stopped(w.name, w.host, w.pid, w.seen_at,
                tuple(sorted(u for u, who in named.items() if who == w.name)))
        for w in gone
    ]  # fmt: skip


async def forget(archive: Archive, settings: Settings, name: str) -> Stopped:
    """``telewatch workers forget NAME``: retire a stopped worker's name for good (``health``
    and ``stats`` no longer name it). Refused in one line while it is alive (seen within the
    lease time) and for a name never seen. Its units are left as they are: free, for the
    next worker that starts."""
    now = await leases.db_now(archive)
    lease = settings.workers.lease_seconds
    known = {w.name: w for w in await leases.workers(archive)}
    if name not in known:
        names = ", ".join(known) or "none"
        raise CannotForget(
            f"workers forget: no worker named {name!r} in the archive (workers: {names});"
            " `telewatch stats` lists them"
        )
    stopped = {w.name: w for w in await stopped_workers(archive, settings, now)}
    if name not in stopped or not await leases.forget_stopped(archive, name, lease, now):
        w = known[name]
        raise CannotForget(
            f"workers forget: worker {name} is running (pid {w.pid} on {w.host}, seen within"
            f" [workers] lease_seconds = {lease:g}); stop it first (SIGTERM or Ctrl-C: a clean"
            " stop forgets the name by itself)"
        )
    log.info("worker %s: forgotten (last seen %s UTC)", name, stopped[name].seen_at[:19])
    return stopped[name]


async def forget_long_gone(archive: Archive, settings: Settings) -> list[str]:
    """Forget the workers stopped for :data:`FORGET_AFTER` that hold nothing (no configured
    unit is left with them): weekly, with ``maintenance``. The names forgotten."""
    now = await leases.db_now(archive)
    before = leases.stamp(leases.parse(now) - FORGET_AFTER)
    done = []
    for w in await stopped_workers(archive, settings, now):
        # seen_at <= before: the lease time has long passed, whatever lease_seconds is
        long_gone = w.seen_at <= before and not w.left
        if long_gone and await leases.forget_stopped(archive, w.name, 0, before):
            done.append(w.name)
    if done:
        log.info("workers forgotten after %d days unseen: %s", FORGET_AFTER.days, ", ".join(done))
    return done
