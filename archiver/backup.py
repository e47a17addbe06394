"""Backups of the archive: SQLite's online backup API, verified, the newest N kept.

:func:`backup` copies the live archive (other processes may go on writing: in WAL mode the copy
is a consistent snapshot) into ``[storage] backup_dir`` as ``<archive stem>-YYYYMMDDTHHMMSSZ.db``,
runs ``PRAGMA integrity_check`` on the copy, and only then gives it its final name, so a
half-written or damaged file never counts as a backup. Older backups beyond
``[storage] backup_keep`` are deleted, oldest first.

:func:`restore` writes a verified backup back into the archive path with the same API (so a
stale ``-wal`` file cannot mix into the result). Stop ``telewatch run`` first; the CLI holds the
archive's lock while it restores. docs/operations.md has the manual procedure too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from archiver.errors import TelewatchError

log = logging.getLogger(__name__)

_STAMP = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(r"^(?P<stem>.+)-(?P<stamp>\d{8}T\d{6}Z)(?:-(?P<n>\d+))?\.db$")


class BackupError(TelewatchError):
    """A backup could not be made, verified or restored; the message names the file."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    size: int
    seconds: float
    removed: tuple[Path, ...]  # older backups deleted to keep the newest N


def backup_name(archive: Path, when: datetime) -> str:
    return f"{archive.stem}-{when.astimezone(UTC).strftime(_STAMP)}.db"


def list_backups(archive: Path, backup_dir: Path) -> list[Path]:
    """The backups of ``archive`` in ``backup_dir``, oldest first."""
    if not backup_dir.is_dir():
        return []
    found: list[tuple[str, int, Path]] = []
    for p in backup_dir.iterdir():
        m = _NAME.match(p.name)
        if m and m.group("stem") == archive.stem and p.is_file():
            found.append((m.group("stamp"), int(m.group("n") or 0), p))
    return [p for _, _, p in sorted(found)]


def _check(conn: sqlite3.Connection, what: Path) -> None:
    rows = conn.execute("PRAGMA integrity_check").fetchall()
    result = [str(r[0]) for r in rows]
    if result != ["ok"]:
        raise BackupError(f"{what}: integrity check failed: {'; '.join(result[:3])}")


def _copy(source: Path, target: Path) -> None:
    """SQLite online backup of ``source`` into ``target``, then an integrity check of it."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        src.execute("PRAGMA busy_timeout = 30000")
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            # One self-contained file: no -wal beside a backup.
            dst.execute("PRAGMA journal_mode = DELETE")
            _check(dst, target)
        finally:
            dst.close()
    finally:
        src.close()


def backup_sync(
    archive: Path, backup_dir: Path, keep: int, *, now: datetime | None = None
) -> BackupResult:
    """Make one verified backup and prune to the newest ``keep`` (blocking; see :func:`backup`)."""
    if not archive.is_file():
        raise BackupError(f"{archive}: no archive to back up")
    if keep < 1:
        raise BackupError(f"storage.backup_keep: expected 1 or more, got {keep}")
    started = time.monotonic()
    when = now or datetime.now(UTC)
    try:
        backup_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackupError(
            f"{backup_dir}: cannot create the backup folder ({exc.strerror})"
        ) from None
    final = backup_dir / backup_name(archive, when)
    n = 1
    while final.exists():  # two backups in one second: keep both
        final = backup_dir / f"{archive.stem}-{when.astimezone(UTC).strftime(_STAMP)}-{n}.db"
        n += 1
    partial = final.with_name(final.name + ".partial")
    try:
        _copy(archive, partial)
        partial.replace(final)
    except sqlite3.Error as exc:
        raise BackupError(f"{archive}: backup to {final} failed: {exc}") from None
    except OSError as exc:
        raise BackupError(f"{final}: cannot write the backup ({exc.strerror})") from None
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
    removed = prune(archive, backup_dir, keep)
    size = final.stat().st_size
    seconds = time.monotonic() - started
    log.info(
        "backup %s: %d bytes in %.1f s, %d old backup(s) removed",
        final,
        size,
        seconds,
        len(removed),
    )
    return BackupResult(final, size, seconds, tuple(removed))


def prune(archive: Path, backup_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups of ``archive``; returns what was deleted."""
    backups = list_backups(archive, backup_dir)
    old = backups[: max(len(backups) - keep, 0)]
    for p in old:
        p.unlink(missing_ok=True)
    return old


async def backup(
    archive: Path, backup_dir: Path, keep: int, *, now: datetime | None = None
) -> BackupResult:
    """Make one verified backup of the archive file and keep the newest ``keep`` (in a thread:
    the event loop, the live listener and the bot go on meanwhile)."""
    return await asyncio.to_thread(backup_sync, archive, backup_dir, keep, now=now)


def verify(path: Path) -> None:
    """Raise :class:`BackupError` unless ``path`` is an SQLite file that passes
    ``PRAGMA integrity_check``."""
    if not path.is_file():
        raise BackupError(f"{path}: no such backup file")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            _check(conn, path)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path}: not an SQLite database ({exc})") from None


def restore_sync(backup_file: Path, archive: Path) -> None:
    """Replace the contents of ``archive`` with a verified backup (blocking). The caller makes
    sure nothing else runs on the archive (the CLI holds its lock)."""
    verify(backup_file)
    try:
        archive.parent.mkdir(parents=True, exist_ok=True)
        src = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(archive)
            try:
                dst.execute("PRAGMA busy_timeout = 30000")
                src.backup(dst)
                dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                _check(dst, archive)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{archive}: restore from {backup_file} failed: {exc}") from None
    log.info("restored %s from %s", archive, backup_file)


async def restore(backup_file: Path, archive: Path) -> None:
    await asyncio.to_thread(restore_sync, backup_file, archive)
