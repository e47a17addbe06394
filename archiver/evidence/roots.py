"""Daily roots: the log's last entry of each finished UTC day, optionally timestamped.

A root is made once a day is over (the scheduler's periodic job, and ``telewatch sync``).
With ``[evidence] tsa_url`` it is stamped by that RFC 3161 authority; a failure of the
authority never stops archiving: it is logged once and the root is stamped at a later pass.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import httpx

from archiver.evidence.log import Root, _root
from archiver.evidence.tsa import TsaClient, TsaError

if TYPE_CHECKING:
    from archiver.store.archive import Archive

log = logging.getLogger(__name__)

_ROOT_COLUMNS = "day, seq, root_hash, tsa_url, tsa_token, made_at"
_failing: set[str] = set()  # TSA urls whose failure was already logged (once, until it works)


def _now() -> str:
    from archiver.store.archive import ts, utcnow

    now = ts(utcnow())
    assert now is not None
    return now


async def _stamp(archive: Archive, root: Root, tsa: TsaClient) -> Root:
    if tsa.failed:
        return root  # it failed once this pass: the next pass tries again
    try:
        token = await tsa.stamp(root.root_hash)
    except TsaError as exc:
        tsa.failed = True
        if tsa.url not in _failing:
            _failing.add(tsa.url)
            log.warning("evidence: the root of %s is not timestamped yet: %s", root.day, exc)
        return root
    if tsa.url in _failing:
        _failing.discard(tsa.url)
        log.info("evidence: the timestamp authority answers again")
    async with archive.transaction() as db:
        await db.execute(
            "UPDATE log_roots SET tsa_url = ?, tsa_token = ? WHERE day = ? AND tsa_token IS NULL",
            (tsa.url, token, root.day),
        )
    log.info("evidence: the root of %s is timestamped", root.day)
    return Root(root.day, root.seq, root.root_hash, tsa.url, token, root.made_at)


async def make_day_root(archive: Archive, day: date, *, tsa: TsaClient | None) -> Root | None:
    """The root of ``day`` (made now if it has none; stamped if ``tsa`` and it has no
    token yet). None when the log has no entry up to the end of that day."""
    key = day.isoformat()
    row = await archive.fetchone(f"SELECT {_ROOT_COLUMNS} FROM log_roots WHERE day = ?", (key,))
    if row is None:
        end = f"{(day + timedelta(days=1)).isoformat()} 00:00:00"
        async with archive.transaction() as db:
            async with db.execute(
                "SELECT seq, entry_hash FROM observations WHERE seq ="
                " (SELECT max(seq) FROM observations WHERE at < ?)",
                (end,),
            ) as cur:
                last = await cur.fetchone()
            if last is None:
                return None
            await db.execute(
                "INSERT INTO log_roots (day, seq, root_hash, made_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (key, last[0], last[1], _now()),
            )
            async with db.execute(
                f"SELECT {_ROOT_COLUMNS} FROM log_roots WHERE day = ?", (key,)
            ) as cur:
                row = await cur.fetchone()
        assert row is not None
    root = _root(row)
    if tsa is not None and root.tsa_token is None:
        root = await _stamp(archive, root, tsa)
    return root


async def make_roots(archive: Archive, *, now: datetime, tsa: TsaClient | None) -> list[Root]:
    """Roots for every finished UTC day since the last root (days without entries have
    none), and a timestamp for any root still without one when ``tsa`` is given."""
    today = now.date()
    last = await archive.fetchone("SELECT max(day) FROM log_roots")
    since = "" if last is None or last[0] is None else f"{last[0]} 23:59:59~"
    made: list[Root] = []
    while True:  # each day that has entries, from the day after the last root
        nxt = await archive.fetchone("SELECT min(at) FROM observations WHERE at > ?", (since,))
        if nxt is None or nxt[0] is None:
            break
        day = date.fromisoformat(str(nxt[0])[:10])
        if day >= today:
            break
        root = await make_day_root(archive, day, tsa=tsa)
        if root is not None:
            made.append(root)
        since = f"{day.isoformat()} 23:59:59~"
    if tsa is not None:
        for row in await archive.fetchall(
            f"SELECT {_ROOT_COLUMNS} FROM log_roots WHERE tsa_token IS NULL ORDER BY day"
        ):
            root = _root(row)
            if root.day not in {m.day for m in made}:
                await _stamp(archive, root, tsa)
    return made


async def close_days(
    archive: Archive,
    tsa_url: str | None,
    *,
    now: datetime | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[Root]:
    """After a sync pass: the roots of finished days, stamped when ``tsa_url`` is set. Never
    raises for the archive's sake: a failure is logged and the next pass tries again."""
    from archiver.store.archive import utcnow

    tsa = TsaClient(tsa_url, transport=transport) if tsa_url else None
    try:
        return await make_roots(archive, now=now or utcnow(), tsa=tsa)
    except sqlite3.OperationalError as exc:  # locked by another process, the disk full
        log.warning("evidence: the daily roots were not made (%s); the next pass tries again", exc)
        return []
