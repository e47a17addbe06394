"""``[evidence] capture_retention_days``: raw captures older than that are pruned by the
weekly maintenance (0, the default: kept for ever).

A capture is pruned when no log entry of the retention period names it (the same page read
again keeps its capture). The log keeps the capture's hash, so a pruned capture leaves its
entries verifiable; a bundle then says "capture pruned" (docs/evidence.md).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from archiver.store.archive import Archive

log = logging.getLogger(__name__)

PRUNED_BEFORE = "evidence.captures_pruned_before"  # meta: the latest retention cutoff applied


async def prune_captures(archive: Archive, days: int, *, now: datetime) -> int:
    """Delete the captures no entry of the last ``days`` days names; returns how many."""
    if days <= 0:
        return 0
    from archiver.store.archive import ts

    cutoff = ts(now - timedelta(days=days))
    assert cutoff is not None
    async with archive.transaction() as db:
        cur = await db.execute(
            "DELETE FROM captures WHERE first_at < ? AND sha256 NOT IN (SELECT capture_sha FROM"
            " observations WHERE at >= ? AND capture_sha IS NOT NULL)",
            (cutoff, cutoff),
        )
        pruned = cur.rowcount
        # The watermark `log verify` holds a missing capture against: every entry naming a
        # pruned capture is older than it, so a capture missing for a newer entry was deleted
        # by something else.
        async with db.execute("SELECT value FROM meta WHERE key = ?", (PRUNED_BEFORE,)) as c:
            row = await c.fetchone()
        if row is None or str(row[0]) < cutoff:
            await db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (PRUNED_BEFORE, cutoff),
            )
    if pruned:
        log.info("evidence: %d capture(s) older than %d days pruned", pruned, days)
    return pruned
