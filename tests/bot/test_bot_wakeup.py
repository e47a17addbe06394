"""Alerts queued by another process wake the bot at once (issue 18, archiver/store/wakeup.py):
LISTEN/NOTIFY on PostgreSQL, ``PRAGMA data_version`` on SQLite; the poll stays the fallback.

No timings here (bench/bench_latency.py measures them): the bots poll every 60 s, and each
test requires delivery within a time-out far below that, which only a wake-up can give.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from botkit import MEMBER, OTHER_MEMBER, fake_api, queue_alerts, running_bot, seed_channel
from fakes.botapi import FakeBotApi

from archiver.store.archive import Archive
from archiver.store.wakeup import APPLICATION_NAME, Listener

SLOW_POLL = 60.0  # the fallback poll: far beyond every time-out below
WITHIN = 20.0  # a functional time-out, not a timing claim

TESTS = Path(__file__).resolve().parents[1]
CHILD = f"""
import asyncio, sys
sys.path[:0] = [{str(TESTS)!r}, {str(TESTS / "bot")!r}]
from botkit import MEMBER, queue_alerts
from archiver.store.archive import Archive

async def main() -> None:
    async with await Archive.open(sys.argv[1]) as archive:
        print(await queue_alerts(archive, ["война в другом процессе"], [MEMBER], first_id=500))

asyncio.run(main())
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the archive is: a SQLite file, or a new PostgreSQL database (tests/pg.py)."""
    if request.param == "sqlite":
        return str(tmp_path / "a.db")
    return str(request.getfixturevalue("pg_url"))


async def _archive(location: str) -> Archive:
    archive = await Archive.open(location)
    await seed_channel(archive)
    return archive


async def _status(archive: Archive, status: str) -> None:
    while [tuple(r) for r in await archive.fetchall("SELECT DISTINCT status FROM alerts")] != [
        (status,)
    ]:
        await asyncio.sleep(0.02)


def _sent(api: FakeBotApi) -> list[str]:
    return [c.text for c in api.sent()]


async def test_an_alert_queued_by_another_process_is_sent_without_waiting_for_the_poll(
    location: str, tmp_path: Path
) -> None:
    archive = await _archive(location)
    try:
        async with fake_api() as api, running_bot(api, archive, tmp_path / "a.db",
                                                  poll_seconds=SLOW_POLL):  # fmt: skip
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CHILD, location, stdout=asyncio.subprocess.PIPE
            )
            out, _ = await asyncio.wait_for(proc.communicate(), WITHIN)
            assert proc.returncode == 0 and out.strip() == b"1"  # one alert queued there
            (call,) = await api.wait_for(chat_id=MEMBER, timeout=WITHIN)
            assert "другом процессе" in call.text
    finally:
        await archive.close()


async def test_a_dropped_listen_connection_is_made_again_and_nothing_is_lost(
    pg_url: str, tmp_path: Path
) -> None:
    bot_archive = await _archive(pg_url)
    try:
        async with (
            fake_api() as api,
            running_bot(api, bot_archive, tmp_path / "a.db", poll_seconds=SLOW_POLL) as h,
            await Archive.open(pg_url) as archiver,  # another process's connection
        ):
            delivery = h.runner.app.bot_data["telewatch"].delivery
            listener = delivery.watcher
            assert isinstance(listener, Listener)
            await asyncio.wait_for(listener.listening.wait(), WITHIN)
            assert await queue_alerts(archiver, ["война 1"], [MEMBER], first_id=1) == 1
            await api.wait_for(chat_id=MEMBER, timeout=WITHIN)

            # The server drops the listener's connection (a restart, a failover, an idle
            # time-out); an alert is queued before it is back: its NOTIFY reaches nobody.
            async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
                cur = await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = %s AND datname = current_database()",
                    (APPLICATION_NAME,),
                )
                assert [r[0] for r in await cur.fetchall()] == [True]
            assert await queue_alerts(archiver, ["война 2"], [MEMBER], first_id=2) == 1
            await api.wait_for(chat_id=MEMBER, count=2, timeout=WITHIN)
            assert listener.connections == 2  # it is listening again: the next one wakes it
            assert await queue_alerts(archiver, ["война 3"], [MEMBER], first_id=3) == 1
            await api.wait_for(chat_id=MEMBER, count=3, timeout=WITHIN)
        assert len(_sent(api)) == 3  # each once
    finally:
        await bot_archive.close()


async def test_a_missed_wakeup_is_caught_by_the_poll(location: str, tmp_path: Path) -> None:
    """An alert made due again behind the wake-ups' back (no NOTIFY, no new alert id) still
    goes out at the next poll: the wake-ups never replace it. (A guard: this passed before the
    wake-ups too.)"""
    archive = await _archive(location)
    try:
        async with (
            fake_api() as api,
            running_bot(api, archive, tmp_path / "a.db", poll_seconds=0.2),
            await Archive.open(location) as other,
        ):
            assert await queue_alerts(other, ["война"], [MEMBER]) == 1
            await api.wait_for(chat_id=MEMBER, timeout=WITHIN)
            await asyncio.wait_for(_status(other, "sent"), WITHIN)  # its outcome is recorded
            await other.write("UPDATE alerts SET status = 'pending', tg_message_id = NULL")
            await api.wait_for(chat_id=MEMBER, count=2, timeout=WITHIN)
    finally:
        await archive.close()


async def test_two_bots_woken_together_send_each_alert_once(pg_url: str, tmp_path: Path) -> None:
    one, two = await _archive(pg_url), await Archive.open(pg_url)
    try:
        async with (
            fake_api() as api_one,
            fake_api() as api_two,  # one Bot API each: one token cannot poll updates twice
            running_bot(api_one, one, tmp_path / "1.db", poll_seconds=SLOW_POLL),
            running_bot(api_two, two, tmp_path / "2.db", poll_seconds=SLOW_POLL),
            await Archive.open(pg_url) as archiver,
        ):
            queued = 0
            for batch in range(10):  # ten commits, each NOTIFYing both bots at once
                texts = [f"война {batch}.{i}" for i in range(3)]
                queued += await queue_alerts(
                    archiver, texts, [MEMBER, OTHER_MEMBER], first_id=1 + batch * 3
                )
            assert queued == 60

            async def total() -> None:
                while len(_sent(api_one)) + len(_sent(api_two)) < queued:
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(total(), WITHIN)
            await asyncio.sleep(0.5)  # a second send of any alert would arrive now
            rows = await archiver.fetchall("SELECT status, count(*) FROM alerts GROUP BY status")
        sent = [(c.chat_id, c.text) for api in (api_one, api_two) for c in api.sent()]
        assert len(sent) == 60 and set(Counter(sent).values()) == {1}
        assert [tuple(r) for r in rows] == [("sent", 60)]
    finally:
        await one.close()
        await two.close()
