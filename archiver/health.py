"""``telewatch health``: is the running process alive and is every channel being synced?

Healthy means both:

- the heartbeat of the process (``run`` by default; ``bot`` or ``sync`` with ``--process``) is
  younger than :func:`heartbeat_limit` (three heartbeats, at least 90 s): the process writes one
  every ``[schedule] heartbeat_seconds``;
- every configured channel had a successful sync within ``[schedule] stale_after_minutes``. A
  channel still on its first pass counts as fresh for that long after it was first seen.

Anything else is a problem with a one-line reason. The container's ``HEALTHCHECK`` runs it.
It is also a problem when the bot paused its alert delivery because the archive could not be
written (disk full, or the write lock held by another process): the bot leaves a marker file
beside the archive until it can write again (``archiver.store.outbox.marker_path``).

A process records how it ended in its heartbeat row (:func:`record_end`): a clean stop or the
error that stopped it. ``health`` reports that instead of a heartbeat that merely looks recent.
While it runs, the row's note says what is off and why (``bot off: ...``), and ``health``
repeats it.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from archiver.config import Settings
from archiver.errors import TelewatchError
from archiver.store.archive import Archive, parse_ts, ts, utcnow
from archiver.store.channels import get_channel
from archiver.store.following import get_status
from archiver.store.outbox import marker_path, read_marker

log = logging.getLogger(__name__)

PROCESSES = ("run", "bot", "sync")
NOTE_LIMIT = 300  # characters of a note or an error kept in the heartbeat row


async def record_start(archive: Archive, process: str, pid: int, note: str | None) -> None:
    """The first heartbeat of ``process``, with what is off and why (None: nothing is)."""
    await archive.heartbeat(process, pid)
    async with archive.transaction() as db:
        await db.execute(
            "UPDATE heartbeats SET note = ? WHERE process = ?", (_short(note), process)
        )


async def record_end(
    path: Path, process: str, pid: int, error: BaseException | None, *, url: str | None = None
) -> None:
    """Mark the heartbeat of ``process`` stopped (``error`` None) or failed, so that ``health``
    does not report a process that has ended as alive (a process that failed before its first
    heartbeat gets a row too: ``health`` then names the error). Called by the one process of
    that name as it exits (``run`` still holds the archive's lock then), on a connection of
    its own: the process has closed its own. Best effort: an archive that cannot be opened or
    written is only logged (the heartbeat then goes stale by itself)."""
    if url is None and not path.exists():  # url: the archive is on PostgreSQL
        return
    if error is None:
        state, note = "stopped", None
    elif isinstance(error, TelewatchError):  # a one-line message written for users
        state, note = "failed", str(error)
    else:  # its text may hold anything (a token in a URL): only its type
        state, note = "failed", f"{type(error).__name__}; see the log"
    try:
        archive = await Archive.open(path, create=False, url=url)
    except TelewatchError as exc:
        log.warning("heartbeat %s: not marked %s (%s)", process, state, exc)
        return
    try:
        async with archive.transaction() as db:
            await db.execute(
                "INSERT INTO heartbeats (process, pid, at, state, note) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (process) DO UPDATE SET pid = excluded.pid, at = excluded.at, "
                "state = excluded.state, note = excluded.note",
                (process, pid, ts(utcnow()), state, _short(note)),
            )
    except sqlite3.Error as exc:
        log.warning("heartbeat %s: not marked %s (%s)", process, state, exc)
    finally:
        await archive.close()


def _short(note: str | None) -> str | None:
    if note is None or len(note) <= NOTE_LIMIT:
        return note
    return note[: NOTE_LIMIT - 3] + "..."


@dataclass(frozen=True, slots=True)
class HealthReport:
    ok_lines: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        return not self.problems


def heartbeat_limit(settings: Settings) -> timedelta:
    return timedelta(seconds=max(3 * settings.schedule.heartbeat_seconds, 90))


def _age(now: datetime, then: datetime) -> str:
    seconds = int((now - then).total_seconds())
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


async def check_health(
    archive: Archive,
    settings: Settings,
    *,
    process: str | None = "run",
    now: datetime | None = None,
) -> HealthReport:
    """Check the heartbeat of ``process`` (None: skip, e.g. in cron mode) and every configured
    channel's last successful sync."""
    now = now or utcnow()
    ok: list[str] = []
    problems: list[str] = []

    if process is not None:
        row = await archive.fetchone(
            "SELECT pid, at, state, note FROM heartbeats WHERE process = ?", (process,)
        )
        at = parse_ts(row["at"]) if row is not None else None
        limit = heartbeat_limit(settings)
        if row is None or at is None:
            problems.append(
                f"process {process}: no heartbeat yet; is `telewatch {process}` running?"
            )
        elif row["state"] == "stopped":
            problems.append(
                f"process {process}: stopped cleanly {_age(now, at)} (pid {row['pid']}); "
                f"start it again: `telewatch {process}`"
            )
        elif row["state"] == "failed":
            problems.append(
                f"process {process}: stopped by an error {_age(now, at)} (pid {row['pid']}): "
                f"{row['note'] or 'see its log'}"
            )
        elif now - at > limit:
            problems.append(
                f"process {process}: last heartbeat {_age(now, at)} (pid {row['pid']}), older "
                f"than {int(limit.total_seconds())} s; is it running or stuck?"
            )
        else:
            note = f"; {row['note']}" if row["note"] else ""
            ok.append(f"process {process}: heartbeat {_age(now, at)}{note}")

    marker = read_marker(marker_path(archive.path))
    if marker is not None:
        since = f" since {marker.since} UTC" if marker.since else ""
        problems.append(
            f"bot: alert delivery paused{since}: the archive cannot be written"
            f" ({marker.reason or 'disk full or locked'}); free disk space or end the process"
            " holding its write lock"
        )

    stale = timedelta(minutes=settings.schedule.stale_after_minutes)
    for cfg in settings.channels:
        ch = await get_channel(archive, cfg.ref)
        name = str(cfg.ref)
        st = await get_status(archive, cfg.ref)
        if ch is None:
            why = f": {st.line().split(': ', 1)[1]}" if st is not None and not st.ok else ""
            problems.append(f"channel {name}: never synced{why}")
            continue
        last = ch.last_sync_ok_at
        if last is not None and now - last <= stale:
            ok.append(f"channel {name}: synced {_age(now, last)}")
            continue
        if last is None and not ch.backfilled and now - ch.created_at <= stale:
            ok.append(f"channel {name}: first sync in progress")
            continue
        when = f"last successful sync {_age(now, last)}" if last else "no successful sync"
        why = ""
        if st is not None and not st.ok:
            why = f"; {st.line().split(': ', 1)[1]}"
        elif ch.flood_wait_until is not None and ch.flood_wait_until > now:
            why = f"; flood wait until {ch.flood_wait_until:%Y-%m-%d %H:%M} UTC"
        elif ch.last_sync_status and ch.last_sync_status != "ok":
            why = f"; last attempt: {ch.last_sync_status}"
            if ch.last_error:
                why += f" ({ch.last_error})"
        problems.append(
            f"channel {name}: {when}, older than {settings.schedule.stale_after_minutes} min{why}"
        )
    from archiver.worker import problems as worker_problems

    problems.extend(await worker_problems(archive, settings))  # several workers: leases
    return HealthReport(tuple(ok), tuple(problems))
