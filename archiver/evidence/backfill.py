"""The log of an archive made before the log existed, rebuilt once from what it holds.

Run by the schema migration that adds the log, in its transaction (meta
``evidence.backfill`` goes from ``pending`` to ``done``): one ``seen`` entry per post (its
first version, at its ``first_seen_at``) and one entry per ``post_events`` row, in
(observed time, id) order, each marked ``"reconstructed": true`` in its content. These
entries say what the archive held at the upgrade, not what was observed live:
docs/evidence.md.
"""

from __future__ import annotations

import logging
from pathlib import Path

import aiosqlite

from archiver.evidence.log import Observation, append

log = logging.getLogger(__name__)

KEY = "evidence.backfill"
_FETCH = 2000

_SQL = """
SELECT 0 AS k, p.first_seen_at AS at, p.id AS ord, p.id, p.channel_id, p.message_id,
       'seen', NULL, v.id, p.source, v.text, v.entities, v.content_sha,
       NULL, NULL, NULL, NULL, NULL
  FROM posts p
  JOIN versions v ON v.id = (SELECT min(w.id) FROM versions w WHERE w.post_id = p.id)
UNION ALL
SELECT 1, e.at, e.id, e.post_id, p.channel_id, p.message_id,
       e.kind, e.id, e.version_id, e.source, v.text, v.entities, v.content_sha,
       e.prev_version_id, e.edit_date, e.parts, e.how, e.evidence
  FROM post_events e
  JOIN posts p ON p.id = e.post_id
  LEFT JOIN versions v ON v.id = e.version_id
ORDER BY at, k, ord
"""


async def backfill(db: aiosqlite.Connection, path: Path) -> int:
    """Rebuild the log if it is pending, inside the migration's transaction; returns the
    number of entries written."""
    written = 0
    async with db.execute("SELECT value FROM meta WHERE key = ?", (KEY,)) as cur:
        row = await cur.fetchone()
    if row is None or row[0] != "pending":
        return 0
    async with db.execute(_SQL) as cur:
        while rows := await cur.fetchmany(_FETCH):
            batch = [
                Observation(
                    at=r[1],
                    post_id=r[3],
                    channel_id=r[4],
                    message_id=r[5],
                    kind=r[6],
                    source=r[9],
                    event_id=r[7],
                    version_id=r[8],
                    version=(r[10], r[11], r[12]) if r[8] is not None else None,
                    prev_version_id=r[13],
                    edit_date=r[14],
                    parts=r[15],
                    how=r[16],
                    evidence=r[17],
                )
                for r in rows
            ]
            await append(db, batch, reconstructed=True)
            written += len(batch)
    await db.execute("UPDATE meta SET value = 'done' WHERE key = ?", (KEY,))
    if written:
        log.info("archive %s: observation log rebuilt: %d entries", path, written)
    return written
