"""The one ingest path: posts, versions, counters, deletions, and all-or-nothing batches."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Any

import pytest
from conftest import CHANNEL_ID, T0, MakeChannel, MakePost
from pg import archive_both  # noqa: F401  (these tests run on SQLite and PostgreSQL)

from archiver.models import Entity, Forward, Media, Post
from archiver.query import Doc
from archiver.store.archive import Archive
from archiver.store.deletions import mark_deleted
from archiver.store.ingest import content_sha, ingest, known_ids

OTHER_ID = -1002222222222


async def rows(archive: Archive, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await archive.fetchall(sql, params)]


async def snapshot(archive: Archive) -> dict[str, list[tuple[Any, ...]]]:
    """Everything ingest writes, except the time counters were last refreshed."""
    return {
        "posts": await rows(
            archive,
            "SELECT id, channel_id, message_id, date, current_version_id, version_count, edited,"
            " views, forwards, replies, reactions, deleted_at FROM posts ORDER BY id",
        ),
        "versions": await rows(archive, "SELECT * FROM versions ORDER BY id"),
        # SQLite's FTS5 index (search on PostgreSQL has its own tests)
        "fts": await rows(archive, "SELECT rowid, words FROM versions_fts ORDER BY rowid")
        if archive.dialect == "sqlite"
        else [],
        "alerts": await rows(archive, "SELECT * FROM alerts ORDER BY id"),
        "meta": await rows(archive, "SELECT * FROM meta ORDER BY key"),
    }


async def texts(archive: Archive, message_id: int, channel_id: int = CHANNEL_ID) -> list[str]:
    """Every version's text of one post, in insertion order."""
    got = await rows(
        archive,
        "SELECT v.text FROM versions v JOIN posts p ON p.id = v.post_id"
        " WHERE p.channel_id = ? AND p.message_id = ? ORDER BY v.seen_at, v.id",
        (channel_id, message_id),
    )
    return [r[0] for r in got]


async def current(archive: Archive, message_id: int, channel_id: int = CHANNEL_ID) -> str:
    row = await archive.fetchone(
        "SELECT v.text FROM posts p JOIN versions v ON v.id = p.current_version_id"
        " WHERE p.channel_id = ? AND p.message_id = ?",
        (channel_id, message_id),
    )
    assert row is not None
    return str(row[0])


async def post_row(archive: Archive, message_id: int, channel_id: int = CHANNEL_ID) -> Any:
    row = await archive.fetchone(
        "SELECT * FROM posts WHERE channel_id = ? AND message_id = ?", (channel_id, message_id)
    )
    assert row is not None
    return row


@pytest.fixture
async def channel(make_channel: MakeChannel) -> None:
    await make_channel()


pytestmark = pytest.mark.usefixtures("channel")


# ---------------------------------------------------------------------------- new posts


async def test_new_posts_get_a_post_and_a_first_version(
    archive: Archive, make_post: MakePost
) -> None:
    batch = [
        make_post(1, "Эвакуация из Херсона", views=100, forwards=3, replies=2),
        make_post(2, "Обстріли тривають", entities=(Entity("bold", 0, 8),)),
        make_post(3, "Evacuation continues", reactions=(("👍", 5), ("🔥", 2))),
    ]
    stats = await ingest(archive, batch, source="telethon", alerts=False)
    assert (stats.posts_added, stats.versions_added, stats.posts_updated) == (3, 3, 0)
    assert stats.high_water == 3

    p1 = await post_row(archive, 1)
    assert (p1["views"], p1["forwards"], p1["replies"]) == (100, 3, 2)
    assert p1["date"] == "2024-05-01 12:01:00"
    assert p1["version_count"] == 1
    assert p1["edited"] == 0
    assert p1["source"] == "telethon"
    assert await texts(archive, 1) == ["Эвакуация из Херсона"]
    assert (await post_row(archive, 3))["reactions"] == 7

    v2 = await archive.fetchone(
        "SELECT v.* FROM versions v JOIN posts p ON p.current_version_id = v.id"
        " WHERE p.message_id = 2"
    )
    assert v2 is not None
    assert v2["sha256"] == content_sha("Обстріли тривають")
    assert v2["entities"] == '[{"type":"bold","offset":0,"length":8}]'
    assert v2["words"] == "обстріли тривають"
    if archive.dialect == "sqlite":  # SQLite's FTS5 index (PostgreSQL's: test_search*)
        hit = await archive.fetchall(
            "SELECT rowid FROM versions_fts WHERE versions_fts MATCH 'обстріли'"
        )
        assert [r[0] for r in hit] == [v2["id"]]


async def test_post_metadata_is_kept(archive: Archive, make_post: MakePost) -> None:
    post = make_post(
        5,
        "see https://example.org",
        media=(Media("photo", width=800, height=600), Media("video", duration=3.5)),
        forward=Forward(from_id=OTHER_ID, from_title="Other", from_message_id=77),
        reply_to=4,
        grouped_id=999,
        raw='{"id": 5}',
    )
    await ingest(archive, [post], source="telethon", alerts=False)
    p = await post_row(archive, 5)
    assert p["media_kind"] == "photo"
    assert '"duration":3.5' in p["media_json"]
    assert (p["fwd_from_id"], p["fwd_from_title"], p["fwd_from_message_id"]) == (
        OTHER_ID,
        "Other",
        77,
    )
    assert (p["reply_to"], p["grouped_id"], p["has_link"]) == (4, 999, 1)
    raw = await archive.fetchone(
        "SELECT raw FROM versions WHERE id = ?", (p["current_version_id"],)
    )
    assert raw is not None and raw[0] == '{"id": 5}'


async def test_an_empty_batch_changes_nothing(archive: Archive) -> None:
    before = await snapshot(archive)
    stats = await ingest(archive, [], source="telethon", alerts=False)
    assert stats.posts_added == stats.versions_added == stats.high_water == 0
    assert await snapshot(archive) == before


async def test_the_same_batch_twice_changes_nothing(archive: Archive, make_post: MakePost) -> None:
    batch = [make_post(i, f"пост номер {i}", views=10 * i) for i in range(1, 30)]
    await ingest(archive, batch, source="export", alerts=False)
    before = await snapshot(archive)
    stats = await ingest(archive, batch, source="export", alerts=False)
    assert (stats.posts_added, stats.versions_added, stats.posts_updated) == (0, 0, 29)
    assert await snapshot(archive) == before


async def test_the_same_text_with_other_line_endings_is_the_same_version(
    archive: Archive, make_post: MakePost
) -> None:
    await ingest(archive, [make_post(1, "строка один\nстрока два")], source="web", alerts=False)
    stats = await ingest(
        archive, [make_post(1, "  строка один\r\nстрока два \n")], source="export", alerts=False
    )
    assert stats.versions_added == 0
    assert await texts(archive, 1) == ["строка один\nстрока два"]


# ---------------------------------------------------------------------------- edits


async def test_a_changed_text_adds_exactly_one_version_and_keeps_the_old(
    archive: Archive, make_post: MakePost
) -> None:
    await ingest(archive, [make_post(1, "Эвакуация в 10:00")], source="telethon", alerts=False)
    edited = make_post(1, "Эвакуация перенесена на 12:00", edit_date=T0 + timedelta(hours=2))
    stats = await ingest(archive, [edited], source="telethon", alerts=False)
    assert (stats.posts_added, stats.versions_added) == (0, 1)
    assert await texts(archive, 1) == ["Эвакуация в 10:00", "Эвакуация перенесена на 12:00"]
    assert await current(archive, 1) == "Эвакуация перенесена на 12:00"
    p = await post_row(archive, 1)
    assert (p["version_count"], p["edited"]) == (2, 1)

    again = await ingest(archive, [edited], source="telethon", alerts=False)
    assert again.versions_added == 0
    assert len(await texts(archive, 1)) == 2


async def test_a_revert_to_an_earlier_text_makes_it_current_without_a_new_version(
    archive: Archive, make_post: MakePost
) -> None:
    a = make_post(1, "первый текст")
    b = make_post(1, "второй текст", edit_date=T0 + timedelta(hours=1))
    a_again = make_post(1, "первый текст", edit_date=T0 + timedelta(hours=2))
    for p in (a, b, a_again):
        await ingest(archive, [p], source="telethon", alerts=False)
    assert await texts(archive, 1) == ["первый текст", "второй текст"]
    assert await current(archive, 1) == "первый текст"
    assert (await post_row(archive, 1))["edited"] == 1


async def test_an_older_edit_arriving_late_is_history_not_current(
    archive: Archive, make_post: MakePost
) -> None:
    newer = make_post(1, "третья редакция", edit_date=T0 + timedelta(hours=3))
    older = make_post(1, "вторая редакция", edit_date=T0 + timedelta(hours=1))
    await ingest(archive, [newer], source="telethon", alerts=False)
    stats = await ingest(archive, [older], source="export", alerts=False)
    assert stats.versions_added == 1
    assert set(await texts(archive, 1)) == {"третья редакция", "вторая редакция"}
    assert await current(archive, 1) == "третья редакция"
    assert (await post_row(archive, 1))["version_count"] == 2


async def test_an_unedited_original_arriving_late_is_history_not_current(
    archive: Archive, make_post: MakePost
) -> None:
    edited = make_post(1, "исправленный текст", edit_date=T0 + timedelta(hours=1))
    original = make_post(1, "исходный текст")  # an export made before the edit
    await ingest(archive, [edited], source="telethon", alerts=False)
    await ingest(archive, [original], source="export", alerts=False)
    assert await current(archive, 1) == "исправленный текст"


async def test_counters_are_refreshed_and_never_cleared(
    archive: Archive, make_post: MakePost
) -> None:
    await ingest(
        archive, [make_post(1, "текст", views=10, forwards=1)], source="telethon", alerts=False
    )
    stats = await ingest(
        archive,
        [make_post(1, "текст", views=250, forwards=None, reactions=(("❤", 4),))],
        source="telethon",
        alerts=False,
    )
    assert (stats.posts_updated, stats.versions_added) == (1, 0)
    p = await post_row(archive, 1)
    assert (p["views"], p["forwards"], p["reactions"]) == (250, 1, 4)
    assert p["counts_at"] is not None


# ---------------------------------------------------------------------------- batches


async def test_duplicates_inside_one_batch(archive: Archive, make_post: MakePost) -> None:
    same = [make_post(1, "один и тот же"), make_post(1, "один и тот же")]
    stats = await ingest(archive, same, source="export", alerts=False)
    assert (stats.posts_added, stats.versions_added) == (1, 1)

    changed = [
        make_post(2, "до правки"),
        make_post(2, "после правки", edit_date=T0 + timedelta(hours=1)),
    ]
    stats = await ingest(archive, changed, source="telethon", alerts=False)
    assert (stats.posts_added, stats.versions_added) == (1, 2)
    assert await texts(archive, 2) == ["до правки", "после правки"]
    assert await current(archive, 2) == "после правки"
    assert (await post_row(archive, 2))["version_count"] == 2
    assert len(await rows(archive, "SELECT id FROM posts")) == 2


async def test_service_posts_are_kept_but_not_indexed(
    archive: Archive, make_post: MakePost
) -> None:
    svc = make_post(1, "Channel created", is_service=True, service_action="create_channel")
    await ingest(archive, [svc], source="export", alerts=False)
    p = await post_row(archive, 1)
    assert (p["is_service"], p["service_action"]) == (1, "create_channel")
    if archive.dialect == "sqlite":  # SQLite's FTS5 index (PostgreSQL's: test_search*)
        hits = await rows(
            archive, "SELECT rowid FROM versions_fts WHERE versions_fts MATCH 'channel OR created'"
        )
        assert hits == []


async def test_two_channels_with_the_same_message_ids_stay_apart(
    archive: Archive, make_post: MakePost, make_channel: MakeChannel
) -> None:
    await make_channel(OTHER_ID, "other")
    await ingest(
        archive,
        [make_post(1, "первый канал"), make_post(1, "второй канал", channel_id=OTHER_ID)],
        source="telethon",
        alerts=False,
    )
    assert await current(archive, 1) == "первый канал"
    assert await current(archive, 1, OTHER_ID) == "второй канал"


async def test_a_failure_mid_batch_leaves_nothing_and_keeps_earlier_data(
    archive: Archive, make_post: MakePost
) -> None:
    await ingest(archive, [make_post(1, "до сбоя", views=5)], source="telethon", alerts=False)
    before = await snapshot(archive)
    batch = [
        make_post(1, "правка, которая не должна остаться", edit_date=T0 + timedelta(hours=1)),
        make_post(2, "новый пост, который не должен остаться"),
        make_post(3, "пост канала, которого нет", channel_id=-1009999999999),
    ]
    with pytest.raises(sqlite3.IntegrityError):
        await ingest(archive, batch, source="telethon", alerts=False)
    assert await snapshot(archive) == before
    # And the archive still takes writes.
    stats = await ingest(archive, [make_post(2, "после сбоя")], source="telethon", alerts=False)
    assert stats.posts_added == 1


async def test_a_failure_raised_inside_the_transaction_rolls_everything_back(
    archive: Archive, make_post: MakePost, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ingest(archive, [make_post(1, "старое")], source="telethon", alerts=False)
    before = await snapshot(archive)

    import archiver.store.ingest as ingest_mod

    real = ingest_mod.AlertBuffer.flush

    async def flush_then_fail(self: Any, db: Any) -> int:
        await real(self, db)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ingest_mod.AlertBuffer, "flush", flush_then_fail)
    with pytest.raises(RuntimeError, match="disk on fire"):
        await ingest(
            archive,
            [make_post(1, "новое", edit_date=T0 + timedelta(hours=1)), make_post(2, "ещё")],
            source="telethon",
            alerts=False,
        )
    assert await snapshot(archive) == before


# ---------------------------------------------------------------------------- deletions


async def test_deletion_marks_and_never_erases(archive: Archive, make_post: MakePost) -> None:
    await ingest(
        archive,
        [
            make_post(1, "будет удалён"),
            make_post(1, "будет удалён после правки", edit_date=T0 + timedelta(hours=1)),
            make_post(2, "останется"),
        ],
        source="telethon",
        alerts=False,
    )
    at = T0 + timedelta(days=1)
    assert (
        await mark_deleted(archive, CHANNEL_ID, [1, 1, 404], how="live", alerts=False, at=at) == 1
    )
    p = await post_row(archive, 1)
    assert (p["deleted_at"], p["deleted_how"]) == ("2024-05-02 12:00:00", "live")
    assert await texts(archive, 1) == ["будет удалён", "будет удалён после правки"]
    assert (await post_row(archive, 2))["deleted_at"] is None

    # Marking again changes nothing: the first time it was noticed is kept.
    later = at + timedelta(days=1)
    assert await mark_deleted(archive, CHANNEL_ID, [1], how="recheck", alerts=False, at=later) == 0
    assert (await post_row(archive, 1))["deleted_how"] == "live"
    assert await mark_deleted(archive, CHANNEL_ID, [], how="live", alerts=False) == 0


async def test_known_ids_gives_current_shas_of_live_posts_in_range(
    archive: Archive, make_post: MakePost
) -> None:
    await ingest(
        archive,
        [make_post(i, f"текст {i}") for i in range(1, 6)]
        + [make_post(3, "текст 3 исправлен", edit_date=T0 + timedelta(hours=1))],
        source="telethon",
        alerts=False,
    )
    await mark_deleted(archive, CHANNEL_ID, [4], how="recheck", alerts=False)
    got = await known_ids(archive, CHANNEL_ID, 2, 5)
    assert got == {
        2: content_sha("текст 2"),
        3: content_sha("текст 3 исправлен"),
        5: content_sha("текст 5"),
    }
    assert await known_ids(archive, OTHER_ID, 0, 100) == {}


# ---------------------------------------------------------------------------- alerts


class OneRule:
    """A matcher with one rule for chat 42: posts containing the word ``тревога``."""

    def match(self, doc: Doc, kind: str) -> dict[int, list[str]]:
        return {42: ["alarm"]} if "тревога" in doc.word_set else {}

    def wants(self, rule_name: str, kind: str) -> bool:
        return rule_name == "alarm"


async def alert_rows(archive: Archive) -> list[tuple[Any, ...]]:
    return await rows(
        archive,
        "SELECT p.message_id, a.recipient, a.kind, a.rules FROM alerts a"
        " JOIN posts p ON p.id = a.post_id ORDER BY a.id",
    )


async def test_alerts_are_queued_with_the_posts_only_when_asked(
    archive: Archive, make_post: MakePost
) -> None:
    archive.matcher = OneRule()
    await ingest(archive, [make_post(1, "Воздушная тревога")], source="export", alerts=False)
    assert await alert_rows(archive) == []

    stats = await ingest(
        archive,
        [make_post(2, "Воздушная тревога"), make_post(3, "Отбой")],
        source="telethon",
        alerts=True,
    )
    assert stats.alerts_queued == 1
    assert await alert_rows(archive) == [(2, 42, "new", '["alarm"]')]

    edit = make_post(2, "Воздушная тревога, всем в укрытие", edit_date=T0 + timedelta(hours=1))
    await ingest(archive, [edit], source="telethon", alerts=True)
    assert (await alert_rows(archive))[-1][:3] == (2, 42, "edited")

    await mark_deleted(archive, CHANNEL_ID, [2], how="live", alerts=True)
    assert (await alert_rows(archive))[-1][:3] == (2, 42, "deleted")


async def test_a_failed_batch_queues_no_alerts(archive: Archive, make_post: MakePost) -> None:
    archive.matcher = OneRule()
    batch: list[Post] = [
        make_post(1, "тревога"),
        make_post(2, "тревога", channel_id=-1009999999999),
    ]
    with pytest.raises(sqlite3.IntegrityError):
        await ingest(archive, batch, source="telethon", alerts=True)
    assert await alert_rows(archive) == []


async def test_a_post_marked_edited_without_a_date_is_edited(
    archive: Archive, make_channel: MakeChannel, make_post: MakePost
) -> None:
    """The web preview says "edited" but not when: the post is still found by is:edited."""
    await make_channel()
    await ingest(
        archive, [make_post(1, "раз", edited=True), make_post(2, "два")], source="web", alerts=False
    )
    flags = await rows(archive, "SELECT message_id, edited FROM posts ORDER BY message_id")
    assert flags == [(1, 1), (2, 0)]
