"""The outbox API the bot uses: pending alerts with everything to format them, and outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botkit import (
    CHANNEL,
    CHANNEL_TITLE,
    GROUP,
    MEMBER,
    OTHER_MEMBER,
    T0,
    Matcher,
    delete_post,
    edit_post,
    post,
    queue_alerts,
    seed_channel,
)

from archiver.store import outbox
from archiver.store.access import get_access, list_access, set_access
from archiver.store.archive import Archive
from archiver.store.ingest import ingest
from archiver.store.personal_rules import add_rule

LATER = datetime.now(UTC) + timedelta(days=1)


@pytest.fixture
async def db(any_archive: Archive) -> Archive:
    """On SQLite and on PostgreSQL (tests/pg.py)."""
    await seed_channel(any_archive)
    return any_archive


async def test_pending_has_everything_to_format_an_alert(db: Archive) -> None:
    assert await queue_alerts(db, ["Началась война", "мир"], [MEMBER, GROUP]) == 2
    rows = await outbox.pending(db, 10, LATER)
    assert sorted((r.recipient, r.kind) for r in rows) == [(GROUP, "new"), (MEMBER, "new")]
    r = next(r for r in rows if r.recipient == MEMBER)
    assert r.channel_id == CHANNEL and r.channel_title == CHANNEL_TITLE
    assert r.channel_username == "saltpepper" and r.message_id == 1
    assert r.post_date == T0 + timedelta(minutes=1)
    assert r.link == "https://t.me/saltpepper/1"
    assert r.text == "Началась война" and r.old_text is None
    assert r.rules == ("war",) and r.attempts == 0 and r.reply_to is None


async def test_edit_and_delete_alerts_carry_old_text_and_reply_target(db: Archive) -> None:
    await queue_alerts(db, ["Началась война"])
    first = (await outbox.pending(db, 10, LATER))[0]
    assert await outbox.mark_sent(db, first.id, 555)
    assert await edit_post(db, 1, "Война закончилась") == 1
    assert await delete_post(db, 1) == 1
    rows = await outbox.pending(db, 10, LATER)
    assert [r.kind for r in rows] == ["edited", "deleted"]
    edited, deleted = rows
    assert edited.old_text == "Началась война" and edited.text == "Война закончилась"
    assert edited.reply_to == 555 and deleted.reply_to == 555
    assert deleted.text == "Война закончилась" and deleted.deleted_at is not None


async def test_mark_sent_happens_once(db: Archive) -> None:
    await queue_alerts(db, ["война"])
    (row,) = await outbox.pending(db, 10, LATER)
    assert await outbox.mark_sent(db, row.id, 7)
    assert not await outbox.mark_sent(db, row.id, 8)
    assert await outbox.pending(db, 10, LATER) == []
    (summary,) = await outbox.list_alerts(db, "sent")
    assert summary.status == "sent" and summary.attempts == 1


async def test_retry_waits_until_due_and_counts_only_when_asked(db: Archive) -> None:
    await queue_alerts(db, ["война"])
    (row,) = await outbox.pending(db, 10, LATER)
    now = datetime.now(UTC)
    later = now + timedelta(minutes=5)
    assert await outbox.mark_retry(db, row.id, "flood", later, count=False) == 0
    assert await outbox.pending(db, 10, now) == []
    assert len(await outbox.pending(db, 10, now + timedelta(minutes=6))) == 1
    assert await outbox.mark_retry(db, row.id, "5xx", now) == 1


async def test_failed_alerts_leave_pending_and_can_be_requeued(db: Archive) -> None:
    await queue_alerts(db, ["война"])
    (row,) = await outbox.pending(db, 10, LATER)
    await outbox.mark_failed(db, row.id, "gave up")
    assert await outbox.pending(db, 10, LATER) == []
    c = await outbox.counts(db)
    assert (c.pending, c.failed, c.sent) == (0, 1, 0)
    (failed,) = await outbox.list_alerts(db, "failed")
    assert failed.last_error == "gave up" and failed.link.endswith("/1")
    assert await outbox.requeue(db) == 1
    assert len(await outbox.pending(db, 10, LATER)) == 1


async def test_inactive_recipients_are_held_not_lost(db: Archive) -> None:
    await queue_alerts(db, ["война"], [MEMBER, OTHER_MEMBER])
    assert await outbox.set_recipient_active(db, MEMBER, False, "blocked")
    assert not await outbox.set_recipient_active(db, MEMBER, False, "blocked")
    assert [r.recipient for r in await outbox.pending(db, 10, LATER)] == [OTHER_MEMBER]
    c = await outbox.counts(db)
    assert (c.pending, c.held, c.inactive_recipients) == (2, 1, 1)
    assert await outbox.inactive_recipients(db) == {MEMBER: "blocked"}
    assert await outbox.set_recipient_active(db, MEMBER, True)
    assert len(await outbox.pending(db, 10, LATER)) == 2


async def test_per_chat_cap_keeps_one_busy_chat_from_hiding_others(db: Archive) -> None:
    await queue_alerts(db, [f"война {i}" for i in range(6)], [MEMBER])
    await queue_alerts(db, ["война 7"], [OTHER_MEMBER], first_id=100)
    rows = await outbox.pending(db, 3, LATER, per_chat=2)
    assert [r.recipient for r in rows] == [MEMBER, MEMBER, OTHER_MEMBER]


async def test_personal_rule_queries_come_with_the_alert(db: Archive) -> None:
    rule = await add_rule(db, MEMBER, "идти", name="walks")
    db.matcher = Matcher({"walks": ("идти", [MEMBER])})
    await ingest(db, [post(9, "он идёт")], source="telethon", alerts=True)
    (row,) = await outbox.pending(db, 10, LATER)
    assert row.rules == ("walks",) and row.rule_queries == (("walks", rule.query),)


async def test_access_overrides(db: Archive) -> None:
    assert await get_access(db, 5) is None
    await set_access(db, 5, True, by=1)
    assert await get_access(db, 5) is True
    await set_access(db, 5, False, by=1)
    (entry,) = await list_access(db)
    assert (entry.user_id, entry.allowed, entry.changed_by) == (5, False, 1)
