"""The outbox on PostgreSQL with several bots (issue 18): each alert is claimed, and so sent,
by exactly one of them, and no bot waits for another's claim (``FOR UPDATE SKIP LOCKED``)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import psycopg
from botkit import GROUP, MEMBER, OTHER_MEMBER, queue_alerts, seed_channel

from archiver.store import outbox
from archiver.store.archive import Archive

LATER = datetime.now(UTC) + timedelta(days=1)


async def _claim_all(archive: Archive, rows: list[outbox.AlertRow]) -> list[int]:
    sent: list[int] = []
    for row in rows:
        what, _ = await outbox.claim(archive, row, now=LATER)
        if what is outbox.Claim.SEND:
            sent.append(row.id)
        await asyncio.sleep(0)  # let the other bot's claims in between
    return sent


async def test_two_bots_claim_every_alert_exactly_once(pg_url: str) -> None:
    async with await Archive.open(pg_url) as one, await Archive.open(pg_url) as two:
        await seed_channel(one)
        texts = [f"война {i}" for i in range(40)]
        queued = await queue_alerts(one, texts, [MEMBER, OTHER_MEMBER, GROUP])
        assert queued == 120
        rows_one = await outbox.pending(one, 1000, LATER)
        rows_two = await outbox.pending(two, 1000, LATER)  # both bots read the same alerts
        assert len(rows_one) == len(rows_two) == 120
        a, b = await asyncio.gather(
            _claim_all(one, rows_one), _claim_all(two, list(reversed(rows_two)))
        )
        claimed = Counter(a + b)
        assert set(claimed) == {r.id for r in rows_one}
        assert set(claimed.values()) == {1}  # every alert by exactly one bot
        assert a and b  # both took part
        left = await one.fetchall("SELECT DISTINCT status FROM alerts")
        assert [r[0] for r in left] == ["sending"]


async def test_a_claim_skips_an_alert_another_bot_holds_instead_of_waiting(pg_url: str) -> None:
    async with await Archive.open(pg_url) as bot:
        await seed_channel(bot)
        await queue_alerts(bot, ["война"], [MEMBER])
        (row,) = await outbox.pending(bot, 10, LATER)
        # Without SKIP LOCKED the claim would wait for the lock: it fails after 2 s instead
        await bot.db.execute("SET lock_timeout = '2s'")
        async with await psycopg.AsyncConnection.connect(pg_url) as other:
            await other.execute("SELECT id FROM alerts WHERE id = %s FOR UPDATE", (row.id,))
            assert await outbox.claim(bot, row, now=LATER) == (outbox.Claim.GONE, None)
            await other.rollback()  # the other bot's claim did not happen after all
        assert await outbox.claim(bot, row, now=LATER) == (outbox.Claim.SEND, None)
