"""Break-it review of the hand-over grace (commit 80e9bb3, issue 18): paths where one Telegram
account's session can still be connected from two processes at once.

Each test is a claim about what must hold, checked against real processes and a real
PostgreSQL (tests/pg.py) or the real :class:`archiver.units.Units`; the fake Telegram counts a
session used in two places in ``served.duplicated`` (tests/fakes/telethon_remote.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pg import pg_server, pg_url  # noqa: F401
from test_ops_workers import until
from test_worker_faults import PgCut, _telewatch_pg, _took_over, _two_machines

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
        finally:
            for p in procs:
                if p.returncode is None:
                    p.kill()
                _, err = await p.communicate()
                said.append(err.decode())
    assert served.duplicated == [], said


def _use(folder: Path, url: str) -> None:
    """The folder's config on the PostgreSQL archive at ``url``."""
    cfg = folder / "config.toml"
    cfg.write_text(cfg.read_text().replace('path = "data/t.db"', f'url = "{url}"'))
