"""Downloaded media as content-addressed files, recorded against their posts.

A file's name is the SHA-256 of its bytes (``ab/abcdef…​.jpg`` under ``[storage] media_dir``),
so the same photo posted by ten channels is stored once. ``media_files`` holds one row per
file, ``post_media`` links a post's medium (by index) to its file. No Telegram library here:
a source hands over bytes; what to fetch and how is the source's business.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path

from archiver.models import Media
from archiver.store.archive import Archive, ts, utcnow

log = logging.getLogger(__name__)

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoredFile:
    sha256: str
    path: str  # relative to the media folder
    size: int
    mime_type: str | None


def wanted(media: Media, kinds: frozenset[str], max_size_mb: float) -> bool:
    """Whether ``[media] download`` asks for this medium and its known size is in bounds
    (an unknown size is fetched, then checked)."""
    if media.kind not in kinds:
        return False
    return media.size is None or media.size <= max_size_mb * MB


class MediaStore:
    """The media folder. ``put`` writes bytes once under their SHA-256 and returns the file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, data: bytes, mime_type: str | None = None) -> StoredFile:
        sha = hashlib.sha256(data).hexdigest()
        ext = (mimetypes.guess_extension(mime_type) or "") if mime_type else ""
        rel = f"{sha[:2]}/{sha}{ext}"
        dest = self.root / rel
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, dest)  # atomic: a crash never leaves half a file under its hash
        return StoredFile(sha, rel, len(data), mime_type)


async def downloaded_indexes(archive: Archive, channel_id: int, message_id: int) -> set[int]:
    """Indexes of the post's media already stored (so a re-read never downloads twice)."""
    rows = await archive.fetchall(
        "SELECT pm.idx FROM post_media pm JOIN posts p ON p.id = pm.post_id"
        " WHERE p.channel_id = ? AND p.message_id = ?",
        (channel_id, message_id),
    )
    return {int(r[0]) for r in rows}


async def record_media(
    archive: Archive, channel_id: int, message_id: int, idx: int, stored: StoredFile
) -> bool:
    """Record a stored file as medium ``idx`` of an archived post; False if the post is not
    archived (media are recorded after their post is ingested)."""
    now = ts(utcnow())
    async with archive.transaction() as db:
        async with db.execute(
            "SELECT id FROM posts WHERE channel_id = ? AND message_id = ?",
            (channel_id, message_id),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return False
        await db.execute(
            "INSERT INTO media_files (sha256, path, size, mime_type, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (stored.sha256, stored.path, stored.size, stored.mime_type, now),
        )
        await db.execute(
            "INSERT INTO post_media (post_id, idx, sha256) VALUES (?, ?, ?)"
            " ON CONFLICT (post_id, idx) DO UPDATE SET sha256 = excluded.sha256",
            (row[0], idx, stored.sha256),
        )
    log.debug(
        "channel %s post %s: medium %d stored (%d bytes)", channel_id, message_id, idx, stored.size
    )
    return True
