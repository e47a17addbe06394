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
    connected,
    flood,
    settings_for,
)
from pg import archive_both  # noqa: F401  (these tests run on SQLite and PostgreSQL)
from telethon import functions, types

from archiver.channels import parse_ref
from archiver.config import Backfill, ChannelConfig
from archiver.errors import SourceError
from archiver.sources import telethon as tg_source
from archiver.sources.telethon import sync_telethon_channel
from archiver.store.archive import Archive
from archiver.store.channels import get_channel
from archiver.store.following import unreadable_counts
from archiver.sync import SyncOptions, sync_all

CID = -1001811111111
History = functions.messages.GetHistoryRequest
Resolve = functions.contacts.ResolveUsernameRequest
GetFull = functions.channels.GetFullChannelRequest


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
    """Options on Telegram's clock (the sleeper moves it) when a client is given."""
    sleeper = kw.setdefault("sleeper", Sleeper(client))
    if sleeper.clock is not None:
        kw.setdefault("now", sleeper.clock.now)
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
    client = await connected(tg)
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
    # the newest id (where following starts), then 100 + 100 + 50 messages, then one empty
    # page that ends the read
    assert tg.count(History) == 5
    assert tg.count(Resolve) == 1


async def test_backfill_ingests_without_alerts_and_later_posts_alert(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    archive.matcher = MatchAll()
    tg.posts(30)
    client = await connected(tg)
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
    # the fourth history request dies (the first asks for the newest id): two batches of 100
    # are committed
    tg.fail(History, lambda r: ConnectionError("connection reset"), after=3)
    client = await connected(tg)

    [first] = await sync_all(archive, settings, client=client, options=opts(client))

    assert first.status == "error"
    assert "connection to Telegram lost" in (first.error or "")
    assert await archived(archive) == list(range(1, 201))
    row = await get_channel(archive, CID)
    assert row is not None
    assert (row.high_water, row.backfilled, row.last_sync_status) == (200, False, "error")

    [second] = await sync_all(archive, settings, client=await connected(tg), options=opts())
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
        await sync_telethon_channel(archive, await connected(tg), cfg(), settings, options=opts())
    monkeypatch.setattr(tg_source, "set_cursor", real)
    row = await get_channel(archive, CID)
    assert row is not None and row.high_water == 100
    assert await archived(archive) == list(range(1, 151))  # the batch landed, cursor did not

    result = await sync_telethon_channel(
        archive, await connected(tg), cfg(), settings, options=opts()
    )
    assert result.new_posts == 0  # re-read, nothing new
    assert await scalar(archive, "SELECT count(*) FROM versions") == 150


async def test_backfill_count_starts_at_the_nth_newest(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(300)
    c = cfg(Backfill("count", count=50))
    settings = settings_for(tmp_path, c)
    result = await sync_telethon_channel(archive, await connected(tg), c, settings, options=opts())
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
    await sync_telethon_channel(archive, await connected(tg), c, settings, options=opts())
    assert await archived(archive) == list(range(1, 21))


async def test_backfill_zero_posts_archives_only_what_comes_next(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(20)
    c = cfg(Backfill("count", count=0))
    settings = settings_for(tmp_path, c)
    await sync_telethon_channel(archive, await connected(tg), c, settings, options=opts())
    assert await archived(archive) == []
    tg.post("new")
    await sync_telethon_channel(archive, await connected(tg), c, settings, options=opts())
    assert await archived(archive) == [21]


async def test_backfill_age_starts_after_the_cutoff(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(300)  # post n is dated T0 + n minutes
    c = cfg(Backfill("age", age=timedelta(hours=1)))
    settings = settings_for(tmp_path, c)
    now = T0 + timedelta(minutes=300)
    await sync_telethon_channel(
        archive, await connected(tg), c, settings, options=opts(now=lambda: now)
    )
    assert await archived(archive) == list(range(240, 301))


async def test_a_resumed_first_pass_keeps_its_lower_bound(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(400)
    c = cfg(Backfill("count", count=250))
    settings = settings_for(tmp_path, c)
    tg.fail(History, lambda r: ConnectionError("reset"), after=3)  # newest, floor, 100, then
    with pytest.raises(SourceError):
        await sync_telethon_channel(archive, await connected(tg), c, settings, options=opts())
    tg.posts(100)  # the channel moves on while we are down
    result = await sync_telethon_channel(archive, await connected(tg), c, settings, options=opts())
    assert result.backfilled
    assert await archived(archive) == list(range(151, 501))  # 250 then, plus the 100 new


async def test_idle_sync_is_one_history_request_plus_the_window_and_no_resolution(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(120)
    settings = settings_for(tmp_path, cfg())
    first = await connected(tg)
    await sync_all(archive, settings, client=first, options=opts(first))
    client = await connected(tg)  # a new run, a new client: only the archive remembers
    tg.requests.clear()

    [result] = await sync_all(archive, settings, client=client, options=opts(client))

    assert result.status == "ok" and result.new_posts == 0
    assert tg.count(Resolve) == 0
    assert tg.count(GetFull) == 0  # at most once a day per channel
    # one history request finds nothing new; the 120 posts of the recent window (all of
    # them: they are a day old) are read again by id, 100 a request
    assert tg.counts() == {"messages.GetHistory": 1, "channels.GetMessages": 2}
    assert result.reread == 120


async def test_a_numeric_id_without_access_hash_says_what_to_do(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    c = cfg(ref="-1001811111111")
    settings = settings_for(tmp_path, c)
    client = await connected(tg)
    tg.requests.clear()
    [result] = await sync_all(archive, settings, client=client, options=opts())
    assert result.status == "not_found"
    assert "by username or link" in (result.error or "")
    assert tg.requests == []  # the session's cache has no hash for it: nothing to ask


async def test_an_unknown_username_fails_only_its_channel(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(5)
    settings = settings_for(tmp_path, cfg(ref="nosuchchannel"), cfg())
    results = await sync_all(archive, settings, client=await connected(tg), options=opts())
    assert [r.status for r in results] == ["not_found", "ok"]
    assert "no channel with this username" in (results[0].error or "")
    assert results[1].new_posts == 5


async def test_flood_wait_below_the_ceiling_is_waited_out(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(250)
    settings = settings_for(tmp_path, cfg(), flood_wait_ceiling=300)
    client = await connected(tg)
    sleeper = Sleeper(client)
    tg.fail(History, flood(42), after=2)

    result = await sync_telethon_channel(
        archive, client, cfg(), settings, options=opts(sleeper=sleeper)
    )

    assert sleeper.slept == [42]
    assert result.status == "ok"
    assert await archived(archive) == list(range(1, 251))
    assert await scalar(archive, "SELECT count(*) FROM versions") == 250
    assert tg.sent_during_wait == []  # the retry came after Telegram's deadline


async def test_flood_wait_above_the_ceiling_makes_the_method_wait_and_keeps_the_cursor(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    """A flood wait is Telegram's for the account and the method: every channel's history
    waits, none of them sends a request before the deadline, and the cursor stays."""
    tg.posts(250)
    tg.add_channel(1922222222, "other", "Other")
    tg.posts(3, bare_id=1922222222)
    settings = settings_for(tmp_path, cfg(), cfg(ref="other"), flood_wait_ceiling=300)
    client = await connected(tg)
    start = tg.clock.now()
    tg.fail(History, flood(3600), after=3)

    first = await sync_all(archive, settings, client=client, options=opts(client))

    assert [r.status for r in first] == ["flood_wait", "flood_wait"]
    assert first[0].flood_wait_until == start + timedelta(seconds=3600)
    assert "flood_wait_ceiling" not in (first[0].error or "")
    assert "messages.GetHistory" in (first[0].error or "")
    row = await get_channel(archive, CID)
    assert row is not None
    assert (row.last_sync_status, row.high_water, row.backfilled) == ("flood_wait", 200, False)
    assert row.flood_wait_until == start + timedelta(seconds=3600)
    assert tg.sent_during_wait == []  # "other" asked nothing: the ledger knew
    assert tg.count(History) == 4  # newest, 100, 100, the refused one

    # still inside the wait, a new process: skipped without a single request for them
    tg.clock.advance(1800)
    client = await connected(tg)
    tg.requests.clear()
    second = await sync_all(archive, settings, client=client, options=opts(client))
    assert [r.status for r in second] == ["flood_wait", "flood_wait"]
    assert tg.requests == []

    tg.clock.advance(3600)
    third = await sync_all(archive, settings, client=client, options=opts(client))
    assert [r.status for r in third] == ["ok", "ok"]
    assert third[0].backfilled
    assert await archived(archive) == list(range(1, 251))
    row = await get_channel(archive, CID)
    assert row is not None and row.flood_wait_until is None
    assert tg.sent_during_wait == []


async def test_flood_wait_during_resolution_is_a_result_not_a_crash(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, cfg())
    tg.fail(Resolve, flood(86400))
    [result] = await sync_all(archive, settings, client=await connected(tg), options=opts())
    assert result.status == "flood_wait"


async def test_too_many_flood_waits_in_a_row_skip_the_channel(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(10)
    settings = settings_for(tmp_path, cfg())
    client = await connected(tg)
    sleeper = Sleeper(client)
    tg.fail(History, flood(10), times=100)
    result = await sync_telethon_channel(
        archive, client, cfg(), settings, options=opts(sleeper=sleeper, max_flood_waits=3)
    )
    assert sleeper.slept == [10, 10, 10]
    assert result.status == "flood_wait"


async def test_an_unreadable_message_is_kept_raw_only_and_does_not_stop_its_channel(
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

    result = await sync_telethon_channel(
        archive, await connected(tg), cfg(), settings, options=opts()
    )

    assert result.status == "ok"
    assert result.skipped_messages == 1
    assert await archived(archive) == [1, 2, 3, 4, 5, 6, 7, 8]  # nothing lost
    row = await get_channel(archive, CID)
    assert row is not None and row.high_water == 8  # not read again and again
    kept = await archive.fetchone(
        "SELECT p.unreadable, v.text, v.raw FROM posts p JOIN versions v"
        " ON v.id = p.current_version_id WHERE p.channel_id = ? AND p.message_id = 5",
        (CID,),
    )
    assert kept["unreadable"] == "not a channel message (PeerUser)"
    assert kept["text"] == ""  # nothing searchable was made up
    assert "secret text" in kept["raw"]  # the source object kept: provenance
    assert "message 5: unreadable, kept raw-only" in caplog.text
    assert "secret text" not in caplog.text
    assert await unreadable_counts(archive) == {CID: 1}


async def test_title_changes_seen_in_history_are_versioned(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.posts(3)
    settings = settings_for(tmp_path, cfg())
    await sync_telethon_channel(archive, await connected(tg), cfg(), settings, options=opts())
    tg.channel().channel.title = "Renamed channel"
    tg.posts(1)
    await sync_telethon_channel(archive, await connected(tg), cfg(), settings, options=opts())
    row = await get_channel(archive, CID)
    assert row is not None and row.title == "Renamed channel"
    titles = await archive.fetchall(
        "SELECT title FROM channel_versions WHERE channel_id = ? ORDER BY id", (CID,)
    )
    assert [r[0] for r in titles] == ["Test channel", "Renamed channel"]
