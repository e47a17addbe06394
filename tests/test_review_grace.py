"""Break-it review of the hand-over grace (commit 80e9bb3, issue 18): paths where one Telegram
account's session can still be connected from two processes at once.

Each test is a claim about what must hold, checked against real processes and a real
PostgreSQL (tests/pg.py) or the real :class:`archiver.units.Units`; the fake Telegram counts a
session used in two places in ``served.duplicated`` (tests/fakes/telethon_remote.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pg import pg_server, pg_url  # noqa: F401
from test_ops_workers import until
from test_worker_faults import LEASE, PgCut, _telewatch_pg, _took_over, _two_machines, ended

from archiver.store import leases as L
from archiver.store.archive import Archive


async def test_a_sync_worker_cut_off_from_the_database_lets_go_of_its_session(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
) -> None:
    """`sync --worker w1` holds account:main and is in the middle of its pass (sleeping out
    a flood wait of 30 s, connected: a pass may last up to pass_deadline_seconds) when its
    machine loses the database. Its lease runs out unrenewed; `run --worker w2` on another
    machine takes the account after the grace and connects the session. w1 must have let go
    of the session by then, as `run --worker` does (archiver/units.py: lease_loop drops its
    units a third of the lease before expiry); `Worker.keep` (the renewal loop of
    `sync --worker`/`recheck --worker`) only logs "trying again" and the pass goes on with
    the session connected."""
    from fakes.telethon_client import SELF_ID, FakeTelegram
    from fakes.telethon_remote import serve
    from sources.test_telethon_remote import telewatch
    from telethon import errors, functions

    tg = FakeTelegram()
    tg.add_channel()
    tg.posts(3)
    tg.fail(
        functions.messages.GetHistoryRequest,
        lambda r: errors.FloodWaitError(request=r, capture=30),
    )  # the pass sleeps it out, connected (FloodPolicy: under flood_wait_ceiling)
    one, two = _two_machines(tmp_path, tg)
    procs: list[asyncio.subprocess.Process] = []
    said: list[str] = []
    async with serve(tg) as served, PgCut(pg_url, tmp_path / "relay") as relay:
        try:
            _use(one, relay.url)
            w1 = await telewatch(served.address, one, "sync", "--worker", "w1")
            procs.append(w1)
            async with await Archive.open(pg_url) as a:

                async def waiting_out_the_flood() -> bool:
                    rows = await a.fetchall("SELECT count(*) FROM flood_waits")
                    row = (await L.leases(a)).get(L.account_unit("main"))
                    return bool(
                        rows[0][0]
                        and row is not None
                        and row.worker == "w1"
                        and w1.pid in served.places(SELF_ID)
                    )

                await until("w1's pass sleeps out its flood wait", waiting_out_the_flood)
                relay.cut()  # w1's machine loses the database, mid-pass
                w2 = await _telewatch_pg(telewatch, served.address, two, pg_url, "w2")
                procs.append(w2)
                await until("w2 took the account over", lambda: _took_over(a, served, w2), 40)
                # the pass was stopped, in one line saying why
                _, err = await asyncio.wait_for(w1.communicate(), 30)
                said.append(err.decode())
                assert w1.returncode == 1, said
                assert "cannot renew its leases before they expire" in said[0], said
                assert "Traceback" not in said[0]
        finally:
            said += await ended(procs)
    assert served.duplicated == [], said


def _use(folder: Path, url: str) -> None:
    """The folder's config on the PostgreSQL archive at ``url``."""
    cfg = folder / "config.toml"
    cfg.write_text(cfg.read_text().replace('path = "data/t.db"', f'url = "{url}"'))


class _Relay:
    """Like test_worker_faults.PgCut (a Unix-socket relay in front of the test's PostgreSQL),
    whose partition also heals: :meth:`heal` accepts connections again, as when one
    machine's network to the database server comes back."""

    def __init__(self, url: str, folder: Path) -> None:
        self.cutter = PgCut(url, folder)
        self.url = self.cutter.url

    async def __aenter__(self) -> _Relay:
        await self.cutter.__aenter__()
        return self

    def cut(self) -> None:
        self.cutter.cut()

    async def heal(self) -> None:
        self.cutter.writers = []
        await self.cutter.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        self.cutter.cut()


async def test_a_worker_started_again_under_its_name_beside_the_old_process(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
) -> None:
    """`run --worker w1` on machine one follows account:main live and is cut off from the
    database (alive: a network partition). The operator (or an orchestrator that moves the
    job) starts `run --worker w1` on machine two; `register` lets it, since the old one has
    not been seen for lease_seconds, and it takes account:main at once (acquire: a unit that
    is ``worker = ?``'s own is free to it, no grace). Then machine one's network comes back:
    the old w1 ticks again, and its acquire takes "its own" account:main (held by the new
    w1, same name) and connects the session. Two processes named w1 must never both
    connect the account's session."""
    from fakes.telethon_client import FakeTelegram
    from fakes.telethon_remote import serve
    from sources.test_telethon_remote import telewatch
    from test_worker_faults import _follows

    tg = FakeTelegram()
    tg.add_channel()
    tg.posts(3)
    one, two = _two_machines(tmp_path, tg)
    procs: list[asyncio.subprocess.Process] = []
    said: dict[int, list[str]] = {}
    readers: list[asyncio.Task[None]] = []

    async def read(p: asyncio.subprocess.Process) -> None:
        assert p.stderr is not None
        said[p.pid] = []
        async for line in p.stderr:
            said[p.pid].append(line.decode())

    async with serve(tg) as served, _Relay(pg_url, tmp_path / "relay") as relay:
        _use(one, relay.url)  # machine one reaches the database through the relay
        _use(two, pg_url)
        try:
            old = await telewatch(served.address, one, "run", "--no-bot", "--worker", "w1")
            procs.append(old)
            readers.append(asyncio.create_task(read(old)))
            async with await Archive.open(pg_url) as a:
                await until("w1 follows the account", lambda: _follows(a, served, "w1"))

                async def running() -> bool:  # its start and first pass are over (cut off
                    # while it starts, a worker exits: the start's own writes fail)
                    return _count(said[old.pid], "job sync: done") > 0

                await until("w1 runs", running)
                relay.cut()  # machine one loses the database; the old w1 lets go, and waits

                async def w1_silent() -> bool:  # `register` accepts the name again
                    return "w1" not in await L.live_workers(a, LEASE, await L.db_now(a))

                await until("the old w1 is not seen any more", w1_silent)
                new = await telewatch(served.address, two, "run", "--no-bot", "--worker", "w1")
                procs.append(new)
                readers.append(asyncio.create_task(read(new)))
                await until("the new w1 took the account", lambda: _holds(a, served, new), 40)
                started = _count(said[old.pid], "account main: started")
                await relay.heal()  # machine one reaches the database again

                async def old_w1_decided() -> bool:
                    """It started the account again (and Telegram saw the session twice), or
                    it stopped, or it said the name is taken."""
                    return (
                        bool(served.duplicated)
                        or old.returncode is not None
                        or _count(said[old.pid], "account main: started") > started
                        or _count(said[old.pid], "already running") > 0
                    )

                await until("the old w1 reached the database again", old_w1_decided, 60)
                if _count(said[old.pid], "account main: started") > started:
                    await until("its login check reached Telegram", lambda: _seen(served))
                # it stops, saying why, and leaves what the name holds to the new w1
                await asyncio.wait_for(old.wait(), 30)
                assert old.returncode != 0
                assert _count(said[old.pid], "now runs under this name") > 0, said[old.pid]
                assert await _holds(a, served, new) and not served.duplicated
        finally:
            for p in procs:
                if p.returncode is None:
                    p.kill()
                await p.wait()
            await asyncio.gather(*readers, return_exceptions=True)
    assert served.duplicated == [], said


async def _holds(a: Archive, served: Any, proc: asyncio.subprocess.Process) -> bool:
    """w1 holds account:main and ``proc`` is connected as it (or the session was duplicated)."""
    from fakes.telethon_client import SELF_ID

    row = (await L.leases(a)).get(L.account_unit("main"))
    return bool(served.duplicated) or bool(
        row is not None
        and row.worker == "w1"
        and row.held_at(await L.db_now(a))
        and proc.pid in served.places(SELF_ID)
    )


def _count(lines: list[str], text: str) -> int:
    return sum(text in line for line in lines)


async def _seen(served: Any) -> bool:
    """An account started sends its login check at once: the fake counts it if the session
    is connected from two places."""
    return bool(served.duplicated)


async def test_a_worker_that_cannot_renew_disconnects_every_account_before_waiting(
    tmp_path: Path,
) -> None:
    """A worker cut off from the database holds two accounts, each with a live listener
    stuck on the database. Once its leases are about to run out (lease_loop: ``expiring``),
    every account's session goes to another worker soon: each must be disconnected before
    the worker waits for any listener (up to LIVE_GRACE plus a second each). Today the
    accounts are stopped one after the other, and the second is disconnected only once the
    first one's listener was waited for: with N accounts the last waits (N-1) times that."""
    import sqlite3

    from archiver.config import ChannelConfig, Settings, WorkersSettings
    from archiver.units import Units, _Account, lease_loop
    from archiver.worker import Worker

    order: list[str] = []

    class Client:  # stands in for TelegramClient.disconnect (telegrambaseclient.py)
        def __init__(self, name: str) -> None:
            self.name = name

        async def disconnect(self) -> None:
            order.append(f"disconnect {self.name}")

    async def listener(name: str) -> None:  # stuck on the database: only a cancel ends it
        try:
            await asyncio.Event().wait()
        finally:
            order.append(f"listener {name} ended")

    from archiver.channels import parse_ref

    settings = Settings(
        channels=(ChannelConfig(parse_ref("chan"), source="telethon"),),
        workers=WorkersSettings(lease_seconds=1),
    )
    async with await Archive.open(tmp_path / "a.db") as a:
        worker = Worker(a, settings, "w1")
        worker.held = {L.account_unit("a"), L.account_unit("b")}

        async def cut_off() -> Any:
            raise sqlite3.OperationalError("server closed the connection unexpectedly")

        worker.tick = cut_off  # type: ignore[method-assign]
        worker.renewed_at -= settings.workers.lease_seconds  # the last renewal: long ago
        never: Any = None
        stop = asyncio.Event()
        units = Units(
            a, settings, worker, stop, open_client=never,
            failed=lambda *_: None, catch_up=lambda: None, session_locks=False,
        )  # fmt: skip
        for name in ("a", "b"):
            acc = _Account(client=Client(name), ready=True)
            acc.live = asyncio.create_task(listener(name))
            units.accounts[name] = acc
        loop = asyncio.create_task(lease_loop(units, stop))
        await until("both accounts stopped", lambda: _empty(units.accounts))
        stop.set()
        await loop
    assert order[:2] == ["disconnect a", "disconnect b"], order


async def _empty(accounts: dict[str, Any]) -> bool:
    return not accounts


async def test_a_worker_starting_its_account_slowly_still_renews_its_lease(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
) -> None:
    """`run --worker w1` takes account:main and opens its client; Telegram answers the login
    check with a flood wait of 20 s, which `_open_telegram` waits out (the only account).
    The lease loop started only once every account had started (runner._start_worker), so
    nothing renewed w1's lease meanwhile: it ran out, w2 took the account after the grace,
    and when w1's wait was over it connected the session too. Now w1 renews its lease while
    it starts: w2 stands by, and w1 follows the account once its wait is over."""
    from fakes.telethon_client import SELF_ID, FakeTelegram
    from fakes.telethon_remote import serve
    from sources.test_telethon_remote import telewatch
    from telethon import errors, functions

    lease, flood = 6, 20
    tg = FakeTelegram()
    tg.add_channel()
    tg.posts(3)
    tg.fail(
        functions.updates.GetStateRequest,
        lambda r: errors.FloodWaitError(request=r, capture=flood),
    )  # the first login check only
    one, two = _two_machines(tmp_path, tg)
    for folder in (one, two):
        _use(folder, pg_url)
        cfg = folder / "config.toml"
        text = cfg.read_text().replace(f"lease_seconds = {LEASE}", f"lease_seconds = {lease}")
        cfg.write_text(text)
    procs: list[asyncio.subprocess.Process] = []
    said: list[str] = []
    async with serve(tg) as served:
        try:
            w1 = await telewatch(served.address, one, "run", "--no-bot", "--worker", "w1")
            procs.append(w1)
            async with await Archive.open(pg_url) as a:

                async def w1_waits() -> bool:  # it holds the account, its check got the wait
                    row = (await L.leases(a)).get(L.account_unit("main"))
                    return bool(row and row.worker == "w1" and tg.failures[0].times == 0)

                await until("w1 waits out the flood wait at its login check", w1_waits)
                tg.clock.advance(flood)  # Telegram's side of the wait is over when w1's is
                w2 = await telewatch(served.address, two, "run", "--no-bot", "--worker", "w2")
                procs.append(w2)

                async def w1_follows() -> bool:  # at one moment: w1 holds it and is connected
                    row = (await L.leases(a)).get(L.account_unit("main"))
                    return bool(row and row.worker == "w1" and w1.pid in served.places(SELF_ID))

                await until("w1 follows the account once its wait is over", w1_follows,
                            flood + 3 * lease)  # fmt: skip
                assert w2.pid not in served.places(SELF_ID)  # w2 stood by
        finally:
            said += await ended(procs)
    assert served.duplicated == [], said
