"""Stopped workers (issue 18): a worker killed without a clean stop stays known, as stopped,
with when it was last seen; `health` names it only while units are left with it; an operator
retires its name with `telewatch workers forget NAME`, and `maintenance` forgets one unseen
for 7 days that holds nothing. On SQLite and on PostgreSQL where the code is generic."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_worker import expire, opener, settings  # noqa: F401

from archiver.cli import cli
from archiver.store import leases as L
from archiver.store.archive import Archive
from archiver.worker import CannotForget, Stopped, Worker, forget, forget_long_gone, stopped_workers
from archiver.worker import problems as worker_problems

WEB = [f"web{i}" for i in range(4)]
Opener = Callable[[], Awaitable[Archive]]
PAST = "2000-01-01 00:00:00.000"  # expire()'s time of death


async def test_forget_retires_a_stopped_name_and_refuses_a_live_or_unknown_one(
    opener: Opener,  # noqa: F811
) -> None:
    s = settings(*WEB)
    a = await opener()
    w1 = Worker(a, s, "w1", host="hostA", pid=101)
    await w1.start()  # alone: holds all four
    with pytest.raises(CannotForget) as err:
        await forget(a, s, "w1")
    assert str(err.value) == (
        "workers forget: worker w1 is running (pid 101 on hostA, seen within [workers]"
        " lease_seconds = 30); stop it first (SIGTERM or Ctrl-C: a clean stop forgets the name"
        " by itself)"
    )
    with pytest.raises(CannotForget) as err:
        await forget(a, s, "w7")
    assert str(err.value) == (
        "workers forget: no worker named 'w7' in the archive (workers: w1); `telewatch stats`"
        " lists them"
    )
    await expire(a, "w1")  # killed, and no other worker: its units are left with it
    [problem] = await worker_problems(a, s)
    assert problem.startswith("worker w1: no sign of life")
    assert (
        "nobody has taken over web:web0, web:web1, web:web2, web:web3 since (no worker is alive"
        " to take them)"
    ) in problem
    gone = await forget(a, s, "w1")
    assert gone == Stopped("w1", "hostA", 101, PAST, tuple(f"web:{c}" for c in WEB))
    assert await L.workers(a) == [] and await stopped_workers(a, s) == []
    assert await worker_problems(a, s) == []  # retired on purpose: no worker alive to blame
    w2 = Worker(await opener(), s, "w2")
    await w2.start()  # the next worker takes its units
    assert len(w2.held) == len(WEB)
    with pytest.raises(CannotForget, match="no worker named 'w1'"):
        await forget(a, s, "w1")  # once is enough


async def test_a_stopped_worker_holding_nothing_is_forgotten_after_7_days(
    opener: Opener,  # noqa: F811
) -> None:
    s = settings(*WEB)
    a = await opener()
    now = await L.db_now(a)
    for name, days in (("old", 8), ("recent", 6), ("holder", 8)):
        await L.register(a, name, "box", 1, 30, L.later(now, -days * 86400))
    # "holder" was the last to hold web:web0, and nobody has taken it since
    await L.acquire(a, "holder", ["web:web0"], 1, 30, L.later(now, -8 * 86400))
    assert await forget_long_gone(a, s) == ["old"]
    assert sorted(w.name for w in await stopped_workers(a, s)) == ["holder", "recent"]
    w1 = Worker(await opener(), s, "w1")
    await w1.start()  # takes web:web0 over: "holder" holds nothing now
    assert await forget_long_gone(a, s) == ["holder"]
    assert [w.name for w in await L.workers(a)] == ["recent", "w1"]


# ---------------------------------------------------------------------------- the CLI


def _cli(tmp_path: Path, *args: str) -> Result:
    config = tmp_path / "config.toml"
    config.write_text("".join(f'[[channels]]\nusername = "{c}"\nsource = "web"\n' for c in WEB))
    return CliRunner().invoke(cli, ["--config", str(config), "--db", str(tmp_path / "a.db"), *args])


async def _two_workers_one_killed(tmp_path: Path) -> None:
    """w1 killed with web:web0..1 taken over by w2 since; w3 killed holding web:web2..3."""
    s = settings(*WEB)
    async with await Archive.open(tmp_path / "a.db") as a:
        w1 = Worker(a, s, "w1", host="box1", pid=11)
        await w1.start()
        await w1.give_back(["web:web2", "web:web3"])
        await Worker(a, s, "w3", host="box3", pid=33).start()
        await expire(a, "w1")
        await Worker(a, s, "w2", host="box2", pid=22).start()
        await expire(a, "w3")


async def test_stats_lists_stopped_workers_with_when_they_were_last_seen(tmp_path: Path) -> None:
    await _two_workers_one_killed(tmp_path)
    text = await asyncio.to_thread(_cli, tmp_path, "stats")
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert (
        "worker w1: stopped, last seen 2000-01-01 00:00:00 UTC (pid 11 on box1); holds nothing"
        " (its units, if any, went to other workers)"
    ) in lines
    assert (
        "worker w3: stopped, last seen 2000-01-01 00:00:00 UTC (pid 33 on box3); nobody has"
        " taken over web:web2, web:web3 since"
    ) in lines
    js = await asyncio.to_thread(_cli, tmp_path, "stats", "--json")
    rows = [json.loads(line) for line in js.stdout.splitlines()]
    assert [r for r in rows if r.get("state") == "stopped"] == [
        {"worker": "w1", "state": "stopped", "last_seen": "2000-01-01T00:00:00Z",
         "host": "box1", "pid": 11, "left": []},
        {"worker": "w3", "state": "stopped", "last_seen": "2000-01-01T00:00:00Z",
         "host": "box3", "pid": 33, "left": ["web:web2", "web:web3"]},
    ]  # fmt: skip


async def test_workers_forget_on_the_command_line(tmp_path: Path) -> None:
    await _two_workers_one_killed(tmp_path)
    before = (tmp_path / "a.db").read_bytes()
    for name, line in (
        ("w2", "Error: workers forget: worker w2 is running (pid "),
        ("w9", "Error: workers forget: no worker named 'w9' in the archive (workers: w1, w2,"
               " w3); `telewatch stats` lists them"),
    ):  # fmt: skip
        refused = await asyncio.to_thread(_cli, tmp_path, "workers", "forget", name)
        assert refused.exit_code == 1, refused.output
        [got] = refused.stderr.splitlines()
        assert got.startswith(line) and "Traceback" not in refused.output
    assert (tmp_path / "a.db").read_bytes() == before
    done = await asyncio.to_thread(_cli, tmp_path, "workers", "forget", "w3")
    assert done.exit_code == 0, done.output
    assert done.stdout == (
        "worker w3 forgotten (last seen 2000-01-01 00:00:00 UTC); left free: web:web2, web:web3\n"
    )
    stats = await asyncio.to_thread(_cli, tmp_path, "stats")
    assert "worker w3" not in stats.stdout and "worker w1: stopped" in stats.stdout


async def test_maintenance_forgets_workers_long_gone(tmp_path: Path) -> None:
    await _two_workers_one_killed(tmp_path)  # w1 (holds nothing) and w3, gone since 2000
    result = await asyncio.to_thread(_cli, tmp_path, "maintenance")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(", stopped worker(s) forgotten: w1\n")
    async with await Archive.open(tmp_path / "a.db") as a:
        assert [w.name for w in await L.workers(a)] == ["w2", "w3"]
