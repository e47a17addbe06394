"""Break-it review of issue 18's workers (review18): what real operators and real passes do.

A ``sync --worker`` pass lasts as long as its channels need (a backfill, flood waits: minutes,
up to [schedule] pass_deadline_seconds = 600 by default) while a lease lasts [workers]
lease_seconds (60 by default). Nothing is timed here: the pass is held by the fake t.me's gate
until the database itself says the lease's expiry has passed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from test_ops_run import env, spawn  # noqa: F401
from test_ops_workers import WAIT, GatedTme, tme, until  # noqa: F401

from archiver.store import leases as L
from archiver.store.archive import Archive

LEASE = 1.0


def _config(tmp_path: Path, base: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        '[storage]\npath = "data/t.db"\n'
        "[schedule]\nheartbeat_seconds = 1\n"
        f"[workers]\nlease_seconds = {LEASE}\n"
        f'[web]\nbase_url = "{base}"\ndelay_seconds = 0\ntimeout_seconds = {WAIT}\n'
        '[[channels]]\nusername = "chan0"\nsource = "web"\nbackfill = "all"\n',
        encoding="utf-8",
    )
    return path


async def test_a_sync_worker_pass_longer_than_the_lease_keeps_what_it_reads(
    tmp_path: Path,
    tme: tuple[GatedTme, str],  # noqa: F811
) -> None:
    """`sync --worker w1` whose pass outlasts lease_seconds (nobody else running): the pass
    must keep its lease (renew it) and archive every post, not have its own writes refused
    as if another worker had taken the channel."""
    fake, base = tme
    ch = fake.channel("chan0", page_size=5, bare_id=1811111111)
    ch.add_texts(range(1, 21), "post {id}")
    cfg = _config(tmp_path, base)
    fake.gate.clear()  # the newest page at once, the older ones held
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "archiver", "--config", str(cfg), "sync", "--worker", "w1",
        cwd=tmp_path, env=env(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        db = tmp_path / "data" / "t.db"

        async def expired() -> bool:
            if not db.exists():
                return False
            async with await Archive.open(db) as a:
                rows = await L.leases(a)
                row = rows.get(L.web_unit("chan0"))
                now = await L.db_now(a)
                # the first term of the lease is over (acquired_at stays as it is renewed)
                return (row is not None and row.worker == "w1"
                        and now > L.later(row.acquired_at, LEASE))  # fmt: skip

        await until("the pass outlived its lease", expired)
        fake.gate.set()
        _, err = await asyncio.wait_for(proc.communicate(), WAIT)
    finally:
        fake.gate.set()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = err.decode()
    assert proc.returncode == 0, text
    assert "no longer holds" not in text
    async with await Archive.open(db) as a:
        assert [tuple(r) for r in await a.fetchall("SELECT count(*) FROM posts")] == [(20,)]
