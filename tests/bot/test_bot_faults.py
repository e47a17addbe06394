"""The bot never sends an alert twice when it cannot write (issue 15, item 2).

Faults, each injected right after Telegram accepted the first alert (so the outcome of a
message that went out cannot be recorded):

- the archive's write lock held by another process (``BEGIN IMMEDIATE`` from a second
  connection), beyond the busy time-out;
- a full database (``PRAGMA max_page_count``: the alert's page cannot grow, as on a full disk);
- a full filesystem (a size-capped tmpfs; needs root to mount, skipped otherwise).

Each time: at most one copy of every alert while the fault lasts (the poll runs many times
meanwhile), delivery paused with a marker that ``telewatch health`` reports, and once the
fault is gone every alert delivered exactly once and recorded ``sent``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from botkit import KYIV, MEMBER, OTHER_MEMBER, alert_rows, fake_api, queue_alerts, seed_channel
from fakes.botapi import TOKEN, Call, FakeBotApi
from telegram import Bot

from archiver.config import Settings, StorageSettings
from archiver.health import check_health
from archiver.store import outbox
from archiver.store.archive import Archive
from bot.alerts import alert_html
from bot.delivery import Delivery, Limits, RetryPolicy

NO_LIMITS = Limits(overall_per_second=10_000, chat_interval=0.0, group_per_minute=10_000)
TEXTS = [f"война {i}" for i in range(1, 6)]


@asynccontextmanager
async def delivering(api: FakeBotApi, archive: Archive) -> AsyncIterator[Delivery]:
    bot = Bot(TOKEN, base_url=api.api_base_url)
    async with bot:
        d = Delivery(
            archive,
            bot,
            lambda row: alert_html(row, KYIV, {"war": "война"}),
            poll_seconds=0.02,
            limits=NO_LIMITS,
            retry=RetryPolicy(max_attempts=3, base_seconds=0),
            send_timeout=2.0,
        )
        d.start()
        try:
            yield d
        finally:
            await d.stop(grace=2)


async def queue(archive: Archive) -> None:
    await seed_channel(archive)
    await queue_alerts(archive, TEXTS[:3], [MEMBER])
    await queue_alerts(archive, TEXTS[3:], [OTHER_MEMBER], first_id=4)


def copies(api: FakeBotApi) -> Counter[str]:
    """How many times each alert reached Telegram, by its text."""
    out: Counter[str] = Counter()
    for c in api.sent():
        for t in TEXTS:
            if f"война</b> {t.split()[1]}\n" in c.text:
                out[t] += 1
    return out


def on_first_send(api: FakeBotApi, fault: Callable[[], None]) -> None:
    """Inject ``fault`` (in a thread) the moment Telegram has accepted the first alert, before
    the bot hears back."""

    def hook(call: Call) -> Awaitable[None] | None:
        if call.method == "sendMessage" and api.on_call is not None:
            api.on_call = None
            return asyncio.to_thread(fault)
        return None

    api.on_call = hook


async def wait_paused(d: Delivery) -> None:
    for _ in range(500):
        if d.paused:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("delivery did not pause")


async def while_it_lasts(api: FakeBotApi, archive: Archive, d: Delivery) -> None:
    """The fault holds: many polls later, still at most one copy of each alert, a marker, and
    ``health`` failing with the reason."""
    await wait_paused(d)
    await asyncio.sleep(1.0)  # 50 poll periods: the old code sent a copy each time
    assert max(copies(api).values()) == 1, copies(api)
    assert outbox.marker_path(archive.path).exists()
    report = await check_health(archive, Settings(storage=StorageSettings(archive.path)),
                                process=None)  # fmt: skip
    assert any("alert delivery paused" in p for p in report.problems), report.problems


async def after_it(api: FakeBotApi, archive: Archive) -> None:
    """The fault is gone: every alert delivered exactly once, all recorded, marker gone."""
    await api.wait_for(count=len(TEXTS), timeout=15)
    for _ in range(500):
        if (await outbox.counts(archive)).sending == 0:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    assert copies(api) == dict.fromkeys(TEXTS, 1)
    rows = [r for r in await alert_rows(archive) if r["recipient"] in (MEMBER, OTHER_MEMBER)]
    assert [r["status"] for r in rows] == ["sent"] * len(TEXTS)
    by_text = {c.result["message_id"] for c in api.sent()}
    assert {r["tg_message_id"] for r in rows} <= by_text
    assert not outbox.marker_path(archive.path).exists()


# ---------------------------------------------------------------------------- the lock


async def test_write_lock_held_by_another_process(tmp_path: Path) -> None:
    db = tmp_path / "lock.db"
    async with fake_api() as api:
        archive = await Archive.open(db)
        await archive.db.execute("PRAGMA busy_timeout = 100")  # 30 s in production
        other = sqlite3.connect(db, isolation_level=None, timeout=5, check_same_thread=False)
        try:
            await queue(archive)
            on_first_send(api, lambda: other.execute("BEGIN IMMEDIATE"))
            async with delivering(api, archive) as d:
                await while_it_lasts(api, archive, d)
                other.execute("ROLLBACK")  # the other process lets go
                await after_it(api, archive)
        finally:
            other.close()
            await archive.close()


# ---------------------------------------------------------------------------- a full database


async def fill_to_the_brim(archive: Archive) -> None:
    """No page left to grow into: the alerts' page is filled with earlier (sent) alerts
    until not one more byte fits, and the file may not grow (``max_page_count``)."""
    db = archive.db
    await db.execute("VACUUM")  # no free pages left inside the file
    (pages,) = await (await db.execute("PRAGMA page_count")).fetchone()  # type: ignore[misc]
    await db.execute(f"PRAGMA max_page_count = {pages}")
    row = await archive.fetchone("SELECT post_id, version_id FROM alerts LIMIT 1")
    assert row is not None
    size, n = 8192, 0
    while size >= 1:
        n += 1
        try:
            await db.execute(
                "INSERT INTO alerts (post_id, version_id, recipient, kind, rules, created_at,"
                " status, last_error) VALUES (?, ?, ?, 'new', '[]', '2024-01-01 00:00:00',"
                " 'sent', ?)",
                (row[0], row[1], -(10**12) - n, "x" * size),
            )
        except sqlite3.OperationalError as exc:
            assert "full" in str(exc), exc
            size //= 2


async def test_database_full(tmp_path: Path) -> None:
    db = tmp_path / "full.db"
    async with fake_api() as api:
        archive = await Archive.open(db)
        try:
            await queue(archive)
            await fill_to_the_brim(archive)
            async with delivering(api, archive) as d:
                await while_it_lasts(api, archive, d)
                assert len(api.sent()) >= 1  # sent, but its outcome could not be written
                await archive.db.execute("PRAGMA max_page_count = 1073741823")  # room again
                await after_it(api, archive)
        finally:
            await archive.close()


# ---------------------------------------------------------------------------- a full filesystem


@contextlib.contextmanager
def small_filesystem(where: Path, size: str = "4m") -> Iterator[Path]:
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a size-capped tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill_disk(folder: Path) -> Path:
    """Write a file until the filesystem has no byte left."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
    return filler


async def test_disk_full(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "mnt") as mnt:
        async with fake_api() as api:
            archive = await Archive.open(mnt / "disk.db")
            try:
                await queue(archive)
                fillers: list[Path] = []
                on_first_send(api, lambda: fillers.append(fill_disk(mnt)))
                async with delivering(api, archive) as d:
                    await while_it_lasts(api, archive, d)
                    fillers[0].unlink()  # the operator frees space
                    await after_it(api, archive)
            finally:
                await archive.close()


# ---------------------------------------------------------------------------- after a crash


async def test_an_alert_left_in_flight_by_a_dead_run_is_not_resent(tmp_path: Path) -> None:
    """A run killed between recording ``sending`` and recording the outcome: Telegram may
    have delivered it, so the next start marks it unknown instead of sending it again. One
    whose message id the dead run left in its marker is recorded sent."""
    db = tmp_path / "crash.db"
    async with fake_api() as api:
        archive = await Archive.open(db)
        try:
            await queue(archive)
            rows = await alert_rows(archive)
            for r in rows[:2]:  # as the killed run left them
                await archive.write("UPDATE alerts SET status = 'sending' WHERE id = ?", (r["id"],))
            marker = outbox.marker_path(archive.path)
            outbox.write_marker(marker, outbox.Marker("2024-05-01 12:00:00", "disk full",
                                                      {rows[1]["id"]: 4242}))  # fmt: skip
            async with delivering(api, archive) as d:
                await api.wait_for(count=3)
                await asyncio.sleep(0.3)
                await d.idle()
            statuses = {
                r["id"]: (r["status"], r["tg_message_id"]) for r in await alert_rows(archive)
            }
            assert statuses[rows[0]["id"]] == ("unknown", None)
            assert statuses[rows[1]["id"]] == ("sent", 4242)
            assert [s for s, _ in statuses.values()].count("sent") == 4
            assert copies(api) == {t: 1 for t in TEXTS[2:]}  # the two in flight: not again
            assert not marker.exists()
            (unknown,) = await outbox.list_alerts(archive, "unknown")
            assert "Telegram may have delivered it" in (unknown.last_error or "")
        finally:
            await archive.close()


def test_status_shows_a_paused_delivery() -> None:
    from datetime import UTC, datetime

    from bot.messages import Status, status_blocks

    counts = outbox.OutboxCounts(3, 0, 0, 10, None, 0, sending=1, unknown=2, dropped=1)
    st = Status([], counts, datetime.now(UTC), {}, datetime(2024, 5, 1, 9, tzinfo=UTC),
                "database or disk is full")  # fmt: skip
    text = "\n".join(status_blocks(st, KYIV))
    assert "<b>Delivery paused</b> since 2024-05-01 12:00 EEST" in text
    assert "database or disk is full" in text
    assert "2 of unknown outcome" in text and "1 dropped on purpose" in text
