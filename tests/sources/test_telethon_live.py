"""The live listener: real Telethon events built from channel updates, joins, catch-ups."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from fakes.telethon_client import (
    Clock,
    FakeTelegram,
    Sleeper,
    connected,
    flood,
    roundtrip,
    settings_for,
)
from pg import archive_both  # noqa: F401  (these tests run on SQLite and PostgreSQL)
from telethon import functions, types

from archiver.channels import parse_ref
from archiver.config import Backfill, ChannelConfig
from archiver.sources.telethon_live import LiveListener, run_live
from archiver.store.archive import Archive
from archiver.store.channels import get_channel
from archiver.sync import SyncOptions, follow_live

CID = -1001811111111
BARE = 1811111111
FOLLOWED = ChannelConfig(parse_ref("vsaldo"), backfill=Backfill("all"), join=True)
POLLED = ChannelConfig(parse_ref("other"), backfill=Backfill("all"), join=False)
Join = functions.channels.JoinChannelRequest
Resolve = functions.contacts.ResolveUsernameRequest


class MatchAll:
    def match(self, doc: Any, kind: str) -> dict[int, list[str]]:
        return {100: ["all"]}

    def wants(self, rule_name: str, kind: str) -> bool:
        return True


CLOCK = Clock()


def opts() -> SyncOptions:
    """Telegram's clock (each test's fake shares :data:`CLOCK`, reset per test)."""
    return SyncOptions(page_wait=0, sleeper=Sleeper(clock=CLOCK), now=CLOCK.now)


@pytest.fixture
def tg() -> FakeTelegram:
    CLOCK.at = Clock().at
    t = FakeTelegram(CLOCK)
    t.add_channel()
    t.add_channel(1922222222, "other", "Other")
    t.posts(5)
    t.posts(2, bare_id=1922222222)
    return t


async def count_posts(archive: Archive, channel_id: int = CID) -> int:
    row = await archive.fetchone("SELECT count(*) FROM posts WHERE channel_id = ?", (channel_id,))
    assert row is not None
    return int(row[0])


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Let the background work run until ``check`` holds (a bounded wait, not a timing)."""
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


def update(tg: FakeTelegram, upd: Any) -> Any:
    """An update as the server sends it, with the entities Telethon attaches."""
    u = roundtrip(upd)
    u._entities = {fc.marked_id: fc.channel for fc in tg.channels.values()}
    return u


async def started(archive: Archive, tg: FakeTelegram, tmp_path: Path) -> tuple[Any, Any]:
    client = await connected(tg, receive_updates=True)
    await client.connect()
    settings = settings_for(tmp_path, FOLLOWED, POLLED)
    listener = LiveListener(archive, client, settings, options=opts())
    await listener.start()
    return client, listener


async def test_start_joins_once_registers_ids_and_catches_up(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    _, listener = await started(archive, tg, tmp_path)
    assert list(listener.channels) == [CID]  # join = false channels are only polled
    assert tg.count(Join) == 1
    assert await count_posts(archive) == 5  # caught up before going live
    row = await get_channel(archive, CID)
    assert row is not None and row.backfilled
    listener.stop()

    tg.requests.clear()
    again = LiveListener(archive, await connected(tg), listener.settings, options=opts())
    await again.start()
    assert tg.count(Join) == 0  # joined once, ever
    assert tg.count(Resolve) == 0
    again.stop()


async def test_a_channel_that_cannot_be_resolved_at_start_is_followed_later(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.fail(Resolve, flood(3600))  # above the ceiling: no wait, the channel waits its turn
    client = await connected(tg, receive_updates=True)
    settings = settings_for(tmp_path, FOLLOWED)
    listener = LiveListener(archive, client, settings, options=opts())
    await listener.start()
    assert listener.channels == {}
    assert [c.ref.username for c in listener.pending] == ["vsaldo"]
    assert client.list_event_handlers() == []

    await listener.catch_up()  # within the hour: nothing is sent
    assert tg.sent_during_wait == [] and listener.channels == {}

    CLOCK.advance(3600)  # the hour has passed
    client._flood_waited_requests.clear()
    await listener.catch_up()  # the next catch-up tries again
    assert list(listener.channels) == [CID]
    assert listener.pending == []
    assert len(client.list_event_handlers()) == 3
    assert await count_posts(archive) == 5
    listener.stop()
    assert client.list_event_handlers() == []


async def test_new_edited_and_deleted_posts_arrive_through_the_ingest_path(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    archive.matcher = MatchAll()
    client, listener = await started(archive, tg, tmp_path)
    tg.requests.clear()

    new = tg.post("Срочно: перекрыт мост")
    await client._dispatch_update(
        update(tg, types.UpdateNewChannelMessage(message=new, pts=10, pts_count=1))
    )
    row = await archive.fetchone("SELECT * FROM posts WHERE message_id = 6")
    assert row is not None and row["source"] == "telethon"

    edited = tg.edit(6, "Срочно: мост открыт")
    await client._dispatch_update(
        update(tg, types.UpdateEditChannelMessage(message=edited, pts=11, pts_count=1))
    )
    row = await archive.fetchone("SELECT * FROM posts WHERE message_id = 6")
    assert row is not None and row["version_count"] == 2

    await client._dispatch_update(
        update(
            tg,
            types.UpdateDeleteChannelMessages(
                channel_id=BARE, messages=[6, 2], pts=12, pts_count=2
            ),
        )
    )
    deleted = await archive.fetchall(
        "SELECT message_id, deleted_how FROM posts WHERE deleted_at IS NOT NULL ORDER BY message_id"
    )
    assert [tuple(r) for r in deleted] == [(2, "live"), (6, "live")]

    kinds = await archive.fetchall("SELECT kind FROM alerts ORDER BY id")
    assert [r[0] for r in kinds][:1] == ["new"]  # the channel is backfilled: live posts alert
    assert "deleted" in {r[0] for r in kinds}
    # numeric ids: handling the events asked Telegram for nothing but who we are
    assert tg.count(Resolve) == 0
    assert {type(r).__name__ for r in tg.requests} <= {"GetUsersRequest"}

    # live posts do not move the cursor: the next sync proves there is no hole below them
    row = await get_channel(archive, CID)
    assert row is not None and row.high_water == 5
    listener.stop()


async def test_events_of_other_chats_are_ignored(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    client, listener = await started(archive, tg, tmp_path)
    other = tg.post("elsewhere", bare_id=1922222222)
    await client._dispatch_update(
        update(tg, types.UpdateNewChannelMessage(message=other, pts=10, pts_count=1))
    )
    await client._dispatch_update(
        update(
            tg,
            types.UpdateDeleteChannelMessages(
                channel_id=1922222222, messages=[1], pts=11, pts_count=1
            ),
        )
    )
    assert await count_posts(archive, -1001922222222) == 0
    listener.stop()


async def test_an_unreadable_live_message_is_kept_raw_only(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    _, listener = await started(archive, tg, tmp_path)
    # a message of the channel that does not convert (no date): kept, not skipped
    bad = types.Message(id=99, peer_id=types.PeerChannel(BARE), date=None, message="x")
    assert await listener.ingest_messages([bad]) == 1
    assert await count_posts(archive) == 6
    row = await archive.fetchone(
        "SELECT unreadable FROM posts WHERE channel_id = ? AND message_id = 99", (CID,)
    )
    assert row is not None and row["unreadable"] == "no date"
    # an event with no channel at all cannot be placed: ignored
    assert await listener.ingest_messages([types.MessageEmpty(id=98, peer_id=None)]) == 0
    listener.stop()


async def test_new_posts_alert_during_a_long_first_backfill(
    archive: Archive, tmp_path: Path
) -> None:
    """Only history older than the start of following is backfill: a live post, and a post
    the forward read finds above the newest id at the start, alert while the backfill of
    older posts is still going on."""
    tg = FakeTelegram(CLOCK)
    tg.add_channel()
    tg.posts(450)
    archive.matcher = MatchAll()
    settings = settings_for(tmp_path, FOLLOWED)
    client = await connected(tg, receive_updates=True)
    tg.fail(functions.messages.GetHistoryRequest, flood(3600), after=3)  # a long backfill
    listener = LiveListener(archive, client, settings, options=opts())
    await listener.start()
    row = await get_channel(archive, CID)
    assert row is not None and not row.backfilled  # 450 posts: stopped by the wait

    live = tg.post("live, during the backfill")  # 451
    await client._dispatch_update(
        update(tg, types.UpdateNewChannelMessage(message=live, pts=1000, pts_count=1))
    )
    tg.post("missed by the live stream", push=False)  # 452: the forward read finds it
    CLOCK.advance(3600)  # the wait is over (Telethon's own memory of it is in real time)
    client._flood_waited_requests.clear()
    await listener.catch_up()
    row = await get_channel(archive, CID)
    assert row is not None and row.backfilled

    alerted = await archive.fetchall(
        "SELECT p.message_id FROM alerts a JOIN posts p ON p.id = a.post_id"
        " WHERE a.kind = 'new' ORDER BY p.message_id"
    )
    assert [r[0] for r in alerted] == [451, 452]  # and none of the 450 of the backfill
    listener.stop()


async def test_a_channel_is_live_while_another_one_backfills(
    archive: Archive, tmp_path: Path
) -> None:
    """A channel is followed live from the moment it is caught up, not after the (hours
    long) first backfill of every other channel: a post in it during another channel's
    backfill alerts at once."""
    tg = FakeTelegram(CLOCK)
    tg.add_channel()
    tg.add_channel(1922222222, "other", "Other")
    tg.posts(5)
    tg.posts(450, bare_id=1922222222)  # five pages of backfill
    archive.matcher = MatchAll()
    big = ChannelConfig(parse_ref("other"), backfill=Backfill("all"), join=True)
    settings = settings_for(tmp_path, FOLLOWED, big)
    client = await connected(tg, receive_updates=True)
    # vsaldo: its newest id, then its one page; other: its newest id, then pages 1, 2, ...
    tg.during(functions.messages.GetHistoryRequest, lambda: tg.post("live, meanwhile"), after=4)
    listener = LiveListener(archive, client, settings, options=opts())
    await listener.start()

    async def alerted() -> bool:
        row = await archive.fetchone(
            "SELECT count(*) FROM alerts a JOIN posts p ON p.id = a.post_id"
            " WHERE a.kind = 'new' AND p.channel_id = ? AND p.message_id = 6",
            (CID,),
        )
        return row is not None and row[0] == 1

    await until(alerted)
    assert await count_posts(archive, -1001922222222) == 450
    row = await get_channel(archive, CID)
    assert row is not None and row.high_water == 5  # the live event brought it, not a read
    listener.stop()


def test_the_sources_do_not_import_the_orchestrator() -> None:
    """No import circle: the result types live in archiver.sources.result."""
    import subprocess
    import sys

    code = "import sys, archiver.sources.telethon_live\nprint('archiver.sync' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_telethon_reconnecting_by_itself_triggers_a_catch_up(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    client, listener = await started(archive, tg, tmp_path)
    tg.posts(3)  # posted while the connection was down: no update reached us

    await client._handle_auto_reconnect()

    async def caught_up() -> bool:
        return await count_posts(archive) == 8

    await until(caught_up)
    listener.stop()


async def test_run_live_reconnects_and_catches_up_until_stopped(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    client = await connected(tg, receive_updates=True)
    await client.connect()
    settings = settings_for(tmp_path, FOLLOWED)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_live(archive, client, settings, stop, options=opts(), reconnect_delays=(0.0,))
    )

    async def has(n: int) -> bool:
        return await count_posts(archive) == n

    await until(lambda: has(5))
    tg.posts(2)
    client._sender.drop(ConnectionError("connection lost for good"))
    await until(lambda: has(7))
    assert client.is_connected()

    stop.set()
    await task
    assert client.list_event_handlers() == []


async def test_run_live_catches_up_periodically_without_updates(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    client = await connected(tg, receive_updates=True)
    await client.connect()
    settings = settings_for(tmp_path, FOLLOWED)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_live(archive, client, settings, stop, options=opts(), catch_up_seconds=0.01)
    )

    async def has(n: int) -> bool:
        return await count_posts(archive) == n

    await until(lambda: has(5))
    tg.posts(3, push=False)  # Telegram pushed no update for these
    await until(lambda: has(8))
    stop.set()
    await task
    row = await get_channel(archive, CID)
    assert row is not None and row.high_water == 8


async def test_follow_live_with_no_joined_channel_returns(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, POLLED)
    client = await connected(tg)
    tg.requests.clear()
    await follow_live(archive, settings, asyncio.Event(), client=client)
    assert tg.requests == []
