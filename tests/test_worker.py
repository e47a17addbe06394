"""Workers sharing one archive (archiver/worker.py), on SQLite and on PostgreSQL: fair shares,
giving back to a newcomer, taking over a dead worker's units, and the fence: a worker whose
lease ran out writes nothing (no version, no alert, no entry of the observation log)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pg import BACKENDS, new_database

from archiver.channels import parse_ref
from archiver.config import ChannelConfig, Settings, WorkersSettings
from archiver.models import ChannelInfo, Post, Rule
from archiver.rules import RuleLoader
from archiver.store import leases as L
from archiver.store.archive import Archive
from archiver.store.channels import upsert_channel
from archiver.store.deletions import mark_deleted
from archiver.store.ingest import ingest
from archiver.worker import Following, Worker, check_name, following, unit_of
from archiver.worker import problems as worker_problems

CH = -1001811111111
DAY = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
WEB = [f"web{i}" for i in range(5)]


def settings(*names: str, telethon: tuple[str, ...] = ()) -> Settings:
    channels = tuple(ChannelConfig(parse_ref(n), source="web") for n in names) + tuple(
        ChannelConfig(parse_ref(n), source="telethon") for n in telethon
    )
    return Settings(channels=channels, workers=WorkersSettings(lease_seconds=30))


@pytest.fixture(params=BACKENDS)
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[object]:
    """Opens connections to one archive (each like another process's)."""
    where: str | Path = tmp_path / "a.db"
    if request.param == "postgresql":
        where = new_database(request.getfixturevalue("pg_server"))
    opened: list[Archive] = []

    async def open_one() -> Archive:
        opened.append(await Archive.open(where))
        return opened[-1]

    yield open_one
    for a in opened:
        await a.close()


async def expire(archive: Archive, worker: str) -> None:
    """``worker`` paused past its leases' expiry (and its heartbeat stopped)."""
    past = "2000-01-01 00:00:00.000"
    await archive.write("UPDATE leases SET expires_at = ? WHERE worker = ?", (past, worker))
    await archive.write("UPDATE workers SET seen_at = ? WHERE name = ?", (past, worker))


async def holders(archive: Archive) -> dict[str, str]:
    now = await L.db_now(archive)
    return {u: r.worker for u, r in (await L.leases(archive)).items() if r.held_at(now)}


async def test_workers_split_the_units_fairly_and_give_back_to_a_newcomer(opener) -> None:  # type: ignore[no-untyped-def]
    s = settings(*WEB, telethon=("vsaldo",))  # 6 units: 5 web, account:main
    a1, a2, a3 = await opener(), await opener(), await opener()
    w1 = Worker(a1, s, "w1")
    change = await w1.start()
    assert len(change.gained) == 6  # alone: everything
    w2 = Worker(a2, s, "w2")
    await w2.start()
    assert w2.held == set()  # w1 still holds all; w2 waits for w1 to give back
    change = await w1.tick()  # two live workers: a share of 3
    assert len(change.extra) == 3 and not change.lost
    await w1.give_back(change.extra)
    await w2.tick()
    assert len(w2.held) == 3 and not (w1.held & w2.held)
    w3 = Worker(a3, s, "w3")
    await w3.start()
    for w in (w1, w2):
        c = await w.tick()  # a share of 2 each now
        await w.give_back(c.extra)
    await w3.tick()
    assert [len(w.held) for w in (w1, w2, w3)] == [2, 2, 2]
    assert await holders(a1) == {u: w.name for w in (w1, w2, w3) for u in w.held}


async def test_a_dead_workers_units_move_to_the_others(opener) -> None:  # type: ignore[no-untyped-def]
    s = settings(*WEB, telethon=("vsaldo",))
    w1, w2 = Worker(await opener(), s, "w1"), Worker(await opener(), s, "w2")
    await w1.start()
    await w2.start()
    await w1.give_back((await w1.tick()).extra)
    await w2.tick()
    dead = set(w1.held)
    await expire(w2.archive, "w1")  # w1 was killed: no renewal, no heartbeat
    change = await w2.tick()  # one live worker: everything
    assert change.gained == dead
    assert w2.held == {L.web_unit(n) for n in WEB} | {"account:main"}
    # w1 comes back (it was only paused): its units are lost, stopped at once
    change = await w1.tick()
    assert change.lost == dead and w1.held == set()


async def test_a_clean_stop_frees_the_units_at_once(opener) -> None:  # type: ignore[no-untyped-def]
    s = settings(*WEB)
    w1, w2 = Worker(await opener(), s, "w1"), Worker(await opener(), s, "w2")
    await w1.start()
    await w2.start()
    await w1.stop()
    change = await w2.tick()  # no wait for an expiry: w1 is gone, w2's share is everything
    assert len(change.gained) == len(WEB)
    assert {w.name for w in await L.workers(w2.archive)} == {"w2"}


async def test_a_worker_whose_lease_ran_out_writes_nothing(opener) -> None:  # type: ignore[no-untyped-def]
    """The fence: w1 read a page, paused past its expiry; w2 took the channel over and
    archived an edit. w1's stale batch (the old text, and a new post) must not land: no
    'revert', no alert, no log entry twice."""
    s = settings("vsaldo")
    rules = [Rule("evac", "эвакуация", notify=(1,))]
    a1, a2 = await opener(), await opener()
    await upsert_channel(a1, ChannelInfo(id=CH, username="vsaldo"), source="web")
    w1, w2 = Worker(a1, s, "w1"), Worker(a2, s, "w2")
    for w in (w1, w2):
        RuleLoader(rules).install(w.archive)
        w.archive.fence = w.fence
    await w1.start()
    await w2.start()
    assert w1.held == {"web:vsaldo"} and w2.held == set()

    first = Post(CH, 1, DAY, "эвакуация в 10:00")
    await ingest(a1, [first], source="web", alerts=True)
    await expire(a2, "w1")
    assert (await w2.tick()).gained == {"web:vsaldo"}
    edited = replace(first, text="эвакуация в 12:00", edit_date=DAY.replace(hour=11))
    await ingest(a2, [edited], source="web", alerts=True)
    before = await counts(a2)
    assert before == {"versions": 2, "alerts": 2, "observations": 2, "post_events": 1,
                      "posts": 1}  # fmt: skip

    stale = [first, Post(CH, 2, DAY, "эвакуация завершена")]
    with pytest.raises(L.LeaseLost, match=r"worker w1: no longer holds web:vsaldo"):
        await ingest(a1, stale, source="web", alerts=True)
    with pytest.raises(L.LeaseLost):
        await mark_deleted(a1, CH, [1], how="live", alerts=True)
    assert await counts(a2) == before
    # w2, which holds it, writes the new post (once, with its alert and its log entry)
    await ingest(a2, stale[1:], source="web", alerts=True)
    after = await counts(a2)
    assert (after["posts"], after["alerts"], after["observations"]) == (2, 3, 3)


async def test_an_expired_lease_nobody_took_is_not_written_under_either(opener) -> None:  # type: ignore[no-untyped-def]
    s = settings("vsaldo")
    a1 = await opener()
    await upsert_channel(a1, ChannelInfo(id=CH, username="vsaldo"), source="web")
    w1 = Worker(a1, s, "w1")
    a1.fence = w1.fence
    await w1.start()
    await expire(a1, "w1")
    with pytest.raises(L.LeaseLost):
        await ingest(a1, [Post(CH, 1, DAY, "x")], source="web", alerts=False)
    await w1.tick()  # renewed (nobody took it): writing again
    await ingest(a1, [Post(CH, 1, DAY, "x")], source="web", alerts=False)
    assert (await counts(a1))["posts"] == 1


async def counts(archive: Archive) -> dict[str, int]:
    out = {}
    for table in ("posts", "versions", "alerts", "observations", "post_events"):
        row = await archive.fetchone(f"SELECT count(*) FROM {table}")
        assert row is not None
        out[table] = int(row[0])
    return out


async def test_one_worker_name_runs_once(opener) -> None:  # type: ignore[no-untyped-def]
    s = settings(*WEB)
    await Worker(await opener(), s, "w1", pid=1001).start()
    with pytest.raises(L.WorkerNameInUse, match="worker w1 is already running"):
        await Worker(await opener(), s, "w1", pid=1002).start()


def test_units_of_channels() -> None:
    web = ChannelConfig(parse_ref("testograd"), source="web")
    tg = ChannelConfig(parse_ref("vsaldo"), source="telethon")
    assert unit_of(web, None) == "web:testograd"
    assert unit_of(tg, None) == "account:main"  # before [[accounts]]: one account
    assert unit_of(tg, {"vsaldo": "desk2"}) == "account:desk2"
    assert unit_of(tg, {}) is None  # no account has room for it yet


@pytest.mark.parametrize("name", ["", "-x", "a b", "w" * 65, "w/1"])
def test_bad_worker_names_are_refused(name: str) -> None:
    from archiver.errors import ConfigError

    with pytest.raises(ConfigError, match="--worker"):
        check_name(name)


@pytest.mark.parametrize("command", ["run", "sync", "recheck"])
def test_a_bad_worker_name_on_the_command_line_is_one_line_and_changes_nothing(
    tmp_path: Path, command: str
) -> None:
    from click.testing import CliRunner

    from archiver.cli import cli

    db = tmp_path / "a.db"

    async def fill() -> None:
        async with await Archive.open(db) as a:
            await upsert_channel(a, ChannelInfo(id=CH, username="vsaldo"), source="web")
            await ingest(a, [Post(CH, 1, datetime(2024, 5, 1, tzinfo=UTC), "Евакуація")],
                         source="web", alerts=False)  # fmt: skip

    asyncio.run(fill())
    before = db.read_bytes()
    config = tmp_path / "config.toml"
    config.write_text('[[channels]]\nusername = "vsaldo"\nsource = "web"\n')
    result = CliRunner().invoke(
        cli, ["--config", str(config), "--db", str(db), command, "--worker", "a b"]
    )
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: --worker") and "Traceback" not in result.output
    assert db.read_bytes() == before  # nothing opened, nothing changed


async def test_health_names_a_silent_worker_while_its_units_are_left_with_it(opener) -> None:  # type: ignore[no-untyped-def]
    from archiver.health import check_health
    from archiver.worker import Stopped, stopped_workers

    s = settings(*WEB)
    a = await opener()
    w1, w2 = Worker(a, s, "w1", host="hostA", pid=101), Worker(await opener(), s, "w2")
    await w1.start()
    await w2.start()
    await w1.give_back((await w1.tick()).extra)  # w1 keeps 3 of 5, w2 takes the 2 given back
    await w2.tick()
    assert await worker_problems(a, s) == []
    await expire(a, "w1")  # w1 killed
    left = ", ".join(sorted(w1.held))
    [problem] = await worker_problems(a, s)  # its units in one line, not twice
    assert problem.startswith("worker w1: no sign of life for ")
    assert "(pid 101 on hostA; [workers] lease_seconds = 30): killed, crashed or stuck" in problem
    assert (
        f"nobody has taken over {left} since (a live worker does within 30 s, an account"
        " within 40 s)"
    ) in problem
    assert "`telewatch run --worker w1`" in problem
    assert "`telewatch workers forget w1`" in problem
    report = await check_health(a, s, process=None)
    assert problem in report.problems
    await w2.tick()  # w2 takes them over: w1 no longer matters to health
    assert await worker_problems(a, s) == []
    assert "worker w1" not in "\n".join((await check_health(a, s, process=None)).problems)
    # ... but it is still known, as stopped, with when it was last seen
    assert await stopped_workers(a, s) == [
        Stopped("w1", "hostA", 101, "2000-01-01 00:00:00.000", ())
    ]
    await w1.start()  # w1 is back (the same name, as its process was restarted)
    assert await worker_problems(a, s) == []
    assert await stopped_workers(a, s) == []


async def test_units_nobody_holds_are_named_while_a_worker_is_alive(opener) -> None:  # type: ignore[no-untyped-def]
    s = settings(*WEB)
    a = await opener()
    w1 = Worker(a, s, "w1")
    await w1.start()
    await w1.give_back(["web:web0", "web:web1"])  # released by a live worker: nobody's now
    assert await worker_problems(a, s) == [
        "units nobody holds: web:web0, web:web1; the live workers take them within 30 s (an"
        " account: 40 s), unless each already has its share (start another worker)"
    ]
    await w1.tick()
    assert await worker_problems(a, s) == []


async def test_following_names_the_worker_of_each_channel(opener) -> None:  # type: ignore[no-untyped-def]
    s = settings("chan0", "chan1", telethon=("vsaldo",))
    a = await opener()
    assert await following(a, s) is None  # no worker ever ran here: `sync` from cron
    w1 = Worker(a, s, "w1")
    await w1.start()
    await w1.give_back(["web:chan1"])
    rows = await following(a, s)
    assert rows == [
        Following("chan0", "web", "web:chan0", "w1"),
        Following("chan1", "web", "web:chan1", None),
        Following("vsaldo", "telethon", "account:main", "w1"),
    ]


async def test_stats_shows_the_worker_following_each_channel(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from archiver.cli import cli

    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\npath = "{tmp_path / "a.db"}"\n'
        '[[channels]]\nusername = "vsaldo"\nsource = "web"\n'
        '[[channels]]\nusername = "chan1"\nsource = "web"\n'
    )
    s = settings("vsaldo", "chan1")
    async with await Archive.open(tmp_path / "a.db") as a:
        await upsert_channel(a, ChannelInfo(id=CH, username="vsaldo"), source="web")
        before = await asyncio.to_thread(CliRunner().invoke, cli, ["--config", str(config),
                                                                   "stats"])  # fmt: skip
        assert before.exit_code == 0 and "worker" not in before.output  # no leases: as before
        w1 = Worker(a, s, "w1")
        await w1.start()
        await w1.give_back(["web:chan1"])
    text = await asyncio.to_thread(CliRunner().invoke, cli, ["--config", str(config), "stats"])
    assert text.exit_code == 0, text.output
    assert "worker w1 follows: vsaldo\nfollowed by no worker now: chan1\n" in text.output
    out = await asyncio.to_thread(CliRunner().invoke, cli, ["--config", str(config), "stats",
                                                            "--json"])  # fmt: skip
    rows = [json.loads(line) for line in out.output.splitlines()]
    assert {r["channel"]: r["worker"] for r in rows if "channel" in r} == {
        "vsaldo": "w1",
        "chan1": None,
    }


async def test_sync_with_a_worker_name_syncs_its_share_and_gives_it_back(tmp_path: Path) -> None:
    """`sync --worker w1` (cron on several machines): the channels another worker holds are
    left to it; w1's share is synced, then released."""
    import os
    import subprocess
    import sys

    from fakes.tme import FakeTme
    from fakes.tme_http import serve_tme

    fake = FakeTme()
    names = ["chan0", "chan1", "chan2", "chan3"]
    for i, n in enumerate(names):
        fake.channel(n, page_size=5, bare_id=1811111111 + i).add_texts(range(1, 4), n + " {id}")
    s = settings(*names)
    async with await Archive.open(tmp_path / "a.db") as a:  # w2 runs elsewhere, holding two
        await L.register(a, "w2", "box2", 7, 30, await L.db_now(a))
        await L.acquire(a, "w2", ["web:chan0", "web:chan1"], 2, 600, await L.db_now(a))
    with serve_tme(fake) as base:
        (tmp_path / "config.toml").write_text(
            f'[storage]\npath = "{tmp_path / "a.db"}"\n[web]\nbase_url = "{base}"\n'
            "delay_seconds = 0\n"
            + "".join(
                f'[[channels]]\nusername = "{n}"\nsource = "web"\nbackfill = "all"\n' for n in names
            )
        )
        env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "TELEWATCH_CONFIG": ""}
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "archiver", "--config", str(tmp_path / "config.toml"),
             "sync", "--worker", "w1"],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "chan2: ok, 3 new" in done.stdout and "chan3: ok, 3 new" in done.stdout
    assert "chan0" not in done.stdout and "chan1" not in done.stdout
    async with await Archive.open(tmp_path / "a.db") as a:
        assert await holders(a) == {"web:chan0": "w2", "web:chan1": "w2"}  # w1's released
        assert [w.name for w in await L.workers(a)] == ["w2"]
    assert s.workers.lease_seconds == 30


@pytest.mark.parametrize("at_once", [True, False])
async def test_an_account_whose_lease_runs_out_is_disconnected_before_anything_else(
    tmp_path: Path, at_once: bool
) -> None:
    """A unit lost or about to run out (``at_once``) is disconnected first: its live listener
    may be stuck on the database this worker cannot reach, and another worker is about to
    connect the session. A unit given back cleanly lets its live listener finish first."""
    from archiver.units import Units, _Account

    order: list[str] = []

    class Client:  # stands in for TelegramClient.disconnect (telegrambaseclient.py)
        async def disconnect(self) -> None:
            order.append("disconnect")

    async def listener(stop: asyncio.Event) -> None:
        await stop.wait()
        await asyncio.sleep(0.2)  # a listener that takes a moment to end (or is stuck)
        order.append("listener ended")

    async with await Archive.open(tmp_path / "a.db") as a:
        worker = Worker(a, settings(telethon=("chan",)), "w1")
        never: Any = None  # the client is there already: nothing opens one
        units = Units(
            a, worker.settings, worker, asyncio.Event(), open_client=never,
            failed=lambda *_: None, catch_up=lambda: None, session_locks=False,
        )  # fmt: skip
        acc = _Account(client=Client(), ready=True)
        acc.live = asyncio.create_task(listener(acc.stop))
        units.accounts["main"] = acc
        await units.stop(L.account_unit("main"), at_once=at_once)
    expected = ["disconnect", "listener ended"] if at_once else ["listener ended", "disconnect"]
    assert order == expected
    assert "main" not in units.accounts
