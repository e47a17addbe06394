"""No edit or deletion lost across downtime: every start and reconnect re-reads the recent
window before live events are trusted; a gap Telegram reports triggers the same; the newest
page is reconciled every ~2 minutes; and what catch_up=True with a session file really does."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from fakes.telethon_client import (
    FakeTelegram,
    Sleeper,
    connected,
    factory_for,
    fake_client,
    settings_for,
)
from telethon import events, functions

from archiver.channels import parse_ref
from archiver.config import Backfill, ChannelConfig
from archiver.sources.telethon import connect_client, session_path
from archiver.sources.telethon_live import LiveListener, run_live
from archiver.store.archive import Archive
from archiver.store.channels import get_channel
from archiver.sync import SyncOptions

CID = -1001811111111
FOLLOWED = ChannelConfig(parse_ref("vsaldo"), backfill=Backfill("all"), join=True)
ChannelDiff = functions.updates.GetChannelDifferenceRequest


def opts(tg: FakeTelegram) -> SyncOptions:
    return SyncOptions(page_wait=0, sleeper=Sleeper(clock=tg.clock), now=tg.clock.now)


@pytest.fixture
def tg() -> FakeTelegram:
    t = FakeTelegram()
    t.add_channel()
    t.posts(20)  # a day old: inside the recent window of 7 days
    return t


async def post(archive: Archive, message_id: int) -> Any:
    return await archive.fetchone(
        "SELECT p.*, v.text FROM posts p JOIN versions v ON v.id = p.current_version_id"
        " WHERE p.channel_id = ? AND p.message_id = ?",
        (CID, message_id),
    )


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Let the background work run until ``check`` holds (bounded, not a timing)."""
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


async def test_edits_and_deletions_made_while_down_are_found_at_start(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, FOLLOWED)
    client = await connected(tg, receive_updates=True)
    listener = LiveListener(archive, client, settings, options=opts(tg))
    await listener.start()
    listener.stop()
    await client.disconnect()

    # telewatch is down for an hour
    tg.clock.advance(3600)
    tg.edit(7, "post 7, corrected while nobody watched")
    tg.delete(9)
    tg.post("new while down")

    client = await connected(tg, receive_updates=True)
    listener = LiveListener(archive, client, settings, options=opts(tg))
    await listener.start()
    assert (await post(archive, 7))["text"] == "post 7, corrected while nobody watched"
    assert (await post(archive, 9))["deleted_how"] == "recheck"
    assert (await post(archive, 21))["text"] == "new while down"
    listener.stop()
    await client.disconnect()


async def test_a_reconnect_by_telethon_re_reads_the_window(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, FOLLOWED)
    client = await connected(tg, receive_updates=True)
    listener = LiveListener(archive, client, settings, options=opts(tg))
    await listener.start()
    with client._sender.outage():  # updates sent meanwhile never arrive
        tg.edit(5, "edited during the outage")
        tg.delete(6)

    async def found() -> bool:
        row = await post(archive, 6)
        return bool(row["deleted_at"]) and (await post(archive, 5))["text"].startswith("edited")

    await until(found)
    listener.stop()
    await client.disconnect()


async def test_a_gap_telegram_reports_triggers_the_re_read(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    """channelDifferenceTooLong: Telethon resets the channel's state and tells nobody; the
    client's gap hook makes the listener re-read the channel at once."""
    settings = settings_for(tmp_path, FOLLOWED)
    client = await connected(tg, receive_updates=True)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_live(archive, client, settings, stop, options=opts(tg), catch_up_seconds=3600)
    )

    async def following() -> bool:
        return len(client.list_event_handlers()) == 3

    await until(following)
    tg.post("seen live")

    async def live() -> bool:
        return await post(archive, 21) is not None

    await until(live)
    tg.edit(3, "edited inside a long gap", push=False)
    tg.posts(150, push=False)  # more than a channel difference holds
    tg.post("the update that shows the gap")

    async def recovered() -> bool:
        row = await post(archive, 3)
        return row["text"] == "edited inside a long gap" and await post(archive, 150) is not None

    await until(recovered)
    assert tg.count(ChannelDiff) >= 1
    stop.set()
    await task


async def test_reconciliation_catches_updates_that_never_came(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    """No gap to see (Telegram simply did not push): the newest page, read every
    reconcile period, brings the edit, the deletion and the new post."""
    settings = settings_for(tmp_path, FOLLOWED)
    client = await connected(tg, receive_updates=True)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_live(archive, client, settings, stop, options=opts(tg), catch_up_seconds=0.02)
    )

    async def following() -> bool:  # live, and caught up
        return len(client.list_event_handlers()) == 3 and await post(archive, 20) is not None

    await until(following)
    tg.edit(19, "edited, no update sent", push=False)
    tg.delete(18, push=False)
    tg.post("posted, no update sent", push=False)

    async def reconciled() -> bool:
        edited, gone, new = (
            await post(archive, 19),
            await post(archive, 18),
            await post(archive, 21),
        )
        return edited["text"].startswith("edited") and bool(gone["deleted_at"]) and bool(new)

    await until(reconciled)
    assert (await post(archive, 18))["deleted_how"] == "recheck"
    stop.set()
    await task


async def test_what_catch_up_with_a_session_file_really_does(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    """Telethon's catch_up=True (a SQLite session keeps the update state) brings back the new
    posts made while down as events, and drops the edit; the listener's gap hook sees the
    dropped edit and the re-read at start finds it anyway."""
    tg.join()
    path = tg.session_file(tmp_path / "tw.session")
    first = fake_client(tg, str(path), receive_updates=True, catch_up=True)
    await first.connect()
    await first.get_me()
    tg.post("seen live: the channel's pts is now in the session's update state")
    await asyncio.sleep(0.05)
    await first.disconnect()

    tg.clock.advance(3600)
    tg.post("new while down", push=False)
    tg.edit(2, "edited while down", push=False)

    second = fake_client(tg, str(path), receive_updates=True, catch_up=True)
    seen: list[str] = []
    gaps: list[tuple[int | None, str]] = []
    second.gap_hooks.append(lambda channel, why: gaps.append((channel, why)))

    async def on_new(event: Any) -> None:
        seen.append(f"new {event.message.id}")

    async def on_edit(event: Any) -> None:
        seen.append(f"edit {event.message.id}")

    second.add_event_handler(on_edit, events.MessageEdited(chats=[CID]))
    second.add_event_handler(on_new, events.NewMessage(chats=[CID]))
    await second.connect()

    async def caught_up() -> bool:
        return "new 22" in seen

    await until(caught_up)
    await asyncio.sleep(0.05)
    assert seen == ["new 22"]  # the new post came back as an event; the edit did not
    assert gaps == [(CID, "dropped")]
    await second.disconnect()


async def test_catch_up_at_connect_comes_before_any_handler_in_run(
    archive: Archive, tg: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What catch_up=True does in telewatch's own order (connect, then the listener): Telethon
    catches up as it connects (``client/updates.py``: ``_update_loop`` calls ``catch_up()``,
    whose docs say to register the handlers first), so the post made while down reaches no
    handler; the forward read from the high-water mark is what archives it, and alerts it."""
    settings = settings_for(tmp_path, FOLLOWED)
    path = tg.session_file(session_path(settings))
    first = await connect_client(settings, receive_updates=True, factory=factory_for(tg),
                                 archive=archive, now=tg.clock.now)  # fmt: skip
    listener = LiveListener(archive, first, settings, options=opts(tg))
    await listener.start()
    tg.post("seen live")  # 21: the channel's pts is now in Telethon's update state

    async def live() -> bool:
        return await post(archive, 21) is not None

    await until(live)
    listener.stop()
    await first.disconnect()  # Telethon saves the update state into the session file
    assert path.exists()

    tg.clock.advance(3600)
    tg.post("new while down", push=False)  # 22
    tg.requests.clear()
    caplog.set_level(logging.INFO)
    second = await connect_client(settings, receive_updates=True, factory=factory_for(tg),
                                  archive=archive, now=tg.clock.now)  # fmt: skip
    listener = LiveListener(archive, second, settings, options=opts(tg))
    await listener.start()
    await asyncio.sleep(0.05)
    assert tg.count(ChannelDiff) == 1  # Telethon's catch-up asked for the channel's news
    assert "message 22" not in caplog.text  # ...and gave it to no handler: none was there
    row = await get_channel(archive, CID)
    assert row is not None and row.high_water == 22  # the forward read archived it
    listener.stop()
    await second.disconnect()


async def test_reconnects_in_a_row_re_read_the_window_at_most_twice(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    """A flapping connection (Telethon reconnects by itself again and again) does not queue
    one full re-read of every channel per reconnect, which would flood the account: the
    re-read in progress, then at most one more that covers every reconnect since it began."""
    settings = settings_for(tmp_path, FOLLOWED)
    client = await connected(tg, receive_updates=True)
    listener = LiveListener(archive, client, settings, options=opts(tg))
    await listener.start()
    tg.requests.clear()
    for _ in range(5):
        await client._handle_auto_reconnect()
    tg.edit(4, "edited during the last outage", push=False)
    await client._handle_auto_reconnect()

    async def settled() -> bool:
        return not listener._tasks and (await post(archive, 4))["text"].startswith("edited")

    await until(settled)
    assert tg.count(functions.channels.GetMessagesRequest) <= 2  # 6 before: one per reconnect
    listener.stop()
    await client.disconnect()
