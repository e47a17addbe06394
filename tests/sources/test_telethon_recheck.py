"""The recent window: edits and deletions made while nobody listened, fresh counters."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fakes.telethon_client import T0, FakeTelegram, Sleeper, fake_client, flood, settings_for
from telethon import functions

from archiver.channels import parse_ref
from archiver.config import Backfill, ChannelConfig
from archiver.sources.telethon import recheck_channel, sync_telethon_channel
from archiver.store.archive import Archive
from archiver.sync import SyncOptions, recheck_all

CID = -1001811111111
CFG = ChannelConfig(parse_ref("vsaldo"), backfill=Backfill("all"))
GetMessages = functions.channels.GetMessagesRequest


class MatchNew:
    """A rules engine with one rule: posts with the word "новым", for chat 100."""

    def match(self, doc: Any, kind: str) -> dict[int, list[str]]:
        return {100: ["new"]} if "новым" in doc.word_set else {}

    def wants(self, rule_name: str, kind: str) -> bool:
        return True


def opts(**kw: Any) -> SyncOptions:
    kw.setdefault("now", lambda: T0 + timedelta(minutes=150))
    return SyncOptions(page_wait=0, sleeper=Sleeper(), **kw)


@pytest.fixture
async def synced(archive: Archive, tmp_path: Path) -> tuple[FakeTelegram, Any]:
    tg = FakeTelegram()
    tg.add_channel()
    tg.posts(150, text="пост {}")  # post n dated T0 + n minutes
    settings = settings_for(tmp_path, CFG, recent_posts=20, recent_hours=1)
    await sync_telethon_channel(archive, fake_client(tg), CFG, settings, options=opts())
    return tg, settings


async def post_row(archive: Archive, message_id: int) -> Any:
    return await archive.fetchone(
        "SELECT * FROM posts WHERE channel_id = ? AND message_id = ?", (CID, message_id)
    )


async def test_recheck_finds_edits_deletions_and_counters(
    archive: Archive, synced: tuple[FakeTelegram, Any]
) -> None:
    tg, settings = synced
    tg.edit(145, "пост 145, исправленный")
    tg.delete(140, 148)
    tg.edit(150, "пост 150", views=9000, forwards=12)  # same text: counters only
    tg.delete(10)  # far outside the window: not looked at
    tg.requests.clear()

    result = await recheck_channel(archive, fake_client(tg), CFG, settings, options=opts())

    assert result.status == "ok"
    assert (result.edits, result.deletions) == (1, 2)
    edited = await post_row(archive, 145)
    assert (edited["version_count"], edited["edited"]) == (2, 1)
    for gone in (140, 148):
        row = await post_row(archive, gone)
        assert row["deleted_how"] == "recheck"
    assert (await post_row(archive, 10))["deleted_at"] is None
    counters = await post_row(archive, 150)
    assert (counters["views"], counters["forwards"], counters["version_count"]) == (9000, 12, 1)
    # the window: the newest 20 posts (131..150) or the last hour (90..150): 61 ids, one
    # request per 100
    assert tg.count(GetMessages) == 1
    [req] = [r for r in tg.requests if isinstance(r, GetMessages)]
    assert [m.id for m in req.id] == list(range(90, 151))


async def test_recheck_alerts_on_edits_and_deletions_of_a_backfilled_channel(
    archive: Archive, synced: tuple[FakeTelegram, Any]
) -> None:
    tg, settings = synced
    archive.matcher = MatchNew()
    tg.edit(149, "пост 149 с новым текстом")
    await recheck_channel(archive, fake_client(tg), CFG, settings, options=opts())
    kinds = await archive.fetchall("SELECT kind FROM alerts ORDER BY id")
    assert [r[0] for r in kinds] == ["edited"]

    tg.delete(149)  # the alerted post is deleted: its recipient hears of it
    await recheck_channel(archive, fake_client(tg), CFG, settings, options=opts())
    kinds = await archive.fetchall("SELECT kind FROM alerts ORDER BY id")
    assert [r[0] for r in kinds] == ["edited", "deleted"]


async def test_recheck_refreshes_the_channel_description_and_subscribers(
    archive: Archive, synced: tuple[FakeTelegram, Any]
) -> None:
    tg, settings = synced
    tg.channel().about = "New description"
    tg.channel().subscribers = 2500
    await recheck_channel(archive, fake_client(tg), CFG, settings, options=opts())
    rows = await archive.fetchall(
        "SELECT description, subscribers FROM channel_versions WHERE channel_id = ? ORDER BY id",
        (CID,),
    )
    assert [tuple(r) for r in rows][-1] == ("New description", 2500)


async def test_recheck_pages_a_large_window_by_100_ids(
    archive: Archive, synced: tuple[FakeTelegram, Any], tmp_path: Path
) -> None:
    tg, _ = synced
    settings = settings_for(tmp_path, CFG, recent_posts=130, recent_hours=1)
    tg.requests.clear()
    await recheck_channel(archive, fake_client(tg), CFG, settings, options=opts())
    assert tg.count(GetMessages) == 2


async def test_a_flood_wait_in_the_recheck_is_waited_out(
    archive: Archive, synced: tuple[FakeTelegram, Any]
) -> None:
    tg, settings = synced
    tg.delete(150)
    client = fake_client(tg)
    sleeper = Sleeper(client)
    tg.fail(GetMessages, flood(5))
    options = SyncOptions(page_wait=0, sleeper=sleeper, now=lambda: T0 + timedelta(minutes=150))
    result = await recheck_channel(archive, client, CFG, settings, options=options)
    assert sleeper.slept == [5]
    assert result.deletions == 1


async def test_recheck_all_covers_every_telethon_channel(
    archive: Archive, synced: tuple[FakeTelegram, Any]
) -> None:
    tg, settings = synced
    tg.delete(150)
    [result] = await recheck_all(archive, settings, client=fake_client(tg), options=opts())
    assert (result.channel, result.status, result.deletions) == ("vsaldo", "ok", 1)
