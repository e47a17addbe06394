"""One flood ledger for the account, in the archive, checked by our code before every request:
in no-updates mode, across processes, per method; the ResolveUsername budget; short waits
forgiven after progress; a flood wait at the login check is a flood wait."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fakes.telethon_client import (
    FakeTelegram,
    Sleeper,
    attach,
    connected,
    factory_for,
    fake_client,
    flood,
    settings_for,
)
from telethon import functions

from archiver.channels import parse_ref
from archiver.config import Backfill, ChannelConfig
from archiver.errors import NotLoggedIn
from archiver.sources import telethon_resolve
from archiver.sources.telethon import connect_client, session_path, sync_telethon_channel
from archiver.sources.telethon_flood import AccountFloodWait
from archiver.store.archive import Archive
from archiver.store.following import flood_waits, get_status
from archiver.sync import SyncOptions, sync_all

Resolve = functions.contacts.ResolveUsernameRequest
History = functions.messages.GetHistoryRequest
GetFull = functions.channels.GetFullChannelRequest
GetState = functions.updates.GetStateRequest
NAMES = ("alpha", "bravo", "charlie", "delta")


def cfg(ref: str) -> ChannelConfig:
    return ChannelConfig(parse_ref(ref), backfill=Backfill("all"), join=False)


def opts(tg: FakeTelegram, **kw: Any) -> SyncOptions:
    return SyncOptions(page_wait=0, sleeper=Sleeper(clock=tg.clock), now=tg.clock.now, **kw)


@pytest.fixture
def tg() -> FakeTelegram:
    t = FakeTelegram()
    for i, name in enumerate(NAMES):
        t.add_channel(1811111111 + i, name, name.title())
        t.posts(3, bare_id=1811111111 + i)
    return t


async def test_no_request_goes_out_during_a_known_wait_without_updates(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    """The issue's case: receive_updates=False (sync, cron), a 20,000 s wait on
    ResolveUsername, four channels to resolve: one request, not four."""
    settings = settings_for(tmp_path, *(cfg(n) for n in NAMES))
    client = await connected(tg, receive_updates=False)
    tg.fail(Resolve, flood(20000))

    results = await sync_all(archive, settings, client=client, options=opts(tg))

    assert [r.status for r in results] == ["flood_wait"] * 4
    assert tg.count(Resolve) == 1
    assert tg.sent_during_wait == []
    [wait] = await flood_waits(archive)
    assert (wait.method, wait.seconds) == ("contacts.ResolveUsername", 20000)
    assert wait.until == tg.clock.now() + timedelta(seconds=20000)


async def test_a_wait_recorded_by_one_process_holds_in_the_next(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    """Cron: every run is a new process with a new client; the archive remembers the wait."""
    settings = settings_for(tmp_path, *(cfg(n) for n in NAMES))
    tg.session_file(session_path(settings))
    tg.fail(Resolve, flood(20000))
    for _ in range(4):  # four cron runs, 15 minutes apart
        archive = await Archive.open(settings.storage.path)
        try:
            client = await connect_client(
                settings, factory=factory_for(tg), archive=archive, now=tg.clock.now
            )
            await sync_all(archive, settings, client=client, options=opts(tg))
            await client.disconnect()
        finally:
            await archive.close()
        tg.clock.advance(900)
    assert tg.count(Resolve) == 1
    assert tg.sent_during_wait == []


async def test_a_wait_on_one_method_does_not_stop_another(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    """A flood wait on GetFullChannel (the description) leaves the history readable."""
    settings = settings_for(tmp_path, cfg("alpha"), cfg("bravo"))
    tg.fail(GetFull, flood(86400))
    results = await sync_all(archive, settings, client=await connected(tg), options=opts(tg))
    assert [(r.status, r.new_posts) for r in results] == [("ok", 3), ("ok", 3)]
    assert tg.count(GetFull) == 1  # bravo's description waits without asking
    assert tg.sent_during_wait == []


async def test_resolve_username_has_a_daily_budget(
    archive: Archive, tg: FakeTelegram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telethon_resolve, "RESOLVE_PER_DAY", 2)
    settings = settings_for(tmp_path, *(cfg(n) for n in NAMES[:3]))
    client = await connected(tg)
    results = await sync_all(archive, settings, client=client, options=opts(tg))
    assert [r.status for r in results] == ["ok", "ok", "flood_wait"]
    assert "2 contacts.ResolveUsername calls for today" in (results[2].error or "")
    assert tg.count(Resolve) == 2

    again = await sync_all(archive, settings, client=client, options=opts(tg))
    assert again[2].status == "flood_wait" and tg.count(Resolve) == 2  # not before midnight

    tg.clock.advance(86400)
    later = await sync_all(archive, settings, client=client, options=opts(tg))
    assert later[2].status == "ok" and tg.count(Resolve) == 3


async def test_short_waits_are_forgiven_after_progress(archive: Archive, tmp_path: Path) -> None:
    """A long backfill meets a short flood wait every few pages; each page committed in
    between resets the count, so the channel is not sent into a long wait for it."""
    tg = FakeTelegram()
    tg.add_channel(1811111111, "alpha")
    tg.posts(900, bare_id=1811111111)
    tg.fail(History, flood(10), every=2, times=100)  # every other history request
    settings = settings_for(tmp_path, cfg("alpha"))
    client = await connected(tg)
    sleeper = Sleeper(client)
    options = SyncOptions(page_wait=0, sleeper=sleeper, now=tg.clock.now, max_flood_waits=3)
    result = await sync_telethon_channel(archive, client, cfg("alpha"), settings, options=options)
    assert result.status == "ok" and result.new_posts == 900
    assert len(sleeper.slept) > 3
    assert tg.sent_during_wait == []


async def test_a_flood_wait_inside_connect_is_reported_with_its_deadline(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, "alpha")
    tg.session_file(session_path(settings))
    tg.fail(functions.users.GetUsersRequest, flood(3600))
    with pytest.raises(AccountFloodWait) as err:
        await connect_client(settings, factory=factory_for(tg), now=tg.clock.now)
    assert err.value.until == tg.clock.now() + timedelta(seconds=3600)
    assert "not a login problem" in str(err.value)


async def test_a_flood_wait_at_the_login_check_is_not_not_logged_in(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    """With catch_up (a session file that keeps the update state) connect() skips get_me and
    the login check sends GetState: Telethon's is_user_authorized() would say False on the
    flood wait (client/users.py), i.e. "not logged in"."""
    settings = settings_for(tmp_path, "alpha")
    path = tg.session_file(session_path(settings))
    first = fake_client(tg, str(path), receive_updates=True, catch_up=True)
    await first.connect()
    await first.disconnect()  # Telethon saves the update state into the session file

    archive = await Archive.open(settings.storage.path)
    try:
        tg.fail(GetState, flood(7200))
        with pytest.raises(AccountFloodWait) as err:
            await connect_client(settings, receive_updates=True, factory=factory_for(tg),
                                 archive=archive, now=tg.clock.now)  # fmt: skip
        assert not isinstance(err.value, NotLoggedIn)
        assert err.value.method == "updates.GetState"
        sent = tg.count(GetState)
        # the next start during the wait does not even ask
        with pytest.raises(AccountFloodWait):
            await connect_client(settings, receive_updates=True, factory=factory_for(tg),
                                 archive=archive, now=tg.clock.now)  # fmt: skip
        assert tg.count(GetState) == sent
        assert tg.sent_during_wait == []
    finally:
        await archive.close()


async def test_a_revoked_session_is_still_not_logged_in(tg: FakeTelegram, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "alpha")
    tg.session_file(session_path(settings))
    tg.authorized = False
    with pytest.raises(NotLoggedIn):
        await connect_client(settings, factory=factory_for(tg))


async def test_a_channel_waiting_for_a_flood_keeps_its_status_reason(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, cfg("alpha"))
    tg.fail(History, flood(5000))
    await sync_all(archive, settings, client=await connected(tg), options=opts(tg))
    st = await get_status(archive, "alpha")
    assert st is not None and st.status == "flood_wait"
    assert st.retry_at == tg.clock.now() + timedelta(seconds=5000)
    assert "messages.GetHistory" in (st.reason or "")


async def test_a_flood_wait_at_the_login_check_of_a_cron_pass_is_recorded_per_channel(
    tg: FakeTelegram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sync opens its own client: a flood wait at its login check is every Telethon channel's
    reason for this pass (not a crash, not "not logged in")."""
    from archiver.sources import telethon_network

    settings = settings_for(tmp_path, cfg("alpha"), cfg("bravo"))
    tg.session_file(session_path(settings))

    async def open_client(settings: Any, *, receive_updates: bool = False,
                          archive: Any = None) -> Any:  # fmt: skip
        return await connect_client(settings, receive_updates=receive_updates,
                                    factory=factory_for(tg), archive=archive,
                                    now=tg.clock.now)  # fmt: skip

    monkeypatch.setattr(telethon_network, "open_client", open_client)
    tg.fail(functions.users.GetUsersRequest, flood(3600))
    async with await Archive.open(settings.storage.path) as archive:
        results = await sync_all(archive, settings, options=opts(tg))
    assert [r.status for r in results] == ["error", "error"]
    assert all("a flood wait, not a login problem" in (r.error or "") for r in results)
    assert results.login_lost is None


async def test_run_waits_out_a_flood_wait_at_the_login_check(
    tg: FakeTelegram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """`telewatch run` does not exit on it: under `restart: unless-stopped` every restart
    connected again during the wait (help.GetConfig and users.GetUsers each time). It waits,
    sends nothing more, and still stops cleanly on a signal."""
    from archiver import runner
    from archiver.sources import telethon_session

    real = telethon_session.make_client
    monkeypatch.setattr(
        telethon_session, "make_client", lambda *a, **kw: attach(real(*a, **kw), tg)
    )
    settings = settings_for(tmp_path, ChannelConfig(parse_ref("alpha"), join=True))
    tg_settings = replace(settings.telegram, session_string=tg.session().save())
    settings = replace(settings, telegram=tg_settings)
    tg.fail(GetState, flood(20000))
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(settings, with_bot=False, stop=stop))
    for _ in range(500):
        if "a flood wait on updates.GetState" in caplog.text or task.done():
            break
        await asyncio.sleep(0.01)
    sent = len(tg.requests)
    await asyncio.sleep(0.1)
    assert not task.done()  # still up
    assert len(tg.requests) == sent and tg.sent_during_wait == []
    stop.set()
    await asyncio.wait_for(task, 10)  # a clean stop, no error
