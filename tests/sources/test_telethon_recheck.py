"""Re-reading archived posts by id: the recent window ([recheck] recent_days) on every pass,
older posts on the rotation, deletions confirmed by channels.getMessages."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fakes.telethon_client import (
    T0,
    FakeTelegram,
    Sleeper,
    connected,
    flood,
    settings_for,
)
from telethon import functions

from archiver.channels import parse_ref
from archiver.config import Backfill, ChannelConfig
from archiver.sources.telethon import recheck_channel, sync_telethon_channel
from archiver.store.archive import Archive
from archiver.sync import SyncOptions, recheck_all

CID = -1001811111111
CFG = ChannelConfig(parse_ref("vsaldo"), backfill=Backfill("all"))
GetMessages = functions.channels.GetMessagesRequest
NOW = T0 + timedelta(days=1, minutes=90)  # with recent_days = 1: posts 90..150 are recent


class MatchNew:
    """A rules engine with one rule: posts with the word "новым", for chat 100."""

    def match(self, doc: Any, kind: str) -> dict[int, list[str]]:
        return {100: ["new"]} if "новым" in doc.word_set else {}

    def wants(self, rule_name: str, kind: str) -> bool:
        return True


def opts(tg: FakeTelegram, **kw: Any) -> SyncOptions:
    kw.setdefault("now", tg.clock.now)
    return SyncOptions(page_wait=0, sleeper=Sleeper(clock=tg.clock), **kw)


@pytest.fixture
async def synced(archive: Archive, tmp_path: Path) -> tuple[FakeTelegram, Any]:
    tg = FakeTelegram()
    tg.clock.at = NOW
    tg.add_channel()
    tg.posts(150, text="пост {}")  # post n dated T0 + n minutes
    settings = settings_for(tmp_path, CFG, recheck={"recent_days": 1, "full_recheck_days": 7})
    await sync_telethon_channel(archive, await connected(tg), CFG, settings, options=opts(tg))
    return tg, settings


async def post_row(archive: Archive, message_id: int) -> Any:
    return await archive.fetchone(
        "SELECT * FROM posts WHERE channel_id = ? AND message_id = ?", (CID, message_id)
    )


async def test_recheck_finds_edits_deletions_and_counters_in_the_recent_window(
    archive: Archive, synced: tuple[FakeTelegram, Any]
) -> None:
    tg, settings = synced
    tg.edit(145, "пост 145, исправленный")
    tg.delete(140, 148)
    tg.edit(150, "пост 150", views=9000, forwards=12)  # same text: counters only
    tg.delete(10)  # older than the window, and not the rotation's turn yet
    client = await connected(tg)
    tg.requests.clear()

    result = await recheck_channel(archive, client, CFG, settings, options=opts(tg))

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
    # the window (posts of the last day: 90..150) in one request, then the rotation's share
    # of the older ones, from the newest down
    reqs = [[m.id for m in r.id] for r in tg.requests if isinstance(r, GetMessages)]
    assert reqs[0] == list(range(90, 151))
    assert all(max(ids) < 90 for ids in reqs[1:])


async def test_the_rotation_reaches_every_old_post_within_the_period(
    archive: Archive, synced: tuple[FakeTelegram, Any]
) -> None:
    """Old posts are re-read too: an edit or deletion of a post far older than the window is
    found within full_recheck_days, whatever the interval between passes."""
    tg, settings = synced
    tg.edit(3, "пост 3, исправленный через неделю")
    tg.delete(10)
    client = await connected(tg)
    for _ in range(7 * 4):  # every six hours for a week
        await recheck_channel(archive, client, CFG, settings, options=opts(tg))
        tg.clock.advance(6 * 3600)
    assert (await post_row(archive, 3))["version_count"] == 2
    assert (await post_row(archive, 10))["deleted_how"] == "recheck"


async def test_recheck_alerts_on_edits_and_deletions_of_a_backfilled_channel(
    archive: Archive, synced: tuple[FakeTelegram, Any]
) -> None:
    tg, settings = synced
    archive.matcher = MatchNew()
    tg.edit(149, "пост 149 с новым текстом")
    await recheck_channel(archive, await connected(tg), CFG, settings, options=opts(tg))
    kinds = await archive.fetchall("SELECT kind FROM alerts ORDER BY id")
    assert [r[0] for r in kinds] == ["edited"]

    tg.delete(149)  # the alerted post is deleted: its recipient hears of it
    await recheck_channel(archive, await connected(tg), CFG, settings, options=opts(tg))
    kinds = await archive.fetchall("SELECT kind FROM alerts ORDER BY id")
    assert [r[0] for r in kinds] == ["edited", "deleted"]


async def test_the_description_is_refreshed_at_most_daily(
    archive: Archive, synced: tuple[FakeTelegram, Any]
) -> None:
    tg, settings = synced
    tg.channel().about = "New description"
    tg.channel().subscribers = 2500
    client = await connected(tg)
    tg.requests.clear()
    await recheck_channel(archive, client, CFG, settings, options=opts(tg))
    assert tg.count(functions.channels.GetFullChannelRequest) == 0  # asked at the first sync

    tg.clock.advance(86400)
    await recheck_channel(archive, client, CFG, settings, options=opts(tg))
    assert tg.count(functions.channels.GetFullChannelRequest) == 1
    rows = await archive.fetchall(
        "SELECT description, subscribers FROM channel_versions WHERE channel_id = ? ORDER BY id",
        (CID,),
    )
    assert [tuple(r) for r in rows][-1] == ("New description", 2500)


async def test_recheck_pages_a_large_window_by_100_ids(
    archive: Archive, synced: tuple[FakeTelegram, Any], tmp_path: Path
) -> None:
    tg, _ = synced
    settings = settings_for(tmp_path, CFG, recheck={"recent_days": 2})
    client = await connected(tg)
    tg.requests.clear()
    result = await recheck_channel(archive, client, CFG, settings, options=opts(tg))
    assert tg.count(GetMessages) == 2  # 150 ids
    assert result.reread == 150


async def test_a_flood_wait_in_the_recheck_is_waited_out(
    archive: Archive, synced: tuple[FakeTelegram, Any]
) -> None:
    tg, settings = synced
    tg.delete(150)
    client = await connected(tg)
    sleeper = Sleeper(client)
    tg.fail(GetMessages, flood(5))
    options = SyncOptions(page_wait=0, sleeper=sleeper, now=tg.clock.now)
    result = await recheck_channel(archive, client, CFG, settings, options=options)
    assert sleeper.slept == [5]
    assert result.deletions == 1
    assert tg.sent_during_wait == []


async def test_recheck_all_covers_every_telethon_channel(
    archive: Archive, synced: tuple[FakeTelegram, Any]
) -> None:
    tg, settings = synced
    tg.delete(150)
    [result] = await recheck_all(archive, settings, client=await connected(tg), options=opts(tg))
    assert (result.channel, result.status, result.deletions) == ("vsaldo", "ok", 1)
