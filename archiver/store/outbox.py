"""The alert outbox: what the bot reads to deliver alerts and how it records each outcome.

Alerts are written by ingest (``archiver.store.ingest``) in the same transaction as the post
that caused them. The bot reads them here with :func:`pending` and sends each one in three
steps, each its own short transaction:

1. :func:`claim`: checks that the recipient may still receive alerts (the config and the
   ``access`` table, :mod:`archiver.store.access`) and that the alert's rules are not muted
   in that chat, then moves it ``pending`` -> ``sending``. A refused or muted alert becomes
   ``dropped`` with the reason in ``last_error``; nothing is sent.
2. the ``sendMessage`` call (the bot's).
3. the outcome: :func:`mark_sent` (with the Telegram message id), :func:`mark_retry` (back to
   pending, due later), :func:`mark_failed`, or :func:`mark_unknown` when the call may or may
   not have reached Telegram.

A sent alert is never pending again, and neither is one in ``sending``: an alert is resent
only when Telegram certainly did not accept it. When the bot stops (or dies) between steps 2
and 3, the next start finds the alert still ``sending`` and marks it ``unknown``
(:func:`settle_in_flight`) rather than sending it a second time.

When the archive cannot be written (disk full, the write lock held by another process), the
bot stops delivering and leaves a marker file beside the archive (:func:`write_marker`):
``telewatch health`` reports it, and outcomes the bot could not record are kept in it for the
next start.

Statuses: ``pending`` | ``sending`` | ``sent`` | ``failed`` (gave up after the retries; can be
requeued) | ``unknown`` (may have been delivered: see above) | ``dropped`` (not sent on
purpose: the recipient lost access, or the rule was muted; the reason is in ``last_error``).

Recipients that blocked the bot are set inactive with :func:`set_recipient_active`; their
alerts stay pending (held, never lost) and go out once they talk to the bot again.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from archiver.channels import post_link
from archiver.store.archive import Archive, iso_utc, parse_ts, ts, utcnow
from archiver.store.wakeup import announce

log = logging.getLogger(__name__)

STATUSES = ("pending", "sending", "sent", "failed", "unknown", "dropped")
_SECOND = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One alert with everything needed to format and send it."""

    id: int
    post_id: int
    recipient: int  # chat id
    kind: str  # new | edited | deleted | reverted | restored
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
    old_text: str | None  # edited, reverted: the text before
    deleted_at: datetime | None
    media_kind: str | None  # photo, video, ... of a post with media
    reply_to: int | None  # Telegram message id of the earlier alert about this post, if sent
    entities: str | None = None  # JSON entities of ``text`` (UTF-16 offsets), as archived
    album: tuple[str, ...] = ()  # media kinds of every post of the album ("" for none)
    # deleted: how the deletion was confirmed (live | recheck | web_embed | manual) and the
    # evidence in words, from the alert's own event (post_events), else from the post
    deleted_how: str | None = None
    deleted_evidence: str | None = None
    status: str = "pending"
    # A summary of alerts held during the chat's quiet hours (archiver.store.quiet): sent as
    # one message, claimed and recorded together. Empty for a single alert.
    held: tuple[AlertRow, ...] = ()

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
    sending: int = 0  # in flight (or left so by a bot that could not record the outcome)
    unknown: int = 0  # may or may not have been delivered: not resent
    dropped: int = 0  # not sent on purpose (access withdrawn, muted)


_ALERT_COLUMNS = """
SELECT a.id, a.post_id, a.recipient, a.kind, a.rules, a.attempts, a.created_at, a.status,
       p.channel_id, p.message_id, p.date,
       CASE WHEN a.kind = 'deleted' THEN coalesce(e.at, p.deleted_at) END AS deleted_at,
       CASE WHEN a.kind = 'deleted' THEN coalesce(e.how, p.deleted_how) END AS deleted_how,
       CASE WHEN a.kind = 'deleted' THEN coalesce(e.evidence, p.deleted_evidence) END
         AS deleted_evidence,
       p.media_kind, p.grouped_id, c.username, c.title, v.text, v.entities,
       pv.text AS old_text,
       (SELECT b.tg_message_id FROM alerts b
         WHERE b.post_id = a.post_id AND b.recipient = a.recipient AND b.id <> a.id
           AND b.tg_message_id IS NOT NULL
         ORDER BY b.id LIMIT 1) AS reply_to,
       CASE WHEN p.grouped_id IS NOT NULL THEN
         (SELECT group_concat(coalesce(g.media_kind, ''), ',') FROM posts g
           WHERE g.channel_id = p.channel_id AND g.grouped_id = p.grouped_id
             AND g.message_id BETWEEN p.message_id - 10 AND p.message_id + 10)
       END AS album
"""

_JOINS = """
JOIN posts p ON p.id = a.post_id
JOIN channels c ON c.id = p.channel_id
JOIN versions v ON v.id = a.version_id
LEFT JOIN versions pv ON pv.id = a.prev_version_id
LEFT JOIN post_events e ON e.id = a.event_id
"""

_PENDING_SQL = (
    _ALERT_COLUMNS
    + """
FROM (
    SELECT a.id, row_number() OVER (PARTITION BY a.recipient ORDER BY a.id) AS rn
    FROM alerts a LEFT JOIN recipients r ON r.chat_id = a.recipient
    WHERE a.status = 'pending' AND (a.next_attempt_at IS NULL OR a.next_attempt_at <= ?)
      AND coalesce(r.active, 1) = 1
) q
JOIN alerts a ON a.id = q.id
"""
    + _JOINS
    + """
WHERE q.rn <= ?
ORDER BY a.id
LIMIT ?
"""
)

_ONE_SQL = _ALERT_COLUMNS + "FROM alerts a" + _JOINS + "WHERE a.id = ?"


async def pending(
    archive: Archive, limit: int, now: datetime | None = None, *, per_chat: int | None = None
) -> list[AlertRow]:
    """Alerts due at ``now`` (default: the current time), oldest first, at most ``limit``
    and at most ``per_chat`` per recipient (so one busy chat cannot hide the others).
    Alerts of inactive recipients are held back."""
    when = ts(now or utcnow())
    rows = await archive.fetchall(_PENDING_SQL, (when, per_chat or limit, limit))
    return await _rows(archive, rows)


async def get_alert(archive: Archive, alert_id: int) -> AlertRow | None:
    """One alert, whatever its status (the buttons under a sent alert read it)."""
    rows = await archive.fetchall(_ONE_SQL, (alert_id,))
    out = await _rows(archive, rows)
    return out[0] if out else None


async def current_text(archive: Archive, post_id: int) -> tuple[str | None, str | None]:
    """The text and entities (JSON) of a post's current version."""
    row = await archive.fetchone(
        "SELECT v.text, v.entities FROM posts p JOIN versions v ON v.id = p.current_version_id"
        " WHERE p.id = ?",
        (post_id,),
    )
    return (None, None) if row is None else (row[0], row[1])


async def _rows(archive: Archive, rows: list[sqlite3.Row]) -> list[AlertRow]:
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
                entities=r["entities"],
                album=tuple(r["album"].split(",")) if r["album"] else (),
                deleted_how=r["deleted_how"],
                deleted_evidence=r["deleted_evidence"],
                status=r["status"],
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


class Claim(enum.Enum):
    SEND = "send"  # now sending: send it, then record the outcome
    GONE = "gone"  # no longer pending (sent, dropped, or claimed by another reader)
    DROPPED = "dropped"  # the recipient may not receive it, or its rules are muted there


Refusal = Callable[[int, bool | None], str | None]


async def claim(
    archive: Archive, alert: AlertRow, refusal: Refusal | None = None, now: datetime | None = None
) -> tuple[Claim, str | None]:
    """Step 1 of a send: one statement (its own transaction) records ``sending`` and reads
    the recipient's entry of the access table and the mutes of its chat, so a ``/deny`` is
    either before it (the alert is dropped, no longer pending) or after it (the send was
    under way). When ``refusal(chat_id, access_entry)`` gives a reason, or every rule of the
    alert is muted there, the alert becomes ``dropped`` with the reason instead. Returns
    what to do and, for DROPPED, the reason."""
    when = ts(now or utcnow())
    # one statement: its own transaction
    rows = await archive.write(_claim_sql(archive), (when, alert.id))
    if not rows:
        return Claim.GONE, None
    reason = _refused(alert, rows[0], refusal)
    if reason is None:
        return Claim.SEND, None
    await archive.write(
        "UPDATE alerts SET status = 'dropped', last_error = ?, next_attempt_at = NULL"
        " WHERE id = ? AND status = 'sending'",
        (reason[:500], alert.id),
    )
    return Claim.DROPPED, reason


_CLAIM_SQL = """
UPDATE alerts SET status = 'sending' WHERE id = ?2 AND status = 'pending'
RETURNING
    (SELECT allowed FROM access WHERE user_id = alerts.recipient AND alerts.recipient > 0),
    (SELECT group_concat(rule || char(30) || until, char(31)) FROM mutes
      WHERE chat_id = alerts.recipient AND until > ?1)
"""


# PostgreSQL: several bots on several machines may read the same pending alerts. The row is
# locked with SKIP LOCKED, so a bot never waits for another's claim of the same alert: the
# alert is GONE for it (and stays pending if that claim rolls back), and each alert is sent
# by exactly one bot. SQLite has one writer at a time: the plain UPDATE is enough there.
_CLAIM_SQL_PG = _CLAIM_SQL.replace(
    "WHERE id = ?2 AND status = 'pending'",
    "WHERE id = (SELECT id FROM alerts WHERE id = ?2 AND status = 'pending'"
    " FOR UPDATE SKIP LOCKED)",
)


def _claim_sql(archive: Archive) -> str:
    return _CLAIM_SQL_PG if archive.dialect == "postgresql" else _CLAIM_SQL


def _refused(alert: AlertRow, claimed: Sequence[object], refusal: Refusal | None) -> str | None:
    """Why a just-claimed alert is not sent (its recipient's access, or every rule muted in
    its chat), from the row :data:`_CLAIM_SQL` returned; None: send it."""
    entry, mutes = claimed[0], claimed[1]
    reason = None
    if refusal is not None:
        reason = refusal(alert.recipient, None if entry is None else bool(entry))
    if reason is None and isinstance(mutes, str) and mutes:
        reason = _muted(mutes, alert.rules)
    return reason


def _muted(packed: str, rules: tuple[str, ...]) -> str | None:
    """Why an alert of ``rules`` is not sent: every one of them is muted in its chat
    (``packed``: the chat's mutes as ``rule<RS>until<US>...``)."""
    muted = dict(item.split("\x1e", 1) for item in packed.split("\x1f"))
    if not rules or any(name not in muted for name in rules):
        return None
    return "muted in this chat: " + ", ".join(f"{n} until {muted[n]} UTC" for n in rules)


async def claim_held(
    archive: Archive,
    alerts: tuple[AlertRow, ...],
    refusal: Refusal | None = None,
    now: datetime | None = None,
) -> tuple[list[AlertRow], list[tuple[AlertRow, str]]]:
    """:func:`claim` for the alerts of one quiet-hours summary, in one transaction: those
    to send (now ``sending``) and those dropped, with the reason. Alerts no longer pending
    are in neither."""
    when = ts(now or utcnow())
    send: list[AlertRow] = []
    dropped: list[tuple[AlertRow, str]] = []
    async with archive.transaction() as db:
        for alert in alerts:
            async with db.execute(_claim_sql(archive), (when, alert.id)) as cur:
                rows = list(await cur.fetchall())
            if not rows:
                continue
            reason = _refused(alert, rows[0], refusal)
            if reason is None:
                send.append(alert)
                continue
            await db.execute(
                "UPDATE alerts SET status = 'dropped', last_error = ?, next_attempt_at = NULL"
                " WHERE id = ? AND status = 'sending'",
                (reason[:500], alert.id),
            )
            dropped.append((alert, reason))
    return send, dropped


async def record_many(
    archive: Archive,
    alert_ids: list[int],
    status: str,
    *,
    message_id: int | None = None,
    error: str = "",
    due: datetime | None = None,
    count: bool = True,
) -> None:
    """The one outcome of a summary for all its alerts, in one transaction: ``sent`` (with
    the message id), ``pending`` (a retry due at ``due``; ``count``: the try counts),
    ``failed`` or ``unknown``. Only alerts still pending or sending change."""
    marks = ",".join("?" * len(alert_ids))
    where = f" WHERE id IN ({marks}) AND {_OPEN}"
    if status == "sent":
        sql = ("UPDATE alerts SET status = 'sent', sent_at = ?, tg_message_id = ?,"
               " attempts = attempts + 1, last_error = NULL, next_attempt_at = NULL")  # fmt: skip
        params: tuple[object, ...] = (ts(utcnow()), message_id)
    elif status == "pending":
        when = due or utcnow()
        if when.microsecond:
            when = when.replace(microsecond=0) + _SECOND
        sql = ("UPDATE alerts SET status = 'pending', attempts = attempts + ?, last_error = ?,"
               " next_attempt_at = ?")  # fmt: skip
        params = (int(count), error[:500], ts(when))
    elif status in ("failed", "unknown"):
        sql = ("UPDATE alerts SET status = ?, attempts = attempts + 1, last_error = ?,"
               " next_attempt_at = NULL")  # fmt: skip
        params = (status, error[:500])
    else:
        raise ValueError(status)
    async with archive.transaction() as db:
        await db.execute(sql + where, (*params, *alert_ids))


_OPEN = "status IN ('pending', 'sending')"


async def mark_sent(archive: Archive, alert_id: int, tg_message_id: int) -> bool:
    """Record a successful send with its Telegram message id. Returns False when the alert
    was neither pending nor sending (already sent: nothing changes)."""
    rows = await archive.write(
        "UPDATE alerts SET status = 'sent', sent_at = ?, tg_message_id = ?,"
        " attempts = attempts + 1, last_error = NULL, next_attempt_at = NULL"
        f" WHERE id = ? AND {_OPEN} RETURNING id",
        (ts(utcnow()), tg_message_id, alert_id),
    )
    return len(rows) == 1


async def mark_retry(
    archive: Archive,
    alert_id: int,
    error: str,
    next_attempt_at: datetime,
    *,
    count: bool = True,
) -> int:
    """Back to pending, due at ``next_attempt_at`` (rounded up to the second): Telegram did
    not accept it. With ``count`` the attempt counts towards the limit (a flood wait does
    not). Returns the number of attempts so far."""
    when = next_attempt_at
    if when.microsecond:
        when = when.replace(microsecond=0) + _SECOND
    async with archive.transaction() as db:
        await db.execute(
            "UPDATE alerts SET status = 'pending', attempts = attempts + ?, last_error = ?,"
            f" next_attempt_at = ? WHERE id = ? AND {_OPEN}",
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
            f" next_attempt_at = NULL WHERE id = ? AND {_OPEN}",
            (error[:500], alert_id),
        )


async def mark_unknown(archive: Archive, alert_id: int, reason: str) -> None:
    """The send may or may not have reached Telegram (the answer never came): not resent, so
    that nobody gets it twice; kept as ``unknown`` with the reason for the operator."""
    async with archive.transaction() as db:
        await db.execute(
            "UPDATE alerts SET status = 'unknown', attempts = attempts + 1, last_error = ?,"
            f" next_attempt_at = NULL WHERE id = ? AND {_OPEN}",
            (reason[:500], alert_id),
        )


UNKNOWN_AFTER_STOP = (
    "the bot stopped while sending it: Telegram may have delivered it, so it is not resent"
)


async def settle_in_flight(archive: Archive, sent: dict[int, int] | None = None) -> tuple[int, int]:
    """At start: alerts a previous run left in ``sending``. Those in ``sent`` (alert id ->
    Telegram message id, from the marker file of a run that could not record them) become
    sent; the others ``unknown``. Returns (recorded as sent, marked unknown)."""
    recorded = 0
    for alert_id, message_id in (sent or {}).items():
        recorded += await mark_sent(archive, alert_id, message_id)
    async with archive.transaction() as db:
        cur = await db.execute(
            "UPDATE alerts SET status = 'unknown', last_error = ?, next_attempt_at = NULL"
            " WHERE status = 'sending'",
            (UNKNOWN_AFTER_STOP,),
        )
        unknown = cur.rowcount
    return recorded, unknown


async def mute(archive: Archive, chat_id: int, rules: tuple[str, ...], until: datetime) -> None:
    """Drop alerts of ``rules`` to ``chat_id`` until ``until`` (an alert is dropped when every
    rule that fired for it is muted)."""
    async with archive.transaction() as db:
        await db.executemany(
            "INSERT INTO mutes (chat_id, rule, until) VALUES (?, ?, ?)"
            " ON CONFLICT (chat_id, rule) DO UPDATE SET until = excluded.until",
            [(chat_id, name, ts(until)) for name in rules],
        )


async def unmute(archive: Archive, chat_id: int, rules: tuple[str, ...] | None = None) -> int:
    """End mutes in ``chat_id`` (of ``rules``, or all); returns how many ended."""
    async with archive.transaction() as db:
        if rules is None:
            cur = await db.execute("DELETE FROM mutes WHERE chat_id = ?", (chat_id,))
        else:
            cur = await db.executemany(
                "DELETE FROM mutes WHERE chat_id = ? AND rule = ?", [(chat_id, n) for n in rules]
            )
        return cur.rowcount


async def mutes(archive: Archive, chat_id: int, now: datetime | None = None) -> dict[str, datetime]:
    """Rules muted in ``chat_id`` now, with when each mute ends."""
    rows = await archive.fetchall(
        "SELECT rule, until FROM mutes WHERE chat_id = ? AND until > ? ORDER BY rule",
        (chat_id, ts(now or utcnow())),
    )
    return {r[0]: _dt(r[1]) for r in rows}


# ---------------------------------------------------------------------------- the marker


@dataclass(frozen=True, slots=True)
class Marker:
    """Delivery paused because the archive could not be written (the marker file)."""

    since: str
    reason: str
    sent: dict[int, int] = field(default_factory=dict)  # alert id -> Telegram message id
    not_sent: tuple[int, ...] = ()  # alerts Telegram did not accept: pending again


def marker_path(archive_path: Path) -> Path:
    """``archive.db`` -> ``archive.db.delivery-paused`` beside it."""
    return archive_path.with_name(archive_path.name + ".delivery-paused")


def write_marker(path: Path, marker: Marker) -> bool:
    """Leave the marker (best effort: on a full disk the file may be created empty; its
    existence is what ``health`` reads). False when even that failed."""
    data = json.dumps(
        {"since": marker.since, "reason": marker.reason,
         "sent": {str(k): v for k, v in marker.sent.items()},
         "not_sent": list(marker.not_sent)}
    )  # fmt: skip
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        log.warning("cannot leave the delivery marker %s (%s)", path, exc.strerror)
        return False
    try:
        os.write(fd, data.encode())
    except OSError:
        log.debug("the delivery marker %s is empty (no space to write it)", path)
    finally:
        os.close(fd)
    return True


def read_marker(path: Path) -> Marker | None:
    """The marker left by a bot that could not write the archive, or None."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        return Marker("", f"the marker cannot be read ({exc.strerror})")
    try:
        data = json.loads(raw) if raw.strip() else {}
        sent = {int(k): int(v) for k, v in dict(data.get("sent", {})).items()}
        not_sent = tuple(int(i) for i in data.get("not_sent", ()))
        return Marker(str(data.get("since", "")), str(data.get("reason", "")), sent, not_sent)
    except (ValueError, TypeError, AttributeError):
        return Marker("", "the archive could not be written")


def clear_marker(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


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
        if cur.rowcount:
            await announce(db)  # a bot in another process sends them at once
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
    archive: Archive, status: str | None = None, limit: int = 50, *, post_id: int | None = None
) -> list[AlertSummary]:
    """The newest alerts (of one status, or all; of one post, or all), newest first."""
    conds: list[str] = []
    params: list[object] = []
    if status is not None:
        conds.append("a.status = ?")
        params.append(status)
    if post_id is not None:
        conds.append("a.post_id = ?")
        params.append(post_id)
    where = f"WHERE {' AND '.join(conds)}" if conds else ""
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
        " min(CASE WHEN a.status = 'pending' THEN a.created_at END),"
        " sum(a.status = 'sending'), sum(a.status = 'unknown'), sum(a.status = 'dropped')"
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
        sending=row[5] or 0,
        unknown=row[6] or 0,
        dropped=row[7] or 0,
    )
