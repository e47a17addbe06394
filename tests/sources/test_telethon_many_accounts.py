"""Many Telegram accounts in one process (issue 18): each account's channels are read with its
own session (its own access hashes, its own flood ledger), one account's trouble (a flood
wait, a revoked login, CHANNELS_TOO_MUCH) stays with its channels, and the others go on."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fakes.telethon_client import (
    SELF_ID,
    FakeTelegram,
    Sleeper,
    attach,
    connected,
    flood,
    settings_for,
)
from telethon import functions

from archiver.channels import parse_ref
from archiver.config import AccountSettings, Backfill, ChannelConfig, Settings
from archiver.sources import telethon_session
from archiver.sources.telethon_accounts import assign
from archiver.store.accounts import assignment_rows, assignments
from archiver.store.archive import Archive
from archiver.store.following import flood_waits, get_following, get_status
from archiver.sync import SyncOptions, follow_live, sync_all

History = functions.messages.GetHistoryRequest
Join = functions.channels.JoinChannelRequest
DESK2 = 555000222
DESK3 = 555000333
BARE = {"alpha": 1811111101, "bravo": 1811111102, "charlie": 1811111103, "delta": 1811111104}


def cfg(name: str, **kw: Any) -> ChannelConfig:
    return ChannelConfig(parse_ref(name), backfill=Backfill("all"), join=kw.pop("join", False),
                         **kw)  # fmt: skip


@pytest.fixture
def tg(monkeypatch: pytest.MonkeyPatch) -> FakeTelegram:
    """A Telegram with three accounts and four channels of 3 posts each; every client
    telewatch makes (``make_client``) talks to it."""
    t = FakeTelegram()
    t.add_account(DESK2)
    t.add_account(DESK3)
    for name, bare in BARE.items():
        t.add_channel(bare, name, name.title())
        t.posts(3, bare_id=bare, text=name + " {}")
    real = telethon_session.make_client
    monkeypatch.setattr(telethon_session, "make_client", lambda *a, **kw: attach(real(*a, **kw), t))
    return t


def opts(tg: FakeTelegram, sleeper: Any = None) -> SyncOptions:
    return SyncOptions(page_wait=0, sleeper=sleeper or Sleeper(clock=tg.clock), now=tg.clock.now)


def with_accounts(
    tmp_path: Path, tg: FakeTelegram, channels: list[ChannelConfig], *accounts: tuple[str, int]
) -> Settings:
    """Settings with one [[accounts]] table per (name, Telegram user id), each logged in with
    its own session file, and ``channels``."""
    base = settings_for(tmp_path, *channels)
    made = tuple(
        AccountSettings(name, tg.session_file(tmp_path / f"{name}.session", user))
        for name, user in accounts
    )
    return replace(base, configured_accounts=made)


TWO = (("desk1", SELF_ID), ("desk2", DESK2))


async def posts_of(archive: Archive, name: str) -> int:
    row = await archive.fetchone(
        "SELECT count(*) AS n FROM posts p JOIN channels c ON c.id = p.channel_id"
        " WHERE c.username = ?",
        (name,),
    )
    assert row is not None
    return int(row["n"])


async def test_each_account_reads_its_channels_with_its_own_session(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    chans = [cfg(n) for n in BARE]
    s = with_accounts(tmp_path, tg, chans, *TWO)
    results = await sync_all(archive, s, options=opts(tg))
    assert [r.status for r in results] == ["ok"] * 4
    assert [await posts_of(archive, n) for n in BARE] == [3, 3, 3, 3]
    got = await assignments(archive)
    assert got == {"alpha": "desk1", "bravo": "desk2", "charlie": "desk1", "delta": "desk2"}
    # each channel was read by its account, with that account's access hash
    readers = {
        req.peer.channel_id: account for account, req in tg.sent_by if isinstance(req, History)
    }
    by_name = {BARE[n]: {"desk1": SELF_ID, "desk2": DESK2}[a] for n, a in got.items()}
    assert readers == by_name
    for name, account in got.items():
        f = await get_following(archive, -1000000000000 - BARE[name])
        user = {"desk1": SELF_ID, "desk2": DESK2}[account]
        assert f is not None and f.hash_account == user
        assert f.access_hash == tg.channel(BARE[name]).hash_for(user)


async def test_a_flood_wait_on_one_account_never_holds_the_other(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    """desk1's read of alpha gets FLOOD_WAIT_30 (below the ceiling: waited out). While desk1
    waits, desk2 reads its channels: the accounts run side by side."""
    s = with_accounts(tmp_path, tg, [cfg("alpha"), cfg("bravo")], *TWO)
    tg.fail(History, flood(30), account=SELF_ID)
    seen_during_wait: list[bool] = []
    clock_sleeper = Sleeper(clock=tg.clock)

    def bravo_read() -> bool:
        return any(a == DESK2 and isinstance(r, History) for a, r in tg.sent_by)

    async def sleeper(seconds: float) -> None:
        for _ in range(500):  # a bounded wait: the other account's task runs meanwhile, if it can
            if bravo_read():
                break
            await asyncio.sleep(0.01)
        seen_during_wait.append(bravo_read())
        await clock_sleeper(seconds)

    results = await sync_all(archive, s, options=opts(tg, sleeper))
    assert [r.status for r in results] == ["ok", "ok"]
    assert clock_sleeper.slept == [30]
    assert seen_during_wait == [True]


async def test_a_long_flood_wait_is_one_accounts_ledger_only(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    s = with_accounts(tmp_path, tg, [cfg("alpha"), cfg("bravo")], *TWO)
    tg.fail(History, flood(5000), account=SELF_ID)  # above the ceiling: alpha waits
    first = await sync_all(archive, s, options=opts(tg))
    assert [r.status for r in first] == ["flood_wait", "ok"]
    waits = await flood_waits(archive, now=tg.clock.now())
    assert [(w.account, w.method) for w in waits] == [(SELF_ID, "messages.GetHistory")]
    tg.post("bravo new", bare_id=BARE["bravo"])
    tg.post("alpha new", bare_id=BARE["alpha"])
    again = await sync_all(archive, s, options=opts(tg))
    # desk1 sends nothing during its wait; desk2's reads are not held by desk1's ledger
    assert [r.status for r in again] == ["flood_wait", "ok"]
    assert again[1].new_posts == 1
    assert tg.sent_during_wait == []


async def test_one_account_logged_out_records_its_channels_and_the_other_goes_on(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    s = with_accounts(tmp_path, tg, [cfg(n) for n in BARE], *TWO)
    await sync_all(archive, s, options=opts(tg))
    tg.revoke(DESK2)  # desk2 logged out from another device
    for n in BARE:
        tg.post(n + " new", bare_id=BARE[n])
    results = await sync_all(archive, s, options=opts(tg))
    assert [(r.channel, r.status) for r in results] == [
        ("alpha", "ok"), ("bravo", "error"), ("charlie", "ok"), ("delta", "error"),
    ]  # fmt: skip
    for r in results[1::2]:
        assert "account desk2" in (r.error or "")
        assert "telewatch login --account desk2" in (r.error or "")
    assert results.login_lost is None  # not every account: `run` goes on
    assert list(results.logins_lost) == ["desk2"]
    assert [await posts_of(archive, n) for n in BARE] == [4, 3, 4, 3]


async def test_every_account_logged_out_is_a_lost_login(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    s = with_accounts(tmp_path, tg, [cfg("alpha"), cfg("bravo")], *TWO)
    tg.revoke(SELF_ID)
    tg.revoke(DESK2)
    results = await sync_all(archive, s, options=opts(tg))
    assert results.login_lost is not None
    assert set(results.logins_lost) == {"desk1", "desk2"}


async def test_a_missing_session_names_the_account_and_its_login_command(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    s = with_accounts(tmp_path, tg, [cfg("alpha"), cfg("bravo")], *TWO)
    gone = AccountSettings("desk2", tmp_path / "never.session")
    s = replace(s, configured_accounts=(s.configured_accounts[0], gone))
    results = await sync_all(archive, s, options=opts(tg))
    assert results[0].status == "ok"
    assert results[1].error == (
        "bravo: account desk2: not logged in: run `telewatch login --account desk2`"
    )


async def test_a_channel_no_account_has_room_for_is_recorded_not_dropped(
    archive: Archive, tg: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = with_accounts(tmp_path, tg, [cfg(n) for n in BARE], *TWO)
    s = replace(
        s, configured_accounts=tuple(replace(a, join_limit=1) for a in s.configured_accounts)
    )
    results = await sync_all(archive, s, options=opts(tg))
    assert [r.status for r in results] == ["ok", "ok", "no_account", "no_account"]
    assert "no account has room" in (results[2].error or "")
    st = await get_status(archive, "charlie")
    assert st is not None and st.status == "no_account"
    line = [r.message for r in caplog.records if "charlie" in r.message and "room" in r.message]
    assert line and "add an [[accounts]] account or raise a join_limit" in line[0]
    assert not any(isinstance(r, History) and r.peer.channel_id == BARE["charlie"]
                   for r in tg.requests)  # fmt: skip


async def test_only_the_accounts_asked_for_run(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    """The lease filter's seam: ``accounts=`` runs those accounts' channels only."""
    s = with_accounts(tmp_path, tg, [cfg(n) for n in BARE], *TWO)
    results = await sync_all(archive, s, options=opts(tg), accounts=["desk2"])
    assert [r.channel for r in results] == ["bravo", "delta"]
    assert {a for a, _ in tg.sent_by if a is not None} == {DESK2}


async def test_channels_too_much_moves_the_channel_to_an_account_with_room(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    """desk1 is a member of 500 other channels in reality, whatever join_limit says:
    Telegram refuses it the join of alpha. The refusal is recorded, and the next assignment
    gives alpha to desk2, which joins it."""
    tg.accounts[SELF_ID].channel_limit = 0  # full in reality
    chans = [cfg("alpha", join=True), cfg("bravo", join=True)]
    s = with_accounts(tmp_path, tg, chans, *TWO)
    stop = asyncio.Event()
    o = opts(tg)

    async def settled() -> bool:
        """Both channels' joins are done or refused, and both are read."""
        for n in ("alpha", "bravo"):
            st = await get_status(archive, n)
            if st is None or (await posts_of(archive, n)) < 3:
                return False
        return True

    async def live_once() -> None:
        task = asyncio.ensure_future(follow_live(archive, s, stop, options=o))
        for _ in range(500):  # a bounded wait for the listeners' first pass
            if await settled() or task.done():
                break
            await asyncio.sleep(0.01)
        stop.set()
        await task
        stop.clear()

    await live_once()
    assert await assignments(archive) == {"alpha": "desk1", "bravo": "desk2"}
    st = await get_status(archive, "alpha")
    assert st is not None and st.status == "too_many_channels"
    rows = await assignment_rows(archive)
    assert rows["bravo"].joined and not rows["alpha"].joined

    tg.sent_by.clear()
    await assign(archive, s, now=tg.clock.now)  # as every pass of `run` does first
    assert await assignments(archive) == {"alpha": "desk2", "bravo": "desk2"}
    st = await get_status(archive, "alpha")
    assert st is not None and st.status == "ok"  # desk1's refusal is not desk2's
    await live_once()
    assert DESK2 in tg.channel(BARE["alpha"]).members
    assert (await assignment_rows(archive))["alpha"].joined


async def test_a_login_lost_mid_pass_names_the_account_and_spares_the_other(
    archive: Archive, tg: FakeTelegram, tmp_path: Path
) -> None:
    """Clients already connected (as in `run`); desk2's session is logged out before its
    reads: its channels say which account to log in again, desk1's are read."""
    s = with_accounts(tmp_path, tg, [cfg(n) for n in BARE], *TWO)
    clients = {
        "desk1": await connected(tg, tg.session(SELF_ID)),
        "desk2": await connected(tg, tg.session(DESK2)),
    }
    tg.revoke(DESK2)
    results = await sync_all(archive, s, clients=clients, options=opts(tg))
    assert [r.status for r in results] == ["ok", "error", "ok", "error"]
    assert results[1].error == (
        "bravo: account desk2: the Telegram session is no longer valid (revoked or logged out):"
        " run `telewatch login --account desk2` again"
    )
    assert list(results.logins_lost) == ["desk2"] and results.login_lost is None
