"""Every channel isolated: a channel that cannot be resolved, joined or read gets a status with
its reason, stored in the archive and shown by stats and health; it is tried again after its
backoff (a bad username at most once a day); the other channels go on and the live listener
stays up."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes.telethon_client import (
    SELF_ID,
    FakeTelegram,
    Sleeper,
    connected,
    settings_for,
)
from telethon import errors, functions, types

from archiver.channels import parse_ref
from archiver.config import Backfill, ChannelConfig
from archiver.health import check_health
from archiver.sources.telethon_live import LiveListener, run_live
from archiver.store.archive import Archive
from archiver.store.following import channel_statuses, get_status
from archiver.sync import SyncOptions, sync_all

Resolve = functions.contacts.ResolveUsernameRequest
Join = functions.channels.JoinChannelRequest
History = functions.messages.GetHistoryRequest
GOOD, GONE, BANNED, HIDDEN = 1811111111, 1822222222, 1833333333, 1844444444


def cfg(ref: str, join: bool = False) -> ChannelConfig:
    return ChannelConfig(parse_ref(ref), backfill=Backfill("all"), join=join)


def opts(tg: FakeTelegram) -> SyncOptions:
    return SyncOptions(page_wait=0, sleeper=Sleeper(clock=tg.clock), now=tg.clock.now)


@pytest.fixture
def tg() -> FakeTelegram:
    t = FakeTelegram()
    t.add_channel(GOOD, "good", "Good")
    t.add_channel(BANNED, "banned_here", "Banned")
    t.add_channel(HIDDEN, "hidden", "Hidden")
    for bare in (GOOD, BANNED, HIDDEN):
        t.posts(3, bare_id=bare)
    return t


async def test_each_failure_is_the_channels_status_and_the_others_go_on(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    settings = settings_for(
        tmp_path, cfg("nosuchchannel"), cfg("banned_here"), cfg("hidden"), cfg("good")
    )
    client = await connected(tg)
    first = await sync_all(archive, settings, client=client, options=opts(tg))
    assert [r.status for r in first] == ["not_found", "ok", "ok", "ok"]

    tg.channel(BANNED).banned.add(SELF_ID)  # removed from a channel it could read
    tg.channel(HIDDEN).private = True  # went private: this account never joined it
    tg.clock.advance(3600)
    second = await sync_all(archive, settings, client=client, options=opts(tg))
    statuses = {r.channel: r.status for r in second}
    assert statuses == {
        "nosuchchannel": "not_found",
        "banned_here": "banned",
        "hidden": "banned",
        "good": "ok",
    }
    stored = {s.ref: s for s in await channel_statuses(archive)}
    assert stored["nosuchchannel"].channel_id is None  # a bad username has no id
    assert "check [[channels]]" in (stored["nosuchchannel"].reason or "")
    assert stored["banned_here"].retry_at == tg.clock.now() + timedelta(hours=1)
    assert stored["good"].ok


async def test_an_error_telethon_does_not_know_is_one_channels_not_a_lost_login(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    """Telethon 1.45 maps every 406 (NOT_ACCEPTABLE) error it has no class for to
    ``AuthKeyError`` (``errors/rpcbaseerrors.py``, ``rpc_message_to_error``), and Telegram adds
    errors all the time: one channel's new 406 is that channel's error, not "the session is
    no longer valid, log in again" for every channel (which also stopped `telewatch run`)."""
    settings = settings_for(tmp_path, cfg("good"), cfg("hidden"))
    new_406 = types.RpcError(error_code=406, error_message="CHANNEL_SOMETHING_NEW")
    tg.fail(History, lambda r: errors.rpc_message_to_error(new_406, r))  # good's first read
    results = await sync_all(archive, settings, client=await connected(tg), options=opts(tg))
    assert results.login_lost is None
    assert [r.status for r in results] == ["error", "ok"]
    assert "AuthKeyError" in (results[0].error or "")


async def test_a_private_channel_never_read_is_private(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, cfg("hidden"))
    tg.fail(History, lambda r: errors.ChannelPrivateError(request=r))
    [result] = await sync_all(archive, settings, client=await connected(tg), options=opts(tg))
    assert result.status == "private"
    assert "join it with this account" in (result.error or "")


async def test_a_bad_username_is_looked_up_at_most_once_a_day(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    """A sync every 15 minutes for a day, with a mistyped username configured: one
    ResolveUsername for it, not 96 (and the good channel is synced every time)."""
    settings = settings_for(tmp_path, cfg("nosuchchanel"), cfg("good"))
    client = await connected(tg)
    for _ in range(96):
        results = await sync_all(archive, settings, client=client, options=opts(tg))
        assert results[1].status == "ok"
        tg.clock.advance(900)
    asked = [r for r in tg.requests if isinstance(r, Resolve) and r.username == "nosuchchanel"]
    assert len(asked) == 1
    await sync_all(archive, settings, client=client, options=opts(tg))  # a day later: again
    asked = [r for r in tg.requests if isinstance(r, Resolve) and r.username == "nosuchchanel"]
    assert len(asked) == 2


async def test_backoff_doubles_for_a_banned_channel(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, cfg("banned_here"))
    client = await connected(tg)
    await sync_all(archive, settings, client=client, options=opts(tg))
    tg.channel(BANNED).banned.add(SELF_ID)
    retries = []
    for _ in range(4):
        await sync_all(archive, settings, client=client, options=opts(tg))
        st = await get_status(archive, "banned_here")
        assert st is not None and st.retry_at is not None
        retries.append(st.retry_at - tg.clock.now())
        tg.clock.at = st.retry_at
    assert retries == [timedelta(hours=h) for h in (1, 2, 4, 8)]


async def test_the_live_listener_starts_and_follows_the_good_channels(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    """Nothing a channel does stops the listener: a bad username, a channel the account may
    not join, too many channels for the account; the good one is followed live."""
    tg.add_account(SELF_ID, channel_limit=1)
    tg.channel(HIDDEN).private = True
    settings = settings_for(
        tmp_path,
        cfg("nosuchchannel", join=True),
        cfg("hidden", join=True),
        cfg("good", join=True),
        cfg("banned_here", join=True),
    )
    client = await connected(tg, receive_updates=True)
    listener = LiveListener(archive, client, settings, options=opts(tg))
    results = await listener.start()

    assert [r.status for r in results] == ["not_found", "not_found", "ok", "ok"]
    assert SELF_ID in tg.channel(GOOD).members
    st = await get_status(archive, "banned_here")
    assert st is not None and st.status == "too_many_channels"
    assert "about 500" in (st.reason or "") and "join = false" in (st.reason or "")
    assert "second account" in (st.reason or "")
    # the channel it could not join is still archived, by polling
    assert set(listener.channels) == {-1001811111111, -1001833333333}
    row = await archive.fetchone(
        "SELECT count(*) FROM posts WHERE channel_id = ?", (-1001833333333,)
    )
    assert row is not None and row[0] == 3

    # two minutes later: nothing is asked for the channels waiting for their retry
    tg.requests.clear()
    await listener.catch_up(reread=False)
    assert tg.count(Resolve) == 0 and tg.count(Join) == 0

    tg.clock.advance(86400)  # a day later the join is tried again
    tg.accounts[SELF_ID].channel_limit = 500
    await listener.catch_up(reread=False)
    assert tg.count(Join) == 1
    st = await get_status(archive, "banned_here")
    assert st is not None and st.status == "ok"
    listener.stop()


async def test_joining_is_checked_again_when_the_account_left(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, cfg("good", join=True))
    client = await connected(tg, receive_updates=True)
    listener = LiveListener(archive, client, settings, options=opts(tg))
    await listener.start()
    assert tg.count(Join) == 1
    tg.channel(GOOD).members.discard(SELF_ID)  # left in a Telegram app, or removed
    tg.post("new", bare_id=GOOD, push=False)
    await listener.catch_up(reread=False)  # the page's channel says left: noted
    await listener.catch_up(reread=False)  # and joined again
    assert tg.count(Join) == 2
    assert SELF_ID in tg.channel(GOOD).members
    listener.stop()


async def test_run_live_stays_up_with_only_bad_channels(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, cfg("nosuchchannel", join=True))
    client = await connected(tg, receive_updates=True)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_live(archive, client, settings, stop, options=opts(tg), catch_up_seconds=0.01)
    )
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert not task.done()
    stop.set()
    await task
    assert sum(isinstance(r, Resolve) for r in tg.requests) == 1


async def test_stats_and_health_show_the_statuses(
    archive: Archive, tg: FakeTelegram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archiver.cli import cli

    settings = settings_for(tmp_path, cfg("nosuchchannel"), cfg("banned_here"))
    client = await connected(tg)
    await sync_all(archive, settings, client=client, options=opts(tg))
    tg.channel(BANNED).banned.add(SELF_ID)
    await sync_all(archive, settings, client=client, options=opts(tg))

    report = await check_health(archive, settings, process=None, now=tg.clock.now())
    text = "\n".join(report.problems)
    assert "channel nosuchchannel: never synced: not_found: no channel with this username" in text
    config = tmp_path / "config.toml"
    config.write_text(
        '[[channels]]\nusername = "nosuchchannel"\nbackfill = "all"\n'
        '[[channels]]\nusername = "banned_here"\nbackfill = "all"\n'
    )
    await archive.close()
    out = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["--config", str(config), "--db", str(settings.storage.path), "stats"],
        catch_exceptions=False,
    )
    assert "nosuchchannel (telethon): not_found: no channel with this username" in out.output
    assert "banned_here: banned: Telegram refuses this account access" in out.output
    out = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["--config", str(config), "--db", str(settings.storage.path), "stats", "--json"],
        catch_exceptions=False,
    )
    lines = [json.loads(x) for x in out.output.splitlines()]
    by = {d.get("channel"): d for d in lines}
    assert by["banned_here"]["follow_status"] == "banned"
    assert by["nosuchchannel"]["follow_status"] == "not_found"


async def test_a_join_waiting_for_approval_leaves_the_public_channel_read(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    tg.channel(GOOD).join_request = True  # joinChannel: INVITE_REQUEST_SENT
    settings = settings_for(tmp_path, cfg("good", join=True))
    client = await connected(tg, receive_updates=True)
    listener = LiveListener(archive, client, settings, options=opts(tg))
    await listener.start()
    row = await archive.fetchone(
        "SELECT count(*) FROM posts WHERE channel_id = ?", (-1001811111111,)
    )
    assert row is not None and row[0] == 3  # read (polled) while the request waits
    for _ in range(30):  # an hour of reconciliations: the request is not sent again
        tg.clock.advance(120)
        await listener.catch_up(reread=False)
    assert tg.count(Join) == 1
    listener.stop()
