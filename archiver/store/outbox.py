"""The alert outbox: what the bot reads to deliver alerts and how it records each outcome.

Alerts are written by ingest (``archiver.store.ingest``) in the same transaction as the post
that caused them. The bot reads them here with :func:`pending`, sends each one, and records
the outcome in one short transaction per alert: :func:`mark_sent` (with the Telegram message
id, right after the send succeeded), :func:`mark_retry` (when to try again) or
:func:`mark_failed`. A sent alert is never pending again, so a restart resends nothing.

Recipients that blocked the bot are set inactive with :func:`set_recipient_active`; their
alerts stay pending (held, never lost) and go out once they talk to the bot again.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta

from archiver.channels import post_link
from archiver.store.archive import Archive, iso_utc, parse_ts, ts, utcnow

STATUSES = ("pending", "sent", "failed")
_SECOND = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One pending alert with everything needed to format and send it."""

    id: int
    post_id: int
    recipient: int  # chat id
    kind: str  # new | edited | deleted
    rules: tuple[str, ...]  # names of the rules that fired
    rule_queries: tuple[tuple[str, str], ...]  # (name, query) of personal rules of those names
    attempts: int
    created_at: datetime
    channel_id: int
    channel_username: str | None
    channel_title: str | None
    message_id: int
    post_date: datetime
    link: str
    text: str  # the text of the alerted version (for deleted: the text that was deleted)
    old_text: str | None  # edited: the text before the edit
    deleted_at: datetime | None
    media_kind: str | None  # photo, video, ... of a post with media
    reply_to: int | None  # Telegram message id of the earlier alert about this post, if sent

    @property
    def channel_name(self) -> str:
        return self.channel_title or self.channel_username or str(self.channel_id)


@dataclass(frozen=True, slots=True)
class AlertSummary:
    """One alert as the CLI's ``alerts`` command lists it."""

    id: int
    created_at: datetime
    kind: str
    recipient: int
    status: str
    attempts: int
    last_error: str | None
    sent_at: datetime | None
    next_attempt_at: datetime | None
    channel: str
    message_id: int
    link: str
    rules: tuple[str, ...]
    channel_id: int = 0

    def to_json(self) -> str:
        """The ``telewatch alerts --json`` line: exactly the documented keys."""

        return json.dumps(
            {
                "id": self.id,
                "rules": list(self.rules),
                "channel_id": self.channel_id,
                "message_id": self.message_id,
                "kind": self.kind,
                "recipient": self.recipient,
                "status": self.status,
                "created_at": iso_utc(self.created_at),
                "sent_at": iso_utc(self.sent_at),
            },
            ensure_ascii=False,
        )


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    pending: int  # waiting to be sent (including held ones)
    held: int  # pending for recipients that blocked the bot
    failed: int
    sent: int
    oldest_pending: datetime | None
    inactive_recipients: int


_PENDING_SQL = """
SELECT a.id, a.post_id, a.recipient, a.kind, a.rules, a.attempts, a.created_at,
       p.channel_id, p.message_id, p.date, p.deleted_at, p.media_kind, c.username, c.title,
       v.text, pv.text AS old_text,
       (SELECT b.tg_message_id FROM alerts b
         WHERE b.post_id = a.post_id AND b.recipient = a.recipient AND b.id <> a.id
           AND b.tg_message_id IS NOT NULL
         ORDER BY b.id LIMIT 1) AS reply_to
FROM (
    SELECT a.id, row_number() OVER (PARTITION BY a.recipient ORDER BY a.id) AS rn
    FROM alerts a LEFT JOIN recipients r ON r.chat_id = a.recipient
    WHERE a.status = 'pending' AND (a.next_attempt_at IS NULL OR a.next_attempt_at <= ?)
      AND coalesce(r.active, 1) = 1
) q
JOIN alerts a ON a.id = q.id
JOIN posts p ON p.id = a.post_id
JOIN channels c ON c.id = p.channel_id
JOIN versions v ON v.id = a.version_id
LEFT JOIN versions pv ON pv.id = a.prev_version_id
WHERE q.rn <= ?
ORDER BY a.id
LIMIT ?
"""


async def pending(
    archive: Archive, limit: int, now: datetime | None = None, *, per_chat: int | None = None
) -> list[AlertRow]:
    """Alerts due at ``now`` (default: the current time), oldest first, at most ``limit``
    and at most ``per_chat`` per recipient (so one busy chat cannot hide the others).
    Alerts of inactive recipients are held back."""
    when = ts(now or utcnow())
    rows = await archive.fetchall(_PENDING_SQL, (when, per_chat or limit, limit))
    names = {n for r in rows for n in json.loads(r["rules"])}
    queries = await _rule_queries(archive, names)
    out: list[AlertRow] = []
    for r in rows:
        rules = tuple(json.loads(r["rules"]))
        out.append(
            AlertRow(
                id=r["id"],
                post_id=r["post_id"],
                recipient=r["recipient"],
                kind=r["kind"],
                rules=rules,
                rule_queries=tuple((n, q) for n in rules for q in queries.get(n, ())),
                attempts=r["attempts"],
                created_at=_dt(r["created_at"]),
                channel_id=r["channel_id"],
                channel_username=r["username"],
                channel_title=r["title"],
                message_id=r["message_id"],
                post_date=_dt(r["date"]),
                link=post_link(r["channel_id"], r["username"], r["message_id"]),
                text=r["text"],
                old_text=r["old_text"],
                deleted_at=parse_ts(r["deleted_at"]),
                media_kind=r["media_kind"],
                reply_to=r["reply_to"],
            )
        )
    return out


async def _rule_queries(archive: Archive, names: set[str]) -> dict[str, list[str]]:
    if not names:
        return {}
    marks = ",".join("?" * len(names))
    rows = await archive.fetchall(
        f"SELECT name, query FROM rules WHERE name IN ({marks}) ORDER BY id", sorted(names)
    )
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(r["name"], []).append(r["query"])
    return out


def _dt(value: str) -> datetime:
    parsed = parse_ts(value)
    assert parsed is not None
    return parsed


async def mark_sent(archive: Archive, alert_id: int, tg_message_id: int) -> bool:
    """Record a successful send with its Telegram message id. Returns False when the alert
    was not pending (already sent: nothing changes)."""
    async with archive.transaction() as db:
        cur = await db.execute(
            "UPDATE alerts SET status = 'sent', sent_at = ?, tg_message_id = ?,"
            " attempts = attempts + 1, last_error = NULL, next_attempt_at = NULL"
            " WHERE id = ? AND status = 'pending'",
            (ts(utcnow()), tg_message_id, alert_id),
        )
        return cur.rowcount == 1


async def mark_retry(
    archive: Archive,
    alert_id: int,
    error: str,
    next_attempt_at: datetime,
    *,
    count: bool = True,
) -> int:
    """Keep the alert pending until ``next_attempt_at`` (rounded up to the second). With
    ``count`` the attempt counts towards the limit (a flood wait does not). Returns the
    number of attempts so far."""
    when = next_attempt_at
    if when.microsecond:
        when = when.replace(microsecond=0) + _SECOND
    async with archive.transaction() as db:
        await db.execute(
            "UPDATE alerts SET attempts = attempts + ?, last_error = ?, next_attempt_at = ?"
            " WHERE id = ? AND status = 'pending'",
            (int(count), error[:500], ts(when), alert_id),
        )
        async with db.execute("SELECT attempts FROM alerts WHERE id = ?", (alert_id,)) as cur:
            row = await cur.fetchone()
    return int(row[0]) if row else 0


async def mark_failed(archive: Archive, alert_id: int, error: str) -> None:
    """Give up on an alert: it stays in the outbox as ``failed`` (shown by ``/status`` and
    ``telewatch alerts``) and can be retried with :func:`requeue`."""
    async with archive.transaction() as db:
        await db.execute(
            "UPDATE alerts SET status = 'failed', attempts = attempts + 1, last_error = ?,"
            " next_attempt_at = NULL WHERE id = ? AND status = 'pending'",
            (error[:500], alert_id),
        )


async def requeue(archive: Archive, alert_ids: list[int] | None = None) -> int:
    """Put failed alerts (all, or these) back to pending with a fresh attempt count."""
    async with archive.transaction() as db:
        if alert_ids is None:
            cur = await db.execute(
                "UPDATE alerts SET status = 'pending', attempts = 0, next_attempt_at = NULL"
                " WHERE status = 'failed'"
            )
        else:
            marks = ",".join("?" * len(alert_ids)) or "NULL"
            cur = await db.execute(
                "UPDATE alerts SET status = 'pending', attempts = 0, next_attempt_at = NULL"
                f" WHERE status = 'failed' AND id IN ({marks})",
                alert_ids,
            )
        return cur.rowcount


async def set_recipient_active(
    archive: Archive, chat_id: int, active: bool, reason: str | None = None
) -> bool:
    """Mark a chat able (or unable) to receive alerts. Returns True when this changed it."""
    row = await archive.fetchone("SELECT active FROM recipients WHERE chat_id = ?", (chat_id,))
    if row is not None and bool(row[0]) == active:
        return False
    if row is None and active:
        return False  # unknown recipients are active
    async with archive.transaction() as db:
        await db.execute(
            "INSERT INTO recipients (chat_id, active, inactive_reason, changed_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (chat_id) DO UPDATE SET active = excluded.active,"
            " inactive_reason = excluded.inactive_reason, changed_at = excluded.changed_at",
            (chat_id, int(active), None if active else reason, ts(utcnow())),
        )
    return True


async def inactive_recipients(archive: Archive) -> dict[int, str | None]:
    """Chats that cannot receive alerts, with the reason."""
    rows = await archive.fetchall(
        "SELECT chat_id, inactive_reason FROM recipients WHERE active = 0 ORDER BY chat_id"
    )
    return {r[0]: r[1] for r in rows}


async def list_alerts(
    archive: Archive, status: str | None = None, limit: int = 50
) -> list[AlertSummary]:
    """The newest alerts (of one status, or all), newest first."""
    where = "" if status is None else "WHERE a.status = ?"
    params: tuple[object, ...] = () if status is None else (status,)
    rows = await archive.fetchall(
        "SELECT a.id, a.created_at, a.kind, a.recipient, a.status, a.attempts, a.last_error,"
        " a.sent_at, a.next_attempt_at, a.rules, p.channel_id, p.message_id, c.username, c.title"
        " FROM alerts a JOIN posts p ON p.id = a.post_id JOIN channels c ON c.id = p.channel_id"
        f" {where} ORDER BY a.id DESC LIMIT ?",
        (*params, limit),
    )
    return [_summary(r) for r in rows]


def _summary(r: sqlite3.Row) -> AlertSummary:
    return AlertSummary(
        id=r["id"],
        created_at=_dt(r["created_at"]),
        kind=r["kind"],
        recipient=r["recipient"],
        status=r["status"],
        attempts=r["attempts"],
        last_error=r["last_error"],
        sent_at=parse_ts(r["sent_at"]),
        next_attempt_at=parse_ts(r["next_attempt_at"]),
        channel=r["username"] or r["title"] or str(r["channel_id"]),
        message_id=r["message_id"],
        link=post_link(r["channel_id"], r["username"], r["message_id"]),
        rules=tuple(json.loads(r["rules"])),
        channel_id=r["channel_id"],
    )


async def counts(archive: Archive) -> OutboxCounts:
    """Totals for ``/status`` and ``telewatch health``."""
    row = await archive.fetchone(
        "SELECT"
        " sum(a.status = 'pending'),"
        " sum(a.status = 'pending' AND coalesce(r.active, 1) = 0),"
        " sum(a.status = 'failed'),"
        " sum(a.status = 'sent'),"
        " min(CASE WHEN a.status = 'pending' THEN a.created_at END)"
        " FROM alerts a LEFT JOIN recipients r ON r.chat_id = a.recipient"
    )
    inactive = await archive.fetchone("SELECT count(*) FROM recipients WHERE active = 0")
    assert row is not None and inactive is not None
    return OutboxCounts(
        pending=row[0] or 0,
        held=row[1] or 0,
        failed=row[2] or 0,
        sent=row[3] or 0,
        oldest_pending=parse_ts(row[4]),
        inactive_recipients=inactive[0],
    )
