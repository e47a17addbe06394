"""Sync of Telethon channels against a fake Telegram behind a real client: backfill with
paging, resume after a crash, backfill limits, flood waits, resolution cached, poison."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fakes.telethon_client import (
    T0,
    FakeTelegram,
    Sleeper,
    fake_client,
    flood,
    settings_for,
)
from telethon import functions, types

from archiver.channels import parse_ref
from archiver.config import Backfill, ChannelConfig
from archiver.errors import SourceError
from archiver.sources import telethon as tg_source
from archiver.sources.telethon import sync_telethon_channel
from archiver.store.archive import Archive
from archiver.store.channels import get_channel
from archiver.sync import SyncOptions, sync_all

CID = -1001811111111
History = functions.messages.GetHistoryRequest
Resolve = functions.contacts.ResolveUsernameRequest


class MatchAll:
    """A rules engine that wants every post, for chat 100."""

    def match(self, doc: Any, kind: str) -> dict[int, list[str]]:
        return {100: ["all"]}

    def wants(self, rule_name: str, kind: str) -> bool:
        return True


@pytest.fixture
def tg() -> FakeTelegram:
    t = FakeTelegram()
    t.add_channel(about="Official", subscribers=5000)
    return t


def opts(client: Any = None, **kw: Any) -> SyncOptions:
    kw.setdefault("sleeper", Sleeper(client))
    return SyncOptions(page_wait=0, **kw)


ALL = Backfill("all")


def cfg(backfill: Backfill = ALL, ref: str = "vsaldo") -> ChannelConfig:
    return ChannelConfig(parse_ref(ref), backfill=backfill)


async def archived(archive: Archive, channel_id: int = CID) -> list[int]:
    rows = await archive.fetchall(
        "SELECT message_id FROM posts WHERE channel_id = ? ORDER BY message_id", (channel_id,)
    )
    return [r[0] for r in rows]


async def scalar(archive: Archive, sql: str, *params: Any) -> Any:
    row = await archive.fetchone(sql, params)
    assert row is not None
    return row[0]


async def test_first_sync_backfills_everything_in_pages(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(250)
    client = fake_client(tg)
    settings = settings_for(tmp_path, cfg())

    result = await sync_telethon_channel(archive, client, cfg(), settings, options=opts(client))

    assert result.status == "ok"
    assert result.new_posts == 250
    assert result.backfilled
    assert await archived(archive) == list(range(1, 251))
    row = await get_channel(archive, CID)
    assert row is not None
    assert (row.high_water, row.backfilled, row.last_sync_status) == (250, True, "ok")
    assert (row.title, row.description, row.subscribers) == ("Test channel", "Official", 5000)
    assert row.access_hash == tg.channel().channel.access_hash
    # 100 + 100 + 50 messages, then one empty page that ends the read
    assert tg.count(History) == 4
    assert tg.count(Resolve) == 1


async def test_backfill_ingests_without_alerts_and_later_posts_alert(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    archive.matcher = MatchAll()
    tg.posts(30)
    client = fake_client(tg)
    settings = settings_for(tmp_path, cfg())
    await sync_telethon_channel(archive, client, cfg(), settings, options=opts(client))
    assert await scalar(archive, "SELECT count(*) FROM alerts") == 0

    tg.post("Тревога в Херсоне")
    await sync_telethon_channel(archive, client, cfg(), settings, options=opts(client))
    assert await scalar(archive, "SELECT count(*) FROM alerts") == 1


async def test_a_crash_mid_backfill_resumes_with_no_duplicates_and_no_holes(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(450)
    settings = settings_for(tmp_path, cfg())
    # the third history request dies: two batches of 100 are committed
    tg.fail(History, lambda r: ConnectionError("connection reset"), after=2)
    client = fake_client(tg)

    [first] = await sync_all(archive, settings, client=client, options=opts(client))

    assert first.status == "error"
    assert "connection to Telegram lost" in (first.error or "")
    assert await archived(archive) == list(range(1, 201))
    row = await get_channel(archive, CID)
    assert row is not None
    assert (row.high_water, row.backfilled, row.last_sync_status) == (200, False, "error")

    [second] = await sync_all(archive, settings, client=fake_client(tg), options=opts())
    assert second.status == "ok"
    assert second.new_posts == 250
    assert await archived(archive) == list(range(1, 451))
    assert await scalar(archive, "SELECT count(*) FROM versions") == 450
    assert await scalar(archive, "SELECT count(*) FROM posts") == 450


async def test_a_crash_inside_a_batch_commits_nothing_of_it(
    archive: Archive, tg: FakeTelegram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the batch's ingest but before the cursor moved: the batch is read
    again and nothing is duplicated."""
    tg.posts(150)
    settings = settings_for(tmp_path, cfg())
    real = tg_source.set_cursor
    calls = 0

    async def failing_set_cursor(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        if kwargs.get("high_water") is not None:
            calls += 1
            if calls == 2:
                raise OSError("disk went away")
        await real(*args, **kwargs)

    monkeypatch.setattr(tg_source, "set_cursor", failing_set_cursor)
    with pytest.raises(SourceError):
        await sync_telethon_channel(archive, fake_client(tg), cfg(), settings, options=opts())
    monkeypatch.setattr(tg_source, "set_cursor", real)
    row = await get_channel(archive, CID)
    assert row is not None and row.high_water == 100
    assert await archived(archive) == list(range(1, 151))  # the batch landed, cursor did not

    result = await sync_telethon_channel(archive, fake_client(tg), cfg(), settings, options=opts())
    assert result.new_posts == 0  # re-read, nothing new
    assert await scalar(archive, "SELECT count(*) FROM versions") == 150


async def test_backfill_count_starts_at_the_nth_newest(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(300)
    c = cfg(Backfill("count", count=50))
    settings = settings_for(tmp_path, c)
    result = await sync_telethon_channel(archive, fake_client(tg), c, settings, options=opts())
    assert result.new_posts == 50
    assert await archived(archive) == list(range(251, 301))
    row = await get_channel(archive, CID)
    assert row is not None
    assert (row.backfill_low, row.backfilled) == (250, True)


async def test_backfill_count_larger_than_the_channel_reads_all(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(20)
    c = cfg(Backfill("count", count=500))
    settings = settings_for(tmp_path, c)
    await sync_telethon_channel(archive, fake_client(tg), c, settings, options=opts())
    assert await archived(archive) == list(range(1, 21))


async def test_backfill_zero_posts_archives_only_what_comes_next(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(20)
    c = cfg(Backfill("count", count=0))
    settings = settings_for(tmp_path, c)
    await sync_telethon_channel(archive, fake_client(tg), c, settings, options=opts())
    assert await archived(archive) == []
    tg.post("new")
    await sync_telethon_channel(archive, fake_client(tg), c, settings, options=opts())
    assert await archived(archive) == [21]


async def test_backfill_age_starts_after_the_cutoff(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(300)  # post n is dated T0 + n minutes
    c = cfg(Backfill("age", age=timedelta(hours=1)))
    settings = settings_for(tmp_path, c)
    now = T0 + timedelta(minutes=300)
    await sync_telethon_channel(
        archive, fake_client(tg), c, settings, options=opts(now=lambda: now)
    )
    assert await archived(archive) == list(range(240, 301))


async def test_a_resumed_first_pass_keeps_its_lower_bound(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(400)
    c = cfg(Backfill("count", count=250))
    settings = settings_for(tmp_path, c)
    tg.fail(History, lambda r: ConnectionError("reset"), after=1)
    with pytest.raises(SourceError):
        await sync_telethon_channel(archive, fake_client(tg), c, settings, options=opts())
    tg.posts(100)  # the channel moves on while we are down
    result = await sync_telethon_channel(archive, fake_client(tg), c, settings, options=opts())
    assert result.backfilled
    assert await archived(archive) == list(range(151, 501))  # 250 then, plus the 100 new


async def test_idle_sync_is_one_history_request_and_no_resolution(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(120)
    settings = settings_for(tmp_path, cfg())
    await sync_all(archive, settings, client=fake_client(tg), options=opts())
    tg.requests.clear()

    # a new run, a new client: only the archive remembers the channel
    [result] = await sync_all(archive, settings, client=fake_client(tg), options=opts())

    assert result.status == "ok" and result.new_posts == 0
    assert tg.count(Resolve) == 0
    assert tg.count(History) == 1
    assert len(tg.requests) == 1


async def test_a_numeric_id_without_access_hash_says_what_to_do(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    c = cfg(ref="-1001811111111")
    settings = settings_for(tmp_path, c)
    [result] = await sync_all(archive, settings, client=fake_client(tg), options=opts())
    assert result.status == "error"
    assert "by username or link" in (result.error or "")


async def test_an_unknown_username_fails_only_its_channel(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(5)
    settings = settings_for(tmp_path, cfg(ref="nosuchchannel"), cfg())
    results = await sync_all(archive, settings, client=fake_client(tg), options=opts())
    assert [r.status for r in results] == ["error", "ok"]
    assert "no such username" in (results[0].error or "")
    assert results[1].new_posts == 5


async def test_flood_wait_below_the_ceiling_is_waited_out(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(250)
    settings = settings_for(tmp_path, cfg(), flood_wait_ceiling=300)
    client = fake_client(tg)
    sleeper = Sleeper(client)
    tg.fail(History, flood(42), after=1)

    result = await sync_telethon_channel(
        archive, client, cfg(), settings, options=opts(sleeper=sleeper)
    )

    assert sleeper.slept == [42]
    assert result.status == "ok"
    assert await archived(archive) == list(range(1, 251))
    assert await scalar(archive, "SELECT count(*) FROM versions") == 250


async def test_flood_wait_above_the_ceiling_skips_the_channel_and_keeps_the_cursor(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(250)
    tg.add_channel(1922222222, "other", "Other")
    tg.posts(3, bare_id=1922222222)
    settings = settings_for(tmp_path, cfg(), cfg(ref="other"), flood_wait_ceiling=300)
    client = fake_client(tg)
    sleeper = Sleeper(client)
    now = T0
    tg.fail(History, flood(3600), after=2)

    first = await sync_all(
        archive, settings, client=client, options=opts(sleeper=sleeper, now=lambda: now)
    )

    assert sleeper.slept == []
    assert [r.status for r in first] == ["flood_wait", "ok"]  # the other channel went on
    assert first[0].flood_wait_until == T0 + timedelta(seconds=3600)
    assert "flood_wait_ceiling" in (first[0].error or "")
    row = await get_channel(archive, CID)
    assert row is not None
    assert (row.last_sync_status, row.high_water, row.backfilled) == ("flood_wait", 200, False)
    assert row.flood_wait_until == T0 + timedelta(seconds=3600)

    # still inside the wait: skipped without a single request to Telegram for it
    tg.requests.clear()
    now = T0 + timedelta(minutes=30)
    second = await sync_all(
        archive, settings, client=fake_client(tg), channels=[cfg()], options=opts(now=lambda: now)
    )
    assert second[0].status == "skipped"
    assert tg.requests == []

    now = T0 + timedelta(hours=2)
    third = await sync_all(
        archive, settings, client=fake_client(tg), channels=[cfg()], options=opts(now=lambda: now)
    )
    assert third[0].status == "ok" and third[0].backfilled
    assert await archived(archive) == list(range(1, 251))
    row = await get_channel(archive, CID)
    assert row is not None and row.flood_wait_until is None


async def test_flood_wait_during_resolution_is_a_result_not_a_crash(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, cfg())
    tg.fail(Resolve, flood(86400))
    [result] = await sync_all(archive, settings, client=fake_client(tg), options=opts())
    assert result.status == "flood_wait"


async def test_too_many_flood_waits_in_a_row_skip_the_channel(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(10)
    settings = settings_for(tmp_path, cfg())
    client = fake_client(tg)
    sleeper = Sleeper(client)
    tg.fail(History, flood(10), times=100)
    result = await sync_telethon_channel(
        archive, client, cfg(), settings, options=opts(sleeper=sleeper, max_flood_waits=3)
    )
    assert sleeper.slept == [10, 10, 10]
    assert result.status == "flood_wait"


async def test_a_poison_message_is_skipped_and_does_not_stop_its_channel(
    archive: Archive, tg: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tg.posts(4)
    fc = tg.channel()
    # a message of an unexpected shape inside the channel's history
    bad = types.Message(id=5, peer_id=types.PeerUser(42), date=T0, message="secret text")
    fc.messages[5] = bad
    fc.ids.append(5)
    fc.next_id = 6
    tg.posts(3)
    settings = settings_for(tmp_path, cfg())

    result = await sync_telethon_channel(archive, fake_client(tg), cfg(), settings, options=opts())

    assert result.status == "ok"
    assert result.skipped_messages == 1
    assert await archived(archive) == [1, 2, 3, 4, 6, 7, 8]
    row = await get_channel(archive, CID)
    assert row is not None and row.high_water == 8  # not read again and again
    assert "message 5: skipped" in caplog.text
    assert "secret text" not in caplog.text


async def test_title_changes_seen_in_history_are_versioned(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(3)
    settings = settings_for(tmp_path, cfg())
    await sync_telethon_channel(archive, fake_client(tg), cfg(), settings, options=opts())
    tg.channel().channel.title = "Renamed channel"
    tg.posts(1)
    await sync_telethon_channel(archive, fake_client(tg), cfg(), settings, options=opts())
    row = await get_channel(archive, CID)
    assert row is not None and row.title == "Renamed channel"
    titles = await archive.fetchall(
        "SELECT title FROM channel_versions WHERE channel_id = ? ORDER BY id", (CID,)
    )
    assert [r[0] for r in titles] == ["Test channel", "Renamed channel"]
