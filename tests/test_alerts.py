"""The alert outbox as the ingest path fills it with the rules engine installed: one alert per
recipient, follow-ups for edits and deletions, nothing from backfill or import, nothing twice,
and never an alert without its post (or a post without its alerts)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

import pytest
from pg import allow_inserts, fail_inserts

from archiver.errors import RuleError
from archiver.models import ChannelInfo, Post, Rule
from archiver.rules import ALERT_STATUSES, RuleLoader, format_alerts, list_alerts
from archiver.store.archive import Archive
from archiver.store.channels import upsert_channel
from archiver.store.deletions import mark_deleted
from archiver.store.ingest import ingest
from archiver.store.personal_rules import add_rule

CH = -1001811111111
DAY = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)

RULES = [
    Rule("evac", "(эвакуация OR евакуація OR evacuation) -учения", notify=(1, 2)),
    Rule("bus", "автобус", notify=(1,)),
    Rule("bridge-new-only", "мост", notify=(3,), kinds=frozenset({"new"})),
    Rule("elsewhere", "эвакуация", notify=(4,), channels=("other_channel",)),
]


@pytest.fixture
async def archive(any_archive: Archive) -> Archive:
    """On SQLite and on PostgreSQL (tests/pg.py)."""
    a = any_archive
    await upsert_channel(a, ChannelInfo(id=CH, username="vsaldo"), source="telethon")
    RuleLoader(RULES).install(a)
    return a


def post(mid: int, text: str, *, edited: int | None = None) -> Post:
    edit_date = DAY.replace(hour=11, minute=edited) if edited is not None else None
    return Post(CH, mid, DAY, text, edit_date=edit_date)


async def outbox(archive: Archive) -> list[tuple[int, str, int, list[str]]]:
    """(message id, kind, recipient, rules) of every alert, in queue order."""
    rows = await archive.fetchall(
        "SELECT p.message_id, a.kind, a.recipient, a.rules FROM alerts a"
        " JOIN posts p ON p.id = a.post_id ORDER BY a.id"
    )
    return [(r[0], r[1], r[2], json.loads(r[3])) for r in rows]


async def live(archive: Archive, *posts: Post) -> int:
    return (await ingest(archive, list(posts), source="telethon", alerts=True)).alerts_queued


async def test_a_matching_new_post_alerts_each_recipient_once(archive: Archive) -> None:
    n = await live(archive, post(1, "Объявлена эвакуация, выделены автобусы"), post(2, "погода"))
    assert await outbox(archive) == [
        (1, "new", 1, ["bus", "evac"]),  # two rules, one recipient: one alert
        (1, "new", 2, ["evac"]),
    ]
    assert n == 2
    row = await archive.fetchone("SELECT status, attempts, version_id, prev_version_id FROM alerts")
    assert row is not None
    assert (row[0], row[1], row[3]) == ("pending", 0, None)
    cur = await archive.fetchone("SELECT current_version_id FROM posts WHERE message_id = 1")
    assert cur is not None and row[2] == cur[0]


async def test_rerunning_the_same_input_queues_nothing_new(archive: Archive) -> None:
    batch = [post(1, "эвакуация"), post(2, "автобус")]
    assert await live(archive, *batch) == 3
    assert await live(archive, *batch) == 0
    assert await mark_deleted(archive, CH, [1], how="live", alerts=True) == 1
    assert await mark_deleted(archive, CH, [1], how="live", alerts=True) == 0
    assert len(await outbox(archive)) == 5


@pytest.mark.parametrize("source", ["telethon", "export", "web"])
async def test_backfill_and_import_never_alert(archive: Archive, source: str) -> None:
    stats = await ingest(archive, [post(1, "эвакуация")], source=source, alerts=False)
    assert stats.posts_added == 1
    assert stats.alerts_queued == 0
    await ingest(archive, [post(1, "эвакуация автобус", edited=1)], source=source, alerts=False)
    await mark_deleted(archive, CH, [1], how="recheck", alerts=False)
    assert await outbox(archive) == []


async def test_an_edit_that_makes_a_post_match_alerts_as_edited(archive: Archive) -> None:
    await live(archive, post(1, "погода"))
    await live(archive, post(1, "погода; эвакуация", edited=1))
    assert await outbox(archive) == [(1, "edited", 1, ["evac"]), (1, "edited", 2, ["evac"])]
    row = await archive.fetchone("SELECT prev_version_id FROM alerts LIMIT 1")
    assert row is not None and row[0] is not None  # old text against new


async def test_an_edit_of_an_alerted_post_goes_to_the_same_recipients(archive: Archive) -> None:
    await live(archive, post(1, "эвакуация"))
    await live(archive, post(1, "всё спокойно", edited=1))  # no longer matches
    assert await outbox(archive) == [
        (1, "new", 1, ["evac"]),
        (1, "new", 2, ["evac"]),
        (1, "edited", 1, ["evac"]),
        (1, "edited", 2, ["evac"]),
    ]


async def test_an_edit_that_matches_one_more_rule_names_both(archive: Archive) -> None:
    await live(archive, post(1, "эвакуация"))
    await live(archive, post(1, "эвакуация, автобусы у школы", edited=1))
    assert (await outbox(archive))[2:] == [
        (1, "edited", 1, ["bus", "evac"]),
        (1, "edited", 2, ["evac"]),
    ]


async def test_no_edit_follow_up_for_a_rule_that_only_wants_new_posts(archive: Archive) -> None:
    await live(archive, post(1, "мост закрыт"))
    await live(archive, post(1, "мост открыт", edited=1))
    await mark_deleted(archive, CH, [1], how="live", alerts=True)
    assert await outbox(archive) == [(1, "new", 3, ["bridge-new-only"])]


async def test_the_deletion_of_an_alerted_post_goes_to_the_same_recipients(
    archive: Archive,
) -> None:
    await live(archive, post(1, "эвакуация"), post(2, "погода"))
    assert await mark_deleted(archive, CH, [1, 2], how="live", alerts=True) == 2
    assert (await outbox(archive))[2:] == [
        (1, "deleted", 1, ["evac"]),
        (1, "deleted", 2, ["evac"]),
    ]
    still = await archive.fetchone("SELECT count(*) FROM posts WHERE deleted_at IS NOT NULL")
    assert still is not None and still[0] == 2  # marked, never erased


async def test_channel_scope_and_exclusions_hold_in_the_outbox(archive: Archive) -> None:
    await live(archive, post(1, "учения: эвакуация"), post(2, "эвакуация"))
    assert {r[2] for r in await outbox(archive)} == {1, 2}  # not 4: another channel's rule
    assert all(r[0] == 2 for r in await outbox(archive))


async def test_a_failure_before_commit_leaves_neither_post_nor_alert(archive: Archive) -> None:
    # A trigger makes the alert insert, the last write of the transaction, fail after the
    # post and its version were written.
    await fail_inserts(archive, "alerts")
    with pytest.raises(sqlite3.IntegrityError, match="injected failure"):
        await live(archive, post(1, "эвакуация"), post(2, "погода"))
    for table in ("posts", "versions", "alerts"):
        row = await archive.fetchone(f"SELECT count(*) FROM {table}")
        assert row is not None and row[0] == 0, table
    await allow_inserts(archive, "alerts")
    assert await live(archive, post(1, "эвакуация"), post(2, "погода")) == 2
    row = await archive.fetchone("SELECT count(*) FROM posts")
    assert row is not None and row[0] == 2


async def test_a_failure_in_a_deletion_leaves_the_post_undeleted(archive: Archive) -> None:
    await live(archive, post(1, "эвакуация"))
    await fail_inserts(archive, "alerts")
    with pytest.raises(sqlite3.IntegrityError):
        await mark_deleted(archive, CH, [1], how="live", alerts=True)
    row = await archive.fetchone("SELECT deleted_at FROM posts")
    assert row is not None and row[0] is None
    assert len(await outbox(archive)) == 2


async def test_a_personal_rule_added_while_running_alerts_its_owner(archive: Archive) -> None:
    await live(archive, post(1, "вода"))
    await add_rule(archive, 77, "вода OR водоснабжение")
    await live(archive, post(2, "водоснабжение отключено"))
    assert await outbox(archive) == [(2, "new", 77, ["вода OR водоснабжение"])]


async def test_list_alerts_newest_first_with_status_filter(archive: Archive) -> None:
    await live(archive, post(1, "эвакуация"), post(2, "автобус"))
    await archive.db.execute(
        "UPDATE alerts SET status = 'sent', sent_at = '2024-03-01 10:05:00' WHERE id = 1"
    )
    await archive.db.execute(
        "UPDATE alerts SET status = 'failed', attempts = 5, last_error = 'Forbidden' WHERE id = 2"
    )
    rows = await list_alerts(archive)
    assert [a.id for a in rows] == [3, 2, 1]
    assert [a.id for a in await list_alerts(archive, limit=1)] == [3]
    sent = await list_alerts(archive, status="sent")
    assert [a.id for a in sent] == [1]
    assert json.loads(sent[0].to_json()) == {
        "id": 1,
        "rules": ["evac"],
        "channel_id": CH,
        "message_id": 1,
        "kind": "new",
        "recipient": 1,
        "status": "sent",
        "created_at": sent[0].created_at.isoformat().replace("+00:00", "Z"),
        "sent_at": "2024-03-01T10:05:00Z",
    }
    text = format_alerts(rows)
    assert "failed  new     -> 2  vsaldo/1  [evac]  (5 attempts: Forbidden)" in text
    assert format_alerts([]) == "no alerts"
    assert set(ALERT_STATUSES) == {"pending", "sent", "failed"}
    with pytest.raises(RuleError, match="--status"):
        await list_alerts(archive, status="queued")


async def test_a_post_and_its_edit_in_one_batch_alert_like_two_batches(archive: Archive) -> None:
    await live(archive, post(1, "эвакуация"), post(1, "всё спокойно", edited=1))
    assert await outbox(archive) == [
        (1, "new", 1, ["evac"]),
        (1, "new", 2, ["evac"]),
        (1, "edited", 1, ["evac"]),
        (1, "edited", 2, ["evac"]),
    ]
