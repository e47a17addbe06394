"""The SQLite wake-up after `telewatch restore` (found by a break-it review of issue 18).

`restore` writes the backup into the archive file in place (SQLite's backup API) while a
`telewatch bot` may go on running (restore stops only `run` and `sync`, by their locks).
The restored outbox's ids are lower than before; alerts queued afterwards must still wake the
bot, not wait for its poll until their ids pass the old highest one.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from botkit import queue_alerts, seed_channel

from archiver.backup import restore_sync
from archiver.store.archive import Archive
from archiver.store.wakeup import DataVersionWatcher

WITHIN = 20.0  # a functional time-out, not a timing claim


async def test_alerts_queued_after_a_restore_still_wake_the_bot(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    archive = await Archive.open(path)
    await seed_channel(archive)
    await archive.close()
    backup = tmp_path / "backup.db"
    with sqlite3.connect(path) as src, sqlite3.connect(backup) as dst:
        src.backup(dst)  # the outbox empty
    watcher = DataVersionWatcher(path, interval=0.01)
    wake = asyncio.Event()
    watcher.start(wake)
    try:
        async with await Archive.open(path) as a:
            assert await queue_alerts(a, ["война 1", "война 2", "война 3"]) == 3
        await asyncio.wait_for(wake.wait(), WITHIN)
        wake.clear()
        await asyncio.to_thread(restore_sync, backup, path)  # alerts 1-3 are gone
        for n in (1, 2):  # queued after the restore, ids below the old highest
            async with await Archive.open(path) as a:
                assert await queue_alerts(a, [f"война после {n}"], first_id=10 + n) == 1
            await asyncio.wait_for(wake.wait(), WITHIN)
            wake.clear()
    finally:
        await watcher.close()
