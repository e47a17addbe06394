"""`telewatch run` with [[accounts]] (issue 18): one Telethon client per account that has
channels, each account's channels followed (live and polled) with its own client, and one
account's lost login leaves the others running."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fakes.telethon_client import SELF_ID, FakeTelegram, attach, flood, settings_for
from telethon import functions

from archiver import runner
from archiver.channels import parse_ref
from archiver.config import AccountSettings, Backfill, ChannelConfig, ScheduleSettings, Settings
from archiver.store.archive import Archive
from archiver.store.following import get_status

History = functions.messages.GetHistoryRequest
DESK2 = 555000222
BARE = {"alpha": 1811111101, "bravo": 1811111102, "charlie": 1811111103, "delta": 1811111104}
USERS = {"desk1": SELF_ID, "desk2": DESK2}


@pytest.fixture
def tg(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeTelegram, list[Any]]:
    from archiver.sources import telethon_session

    t = FakeTelegram()
    t.add_account(DESK2)
    for name, bare in BARE.items():
        t.add_channel(bare, name, name.title())
        t.posts(3, bare_id=bare, text=name + " {}")
    made: list[Any] = []
    real = telethon_session.make_client

    def make(*a: Any, **kw: Any) -> Any:
        client = attach(real(*a, **kw), t)
        made.append(client)
        return client

    monkeypatch.setattr(telethon_session, "make_client", make)
    return t, made


def settings(tmp_path: Path, t: FakeTelegram) -> Settings:
    chans = [
        ChannelConfig(parse_ref(n), backfill=Backfill("all"), join=n in ("alpha", "bravo"))
        for n in BARE
    ]
    s = settings_for(tmp_path, *chans)
    accounts = tuple(
        AccountSettings(name, t.session_file(tmp_path / f"{name}.session", user))
        for name, user in USERS.items()
    )
    schedule = ScheduleSettings(heartbeat_seconds=1, recheck="", backup="", maintenance="")
    return replace(s, configured_accounts=accounts, schedule=schedule)


async def archived(s: Settings) -> dict[str, int]:
    async with await Archive.open(s.storage.path) as a:
        rows = await a.fetchall(
            "SELECT c.username, count(p.id) AS n FROM channels c"
            " LEFT JOIN posts p ON p.channel_id = c.id GROUP BY c.username"
        )
    return {r["username"]: int(r["n"]) for r in rows}


async def run_until(s: Settings, done: Any) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(s, with_bot=False, stop=stop))
    try:
        for _ in range(1000):  # a bounded wait for the start-up pass
            if task.done() or (s.storage.path.exists() and await done()):
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def test_run_opens_one_client_per_account_and_reads_each_channel_with_its_own(
    tmp_path: Path, tg: tuple[FakeTelegram, list[Any]]
) -> None:
    t, made = tg
    s = settings(tmp_path, t)

    async def done() -> bool:
        return await archived(s) == dict.fromkeys(BARE, 3)

    await run_until(s, done)
    assert await archived(s) == dict.fromkeys(BARE, 3)
    # one client each (both follow a live channel, so both receive updates)
    assert sorted(c._sender.account for c in made) == sorted([SELF_ID, DESK2])
    assert not any(c._no_updates for c in made)
    readers: dict[int, set[int | None]] = {}
    for account, req in t.sent_by:
        if isinstance(req, History):
            readers.setdefault(req.peer.channel_id, set()).add(account)
    # alpha, charlie: desk1; bravo, delta: desk2 (most room, ties in config order)
    assert readers == {
        BARE["alpha"]: {SELF_ID}, BARE["bravo"]: {DESK2},
        BARE["charlie"]: {SELF_ID}, BARE["delta"]: {DESK2},
    }  # fmt: skip
    # each account joined its live channel only
    assert t.channel(BARE["alpha"]).members == {SELF_ID}
    assert t.channel(BARE["bravo"]).members == {DESK2}


async def test_run_goes_on_when_one_account_is_logged_out(
    tmp_path: Path, tg: tuple[FakeTelegram, list[Any]]
) -> None:
    t, _ = tg
    s = settings(tmp_path, t)
    t.revoke(DESK2)

    async def done() -> bool:
        got = await archived(s)
        async with await Archive.open(s.storage.path) as a:
            st = await get_status(a, "delta")
            last = await a.fetchone("SELECT last_error FROM channels WHERE username = 'delta'")
        return (got.get("alpha"), got.get("charlie")) == (3, 3) and (
            (st is not None and st.status != "ok")
            or (last is not None and last["last_error"] is not None)
        )

    await run_until(s, done)  # returns: the run did not stop by itself on desk2's login
    got = await archived(s)
    assert (got["alpha"], got["charlie"]) == (3, 3)
    assert not got.get("bravo") and not got.get("delta")
    async with await Archive.open(s.storage.path) as a:
        for name in ("bravo", "delta"):
            st = await get_status(a, name)
            assert st is not None and st.status == "error"
            assert "telewatch login --account desk2" in (st.reason or "")
        assert (await get_status(a, "alpha")).status == "ok"  # type: ignore[union-attr]


async def test_a_flood_wait_at_one_accounts_login_check_does_not_hold_the_others(
    tmp_path: Path, tg: tuple[FakeTelegram, list[Any]]
) -> None:
    """With one account, `run` waits a login-check flood wait out before starting; with
    several, the others start at once and desk1's channels are tried at each pass."""
    t, _ = tg
    s = settings(tmp_path, t)
    t.fail(functions.updates.GetStateRequest, flood(20000), account=SELF_ID, times=1000)

    async def done() -> bool:
        got = await archived(s)
        return (got.get("bravo"), got.get("delta")) == (3, 3)

    await run_until(s, done)
    got = await archived(s)
    assert (got["bravo"], got["delta"]) == (3, 3)
    assert not got.get("alpha") and not got.get("charlie")
