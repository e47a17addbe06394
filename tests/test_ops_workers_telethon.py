"""Three ``telewatch run --worker wN`` processes with two Telegram accounts (issue 18): each
account (its session and its channels) is one unit, followed by one process at a time. The
processes talk to one fake Telegram shared over loopback (tests/fakes/telethon_remote.py),
which answers AUTH_KEY_DUPLICATED, as Telegram does, when one session is used from two
processes at once. The worker holding ``desk1`` is killed with SIGKILL; the standing-by worker
takes the account over once its lease expires, and the posts published meanwhile are archived,
each exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from fakes.telethon_client import SELF_ID, FakeTelegram
from fakes.telethon_remote import serve

from archiver.store import leases as L
from archiver.store.archive import Archive

ROOT = Path(__file__).resolve().parents[1]
REMOTE = ROOT / "tests" / "fakes" / "telethon_remote.py"
DESK2 = 555000222
ACCOUNTS = {"desk1": SELF_ID, "desk2": DESK2}
CHANNELS = {"alpha": (1811111101, "desk1"), "bravo": (1811111102, "desk2")}
LEASE = 2.0
WAIT = 180.0  # the generous bound of every wait (seconds)


def env(url: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("TELEWATCH_")}
    e.update(NO_PROXY="127.0.0.1,localhost", PYTHONUNBUFFERED="1", TELEWATCH_DATABASE_URL=url)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    return e


def setup(folder: Path, tg: FakeTelegram) -> Path:
    (folder / "data").mkdir(parents=True)
    accounts = ""
    for name, user in ACCOUNTS.items():
        tg.session_file(folder / "data" / f"{name}.session", user)
        accounts += f'[[accounts]]\nname = "{name}"\nsession = "data/{name}.session"\n'
    channels = "".join(
        f'[[channels]]\nusername = "{c}"\nbackfill = "all"\naccount = "{acct}"\n'
        for c, (_, acct) in CHANNELS.items()
    )
    config = folder / "config.toml"
    config.write_text(
        '[storage]\npath = "data/t.db"\n'
        '[telegram]\napi_id = 12345\napi_hash = "0123456789abcdef0123456789abcdef"\n'
        '[schedule]\nheartbeat_seconds = 1\nsync = "* * * * *"\nrecheck = ""\n'
        f"[workers]\nlease_seconds = {LEASE}\n{accounts}{channels}"
    )
    return config


async def until(what: str, check: object) -> object:
    deadline = time.monotonic() + WAIT
    while True:
        got = await check()  # type: ignore[operator]
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT:g} s: {what}")
        await asyncio.sleep(0.05)


async def counts(a: Archive) -> dict[str, tuple[int, int]]:
    """channel -> (posts, distinct message ids)."""
    rows = await a.fetchall(
        "SELECT c.username, count(p.id), count(DISTINCT p.message_id) FROM channels c"
        " JOIN posts p ON p.channel_id = c.id GROUP BY c.username"
    )
    return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}


async def test_an_account_moves_to_another_worker_when_its_holder_is_killed(
    tmp_path: Path, pg_url: str
) -> None:
    tg = FakeTelegram()
    tg.add_account(DESK2)
    for name, (bare, _) in CHANNELS.items():
        tg.add_channel(bare, name, name.title())
        tg.posts(5, bare_id=bare, text=name + " {}")
    config = setup(tmp_path, tg)
    procs: dict[str, asyncio.subprocess.Process] = {}
    async with serve(tg) as served:
        try:
            for n in ("w1", "w2", "w3"):
                procs[n] = await asyncio.create_subprocess_exec(
                    sys.executable, str(REMOTE), served.address, "--", "--config", str(config),
                    "run", "--no-bot", "--worker", n, cwd=tmp_path, env=env(pg_url),
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
            async with await Archive.open(pg_url) as a:

                async def both_held() -> dict[str, str] | None:
                    now = await L.db_now(a)
                    held = {u: r.worker for u, r in (await L.leases(a)).items()
                            if r.held_at(now)}  # fmt: skip
                    ok = set(held) == {"account:desk1", "account:desk2"}
                    return held if ok and len(set(held.values())) == 2 else None

                async def archived(n: int) -> bool:
                    got = await counts(a)
                    return all(got.get(c) == (n, n) for c in CHANNELS)

                held = await until("each account held by its own worker", both_held)
                await until("the first posts archived", lambda: archived(5))
                victim = held["account:desk1"]  # type: ignore[index]
                procs[victim].send_signal(signal.SIGKILL)
                await procs[victim].wait()
                for name, (bare, _) in CHANNELS.items():  # published while desk1 is orphaned
                    for i in range(6, 9):
                        tg.post(f"{name} {i}", bare_id=bare)

                async def taken_over() -> str | None:
                    now = await L.db_now(a)
                    lease = (await L.leases(a))["account:desk1"]
                    alive = lease.held_at(now) and lease.worker != victim
                    return lease.worker if alive else None

                heir = await until("desk1 taken over", taken_over)
                assert heir != victim
                await until("the posts of the gap archived", lambda: archived(8))
                assert await counts(a) == dict.fromkeys(CHANNELS, (8, 8))
                row = await a.fetchone("SELECT count(*), count(DISTINCT post_id) FROM observations"
                                       " WHERE kind = 'seen'")  # fmt: skip
                assert row is not None and tuple(row) == (16, 16)
                # desk1 was used from the victim, then from its heir: never two at once
                assert served.duplicated == []
                assert procs[str(heir)].pid in served.places(SELF_ID)
        finally:
            for p in procs.values():
                if p.returncode is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs.values():
                await asyncio.wait_for(p.wait(), 30)
    assert all(p.returncode == 0 for n, p in procs.items() if n != victim)


async def test_recheck_with_a_worker_name_rereads_only_the_accounts_it_holds(
    tmp_path: Path, pg_url: str
) -> None:
    """`recheck --worker w1` on a cron while w2 holds desk2 elsewhere: w1 re-reads desk1's
    channels (an edit made while nobody listened is recorded) and never uses desk2's session."""
    tg = FakeTelegram()
    tg.add_account(DESK2)
    for name, (bare, _) in CHANNELS.items():
        tg.add_channel(bare, name, name.title())
        tg.posts(3, bare_id=bare, text=name + " {}")
    config = setup(tmp_path, tg)

    async def telewatch(served_at: str, *args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(REMOTE), served_at, "--", "--config", str(config), *args,
            cwd=tmp_path, env=env(pg_url), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), WAIT)
        assert proc.returncode is not None
        return proc.returncode, err.decode()

    async with serve(tg) as served:
        code, said = await telewatch(served.address, "sync", "--worker", "w1")
        assert code == 0, said
        for name, (bare, _) in CHANNELS.items():  # edited while nobody listened
            tg.edit(2, f"{name} 2 edited", bare_id=bare, push=False)
        async with await Archive.open(pg_url) as a:  # w2 runs elsewhere, holding desk2
            now = await L.db_now(a)
            await L.register(a, "w2", "box2", 7, 600, now)
            await L.acquire(a, "w2", ["account:desk2"], 1, 600, now)
        sent_before = len(tg.sent_by)
        code, said = await telewatch(served.address, "recheck", "--worker", "w1")
        assert code == 0, said
        async with await Archive.open(pg_url) as a:
            rows = await a.fetchall(
                "SELECT c.username, v.text FROM versions v JOIN posts p ON p.id = v.post_id"
                " JOIN channels c ON c.id = p.channel_id WHERE p.message_id = 2 ORDER BY v.id"
            )
    texts = [(str(r[0]), str(r[1])) for r in rows]
    assert ("alpha", "alpha 2 edited") in texts  # desk1's channel re-read by w1
    assert ("bravo", "bravo 2 edited") not in texts  # desk2's is w2's
    assert {acc for acc, _ in tg.sent_by[sent_before:]} == {SELF_ID}  # desk1's session only
    assert served.duplicated == []
