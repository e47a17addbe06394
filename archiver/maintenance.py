"""Weekly upkeep of the archive: the query planner's statistics and the full-text index.

- ``PRAGMA optimize``: lets SQLite refresh the statistics its query planner uses.
- FTS5 ``'optimize'``: merges the index's segments into one, so searches read fewer b-trees
  (an index that only ever grows by small inserts ends up with many segments).
- ``PRAGMA wal_checkpoint(TRUNCATE)``: folds the write-ahead log back into the archive file
  and shrinks it, so a copied archive file is complete and the ``-wal`` stays small.

All three are safe while the bot and other readers run; the FTS merge holds the write lock
for its duration (seconds on a few million posts), and writers wait for it (busy timeout).

On PostgreSQL, autovacuum does the index and space upkeep; maintenance there prunes the
captures and runs ``ANALYZE`` (fresh planner statistics right after a large import or prune).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from archiver.config import Settings
from archiver.store.archive import BUSY_TIMEOUT_MS, Archive

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MaintenanceResult:
    seconds: float
    wal_pages: int  # pages in the write-ahead log before the checkpoint (-1: unknown)
    captures_pruned: int = 0  # raw captures past [evidence] capture_retention_days
    workers_forgotten: tuple[str, ...] = ()  # stopped 7 days ago, holding nothing


async def maintain(
    archive: Archive, *, capture_retention_days: int = 0, settings: Settings | None = None
) -> MaintenanceResult:
    """Run ``PRAGMA optimize``, the FTS5 ``optimize`` merge and a WAL checkpoint; prune raw
    captures past ``capture_retention_days`` (0: keep them; archiver.evidence.retention);
    with ``settings``, forget the workers stopped for 7 days that hold nothing
    (archiver.worker.forget_long_gone)."""
    from archiver.evidence.retention import prune_captures
    from archiver.store.archive import utcnow
    from archiver.worker import forget_long_gone

    started = time.monotonic()
    pruned = await prune_captures(archive, capture_retention_days, now=utcnow())
    forgotten = tuple(await forget_long_gone(archive, settings)) if settings is not None else ()
    if archive.dialect == "postgresql":
        async with archive.transaction() as db:
            await db.execute("ANALYZE")
        seconds = time.monotonic() - started
        log.info("maintenance: done in %.1f s (ANALYZE on PostgreSQL)", seconds)
        return MaintenanceResult(seconds, -1, pruned, forgotten)
    async with archive.transaction() as db:
        await db.execute("INSERT INTO versions_fts (versions_fts) VALUES ('optimize')")
        await db.execute("PRAGMA optimize")
    # Its own connection: a checkpoint cannot run inside a transaction, and the archive's
    # connection may be inside one of another task's by now.
    wal_pages = await asyncio.to_thread(_checkpoint, archive.path)
    seconds = time.monotonic() - started
    log.info("maintenance: done in %.1f s (%d WAL pages checkpointed)", seconds, wal_pages)
    return MaintenanceResult(seconds, wal_pages, pruned, forgotten)


def _checkpoint(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
    return int(row[1]) if row is not None and row[1] is not None else -1
