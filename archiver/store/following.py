"""What following channels on Telegram must remember across runs and processes (migration 4).

- **Channel statuses** (``channel_status``), keyed on the reference ``[[channels]]`` uses: why
  a channel cannot be resolved, joined or read, since when, and when to try again. A mistyped
  username has no channel id, so the key is the reference, not the id. ``ok`` once it reads.
  :func:`channel_statuses` is what ``stats``, ``health`` and the bot show.
- **The flood ledger** (``flood_waits``): the account's flood waits per method with the
  deadline Telegram gave. Every process reads it before sending (a cron ``sync`` started
  during a wait sends nothing).
- **Request counts** per account, method and UTC day: the ``ResolveUsername`` budget.
- **Per-channel following state** (columns of ``channels``): the account an access hash
  belongs to, the newest message id when following began, joins, the last
  ``GetFullChannel`` and ``ResolveUsername``.
- **Unreadable posts** (``posts.unreadable``): stored raw-only, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from archiver.store.archive import Archive, parse_ts, ts

STATUSES = (
    "ok",
    "not_found",
    "private",
    "banned",
    "too_many_channels",
    "join_pending",
    "flood_wait",
    "invalid",
    "error",
    "no_account",  # no [[accounts]] account has room for it (archiver.sources.telethon_accounts)
)


def ref_key(ref: object) -> str:
    """The key of a configured channel: its reference as text, lower case."""
    return str(ref).lower()


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    """Why a configured channel is or is not being followed."""

    ref: str
    source: str
    channel_id: int | None
    status: str
    reason: str | None
    since: datetime
    checked_at: datetime
    retry_at: datetime | None
    attempts: int

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def waiting(self, now: datetime) -> bool:
        """No request may be made for this channel yet."""
        return self.retry_at is not None and self.retry_at > now

    def line(self) -> str:
        """One line for people: ``vsaldo: not_found: ... (next try 2024-05-02 12:00 UTC)``."""
        out = f"{self.ref}: {self.status}"
        if self.reason:
            out += f": {self.reason}"
        if self.retry_at is not None and not self.ok:
            out += f" (next try {self.retry_at:%Y-%m-%d %H:%M} UTC)"
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "channel": self.ref,
            "source": self.source,
            "channel_id": self.channel_id,
            "status": self.status,
            "reason": self.reason,
            "since": ts(self.since),
            "checked_at": ts(self.checked_at),
            "retry_at": ts(self.retry_at),
            "attempts": self.attempts,
        }


def _status(r: object) -> ChannelStatus:
    row = r  # sqlite3.Row
    since = parse_ts(row["since"])  # type: ignore[index]
    checked = parse_ts(row["checked_at"])  # type: ignore[index]
    assert since is not None and checked is not None
    return ChannelStatus(
        ref=row["ref"],  # type: ignore[index]
        source=row["source"],  # type: ignore[index]
        channel_id=row["channel_id"],  # type: ignore[index]
        status=row["status"],  # type: ignore[index]
        reason=row["reason"],  # type: ignore[index]
        since=since,
        checked_at=checked,
        retry_at=parse_ts(row["retry_at"]),  # type: ignore[index]
        attempts=row["attempts"],  # type: ignore[index]
    )


async def get_status(archive: Archive, ref: object) -> ChannelStatus | None:
    row = await archive.fetchone("SELECT * FROM channel_status WHERE ref = ?", (ref_key(ref),))
    return None if row is None else _status(row)


async def channel_statuses(archive: Archive, *, problems_only: bool = False) -> list[ChannelStatus]:
    """Every configured channel telewatch has tried to follow, by reference; with
    ``problems_only``, those not ``ok``. For ``stats``, ``health``, ``/channels``."""
    sql = "SELECT * FROM channel_status"
    if problems_only:
        sql += " WHERE status != 'ok'"
    rows = await archive.fetchall(sql + " ORDER BY ref")
    return [_status(r) for r in rows]


async def set_status(
    archive: Archive,
    ref: object,
    *,
    source: str,
    status: str,
    now: datetime,
    reason: str | None = None,
    retry_at: datetime | None = None,
    channel_id: int | None = None,
    keep: Iterable[str] = (),
) -> ChannelStatus:
    """Record the outcome of an attempt. A failure counts one more attempt in a row (the
    backoff); ``ok`` resets the count. ``since`` moves only when the status changes. A status
    in ``keep`` is left as it is by an ``ok`` (a join problem outlives successful reads)."""
    if status not in STATUSES:
        raise ValueError(f"unknown channel status {status!r}")
    key = ref_key(ref)
    keep = tuple(keep)
    async with archive.transaction() as db:
        async with db.execute("SELECT * FROM channel_status WHERE ref = ?", (key,)) as cur:
            old = await cur.fetchone()
        if old is None:
            await db.execute(
                "INSERT INTO channel_status (ref, source, channel_id, status, reason, since,"
                " checked_at, retry_at, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, source, channel_id, status, reason, ts(now), ts(now), ts(retry_at),
                 0 if status == "ok" else 1),
            )  # fmt: skip
        elif status == "ok" and old["status"] in keep:
            await db.execute(
                "UPDATE channel_status SET checked_at = ?,"
                " channel_id = coalesce(?, channel_id) WHERE ref = ?",
                (ts(now), channel_id, key),
            )
        else:
            same = old["status"] == status
            await db.execute(
                "UPDATE channel_status SET source = ?, channel_id = coalesce(?, channel_id),"
                " status = ?, reason = ?, since = ?, checked_at = ?, retry_at = ?, attempts = ?"
                " WHERE ref = ?",
                (
                    source,
                    channel_id,
                    status,
                    reason,
                    old["since"] if same else ts(now),
                    ts(now),
                    ts(retry_at),
                    0 if status == "ok" else old["attempts"] + 1,
                    key,
                ),
            )
        async with db.execute("SELECT * FROM channel_status WHERE ref = ?", (key,)) as cur:
            new = await cur.fetchone()
    assert new is not None
    return _status(new)


# ---------------------------------------------------------------------------- flood ledger


@dataclass(frozen=True, slots=True)
class FloodWait:
    account: int
    method: str
    until: datetime
    seconds: int
    recorded_at: datetime


async def flood_waits(
    archive: Archive, *, account: int | None = None, now: datetime | None = None
) -> list[FloodWait]:
    """The recorded flood waits (of one account), those still running when ``now`` is given."""
    sql = "SELECT * FROM flood_waits WHERE 1 = 1"
    params: list[object] = []
    if account is not None:
        sql += " AND account = ?"
        params.append(account)
    if now is not None:
        sql += " AND until > ?"
        params.append(ts(now))
    rows = await archive.fetchall(sql + " ORDER BY until DESC", params)
    out = []
    for r in rows:
        until, at = parse_ts(r["until"]), parse_ts(r["recorded_at"])
        assert until is not None and at is not None
        out.append(FloodWait(r["account"], r["method"], until, r["seconds"], at))
    return out


async def record_flood_wait(
    archive: Archive, account: int, method: str, *, until: datetime, seconds: int, now: datetime
) -> None:
    """Telegram asked ``account`` to wait before ``method`` until ``until``; a later deadline
    never gives way to an earlier one."""
    async with archive.transaction() as db:
        await db.execute(
            "INSERT INTO flood_waits (account, method, until, seconds, recorded_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (account, method) DO UPDATE SET"
            " until = max(flood_waits.until, excluded.until), seconds = excluded.seconds,"
            " recorded_at = excluded.recorded_at",
            (account, method, ts(until), seconds, ts(now)),
        )


async def count_request(archive: Archive, account: int, method: str, day: str) -> int:
    """Count one request of ``method`` by ``account`` on ``day`` (UTC); returns the day's
    count including it."""
    async with archive.transaction() as db:
        await db.execute(
            "INSERT INTO request_counts (account, method, day, count) VALUES (?, ?, ?, 1)"
            " ON CONFLICT (account, method, day) DO UPDATE SET count = request_counts.count + 1",
            (account, method, day),
        )
        async with db.execute(
            "SELECT count FROM request_counts WHERE account = ? AND method = ? AND day = ?",
            (account, method, day),
        ) as cur:
            row = await cur.fetchone()
    return int(row[0]) if row else 0


async def requests_on(archive: Archive, account: int, method: str, day: str) -> int:
    row = await archive.fetchone(
        "SELECT count FROM request_counts WHERE account = ? AND method = ? AND day = ?",
        (account, method, day),
    )
    return int(row[0]) if row else 0


# ------------------------------------------------------------------- per-channel following


@dataclass(frozen=True, slots=True)
class Following:
    """The Telethon columns of one channel."""

    channel_id: int
    access_hash: int | None
    hash_account: int | None
    follow_from: int | None
    joined_at: datetime | None
    full_checked_at: datetime | None
    resolved_at: datetime | None


async def get_following(archive: Archive, channel_id: int) -> Following | None:
    r = await archive.fetchone(
        "SELECT id, access_hash, hash_account, follow_from, joined_at, full_checked_at,"
        " resolved_at FROM channels WHERE id = ?",
        (channel_id,),
    )
    if r is None:
        return None
    return Following(
        channel_id=r["id"],
        access_hash=r["access_hash"],
        hash_account=r["hash_account"],
        follow_from=r["follow_from"],
        joined_at=parse_ts(r["joined_at"]),
        full_checked_at=parse_ts(r["full_checked_at"]),
        resolved_at=parse_ts(r["resolved_at"]),
    )


_UNSET = object()


async def update_following(
    archive: Archive,
    channel_id: int,
    *,
    access_hash: int | object | None = _UNSET,
    hash_account: int | object | None = _UNSET,
    follow_from: int | object | None = _UNSET,
    joined_at: datetime | object | None = _UNSET,
    full_checked_at: datetime | object | None = _UNSET,
    resolved_at: datetime | object | None = _UNSET,
) -> None:
    """Set the given columns (None clears one: a dropped hash, a join to check again)."""
    given = {
        "access_hash": access_hash,
        "hash_account": hash_account,
        "follow_from": follow_from,
        "joined_at": joined_at,
        "full_checked_at": full_checked_at,
        "resolved_at": resolved_at,
    }
    sets, params = [], []
    for col, value in given.items():
        if value is _UNSET:
            continue
        sets.append(f"{col} = ?")
        params.append(ts(value) if isinstance(value, datetime) else value)
    if not sets:
        return
    async with archive.transaction() as db:
        await db.execute(
            f"UPDATE channels SET {', '.join(sets)} WHERE id = ?", (*params, channel_id)
        )


# ------------------------------------------------------------------------ unreadable posts


async def mark_unreadable(archive: Archive, channel_id: int, reasons: dict[int, str]) -> None:
    """These posts were stored raw-only: a source could not read them (``reasons``: message
    id -> why)."""
    if not reasons:
        return
    async with archive.transaction() as db:
        await db.executemany(
            "UPDATE posts SET unreadable = ? WHERE channel_id = ? AND message_id = ?",
            [(why, channel_id, mid) for mid, why in reasons.items()],
        )


async def clear_unreadable(archive: Archive, channel_id: int, message_ids: Iterable[int]) -> int:
    """These posts were read after all; returns how many had been unreadable."""
    ids = list(message_ids)
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    async with archive.transaction() as db:
        cur = await db.execute(
            f"UPDATE posts SET unreadable = NULL WHERE channel_id = ? AND message_id IN ({marks})"
            " AND unreadable IS NOT NULL",
            (channel_id, *ids),
        )
        return cur.rowcount


async def unreadable_counts(archive: Archive) -> dict[int, int]:
    """Unreadable (raw-only) posts per channel id."""
    rows = await archive.fetchall(
        "SELECT channel_id, count(*) FROM posts WHERE unreadable IS NOT NULL GROUP BY channel_id"
    )
    return {int(r[0]): int(r[1]) for r in rows}


# --------------------------------------------------------------------------- for people


@dataclass(frozen=True, slots=True)
class FollowingReport:
    """What ``stats`` adds about following on Telegram: channel problems, running flood
    waits, unreadable posts."""

    statuses: tuple[ChannelStatus, ...]
    waits: tuple[FloodWait, ...]
    unreadable: dict[int, int]

    def _by_id(self, channel_id: int | None) -> ChannelStatus | None:
        return next((s for s in self.statuses if s.channel_id == channel_id), None)

    def _by_ref(self, ref: object) -> ChannelStatus | None:
        key = ref_key(ref)
        return next((s for s in self.statuses if s.ref == key), None)

    @staticmethod
    def _json(st: ChannelStatus | None) -> dict[str, object]:
        if st is None:
            return {}
        return {"follow_status": st.status, "follow_reason": st.reason,
                "retry_at": ts(st.retry_at) if not st.ok else None}  # fmt: skip

    def json_for(self, channel_id: int | None) -> dict[str, object]:
        out = self._json(self._by_id(channel_id))
        if channel_id is not None and channel_id in self.unreadable:
            out["unreadable"] = self.unreadable[channel_id]
        return out

    def json_for_ref(self, ref: object) -> dict[str, object]:
        return self._json(self._by_ref(ref))

    def line_for_ref(self, ref: object) -> str | None:
        st = self._by_ref(ref)
        return None if st is None or st.ok else st.line().split(": ", 1)[1]

    def flood_json(self) -> list[dict[str, object]]:
        return [
            {
                "flood_wait": w.method,
                "account": w.account,
                "until": ts(w.until),
                "seconds": w.seconds,
            }
            for w in self.waits
        ]

    def lines(self, known_ids: set[int]) -> list[str]:
        out = [f"{st.line()}" for st in self.statuses if not st.ok and st.channel_id in known_ids]
        out += [
            f"channel {cid}: {n} unreadable post(s) kept raw-only (see posts.unreadable)"
            for cid, n in sorted(self.unreadable.items())
        ]
        out += [
            f"flood wait: {w.method} until {w.until:%Y-%m-%d %H:%M} UTC (account {w.account}):"
            " nothing of that kind is sent before then"
            for w in self.waits
        ]
        return out


async def following_report(archive: Archive, now: datetime | None = None) -> FollowingReport:
    from archiver.store.archive import utcnow

    return FollowingReport(
        tuple(await channel_statuses(archive)),
        tuple(await flood_waits(archive, now=now or utcnow())),
        await unreadable_counts(archive),
    )
