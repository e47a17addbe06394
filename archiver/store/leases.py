"""Workers and the leases of their units of work (docs/operations.md, "Several workers").

Several ``telewatch run --worker NAME`` processes, on one machine or many, share one archive.
The work is cut into UNITS: ``account:<name>`` (one Telegram account's session and every
Telethon channel assigned to it: one session is used by one process at a time, or Telegram
answers AUTH_KEY_DUPLICATED) and ``web:<channel key>`` (one web-source channel). A worker
follows a unit only while it holds the unit's lease, until the lease's ``expires_at``; it
renews its leases well before then. A worker that stops cleanly releases them; one that dies
(SIGKILL, a lost machine) leaves them to expire, and then another worker takes them.

An account unit changes hands only a HAND-OVER GRACE (:func:`handover_grace`, a third of
the lease) after its lease expired unrenewed: the holder that could not renew lets go of the
session before its lease runs out (archiver/units.py), but letting go takes time (the live
listener, Telethon's disconnect), and a busy machine may start it late; the grace keeps the
session from ever being connected in two places meanwhile. A unit given back
(:func:`release`) was stopped first, so it is free at once; so is one never held.

A unit has one row in ``leases`` once any worker has seen it (``worker`` is the holder, or the
last holder once ``expires_at`` has passed: a free unit). Acquiring is one statement on
PostgreSQL: the free rows are locked with ``FOR UPDATE SKIP LOCKED``, so two workers never
take the same row and neither waits for the other; on SQLite it is one write transaction
(one writer at a time). Renewing updates only the rows still held by this worker: a unit that
another worker took after its expiry is LOST, and the worker stops it at once.

Times come from the database's clock (:func:`db_now`), never a worker's own, so machines
whose clocks disagree still agree on who holds what. They are UTC text with milliseconds,
``YYYY-MM-DD HH:MM:SS.mmm``, which sorts as it reads.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from archiver.errors import TelewatchError
from archiver.store.archive import Archive

log = logging.getLogger(__name__)

ACCOUNT = "account:"
WEB = "web:"
_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


class WorkerNameInUse(TelewatchError):
    """Another live process already runs as this worker name."""


class LeaseLost(TelewatchError):
    """A write for a unit this worker no longer holds (its lease expired and may have been
    taken): nothing of it was written."""

    def __init__(self, worker: str, units: Iterable[str]) -> None:
        self.units = tuple(sorted(units))
        super().__init__(
            f"worker {worker}: no longer holds {', '.join(self.units)} (lease expired);"
            " nothing written, the unit is stopped here"
        )


NEVER = "1970-01-01 00:00:00.000"  # the expiry of a unit never held: free for anyone


def handover_grace(lease_seconds: float) -> float:
    """How long after an account unit's lease expired unrenewed another worker may take it
    (see the module docstring): one tick of the holder's lease loop."""
    return lease_seconds / 3


def account_unit(name: str) -> str:
    return ACCOUNT + name


def web_unit(key: str) -> str:
    return WEB + key


@dataclass(frozen=True, slots=True)
class Lease:
    unit: str
    worker: str
    acquired_at: str
    expires_at: str

    def held_at(self, now: str) -> bool:
        return self.expires_at > now


@dataclass(frozen=True, slots=True)
class WorkerRow:
    name: str
    host: str | None
    pid: int | None
    started_at: str
    seen_at: str


def stamp(dt: datetime) -> str:
    """``dt`` as a lease time: UTC, milliseconds."""
    return dt.astimezone(UTC).strftime(_FORMAT)[:-3]


def parse(value: str) -> datetime:
    """A lease time (or the archive's own ``YYYY-MM-DD HH:MM:SS``) as an aware datetime."""
    fmt = _FORMAT if "." in value else "%Y-%m-%d %H:%M:%S"
    return datetime.strptime(value, fmt).replace(tzinfo=UTC)


def later(now: str, seconds: float) -> str:
    return stamp(parse(now) + timedelta(seconds=seconds))


async def db_now(archive: Archive) -> str:
    """The database server's clock (PostgreSQL), or this machine's (SQLite: one machine)."""
    if archive.dialect == "postgresql":
        sql = "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')"
    else:
        sql = "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"
    row = await archive.fetchone(sql)
    assert row is not None
    return str(row[0])


def fair_share(units: int, live_workers: int) -> int:
    """How many units one of ``live_workers`` workers takes at most: ceil(units / workers)."""
    return math.ceil(units / max(live_workers, 1))


def _marks(n: int) -> str:
    return ", ".join("?" * n)


async def register(
    archive: Archive, name: str, host: str, pid: int, lease_seconds: float, now: str
) -> None:
    """Record worker ``name`` as started now by ``pid`` on ``host``. Refused while another
    process, seen within the lease time, runs under the same name: two processes with one
    name would each take the other's units for its own."""
    async with archive.transaction() as db:
        async with db.execute(
            "SELECT host, pid, seen_at FROM workers WHERE name = ?", (name,)
        ) as cur:
            row = await cur.fetchone()
        alive = row is not None and row[2] > later(now, -lease_seconds)
        if row is not None and alive and (row[0], row[1]) != (host, pid):
            raise WorkerNameInUse(
                f"worker {name} is already running (pid {row[1]} on {row[0]}, seen"
                f" {row[2][:19]} UTC); give this one another --worker name, or stop that one"
            )
        await db.execute(
            "INSERT INTO workers (name, host, pid, started_at, seen_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET host = excluded.host, pid = excluded.pid,"
            " started_at = excluded.started_at, seen_at = excluded.seen_at",
            (name, host, pid, now, now),
        )


class WorkerReplaced(TelewatchError):
    """Another process now runs under this worker's name (it registered once this one was
    unseen for the lease time): this one must stop every unit and run no more."""


async def beat(archive: Archive, name: str, host: str, pid: int, now: str) -> None:
    """Worker ``name`` (process ``pid`` on ``host``) is alive now: one statement, which also
    records the name again if ``workers forget`` removed it meanwhile. Raises
    :class:`WorkerReplaced` when another process has registered the name since (this one was
    unseen for the lease time, cut off from the database): the units held under the name are
    that process's now, and one name in two processes would take each other's units."""
    rows = await archive.write(
        "INSERT INTO workers (name, host, pid, started_at, seen_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET seen_at = excluded.seen_at"
        " WHERE workers.host = excluded.host AND workers.pid = excluded.pid RETURNING name",
        (name, host, pid, now, now),
    )
    if not rows:
        row = await archive.fetchone("SELECT host, pid FROM workers WHERE name = ?", (name,))
        who = f"pid {row[1]} on {row[0]}" if row is not None else "another process"
        raise WorkerReplaced(
            f"worker {name}: another process ({who}) now runs under this name (this one was"
            " unseen for the lease time, cut off from the database); stopping this one"
        )


async def workers(archive: Archive) -> list[WorkerRow]:
    rows = await archive.fetchall(
        "SELECT name, host, pid, started_at, seen_at FROM workers ORDER BY name"
    )
    return [WorkerRow(r[0], r[1], r[2], r[3], r[4]) for r in rows]


async def live_workers(archive: Archive, lease_seconds: float, now: str) -> list[str]:
    """The workers seen within the lease time."""
    rows = await archive.fetchall(
        "SELECT name FROM workers WHERE seen_at > ? ORDER BY name", (later(now, -lease_seconds),)
    )
    return [r[0] for r in rows]


async def forget_worker(archive: Archive, name: str) -> None:
    """A worker that stopped cleanly: it is no longer counted as live (its share goes to the
    others at once)."""
    await archive.write("DELETE FROM workers WHERE name = ?", (name,))


async def ensure(archive: Archive, units: Iterable[str], now: str) -> None:
    """A row for each unit (free: never held) so that acquiring is an UPDATE."""
    rows = [(u, now, NEVER) for u in sorted(set(units))]
    if rows:
        async with archive.transaction() as db:
            await db.executemany(
                "INSERT INTO leases (unit, worker, acquired_at, expires_at) VALUES (?, '', ?, ?)"
                " ON CONFLICT (unit) DO NOTHING",
                rows,
            )


# free: this worker's own while its lease runs, or expired (an account unit: the hand-over
# grace ago), also one that names this worker: a process started again under a name that was
# unseen for the lease time takes the old process's account only after the grace, like anyone
_FREE = (
    "((worker = ? AND expires_at > ?)"
    " OR expires_at <= CASE WHEN unit LIKE 'account:%' THEN ? ELSE ? END)"
)

_ACQUIRE_PG = f"""
UPDATE leases SET worker = ?, acquired_at = ?, expires_at = ?
WHERE unit IN (
    SELECT unit FROM leases WHERE unit IN ({{units}}) AND {_FREE}
    ORDER BY unit LIMIT ? FOR UPDATE SKIP LOCKED)
RETURNING unit
"""


async def acquire(
    archive: Archive,
    worker: str,
    units: Sequence[str],
    limit: int,
    lease_seconds: float,
    now: str,
) -> list[str]:
    """Take up to ``limit`` of ``units`` that are free (released, or their lease expired:
    an account unit's :func:`handover_grace` ago) or already this worker's; the units taken,
    sorted."""
    units = sorted(set(units))
    if limit <= 0 or not units:
        return []
    await ensure(archive, units, now)
    until = later(now, lease_seconds)
    free = (worker, now, later(now, -handover_grace(lease_seconds)), now)
    if archive.dialect == "postgresql":
        sql = _ACQUIRE_PG.format(units=_marks(len(units)))
        rows = await archive.write(sql, (worker, now, until, *units, *free, limit))
        return sorted(r[0] for r in rows)
    async with archive.transaction() as db:  # BEGIN IMMEDIATE: the only writer meanwhile
        async with db.execute(
            f"SELECT unit FROM leases WHERE unit IN ({_marks(len(units))}) AND {_FREE}"
            " ORDER BY unit LIMIT ?",
            (*units, *free, limit),
        ) as cur:
            taken = [r[0] for r in await cur.fetchall()]
        await db.executemany(
            "UPDATE leases SET worker = ?, acquired_at = ?, expires_at = ? WHERE unit = ?",
            [(worker, now, until, u) for u in taken],
        )
    return taken


async def renew(
    archive: Archive, worker: str, units: Iterable[str], lease_seconds: float, now: str
) -> set[str]:
    """Extend this worker's leases of ``units``; the units it still holds (the others were
    taken by another worker after they expired: LOST)."""
    units = sorted(set(units))
    if not units:
        return set()
    rows = await archive.write(
        f"UPDATE leases SET expires_at = ? WHERE worker = ? AND unit IN ({_marks(len(units))})"
        " RETURNING unit",
        (later(now, lease_seconds), worker, *units),
    )
    return {r[0] for r in rows}


async def release(archive: Archive, worker: str, units: Iterable[str], now: str) -> None:
    """Give ``units`` back: free at once for any worker (the worker stopped them first, so no
    hand-over grace applies: the expiry becomes :data:`NEVER`); the worker stays named as
    their last holder."""
    units = sorted(set(units))
    if units:
        await archive.write(
            f"UPDATE leases SET expires_at = ? WHERE worker = ? AND unit IN"
            f" ({_marks(len(units))}) AND expires_at > ?",
            (NEVER, worker, *units, now),
        )


async def release_all(archive: Archive, worker: str, now: str) -> list[str]:
    """Give back every unit this worker holds (a clean stop), also one whose acquisition
    committed while the worker was being stopped; the units released."""
    rows = await archive.write(
        "UPDATE leases SET expires_at = ? WHERE worker = ? AND expires_at > ? RETURNING unit",
        (NEVER, worker, now),
    )
    return sorted(r[0] for r in rows)


async def leases(archive: Archive) -> dict[str, Lease]:
    """Every unit's row, held or not (:meth:`Lease.held_at` says)."""
    rows = await archive.fetchall(
        "SELECT unit, worker, acquired_at, expires_at FROM leases ORDER BY unit"
    )
    return {r[0]: Lease(r[0], r[1], r[2], r[3]) for r in rows}


async def held(db: Any, dialect: str, worker: str, units: Iterable[str], now: str) -> set[str]:
    """Inside a write transaction (``db``): which of ``units`` this worker holds now. On
    PostgreSQL the rows are locked (``FOR SHARE``) until the transaction ends, so no other
    worker can take one of them (its SKIP LOCKED passes them by) before this write commits."""
    units = sorted(set(units))
    if not units:
        return set()
    lock = " FOR SHARE" if dialect == "postgresql" else ""
    async with db.execute(
        f"SELECT unit FROM leases WHERE worker = ? AND unit IN ({_marks(len(units))})"
        f" AND expires_at > ?{lock}",
        (worker, *units, now),
    ) as cur:
        return {r[0] for r in await cur.fetchall()}


async def db_now_in(db: Any, dialect: str) -> str:
    """:func:`db_now` on a connection inside a transaction."""
    if dialect == "postgresql":
        sql = "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')"
    else:
        sql = "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"
    async with db.execute(sql) as cur:
        row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def forget_stopped(archive: Archive, name: str, lease_seconds: float, now: str) -> bool:
    """Forget worker ``name`` if it was not seen within ``lease_seconds`` before ``now`` (one
    statement: a heartbeat committed meanwhile keeps it); whether it was forgotten. Its lease
    rows keep naming it as their last holder (they are free: nothing changes for them)."""
    rows = await archive.write(
        "DELETE FROM workers WHERE name = ? AND seen_at <= ? RETURNING name",
        (name, later(now, -lease_seconds)),
    )
    return bool(rows)
